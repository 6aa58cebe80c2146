/**
 * Writing and reading tar volumes (SPEC.md "Volume format").
 *
 * Writing: `VolumeSet` appends block envelopes to the current volume and starts a new
 * one before any volume would pass the size limit. Each volume begins with its header
 * (the data key sealed to the recipients) and carries catalogue pieces that describe,
 * with names, every file whose blocks it holds, so one volume restores on its own.
 * Bytes go to storage in batches of about 1 MiB as they are produced, without waiting
 * for each write (the caller waits when `backlog` says too much is queued); the sha384
 * of each volume is computed on the way out. A VolumeSet that failed once, in its own
 * work or in a storage write, stays failed.
 *
 * Reading: `VolumeReader` opens a volume's header once (unsealing its data key with the
 * restore key) and then reads single envelopes by range.
 */
import { createHash, createSecretKey, hash, type Hash, type KeyObject } from 'node:crypto';
import type * as openpgp from 'openpgp';
import { FormatError, NotFoundError } from '../../formats/errors.js';
import { blockContext, counterNonce, ENVELOPE_HEADER, TAG_LENGTH } from '../../formats/envelope.js';
import { MAX_BLOCK, encodeCatalogHeader, encodeDocEnd, encodeRecord, type CatalogHeader, type FileRecord, type BlockRef } from '../../formats/manifest.js';
import { blockEntry, volumeName, LAYOUT } from '../../formats/names.js';
import { encodeTarHeader, decodeTarHeader, tarPadding, tarEntrySize, TAR_BLOCK } from '../../formats/tar.js';
import { CATALOG_ENTRY_PREFIX, VOLUME_HEADER_ENTRY, decodeVolumeHeader, encodeVolumeHeader, encodeVolumeKey, decodeVolumeKey, type VolumeHeader } from '../../formats/volume.js';
import { hashOfDigest } from '../../formats/text.js';
import type { ObjectRef } from '../../formats/snapshot.js';
import { openEnvelope, pgpOpenBytes, pgpSealBytes, random, sealEnvelopeParts } from '../crypto/crypto.js';
import { compressBlock, decompressBlock, textCodec, type CodecChoice } from '../codec.js';
import { absentNote, type ObjectWriter, type Storage } from '../storage/storage.js';
import { spend } from '../threads.js';

/** Catalogue text is flushed into an entry once it passes this size. */
const CATALOG_FLUSH = 256 * 1024;
/** Space kept free in every volume for the last catalogue piece and the tar end. */
const RESERVE_BASE = 2 * CATALOG_FLUSH + 4 * TAR_BLOCK;
/** Catalogue bytes one block line may take (upper bound). */
const BLOCK_LINE_MAX = 400;
/** Smallest volume size accepted: a largest block plus the reserve, with room. */
export const MIN_VOLUME_SIZE = 8 * 1024 * 1024;

/** Where a block was written. */
export type Placement = Pick<BlockRef, 'volume' | 'dataOffset' | 'length' | 'entry' | 'start'>;

interface OpenVolume {
  name: string;
  number: number;
  id: Uint8Array;
  /** The data key, made a KeyObject once: a cipher is made from it for every envelope. */
  key: KeyObject;
  writer: ObjectWriter;
  hash: Hash;
  size: number;
  entries: number;
  catalogPieces: number;
  /** The catalogue piece being gathered, once a record was added since the last one. */
  catalog: CatalogPiece | null;
  /** Bytes appended but not yet handed to the writer (one write per ~1 MiB, not per entry). */
  pending: Uint8Array[];
  pendingBytes: number;
  /** The sealed payloads among `pending`: this set's own, spent once copied into a batch. */
  sealed: Uint8Array[];
  /** The writes handed to the writer, one after another; rejects with the first failure. */
  writes: Promise<void>;
  /** Bytes handed to `writes` and not yet written. */
  queued: number;
}

