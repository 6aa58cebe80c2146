/**
 * The end of a restore (engine/restore/restore.ts): symlinks, several at once, then
 * folders' modes and times, deepest first, by a writer thread. More of each than go at
 * once, over several depths, with modes that shut a folder and times that differ:
 * every one is restored as it was, and a folder's time is not disturbed by what was made
 * in it afterwards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { diffTrees, iebsOk, makeKeys, readTree, tempDir } from './helpers.js';

test('many symlinks and folders over several depths, with restrictive modes, restore with their targets, modes and times', () => {
  const keys = makeKeys();
  const dir = tempDir('end-steps');
  const src = join(dir, 'src');
  const repo = join(dir, 'repo');
  const out = join(dir, 'out');
  const modes = [0o755, 0o750, 0o700, 0o555, 0o511, 0o1777];
  const folders: string[] = [];
  for (let a = 0; a < 6; a++) {
    for (let b = 0; b < 8; b++) {
      const d = join(src, `a${a}`, `b${b}`);
      mkdirSync(join(d, 'c'), { recursive: true });
      writeFileSync(join(d, 'c', 'f'), `file ${a}.${b}\n`);
      for (let l = 0; l < 3; l++) symlinkSync(l === 0 ? '../../..' : `target-${a}-${b}-${l}`, join(d, `link${l}`));
      folders.push(join(d, 'c'), d);
    }
    folders.push(join(src, `a${a}`));
  }
  // Times and modes last, deepest first, as a restore must set them.
  folders.forEach((d, i) => {
    utimesSync(d, 1_000_000 + i * 977, 1_000_000 + i * 977);
    chmodSync(d, modes[i % modes.length]);
  });
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--name', 'ends']);
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', out]);
  const want = readTree(src);
  assert.equal([...want.values()].filter((e) => e.kind === 'symlink').length, 144);
  assert.equal([...want.values()].filter((e) => e.kind === 'dir').length, folders.length);
  assert.deepEqual(diffTrees(want, readTree(out)), []);
  // Opened up again, so that the temporary folder can be removed.
  for (const d of [src, out]) for (const f of folders) chmodSync(f.replace(src, d), 0o755);
});
