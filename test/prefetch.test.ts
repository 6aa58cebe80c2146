/**
 * The read-ahead of a reader thread (engine/prefetch.ts): it must never hold a
 * descriptor past its read's answer, and must shrug off files it cannot open.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Prefetch } from '../engine/backup/prefetch.js';
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
