/**
 * The command line, through the real CLI: generated help for every verb and README's
 * table of commands showing the same synopsis; `iebs help VERB`; one-line usage errors
 * naming the verb once; -q as a flag; the bash completion script in a real bash;
 * settings from flags, environment variables and the config file, in that order; a
 * closed stdout; a repository path that is a file.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { assertOneLineError, CLI, iebs, iebsOk, makeKeys, tempDir, type Keys } from './helpers.js';
import { synopsis, type Verb } from '../cli/verb.js';
import { SETTINGS } from '../cli/config.js';

const NAMES = ['keygen', 'init', 'backup', 'snapshots', 'ls', 'find', 'diff', 'dump', 'stats', 'restore', 'verify', 'salvage', 'unlock', 'forget', 'prune', 'key', 'disc', 'status', 'serve'];
const README = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');

let verbs: [string, Verb][];
let keys: Keys;
let dir: string;
let repo: string;

before(async () => {
  verbs = await Promise.all(NAMES.map(async (n) => [n, ((await import(`../cli/${n}.js`)) as { verb: Verb }).verb] as [string, Verb]));
  keys = makeKeys();
  dir = tempDir('cli-args');
  repo = join(dir, 'repo');
  const src = join(dir, 'src');
  mkdirSync(src);
  for (let i = 0; i < 3000; i++) writeFileSync(join(src, `file-with-a-longish-name-${i}.txt`), `${i}\n`);
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
});

test("README's table of commands shows each verb's synopsis as its help does", () => {
  const rows = README.split('\n').filter((l) => l.startsWith('| `iebs ')).map((l) => /^\| `([^`]+)`/.exec(l)![1].replace(/\\\|/g, '|').replace(/…/g, '...'));
  for (const [name, v] of verbs) {
    const s = synopsis(name, v);
    assert.ok(rows.includes(s), `README's commands table lacks \`${s}\``);
    const help = iebsOk([name, '--help']).stdout;
    assert.ok(help.startsWith(`Usage: ${s}\n`), `iebs ${name} --help starts with its synopsis: ${help.split('\n')[0]}`);
    for (const f of v.flags) assert.match(help, new RegExp(`--${f.name}\\b`), `iebs ${name} --help lists --${f.name}`);
    assert.equal(iebsOk(['help', name]).stdout, help, `iebs help ${name} is iebs ${name} --help`);
  }
  const general = iebsOk(['help']).stdout;
  for (const n of NAMES) assert.match(general, new RegExp(`^  ${n} `, 'm'));
});

test('the config file takes exactly the flags the verbs have', () => {
  const all = new Set(verbs.flatMap(([, v]) => v.flags.map((f) => f.name)));
  assert.deepEqual([...SETTINGS].sort(), [...all].sort());
});

test('usage errors: one line, the verb named once, exit 2; -q is a flag, not a source', () => {
  const cases: [string[], RegExp][] = [
    [['ls', '--repo', repo], /^iebs ls: --key restore\.key is required \(or set IEBS_KEY/],
    [['ls', '--repo', repo, '--key', keys.restore, '--jsn'], /^iebs ls: unknown option '--jsn' \(did you mean --json\?\)/],
    [['restore', '--overwrite', 'sometimes'], /^iebs restore: --overwrite "sometimes": not one of never, if-changed, always/],
    [['backup', '-q', '--repo', repo], /^iebs backup: missing required argument 'SOURCE'/],
    [['backup', 'x', '--repo', repo, '--name', 'a', '--name', 'b'], /given twice/],
    [['completion', 'fish'], /^iebs completion: name a shell/],
  ];
  for (const [args, re] of cases) {
    const r = iebs(args);
    assert.equal(r.code, 2, `iebs ${args.join(' ')}: ${r.stderr}`);
    assertOneLineError(r, re);
    assert.doesNotMatch(r.stderr, /iebs: iebs|iebs \w+: iebs/, 'the prefix once');
  }
  const q = iebsOk(['backup', '-q', join(dir, 'src'), '--repo', repo, '--key', keys.backup]);
  assert.equal(q.stdout + q.stderr, '', '-q: nothing printed');
});

test('bash completion: verbs, flags and flag values, in a real bash', () => {
  const script = iebsOk(['completion', 'bash']).stdout;
  const complete = (words: string[]) => {
    const r = spawnSync('bash', ['-c', `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _iebs; printf '%s\\n' "\${COMPREPLY[@]}"`], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split('\n').filter(Boolean).sort();
  };
  assert.deepEqual(complete(['iebs', 'res']), ['restore']);
  assert.deepEqual(complete(['iebs', 'restore', '--ov']), ['--overwrite']);
  assert.deepEqual(complete(['iebs', 'restore', '--overwrite', '']), ['always', 'if-changed', 'never']);
  assert.deepEqual(complete(['iebs', 'backup', '--no']), ['--no-cache']);
  assert.deepEqual(complete(['iebs', 'help', 'sn']), ['snapshots']);
  const zsh = iebsOk(['completion', 'zsh']).stdout;
  assert.match(zsh, /^#compdef iebs/);
  for (const n of NAMES) assert.match(zsh, new RegExp(`^    ${n}\\) _arguments`, 'm'));
});

test('settings: a flag wins over its environment variable, which wins over the config file; a [verb] section over the top', () => {
  const cfgDir = tempDir('cfg');
  writeFileSync(join(cfgDir, 'config'), `# defaults\nrepo = ${join(dir, 'from-config')}\nkey = ${join(dir, 'top.key')}\n\n[restore]\nkey = "${join(dir, 'restore-section.key')}"\n`);
  const env = { IEBS_CONFIG_DIR: cfgDir };
  const repoIn = (r: ReturnType<typeof iebs>) => /(\S+): no iebs repository/.exec(r.stderr)?.[1];
  assert.equal(repoIn(iebs(['snapshots'], { env })), join(dir, 'from-config'));
  assert.equal(repoIn(iebs(['snapshots'], { env: { ...env, IEBS_REPO: join(dir, 'from-env') } })), join(dir, 'from-env'));
  assert.equal(repoIn(iebs(['snapshots', '--repo', join(dir, 'from-flag')], { env: { ...env, IEBS_REPO: join(dir, 'from-env') } })), join(dir, 'from-flag'));
  const keyIn = (r: ReturnType<typeof iebs>) => /(\S+): cannot read key file/.exec(r.stderr)?.[1];
  assert.equal(keyIn(iebs(['ls', '--repo', repo], { env })), join(dir, 'top.key'));
  assert.equal(keyIn(iebs(['restore', '--repo', repo, '--target', join(dir, 't')], { env })), join(dir, 'restore-section.key'));
  assert.equal(keyIn(iebs(['ls', '--repo', repo], { env: { ...env, IEBS_KEY: join(dir, 'env.key') } })), join(dir, 'env.key'));
  // The environment alone is enough for a scheduled run.
  const r = iebsOk(['snapshots', '--json'], { env: { IEBS_REPO: repo } });
  assert.equal((JSON.parse(r.stdout) as unknown[]).length, 2);
  writeFileSync(join(cfgDir, 'config'), 'repo = x\nbogus = 1\n');
  const bad = iebs(['snapshots'], { env });
  assert.equal(bad.code, 2);
  assertOneLineError(bad, /config:2: no setting named bogus/);
  writeFileSync(join(cfgDir, 'config'), '[ls]\ntarget = x\n');
  assertOneLineError(iebs(['ls'], { env }), /config:2: iebs ls has no --target/);
});

test('IEBS_PASSPHRASE_FILE stands in for --passphrase-file', () => {
  const d = tempDir('pass');
  const pass = join(d, 'pass');
  writeFileSync(pass, 'correct horse\n');
  iebsOk(['keygen', '--out', join(d, 'k'), '--name', 'p'], { env: { IEBS_PASSPHRASE_FILE: pass } });
  const src = join(d, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'a'), 'a\n');
  iebsOk(['backup', '--init', src, '--repo', join(d, 'r'), '--key', join(d, 'k', 'backup.key')]);
  const without = iebs(['ls', '--repo', join(d, 'r'), '--key', join(d, 'k', 'restore.key')]);
  assert.equal(without.code, 1);
  assertOneLineError(without, /passphrase protected/);
  const withEnv = iebsOk(['ls', '--repo', join(d, 'r'), '--key', join(d, 'k', 'restore.key')], { env: { IEBS_PASSPHRASE_FILE: pass } });
  assert.match(withEnv.stdout, /^a\n/m);
});

test('a closed stdout (iebs ls | head -1) ends quietly, exit 0', () => {
  const r = spawnSync('bash', ['-c', `"${process.execPath}" "${CLI}" ls --repo "${repo}" --key "${keys.restore}" | head -1; echo "status=\${PIPESTATUS[0]}" >&2`], {
    encoding: 'utf8', env: { ...process.env, IEBS_CONFIG_DIR: tempDir('cfg-pipe') },
  });
  assert.equal(r.stdout.split('\n').filter(Boolean).length, 1);
  assert.equal(r.stderr, 'status=0\n', 'no EPIPE, no stack trace');
});

test('a repository path that is a file: one line, exit 2, for every verb', () => {
  const file = join(dir, 'a-file');
  writeFileSync(file, 'not a repository\n');
  for (const args of [['snapshots', '--repo', file], ['init', file, '--key', keys.backup], ['backup', '--init', join(dir, 'src'), '--repo', file, '--key', keys.backup], ['verify', '--repo', file]]) {
    const r = iebs(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assertOneLineError(r, /is a file, not a repository/);
  }
  assert.equal(readFileSync(file, 'utf8'), 'not a repository\n');
});
