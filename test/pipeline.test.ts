/**
 * The backup pipeline's bookkeeping (engine/backup/pipeline.ts): steps run in order,
 * synchronously while none waits; the spools keep every byte in order across batches;
 * `drive` runs a coroutine without a promise until it must wait; the run's table of
 * blocks gives back every place and holder it was given, in memory and after a spill;
 * entries are stored in order, each as soon as it is ready, while more are added.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { InOrder, Pipeline, Spool, drive } from '../engine/backup/pipeline.js';
import { PlaceTable, RunBlocks, type Writing } from '../engine/backup/run-blocks.js';
import type { Placement } from '../engine/repo/volumes.js';
import { tempDir } from './helpers.js';

test('drive: no promise until the first wait; sent values and rejections arrive at the yield', async () => {
  function* plain(): Generator<Promise<unknown>, number, unknown> { return 7; }
  assert.equal(drive(plain()), 7);
  function* waits(): Generator<Promise<unknown>, string, unknown> {
    const a = (yield Promise.resolve(2)) as number;
    try { yield Promise.reject(new Error('refused')); } catch (e) { return `${a} ${(e as Error).message}`; }
    return 'not caught';
  }
  const r = drive(waits());
  assert.ok(r instanceof Promise);
  assert.equal(await r, '2 refused');
  function* throws(): Generator<Promise<unknown>, void, unknown> { yield Promise.resolve(); throw new Error('late'); }
  await assert.rejects(Promise.resolve(drive(throws())), /late/);
  // Many waits in one run (a large file's blocks): each gets its own value, in order.
  function* many(): Generator<Promise<unknown>, number, unknown> {
    let sum = 0;
    for (let i = 1; i <= 10000; i++) sum += (yield Promise.resolve(i)) as number;
    return sum;
  }
  assert.equal(await drive(many()), 50005000);
});

test('pipeline: steps that finish at once run at once, a waiting one holds the later ones back, a failure stops the rest', async () => {
  const pipe = new Pipeline(1024);
  const order: string[] = [];
  pipe.after(() => { order.push('a'); return undefined; });
  assert.deepEqual(order, ['a']);
  let release!: () => void;
  pipe.after(() => { order.push('b'); return new Promise<void>((r) => (release = r)); });
  pipe.after(() => { order.push('c'); return undefined; });
  assert.deepEqual(order, ['a', 'b']);
  release();
  await pipe.drain();
  assert.deepEqual(order, ['a', 'b', 'c']);
  pipe.after(() => { throw new Error('step failed'); });
  pipe.after(() => { order.push('never'); return undefined; });
  await assert.rejects(pipe.drain(), /step failed/);
  assert.deepEqual(order, ['a', 'b', 'c']);
});

/** A take whose items wait until `release(item)`; `taken` lists them as they are started. */
function gatedTakes() {
  const taken: number[] = [];
  const gates = new Map<number, { open: () => void; fail: (e: Error) => void }>();
  const take = (n: number): Promise<void> | void => {
    taken.push(n);
    if (n % 10 !== 0) return;
    // Multiples of ten wait.
    return new Promise<void>((open, fail) => gates.set(n, { open, fail }));
  };
  return { taken, take, release: (n: number) => gates.get(n)!.open(), fail: (n: number, e: Error) => gates.get(n)!.fail(e) };
}
const turn = () => new Promise((r) => setImmediate(r));

test('in order: a ready item is taken as it is added, not once the look-ahead is full; one that waits holds the next back while adding goes on', async () => {
  const g = gatedTakes();
  const notReady = new Set<number>();
  const q = new InOrder<number>(g.take, (n) => !notReady.has(n), 100);
  assert.equal(q.add(1), undefined);
  assert.deepEqual(g.taken, [1], 'taken at once, with 99 more allowed to wait');
  q.add(10); q.add(2); q.add(3);
  assert.deepEqual(g.taken, [1, 10], 'the take of 10 waits: 2 and 3 wait behind it');
  g.release(10);
  await turn();
  assert.deepEqual(g.taken, [1, 10, 2, 3], 'once 10 is taken, the ready ones behind it follow without another add');
  notReady.add(4);
  q.add(4); q.add(5);
  assert.deepEqual(g.taken, [1, 10, 2, 3], 'an item not ready holds the ones behind it');
  notReady.delete(4);
  q.add(6);
  assert.deepEqual(g.taken, [1, 10, 2, 3, 4, 5, 6]);
  await q.finish();
});

