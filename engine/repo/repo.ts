/**
 * The repository as a whole (SPEC.md "Repository layout", "Locks"): its config, the
 * public keys it carries, the signed snapshot records and the lock. Everything here
 * works with public keys only.
 */
import { hostname } from 'node:os';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type * as openpgp from 'openpgp';
import { FormatError, LockedError, NotFoundError, AuthError, IebsError } from '../../formats/errors.js';
import { decodeSnapshotRecord, encodeSnapshotRecord, type SnapshotRecord } from '../../formats/snapshot.js';
import { formatTime, parseTime, toHex } from '../../formats/text.js';
import { SNAPSHOT_RE } from '../../formats/names.js';
import { isStorageCode, listAll, type Storage } from '../storage/storage.js';
import { pgpClearSign, pgpClearVerify, sha384 } from '../crypto/crypto.js';
import { parsePublicKeys } from '../crypto/keys.js';

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

/** Creates a repository; refuses (code `exists`) a destination that already holds one. */
export async function initRepo(storage: Storage, publicArmored: string, now: bigint): Promise<RepoConfig> {
  if ((await storage.stat(LAYOUT.config)) !== null) throw new IebsError('exists', `${storage.where}: already an iebs repository`);
  const config = { id: toHex(new Uint8Array(randomBytes(16))), created: now };
  try { await storage.put(LAYOUT.publicKeys, publicArmored); } catch (e) {
    if (!(e instanceof IebsError) || e.code !== 'exists') throw e;
    // Another run creates it at this moment: go on only if it uses the same keys.
    if (Buffer.from(await storage.get(LAYOUT.publicKeys)).toString('utf8') !== publicArmored) throw new IebsError('exists', `${storage.where}: already an iebs repository (being created with other keys)`);
  }
  // Puts never replace: of two runs creating the repository at once, one config wins.
  await storage.put(LAYOUT.config, encodeConfig(config));
  return config;
}

/** The public keys stored in the repository (trusted only as far as the repository is). */
export async function repoPublicKeys(storage: Storage): Promise<openpgp.PublicKey[]> {
  return parsePublicKeys(Buffer.from(await storage.get(LAYOUT.publicKeys)).toString('utf8'), `${storage.where}/${LAYOUT.publicKeys}`);
}

