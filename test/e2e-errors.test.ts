/**
 * End to end, through the real CLI: bad input gets one clear `iebs: ...` line on stderr,
 * no stack trace, and the documented exit code (2 bad arguments, 1 error).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertOneLineError, iebs, iebsOk, makeKeys, tempDir, type Keys } from './helpers.js';

let keys: Keys;
let dir: string;
let src: string;
let repo: string;

before(() => {
  keys = makeKeys();
  dir = tempDir('errors');
  src = join(dir, 'src');
  repo = join(dir, 'repo');
  mkdirSync(src);
  writeFileSync(join(src, 'a'), 'a\n');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
});

/** Runs and checks the exit code and the single line. */
function fails(args: string[], code: number, re?: RegExp) {
  const r = iebs(args);
  assert.equal(r.code, code, `iebs ${args.join(' ')}: exit ${r.code}, expected ${code}; stderr: ${r.stderr}`);
  assertOneLineError(r, re);
  return r;
}

test('usage errors exit 2 with one line', () => {
  fails(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--bogus'], 2, /--bogus/);
  fails(['backup', '--init', src, '--key', keys.backup], 2, /--repo/);
  fails(['backup', '--init', '--repo', repo, '--key', keys.backup], 2, /SOURCE/);
  fails(['backup', '--init', join(dir, 'no-such-dir'), '--repo', repo, '--key', keys.backup], 2, /no-such-dir/);
  fails(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--max-increments', 'many'], 2, /max-increments/);
  fails(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--exclude', '(['], 2, /exclude/);
  fails(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--full=yes'], 2, /--full/);
  fails(['backup', '--init', src, '--repo', repo, '--key'], 2, /--key/);
  fails(['restore', '--repo', repo, '--key', keys.restore], 2, /--target/);
  fails(['restore', '--key', keys.restore, '--target', join(dir, 't')], 2, /--repo/);
  fails(['restore', '--repo', repo, '--key', keys.restore, '--target', join(dir, 't'), '--include', '*'], 2, /include/);
  fails(['ls', '--repo', repo], 2, /--key/);
  fails(['snapshots'], 2, /--repo/);
  const unknown = iebs(['frobnicate']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /^iebs: unknown command "frobnicate"/);
});

test('a backup refused for a missing source leaves no repository behind', () => {
  const fresh = join(dir, 'fresh-repo');
  const r = iebs(['backup', '--init', join(dir, 'no-such-dir'), '--repo', fresh, '--key', keys.backup]);
  assert.equal(r.code, 2, r.stderr);
  assert.ok(!existsSync(fresh), `${fresh} was created by a backup that backed up nothing`);
});

test('a repository that does not exist: exit 1, says there is no repository', () => {
  const missing = join(dir, 'no-repo-here');
  const wrong: string[] = [];
  for (const args of [
    ['restore', '--repo', missing, '--key', keys.restore, '--target', join(dir, 't1')],
    ['ls', '--repo', missing, '--key', keys.restore],
    ['snapshots', '--repo', missing],
  ]) {
    const r = iebs(args);
    assertOneLineError(r);
    if (r.code !== 1 || !/no iebs repository/.test(r.stderr)) wrong.push(`iebs ${args[0]}: exit ${r.code}, ${JSON.stringify(r.stderr.trim())}`);
  }
  assert.deepEqual(wrong, [], 'each verb says there is no repository');
  assert.ok(!existsSync(missing), 'reading verbs create nothing');
  assert.ok(!existsSync(join(dir, 't1')), 'no restore target made for a missing repository');
});

test('the wrong kind of key file: exit 1, one line naming the problem', () => {
  fails(['backup', '--init', src, '--repo', repo, '--key', keys.restore], 1, /not a backup key/);
  fails(['backup', '--init', src, '--repo', repo, '--key', keys.recipient], 1, /backup key/);
  fails(['restore', '--repo', repo, '--key', keys.backup, '--target', join(dir, 't2')], 1, /restore key/);
  fails(['restore', '--repo', repo, '--key', keys.recipient, '--target', join(dir, 't2')], 1, /private key|restore key/);
  const text = join(dir, 'not-a-key.txt');
  writeFileSync(text, 'hello, I am not a key\n');
  fails(['backup', '--init', src, '--repo', repo, '--key', text], 1, /not-a-key\.txt/);
  fails(['restore', '--repo', repo, '--key', text, '--target', join(dir, 't2')], 1, /not-a-key\.txt/);
  fails(['backup', '--init', src, '--repo', repo, '--key', join(dir, 'missing.key')], 1, /missing\.key/);
  fails(['restore', '--repo', repo, '--key', join(dir, 'missing.key'), '--target', join(dir, 't2')], 1, /missing\.key/);
});

test('truncated key files: exit 1, one line, no stack trace', () => {
  for (const which of ['backup', 'restore'] as const) {
    const whole = readFileSync(which === 'backup' ? keys.backup : keys.restore);
    for (const cut of [0, 1, 40, 200, Math.floor(whole.length / 2), whole.length - 60, whole.length - 2]) {
      const file = join(dir, `${which}-cut-${cut}.key`);
      writeFileSync(file, whole.subarray(0, cut));
      const args = which === 'backup'
        ? ['backup', '--init', src, '--repo', repo, '--key', file]
        : ['restore', '--repo', repo, '--key', file, '--target', join(dir, `t-${cut}`)];
      const r = iebs(args);
      assert.equal(r.code, 1, `${which}.key cut at ${cut}/${whole.length}: exit ${r.code}; stderr: ${r.stderr}`);
      assertOneLineError(r);
    }
  }
});

test('a backup key of another key set is refused by an existing repository, which stays as it was', () => {
  const other = makeKeys();
  const before = readFileSync(join(repo, 'config'));
  const snapshotsBefore = iebsOk(['snapshots', '--repo', repo, '--json']).stdout;
  fails(['backup', '--init', src, '--repo', repo, '--key', other.backup], 1, /other keys/);
  assert.deepEqual(readFileSync(join(repo, 'config')), before);
  assert.equal(iebsOk(['snapshots', '--repo', repo, '--json']).stdout, snapshotsBefore);
});