test('in order: adding waits while more than the look-ahead wait; finish takes the rest, ready or not, in order', async () => {
  const g = gatedTakes();
  const q = new InOrder<number>(g.take, (n) => n < 50, 3);
  for (const n of [20, 51, 52, 53]) assert.equal(q.add(n), undefined, `${n}: at most three wait`);
  const over = q.add(54);
  assert.ok(over instanceof Promise, 'a fourth waiting item makes the adder wait');
  assert.deepEqual(g.taken, [20]);
  g.release(20);
  await over;
  assert.deepEqual(g.taken, [20, 51], 'the head is taken, ready or not, to make room');
  const more = q.add(60);
  const done = q.finish();
  await turn();
  assert.deepEqual(g.taken, [20, 51, 52, 53, 54, 60]);
  g.release(60);
  await more;
  await done;
});

test('in order: an adder that waited takes no item not ready once the ready ones behind a slow take have made room', async () => {
  const g = gatedTakes();
  const q = new InOrder<number>(g.take, (n) => n < 50, 3);
  for (const n of [10, 1, 2, 51]) assert.equal(q.add(n), undefined);
  const over = q.add(52);
  assert.ok(over instanceof Promise);
  g.release(10);
  await over;
  assert.deepEqual(g.taken, [10, 1, 2], '51 is not taken: two wait, fewer than three');
  assert.equal(q.waiting, 2);
  await q.finish();
  assert.deepEqual(g.taken, [10, 1, 2, 51, 52]);
});

test('in order: a take that fails is thrown by the next add and by finish, and nothing after it is taken', async () => {
  const g = gatedTakes();
  const q = new InOrder<number>(g.take, () => true, 100);
  q.add(10); q.add(11);
  g.fail(10, new Error('disk full'));
  await turn();
  assert.throws(() => q.add(12), /disk full/);
  await assert.rejects(q.finish(), /disk full/);
  assert.deepEqual(g.taken, [10], 'nothing after the failed take was taken');
  const sync = new InOrder<number>(() => { throw new Error('at once'); }, () => true, 100);
  assert.throws(() => sync.add(1), /at once/);
});

test('spool: text across batches, one longer than a batch, and appends not waited for, all in order', async () => {
  const path = join(tempDir('spool'), 'records');
  const spool = new Spool(path);
  let expect = '';
  const waits: Promise<void>[] = [];
  for (let i = 0; i < 30000; i++) {
    const line = `${i} ${'x'.repeat(i % 97)}\n`;
    expect += line;
    const p = spool.append(line);
    // Some callers go on without waiting: the writes must still land in order.
    if (p) { if (i % 2) waits.push(p); else await p; }
  }
  const long = 'L'.repeat(3 * 1024 * 1024 + 5) + '\n';
  expect += long;
  await spool.append(long);
  expect += 'end\n';
  assert.equal(spool.append('end\n'), undefined);
  await Promise.all(waits);
  await spool.flush();
  assert.equal(readFileSync(path, 'latin1'), expect);
  let read = '';
  for await (const chunk of spool.read()) read += chunk.toString('latin1');
  assert.equal(read, expect);
});

test('spool: a full batch is written while the next fills; the caller waits only while the batch before it is still being written', async () => {
  const path = join(tempDir('spool-ahead'), 'index');
  const spool = new Spool(path);
  const line = 'y'.repeat(1023) + '\n';
  const batch = (1 << 20) / line.length;
  let expect = '';
  const add = () => { expect += line; return spool.append(line); };
  for (let i = 0; i < batch; i++) assert.equal(add(), undefined);
  // The first batch is full: its write starts, and nothing is written before it.
  assert.equal(add(), undefined);
  for (let i = 1; i < batch; i++) assert.equal(add(), undefined);
  // The second is full while the first is still being written (no write ends synchronously).
  const wait = add();
  assert.ok(wait instanceof Promise);
  await wait;
  await spool.flush();
  assert.equal(readFileSync(path, 'latin1'), expect);
});

test('spool: a write that fails while nobody waits for it fails the next append and the flush, with the scratch error', async () => {
  // The spool's folder does not exist: its first write fails with ENOENT.
  const spool = new Spool(join(tempDir('spool-gone'), 'missing', 'records'));
  const line = 'z'.repeat(1023) + '\n';
  for (let i = 0; i <= (1 << 20) / line.length; i++) assert.equal(spool.append(line), undefined);
  await assert.rejects(spool.flush(), /ENOENT/);
  assert.throws(() => spool.append(line), /ENOENT/);
  await assert.rejects(spool.flush(), /ENOENT/);
});

