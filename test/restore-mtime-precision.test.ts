/**
 * Restored times (SPEC.md "Restore"): a restore gives back the manifest's mtime truncated
 * to the microsecond (what Node's utimes family can set), never a later time: not a whole
 * second later for .999999999 (the nearest double of 1600000003.999999999 is
 * 1600000004), not a microsecond later, not "now" for a time before 1970 (what Node
 * makes of a negative number). Files small and large, directories and symlinks; the
 * times of the source are set to the nanosecond with GNU touch.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { lstatSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { timeArg } from '../engine/restore/target.js';
import { MiB, iebsOk, makeKeys, tempDir, writeSeeded, type Keys } from './helpers.js';

let keys: Keys;
before(() => { keys = makeKeys(); });

/** `ns` truncated to the microsecond (towards the past). */
function floorUs(ns: bigint): bigint {
  const r = ns % 1000n;
  return ns - (r < 0n ? r + 1000n : r);
}

/** Sets a path's mtime (not following a symlink) to exactly `ns`, as GNU touch can. */
function touchNs(path: string, ns: bigint): void {
  const neg = ns < 0n;
  const a = neg ? -ns : ns;
  const text = `@${neg ? '-' : ''}${a / 1_000_000_000n}.${(a % 1_000_000_000n).toString().padStart(9, '0')}`;
  const r = spawnSync('touch', ['-h', '-d', text, path], { encoding: 'utf8' });
  assert.equal(r.status, 0, `touch ${text} ${path}: ${r.stderr}`);
  assert.equal(lstatSync(path, { bigint: true }).mtimeNs, ns, `touch did not set ${path} to ${ns}`);
}

// The red team's values, a microsecond boundary, times before 1970 (with and without a
// fraction), 0 and 1 ns either side of it.
const TIMES = [
  1_600_000_003_999_999_999n, 1_796_525_469_981_150_028n, 1_700_000_000_000_000_000n, 1_700_000_000_000_001_000n,
  1_700_000_000_000_000_999n, -14_182_940_000_000_001n, -14_182_940_500_000_000n, 0n, 1n, -1n,
];

test('timeArg: utimes with it sets the time truncated to the microsecond, never later', () => {
  const f = join(tempDir('timearg'), 'f');
  writeFileSync(f, '');
  for (const ns of TIMES) {
    const t = timeArg(ns);
    utimesSync(f, t, t);
    const got = lstatSync(f, { bigint: true }).mtimeNs;
    assert.equal(got, floorUs(ns), `${ns}: set ${got} with ${t}`);
  }
});

test('timeArg: far from 1970 (doubles coarser than a microsecond) the time set is at or before the wanted one', () => {
  const f = join(tempDir('timearg-far'), 'f');
  writeFileSync(f, '');
  // 2200 and 2400: inside what ext4 and tmpfs keep (1901 to 2446).
  for (const ns of [7_258_118_400_999_999_999n, 13_569_465_600_123_456_789n]) {
    const t = timeArg(ns);
    utimesSync(f, t, t);
    const got = lstatSync(f, { bigint: true }).mtimeNs;
    assert.ok(got <= ns && ns - got < 100_000n, `${ns}: set ${got} with ${t}`);
  }
});

test('restore gives files, a large file, directories and symlinks their mtimes to the microsecond, never later', () => {
  const dir = tempDir('mtime');
  const src = join(dir, 'src');
  mkdirSync(join(src, 'd', 'old'), { recursive: true });
  writeFileSync(join(src, 'd', 'small'), 'small\n');
  writeFileSync(join(src, 'empty'), '');
  writeSeeded(join(src, 'large.bin'), 'mtime-large', 3 * MiB);
  symlinkSync('d/small', join(src, 'link'));
  const want = new Map<string, bigint>([
    ['d/small', 1_600_000_003_999_999_999n], ['empty', 1_796_525_469_981_150_028n], ['large.bin', 1_600_000_000_000_000_999n],
    ['link', 1_600_000_001_999_999_999n], ['d/old', -14_182_940_000_000_001n], ['d', 1_600_000_002_999_999_999n],
  ]);
  // Deepest first: setting a child's time does not touch its parent's.
  for (const [p, ns] of want) touchNs(join(src, p), ns);
  utimesSync(src, 1_600_000_000, 1_600_000_000);
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
  const target = join(dir, 'restored');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
  const problems: string[] = [];
  for (const [p, ns] of want) {
    const got = lstatSync(join(target, p), { bigint: true }).mtimeNs;
    if (got !== floorUs(ns)) problems.push(`${p}: ${got}, expected ${floorUs(ns)} (recorded ${ns})`);
  }
  assert.deepEqual(problems, []);
});
