/**
 * Prompts and signals, with real processes: SIGINT and SIGTERM during a backup leave the
 * repository as it was (no volume, no lock, no record), print one line and exit 130/143,
 * and the next backup works; during a restore no temporary file stays. A
 * passphrase-protected restore key is asked for on a real pseudo-terminal without echo,
 * never when stdin is not a terminal. A lost config directory never mints keys beside
 * an existing repository.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertOneLineError, diffTrees, iebs, iebsChild, iebsOk, makeKeys, MiB, onTerminal, readTree, snapshots, tempDir, writeSeeded, type Keys } from './helpers.js';

let keys: Keys;
let dir: string;
let src: string;

before(() => {
  keys = makeKeys();
  dir = tempDir('signals');
  src = join(dir, 'src');
  mkdirSync(src);
  // Incompressible, so that a backup and a restore take long enough to be interrupted.
  for (let i = 0; i < 24; i++) writeSeeded(join(src, `f${i}`), `sig-${i}`, 8 * MiB);
});

/** Lists a folder's names, recursively, relative to it. */
function names(d: string): string[] {
  if (!existsSync(d)) return [];
  return readdirSync(d, { recursive: true, encoding: 'utf8' }).sort();
}

/** Runs `args` and sends `signal` once `ready()` is true; returns exit code and stderr. */
async function interrupt(args: string[], signal: 'SIGINT' | 'SIGTERM', ready: () => boolean): Promise<{ code: number | null; stderr: string; early: boolean }> {
  const child = iebsChild(args);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  child.stdout!.resume();
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let done = false;
  void exited.then(() => { done = true; });
  while (!done && !ready()) await new Promise((r) => setTimeout(r, 20));
  const early = done;
  child.kill(signal);
  return { code: await exited, stderr, early };
}

for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  test(`${signal} during a backup: nothing committed, nothing left, lock released, exit ${code}`, async () => {
    const repo = join(dir, `repo-${signal}`);
    iebsOk(['init', repo, '--key', keys.backup]);
    // Sent once the run is writing its first volume.
    const r = await interrupt(['backup', src, '--repo', repo, '--key', keys.backup], signal, () => names(join(repo, 'volumes')).length > 0);
    assert.ok(!r.early, 'the backup ended before it could be interrupted');
    assert.equal(r.code, code, r.stderr);
    assert.equal(r.stderr, `iebs: interrupted (${signal}): nothing was committed\n`);
    assert.deepEqual(names(join(repo, 'volumes')), [], 'the volume being written is removed');
    assert.deepEqual(names(join(repo, 'locks')), [], 'the lock is released');
    assert.deepEqual(names(join(repo, 'snapshots')), []);
    iebsOk(['backup', src, '--repo', repo, '--key', keys.backup]);
    assert.equal(snapshots(repo).length, 1);
  });
}

test('SIGTERM during a restore: exit 143, no temporary file left, a later restore completes', async () => {
  const repo = join(dir, 'repo-restore');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
  const target = join(dir, 'target');
  const r = await interrupt(['restore', '--repo', repo, '--key', keys.restore, '--target', target], 'SIGTERM', () => names(target).length > 0);
  assert.ok(!r.early, 'the restore ended before it could be interrupted');
  assert.equal(r.code, 143, r.stderr);
  assert.match(r.stderr, /^iebs: interrupted \(SIGTERM\)/);
  assert.deepEqual(names(target).filter((n) => n.includes('.iebs-restore-')), []);
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target, '--overwrite', 'if-changed']);
  assert.deepEqual(diffTrees(readTree(src), readTree(target), { only: (p) => p !== '' }), []);
});

test('a passphrase-protected restore key: a hidden prompt on a terminal, none without one', () => {
  const d = tempDir('prompt');
  const k = join(d, 'k');
  iebsOk(['keygen', '--out', k, '--name', 'pty'], { env: { IEBS_PASSPHRASE: 'sesame-4711' } });
  const small = join(d, 'src');
  mkdirSync(small);
  writeFileSync(join(small, 'hello.txt'), 'hello\n');
  const repo = join(d, 'repo');
  iebsOk(['backup', '--init', small, '--repo', repo, '--key', join(k, 'backup.key')]);

  // No terminal: the clear error, at once.
  const piped = iebs(['restore', '--repo', repo, '--key', join(k, 'restore.key'), '--target', join(d, 'no')]);
  assert.equal(piped.code, 1);
  assertOneLineError(piped, /passphrase protected: set IEBS_PASSPHRASE/);

  // A real pseudo-terminal: python's pty runs the CLI, answers the prompt, and returns what the terminal showed.
  const target = join(d, 'out');
  const env: NodeJS.ProcessEnv = { ...process.env, IEBS_CONFIG_DIR: join(d, 'cfg') };
  delete env.IEBS_PASSPHRASE;
  const t = onTerminal(['restore', '--repo', repo, '--key', join(k, 'restore.key'), '--target', target], env, { answer: { prompt: 'passphrase for', text: 'sesame-4711' } });
  const r = { status: t.status, stdout: t.shown, stderr: t.stderr };
  assert.equal(r.status, 0, `exit ${r.status}: ${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /passphrase for .*restore\.key: /);
  assert.doesNotMatch(r.stdout, /sesame/, 'the typed passphrase is not echoed');
  assert.match(r.stdout, /restored \S+_full: 1 files/);
  assert.deepEqual(diffTrees(readTree(small), readTree(target), { only: (p) => p !== '' }), []);
});

test('a lost config directory never mints keys beside an existing repository', () => {
  const repo = join(dir, 'repo-lost');
  iebsOk(['init', repo, '--key', keys.backup]);
  const cfg = join(tempDir('lost'), 'iebs');
  const r = iebs(['backup', src, '--repo', repo], { env: { IEBS_CONFIG_DIR: cfg } });
  assert.equal(r.code, 1);
  assertOneLineError(r, /is a repository, and there is no backup key in .*: pass --key/);
  assert.deepEqual(names(cfg), [], 'no key was made');
  assert.deepEqual(names(join(repo, 'snapshots')), []);
});
