/**
 * Buffers freed before the collector would (engine/threads.ts `spend`): only a large
 * buffer seen whole is detached; a volume's write batch never loses a part it still
 * holds; and a backup that spends blocks on every path (compressed on the reader,
 * stored as they came, found in the run or the chain) restores every byte.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { appendFileSync, copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { backup } from '../engine/backup/backup.js';
import { restore } from '../engine/restore/restore.js';
import { openStorage } from '../engine/storage/open.js';
import { PackCache, takeBatch } from '../engine/repo/volumes.js';
import { spend } from '../engine/threads.js';
import { loadKeys, tempDir, MiB } from './helpers.js';

test('spend: detaches a large buffer seen whole; leaves views, small buffers and shared memory alone', () => {
  const whole = randomBytes(256 * 1024);
  const view = new Uint8Array(whole.buffer, 0, whole.length - 1);
  spend(view);
  assert.equal(whole.length, 256 * 1024, 'a view of part of a buffer');
  const small = new Uint8Array(64 * 1024 - 1).fill(7);
  spend(small);
  assert.equal(small.length, 64 * 1024 - 1);
  const shared = new Uint8Array(new SharedArrayBuffer(128 * 1024));
  spend(shared);
  assert.equal(shared.length, 128 * 1024);
  spend(whole);
  assert.equal(whole.length, 0);
  assert.equal(whole.buffer.byteLength, 0);
  spend(whole); // spent twice: nothing left to do
});

test('spend: the memory goes back at once, not at the next collection', () => {
  const before = process.memoryUsage().arrayBuffers;
  const kept: Buffer[] = [];
  // 24 MiB: less than the 32 MiB of new buffers after which V8 collects for them itself.
  for (let i = 0; i < 24; i++) {
    const b = Buffer.allocUnsafeSlow(MiB);
    b.fill(i);
    spend(b);
    kept.push(b);
  }
  const held = process.memoryUsage().arrayBuffers - before;
  assert.ok(kept.every((b) => b.length === 0));
  assert.ok(held < 4 * MiB, `${(held / MiB).toFixed(1)} MiB of 24 spent still held`);
});

test('PackCache: a pack is freed once it leaves the cache and no block is taken from it; blocks are copies', async () => {
  const ref = (start: number, size: number) => ({ volume: 'v', entry: '0001', dataOffset: 0, length: 0, index: 0, offset: 0, size, digest: new Uint8Array(32), start });
  const cache = new PackCache(1);
  const a = randomBytes(256 * 1024);
  const b = randomBytes(256 * 1024);
  const bStart = Buffer.from(b.subarray(0, 100_000));
  const first = await cache.block('a', ref(1000, 5000), async () => a);
  assert.ok(Buffer.from(first).equals(a.subarray(1000, 6000)));
  assert.notEqual(first.buffer, a.buffer, 'a copy, not a view of the pack');
  assert.equal(a.length, 256 * 1024, 'kept while in the cache');
  // b's block is being taken (its pack still opening) when c pushes b out: b is freed
  // only after that block is taken.
  let openB!: (v: Uint8Array) => void;
  const fromB = cache.block('b', ref(0, 100_000), () => new Promise<Uint8Array>((r) => { openB = r; }));
  await new Promise((r) => setImmediate(r));
  assert.equal(a.length, 0, 'a left the cache with no block taken from it: freed');
  const c = randomBytes(256 * 1024);
  await cache.block('c', ref(0, 10), async () => c);
  openB(b);
  const got = await fromB;
  assert.ok(Buffer.from(got).equals(bStart), 'the block taken while its pack left the cache is whole');
  await new Promise((r) => setImmediate(r));
  assert.equal(b.length, 0, 'freed once its last block was taken');
  assert.equal(c.length, 256 * 1024, 'c is still cached');
});

test('takeBatch: a part alone is the batch and stays whole; parts copied into a batch are spent only if sealed', () => {
  const alone = randomBytes(2 * MiB);
  const keep = Buffer.from(alone);
  assert.equal(takeBatch([alone], alone.length, [alone]), alone);
  assert.ok(alone.equals(keep), 'the batch being written is not spent');

  const header = randomBytes(512);
  const sealed = randomBytes(MiB);
  const caller = randomBytes(128 * 1024);
  const want = Buffer.concat([header, sealed, caller]);
  const batch = takeBatch([header, sealed, caller], want.length, [sealed]);
  assert.ok(Buffer.from(batch).equals(want));
  assert.equal(sealed.length, 0, 'the sealed part is spent once copied');
  assert.equal(caller.length, 128 * 1024, 'a part the set does not own is left');
  assert.equal(header.length, 512);
});

test('a backup that spends its blocks on every path restores every byte, full and increment', async () => {
  const { bk, rk } = await loadKeys();
  const dir = tempDir('spend');
  const src = join(dir, 'src');
  mkdirSync(join(src, 'small'), { recursive: true });
  const text = Buffer.from('the quick brown fox jumps over the lazy dog, again and again\n'.repeat(110_000)); // ~6.5 MiB, compressible
  writeFileSync(join(src, 'text.log'), text);
  writeFileSync(join(src, 'random.bin'), randomBytes(5 * MiB + 4321)); // stored as it came
  copyFileSync(join(src, 'random.bin'), join(src, 'random-copy.bin')); // its blocks found in the run
  writeFileSync(join(src, 'medium.bin'), randomBytes(200 * 1024)); // one block, read whole
  for (let f = 0; f < 300; f++) writeFileSync(join(src, 'small', `f${f}`), f % 2 ? randomBytes(100 + f * 13) : Buffer.from(`file ${f}\n`.repeat(f + 1)));
  const storage = openStorage(join(dir, 'repo'));
  await backup(storage, bk, { create: true, sources: [src], volumeSize: 16 * MiB, system: 'spend' });

  const check = async (out: string): Promise<void> => {
    const r = await restore(openStorage(join(dir, 'repo')), rk, { target: out });
    assert.equal(r.failures.length, 0, JSON.stringify(r.failures));
    for (const name of ['text.log', 'random.bin', 'random-copy.bin', 'medium.bin']) {
      assert.ok(readFileSync(join(out, name)).equals(readFileSync(join(src, name))), `${name} restored whole`);
    }
    for (let f = 0; f < 300; f++) assert.ok(readFileSync(join(out, 'small', `f${f}`)).equals(readFileSync(join(src, 'small', `f${f}`))), `small/f${f}`);
  };
  await check(join(dir, 'out1'));

  // The increment: a changed large file whose other blocks the chain holds, and a new
  // copy of a stored one (all of its blocks in the chain).
  appendFileSync(join(src, 'text.log'), randomBytes(3 * MiB));
  copyFileSync(join(src, 'random.bin'), join(src, 'random-again.bin'));
  await backup(openStorage(join(dir, 'repo')), bk, { sources: [src], volumeSize: 16 * MiB, system: 'spend' });
  await check(join(dir, 'out2'));
  assert.ok(readFileSync(join(dir, 'out2', 'random-again.bin')).equals(readFileSync(join(src, 'random.bin'))));
  rmSync(dir, { recursive: true, force: true });
});
