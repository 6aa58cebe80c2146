/**
 * The blocks this run has stored so far, or is storing, by keyed id (so a block met twice
 * in one run is stored once): recent ones in memory, older ones in sorted tables on disk.
 */
import { join } from 'node:path';
import { IdBloom, SortedTable } from '../scratch/sorter.js';
import { type Placement } from '../repo/volumes.js';
import { parsePlacement, placementValue } from './state.js';

/** Settled places a run keeps in memory before it writes them to a table. */
export const RUN_BLOCKS_IN_MEMORY = 65536;

/**
 * The place of a block this run is writing: filled in by the writer step that writes it.
 * Steps run in submission order, so every later step that names the block finds it set.
 */
export interface Writing { placement: Placement | null }

/** Bytes of a keyed block id. */
const ID = 32;

/** The index of `name` in `list`: the last one if it is equal (names come in runs), else a new one. */
function nameIndex(list: string[], name: string): number {
  const last = list.length - 1;
  if (last >= 0 && list[last] === name) return last;
  list.push(name);
  return last + 1;
}

/**
 * The places of the blocks this run stored lately, and the holders of those it is still
 * storing, by keyed id, kept mostly outside the JavaScript heap: ids and numbers in typed
 * arrays, volume and entry names once for each run of equal ones (a pack's members share
 * theirs), the holders in an array. A Map of 65,536 places (a latin1 key and an object
 * each) held about 30 MiB of the engine thread's heap, 460 bytes a block: each place was
 * copied by two scavenges, and every full collection of the run marked them all again.
 * Open addressing on the id's first four bytes, which are uniformly random (keyed ids).
 */
export class PlaceTable {
  /** Entries there is room for before the arrays grow. */
  private cap = 0;
  /** Entries in use. */
  private n = 0;
  /** Settled entries (places, not holders). */
  settled = 0;
  private ids = new Uint8Array(0);
  /** The first four bytes of each id, big-endian. */
  private heads = new Uint32Array(0);
  private offsets = new Float64Array(0);
  private lengths = new Uint32Array(0);
  /** Start in a pack plus one; 0 for a block stored alone. */
  private starts = new Uint32Array(0);
  private volumeOf = new Uint32Array(0);
  private entryOf = new Uint32Array(0);
  /** The holder of each entry still being written; undefined once it is settled. */
  private held: (Writing | undefined)[] = [];
  private volumes: string[] = [];
  private entries: string[] = [];
  /** Entry index + 1 by hash slot; 0 is free. At most half full. */
  private slots = new Uint32Array(0);

  constructor(initial = 1024) {
    this.resize(initial);
  }

  private resize(cap: number): void {
    const grow = <T extends Uint8Array | Uint32Array | Float64Array>(a: T, make: (n: number) => T, per = 1): T => {
      const b = make(cap * per);
      b.set(a.subarray(0, this.n * per));
      return b;
    };
    this.ids = grow(this.ids, (k) => new Uint8Array(k), ID);
    this.heads = grow(this.heads, (k) => new Uint32Array(k));
    this.offsets = grow(this.offsets, (k) => new Float64Array(k));
    this.lengths = grow(this.lengths, (k) => new Uint32Array(k));
    this.starts = grow(this.starts, (k) => new Uint32Array(k));
    this.volumeOf = grow(this.volumeOf, (k) => new Uint32Array(k));
    this.entryOf = grow(this.entryOf, (k) => new Uint32Array(k));
    this.cap = cap;
    this.slots = new Uint32Array(2 ** Math.ceil(Math.log2(2 * cap)));
    for (let i = 0; i < this.n; i++) this.slots[this.free(this.heads[i])] = i + 1;
  }

  private static head(id: Uint8Array): number {
    return ((id[0] << 24) | (id[1] << 16) | (id[2] << 8) | id[3]) >>> 0;
  }

  /** The first free slot on `head`'s probe sequence. */
  private free(head: number): number {
    const mask = this.slots.length - 1;
    let s = head & mask;
    while (this.slots[s] !== 0) s = (s + 1) & mask;
    return s;
  }

  /** The entry of `id`, or -1. */
  private find(id: Uint8Array): number {
    if (id.length !== ID) throw new Error(`block id of ${id.length} bytes, not ${ID}`);
    const head = PlaceTable.head(id);
    const mask = this.slots.length - 1;
    for (let s = head & mask; ; s = (s + 1) & mask) {
      const i = this.slots[s] - 1;
      if (i < 0) return -1;
      if (this.heads[i] !== head) continue;
      let k = 4;
      const at = i * ID;
      while (k < ID && this.ids[at + k] === id[k]) k++;
      if (k === ID) return i;
    }
  }