/**
 * A catalogue piece being gathered (SPEC.md section 8), as bytes: records kept as
 * strings until their piece was sealed outlived the young generation, and the garbage
 * collector copied each of them twice.
 */
class CatalogPiece {
  private buf = Buffer.allocUnsafeSlow(CATALOG_FLUSH + 64 * 1024);
  /** Bytes gathered, the opening lines included. */
  length = 0;

  constructor(header: CatalogHeader) {
    this.add(encodeCatalogHeader(header));
  }

  /** Adds text (ASCII): opening lines, or a record as `encodeRecord` makes it. */
  add(text: string): void {
    if (this.length + text.length > this.buf.length) {
      const grown = Buffer.allocUnsafeSlow(Math.max(2 * this.buf.length, this.length + text.length));
      this.buf.copy(grown, 0, 0, this.length);
      this.buf = grown;
    }
    this.length += this.buf.write(text, this.length, 'latin1');
  }

  /** The whole piece: what was gathered, and the closing line with its sha384. */
  end(): Buffer {
    this.add(encodeDocEnd('catalog', hash('sha384', this.buf.subarray(0, this.length), 'buffer')));
    return this.buf.subarray(0, this.length);
  }
}

/**
 * What a volume is hashed with, for its record's volume line (SPEC.md "Snapshot record"):
 * sha256, which runs at about twice sha384's speed here, is what a record of version 3 may
 * name; readers take either.
 */
const VOLUME_HASH = 'sha256';

/** Tar padding, never written to. */
const ZEROS = new Uint8Array(TAR_BLOCK);

/** Appended bytes are handed to storage in writes of about this size. */
const WRITE_BATCH = 1024 * 1024;
/** Bytes handed to storage and not yet written before `backlog` asks the caller to wait. */
const MAX_QUEUED = 4 * WRITE_BATCH;

/** What the VolumeSet needs from the backup key and the run. */
export interface VolumeSetOptions {
  storage: Storage;
  snapshot: string;
  host: string;
  time: bigint;
  limit: number;
  recipients: openpgp.PublicKey[];
  signer: openpgp.PrivateKey;
  /** The run's codec; catalogue pieces use its `textCodec`. */
  codec: CodecChoice;
  /**
   * Volumes of this snapshot committed by an interrupted run that this one resumes
   * (volumes 0001 on, in order): numbering goes on after them and `finish` lists them first.
   */
  resumed?: ObjectRef[];
  /** Told of each volume once it is committed, with the id in its header. */
  onCommit?: (ref: ObjectRef, volumeId: Uint8Array) => void;
}

/**
 * Writes the volumes of one snapshot. Adding a block or ending a file is synchronous
 * while the current volume has room and its catalogue need not be flushed: bytes are
 * framed, sealed and hashed at once and handed to storage a batch at a time, without
 * waiting; `backlog` says when the caller should wait for storage to catch up. Those
 * two methods return a promise only when they must wait (a volume opens or closes, a
 * catalogue piece is compressed).
 */
/**
 * One write's bytes from the parts pending (`bytes` in all): the part itself when it is
 * alone, else a copy of them all, and then the `sealed` parts among them are spent (they
 * are the set's own, and read no more).
 */
export function takeBatch(pending: Uint8Array[], bytes: number, sealed: Uint8Array[]): Uint8Array {
  if (pending.length === 1) return pending[0];
  const batch = Buffer.concat(pending, bytes);
  for (const b of sealed) spend(b);
  return batch;
}

export class VolumeSet {
  private cur: OpenVolume | null = null;
  private readonly done: ObjectRef[] = [];
  private broken: unknown = null;
  /** The file whose blocks are being added, with its blocks in the current volume. */
  private file: { record: FileRecord; here: BlockRef[] } | null = null;

