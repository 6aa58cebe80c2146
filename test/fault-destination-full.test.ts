/**
 * Fault injection, destination full: the repository lives on a 12 MiB file system (a
 * tmpfs, else a loop-mounted ext4; the test fails, not skips, when it can make neither)
 * holding one small snapshot. A backup of ~30 MiB more must stop with exit 1 and one
 * line saying the destination is full, and leave the repository exactly as it was: the
 * same files with the same bytes (a `.tmp-` object left behind is tolerated only if the
 * next backup removes it), the earlier snapshot restorable, verify clean. Moved to a
 * larger destination, the next backup cleans up and succeeds. A full temporary folder
 * (scratch files) is said as such, not as an internal error.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadRestoreKey } from '../engine/crypto/keys.js';
import { restore } from '../engine/restore/restore.js';
import { openStorage } from '../engine/storage/open.js';
import { IoError } from '../formats/errors.js';
import { join } from 'node:path';
import { MiB, assertOneLineError, copyTree, diffTrees, iebs, iebsOk, makeKeys, readTree, snapshots, tempDir, writeSeeded, type Keys } from './helpers.js';
import { debrisProblems, fileDigests, verifyRepo } from './fault-helpers.js';

let keys: Keys;
before(() => { keys = makeKeys(); });

/** Mounts a file system of `mib` MiB at `dir`: a tmpfs, else a loop ext4. Returns how, or throws saying why neither worked. */
function mountSmall(dir: string, mib: number): string {
  const t = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m,mode=0755`, 'tmpfs', dir], { encoding: 'utf8' });
  if (t.status === 0) return 'tmpfs';
  const img = `${dir}.img`;
  const steps: [string, string[]][] = [['truncate', ['-s', `${mib}M`, img]], ['mkfs.ext4', ['-q', '-F', '-m', '0', img]], ['mount', ['-o', 'loop', img, dir]]];
  for (const [cmd, args] of steps) {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    if (r.status !== 0) {
      throw new Error(`cannot make a small file system for this test (it needs root or CAP_SYS_ADMIN): mount -t tmpfs: ${(t.stderr || String(t.error)).trim()}; ` +
        `loop ext4 fallback, ${cmd}: ${(r.stderr || String(r.error)).trim()}`);
    }
  }
  return 'loop ext4';
}

function unmount(dir: string): void {
  if (spawnSync('umount', [dir]).status !== 0) spawnSync('umount', ['-l', dir]);
}

test('a backup that fills the destination: exit 1, one line, the repository exactly as before', async (t) => {
  const dir = tempDir('dest-full');
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  const how = mountSmall(mnt, 12);
  t.diagnostic(`destination: a 12 MiB ${how}`);
  try {
    const src = join(dir, 'src');
    const repo = join(mnt, 'repo');
    mkdirSync(join(src, 'sub'), { recursive: true });
    writeSeeded(join(src, 'first.bin'), 'full-first', MiB);
    writeFileSync(join(src, 'sub', 'note.txt'), 'a note\n');
    iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--volume-size', '8MiB']);
    const first = readTree(src);
    const [snap0] = snapshots(repo);
    const before = fileDigests(repo);

    // ~30 MiB more than the 11 MiB left: the first new volume fits, the second does not.
    for (let i = 0; i < 3; i++) writeSeeded(join(src, `big${i}.bin`), `full-big${i}`, 10 * MiB);
    const r = iebs(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--volume-size', '8MiB']);
    const after = fileDigests(repo);
    const shown = (m: Map<string, string>) => [...m.keys()].map((k) => Buffer.from(k, 'latin1').toString()).sort().join(', ');

    await t.test('the backup exits 1 with one line saying the destination is full', () => {
      assert.equal(r.code, 1, `exit ${r.code}; stderr ${r.stderr}`);
      const lines = r.stderr.split('\n').filter((l) => l);
      assert.equal(lines.length, 1, `one line on stderr, got ${JSON.stringify(r.stderr)}`);
      assert.match(lines[0], /^iebs: .*(destination is full|no space)/i);
      assert.doesNotMatch(r.stderr, /internal error|^\s+at /m);
    });

    await t.test('the repository holds the same files with the same bytes (temporary objects aside)', () => {
      const kept = new Map([...after].filter(([k]) => !k.includes('.tmp-')));
      const changed = [...new Set([...before.keys(), ...kept.keys()])].filter((k) => before.get(k) !== kept.get(k));
      assert.deepEqual(changed.map((k) => Buffer.from(k, 'latin1').toString()), [], `before: ${shown(before)}\nafter: ${shown(after)}`);
    });

    await t.test('verify with public keys is clean and the earlier snapshot restores', () => {
      const v = verifyRepo(repo, keys.recipient);
      assert.equal(v.run.code, 0, v.run.stdout + v.run.stderr);
      assert.deepEqual(v.problems, []);
      assert.deepEqual(snapshots(repo).map((s) => s.name), [snap0.name]);
      const target = join(dir, 'restored-0');
      iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
      assert.deepEqual(diffTrees(first, readTree(target)), []);
    });

    await t.test('on a larger destination the next backup cleans up what is left and succeeds', () => {
      const bigger = join(dir, 'bigger');
      copyTree(repo, bigger);
      iebsOk(['backup', '--init', src, '--repo', bigger, '--key', keys.backup, '--volume-size', '8MiB']);
      assert.deepEqual(debrisProblems(bigger), []);
      const list = snapshots(bigger);
      assert.equal(list.length, 2);
      const t1 = join(dir, 'restored-1');
      iebsOk(['restore', '--repo', bigger, '--key', keys.restore, '--target', t1]);
      assert.deepEqual(diffTrees(readTree(src), readTree(t1)), []);
      const t0 = join(dir, 'restored-0b');
      iebsOk(['restore', '--repo', bigger, '--key', keys.restore, '--target', t0, '--snapshot', list[0].name]);
      assert.deepEqual(diffTrees(first, readTree(t0)), []);
    });
  } finally {
    unmount(mnt);
    rmSync(`${mnt}.img`, { force: true });
  }
});

test('a destination already full when the lock is taken: exit 1, one line, no lock and no temporary object left', () => {
  const dir = tempDir('dest-full-lock');
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  mountSmall(mnt, 4);
  try {
    const src = join(dir, 'src');
    const repo = join(mnt, 'repo');
    mkdirSync(src);
    writeFileSync(join(src, 'a.txt'), 'a\n');
    iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
    const before = fileDigests(repo);
    // Fill every last byte: the filler is written until the file system refuses.
    const filler = join(mnt, 'filler');
    spawnSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=4k'], { encoding: 'utf8' });
    writeFileSync(join(src, 'b.txt'), 'b\n');
    const r = iebs(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
    assert.equal(r.code, 1, r.stderr);
    assertOneLine(r.stderr, /destination is full|no space/i);
    assert.deepEqual([...fileDigests(repo).keys()].sort(), [...before.keys()].sort(), 'no lock, no temporary object, nothing else left');
    rmSync(filler);
    iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
    assert.equal(snapshots(repo).length, 2);
  } finally {
    unmount(mnt);
    rmSync(`${mnt}.img`, { force: true });
  }
});

function assertOneLine(stderr: string, re: RegExp): void {
  const lines = stderr.split('\n').filter((l) => l);
  assert.equal(lines.length, 1, `one line on stderr, got ${JSON.stringify(stderr)}`);
  assert.match(lines[0], re);
}

test('a full temporary folder: a backup exits 1 with one line naming it and a restore fails the same way, leaving the repository and target as they were', async () => {
  const dir = tempDir('tmp-full');
  const mnt = join(dir, 'tmp');
  mkdirSync(mnt);
  mountSmall(mnt, 1);
  try {
    const src = join(dir, 'src');
    const repo = join(dir, 'repo');
    mkdirSync(src);
    // Enough files that the run's scratch (its records, over 1 MiB) must go to the temporary folder.
    for (let i = 0; i < 6000; i++) writeFileSync(join(src, `f${i}.txt`), `file ${i}\n`);
    iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
    const before = fileDigests(repo);
    // Fill every last byte of the temporary folder.
    spawnSync('dd', ['if=/dev/zero', `of=${join(mnt, 'filler')}`, 'bs=4k'], { encoding: 'utf8' });
    const env = { TMPDIR: mnt, IEBS_CACHE_DIR: join(dir, 'cache') };
    // A full backup of its own (another system name): its records go through the scratch.
    const b = iebs(['backup', src, '--repo', repo, '--key', keys.backup, '--name', 'second'], { env });
    assert.equal(b.code, 1, b.stderr);
    assertOneLineError(b, /temporary folder .*TMPDIR/);
    const kept = new Map([...fileDigests(repo)].filter(([k]) => !k.includes('.tmp-')));
    assert.deepEqual([...kept].sort(), [...before].sort(), 'the repository as it was');
    // A restore needs scratch files only once its tables outgrow their arenas: a tiny one here.
    const target = join(dir, 'out');
    const rk = await loadRestoreKey(keys.restore, undefined);
    const was = process.env.TMPDIR;
    process.env.TMPDIR = mnt;
    try {
      await assert.rejects(restore(openStorage(repo), rk, { target, arena: 2048 }), (e: unknown) => {
        assert.ok(e instanceof IoError && e.code === 'no-space', String(e));
        assert.match(e.message, /temporary folder .*TMPDIR/);
        return true;
      });
    } finally {
      if (was === undefined) delete process.env.TMPDIR; else process.env.TMPDIR = was;
    }
    assert.deepEqual(existsSync(target) ? readdirSync(target) : [], [], 'no file restored');
    assert.deepEqual(readdirSync(mnt), ['filler'], 'no scratch left in the temporary folder');
  } finally {
    unmount(mnt);
    rmSync(`${mnt}.img`, { force: true });
  }
});

test('a read-only temporary folder: backup and restore exit 1 with one line naming it, and write nothing', () => {
  const dir = tempDir('tmp-ro');
  const mnt = join(dir, 'tmp');
  mkdirSync(mnt);
  mountSmall(mnt, 1);
  try {
    const remount = spawnSync('mount', ['-o', 'remount,ro', mnt], { encoding: 'utf8' });
    assert.equal(remount.status, 0, `mount -o remount,ro: ${remount.stderr}`);
    const src = join(dir, 'src');
    const repo = join(dir, 'repo');
    mkdirSync(src);
    writeFileSync(join(src, 'a.txt'), 'a\n');
    iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
    const before = fileDigests(repo);
    const env = { TMPDIR: mnt, IEBS_CACHE_DIR: join(dir, 'cache') };
    writeFileSync(join(src, 'b.txt'), 'b\n');
    const b = iebs(['backup', src, '--repo', repo, '--key', keys.backup], { env });
    assert.equal(b.code, 1, b.stderr);
    assertOneLineError(b, /cannot write scratch files in the temporary folder .*EROFS.*TMPDIR/);
    assert.deepEqual([...fileDigests(repo)].sort(), [...before].sort(), 'the repository as it was');
    const target = join(dir, 'out');
    const r = iebs(['restore', '--repo', repo, '--key', keys.restore, '--target', target], { env });
    assert.equal(r.code, 1, r.stderr);
    assertOneLineError(r, /cannot write scratch files in the temporary folder .*EROFS.*TMPDIR/);
    assert.deepEqual(existsSync(target) ? readdirSync(target) : [], [], 'no file restored');
  } finally {
    unmount(mnt);
    rmSync(`${mnt}.img`, { force: true });
  }
});
