/**
 * How the walk crosses from its thread (walk-worker.ts) to the main thread: entries,
 * with their keyed path ids, and warnings, in walk order, packed into one buffer a batch.
 *
 * Items, back to back, integers big-endian:
 *   entry:   kind u8 (0 file, 1 dir, 2 symlink), size u64, mtime i64, ctime i64, inode u64,
 *            mode u32, uid u32, gid u32, path id (32), the UUID it gets if it is new (36 ASCII),
 *            rel u32 n + n bytes, abs u32 n + n bytes
 *   warning: 3, n u32, JSON of the warning (n bytes of UTF-8)
 */
import { ENTRY_KINDS } from '../../formats/manifest.js';
import type { Warning } from './options.js';
import type { WalkEntry } from './walk.js';

/** A walk entry with its keyed path id and the UUID it gets if it is new to the chain (run-uuid.ts), as the main thread takes it. */
export interface IdEntry extends WalkEntry { pathId: Uint8Array; uuid: string }
export type WalkItem = IdEntry | { warning: Warning };

/** What the walk thread starts with. Patterns cross as their source and flags. */
export interface WalkInit {
  sources: string[];
  include?: { source: string; flags: string }[];
  exclude?: { source: string; flags: string }[];
  /** One Int32: batches the main thread has taken, counted up (Atomics), which the walk thread waits on. */
  taken: SharedArrayBuffer;
  /** The keys, given once the run knows them (`WalkKeys`). */
  keys: SharedArrayBuffer;
  /** Bytes of batches packed ahead while the keys are not given (walk-worker.ts HOLD_BYTES by default). */
  hold?: number;
}

/**
 * The keys of a walk, which the main thread gives once the run knows them, while the
 * walk is already under way: an Int32 state (KEYS_WAITING, KEYS_GIVEN, or KEYS_STOP when
 * the run ends first), then the path-id key (32 bytes) and the run's secret from which
 * new paths' UUIDs are derived (32 bytes).
 */
export const KEYS_WAITING = 0;
export const KEYS_GIVEN = 1;
export const KEYS_STOP = 2;
export const WALK_KEYS_BYTES = 4 + 32 + 32;

export class WalkKeys {
  readonly state: Int32Array;
  constructor(readonly sab: SharedArrayBuffer) { this.state = new Int32Array(sab, 0, 1); }
  static make(): WalkKeys { return new WalkKeys(new SharedArrayBuffer(WALK_KEYS_BYTES)); }
  give(pathIdKey: Uint8Array, uuids: Uint8Array): void {
    if (pathIdKey.length !== 32 || uuids.length !== 32) throw new Error('a walk key is 32 bytes');
    new Uint8Array(this.sab, 4, 32).set(pathIdKey);
    new Uint8Array(this.sab, 36, 32).set(uuids);
    this.settle(KEYS_GIVEN);
  }
  stop(): void { this.settle(KEYS_STOP); }
  private settle(to: number): void {
    Atomics.compareExchange(this.state, 0, KEYS_WAITING, to);
    Atomics.notify(this.state, 0);
  }
  /** The keys once given (copies), else null. */
  taken(): { pathIdKey: Uint8Array; uuids: Uint8Array } | null {
    if (Atomics.load(this.state, 0) !== KEYS_GIVEN) return null;
    return { pathIdKey: new Uint8Array(this.sab.slice(4, 36)), uuids: new Uint8Array(this.sab.slice(36, 68)) };
  }
}

/** From the walk thread: a batch, the end, or a failure (its error's class name, code and message). */
export type FromWalker = { t: 'items'; buf: ArrayBuffer } | { t: 'end' } | { t: 'error'; name: string; code: string; message: string };

const FIXED = 1 + 8 + 8 + 8 + 8 + 4 + 4 + 4 + 32 + 36;

/**
 * Packs items one at a time, as the walk makes them, into a buffer it keeps: an item's
 * objects (its stat, names and ids) die as soon as it is packed, young, instead of
 * waiting for their batch to fill (on a million files they outlived the walk thread's
 * young generation, and 750 bytes an entry were promoted and collected in full).
 */
