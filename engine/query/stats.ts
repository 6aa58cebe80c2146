/**
 * `stats`: sizes of snapshots and of the repository, and what dedup and compression
 * saved.
 *
 * From the signed records alone (public keys): per snapshot its entries, their bytes
 * (what a restore writes) and the bytes of its own volumes; for the repository the sum
 * of volume bytes, manifests and indexes, against the bytes all snapshots would restore.
 *
 * With the restore key, from the manifests:
 * - of one snapshot (composed through its chain on scratch disk): files, directories,
 *   symlinks, and its distinct blocks (by digest: a content in a sha384 chain and in a sha256 chain counts twice): how many, their plain bytes (what is
 *   left of its bytes after dedup) and their stored bytes (sealed envelopes, after
 *   compression), wherever in the chain they are stored;
 * - of the repository: every stored block any manifest names, each counted once by its
 *   place (volume and offset): plain and stored bytes, so that dedup (restore bytes of
 *   all snapshots against distinct plain bytes) and compression (plain against stored)
 *   come apart. Every manifest is read once; the distinct places go through an
 *   external sort, so memory does not grow with the number of blocks.
 */
import { formatTime } from '../../formats/text.js';
import type { RestoreKey } from '../crypto/keys.js';
import type { Storage } from '../storage/storage.js';
import type * as openpgp from 'openpgp';
import { findSnapshot, listSnapshots, readConfig, type Snapshot } from '../repo/repo.js';
import { readManifest } from '../repo/manifest-object.js';
import { ExternalSorter, removeScratchDir, scratchDir } from '../scratch/sorter.js';
import type { BlockRef } from '../../formats/manifest.js';
import { ComposedSnapshot, readableSnapshots } from '../restore/compose.js';

/** What a snapshot's record says of it. */
export interface SnapshotFigures {
  name: string; system: string; type: 'full' | 'increment'; time: string; chain: string;
  files: number; bytes: number; new: number; changed: number; unchanged: number; deleted: number;
  /** Bytes of this snapshot's own volumes. */
  stored: number;
  /** Bytes of its manifest and index. */
  metadata: number;
}

/** Repository totals from the records. */
export interface RepoFigures {
  snapshots: number; systems: number; chains: number;
  /** Bytes every snapshot would restore, summed. */
  restoreBytes: number;
  /** Bytes of all volumes. */
  volumeBytes: number;
  /** Bytes of all manifests and indexes. */
  metadataBytes: number;
  /** restoreBytes / (volumeBytes + metadataBytes): what storing snapshots as increments, dedup and compression saved together. */
  ratio: number;
}

/** Distinct blocks and their bytes. */
export interface BlockFigures {
  blocks: number;
  /** Their plaintext bytes. */
  plainBytes: number;
  /** Their sealed envelopes' bytes (compressed, plus 36 bytes each). */
  storedBytes: number;
}

/** What the restore key adds for one snapshot. */
export interface SnapshotContents extends BlockFigures {
  name: string;
  files: number; dirs: number; symlinks: number;
  /** Bytes of its files: what a restore writes. */
  bytes: number;
  /** bytes / plainBytes: what dedup saved within the snapshot. */
  dedupRatio: number;
  /** plainBytes / storedBytes: what compression saved on its blocks. */
  compressionRatio: number;
}

/** What the restore key adds for the repository. */
export interface RepoContents extends BlockFigures {
  /** Bytes of volumes that are not block envelopes: tar headers, volume headers, catalogues. */
  overheadBytes: number;
  /** restoreBytes / plainBytes. */
  dedupRatio: number;
  /** plainBytes / storedBytes. */
  compressionRatio: number;
}

/** What `stats` returns. */
export interface Stats { snapshots: SnapshotFigures[]; repository: RepoFigures; contents?: { snapshot?: SnapshotContents; repository?: RepoContents } }

/** Options of stats. */
export interface StatsOptions {
  /** One snapshot (name, prefix or `latest`); all without. */
  snapshot?: string;
  system?: string;
  /** Trusted host keys (public: the figures from records). */
  verifiers: openpgp.PublicKey[];
  /** With it: the figures that need the manifests. */
  restoreKey?: RestoreKey;
  arena?: number;
}

const ratio = (a: number, b: number) => (b > 0 ? a / b : 0);

function figures(s: Snapshot): SnapshotFigures {
  const r = s.record;
  return {
    name: r.name, system: r.system, type: r.type, time: formatTime(r.time), chain: r.chain,
    files: r.counts.files, bytes: r.counts.bytes, new: r.counts.new, changed: r.counts.changed, unchanged: r.counts.unchanged, deleted: r.counts.deleted,
    stored: r.counts.stored, metadata: r.manifest.size + r.index.size,
  };
}

