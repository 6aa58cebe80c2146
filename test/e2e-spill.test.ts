/**
 * Memory stays flat because chain state, the blocks of a run and the records of a
 * restore go to scratch files when they outgrow their arenas (engine/sorter.ts). Here
 * every limit is tiny, so each spill path runs on a real tree: a chain of a full and two
 * increments (edits, appends, copies, renames, deletions, a kind change) made and
 * restored with spilling must equal the trees as they were, store what the same chain
 * stores without spilling, and write indexes of many pieces.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { backup } from '../engine/backup/backup.js';
import type { Limits } from '../engine/backup/options.js';
import { restore } from '../engine/restore/restore.js';
import type { BackupKey, RestoreKey } from '../engine/crypto/keys.js';
import { openStorage } from '../engine/storage/open.js';
import { copyTree, diffTrees, loadKeys, readTree, tempDir, writeSeeded, MiB } from './helpers.js';

let bk: BackupKey;
let rk: RestoreKey;
before(async () => {
  ({ bk, rk } = await loadKeys());
});

const TINY: Limits = { arena: 2048, indexPiece: 1024, blocksInMemory: 16 };

/** A tree of 40 directories of 15 small files each, a few larger files and symlinks. */
function makeTree(src: string): void {
  for (let d = 0; d < 40; d++) {
    mkdirSync(join(src, `d${d}`, 'sub'), { recursive: true });
    for (let f = 0; f < 15; f++) writeFileSync(join(src, `d${d}`, f % 3 ? `f${f}.txt` : join('sub', `f${f}.txt`)), `file ${d}/${f}\n`.repeat(1 + ((d * 15 + f) % 40)));
  }
  mkdirSync(join(src, 'empty'));
  writeSeeded(join(src, 'big.bin'), 'spill-big', 6 * MiB);
  symlinkSync('d1/f1.txt', join(src, 'link'));
  symlinkSync('nowhere', join(src, 'd2', 'dangling'));
}

/** The changes between snapshots. */
const changes = [
  (src: string) => {
    appendFileSync(join(src, 'd3', 'f1.txt'), 'more\n');
    writeFileSync(join(src, 'd4', 'f2.txt'), 'rewritten\n');
    copyFileSync(join(src, 'big.bin'), join(src, 'big-copy.bin'));
    renameSync(join(src, 'd5'), join(src, 'd5-renamed'));
    rmSync(join(src, 'd6'), { recursive: true });
    for (let i = 0; i < 30; i++) writeFileSync(join(src, 'd7', `new${i}.txt`), `new ${i}\n`);
  },
  (src: string) => {
    rmSync(join(src, 'd8', 'f1.txt'));
    mkdirSync(join(src, 'd8', 'f1.txt'));
    writeFileSync(join(src, 'd8', 'f1.txt', 'inside'), 'a file where a file was\n');
    rmSync(join(src, 'link'));
    writeFileSync(join(src, 'link'), 'a file where a symlink was\n');
    rmSync(join(src, 'big-copy.bin'));
  },
];

interface Step { snapshot: string; stored: number; copy: string }

async function chain(dir: string, limits: Limits | undefined): Promise<Step[]> {
  const src = join(dir, 'src');
  makeTree(src);
  const storage = openStorage(join(dir, 'repo'));
  const steps: Step[] = [];
  for (let i = 0; i <= changes.length; i++) {
    if (i > 0) changes[i - 1](src);
    const r = await backup(storage, bk, { create: true, sources: [src], volumeSize: 8 * MiB, system: 'spill', limits });
    const copy = join(dir, `copy-${i}`);
    copyTree(src, copy);
    steps.push({ snapshot: r.snapshot, stored: r.counts.stored, copy });
  }
  await storage.close();
  return steps;
}

/** Number of pieces of an index object (length-prefixed envelopes). */
function pieces(path: string): number {
  const b = readFileSync(path);
  let n = 0;
  for (let off = 0; off < b.length; n++) off += 4 + b.readUInt32BE(off);
  return n;
}

