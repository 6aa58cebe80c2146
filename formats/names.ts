/**
 * Names of repository objects and tar entries (SPEC.md "Repository layout" and
 * "Volume format"): snapshot names in the IEBS scheme, volume names, and the
 * UUID-sharded block entry paths `55/550e8400-…/00000/00000311`.
 */
import { FormatError } from './errors.js';
import type { Where } from './text.js';

/** A system name: what the snapshots of one machine are filed under. */
export const SYSTEM_RE = /^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$/;
/** A snapshot name: `SYSTEM_yyyy-mm-dd_full[-N]` or `SYSTEM_yyyy-mm-dd_increment_yyyy-mm-dd-hh-mm[-N]`. */
export const SNAPSHOT_RE = /^([A-Za-z0-9][A-Za-z0-9.-]{0,62})_(\d{4}-\d{2}-\d{2})_(full|increment_\d{4}-\d{2}-\d{2}-\d{2}-\d{2})(-[1-9][0-9]{0,5})?$/;
/** A volume object name: `<snapshot>.files.NNNN.tar`, numbered from 0001. */
export const VOLUME_RE = /^([A-Za-z0-9][A-Za-z0-9._-]{0,127})\.files\.(\d{4})\.tar$/;
/** A host name as recorded in archive lines. */
export const HOST_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;
/** A lower-case RFC 4122 textual UUID. */
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Blocks per folder in the IEBS layout. */
export const BLOCKS_PER_FOLDER = 10000;
/** Highest block index the 8-digit entry name can hold. */
export const MAX_BLOCK_INDEX = 99_999_999;

/** The tar entry name of block `index` of the file with `uuid`. */
export function blockEntry(uuid: string, index: number): string {
  if (!Number.isInteger(index) || index < 0 || index > MAX_BLOCK_INDEX) throw new FormatError('absurd-size', `block index ${index} out of range`);
  const folder = Math.floor(index / BLOCKS_PER_FOLDER);
  return `${uuid.slice(0, 2)}/${uuid}/${String(folder).padStart(5, '0')}/${String(index).padStart(8, '0')}`;
}

/** Parses a block entry name; rejects anything that does not have exactly that shape. */
export function parseBlockEntry(name: string, where: Where): { uuid: string; index: number } {
  const m = /^([0-9a-f]{2})\/([0-9a-f-]{36})\/(\d{5})\/(\d{8})$/.exec(name);
  if (!m || !UUID_RE.test(m[2]) || m[2].slice(0, 2) !== m[1]) throw new FormatError('bad-entry', `${where}: ${JSON.stringify(name.slice(0, 80))} is not a block entry name`);
  const index = Number(m[4]);
  if (Math.floor(index / BLOCKS_PER_FOLDER) !== Number(m[3])) throw new FormatError('bad-entry', `${where}: block ${m[4]} is filed under the wrong folder ${m[3]}`);
  return { uuid: m[2], index };
}

/** The name of volume `n` (1-based) of a snapshot. */
export function volumeName(snapshot: string, n: number): string {
  if (!Number.isInteger(n) || n < 1 || n > 9999) throw new FormatError('absurd-size', `volume number ${n} out of range 1..9999`);
  return `${snapshot}.files.${String(n).padStart(4, '0')}.tar`;
}

/** Checks a name against a pattern and throws a FormatError naming `what`. */
export function checkName(re: RegExp, value: string, what: string, where: Where): string {
  if (!re.test(value)) throw new FormatError('bad-name', `${where}: ${JSON.stringify(value.slice(0, 80))} is not a valid ${what}`);
  return value;
}

/** UTC date `yyyy-mm-dd` of a time in nanoseconds. */
export function utcDate(ns: bigint): string {
  return new Date(Number(ns / 1_000_000n)).toISOString().slice(0, 10);
}

/** UTC `yyyy-mm-dd-hh-mm` of a time in nanoseconds. */
export function utcMinute(ns: bigint): string {
  const iso = new Date(Number(ns / 1_000_000n)).toISOString();
  return `${iso.slice(0, 10)}-${iso.slice(11, 13)}-${iso.slice(14, 16)}`;
}

/**
 * The IEBS name of a new snapshot. `fullTime` is the time of the chain's full (for a
 * full, its own time); `taken` says whether a candidate name is already used, and the
 * first free of `name`, `name-2`, `name-3`, … is returned.
 */
export function snapshotName(system: string, type: 'full' | 'increment', fullTime: bigint, time: bigint, taken: (name: string) => boolean): string {
  checkName(SYSTEM_RE, system, 'system name', 'snapshot name');
  const base = type === 'full' ? `${system}_${utcDate(fullTime)}_full` : `${system}_${utcDate(fullTime)}_increment_${utcMinute(time)}`;
  if (!taken(base)) return base;
  for (let i = 2; i < 1_000_000; i++) if (!taken(`${base}-${i}`)) return `${base}-${i}`;
  throw new FormatError('absurd-size', `no free snapshot name for ${base}`);
}

/** Object names of the layout (SPEC.md "Repository layout"). */
export const LAYOUT = {
  config: 'config',
  publicKeys: 'keys/public.asc',
  snapshots: 'snapshots',
  manifests: 'manifests',
  indexes: 'indexes',
  volumes: 'volumes',
  lock: 'locks/lock',
} as const;

/**
 * The repository's copy of the public keys, generation `n` (SPEC.md "Repository layout"):
 * `keys/public.asc` is the first; each change of keys adds `keys/public.N.asc` (N from 2),
 * never replacing one, and the highest generation is the current one.
 */
export function publicKeysObject(n: number): string {
  if (!Number.isSafeInteger(n) || n < 1 || n > 999999) throw new FormatError('absurd-size', `public keys generation ${n} out of range 1..999999`);
  return n === 1 ? LAYOUT.publicKeys : `keys/public.${n}.asc`;
}

/** The generation a `keys/` object name is, or null when it is no public keys object. */
export function publicKeysGeneration(name: string): number | null {
  if (name === LAYOUT.publicKeys) return 1;
  const m = /^keys\/public\.([2-9]|[1-9][0-9]{1,5})\.asc$/.exec(name);
  return m ? Number(m[1]) : null;
}

/** Object name of a snapshot record. */
export const recordObject = (name: string) => `${LAYOUT.snapshots}/${name}.snapshot.asc`;
