/**
 * The repository as a whole (SPEC.md "Repository layout", "Locks"): its config, the
 * public keys it carries, the signed snapshot records and the lock. Everything here
 * works with public keys only.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type * as openpgp from 'openpgp';
import { FormatError, LockedError, NotFoundError, AuthError, IebsError } from '../formats/errors.js';
import { decodeSnapshotRecord, encodeSnapshotRecord, type SnapshotRecord } from '../formats/snapshot.js';
import { formatTime, parseTime, toHex } from '../formats/text.js';
import { SNAPSHOT_RE } from '../formats/names.js';
import type { Storage } from './storage.js';
import { pgpClearSign, pgpClearVerify, sha384 } from './crypto.js';
import { parsePublicKeys } from './keys.js';

/** Object names of the layout. */
export const LAYOUT = {
  config: 'config',
  publicKeys: 'keys/public.asc',
  snapshots: 'snapshots',
  manifests: 'manifests',
  indexes: 'indexes',
  volumes: 'volumes',
  lock: 'locks/lock',
} as const;

/** Object name of a snapshot record. */
export const recordObject = (name: string) => `${LAYOUT.snapshots}/${name}.snapshot.asc`;

/** The repository config. */
export interface RepoConfig { id: string; created: bigint }

const CONFIG_MAGIC = 'IEBS-REPOSITORY 1';

/** Encodes the config object. */
export function encodeConfig(c: RepoConfig): string {
  return `${CONFIG_MAGIC}\nid ${c.id}\ncreated ${formatTime(c.created)}\n`;
}

/** Decodes the config object. */
export function decodeConfig(text: string, where: string): RepoConfig {
  const lines = text.split('\n');
  if (lines[0] !== CONFIG_MAGIC) {
    throw new FormatError(lines[0]?.startsWith('IEBS-REPOSITORY ') ? 'unknown-version' : 'bad-magic', `${where}: not an iebs repository config of a known version`);
  }
  const id = /^id ([0-9a-f]{32})$/.exec(lines[1] ?? '');
  const created = /^created (\S+)$/.exec(lines[2] ?? '');
  if (!id || !created || lines.length !== 4 || lines[3] !== '') throw new FormatError('bad-line', `${where}: malformed repository config`);
  return { id: id[1], created: parseTime(created[1], where) };
}

/** Reads the config; NotFoundError when the destination holds no repository. */
export async function readConfig(storage: Storage): Promise<RepoConfig> {
  if ((await storage.stat(LAYOUT.config)) === null) throw new NotFoundError('no-repository', `${storage.where}: no iebs repository here (run iebs init, or iebs backup to create one)`);
  return decodeConfig(Buffer.from(await storage.get(LAYOUT.config)).toString('latin1'), `${storage.where}/config`);
}

/** Creates a repository; refuses a destination that already holds one. */
export async function initRepo(storage: Storage, publicArmored: string, now: bigint): Promise<RepoConfig> {
  if ((await storage.stat(LAYOUT.config)) !== null) throw new IebsError('exists', `${storage.where}: already an iebs repository`);
  const config = { id: toHex(new Uint8Array(randomBytes(16))), created: now };
  await storage.put(LAYOUT.publicKeys, publicArmored);
  await storage.put(LAYOUT.config, encodeConfig(config));
  return config;
}

/** The public keys stored in the repository (trusted only as far as the repository is). */
export async function repoPublicKeys(storage: Storage): Promise<openpgp.PublicKey[]> {
  return parsePublicKeys(Buffer.from(await storage.get(LAYOUT.publicKeys)).toString('utf8'), `${storage.where}/${LAYOUT.publicKeys}`);
}

/** A verified snapshot record with the sha384 of its text. */
export interface Snapshot { record: SnapshotRecord; sha384: Uint8Array; object: string }

/** Signs and stores a snapshot record: the commit point of a backup. */
export async function writeRecord(storage: Storage, record: SnapshotRecord, signer: openpgp.PrivateKey): Promise<Snapshot> {
  const text = encodeSnapshotRecord(record);
  const object = recordObject(record.name);
  if ((await storage.stat(object)) !== null) throw new IebsError('exists', `${object} already exists`);
  await storage.put(object, await pgpClearSign(text, signer));
  return { record, sha384: sha384(text), object };
}

/** A record that failed to load, for verify to report. */
export interface BadRecord { object: string; error: IebsError }

/**
 * Lists and verifies every snapshot record. Records that do not verify are returned in
 * `bad` (verify reports them; other commands refuse to use them).
 */
