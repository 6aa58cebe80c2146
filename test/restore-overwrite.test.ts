/**
 * Restore safety through the real CLI: --overwrite never (the default) keeps what is in
 * the target, if-changed replaces only what differs from the snapshot, always replaces
 * everything; --dry-run says which and writes nothing; an --include that matches
 * nothing warns and exits 3; a --target that is a file is one clear line.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readlinkSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertOneLineError, diffTrees, iebs, iebsOk, makeKeys, readTree, tempDir, type Keys } from './helpers.js';

let keys: Keys;
let dir: string;
let src: string;
let repo: string;

before(() => {
  keys = makeKeys();
  dir = tempDir('overwrite');
  src = join(dir, 'src');
  mkdirSync(join(src, 'sub'), { recursive: true });
  writeFileSync(join(src, 'same.txt'), 'same\n');
  writeFileSync(join(src, 'edited.txt'), 'from the snapshot\n');
  writeFileSync(join(src, 'sub', 'new.txt'), 'only in the snapshot\n');
  symlinkSync('same.txt', join(src, 'link'));
  repo = join(dir, 'repo');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
});

/** A target restored once, then with edited.txt changed locally and link pointing elsewhere. */
function usedTarget(label: string): string {
  const t = join(tempDir(label), 't');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', t]);
  writeFileSync(join(t, 'edited.txt'), 'edited here, not backed up\n');
  utimesSync(join(t, 'edited.txt'), new Date(), new Date(Date.now() + 5000));
  return t;
}

const restore = (t: string, ...more: string[]) => iebs(['restore', '--repo', repo, '--key', keys.restore, '--target', t, ...more]);

test('default (never): an existing file that differs is kept and counted; missing ones are restored', () => {
  const t = usedTarget('never');
  const r = restore(t);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(readFileSync(join(t, 'edited.txt'), 'utf8'), 'edited here, not backed up\n');
  assert.match(r.stderr, /^iebs: kept 1 existing file\(s\) that differ from the snapshot \(--overwrite if-changed or always replaces them\)$/m);
  assert.match(r.stdout, /; 3 unchanged; 1 kept\n$/);
});

test('if-changed replaces only what differs; always replaces all', () => {
  const t = usedTarget('if-changed');
  const before = statSync(join(t, 'same.txt')).ino;
  const r = restore(t, '--overwrite', 'if-changed');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(readFileSync(join(t, 'edited.txt'), 'utf8'), 'from the snapshot\n');
  assert.equal(statSync(join(t, 'same.txt')).ino, before, 'an unchanged file is not rewritten');
  assert.deepEqual(diffTrees(readTree(src), readTree(t), { only: (p) => p !== '' }), []);
  const a = restore(t, '--overwrite', 'always');
  assert.equal(a.code, 0, a.stderr);
  assert.notEqual(statSync(join(t, 'same.txt')).ino, before, 'always rewrites');
  assert.equal(readlinkSync(join(t, 'link')), 'same.txt');
});

test('--dry-run lists what would be done and writes nothing', () => {
  const t = usedTarget('dry');
  writeFileSync(join(t, 'sub', 'new.txt'), 'x');
  const fresh = join(dir, 'fresh-target');
  const plan = iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', t, '--dry-run', '--overwrite', 'if-changed']);
  assert.match(plan.stdout, /^replace +edited\.txt {2}18 B$/m);
  assert.match(plan.stdout, /^unchanged +same\.txt/m);
  assert.match(plan.stdout, /^replace +sub\/new\.txt/m);
  assert.equal(readFileSync(join(t, 'edited.txt'), 'utf8'), 'edited here, not backed up\n');
  const never = iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', t, '--dry-run']);
  assert.match(never.stdout, /^keep +edited\.txt/m);
  const none = iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', fresh, '--dry-run', '--json']);
  const j = JSON.parse(none.stdout) as { plan: { action: string }[]; write: number };
  assert.ok(j.plan.every((p) => p.action === 'new'));
  assert.equal(j.write, j.plan.length);
  assert.equal(statSync(fresh, { throwIfNoEntry: false }), undefined, 'a dry run makes no target');
});

test('an --include that matches nothing: a warning and exit 3', () => {
  const r = restore(join(dir, 'nothing'), '--include', '^no-such-path$');
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /^iebs: warning: --include matched nothing in \S+$/m);
  const ok = restore(join(dir, 'something'), '--include', '^same');
  assert.equal(ok.code, 0, ok.stderr);
});

test('a --target that is a file: one line, exit 1, the file untouched', () => {
  const f = join(dir, 'a-file');
  writeFileSync(f, 'mine\n');
  const r = restore(f);
  assert.equal(r.code, 1);
  assertOneLineError(r, /a-file: not a directory/);
  assert.equal(readFileSync(f, 'utf8'), 'mine\n');
});
