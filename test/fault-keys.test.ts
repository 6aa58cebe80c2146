/**
 * Fault injection, keys: the wrong restore key (another key set's), a wrong or missing
 * passphrase (IEBS_PASSPHRASE) for a protected one, and a truncated key file. For each,
 * `restore`, `ls`, `verify --read-data` and `salvage` must fail with exit 1 and one clear
 * `iebs: ...` line that points at the key, with no stack trace, and write nothing.
 * (Flipped bits inside the armored keys are case (j) of test/fault-tamper.test.ts.)
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MiB, iebs, iebsOk, listFiles, makeKeys, snapshots, tempDir, writeSeeded, type Keys } from './helpers.js';
import { volumesOf } from './fault-helpers.js';

let keys: Keys;
let other: Keys;
let locked: Keys;
let dir: string;
let repo: string;
let lockedRepo: string;
const SECRET = 'correct horse battery staple';

before(() => {
  keys = makeKeys();
  other = makeKeys();
  dir = tempDir('keys');
  const kdir = join(dir, 'locked-keys');
  iebsOk(['keygen', '--out', kdir, '--name', 'locked'], { env: { IEBS_PASSPHRASE: SECRET } });
  locked = { dir: kdir, restore: join(kdir, 'restore.key'), backup: join(kdir, 'backup.key'), recipient: join(kdir, 'recipient.asc') };
  assert.match(readFileSync(locked.restore, 'utf8'), /^protected yes$/m);
  repo = join(dir, 'repo');
  lockedRepo = join(dir, 'locked-repo');
  const src = join(dir, 'src');
  mkdirSync(src);
  writeSeeded(join(src, 'a.bin'), 'keys-a', 9 * MiB);
  writeSeeded(join(src, 'b.txt'), 'keys-b', 1000);
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--volume-size', '8MiB']);
  iebsOk(['backup', '--init', src, '--repo', lockedRepo, '--key', locked.backup, '--volume-size', '8MiB']);
});

/** Runs the four commands that need the restore key; returns the problems found. */
function fourCommands(r: string, key: string, label: string, env: Record<string, string | undefined>, expect: RegExp): string[] {
  const problems: string[] = [];
  const vols = volumesOf(r, snapshots(r)[0].name);
  const runs: [string, string[], string | null][] = [
    ['restore', ['restore', '--repo', r, '--key', key, '--target', join(dir, `t-${label}`)], join(dir, `t-${label}`)],
    ['ls', ['ls', '--repo', r, '--key', key], null],
    ['verify --read-data', ['verify', '--repo', r, '--key', key, '--read-data'], null],
    ['salvage', ['salvage', ...vols.map((v) => join(r, 'volumes', v)), '--key', key, '--target', join(dir, `s-${label}`)], join(dir, `s-${label}`)],
  ];
  for (const [what, args, target] of runs) {
    const res = iebs(args, { env });
    const lines = res.stderr.split('\n').filter((l) => l);
    const where = `${label}: iebs ${what}`;
    if (res.code !== 1) problems.push(`${where}: exit ${res.code}, expected 1; stderr ${JSON.stringify(res.stderr.trim())}; stdout ${JSON.stringify(res.stdout.trim().slice(0, 300))}`);
    if (lines.length !== 1 || !lines[0].startsWith('iebs: ')) problems.push(`${where}: expected one "iebs: ..." line on stderr, got ${JSON.stringify(res.stderr)}`);
    else if (!expect.test(lines[0])) problems.push(`${where}: the line does not say what is wrong with the key (${expect}): ${lines[0]}`);
    if (/^\s+at /m.test(res.stderr) || /internal error/.test(res.stderr)) problems.push(`${where}: stack trace or internal error: ${res.stderr}`);
    if (target && existsSync(target) && listFiles(target).length) problems.push(`${where}: wrote ${listFiles(target).join(', ')}`);
  }
  return problems;
}

test('another key set\'s restore.key: exit 1, one line saying the key does not fit', () => {
  const problems = fourCommands(repo, other.restore, 'wrong-key', {}, /key/i);
  assert.deepEqual(problems, [], problems.join('\n'));
});

test('a wrong passphrase (IEBS_PASSPHRASE): exit 1, one line saying so', () => {
  const problems = fourCommands(lockedRepo, locked.restore, 'wrong-pass', { IEBS_PASSPHRASE: 'not it' }, /passphrase/i);
  assert.deepEqual(problems, [], problems.join('\n'));
});

test('no passphrase for a protected key: exit 1, one line saying one is needed', () => {
  const problems = fourCommands(lockedRepo, locked.restore, 'no-pass', { IEBS_PASSPHRASE: undefined }, /passphrase/i);
  assert.deepEqual(problems, [], problems.join('\n'));
});

test('a truncated restore.key: exit 1, one line naming the key file', () => {
  const text = readFileSync(keys.restore, 'utf8');
  const cut = join(dir, 'truncated.key');
  writeFileSync(cut, text.slice(0, Math.floor(text.length / 2)));
  const problems = fourCommands(repo, cut, 'truncated', {}, /truncated\.key/);
  assert.deepEqual(problems, [], problems.join('\n'));
});

test('the right key with the right passphrase still works (the failures above are the key\'s)', () => {
  iebsOk(['ls', '--repo', lockedRepo, '--key', locked.restore], { env: { IEBS_PASSPHRASE: SECRET } });
  iebsOk(['ls', '--repo', repo, '--key', keys.restore]);
});
