/**
 * The backup pipeline's bookkeeping (engine/backup/pipeline.ts): steps run in order,
 * synchronously while none waits; the spools keep every byte in order across batches;
 * `drive` runs a coroutine without a promise until it must wait.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Pipeline, Spool, drive } from '../engine/backup/pipeline.js';
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
