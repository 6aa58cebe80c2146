/**
 * Bandwidth limits (--limit-upload, --limit-download): a token bucket, checked on a clock
 * that counts the waits it is asked for instead of waiting, so the test does not depend
 * on timing; the wrapper around a real backend keeps every byte, throttles only the
 * direction it limits; and the CLI takes the flags on every verb that opens a repository
 * and refuses a rate it cannot read with one line.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryStorage } from '../engine/storage/memory.js';
import { TokenBucket, withRateLimit, type Clock } from '../engine/storage/ratelimit.js';
import { assertOneLineError, diffTrees, iebs, iebsOk, makeKeys, readTree, tempDir, type Keys } from './helpers.js';

/** A clock whose sleeps only add to its time, and count. */
function fakeClock(): Clock & { slept: number } {
  let t = 0;
  const c = { slept: 0, now: () => t, sleep: async (ms: number) => { c.slept += ms; t += ms; } };
  return c;
}

const MiB = 1024 * 1024;

test('a token bucket lets a quarter second\'s burst through, then holds to its rate', async () => {
  const clock = fakeClock();
  const b = new TokenBucket(MiB, clock);
  for (let i = 0; i < 64; i++) await b.take(64 * 1024);
  // 4 MiB at 1 MiB/s with a burst of 256 KiB: 3.75 s of waiting.
  assert.ok(Math.abs(clock.slept - 3750) < 1, `${clock.slept} ms`);
});

test('time that passed refills the bucket: a slow producer never waits', async () => {
  const clock = fakeClock();
  const b = new TokenBucket(MiB, clock);
  for (let i = 0; i < 32; i++) {
    await b.take(64 * 1024);
    await clock.sleep(100); // the producer's own pace: 640 KiB/s
  }
  assert.equal(clock.slept, 32 * 100, 'only the producer\'s own sleeps');
});

test('the wrapper keeps every byte, throttles uploads and downloads each by its own rate', async () => {
  const clock = fakeClock();
  const mem = new MemoryStorage();
  const s = withRateLimit(mem, { uploadBps: MiB, downloadBps: 512 * 1024 }, clock);
  const data = randomBytes(4 * MiB);
  const w = await s.create('volumes/v');
  await w.write(data.subarray(0, 3 * MiB));
  await w.write(data.subarray(3 * MiB));
  await w.commit();
  assert.ok(Math.abs(clock.slept - 3750) < 1, `upload waited ${clock.slept} ms`);
  assert.ok(Buffer.from(await mem.get('volumes/v')).equals(data));
  clock.slept = 0;
  const got = await s.getRange('volumes/v', MiB, 2 * MiB);
  assert.ok(Buffer.from(got).equals(data.subarray(MiB, 3 * MiB)));
  // 2 MiB at 512 KiB/s with a burst of 128 KiB: 3.75 s.
  assert.ok(Math.abs(clock.slept - 3750) < 1, `download waited ${clock.slept} ms`);
  clock.slept = 0;
  assert.equal(await s.stat('volumes/v'), 4 * MiB);
  const onlyUp = withRateLimit(mem, { uploadBps: MiB }, clock);
  await onlyUp.get('volumes/v');
  assert.equal(clock.slept, 0, 'downloads are not limited when only uploads are');
});

let keys: Keys;
before(() => { keys = makeKeys(); });

test('the CLI takes --limit-upload and --limit-download on every verb that opens a repository, and refuses a bad rate', () => {
  const dir = tempDir('ratelimit-cli');
  const src = join(dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'a.txt'), 'limited\n');
  const repo = join(dir, 'repo');
  const lim = ['--limit-upload', '50M', '--limit-download', '50MiB'];
  iebsOk(['init', repo, '--key', keys.backup, ...lim]);
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, ...lim]);
  iebsOk(['snapshots', '--repo', repo, ...lim]);
  iebsOk(['ls', '--repo', repo, '--key', keys.restore, ...lim]);
  iebsOk(['verify', '--repo', repo, '--key', keys.restore, '--read-data', ...lim]);
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', join(dir, 'out'), ...lim]);
  assert.deepEqual(diffTrees(readTree(src), readTree(join(dir, 'out'))), []);
  iebsOk(['unlock', '--repo', repo, ...lim]);
  const bad = iebs(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--limit-upload', 'fast']);
  assert.equal(bad.code, 2);
  assertOneLineError(bad, /--limit-upload "fast": not a rate/);
});
