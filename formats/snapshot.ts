/**
 * The snapshot record (SPEC.md "Snapshot record"): the public, signed statement that a
 * snapshot exists, what it is made of and what it follows. Its existence is the commit
 * point of a backup. The record is ASCII lines in a fixed order; it is stored as an
 * OpenPGP cleartext-signed message, and its sha384 (over exactly these bytes) is what
 * the next snapshot's `parent` line carries.
 */
import { FormatError } from './errors.js';
import { checkName, HOST_RE, SNAPSHOT_RE, SYSTEM_RE, VOLUME_RE } from './names.js';
import { formatDigest, formatSha384, formatTime, parseDigest, parseSha384, parseTime, parseUint } from './text.js';

/** An object of the repository with its size and digest (sha384; a volume's may be sha256). */
export interface ObjectRef { name: string; size: number; digest: Uint8Array }

/** Counts that `snapshots` prints without decrypting anything. */
export interface SnapshotCounts {
  files: number; bytes: number; new: number; changed: number; unchanged: number; deleted: number; stored: number;
}

/** A snapshot record. */
export interface SnapshotRecord {
  name: string;
  system: string;
  host: string;
  /**
   * Keyed id of the set of source paths the snapshot backed up (SPEC.md section 4), 32
   * lower-case hex digits; records of version 1 carry none.
   */
  sources?: string;
  type: 'full' | 'increment';
  time: bigint;
  /** Position among all snapshots of the system, from 0. */
  sequence: number;
  /** The full snapshot this one's restore chain starts at (itself for a full). */
  chain: string;
  parent?: { name: string; sha384: Uint8Array };
  manifest: ObjectRef;
  index: ObjectRef;
  volumes: ObjectRef[];
  counts: SnapshotCounts;
  /** The version read (a parser sets it); a writer writes the newest the record allows when it is absent. */
  version?: number;
}

/**
 * Version 1 has no sources line; version 2 has one; version 3 is version 2 whose volume
 * lines may name a sha256 digest. A writer writes version 3 (version 1 for a record
 * without sources, which only tests still make).
 */
const MAGICS = ['IEBS-SNAPSHOT 1', 'IEBS-SNAPSHOT 2', 'IEBS-SNAPSHOT 3'];
const SOURCES_RE = /^[0-9a-f]{32}$/;
const COUNT_KEYS: (keyof SnapshotCounts)[] = ['files', 'bytes', 'new', 'changed', 'unchanged', 'deleted', 'stored'];

/** Object name of a snapshot's manifest. */
export const manifestObject = (snapshot: string) => `${snapshot}.manifest.pgp`;
/** Object name of a snapshot's index. */
export const indexObject = (snapshot: string) => `${snapshot}.index`;

const ref = (key: string, o: ObjectRef) => `${key} ${o.name} ${o.size} ${key === 'volume' ? formatDigest(o.digest) : formatSha384(o.digest)}\n`;

/** Encodes a record to the exact text that is signed and hashed. */
export function encodeSnapshotRecord(r: SnapshotRecord): string {
  const version = r.version ?? (r.sources === undefined ? 1 : 3);
  if ((version === 1) !== (r.sources === undefined)) throw new FormatError('bad-line', `${r.name}: a record of version ${version} ${version === 1 ? 'has no' : 'needs its'} sources line`);
  if (version < 3 && r.volumes.some((v) => v.digest.length !== 48)) throw new FormatError('bad-hash', `${r.name}: a record of version ${version} has sha384 volumes only`);
  let s = `${MAGICS[version - 1]}\nname ${r.name}\nsystem ${r.system}\nhost ${r.host}\n`;
  if (r.sources !== undefined) s += `sources ${r.sources}\n`;
  s += `type ${r.type}\ntime ${formatTime(r.time)}\n`;
  s += `sequence ${r.sequence}\nchain ${r.chain}\n`;
  s += r.parent ? `parent ${r.parent.name} ${formatSha384(r.parent.sha384)}\n` : 'parent -\n';
  s += ref('manifest', r.manifest) + ref('index', r.index);
  for (const v of r.volumes) s += ref('volume', v);
  for (const k of COUNT_KEYS) s += `${k} ${r.counts[k]}\n`;
  return s;
}