  constructor(private readonly o: VolumeSetOptions) {
    if (o.limit < MIN_VOLUME_SIZE) throw new FormatError('bad-size', `volume size ${o.limit} is below the minimum of ${MIN_VOLUME_SIZE} bytes`);
    this.done.push(...(o.resumed ?? []));
  }

  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    this.check();
    try { return await fn(); } catch (e) { this.broken ??= e; throw e; }
  }

  private check(): void {
    if (this.broken) throw this.broken;
  }

  /** Appends `bytes`; `own`: nothing else holds them (they may be spent once copied). */
  private append(v: OpenVolume, bytes: Uint8Array, own = false): void {
    v.size += bytes.length;
    v.pending.push(bytes);
    if (own) v.sealed.push(bytes);
    v.pendingBytes += bytes.length;
    if (v.pendingBytes >= WRITE_BATCH) this.flush(v);
  }

  /** Hashes what is pending and queues its write. */
  private flush(v: OpenVolume): void {
    if (v.pendingBytes === 0) return;
    // The set's own: a copy of several parts, or a part it sealed. Spent once written
    // (a writer is done with what it was given when its write resolves).
    const own = v.pending.length > 1 || v.sealed.includes(v.pending[0]);
    const batch = takeBatch(v.pending, v.pendingBytes, v.sealed);
    v.pending = []; v.pendingBytes = 0; v.sealed = [];
    // Hashed a batch at a time: an update per tar header and padding cost more than the bytes.
    v.hash.update(batch);
    v.queued += batch.length;
    v.writes = v.writes.then(async () => {
      await v.writer.write(batch);
      v.queued -= batch.length;
      if (own) spend(batch);
    });
    v.writes.catch((e) => { this.broken ??= e; });
  }

  /** A promise to wait on when too many bytes wait for storage, else undefined. */
  backlog(): Promise<void> | undefined {
    this.check();
    const v = this.cur;
    return v && v.queued > MAX_QUEUED ? v.writes : undefined;
  }

  /** Appends tar entry `name` whose content is `parts` in order; returns its data offset. */
  private entry(v: OpenVolume, name: string, ...parts: Uint8Array[]): number {
    return this.entryOwning(v, name, parts, null);
  }

  /** `entry`, where part `own` is this set's alone (see `append`). */
  private entryOwning(v: OpenVolume, name: string, parts: Uint8Array[], own: Uint8Array | null): number {
    let length = 0;
    for (const p of parts) length += p.length;
    this.append(v, encodeTarHeader(name, length, Number(this.o.time / 1_000_000_000n)));
    const dataOffset = v.size;
    for (const p of parts) this.append(v, p, p === own);
    const pad = tarPadding(length);
    if (pad) this.append(v, ZEROS.subarray(0, pad));
    return dataOffset;
  }

  private async openVolume(): Promise<OpenVolume> {
    const number = this.done.length + 1;
    const name = volumeName(this.o.snapshot, number);
    const id = random(16), key = random(32);
    const sealed = await pgpSealBytes(encodeVolumeKey(id, key), this.o.recipients, this.o.signer);
    const writer = await this.o.storage.create(`${LAYOUT.volumes}/${name}`, { maxSize: this.o.limit });
    const v: OpenVolume = {
      name, number, id, key: createSecretKey(key), writer, hash: createHash(VOLUME_HASH), size: 0, entries: 0, catalogPieces: 0, catalog: null,
      pending: [], pendingBytes: 0, sealed: [], writes: Promise.resolve(), queued: 0,
    };
    this.entry(v, VOLUME_HEADER_ENTRY, encodeVolumeHeader({ volumeId: id, name, snapshot: this.o.snapshot, time: this.o.time, sealed }));
    return v;
  }

  private reserve(): number {
    const pending = this.file ? this.file.here.length * BLOCK_LINE_MAX + 70000 : 0;
    return RESERVE_BASE + pending;
  }

  /** Seals an already compressed payload as entry `name` of `v`; returns where it went. */
  private sealAt(v: OpenVolume, name: string, codec: number, plainLength: number, payload: Uint8Array): { dataOffset: number; length: number } {
    v.entries++;
    const env = sealEnvelopeParts(v.key, counterNonce(v.entries), codec, plainLength, payload, blockContext(v.id, name));
    let length = 0;
    for (const p of env) length += p.length;
    return { dataOffset: this.entryOwning(v, name, env, env[1]), length };
  }

  /** Adds a record to the catalogue; `encoded`, if given, is `encodeRecord(r)` made already. */
  private addToCatalog(v: OpenVolume, r: FileRecord, encoded?: string): void {
    v.catalog ??= new CatalogPiece({ volume: v.name, snapshot: this.o.snapshot, time: this.o.time, host: this.o.host });
    v.catalog.add(encoded ?? encodeRecord(r));
  }

  private async flushCatalog(v: OpenVolume): Promise<void> {
    if (!v.catalog) return;
    const plain = v.catalog.end();
    v.catalog = null;
    v.catalogPieces++;
    const name = CATALOG_ENTRY_PREFIX + String(v.catalogPieces).padStart(6, '0');
    const c = await compressBlock(plain, textCodec(this.o.codec));
    this.sealAt(v, name, c.codec, plain.length, c.bytes);
  }

  private async closeVolume(): Promise<void> {
    const v = this.cur!;
    if (this.file && this.file.here.length) {
      this.addToCatalog(v, { ...this.file.record, blocks: this.file.here });
      this.file.here = [];
    }
    await this.flushCatalog(v);
    this.append(v, new Uint8Array(2 * TAR_BLOCK));
    this.flush(v);
    await v.writes;
    await v.writer.commit();
    const ref = { name: v.name, size: v.size, digest: new Uint8Array(v.hash.digest()) };
    this.done.push(ref);
    this.cur = null;
    this.o.onCommit?.(ref, v.id);
  }

  /** Starts a file: blocks added until `endFile` belong to it. */
  beginFile(record: FileRecord): void {
    this.file = { record: { ...record, blocks: [] }, here: [] };
  }

  /** Forgets the current file (it tore or failed): no catalogue record names its blocks. */
  dropFile(): void {
    this.file = null;
  }

  /**
   * Seals and writes block `index` of the current file (already compressed by
   * `codec`). Returns where it went: at once, unless a volume must close or open first.
   */
  addBlock(uuid: string, index: number, block: { codec: number; bytes: Uint8Array; plainLength: number }, ref: Omit<BlockRef, keyof Placement>): Placement | Promise<Placement> {
    return this.fitOrRoll(block.bytes.length, 0, (v) => this.place(v, uuid, index, block, ref));
  }

  /**
   * Runs `put` on the current volume if an envelope of `payload` bytes fits in it with
   * `room` more to spare (and what the volume keeps in reserve); else on a new volume,
   * after the current one is closed. At once, unless a volume must close or open.
   */
  private fitOrRoll(payload: number, room: number, put: (v: OpenVolume) => Placement): Placement | Promise<Placement> {
    this.check();
    const v = this.cur;
    if (v && v.size + tarEntrySize(ENVELOPE_HEADER + payload + TAG_LENGTH) + room + this.reserve() <= this.o.limit) {
      try { return put(v); } catch (e) { this.broken ??= e; throw e; }
    }
    return this.guard(async () => {
      if (this.cur) await this.closeVolume();
      this.cur = await this.openVolume();
      return put(this.cur);
    });
  }

  /**
   * Seals and writes a pack (SPEC.md "Packs") as the entry of block 0 of the current
   * file, its first member; `room` is what the rest of its batch may still add (its other
   * files' blocks and records), so that every member's record lands in the catalogue of
   * the pack's volume: the pack starts a new volume unless both fit.
   */
  addPack(uuid: string, block: { codec: number; bytes: Uint8Array; plainLength: number }, room: number): Placement | Promise<Placement> {
    // Another RESERVE_BASE: the batch's records may seal a catalogue piece on the way.
    return this.fitOrRoll(block.bytes.length, room + RESERVE_BASE, (v) => {
      const entry = blockEntry(uuid, 0);
      const at = this.sealAt(v, entry, block.codec, block.plainLength, block.bytes);
      return { volume: v.name, dataOffset: at.dataOffset, length: at.length, entry };
    });
  }

  private place(v: OpenVolume, uuid: string, index: number, block: { codec: number; bytes: Uint8Array; plainLength: number }, ref: Omit<BlockRef, keyof Placement>): Placement {
    const entry = blockEntry(uuid, index);
    const at = this.sealAt(v, entry, block.codec, block.plainLength, block.bytes);
    const placement: Placement = { volume: v.name, dataOffset: at.dataOffset, length: at.length, entry };
    if (this.file) this.file.here.push({ index: ref.index, size: ref.size, digest: ref.digest, offset: ref.offset, volume: v.name, dataOffset: at.dataOffset, length: at.length, entry });
    return placement;
  }

  /**
   * Ends the current file (or records a directory or symlink): its catalogue record
   * lists the blocks that live in the current volume. `encoded`, if given, is
   * `encodeRecord(record)`, used as is when all of its blocks are here. Returns a
   * promise only when it must wait (the first volume opens, a catalogue piece is sealed).
   */
  endFile(record: FileRecord, encoded?: string): Promise<void> | undefined {
    this.check();
    this.file = null;
    const v = this.cur;
    if (!v) {
      return this.guard(async () => {
        this.cur = await this.openVolume();
        await this.endFile(record, encoded);
      });
    }
    try {
      const here = record.blocks.every((b) => b.volume === v.name) ? record.blocks : record.blocks.filter((b) => b.volume === v.name);
      if (record.kind === 'file' && here.length === 0 && record.size > 0) return undefined;
      if (here.length === record.blocks.length) this.addToCatalog(v, record, encoded);
      else this.addToCatalog(v, { ...record, blocks: here });
    } catch (e) { this.broken ??= e; throw e; }
    if (v.catalog && v.catalog.length >= CATALOG_FLUSH) return this.guard(() => this.flushCatalog(v));
    return undefined;
  }

  /** Closes the last volume; returns every volume written. */
  async finish(): Promise<ObjectRef[]> {
    return this.guard(async () => {
      if (this.cur) await this.closeVolume();
      return this.done;
    });
  }

  /** Drops the volume being written (the committed ones stay as debris for cleanup). */
  async abort(): Promise<void> {
    const v = this.cur;
    this.cur = null;
    if (v) {
      await v.writes.catch(() => {});
      await v.writer.abort().catch(() => {});
    }
  }
}