/** Gathers the figures (SPEC.md "Snapshot record and chain" for what records count). */
export async function stats(storage: Storage, o: StatsOptions): Promise<Stats> {
  await readConfig(storage);
  const key = o.restoreKey;
  const { snapshots, bad, verifiers } = key ? await readableSnapshots(storage, key) : { ...(await listSnapshots(storage, o.verifiers)), verifiers: o.verifiers };
  const all = snapshots.filter((s) => !o.system || s.record.system === o.system);
  if (o.system || o.snapshot || snapshots.length === 0) findSnapshot(snapshots, o.snapshot ?? 'latest', o.system, bad);
  const chosen = o.snapshot ? [findSnapshot(snapshots, o.snapshot, o.system, bad)] : all;
  const repository: RepoFigures = {
    snapshots: all.length, systems: new Set(all.map((s) => s.record.system)).size, chains: new Set(all.map((s) => `${s.record.system}\0${s.record.chain}`)).size,
    restoreBytes: 0, volumeBytes: 0, metadataBytes: 0, ratio: 0,
  };
  for (const s of all) {
    repository.restoreBytes += s.record.counts.bytes;
    repository.volumeBytes += s.record.volumes.reduce((n, v) => n + v.size, 0);
    repository.metadataBytes += s.record.manifest.size + s.record.index.size;
  }
  repository.ratio = ratio(repository.restoreBytes, repository.volumeBytes + repository.metadataBytes);
  const out: Stats = { snapshots: chosen.map(figures), repository };
  if (!key) return out;
  if (o.snapshot) out.contents = { snapshot: await snapshotContents(storage, key, verifiers, chosen[0], snapshots, o.arena) };
  else {
    const blocks = await storedBlocks(storage, key, verifiers, all, o.arena);
    out.contents = {
      repository: {
        ...blocks, overheadBytes: repository.volumeBytes - blocks.storedBytes,
        dedupRatio: ratio(repository.restoreBytes, blocks.plainBytes), compressionRatio: ratio(blocks.plainBytes, blocks.storedBytes),
      },
    };
  }
  return out;
}

/**
 * The figures of distinct blocks: `contents` keyed by block, valued by its plain length
 * (u32); `envelopes` keyed by place in a volume, valued by the envelope's length (u32).
 * They are apart because a pack is one envelope holding many blocks (SPEC.md "Packs").
 */
function distinct(contents: ExternalSorter, envelopes: ExternalSorter): BlockFigures {
  const f: BlockFigures = { blocks: 0, plainBytes: 0, storedBytes: 0 };
  let prev: Buffer | null = null;
  for (const [k, v] of contents.sorted()) {
    if (prev && prev.equals(k)) continue;
    prev = Buffer.from(k);
    f.blocks++; f.plainBytes += v.readUInt32BE(0);
  }
  prev = null;
  for (const [k, v] of envelopes.sorted()) {
    if (prev && prev.equals(k)) continue;
    prev = Buffer.from(k);
    f.storedBytes += v.readUInt32BE(0);
  }
  return f;
}

function u32(n: number): Buffer {
  const v = Buffer.alloc(4);
  v.writeUInt32BE(n, 0);
  return v;
}

/** A key for the place of a block's envelope, or with `start`, of the block in it. */
function placeKey(b: BlockRef, start: boolean): Buffer {
  const k = Buffer.alloc(12 + b.volume.length);
  k.writeDoubleBE(b.dataOffset, 0);
  k.writeInt32BE(start ? b.start ?? -1 : -1, 8);
  k.write(b.volume, 12, 'latin1');
  return k;
}

async function snapshotContents(storage: Storage, key: RestoreKey, verifiers: openpgp.PublicKey[], s: Snapshot, all: Snapshot[], arena?: number): Promise<SnapshotContents> {
  const c = await ComposedSnapshot.compose(storage, key, verifiers, s, all, arena);
  try {
    const blocks = new ExternalSorter(c.dir, 'blocks', arena);
    const envelopes = new ExternalSorter(c.dir, 'envelopes', arena);
    try {
      const out = { name: s.record.name, files: 0, dirs: 0, symlinks: 0, bytes: 0 };
      for (const r of c.records()) {
        if (r.kind === 'dir') { out.dirs++; continue; }
        if (r.kind === 'symlink') { out.symlinks++; continue; }
        out.files++; out.bytes += r.size;
        for (const b of r.blocks) { blocks.add(b.digest, u32(b.size)); envelopes.add(placeKey(b, false), u32(b.length)); }
      }
      const f = distinct(blocks, envelopes);
      return { ...out, ...f, dedupRatio: ratio(out.bytes, f.plainBytes), compressionRatio: ratio(f.plainBytes, f.storedBytes) };
    } finally {
      blocks.close();
      envelopes.close();
    }
  } finally {
    await c.close();
  }
}

async function storedBlocks(storage: Storage, key: RestoreKey, verifiers: openpgp.PublicKey[], all: Snapshot[], arena?: number): Promise<BlockFigures> {
  const dir = scratchDir('stats');
  const places = new ExternalSorter(dir, 'places', arena);
  const envelopes = new ExternalSorter(dir, 'envelopes', arena);
  try {
    for (const s of all) {
      await readManifest(storage, key, verifiers, s, (r) => {
        if ('deleted' in r) return;
        for (const b of r.blocks) { places.add(placeKey(b, true), u32(b.size)); envelopes.add(placeKey(b, false), u32(b.length)); }
      });
    }
    return distinct(places, envelopes);
  } finally {
    places.close();
    envelopes.close();
    removeScratchDir(dir);
  }
}