test('a chain made and restored with every scratch structure spilling equals the trees as they were', async () => {
  const spilled = tempDir('spill');
  const plain = tempDir('nospill');
  const a = await chain(spilled, TINY);
  const b = await chain(plain, undefined);
  // The copy of big.bin is found among blocks already spilled to a table: it stores
  // about nothing, exactly as without spilling.
  assert.deepEqual(a.map((s) => s.stored > 0), b.map((s) => s.stored > 0));
  assert.ok(a[1].stored < 1 * MiB, `the increment with a 6 MiB copy stored ${a[1].stored} bytes`);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i].stored - b[i].stored) < 64 * 1024, `snapshot ${i}: ${a[i].stored} vs ${b[i].stored} bytes`);
  const n = pieces(join(spilled, 'repo', 'indexes', `${a[0].snapshot}.index`));
  assert.ok(n > 20, `the full's index has ${n} pieces`);
  assert.equal(pieces(join(plain, 'repo', 'indexes', `${b[0].snapshot}.index`)), 1);

  for (const [i, s] of a.entries()) {
    const out = join(spilled, `out-${i}`);
    let last: { files: number; bytes: number; totalFiles: number; totalBytes: number } | null = null;
    const r = await restore(openStorage(join(spilled, 'repo')), rk, { target: out, snapshot: s.snapshot, arena: 2048, onProgress: (p) => { last = { ...p }; } });
    assert.deepEqual(r.failures, []);
    assert.deepEqual(last, { files: r.files, bytes: r.bytes, totalFiles: r.files, totalBytes: r.bytes }, `snapshot ${i}: progress ends at the totals it announced`);
    assert.deepEqual(diffTrees(readTree(s.copy), readTree(out)), [], `snapshot ${i} restores as the tree was`);
  }
});

test('restore --include with spilling brings the chosen entries and the directories above them', async () => {
  const dir = tempDir('spill-include');
  const steps = await chain(dir, TINY);
  const out = join(dir, 'out');
  let totals: number[] = [];
  const r = await restore(openStorage(join(dir, 'repo')), rk, { target: out, include: [/^d1[0-2]\/sub\/f0\.txt$/], arena: 1024, onProgress: (p) => { totals = [p.totalFiles, p.totalBytes]; } });
  assert.deepEqual(r.failures, []);
  assert.deepEqual(totals, [r.files, r.bytes], 'the totals count what the filter chose');
  const only = (p: string) => /^d1[0-2](\/sub(\/f0\.txt)?)?$/.test(p);
  assert.deepEqual(diffTrees(readTree(steps[2].copy), readTree(out), { only }), []);
  assert.equal(r.files, 3);
  assert.equal(r.dirs, 6);
});

test('restore refuses to replace a directory in the way of a file, small or large, and restores the rest', async () => {
  const dir = tempDir('in-the-way');
  const src = join(dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'small.txt'), 'one block\n');
  writeSeeded(join(src, 'large.bin'), 'in-the-way', 5 * MiB);
  writeFileSync(join(src, 'other.txt'), 'restored\n');
  const storage = openStorage(join(dir, 'repo'));
  await backup(storage, bk, { create: true, sources: [src], volumeSize: 8 * MiB, system: 'way' });
  const out = join(dir, 'out');
  for (const n of ['small.txt', 'large.bin']) mkdirSync(join(out, n, 'kept'), { recursive: true });
  const r = await restore(openStorage(join(dir, 'repo')), rk, { target: out });
  assert.deepEqual(r.failures.map((f) => f.path), ['large.bin', 'small.txt']);
  for (const f of r.failures) assert.match(f.message, /a directory is in the way/);
  assert.equal(readFileSync(join(out, 'other.txt'), 'utf8'), 'restored\n');
  for (const n of ['small.txt', 'large.bin']) assert.equal(readTree(join(out, n)).size, 1, `${n}/kept is untouched`);
});