/**
 * The header of volume `volume` of the repository (two range reads) and the volume's
 * size; checks that the header names the volume. Needs no key: the data key stays sealed.
 */
export async function readVolumeHeader(storage: Storage, volume: string): Promise<{ header: VolumeHeader; size: number }> {
  const object = `${LAYOUT.volumes}/${volume}`;
  const size = await storage.stat(object);
  if (size === null) throw new NotFoundError('missing-volume', `volume ${volume} is missing${await absentNote(storage, object)}`);
  const th = decodeTarHeader(await storage.getRange(object, 0, TAR_BLOCK), 0);
  if (!th || th.name !== VOLUME_HEADER_ENTRY) throw new FormatError('bad-volume', `${volume}: does not start with an iebs volume header`);
  if (th.size > 128 * 1024 || TAR_BLOCK + th.size > size) throw new FormatError('absurd-size', `${volume}: volume header of ${th.size} bytes`);
  const header = decodeVolumeHeader(await storage.getRange(object, TAR_BLOCK, th.size), volume);
  if (header.name !== volume) throw new FormatError('bad-volume', `${volume}: header names it ${header.name} (renamed or swapped)`);
  return { header, size };
}

/** An opened volume: its header, data key and size. */
interface OpenedVolume { id: Uint8Array; key: KeyObject; snapshot: string; size: number }

