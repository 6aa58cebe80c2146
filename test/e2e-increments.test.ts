/**
 * End to end, through the real CLI: an increment chain (edit in place, append, insert,
 * rename, copy, delete, add) stores only what changed, and every snapshot of the chain
 * restores to the tree as it was at that time; --full and --max-increments decide the
 * snapshot type; a path that changes kind between snapshots restores as its new kind.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, chmodSync, closeSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, symlinkSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import {
  MiB, copyTree, diffTrees, iebsOk, makeKeys, readTree, removeTree, seededBytes, snapshots, tempDir, writeSeeded, type Keys,
} from './helpers.js';

let keys: Keys;
before(() => { keys = makeKeys(); });

interface BackupJson { snapshot: string; type: string; counts: { stored: number; new: number; changed: number; unchanged: number; deleted: number; files: number } }

test('an increment chain stores only changes and every snapshot restores as it was', (t) => {
  const dir = tempDir('chain');
  const src = join(dir, 'src');
  const repo = join(dir, 'repo');
  mkdirSync(join(src, 'docs'), { recursive: true });
  mkdirSync(join(src, 'olddir', 'y'), { recursive: true });
  mkdirSync(join(src, 'empty'));
  writeSeeded(join(src, 'big.bin'), 'chain-big', 30 * MiB);
  writeSeeded(join(src, 'big2.bin'), 'chain-big2', 8 * MiB);
  writeFileSync(join(src, 'log.txt'), 'line 1\n');
  writeFileSync(join(src, 'docs', 'a.txt'), 'a\n');
  writeFileSync(join(src, 'docs', 'b.txt'), 'b\n'.repeat(5000));
  writeFileSync(join(src, 'olddir', 'x'), 'x\n');
  writeFileSync(join(src, 'olddir', 'y', 'z'), 'z\n');
  writeFileSync(join(src, 'del.txt'), 'to be deleted\n');
  symlinkSync('docs/a.txt', join(src, 'link'));

  const steps: { label: string; json: BackupJson; copy: string }[] = [];
  const backupStep = (label: string) => {
    const json = JSON.parse(iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--volume-size', '8MiB', '--json']).stdout) as BackupJson;
    const copy = join(dir, `copy-${steps.length}`);
    copyTree(src, copy);
    steps.push({ label, json, copy });
    t.diagnostic(`${label}: ${json.type} ${json.snapshot} stored ${json.counts.stored} bytes`);
    return json;
  };

  const full = backupStep('full');
  assert.equal(full.type, 'full');
  assert.ok(full.counts.stored > 38 * MiB, `the full stores everything: ${full.counts.stored}`);

  // Edit in place: 10 bytes in the middle of the big file; also a mode-only change.
  const fd = openSync(join(src, 'big.bin'), 'r+');
  writeSync(fd, Buffer.from('0123456789'), 0, 10, 15 * MiB + 12345);
  closeSync(fd);
  chmodSync(join(src, 'docs', 'a.txt'), 0o600);
  const edit = backupStep('edit in place');
  assert.equal(edit.type, 'increment');
  assert.equal(edit.counts.changed, 2, 'big.bin and docs/a.txt changed');
  // One block (two if the edit moved a cut point) of at most 4 MiB, not the 30 MiB file.
  assert.ok(edit.counts.stored < 5 * MiB, `edit in place stored ${edit.counts.stored}`);

  // Append: a line to a small file, 64 KiB to an 8 MiB one.
  appendFileSync(join(src, 'log.txt'), 'line 2\n');
  appendFileSync(join(src, 'big2.bin'), seededBytes('chain-append', 64 * 1024));
  const append = backupStep('append');
  assert.equal(append.counts.changed, 2);
  assert.ok(append.counts.stored < 5 * MiB, `append stored ${append.counts.stored}`);

  // Insert 100 bytes near the start of the 30 MiB file.
  const big = readFileSync(join(src, 'big.bin'));
  writeFileSync(join(src, 'big.bin'), Buffer.concat([big.subarray(0, 1000), seededBytes('chain-insert', 100), big.subarray(1000)]));
  const insert = backupStep('insert');
  assert.equal(insert.counts.changed, 1);
  assert.ok(insert.counts.stored < 3 * MiB, `insertion into a 30 MiB file stored ${insert.counts.stored}`);

  // Rename the 8 MiB file into a new directory.
  mkdirSync(join(src, 'moved'));
  renameSync(join(src, 'big2.bin'), join(src, 'moved', 'big2-renamed.bin'));
  const rename = backupStep('rename');
  assert.equal(rename.counts.deleted, 1, 'the old name is deleted');
  assert.ok(rename.counts.stored < 1 * MiB, `rename stored ${rename.counts.stored}`);

  // Copy the 30 MiB file.
  writeFileSync(join(src, 'big-copy.bin'), readFileSync(join(src, 'big.bin')));
  const copy = backupStep('copy');
  assert.equal(copy.counts.new, 1);
  assert.ok(copy.counts.stored < 1 * MiB, `copy of a 30 MiB file stored ${copy.counts.stored}`);

  // Delete a file and a directory tree (olddir, olddir/x, olddir/y, olddir/y/z).
  rmSync(join(src, 'del.txt'));
  rmSync(join(src, 'olddir'), { recursive: true });
  const del = backupStep('delete');
  assert.equal(del.counts.deleted, 5);
  assert.ok(del.counts.stored < 1 * MiB, `delete stored ${del.counts.stored}`);

  // Add new files, one in a new directory, and an old-dated one.
  mkdirSync(join(src, 'new'));
  writeFileSync(join(src, 'new', 'one.txt'), 'one\n');
  writeSeeded(join(src, 'new', 'two.bin'), 'chain-new', 1 * MiB + 17);
  writeFileSync(join(src, 'dated'), 'dated\n');
  utimesSync(join(src, 'dated'), 1_000_000_000.5, 1_000_000_000.5);
  const add = backupStep('add');
  assert.equal(add.counts.new, 4, 'new, new/one.txt, new/two.bin, dated');

  // Nothing changed: an increment that stores nothing but its catalogue.
  const idle = backupStep('nothing changed');
  assert.equal(idle.counts.new + idle.counts.changed + idle.counts.deleted, 0);

  const list = snapshots(repo);
  assert.deepEqual(list.map((s) => s.name), steps.map((s) => s.json.snapshot));
  assert.deepEqual(list.map((s) => s.type), ['full', ...steps.slice(1).map(() => 'increment')]);
  for (let i = 0; i < list.length; i++) {
    assert.equal(list[i].chain, list[0].name);
    assert.equal(list[i].parent, i ? list[i - 1].name : null);
    assert.equal(list[i].stored, steps[i].json.counts.stored, `${list[i].name}: snapshots --json agrees with backup --json`);
  }

  for (const [i, s] of steps.entries()) {
    const target = join(dir, `restore-${i}`);
    iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target, '--snapshot', s.json.snapshot]);
    assert.deepEqual(diffTrees(readTree(s.copy), readTree(target)), [], `snapshot ${i} (${s.label}) ${s.json.snapshot}`);
    removeTree(target);
  }
});

test('--full forces a full and --max-increments 2 makes the 4th backup a full', () => {
  const dir = tempDir('types');
  const src = join(dir, 'src');
  const repo = join(dir, 'repo');
  mkdirSync(src);
  const run = (...extra: string[]) => {
    writeFileSync(join(src, `f${Date.now()}-${Math.random()}`), 'x\n');
    return (JSON.parse(iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--json', ...extra]).stdout) as BackupJson).type;
  };
  const got = [run('--max-increments', '2'), run('--max-increments', '2'), run('--max-increments', '2'), run('--max-increments', '2'), run('--max-increments', '2'), run('--full'), run()];
  assert.deepEqual(got, ['full', 'increment', 'increment', 'full', 'increment', 'full', 'increment']);
  const list = snapshots(repo);
  assert.deepEqual(list.map((s) => s.type), got);
  assert.equal(list[3].chain, list[3].name, 'the forced full starts a new chain');
  assert.equal(list[4].chain, list[3].name);
  assert.equal(list[6].chain, list[5].name);
  // A full made while increments exist is still restorable on its own and equals the source of its time.
  const target = join(dir, 'restored');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
  assert.deepEqual(diffTrees(readTree(src), readTree(target)), []);
});

test('a path that changes kind between snapshots (dir→symlink, file→dir, symlink→file) restores as its new kind', () => {
  const dir = tempDir('kinds');
  const src = join(dir, 'src');
  const repo = join(dir, 'repo');
  mkdirSync(join(src, 'd'), { recursive: true });
  writeFileSync(join(src, 'd', 'f'), 'in d\n');
  writeFileSync(join(src, 'x'), 'x is a file\n');
  symlinkSync('x', join(src, 'y'));
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
  const first = join(dir, 'copy-0');
  copyTree(src, first);

  rmSync(join(src, 'd'), { recursive: true });
  symlinkSync('x', join(src, 'd'));
  rmSync(join(src, 'x'));
  mkdirSync(join(src, 'x'));
  writeFileSync(join(src, 'x', 'inner'), 'x is a dir now\n');
  rmSync(join(src, 'y'));
  writeFileSync(join(src, 'y'), 'y is a file now\n');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);

  const target = join(dir, 'restored');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
  assert.deepEqual(diffTrees(readTree(src), readTree(target)), []);

  const listed = JSON.parse(iebsOk(['ls', '--repo', repo, '--key', keys.restore, '--json']).stdout) as { files: { path: string; kind: string }[] };
  assert.deepEqual(listed.files.map((f) => `${f.kind} ${f.path}`), ['symlink d', 'dir x', 'file x/inner', 'file y'], 'ls of the increment shows each path once, as its new kind');

  const snaps = snapshots(repo);
  const target0 = join(dir, 'restored-0');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target0, '--snapshot', snaps[0].name]);
  assert.deepEqual(diffTrees(readTree(first), readTree(target0)), []);
});