/** The repository's host signing key: the last key of keys/public.asc (SPEC.md "Which key is which"). */
export async function repoHostKeys(storage: Storage): Promise<openpgp.PublicKey[]> {
  return (await repoPublicKeys(storage)).slice(-1);
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
  for (const object of await listAll(storage, `${LAYOUT.snapshots}/`)) {
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

const READ = 8 * 1024 * 1024;

/** The sha384 of an object of `size` bytes, read in pieces of 8 MiB. */
export async function hashObject(storage: Storage, name: string, size: number, onBytes: (n: number) => void = () => {}): Promise<Uint8Array> {
  const h = createHash('sha384');
  for (let off = 0; off < size; off += READ) {
    const piece = await storage.getRange(name, off, Math.min(READ, size - off));
    h.update(piece);
    onBytes(piece.length);
  }
  return new Uint8Array(h.digest());
}

/**
 * What is wrong with the objects a restore of the chain's next increment would need, or
 * null (SPEC.md "Write order"): every manifest and volume present at its recorded size,
 * and every manifest of its recorded sha384. Volumes are not hashed (that is reading the
 * whole chain: verify does it). Indexes are not needed to restore; one is checked when a
 * backup reads it.
 */
export async function chainDamage(storage: Storage, chain: Snapshot[]): Promise<string | null> {
  for (const s of chain) {
    const r = s.record;
    const objects = [
      { name: `${LAYOUT.manifests}/${r.manifest.name}`, ref: r.manifest, hash: true },
      ...r.volumes.map((v) => ({ name: `${LAYOUT.volumes}/${v.name}`, ref: v, hash: false })),
    ];
    for (const o of objects) {
      const size = await storage.stat(o.name);
      if (size === null) return `${o.name} is missing`;
      if (size !== o.ref.size) return `${o.name} is ${size} bytes, its record says ${o.ref.size}`;
      if (o.hash && !Buffer.from(await hashObject(storage, o.name, size)).equals(o.ref.sha384)) return `${o.name} does not match its sha384 (damaged or replaced)`;
    }
  }
  return null;
}

/**
 * Finds a snapshot by name, `latest` (of an optional system) or a unique prefix. `bad`,
 * the records that did not load, makes a failure say why rather than that there is none.
 */
export function findSnapshot(all: Snapshot[], id: string | undefined, system?: string, bad: BadRecord[] = []): Snapshot {
  const pool = system ? all.filter((s) => s.record.system === system) : all;
  const named = id && id !== 'latest' ? bad.find((b) => b.object === recordObject(id)) : undefined;
  if (named) throw new NotFoundError('bad-snapshot', `snapshot ${id} cannot be used: ${named.error.message}`);
  if (pool.length === 0 && bad.length > 0) {
    throw new NotFoundError('no-snapshot', `no snapshot record${system ? ` of system ${system}` : ''} could be read: ${bad.length} failed, the first: ${bad[0].error.message}`);
  }
  if (pool.length === 0) throw new NotFoundError('no-snapshot', system ? `no snapshot of system ${system}` : 'the repository holds no snapshot');
  if (!id || id === 'latest') return pool.reduce((a, b) => (b.record.time > a.record.time ? b : a));
  const exact = pool.find((s) => s.record.name === id);
  if (exact) return exact;
  const pre = pool.filter((s) => s.record.name.startsWith(id));
  if (pre.length === 1) return pre[0];
  throw new NotFoundError('no-snapshot', pre.length ? `${id} names ${pre.length} snapshots; give more of the name` : `no snapshot named ${id}`);
}

/** What a lock file says (SPEC.md "Locks"). `start` identifies the process beyond its pid. */
interface LockInfo { host: string; pid: number; time: string; run: string; start?: string }

/** Holds the repository lock. */
export interface Lock {
  /** Throws a LockedError unless the lock is still this run's (call it before committing). */
  check(): Promise<void>;
  /** Removes the lock if it is still this run's. */
  release(): Promise<void>;
}

/** What reading the lock found. */
type LockState = { kind: 'none' } | { kind: 'unreadable'; why: string } | { kind: 'held'; info: LockInfo };

/** The tokens that stop two runs from both removing one stale lock. */
const breakToken = (run: string) => `locks/break-${run}`;

/**
 * Takes the exclusive repository lock (SPEC.md "Locks"). The lock is created whole and
 * never replaced, so of two runs exactly one gets it. A lock left by a dead process on
 * this host is removed, by one run only (through its break token). A lock that cannot
 * be read counts as held. Anything else is a LockedError that says who holds it.
 */
export async function acquireLock(storage: Storage): Promise<Lock> {
  const me: LockInfo = { host: hostname(), pid: process.pid, time: new Date().toISOString(), run: randomBytes(8).toString('hex'), start: processStart(process.pid) };
  const body = JSON.stringify(me) + '\n';
  const where = `${storage.where}/${LAYOUT.lock}`;
  for (let attempt = 0; attempt < 8; attempt++) {
    // A create that failed on the way back may have landed: then the lock is this run's.
    const mine = async () => { const cur = await readLock(storage); return cur.kind === 'held' && cur.info.run === me.run; };
    if (await createOnce(storage, LAYOUT.lock, body).catch(async (e) => { if (await mine().catch(() => false)) return true; throw e; }) || await mine()) {
      const check = async () => {
        const cur = await readLock(storage);
        if (cur.kind !== 'held' || cur.info.run !== me.run) throw new LockedError('lock-lost', `${where}: this run's lock was removed or replaced while it ran (iebs unlock?); nothing was committed`);
      };
      return {
        check,
        release: async () => {
          const cur = await readLock(storage);
          if (cur.kind === 'held' && cur.info.run === me.run) await storage.delete(LAYOUT.lock);
        },
      };
    }
    const held = await readLock(storage);
    if (held.kind === 'unreadable') {
      throw new LockedError('locked', `${where} exists but cannot be read (${held.why}); another run may hold it (if no iebs run uses this repository, run iebs unlock --repo ${storage.where})`);
    }
    if (held.kind === 'held' && (held.info.host !== me.host || holderAlive(held.info))) {
      const h = held.info;
      throw new LockedError('locked', `${storage.where} is locked by pid ${h.pid} on ${h.host} since ${h.time} (if that process is gone, run iebs unlock --repo ${storage.where})`);
    }
    if (held.kind === 'held') await breakStale(storage, held.info, body);
    await new Promise((r) => setTimeout(r, 20 + Math.floor(Math.random() * 80)));
  }
  throw new LockedError('locked', `${where}: could not take the lock (other runs keep taking or breaking it; if none is running, run iebs unlock --repo ${storage.where})`);
}

/**
 * Removes the stale lock `stale`, unless another run is doing so or it has changed. Only
 * the run that creates the break token of `stale.run` may delete the lock, and only while
 * the lock is still `stale`; run ids are never reused, so a lock taken afresh is safe.
 */
async function breakStale(storage: Storage, stale: LockInfo, body: string): Promise<void> {
  const token = breakToken(stale.run);
  if (!(await createOnce(storage, token, body))) return;
  try {
    const again = await readLock(storage);
    if (again.kind === 'held' && again.info.run === stale.run) await storage.delete(LAYOUT.lock);
  } finally {
    await storage.delete(token);
  }
}

/**
 * Creates a small object only if its name is free: the backend's conditional create
 * where it has one, else a put (which never replaces, but on a store without
 * conditional writes two puts may race: SPEC.md "Locks").
 */
async function createOnce(storage: Storage, name: string, data: string): Promise<boolean> {
  if (storage.createExclusive) return storage.createExclusive(name, data);
  try { await storage.put(name, data); return true; } catch (e) {
    if (isStorageCode(e, 'exists')) return false;
    throw e;
  }
}

/** What `iebs unlock` removed. */
export interface BrokenLock { removed: boolean; holder?: LockInfo }

/**
 * Removes the lock by hand (`iebs unlock`), with any break tokens. Refuses (LockedError)
 * while its holder runs on this host: removing it would let another run delete that
 * run's objects as debris.
 */
export async function breakLock(storage: Storage): Promise<BrokenLock> {
  const held = await readLock(storage);
  if (held.kind === 'held' && held.info.host === hostname() && holderAlive(held.info)) {
    throw new LockedError('lock-live', `${storage.where} is locked by pid ${held.info.pid} on this host, which is still running (since ${held.info.time}); not removed`);
  }
  for (const t of await listAll(storage, 'locks/break-')) await storage.delete(t);
  if (held.kind === 'none') return { removed: false };
  await storage.delete(LAYOUT.lock);
  return { removed: true, holder: held.kind === 'held' ? held.info : undefined };
}

async function readLock(storage: Storage): Promise<LockState> {
  let bytes: Uint8Array;
  try { bytes = await storage.get(LAYOUT.lock); } catch (e) {
    if (e instanceof NotFoundError) return { kind: 'none' };
    throw e;
  }
  if (bytes.length > 4096) return { kind: 'unreadable', why: `${bytes.length} bytes` };
  try {
    const j = JSON.parse(Buffer.from(bytes).toString('utf8'));
    if (typeof j?.host === 'string' && Number.isSafeInteger(j.pid) && j.pid > 0 && typeof j.run === 'string' && typeof j.time === 'string' && (j.start === undefined || typeof j.start === 'string')) {
      return { kind: 'held', info: j as LockInfo };
    }
    return { kind: 'unreadable', why: 'not a lock of a known form' };
  } catch {
    return { kind: 'unreadable', why: bytes.length ? 'not JSON' : 'empty' };
  }
}

/**
 * When the process `pid` started, from /proc (clock ticks since boot), so that a pid the
 * system reused for another process is not taken for the lock's holder. Undefined where
 * /proc is not there.
 */
function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const start = fields[19];
    return start && /^\d+$/.test(start) ? `${bootId()}:${start}` : undefined;
  } catch { return undefined; }
}

let boot: string | undefined;
function bootId(): string {
  if (boot === undefined) {
    try { boot = readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim(); } catch { boot = ''; }
  }
  return boot;
}

/** Whether the lock's holder (on this host) is still running. */
function holderAlive(h: LockInfo): boolean {
  try { process.kill(h.pid, 0); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false; }
  if (h.start === undefined) return true;
  const now = processStart(h.pid);
  return now === undefined || now === h.start;
}
