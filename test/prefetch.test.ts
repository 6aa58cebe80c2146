/**
 * The read-ahead of a reader thread (engine/prefetch.ts): it must never hold a
 * descriptor past its read's answer, and must shrug off files it cannot open.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CacheSense, Prefetch } from '../engine/backup/prefetch.js';
import { seededBytes, tempDir, MiB } from './helpers.js';

const openDescriptors = (): number => readdirSync('/proc/self/fd').length;

test('read-ahead closes every descriptor once its reads answer, and skips files it cannot open', { skip: process.platform !== 'linux' && 'reads /proc' }, async () => {
  const dir = tempDir('prefetch');
  const files = Array.from({ length: 40 }, (_, i) => join(dir, `f${i}`));
  files.forEach((f, i) => writeFileSync(f, seededBytes(`prefetch-${i}`, i === 0 ? 3 * MiB : 1000 + i)));
  const ahead = new Prefetch(MiB);
  const base = openDescriptors();
  for (const f of files) ahead.start(Buffer.from(f), 0, MiB);
  // Pieces of the large file past its end, and past the longest read asked for.
  for (const at of [MiB, 2 * MiB, 5 * MiB]) ahead.start(Buffer.from(files[0]), at, 4 * MiB);
  ahead.start(Buffer.from(join(dir, 'missing')), 0, MiB);
  ahead.start(Buffer.from(dir), 0, MiB); // a directory opens, and its read fails
  assert.equal(ahead.pending, files.length + 4);
  assert.equal(openDescriptors(), base + files.length + 4);
  while (ahead.pending > 0) await new Promise((r) => setImmediate(r));
  assert.equal(openDescriptors(), base);
});

test('a kept descriptor stays open for the reader after its read answers, and is closed once released (also before the read answered)', { skip: process.platform !== 'linux' && 'reads /proc' }, async () => {
  const dir = tempDir('prefetch-keep');
  const files = Array.from({ length: 4 }, (_, i) => join(dir, `k${i}`));
  files.forEach((f, i) => writeFileSync(f, seededBytes(`keep-${i}`, 2000 + i)));
  const ahead = new Prefetch(MiB);
  const base = openDescriptors();
  for (const f of files) ahead.start(Buffer.from(f), 0, MiB, f);
  // A second start of a kept path reads ahead without keeping another descriptor.
  ahead.start(Buffer.from(files[0]), 0, MiB, files[0]);
  // Taken and released before its read answered: closed when it answers.
  const early = ahead.take(Buffer.from(files[3]).toString('latin1'))!;
  assert.ok(early >= 0);
  ahead.release(early);
  while (ahead.pending > 0) await new Promise((r) => setImmediate(r));
  assert.equal(ahead.keptCount, 3);
  assert.equal(openDescriptors(), base + 3);
  assert.equal(ahead.take(join(dir, 'never-started')), undefined);
  for (const f of files.slice(0, 3)) {
    const fd = ahead.take(Buffer.from(f).toString('latin1'));
    assert.ok(fd !== undefined, `${f} was kept`);
    assert.equal(ahead.take(Buffer.from(f).toString('latin1')), undefined, 'taken once');
    ahead.release(fd);
  }
  assert.equal(ahead.keptCount, 0);
  assert.equal(openDescriptors(), base);
});

test('the read-ahead turns off after fast probes, back on after one slow read, and probes while on', () => {
  const sense = new CacheSense(4, 3);
  // On at first (a cold cache is the safe guess), with every 4th file left as a probe.
  assert.deepEqual(Array.from({ length: 8 }, () => sense.next()), [true, true, true, false, true, true, true, false]);
  // Small reads from the cache take microseconds: three fast probes in a row turn it off.
  sense.sample(2, 4096);
  sense.sample(1.5, 100);
  assert.equal(sense.reading, true);
  sense.sample(3, 65536);
  assert.equal(sense.reading, false);
  assert.deepEqual(Array.from({ length: 5 }, () => sense.next()), [false, false, false, false, false]);
  // A large read may take longer without having missed; a small one taking 40 µs did.
  sense.sample(60, 1024 * 1024);
  assert.equal(sense.reading, false);
  sense.sample(40, 4096);
  assert.equal(sense.reading, true);
  assert.equal(sense.next(), true);
  // A slow probe in a run of fast ones starts the count again.
  sense.sample(2, 100); sense.sample(2, 100); sense.sample(500, 100); sense.sample(2, 100); sense.sample(2, 100);
  assert.equal(sense.reading, true);
  sense.sample(2, 100);
  assert.equal(sense.reading, false);
});

test('by default the read-ahead leaves one file in 256 as a probe', () => {
  const sense = new CacheSense();
  const probes = Array.from({ length: 1024 }, () => sense.next()).flatMap((on, i) => (on ? [] : [i]));
  assert.deepEqual(probes, [255, 511, 767, 1023]);
});