/** Ids to store: random, and some that share their first four bytes (one probe sequence). */
function someIds(n: number): Uint8Array[] {
  const ids: Uint8Array[] = [];
  for (let i = 0; i < n; i++) ids.push(new Uint8Array(randomBytes(32)));
  const head = randomBytes(4);
  for (let i = 0; i < 40; i++) { const id = new Uint8Array(randomBytes(32)); id.set(head); ids.push(id); }
  return ids;
}

/** A place for block i: runs of blocks share a pack's entry (with starts), others have entries of their own, across two volumes. */
function placeFor(i: number): Placement {
  const volume = i < 2000 ? 'v_0001' : 'v_0002';
  if (i % 7 < 4) return { volume, dataOffset: 5 * 2 ** 32 + i * 512, length: 4096, entry: `pack-${Math.floor(i / 7)}`, start: (i % 7) * 100 };
  return { volume, dataOffset: i * 1024, length: 1000 + i, entry: `block-${i}` };
}

test('place table: every place and holder comes back by id, through growth and ids that share their first bytes; unknown ids are absent', () => {
  const table = new PlaceTable(16);
  const ids = someIds(5000);
  const holders = new Map<number, Writing>();
  ids.forEach((id, i) => {
    if (i % 3 === 0) { const h: Writing = { placement: null }; holders.set(i, h); table.pending(id, h); }
    // A view into a larger buffer, as ids arrive from the readers.
    if (i % 3 !== 2) { const big = new Uint8Array(64); big.set(id, 16); table.settle(big.subarray(16, 48), placeFor(i)); holders.delete(i); }
  });
  ids.forEach((id, i) => {
    const got = table.get(id);
    if (holders.has(i)) assert.equal(got, holders.get(i));
    else if (i % 3 === 2) assert.equal(got, undefined);
    else assert.deepEqual(got, placeFor(i));
  });
  assert.equal(table.settled, ids.filter((_, i) => i % 3 !== 2).length);
  for (let k = 0; k < 100; k++) assert.equal(table.get(new Uint8Array(randomBytes(32))), undefined);
  assert.throws(() => table.get(new Uint8Array(31)), /31 bytes/);
});

test('place table: a drain hands over the settled places in the order of their ids and keeps the holders', () => {
  const table = new PlaceTable(8);
  const ids = someIds(3000);
  const holders: Writing[] = [];
  ids.forEach((id, i) => {
    if (i % 5 === 0) { const h: Writing = { placement: null }; holders.push(h); table.pending(id, h); } else table.settle(id, placeFor(i));
  });
  const out: { id: Buffer; p: Placement }[] = [];
  table.drain((id, p) => out.push({ id: Buffer.from(id), p }));
  const settled = ids.map((id, i) => ({ id: Buffer.from(id), i })).filter(({ i }) => i % 5 !== 0).sort((a, b) => Buffer.compare(a.id, b.id));
  assert.equal(out.length, settled.length);
  out.forEach((o, k) => { assert.deepEqual(o.id, settled[k].id); assert.deepEqual(o.p, placeFor(settled[k].i)); });
  assert.equal(table.settled, 0);
  ids.forEach((id, i) => { if (i % 5 !== 0) assert.equal(table.get(id), undefined); });
  ids.filter((_, i) => i % 5 === 0).forEach((id, k) => assert.equal(table.get(id), holders[k]));
  // A holder settled after the drain is a place again.
  table.settle(ids[0], placeFor(0));
  assert.deepEqual(table.get(ids[0]), placeFor(0));
  assert.equal(table.settled, 1);
});

test('run blocks: places spilled to tables on disk come back as they were given, holders stay in memory', () => {
  const dir = tempDir('run-blocks');
  const blocks = new RunBlocks(dir, 500);
  const ids = someIds(3000);
  const holders = new Map<number, Writing>();
  ids.forEach((id, i) => {
    if (i % 11 === 0) { const h: Writing = { placement: null }; holders.set(i, h); blocks.pending(id, h); } else blocks.settle(id, placeFor(i));
  });
  try {
    ids.forEach((id, i) => {
      if (holders.has(i)) assert.equal(blocks.get(id), holders.get(i));
      else assert.deepEqual(blocks.get(id), placeFor(i));
    });
    assert.equal(blocks.get(new Uint8Array(randomBytes(32))), undefined);
  } finally { blocks.close(); }
});
