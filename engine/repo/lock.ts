/**
 * The repository lock (SPEC.md "Locks"): taken whole or not at all, never by two runs,
 * a stale one broken by one run only, and checked before a run commits.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { FormatError, LockedError, NotFoundError } from '../../formats/errors.js';
import { decodeLock, encodeLock, type LockInfo } from '../../formats/lock.js';
import { LAYOUT } from '../../formats/names.js';
import { isStorageCode, listAll, type Storage } from '../storage/storage.js';


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
const BREAK = 'locks/break-';
const breakToken = (run: string) => `${BREAK}${run}`;

/**
 * Takes the exclusive repository lock (SPEC.md "Locks"). The lock is created whole and
 * never replaced, so of two runs exactly one gets it. A lock left by a dead process on
 * this host is removed, by one run only (through its break token). A lock that cannot
 * be read counts as held. Anything else is a LockedError that says who holds it.
 */
export async function acquireLock(storage: Storage): Promise<Lock> {
  const me: LockInfo = { host: hostname(), pid: process.pid, time: new Date().toISOString(), run: randomBytes(8).toString('hex'), start: processStart(process.pid) };
  const body = encodeLock(me);
  const where = `${storage.where}/${LAYOUT.lock}`;
  const isMine = (s: LockState) => s.kind === 'held' && s.info.run === me.run;
  const mine = async () => isMine(await readLock(storage));
  for (let attempt = 0; attempt < 8; attempt++) {
    let created: boolean;
    try { created = await createOnce(storage, LAYOUT.lock, body); } catch (e) {
      // A create that failed on the way back may have landed: then the lock is this run's.
      if (!(await mine().catch(() => false))) throw e;
      created = true;
    }
    const held: LockState = created ? { kind: 'held', info: me } : await readLock(storage);
    if (isMine(held)) {
      return {
        check: async () => {
          if (!(await mine())) throw new LockedError('lock-lost', `${where}: this run's lock was removed or replaced while it ran (iebs unlock?); nothing was committed`);
        },
        release: async () => { if (await mine()) await storage.delete(LAYOUT.lock); },
      };
    }
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
  for (const t of await listAll(storage, BREAK)) await storage.delete(t);
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
  try { return { kind: 'held', info: decodeLock(bytes) }; } catch (e) {
    if (e instanceof FormatError) return { kind: 'unreadable', why: e.message };
    throw e;
  }
}

/**
 * When the process `pid` started, from /proc (clock ticks since boot), so that a pid the
 * system reused for another process is not taken for the lock's holder. Undefined where
 * /proc is not there.
 */
export function processStart(pid: number): string | undefined {
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
  return processAlive(h.pid, h.start);
}

/**
 * Whether process `pid` of this host runs, and is the one that started at `start` (from
 * processStart) rather than a later process the system gave the same pid.
 */
export function processAlive(pid: number, start: string | undefined): boolean {
  try { process.kill(pid, 0); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false; }
  if (start === undefined) return true;
  const now = processStart(pid);
  return now === undefined || now === start;
}