/**
 * The plaintexts of the packs read last (SPEC.md "Packs"), by place: restore and salvage
 * take a pack's blocks one after another, and open it once. A pack that failed to open
 * is forgotten, so a later block tries again. A pack's buffer is freed as soon as it has
 * left the cache and no block is being taken from it (it lives long enough to be
 * promoted, and would wait for a full collection).
 */
export class PackCache {
  private readonly packs = new Map<string, Pack>();
  constructor(private readonly kept = 4) {}

  /** A copy of block `ref`'s bytes in its pack, opening the pack with `open` unless kept. */
  async block(key: string, ref: BlockRef & { start: number }, open: () => Promise<Uint8Array>): Promise<Uint8Array> {
    let pack = this.packs.get(key);
    if (!pack) {
      const p: Pack = { plain: open(), users: 0, gone: false };
      this.packs.set(key, p);
      if (this.packs.size > this.kept) {
        const [oldest, old] = this.packs.entries().next().value!;
        this.packs.delete(oldest);
        PackCache.leave(old);
      }
      p.plain.catch(() => { if (this.packs.get(key) === p) this.packs.delete(key); });
      pack = p;
    }
    pack.users++;
    try {
      const plain = await pack.plain;
      if (ref.start + ref.size > plain.length) throw new FormatError('bad-size', `${ref.volume}:${ref.entry}: pack holds ${plain.length} bytes, the block at ${ref.start} of ${ref.size} bytes runs past it`);
      // A copy (a Buffer's slice would be a view): the caller may hand it to another
      // thread, or keep it past the pack.
      const out = new Uint8Array(ref.size);
      out.set(plain.subarray(ref.start, ref.start + ref.size));
      return out;
    } finally {
      pack.users--;
      PackCache.freeIfDone(pack);
    }
  }

