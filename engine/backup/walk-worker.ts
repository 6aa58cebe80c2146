/**
 * The walk of a backup in a thread of its own (started by `Walker`, engine/backup/walk.ts):
 * listing and lstat wait on the disk when its cache is cold (for 40,000 small files, about
 * 0.8 s of a 1.3 s walk), and each lstat with nanosecond times allocates a BigInt stats
 * object; here neither holds up the main thread. It also derives each entry's keyed path
 * id, and the UUID the entry gets if it is new to the chain. Batches go out in walk order; at most AHEAD of them wait untaken (the thread
 * blocks on a shared counter: a message per batch cost the main thread more).
 *
 * The thread starts with the run, before the run knows the keys the ids take (it reads
 * the repository first), and walks ahead meanwhile: up to HOLD_BYTES of batches wait
 * here without ids, and get them, and go out, once the keys are given (`WalkKeys`).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { IebsError } from '../../formats/errors.js';
import { hmac } from '../crypto/hashes.js';
import { runUuid } from './run-uuid.js';
import { walk } from './walk.js';
import { KEYS_STOP, KEYS_WAITING, WalkKeys, WalkPacker, fillIds, type FromWalker, type WalkInit } from './walk-protocol.js';

const init = workerData as WalkInit;
const port = parentPort!;
/** Items a batch holds, or bytes packed. */
const BATCH_ITEMS = 256;
const BATCH_BYTES = 256 * 1024;
/** Batches posted and not yet taken. */
const AHEAD = 8;
/**
 * Bytes of batches the walk packs ahead while the run has not yet given its keys (it
 * reads the repository's records, locks, loads its chain's state): about 20,000 entries,
 * which a walk on a cold cache takes about 300 milliseconds to list.
 */
const HOLD_BYTES = 4 * 1024 * 1024;

/** Batches taken by the main thread, which counts them up; this thread waits on it (it has nothing else to do). */
const taken = new Int32Array(init.taken);
const keys = new WalkKeys(init.keys);
let posted = 0;
/** The entries' ids once the keys are given. */
let ids: ((rel: Buffer, kind: string) => { pathId: Uint8Array; uuid: string }) | null = null;
/** Batches packed before the keys were given, without ids. */
const held: ArrayBuffer[] = [];
let heldBytes = 0;
const NO_ID = new Uint8Array(32);

/** Thrown to end the walk when the run ended before it gave the keys. */
class Stopped extends Error {}

function post(m: FromWalker, transfer: ArrayBuffer[] = []): void {
  port.postMessage(m, transfer);
}

/** Whether the keys are given; when they are first seen, the batches held get their ids and go out. */
function keyed(): boolean {
  if (ids) return true;
  const k = keys.taken();
  if (!k) {
    if (Atomics.load(keys.state, 0) === KEYS_STOP) throw new Stopped();
    return false;
  }
  ids = (rel, kind) => { const pathId = hmac(k.pathIdKey, rel); return { pathId, uuid: runUuid(k.uuids, pathId, kind) }; };
  for (const b of held.splice(0)) {
    fillIds(b, ids);
    posted++;
    post({ t: 'items', buf: b }, [b]);
  }
  heldBytes = 0;
  return true;
}

function run(): void {
  const re = (p: { source: string; flags: string }[] | undefined) => p?.map((x) => new RegExp(x.source, x.flags));
  const o = { sources: init.sources, include: re(init.include), exclude: re(init.exclude) };
  const packer = new WalkPacker(BATCH_BYTES + 64 * 1024);
  /** Whether the batch being packed holds entries packed without ids. */
  let blank = false;
  const send = () => {
    if (!keyed()) {
      const buf = packer.take();
      held.push(buf);
      heldBytes += buf.byteLength;
      blank = false;
      while (heldBytes >= (init.hold ?? HOLD_BYTES) && !keyed()) Atomics.wait(keys.state, 0, KEYS_WAITING);
      return;
    }
    for (let seen = Atomics.load(taken, 0); posted - seen >= AHEAD; seen = Atomics.load(taken, 0)) Atomics.wait(taken, 0, seen);
    const buf = packer.take();
    // The keys came while this batch was being packed: its first entries have no ids yet.
    if (blank) fillIds(buf, ids!);
    blank = false;
    posted++;
    post({ t: 'items', buf }, [buf]);
  };
  // A warning is packed when it is made: before the entry that follows it.
  for (const e of walk(init.sources, o, (w) => packer.add({ warning: w }))) {
    if (ids || keyed()) {
      const id = ids!(e.rel, e.kind);
      packer.add({ rel: e.rel, abs: e.abs, st: e.st, kind: e.kind, pathId: id.pathId, uuid: id.uuid });
    } else {
      packer.add({ rel: e.rel, abs: e.abs, st: e.st, kind: e.kind, pathId: NO_ID, uuid: '' });
      blank = true;
    }
    if (packer.count >= BATCH_ITEMS || packer.bytes >= BATCH_BYTES) send();
  }
  if (packer.count) send();
  // The end goes out after every batch, so a walk shorter than what is held waits for its keys here.
  while (!keyed()) Atomics.wait(keys.state, 0, KEYS_WAITING);
  post({ t: 'end' });
}

try { run(); } catch (e) {
  if (!(e instanceof Stopped)) post({ t: 'error', name: e instanceof Error ? e.constructor.name : 'Error', code: e instanceof IebsError ? e.code : 'walk-failed', message: e instanceof Error ? e.message : String(e) });
}