export async function listSnapshots(storage: Storage, verifiers: openpgp.PublicKey[]): Promise<{ snapshots: Snapshot[]; bad: BadRecord[] }> {
  const snapshots: Snapshot[] = [];
  const bad: BadRecord[] = [];
  for (const object of await storage.list(LAYOUT.snapshots)) {
    try {
      const m = /^snapshots\/(.+)\.snapshot\.asc$/.exec(object);
      if (!m || !SNAPSHOT_RE.test(m[1])) throw new FormatError('bad-name', `${object}: not a snapshot record name`);
      const size = await storage.stat(object);
      if (size === null) continue;
      if (size > 4 * 1024 * 1024) throw new FormatError('absurd-size', `${object}: larger than 4 MiB`);
      const armored = Buffer.from(await storage.get(object)).toString('utf8');
      const text = await pgpClearVerify(armored, verifiers, object);
      const record = decodeSnapshotRecord(text, object);
      if (record.name !== m[1]) throw new AuthError('renamed', `${object}: record says it is ${record.name} (renamed or replayed)`);
      snapshots.push({ record, sha384: sha384(text), object });
    } catch (e) {
      if (!(e instanceof IebsError)) throw e;
      bad.push({ object, error: e });
    }
  }
  snapshots.sort((a, b) => (a.record.system < b.record.system ? -1 : a.record.system > b.record.system ? 1 : a.record.sequence - b.record.sequence));
  return { snapshots, bad };
}

/**
 * The restore chain of a snapshot: its full, then each increment up to it, following
 * parent links and checking each link's hash.
 */
export function chainOf(target: Snapshot, all: Snapshot[]): Snapshot[] {
  const byName = new Map(all.map((s) => [s.record.name, s]));
  const chain: Snapshot[] = [target];
  let cur = target;
  while (cur.record.type === 'increment') {
    const p = cur.record.parent;
    const parent = p && byName.get(p.name);
    if (!p || !parent) throw new NotFoundError('broken-chain', `${cur.record.name}: its parent ${p?.name ?? '(none)'} is missing`);
    if (!Buffer.from(parent.sha384).equals(p.sha384)) throw new AuthError('broken-chain', `${cur.record.name}: its parent ${p.name} is not the one it was made after (hash differs)`);
    if (parent.record.chain !== target.record.chain) throw new FormatError('broken-chain', `${cur.record.name}: parent ${p.name} belongs to another chain`);
    chain.unshift(parent);
    cur = parent;
  }
  return chain;
}

/** Finds a snapshot by name, `latest` (of an optional system) or a unique prefix. */
export function findSnapshot(all: Snapshot[], id: string | undefined, system?: string): Snapshot {
  const pool = system ? all.filter((s) => s.record.system === system) : all;
  if (pool.length === 0) throw new NotFoundError('no-snapshot', system ? `no snapshot of system ${system}` : 'the repository holds no snapshot');
  if (!id || id === 'latest') return pool.reduce((a, b) => (b.record.time > a.record.time ? b : a));
  const exact = pool.find((s) => s.record.name === id);
  if (exact) return exact;
  const pre = pool.filter((s) => s.record.name.startsWith(id));
  if (pre.length === 1) return pre[0];
  throw new NotFoundError('no-snapshot', pre.length ? `${id} names ${pre.length} snapshots; give more of the name` : `no snapshot named ${id}`);
}

/** What a lock file says. */
interface LockInfo { host: string; pid: number; time: string; run: string }

/** Holds the repository lock; `release()` removes it. */
export interface Lock { release(): Promise<void> }

/**
 * Takes the exclusive repository lock. A lock left by a dead process on this host is
 * removed; one held by a live process or another host is a LockedError that says who.
 */
export async function acquireLock(storage: Storage, forceStale = false): Promise<Lock> {
  const me: LockInfo = { host: hostname(), pid: process.pid, time: new Date().toISOString(), run: randomBytes(8).toString('hex') };
  for (let attempt = 0; attempt < 2; attempt++) {
    if (await storage.createExclusive(LAYOUT.lock, JSON.stringify(me) + '\n')) {
      return {
        release: async () => {
          const cur = await readLock(storage);
          if (cur?.run === me.run) await storage.delete(LAYOUT.lock);
        },
      };
    }
    const held = await readLock(storage);
    if (held && held.host === me.host && !alive(held.pid)) { await storage.delete(LAYOUT.lock); continue; }
    if (!held && attempt === 0) { await storage.delete(LAYOUT.lock); continue; }
    if (forceStale) { await storage.delete(LAYOUT.lock); continue; }
    throw new LockedError('locked', `${storage.where} is locked by pid ${held?.pid ?? '?'} on ${held?.host ?? '?'} since ${held?.time ?? '?'} (if that process is gone, run iebs unlock --repo ${storage.where})`);
  }
  throw new LockedError('locked', `${storage.where}: could not take the lock`);
}

/** Removes the lock whoever holds it (`iebs unlock`). Returns whether there was one. */
export async function breakLock(storage: Storage): Promise<boolean> {
  const had = (await storage.stat(LAYOUT.lock)) !== null;
  if (had) await storage.delete(LAYOUT.lock);
  return had;
}

async function readLock(storage: Storage): Promise<LockInfo | null> {
  try {
    const j = JSON.parse(Buffer.from(await storage.get(LAYOUT.lock)).toString('utf8'));
    if (typeof j.host === 'string' && Number.isInteger(j.pid) && typeof j.run === 'string') return j as LockInfo;
    return null;
  } catch { return null; }
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}
