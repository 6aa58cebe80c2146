/**
 * The walk of a backup in a thread of its own (started by `Walker`, engine/backup/walk.ts):
 * listing and lstat wait on the disk when its cache is cold (for 40,000 small files, about
 * 0.8 s of a 1.3 s walk), and each lstat with nanosecond times allocates a BigInt stats
 * object; here neither holds up the main thread. It also derives each entry's keyed path
 * id, and the UUID the entry gets if it is new to the chain. Batches go out in walk order; at most AHEAD of them wait untaken (the thread
 * blocks on a shared counter: a message per batch cost the main thread more).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { IebsError } from '../../formats/errors.js';
import { hmac } from '../crypto/hashes.js';
import { runUuid } from './run-uuid.js';
import { walk } from './walk.js';
import { WalkPacker, type FromWalker, type WalkInit } from './walk-protocol.js';

const init = workerData as WalkInit;
const port = parentPort!;
/** Items a batch holds, or bytes packed. */
const BATCH_ITEMS = 256;
const BATCH_BYTES = 256 * 1024;
/** Batches posted and not yet taken. */
const AHEAD = 8;

/** Batches taken by the main thread, which counts them up; this thread waits on it (it has nothing else to do). */
const taken = new Int32Array(init.taken);
let posted = 0;

function post(m: FromWalker, transfer: ArrayBuffer[] = []): void {
  port.postMessage(m, transfer);
}

function run(): void {
  const re = (p: { source: string; flags: string }[] | undefined) => p?.map((x) => new RegExp(x.source, x.flags));
  const o = { sources: init.sources, include: re(init.include), exclude: re(init.exclude) };
  const packer = new WalkPacker(BATCH_BYTES + 64 * 1024);
  const send = () => {
    for (let seen = Atomics.load(taken, 0); posted - seen >= AHEAD; seen = Atomics.load(taken, 0)) Atomics.wait(taken, 0, seen);
    const buf = packer.take();
    posted++;
    post({ t: 'items', buf }, [buf]);
  };
  // A warning is packed when it is made: before the entry that follows it.
  for (const e of walk(init.sources, o, (w) => packer.add({ warning: w }))) {
    const pathId = hmac(init.pathIdKey, e.rel);
    packer.add({ rel: e.rel, abs: e.abs, st: e.st, kind: e.kind, pathId, uuid: runUuid(init.uuids, pathId, e.kind) });
    if (packer.count >= BATCH_ITEMS || packer.bytes >= BATCH_BYTES) send();
  }
  if (packer.count) send();
  post({ t: 'end' });
}

try { run(); } catch (e) {
  post({ t: 'error', name: e instanceof Error ? e.constructor.name : 'Error', code: e instanceof IebsError ? e.code : 'walk-failed', message: e instanceof Error ? e.message : String(e) });
}