export class WalkPacker {
  private ab: ArrayBuffer;
  private buf: Buffer;
  private dv: DataView;
  private at = 0;
  /** Items packed since the last `take`. */
  count = 0;
  constructor(capacity: number) {
    this.ab = new ArrayBuffer(capacity);
    this.buf = Buffer.from(this.ab);
    this.dv = new DataView(this.ab);
  }
  /** Bytes packed since the last `take`. */
  get bytes(): number { return this.at; }
  private ensure(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const grown = new ArrayBuffer(Math.max(2 * this.ab.byteLength, this.at + n));
    new Uint8Array(grown).set(this.buf.subarray(0, this.at));
    this.ab = grown;
    this.buf = Buffer.from(grown);
    this.dv = new DataView(grown);
  }
  add(it: WalkItem): void {
    const p = this.at;
    if ('warning' in it) {
      const w = Buffer.from(JSON.stringify(it.warning), 'utf8');
      this.ensure(5 + w.length);
      this.dv.setUint8(p, 3); this.dv.setUint32(p + 1, w.length); this.buf.set(w, p + 5);
      this.at += 5 + w.length;
      this.count++;
      return;
    }
    this.ensure(FIXED + 8 + it.rel.length + it.abs.length);
    const { dv, buf } = this;
    const st = it.st;
    dv.setUint8(p, ENTRY_KINDS.indexOf(it.kind));
    dv.setBigUint64(p + 1, st.size); dv.setBigInt64(p + 9, st.mtimeNs); dv.setBigInt64(p + 17, st.ctimeNs); dv.setBigUint64(p + 25, st.ino);
    dv.setUint32(p + 33, Number(st.mode)); dv.setUint32(p + 37, Number(st.uid)); dv.setUint32(p + 41, Number(st.gid));
    buf.set(it.pathId, p + 45);
    buf.write(it.uuid, p + 77, 36, 'latin1');
    let q = p + FIXED;
    dv.setUint32(q, it.rel.length); buf.set(it.rel, q + 4); q += 4 + it.rel.length;
    dv.setUint32(q, it.abs.length); buf.set(it.abs, q + 4); q += 4 + it.abs.length;
    this.at = q;
    this.count++;
  }
  /** What is packed, as a buffer of its own to transfer; the packer starts over in its own. */
  take(): ArrayBuffer {
    const out = this.ab.slice(0, this.at);
    this.at = 0;
    this.count = 0;
    return out;
  }
}

/**
 * Writes each entry's keyed path id and UUID into a batch packed before the keys were
 * known (with zeros in their place): `ids` gives them from the entry's path and kind.
 */
export function fillIds(buf: ArrayBuffer, ids: (rel: Buffer, kind: string) => { pathId: Uint8Array; uuid: string }): void {
  const bytes = Buffer.from(buf);
  for (let at = 0; at < buf.byteLength;) {
    const { item, next } = walkItemAt(buf, at);
    if (!('warning' in item)) {
      const { pathId, uuid } = ids(item.rel, item.kind);
      bytes.set(pathId, at + 45);
      bytes.write(uuid, at + 77, 36, 'latin1');
    }
    at = next;
  }
}

/** Packs items into one buffer (to be transferred). */
export function packWalkItems(items: WalkItem[]): ArrayBuffer {
  const p = new WalkPacker(4096);
  for (const it of items) p.add(it);
  return p.take();
}

/** The views of the last buffer read: entries of one batch are read one after another, twice each. */
let viewed: { buf: ArrayBuffer; dv: DataView; bytes: Buffer } | null = null;

function need(buf: ArrayBuffer, p: number, n: number): void {
  if (p + n > buf.byteLength) throw new Error('a packed walk item runs past its buffer');
}

/**
 * The item of a packed buffer that starts at `at`, and where the next one starts; its
 * names and path id are views into the buffer. Entries waiting for their turn keep their
 * buffer and place, not the item: made again when their turn comes, its objects die young.
 */
export function walkItemAt(buf: ArrayBuffer, at: number): { item: WalkItem; next: number } {
  if (viewed?.buf !== buf) viewed = { buf, dv: new DataView(buf), bytes: Buffer.from(buf) };
  const { dv, bytes } = viewed;
  let p = at;
  need(buf, p, 1);
  const k = dv.getUint8(p);
  if (k === 3) {
    need(buf, p, 5);
    const n = dv.getUint32(p + 1);
    need(buf, p + 5, n);
    return { item: { warning: JSON.parse(bytes.toString('utf8', p + 5, p + 5 + n)) as Warning }, next: p + 5 + n };
  }
  const kind = ENTRY_KINDS[k];
  if (!kind) throw new Error(`a packed walk item of unknown kind ${k}`);
  need(buf, p, FIXED + 4);
  const st = {
    size: dv.getBigUint64(p + 1), mtimeNs: dv.getBigInt64(p + 9), ctimeNs: dv.getBigInt64(p + 17), ino: dv.getBigUint64(p + 25),
    mode: BigInt(dv.getUint32(p + 33)), uid: BigInt(dv.getUint32(p + 37)), gid: BigInt(dv.getUint32(p + 41)),
  };
  // A view, as the names are: whatever keeps an entry keeps its batch anyway (the state
  // delta and the index copy the id's bytes).
  const pathId = new Uint8Array(buf, p + 45, 32);
  const uuid = bytes.toString('latin1', p + 77, p + 77 + 36);
  p += FIXED;
  const rl = dv.getUint32(p);
  need(buf, p + 4, rl + 4);
  const rel = bytes.subarray(p + 4, p + 4 + rl);
  p += 4 + rl;
  const al = dv.getUint32(p);
  need(buf, p + 4, al);
  const abs = bytes.subarray(p + 4, p + 4 + al);
  p += 4 + al;
  return { item: { kind, st, pathId, uuid, rel, abs }, next: p };
}

/** The items of a packed buffer. */
export function unpackWalkItems(buf: ArrayBuffer): WalkItem[] {
  const out: WalkItem[] = [];
  for (let at = 0; at < buf.byteLength;) {
    const { item, next } = walkItemAt(buf, at);
    out.push(item);
    at = next;
  }
  return out;
}