  /** `p` has left the cache: freed now unless a block is being taken from it (then by the last). */
  private static leave(p: Pack): void {
    p.gone = true;
    PackCache.freeIfDone(p);
  }

  /** Frees `p`'s plaintext once it has left the cache and no block is being taken from it. */
  private static freeIfDone(p: Pack): void {
    if (p.gone && p.users === 0) p.plain.then(spend, () => {});
  }
}

/** A pack in the cache, and how many blocks are being taken from it. */
interface Pack { plain: Promise<Uint8Array>; users: number; gone: boolean }

/** Envelopes up to this size, read in order, are read through a window of the volume. */
const WINDOW_ENVELOPE = 64 * 1024;
const WINDOW = 1024 * 1024;
/** Bytes of a span of envelopes read with one request, and the most between two of them (a tar header and padding). */
const SPAN = 4 * 1024 * 1024;
const SPAN_GAP = 4096;

/** Where an envelope lies: its volume and offset. */
function place(b: BlockRef): string {
  return `${b.volume}@${b.dataOffset}`;
}

/**
 * Envelopes said to be read soon (`expect`) that lie one after another in a volume: read
 * with one request when the first of them is asked for. `members` are in volume order;
 * `data` is null until then. `users` counts the envelopes read with it that are not yet
 * opened or forgotten: the last one frees its memory.
 */
interface Span { volume: string; members: BlockRef[]; start: number; end: number; data: Promise<Uint8Array> | null; users: number }

/**
 * Reads block envelopes from volumes with the restore key; caches opened headers.
 *
 * Envelopes the caller says it is about to read (`expect`) are read a span at a time:
 * those that lie one after another in a volume, up to SPAN bytes, with one request where
 * each was one (on a remote store each costs a round trip and the client's work). Other
 * small envelopes read one after another (a dump of many small files reads a volume in
 * about the order it was written) are read a window of 1 MiB at a time; an envelope read
 * out of order, or a large one, is read alone.
 */
