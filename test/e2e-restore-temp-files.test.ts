/**
 * Temporary files of a killed restore (SPEC.md "Restore"): a restore killed with SIGKILL
 * while a file is half written leaves it under its temporary name; the next restore into
 * that target removes exactly the files named as iebs names its temporaries (not a
 * directory of such a name, not a name that only looks alike) and leaves none of its own.
 *
 * The kill comes at a known point, not after a delay: one volume of the repository is
 * swapped for a FIFO, so the restore hangs for good when it needs that volume, after it
 * has begun writing the file whose blocks span it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MiB, diffTrees, iebs, iebsChild, iebsOk, makeKeys, readTree, tempDir, writeSeeded } from './helpers.js';

const TEMP = /^\.iebs-restore-[0-9a-f]{12}-[0-9a-z]+$/;

/** Every name under `dir` (recursively) that is an iebs temporary file name. */
function temps(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) if (TEMP.test(e.name) && e.isFile()) out.push(e.name);
  return out;
}

test('a restore killed mid-file leaves temporary files; the next restore removes exactly those and leaves none', async () => {
  const keys = makeKeys();
  const dir = tempDir('temps');
  const src = join(dir, 'src');
  mkdirSync(join(src, 'sub'), { recursive: true });
  writeSeeded(join(src, 'sub', 'big.bin'), 'temps-big', 20 * MiB);
  writeFileSync(join(src, 'small.txt'), 'small\n');
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--volume-size', '8MiB']);
  const volumes = readdirSync(join(repo, 'volumes')).sort();
  assert.ok(volumes.length >= 3, `expected big.bin to span volumes: ${volumes.join(' ')}`);
  const second = join(repo, 'volumes', volumes[1]);
  renameSync(second, `${second}.aside`);
  assert.equal(spawnSync('mkfifo', [second]).status, 0);

  const target = join(dir, 'target');
  const child = iebsChild(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
  const closed = new Promise<void>((resolve) => child.on('close', () => resolve()));
  let left: string[] = [];
  // The child hangs on the FIFO after it created big.bin's temporary file: wait for it.
  for (let i = 0; i < 6000 && left.length === 0 && child.exitCode === null; i++) {
    await sleep(10);
    try { left = temps(target); } catch { /* the target is not there yet */ }
  }
  assert.equal(child.exitCode, null, 'the restore ended on its own: it should have hung on the FIFO');
  child.kill('SIGKILL');
  await closed;
  left = temps(target);
  assert.ok(left.length > 0, 'the killed restore left its temporary file');

  // Names that only look alike, and a directory with a temporary file's name, are not iebs's.
  const decoys = ['.iebs-restore-notours', '.iebs-restore-0123456789ab-1.bak', '.iebs-restore-0123456789AB-1', 'sub/.iebs-restore-0123456789ab'];
  for (const d of decoys) writeFileSync(join(target, d), 'mine\n');
  mkdirSync(join(target, 'sub', '.iebs-restore-0123456789ab-7'));
  rmSync(second);
  renameSync(`${second}.aside`, second);

  const r = iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
  assert.match(r.stderr, new RegExp(`removed ${left.length} temporary file\\(s\\) an interrupted restore had left`));
  assert.deepEqual(temps(target), []);
  const got = readTree(target);
  for (const d of [...decoys, 'sub/.iebs-restore-0123456789ab-7']) assert.ok(got.has(d), `${d} was removed`);
  const extra = new Set([...decoys, 'sub/.iebs-restore-0123456789ab-7'].map((d) => `${JSON.stringify(d)}: extra`));
  assert.deepEqual(diffTrees(readTree(src), got).filter((d) => !extra.has(d)), []);

  // A run that ends normally leaves nothing either, and finds nothing to remove.
  const again = iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
  assert.doesNotMatch(again.stderr, /temporary/);
  assert.deepEqual(temps(target), []);
});

test('a restore that fails on a damaged volume leaves no temporary file', () => {
  const keys = makeKeys();
  const dir = tempDir('temps-fail');
  const src = join(dir, 'src');
  mkdirSync(src);
  writeSeeded(join(src, 'big.bin'), 'temps-fail-big', 20 * MiB);
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--volume-size', '8MiB']);
  const volumes = readdirSync(join(repo, 'volumes')).sort();
  rmSync(join(repo, 'volumes', volumes[1]));
  const target = join(dir, 'target');
  const r = iebs(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
  assert.equal(r.code, 3, r.stderr);
  assert.deepEqual(temps(target), []);
});

test('a restore stopped by a full target leaves no temporary file', (t) => {
  const keys = makeKeys();
  const dir = tempDir('temps-full');
  const src = join(dir, 'src');
  mkdirSync(src);
  for (let i = 0; i < 4; i++) writeSeeded(join(src, `big-${i}.bin`), `temps-full-${i}`, 8 * MiB);
  for (let i = 0; i < 200; i++) writeSeeded(join(src, `small-${i}`), `temps-full-small-${i}`, 20 * 1024);
  // Small files the restore reaches first, in a folder it makes.
  mkdirSync(join(src, 'a'));
  for (let i = 0; i < 20; i++) writeSeeded(join(src, 'a', `small-${i}`), `temps-full-a-${i}`, 20 * 1024);
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
  const target = join(dir, 'target');
  mkdirSync(target);
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=12m', 'tmpfs', target], { encoding: 'utf8' });
  assert.equal(m.status, 0, `this test mounts a 12 MiB tmpfs (it needs root): ${m.stderr}`);
  t.after(() => { spawnSync('umount', [target]); });
  const r = iebs(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /^iebs: .*target is full\n$/);
  assert.deepEqual(temps(target), []);
  // What the restore left is whole: small files in a folder it made have no temporary
  // name of their own to fail under, and the one the target filled up on was removed.
  const want = readTree(src);
  const got = readTree(target);
  assert.ok(got.size > 0, 'the restore wrote something before the target filled up');
  for (const [path, e] of got) {
    if (e.kind !== 'file') continue;
    assert.equal(e.sha256, want.get(path)?.sha256, `${path} is not whole`);
    assert.equal(e.mtimeNs / 1000n, want.get(path)!.mtimeNs / 1000n, `${path} has no mtime of its own`);
  }
});
