/**
 * End to end, through the real CLI: --dry-run plans without writing a byte, in text and
 * JSON; --include/--exclude on backup and --include on restore select by the path
 * relative to the source.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync, writeFileSync, appendFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { diffTrees, iebs, iebsOk, makeKeys, readTree, tempDir, type Keys } from './helpers.js';

let keys: Keys;
before(() => { keys = makeKeys(); });

interface DryJson { dryRun: boolean; type: string; counts: { new: number; changed: number; deleted: number; unchanged: number }; plan: { status: string; path: string; size: number }[] }

/** The planned lines of a text dry run: status and path. */
function planLines(stdout: string): { status: string; path: string }[] {
  return stdout.split('\n').filter((l) => /^(new|changed|deleted) /.test(l)).map((l) => {
    const m = /^(\S+)\s+(.*?)(?:  \S+ ?[KMGT]?i?B)?$/.exec(l)!;
    return { status: m[1], path: m[2] };
  });
}

test('--dry-run of a first backup plans a full and creates no repository', () => {
  const dir = tempDir('dry-first');
  const src = join(dir, 'src');
  mkdirSync(join(src, 'sub'), { recursive: true });
  writeFileSync(join(src, 'a.txt'), 'a\n');
  writeFileSync(join(src, 'sub', 'b.txt'), 'b\n');
  const repo = join(dir, 'repo');
  const r = iebs(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--dry-run']);
  assert.ok(!existsSync(repo), 'the dry run created the repository');
  assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
  assert.deepEqual(planLines(r.stdout).map((p) => `${p.status} ${p.path}`).sort(), ['new a.txt', 'new sub', 'new sub/b.txt']);
  const j = iebs(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--dry-run', '--json']);
  assert.equal(j.code, 0, j.stderr);
  const plan = (JSON.parse(j.stdout) as DryJson).plan;
  assert.deepEqual(plan.map((p) => `${p.status} ${p.path}`).sort(), ['new a.txt', 'new sub', 'new sub/b.txt']);
  assert.ok(!existsSync(repo));
});

test('--dry-run on an existing repository writes nothing and lists new, changed and deleted entries', () => {
  const dir = tempDir('dry');
  const src = join(dir, 'src');
  mkdirSync(join(src, 'gone'), { recursive: true });
  writeFileSync(join(src, 'keep.txt'), 'keep\n');
  writeFileSync(join(src, 'edit.txt'), 'edit\n');
  writeFileSync(join(src, 'del.txt'), 'del\n');
  writeFileSync(join(src, 'gone', 'inner'), 'inner\n');
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);

  appendFileSync(join(src, 'edit.txt'), 'more\n');
  writeFileSync(join(src, 'added.txt'), 'added\n');
  rmSync(join(src, 'del.txt'));
  rmSync(join(src, 'gone'), { recursive: true });
  const before = readTree(repo);
  const repoMtime = statSync(repo).mtimeMs;

  const r = iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--dry-run']);
  const lines = planLines(r.stdout);
  const shown = lines.filter((l) => l.status !== 'deleted').map((l) => `${l.status} ${l.path}`).sort();
  assert.ok(shown.includes('new added.txt'), r.stdout);
  assert.ok(shown.includes('changed edit.txt'), r.stdout);
  assert.ok(!shown.some((l) => l.endsWith(' keep.txt')), 'unchanged files are not planned');
  // The backup host cannot name deleted paths (only keyed path ids are in the index), but
  // it must plan one deletion per entry gone: del.txt, gone, gone/inner.
  assert.equal(lines.filter((l) => l.status === 'deleted').length, 3, r.stdout);
  assert.match(r.stdout, /dry run: increment /);

  const j = JSON.parse(iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--dry-run', '--json']).stdout) as DryJson;
  assert.equal(j.dryRun, true);
  assert.equal(j.type, 'increment');
  assert.deepEqual({ new: j.counts.new, changed: j.counts.changed, deleted: j.counts.deleted }, { new: 1, changed: 1, deleted: 3 });
  assert.deepEqual(j.plan.filter((p) => p.status !== 'deleted').map((p) => `${p.status} ${p.path}`).sort(), ['changed edit.txt', 'new added.txt']);

  assert.deepEqual(diffTrees(before, readTree(repo)), [], 'the repository is unchanged');
  assert.equal(statSync(repo).mtimeMs, repoMtime, 'nothing created or removed at the top of the repository');

  // The real run then does what was planned.
  const real = JSON.parse(iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--json']).stdout) as DryJson;
  assert.deepEqual({ new: real.counts.new, changed: real.counts.changed, deleted: real.counts.deleted }, { new: 1, changed: 1, deleted: 3 });
});

/** A source tree for the filter tests. */
function filterTree(src: string): void {
  for (const d of ['keep/sub', 'skip', 'with space', 'emptydir']) mkdirSync(join(src, d), { recursive: true });
  for (const f of ['keep/a.txt', 'keep/b.log', 'keep/sub/c.txt', 'skip/d.txt', 'skip/e.log', 'top.txt', 'top.log', 'with space/f.txt', 'skipper.txt']) writeFileSync(join(src, f), `${f}\n`);
}

/** Paths of the tree that are `p` or have `p` below them, among the given ones. */
function withAncestors(paths: string[]): Set<string> {
  const out = new Set<string>();
  for (const p of paths) {
    const parts = p.split('/');
    for (let i = 1; i <= parts.length; i++) out.add(parts.slice(0, i).join('/'));
  }
  return out;
}

test('backup --exclude and --include select by the path relative to the source', () => {
  const dir = tempDir('filters');
  const src = join(dir, 'src');
  filterTree(src);
  const tree = readTree(src);

  const cases: { label: string; args: string[]; expect: (p: string) => boolean }[] = [
    { label: 'exclude a directory and a suffix', args: ['--exclude', '^skip(/|$)', '--exclude', '\\.log$'], expect: (p) => !/^skip(\/|$)/.test(p) && !/\.log$/.test(p) },
    { label: 'include a suffix', args: ['--include', '\\.txt$'], expect: (p) => withAncestors(['keep/a.txt', 'keep/sub/c.txt', 'skip/d.txt', 'top.txt', 'with space/f.txt', 'skipper.txt']).has(p) },
    { label: 'include a directory, exclude below it', args: ['--include', '^keep/', '--exclude', '^keep/sub$'], expect: (p) => ['keep', 'keep/a.txt', 'keep/b.log'].includes(p) },
    { label: 'a name with a space', args: ['--include', '^with space/'], expect: (p) => ['with space', 'with space/f.txt'].includes(p) },
  ];
  for (const [i, c] of cases.entries()) {
    const repo = join(dir, `repo-${i}`);
    iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, ...c.args]);
    const target = join(dir, `restored-${i}`);
    iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
    assert.deepEqual(diffTrees(tree, readTree(target), { only: c.expect }), [], c.label);
  }
});

test('restore --include restores only matching paths', () => {
  const dir = tempDir('restore-include');
  const src = join(dir, 'src');
  filterTree(src);
  const tree = readTree(src);
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);

  const target = join(dir, 'restored');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target, '--include', '^keep/sub(/|$)', '--include', '^top\\.txt$']);
  const got = readTree(target);
  // keep itself does not match: it is made as a plain parent directory.
  assert.equal(got.get('keep')?.kind, 'dir');
  got.delete('keep');
  assert.deepEqual(diffTrees(tree, got, { only: (p) => ['keep/sub', 'keep/sub/c.txt', 'top.txt'].includes(p) }), []);

  const target2 = join(dir, 'restored2');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target2, '--include', '\\.log$']);
  const got2 = readTree(target2);
  for (const d of ['keep', 'skip']) { assert.equal(got2.get(d)?.kind, 'dir'); got2.delete(d); }
  assert.deepEqual(diffTrees(tree, got2, { only: (p) => /\.log$/.test(p) }), []);
});