export class VolumeReader {
  private readonly opened = new Map<string, Promise<OpenedVolume>>();
  private window: { volume: string; start: number; end: number; data: Promise<Uint8Array> } | null = null;
  private last: { volume: string; end: number } | null = null;
  private readonly packs = new PackCache();
  /** The span of each envelope expected and not yet taken, by place. */
  private readonly wanted = new Map<string, Span>();
  /**
   * The span the next expected envelope of each volume may join (a chain's restore takes
   * the files of an increment from its own volumes, between those of the full's).
   */
  private readonly tails = new Map<string, Span>();
  constructor(private readonly storage: Storage, private readonly decryptionKeys: openpgp.PrivateKey[], private readonly verifiers: openpgp.PublicKey[]) {}

  private open(volume: string): Promise<OpenedVolume> {
    let p = this.opened.get(volume);
    if (!p) {
      p = this.openHeader(volume);
      this.opened.set(volume, p);
    }
    return p;
  }

  private async openHeader(volume: string): Promise<OpenedVolume> {
    const { header: h, size } = await readVolumeHeader(this.storage, volume);
    const plain = await pgpOpenBytes(h.sealed, this.decryptionKeys, this.verifiers, `${volume} sealed key`);
    return { id: h.volumeId, key: createSecretKey(decodeVolumeKey(plain, h.volumeId, volume)), snapshot: h.snapshot, size };
  }

  /**
   * Says that the envelopes of `blocks` are about to be read, in about this order (one
   * file's blocks, or the files a restore starts next): those that lie one after another
   * in a volume, here and in the calls before, are then read a span at a time. An envelope
   * expected already is not added again (a pack's other blocks). Every block expected must
   * be read or given to `done`.
   */
  expect(blocks: BlockRef[]): void {
    for (const b of blocks) {
      const at = place(b);
      if (this.wanted.has(at)) continue;
      const end = b.dataOffset + b.length;
      let s = this.tails.get(b.volume);
      if (!s || s.data !== null || b.dataOffset < s.end || b.dataOffset - s.end > SPAN_GAP || end - s.start > SPAN) {
        s = { volume: b.volume, members: [], start: b.dataOffset, end, data: null, users: 0 };
        this.tails.set(b.volume, s);
      }
      s.members.push(b);
      s.end = end;
      this.wanted.set(at, s);
    }
  }

  /** Forgets the expected envelopes of `blocks` not read (their file is restored, or failed). */
  done(blocks: BlockRef[]): void {
    for (const b of blocks) {
      const at = place(b);
      const s = this.wanted.get(at);
      if (!s) continue;
      this.wanted.delete(at);
      if (s.data) this.release(s);
    }
  }

  /**
   * One envelope of span `s` is opened or forgotten; after the last, the span's buffer is
   * freed at once (a span lives long enough to be promoted, and would wait for a full
   * collection: 30 MiB more peak in a restore of the bench corpus).
   */
  private release(s: Span): void {
    if (--s.users === 0) s.data!.then(spend, () => {});
  }

  /** Starts reading span `s`, from the first envelope still wanted (or the one at `at`) to the last. */
  private fetch(s: Span, at: string, object: string): Promise<Uint8Array> {
    const still = s.members.map((m) => { const k = place(m); return k === at || this.wanted.get(k) === s; });
    const first = still.indexOf(true), last = still.lastIndexOf(true);
    for (const x of still) if (x) s.users++;
    s.start = s.members[first].dataOffset;
    s.end = s.members[last].dataOffset + s.members[last].length;
    s.members = [];
    if (this.tails.get(s.volume) === s) this.tails.delete(s.volume);
    s.data = this.storage.getRange(object, s.start, s.end - s.start);
    s.data.catch(() => {});
    return s.data;
  }

