/**
 * Planning a disc set (SPEC.md "Disc sets"): which snapshots, and which of their volumes
 * go on which disc of a medium, before anything is written.
 *
 * Every disc holds the repository's config and public keys, every snapshot record,
 * manifest and index of the selection, a README.txt, SPEC.md and its label, so each
 * disc stands alone; the volumes are packed in order (system, snapshot, volume number)
 * onto as few discs as fit, a volume never split. What a disc may hold is the medium
 * less the ISO 9660 overhead and the PAR2 parity of everything on it, estimated here
 * from the same block size and recovery count the writer gives par2 (engine/disc/write.ts
 * checks the real image against the medium). The plan is a function of the repository
 * and the options only, so `disc write --disc N` run at different times writes discs of
 * one set; its hash is the set's id.
 */
import { createHash } from 'node:crypto';
import { UsageError } from '../../formats/errors.js';
import { LAYOUT, publicKeysGeneration, recordObject, utcDate } from '../../formats/names.js';
import { SET_NAME_RE } from '../../formats/disc-label.js';
import { FORGET_RE, FORGETS } from '../../formats/forget.js';
import { hostKeyNumber } from '../../formats/host-key.js';
import { chainOf, findSnapshot, listSnapshots, readConfig, type Snapshot } from '../repo/repo.js';
import { listAll, type Storage } from '../storage/storage.js';
import type * as openpgp from 'openpgp';

/** Default PAR2 redundancy, percent of a disc's source blocks (README "Discs" says why). */
export const DEFAULT_PARITY = 10;
/** PAR2 source blocks a disc is cut into (the block size follows from the disc's bytes). */
export const TARGET_BLOCKS = 200;
/** PAR2's limit on source and recovery blocks. */
const PAR2_MAX_BLOCKS = 32768;
/** Bytes set aside on each disc for the README, the label and the ISO 9660 structures, beyond per-file costs. */
const FIXED_ROOM = 2 * 1024 * 1024;
/** Named media, their capacity, and the volume size each gives (engine/disc/media.ts). */
export { MEDIA, VOLUME_SHARE, mediaVolumeSizes } from './media.js';

/** What is selected: one snapshot (with its chain), one chain, or everything. */
export type Selection = { snapshot: string } | { chain: string } | { all: true };

/** A file of a disc with its size. */
export interface DiscObject { name: string; size: number }

/** One disc of a plan. */
export interface PlannedDisc {
  number: number;
  volumes: DiscObject[];
  /** Bytes of volumes, and of everything else but parity (metadata, README, SPEC.md, label). */
  volumeBytes: number;
  otherBytes: number;
  /** Estimated PAR2 bytes and image size; free space on the medium after it. */
  parityBytes: number;
  imageBytes: number;
  free: number;
}

/** A disc set's plan. */
export interface DiscPlan {
  set: string;
  name: string;
  repository: string;
  media: number;
  parity: number;
  snapshots: Snapshot[];
  /** The metadata objects every disc holds. */
  meta: DiscObject[];
  discs: PlannedDisc[];
}

/** Options of a plan. */
export interface PlanOptions {
  media: number;
  parity?: number;
  select: Selection;
  /** The set's name; default `iebs-<repository id, 8 hex>-<date of the newest snapshot>`. */
  name?: string;
  /** Bytes of the files the writer adds that are not in the repository (SPEC.md, README, label), an upper bound. */
  extraBytes: number;
}

/** The PAR2 block size for a disc whose files (but the label) hold `bytes`: about TARGET_BLOCKS blocks, a multiple of 4. */
export function parBlockSize(bytes: number): number {
  return Math.max(4096, Math.ceil(bytes / TARGET_BLOCKS / 4) * 4);
}

/** PAR2 source blocks of files of these sizes at block size `b`. */
export function sourceBlocks(sizes: number[], b: number): number {
  return sizes.reduce((a, s) => a + Math.max(1, Math.ceil(s / b)), 0);
}

/** Recovery blocks for `percent` of `blocks` source blocks. */
export function recoveryBlocks(blocks: number, percent: number): number {
  return Math.max(1, Math.ceil((blocks * percent) / 100));
}