/** Decodes a record; the fields must come in the order `encodeSnapshotRecord` writes. */
export function decodeSnapshotRecord(text: string, where: string): SnapshotRecord {
  if (text.length > 4 * 1024 * 1024) throw new FormatError('absurd-size', `${where}: snapshot record larger than 4 MiB`);
  if (!text.endsWith('\n')) throw new FormatError('truncated', `${where}: snapshot record does not end with a newline`);
  const lines = text.slice(0, -1).split('\n');
  let i = 0;
  const next = (key: string): string[] => {
    const line = lines[i++];
    if (line === undefined) throw new FormatError('truncated', `${where}: snapshot record ends before "${key}"`);
    const f = line.split(' ');
    if (f[0] !== key) throw new FormatError('bad-line', `${where} line ${i}: expected "${key}"`);
    return f.slice(1);
  };
  const one = (key: string) => {
    const f = next(key);
    if (f.length !== 1) throw new FormatError('bad-line', `${where} line ${i}: "${key}" takes one value`);
    return f[0];
  };
  // A volume's digest is sha384, or in version 3 sha256 too; a manifest's and an index's are sha384.
  const objRef = (f: string[], volume: boolean): ObjectRef => {
    if (f.length !== 3) throw new FormatError('bad-line', `${where} line ${i}: object line needs name, size and digest`);
    if (volume) checkName(VOLUME_RE, f[0], 'volume name', `${where} line ${i}`);
    return { name: f[0], size: parseUint(f[1], `${where} line ${i}`), digest: parseDigest(f[2], `${where} line ${i}`, volume && version === 3) };
  };
  const version = MAGICS.indexOf(lines[i++]) + 1;
  if (version === 0) {
    if (lines[0]?.startsWith('IEBS-SNAPSHOT ')) throw new FormatError('unknown-version', `${where}: unknown snapshot record version`);
    throw new FormatError('bad-magic', `${where}: not an iebs snapshot record`);
  }
  const name = checkName(SNAPSHOT_RE, one('name'), 'snapshot name', where);
  const system = checkName(SYSTEM_RE, one('system'), 'system name', where);
  const host = checkName(HOST_RE, one('host'), 'host name', where);
  let sources: string | undefined;
  if (version > 1) {
    sources = one('sources');
    if (!SOURCES_RE.test(sources)) throw new FormatError('bad-id', `${where}: the sources id is not 32 lower-case hex digits`);
  }
  const type = one('type');
  if (type !== 'full' && type !== 'increment') throw new FormatError('bad-line', `${where}: unknown snapshot type ${JSON.stringify(type)}`);
  const time = parseTime(one('time'), where);
  const sequence = parseUint(one('sequence'), where);
  const chain = checkName(SNAPSHOT_RE, one('chain'), 'snapshot name', where);
  const p = next('parent');
  let parent: SnapshotRecord['parent'];
  if (p.length === 2) parent = { name: checkName(SNAPSHOT_RE, p[0], 'snapshot name', where), sha384: parseSha384(p[1], where) };
  else if (!(p.length === 1 && p[0] === '-')) throw new FormatError('bad-line', `${where}: bad parent line`);
  const manifest = objRef(next('manifest'), false);
  const index = objRef(next('index'), false);
  if (manifest.name !== manifestObject(name) || index.name !== indexObject(name)) throw new FormatError('bad-name', `${where}: manifest or index object is not named after the snapshot`);
  const volumes: ObjectRef[] = [];
  while (lines[i]?.startsWith('volume ')) {
    const v = objRef(next('volume'), true);
    if (!v.name.startsWith(name + '.files.')) throw new FormatError('bad-name', `${where}: volume ${v.name} does not belong to ${name}`);
    volumes.push(v);
  }
  const counts = {} as SnapshotCounts;
  for (const k of COUNT_KEYS) counts[k] = parseUint(one(k), where);
  if (i !== lines.length) throw new FormatError('trailing-data', `${where}: unexpected line ${i + 1}`);
  if ((type === 'full') !== (chain === name)) throw new FormatError('bad-line', `${where}: a full is its own chain, an increment is not`);
  if ((sequence === 0) !== (parent === undefined)) throw new FormatError('bad-line', `${where}: only the first snapshot of a system has no parent`);
  return { name, system, host, ...(sources === undefined ? {} : { sources }), type, time, sequence, chain, parent, manifest, index, volumes, counts, version };
}