  private add(id: Uint8Array): number {
    if (this.n === this.cap) this.resize(this.cap * 2);
    const i = this.n++;
    const head = PlaceTable.head(id);
    this.ids.set(id, i * ID);
    this.heads[i] = head;
    this.slots[this.free(head)] = i + 1;
    return i;
  }

  private place(i: number): Placement {
    const p: Placement = { volume: this.volumes[this.volumeOf[i]], dataOffset: this.offsets[i], length: this.lengths[i], entry: this.entries[this.entryOf[i]] };
    if (this.starts[i] > 0) p.start = this.starts[i] - 1;
    return p;
  }

  get(id: Uint8Array): Placement | Writing | undefined {
    const i = this.find(id);
    if (i < 0) return undefined;
    return this.held[i] ?? this.place(i);
  }

  /** Notes a block being written: `get` gives its holder until it is settled. */
  pending(id: Uint8Array, holder: Writing): void {
    let i = this.find(id);
    if (i < 0) i = this.add(id);
    else if (this.held[i] === undefined) this.settled--;
    this.held[i] = holder;
  }

  /** Records the place of a block (once written). */
  settle(id: Uint8Array, p: Placement): void {
    let i = this.find(id);
    if (i < 0) { i = this.add(id); this.settled++; } else if (this.held[i] !== undefined) this.settled++;
    this.held[i] = undefined;
    this.volumeOf[i] = nameIndex(this.volumes, p.volume);
    this.entryOf[i] = nameIndex(this.entries, p.entry);
    this.offsets[i] = p.dataOffset;
    this.lengths[i] = p.length;
    this.starts[i] = p.start === undefined ? 0 : p.start + 1;
  }

  /**
   * Hands the settled places to `put` in the order of their ids' bytes and forgets them;
   * the holders stay.
   */
  drain(put: (id: Uint8Array, p: Placement) => void): void {
    const done: number[] = [];
    for (let i = 0; i < this.n; i++) if (this.held[i] === undefined) done.push(i);
    const { ids, heads } = this;
    done.sort((a, b) => {
      if (heads[a] !== heads[b]) return heads[a] < heads[b] ? -1 : 1;
      for (let k = 4; k < ID; k++) {
        const d = ids[a * ID + k] - ids[b * ID + k];
        if (d !== 0) return d;
      }
      return 0;
    });
    for (const i of done) put(ids.subarray(i * ID, (i + 1) * ID), this.place(i));
    // What is still being written starts the table again.
    const keep: { id: Uint8Array; holder: Writing }[] = [];
    for (let i = 0; i < this.n; i++) { const h = this.held[i]; if (h) keep.push({ id: ids.slice(i * ID, (i + 1) * ID), holder: h }); }
    this.n = 0;
    this.settled = 0;
    this.held = [];
    this.volumes = [];
    this.entries = [];
    this.slots.fill(0);
    for (const k of keep) this.pending(k.id, k.holder);
  }
}

/**
 * Blocks this run stored or is storing, by keyed id: recent ones in memory (those still
 * being written as holders their writer step fills in; PlaceTable), older ones in sorted
 * tables on disk, each behind a Bloom filter so a block stored nowhere costs no read.
 */
export class RunBlocks {
  private readonly recent = new PlaceTable();
  private readonly spilled: { table: SortedTable; bloom: IdBloom }[] = [];
  constructor(private readonly dir: string, private readonly inMemory = RUN_BLOCKS_IN_MEMORY) {}

  get(id: Uint8Array): Placement | Writing | undefined {
    const hit = this.recent.get(id);
    if (hit) return hit;
    for (const s of this.spilled) {
      if (!s.bloom.has(id)) continue;
      const got = s.table.get(id);
      if (got) return parsePlacement(got.value);
    }
    return undefined;
  }

  pending(id: Uint8Array, slot: Writing): void {
    this.recent.pending(id, slot);
  }

  /** Records the place of a block once written. */
  settle(id: Uint8Array, place: Placement): void {
    this.recent.settle(id, place);
    if (this.recent.settled >= this.inMemory) this.spill();
  }

  private spill(): void {
    const table = new SortedTable(join(this.dir, `run-blocks.${this.spilled.length}`), ID);
    const bloom = new IdBloom(this.recent.settled);
    this.recent.drain((id, p) => {
      table.append(id, placementValue(p));
      bloom.add(id);
    });
    this.spilled.push({ table: table.finish(), bloom });
  }

  /** Removes the tables. */
  close(): void {
    for (const s of this.spilled) s.table.close();
  }
}

export function isWriting(p: Placement | Writing): p is Writing {
  return (p as Writing).placement !== undefined;
}