  /**
   * The envelope of `ref`, from its span or the window when it lies there (see the class);
   * `span` is the span it is a view of, to `release` once the envelope is opened.
   */
  private async envelope(ref: BlockRef, size: number): Promise<{ env: Uint8Array; span: Span | null; own?: boolean }> {
    const object = `${LAYOUT.volumes}/${ref.volume}`;
    const at = place(ref);
    const s = this.wanted.get(at);
    if (s) {
      this.wanted.delete(at);
      const data = s.data ?? this.fetch(s, at, object);
      let bytes: Uint8Array | null = null;
      // A span that could not be read fails no file by itself: each envelope is then read alone.
      try { bytes = await data; } catch { /* read alone, below */ }
      if (bytes && ref.dataOffset >= s.start && ref.dataOffset + ref.length <= s.end) return { env: bytes.subarray(ref.dataOffset - s.start, ref.dataOffset - s.start + ref.length), span: s };
      this.release(s);
      return { env: await this.storage.getRange(object, ref.dataOffset, ref.length), span: null, own: true };
    }
    const start = ref.dataOffset;
    const end = start + ref.length;
    const prev = this.last;
    this.last = { volume: ref.volume, end };
    let w = this.window;
    if (!w || w.volume !== ref.volume || start < w.start || end > w.end) {
      const inOrder = prev !== null && prev.volume === ref.volume && start >= prev.end && start - prev.end <= WINDOW_ENVELOPE;
      if (!inOrder || ref.length > WINDOW_ENVELOPE || end > size) return { env: await this.storage.getRange(object, start, ref.length), span: null, own: true };
      const data = this.storage.getRange(object, start, Math.min(size, start + WINDOW) - start);
      w = this.window = { volume: ref.volume, start, end: Math.min(size, start + WINDOW), data };
      data.catch(() => { if (this.window === w) this.window = null; });
    }
    const bytes = await w.data;
    return { env: bytes.subarray(start - w.start, end - w.start), span: null };
  }

  /** Reads, authenticates, decompresses and checks one block. */
  async readBlock(ref: BlockRef, checkHash: (data: Uint8Array) => boolean): Promise<Uint8Array> {
    const data = await this.readUnchecked(ref);
    if (!checkHash(data)) throw blockHashError(ref);
    return data;
  }

  /**
   * Reads, authenticates and decompresses one block, of the length its reference says;
   * the caller MUST check it against its digest (`blockHashError` if it fails) before use.
   */
  async readUnchecked(ref: BlockRef): Promise<Uint8Array> {
    if (ref.start === undefined) return this.plaintext(ref, ref.size);
    return this.packs.block(place(ref), { ...ref, start: ref.start }, () => this.plaintext(ref, -1));
  }

  /** The plaintext of `ref`'s envelope, which must be `size` bytes long (any length up to MAX_BLOCK if -1). */
  private async plaintext(ref: BlockRef, size: number): Promise<Uint8Array> {
    const v = await this.open(ref.volume);
    const where = `${ref.volume}:${ref.entry}`;
    const { env, span, own } = await this.envelope(ref, v.size);
    let opened;
    try {
      opened = openEnvelope(v.key, env, blockContext(v.id, ref.entry), MAX_BLOCK, where);
    } finally {
      // The payload is a copy: nothing reads the envelope's bytes again.
      if (span) this.release(span);
      else if (own) spend(env);
    }
    if (size >= 0 && opened.plainLength !== size) throw new FormatError('bad-size', `${where}: block holds ${opened.plainLength} bytes, the manifest says ${size}`);
    const plain = await decompressBlock(opened.codec, opened.payload, opened.plainLength);
    // The decrypted frame is read no more once it is decoded.
    if (plain !== opened.payload) spend(opened.payload);
    return plain;
  }
}

/** The error of a block whose content does not match its digest (sha384 or sha256). */
export function blockHashError(ref: BlockRef): FormatError {
  return new FormatError('bad-hash', `${ref.volume}:${ref.entry}: block content does not match its ${hashOfDigest(ref.digest)}`);
}