/** Recovery files par2 writes for `c` recovery blocks. */
export function recoveryFiles(c: number): number {
  return Math.min(8, c);
}

/** An upper bound of the PAR2 files' size for these file sizes (recovery slices, and the critical packets every file repeats). */
export function parityEstimate(sizes: number[], percent: number): number {
  const b = parBlockSize(sizes.reduce((a, s) => a + s, 0));
  const n = sourceBlocks(sizes, b);
  const c = recoveryBlocks(n, percent);
  const critical = 1024 + sizes.length * 400 + n * 24;
  return c * (b + 128) + (recoveryFiles(c) + 1) * critical * 2;
}

/** An upper bound of the image's size for files of these sizes: sectors, directory records in two trees, and a fixed room. */
export function imageEstimate(sizes: number[]): number {
  return sizes.reduce((a, s) => a + Math.ceil(s / 2048) * 2048 + 1024, 0) + FIXED_ROOM;
}

/** The snapshots a selection takes, in the order listSnapshots gives. */
export function selectSnapshots(all: Snapshot[], select: Selection): Snapshot[] {
  if ('all' in select) {
    if (all.length === 0) throw new UsageError('missing-argument', 'the repository holds no snapshot');
    return all;
  }
  if ('chain' in select) {
    const head = findSnapshot(all, select.chain);
    const chain = all.filter((s) => s.record.chain === head.record.chain);
    return chain;
  }
  const target = findSnapshot(all, select.snapshot);
  const names = new Set(chainOf(target, all).map((s) => s.record.name));
  return all.filter((s) => names.has(s.record.name));
}

