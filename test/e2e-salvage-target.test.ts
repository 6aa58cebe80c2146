/**
 * What salvage gives the target besides file contents (SPEC.md "Volume format",
 * "Restore"): symlinks get their recorded mtimes; directories a volume's catalogue does
 * not describe (they were listed in another volume) get the mode `mkdir -p` would give
 * them under the umask, not the 0700 every directory is made with while writing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, lstatSync, mkdirSync, readdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { MiB, diffTrees, iebs, iebsOk, makeKeys, readTree, tempDir, writeSeeded } from './helpers.js';

test('salvage gives symlinks their mtimes, and directories no catalogue describes a normal mode', () => {
  const keys = makeKeys();
  const dir = tempDir('salvage-target');
  const src = join(dir, 'src');
  mkdirSync(join(src, 'p', 'q'), { recursive: true });
  writeSeeded(join(src, 'p', 'q', 'big.bin'), 'salvage-target-big', 20 * MiB);
  writeFileSync(join(src, 'p', 'file'), 'a file\n');
  symlinkSync('q/big.bin', join(src, 'p', 'link'));
  assert.equal(spawnSync('touch', ['-h', '-d', '@1600000001.999999999', join(src, 'p', 'link')]).status, 0);
  // Recorded modes unlike the umask's, so a described directory is told from one that is not.
  for (const d of ['p/q', 'p']) { chmodSync(join(src, d), 0o750); utimesSync(join(src, d), 1_500_000_000, 1_500_000_000); }
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--volume-size', '8MiB']);
  const volumes = readdirSync(join(repo, 'volumes')).sort().map((v) => join(repo, 'volumes', v));
  assert.ok(volumes.length >= 3);

  const all = join(dir, 'all');
  iebsOk(['salvage', ...volumes, '--key', keys.restore, '--target', all]);
  assert.deepEqual(diffTrees(readTree(src), readTree(all)), []);
  assert.equal(lstatSync(join(all, 'p', 'link'), { bigint: true }).mtimeNs, 1_600_000_001_999_999_000n);

  // The first volume holds only the start of big.bin: p and p/q are described by a later
  // volume's catalogue (a directory comes after what is in it).
  const first = join(dir, 'first');
  const r = iebs(['salvage', volumes[0], '--key', keys.restore, '--target', first]);
  assert.equal(r.code, 3, r.stdout + r.stderr);
  assert.match(r.stdout, /^incomplete: p\/q\/big\.bin\.incomplete /m);
  const normal = 0o777 & ~process.umask();
  assert.notEqual(normal, 0o750);
  for (const d of ['p', 'p/q']) assert.equal((lstatSync(join(first, d)).mode & 0o7777).toString(8), normal.toString(8), d);
});