/** Plans a disc set of the repository in `storage`. `verifiers` check the snapshot records. */
export async function planDiscs(storage: Storage, verifiers: openpgp.PublicKey[], o: PlanOptions): Promise<DiscPlan> {
  const parity = o.parity ?? DEFAULT_PARITY;
  if (!Number.isInteger(parity) || parity < 1 || parity > 100) throw new UsageError('bad-flag', `--parity ${parity}: a whole percent from 1 to 100`);
  const config = await readConfig(storage);
  const { snapshots: all, bad } = await listSnapshots(storage, verifiers);
  if (bad.length && 'all' in o.select) throw bad[0].error;
  const snapshots = selectSnapshots(all, o.select);
  const name = o.name ?? `iebs-${config.id.slice(0, 8)}-${utcDate(snapshots.reduce((a, s) => (s.record.time > a ? s.record.time : a), 0n))}`;
  if (!SET_NAME_RE.test(name)) throw new UsageError('bad-flag', `--name ${JSON.stringify(name)}: letters, digits, ".", "_" and "-", up to 64`);

  const size = async (n: string) => {
    const s = await storage.stat(n);
    if (s === null) throw new UsageError('missing-argument', `${storage.where}: ${n} is missing: the repository cannot be put on discs whole (iebs verify says more)`);
    return s;
  };
  const meta: DiscObject[] = [{ name: LAYOUT.config, size: await size(LAYOUT.config) }];
  // Every generation of the public keys (SPEC.md 2): readers take the highest, which a
  // change of recipients made, so a disc with only keys/public.asc would show stale keys.
  // And every host key statement (SPEC.md 3): the records of a replaced host key verify only through them.
  for (const k of await listAll(storage, 'keys/')) if (publicKeysGeneration(k) !== null || hostKeyNumber(k) !== null) meta.push({ name: k, size: await size(k) });
  if (!meta.some((m) => m.name === LAYOUT.publicKeys)) throw new UsageError('missing-argument', `${storage.where}: ${LAYOUT.publicKeys} is missing: the repository cannot be put on discs whole (iebs verify says more)`);
  for (const s of snapshots) {
    const r = s.record;
    meta.push({ name: recordObject(r.name), size: await size(recordObject(r.name)) });
    meta.push({ name: `${LAYOUT.manifests}/${r.manifest.name}`, size: r.manifest.size });
    meta.push({ name: `${LAYOUT.indexes}/${r.index.name}`, size: r.index.size });
  }
  // The forgets of the set's systems: without them a verifier takes a system whose first
  // snapshots were forgotten for one whose records were deleted (SPEC.md 10.1).
  const systems = new Set(snapshots.map((s) => s.record.system));
  for (const f of await listAll(storage, `${FORGETS}/`)) {
    const m = /^forgets\/(.+)\.forget\.asc$/.exec(f);
    const system = m ? FORGET_RE.exec(m[1])?.[1] : undefined;
    if (system !== undefined && systems.has(system)) meta.push({ name: f, size: await size(f) });
  }
  const volumes: DiscObject[] = snapshots.flatMap((s) => s.record.volumes.map((v) => ({ name: `${LAYOUT.volumes}/${v.name}`, size: v.size })));

  const fixed = [...meta.map((m) => m.size), o.extraBytes];
  const measure = (vols: DiscObject[]) => {
    const sizes = [...fixed, ...vols.map((v) => v.size)];
    const parityBytes = parityEstimate(sizes, parity);
    // The PAR2 files themselves: their bytes, and a sector and two records each.
    const imageBytes = imageEstimate(sizes) + parityBytes + 9 * 3072;
    return { parityBytes, imageBytes: imageBytes };
  };
  if (meta.length + 4 > PAR2_MAX_BLOCKS / 2) throw new UsageError('bad-flag', `${meta.length} metadata files are too many for one disc's PAR2 set: select fewer snapshots`);
  const empty = measure([]);
  if (empty.imageBytes > o.media) throw new UsageError('bad-size', `the selection's records, manifests and indexes with their parity (${empty.imageBytes} bytes) do not fit a disc of ${o.media} bytes: select fewer snapshots or a larger medium`);

  const discs: PlannedDisc[] = [];
  let cur: DiscObject[] = [];
  const close = () => {
    const m = measure(cur);
    const volumeBytes = cur.reduce((a, v) => a + v.size, 0);
    discs.push({ number: discs.length + 1, volumes: cur, volumeBytes, otherBytes: fixed.reduce((a, s) => a + s, 0), ...m, free: o.media - m.imageBytes });
    cur = [];
  };
  for (const v of volumes) {
    if (measure([v]).imageBytes > o.media) {
      // The largest volume that fits beside this selection's metadata and parity.
      let lo = 0, hi = o.media;
      while (hi - lo > 1 << 20) { const mid = Math.floor((lo + hi) / 2); if (measure([{ name: v.name, size: mid }]).imageBytes <= o.media) lo = mid; else hi = mid; }
      throw new UsageError('bad-size', `${v.name} (${v.size} bytes) does not fit a disc of ${o.media} bytes with the set's metadata and ${parity}% parity; at most about ${lo} bytes do (back up with --volume-size ${Math.floor(lo / 1e6)}MB or a medium's name, or choose a larger medium)`);
    }
    if (cur.length && measure([...cur, v]).imageBytes > o.media) close();
    cur.push(v);
  }
  if (cur.length || discs.length === 0) close();

  const h = createHash('sha256');
  h.update(`IEBS-DISC-PLAN 1\n${config.id}\n${name}\n${o.media}\n${parity}\n`);
  for (const m of meta) h.update(`meta ${m.name} ${m.size}\n`);
  for (const d of discs) for (const v of d.volumes) h.update(`volume ${d.number} ${v.name} ${v.size}\n`);
  return { set: h.digest('hex').slice(0, 16), name, repository: config.id, media: o.media, parity, snapshots, meta, discs };
}

/**
 * About how many discs of `media` bytes the volumes of `bytes` of new data cut at
 * `volumeSize` take with `parity`% parity (the backup dry run's estimate: no metadata).
 */
export function discsFor(bytes: number, volumeSize: number, media: number, parity = DEFAULT_PARITY): number {
  const vols: number[] = [];
  for (let left = bytes; left > 0; left -= volumeSize) vols.push(Math.min(left, volumeSize));
  let discs = 0, cur: number[] = [];
  const fits = (sizes: number[]) => imageEstimate(sizes) + parityEstimate(sizes, parity) <= media;
  for (const v of vols) {
    if (!fits([v])) return Infinity;
    if (cur.length && !fits([...cur, v])) { discs++; cur = []; }
    cur.push(v);
  }
  return discs + (cur.length ? 1 : 0);
}
