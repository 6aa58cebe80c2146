/**
 * verify notices a damaged `config` or `keys/public.asc` (issue 16, defect 8). Neither is
 * signed; verify checks that the config decodes, that every key in public.asc carries
 * valid self-signatures, and, with the user's own key file, that public.asc holds those
 * keys packet for packet. A flipped bit anywhere in the base64 of public.asc is found.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { copyTree, iebs, iebsOk, makeKeys, tempDir, type Keys } from './helpers.js';
import { verifyRepo } from './fault-helpers.js';

let keys: Keys;
let repo: string;
before(() => {
  keys = makeKeys();
  const dir = tempDir('conveniences');
  mkdirSync(join(dir, 'src'));
  writeFileSync(join(dir, 'src', 'a'), 'a\n');
  repo = join(dir, 'repo');
  iebsOk(['backup', '--init', join(dir, 'src'), '--repo', repo, '--key', keys.backup]);
});

function copyRepo(label: string): string {
  const to = join(tempDir(label), 'repo');
  copyTree(repo, to);
  return to;
}

test('the untouched repository verifies clean, with each key file and without one', () => {
  for (const key of [keys.recipient, keys.backup, keys.restore]) {
    const v = verifyRepo(repo, key);
    assert.equal(v.run.code, 0, v.run.stdout + v.run.stderr);
  }
  assert.equal(iebs(['verify', '--repo', repo]).code, 0);
});

test('a config that does not decode is a PROBLEM, and the snapshots are still checked', () => {
  const r = copyRepo('bad-config');
  const text = readFileSync(join(r, 'config'), 'latin1');
  writeFileSync(join(r, 'config'), text.replace('created ', 'creaTed '));
  const v = verifyRepo(r, keys.recipient);
  assert.equal(v.run.code, 1);
  assert.ok(v.problems.some((p) => p.object === 'config'), v.run.stdout);
  assert.match(v.run.stdout, /FAILED: 1 snapshots/);
});

test('a flipped bit anywhere in the base64 of keys/public.asc is found with the user\'s keys', () => {
  const text = readFileSync(join(repo, 'keys', 'public.asc'), 'latin1');
  const lines = text.split('\n');
  // Every base64 line of every armored block (headers, blank lines and checksums aside).
  const body = lines.map((l, i) => ({ l, i })).filter(({ l }) => /^[A-Za-z0-9+/]{40,}={0,2}$/.test(l));
  assert.ok(body.length > 4);
  const picks = Array.from({ length: 12 }, (_, k) => body[Math.floor((k * body.length) / 12)]);
  for (const [n, { l, i }] of picks.entries()) {
    const r = copyRepo(`bad-keys-${n}`);
    const at = (n * 7) % l.length;
    const c = l[at];
    // Another base64 digit, so the armour still decodes and only the bytes differ.
    const swapped = c === 'A' ? 'B' : 'A';
    const damaged = [...lines];
    damaged[i] = l.slice(0, at) + swapped + l.slice(at + 1);
    writeFileSync(join(r, 'keys', 'public.asc'), damaged.join('\n'));
    const v = verifyRepo(r, keys.recipient);
    assert.equal(v.run.code, 1, `line ${i} col ${at}: exit ${v.run.code}\n${v.run.stdout}${v.run.stderr}`);
    assert.ok(v.problems.some((p) => p.object === 'keys/public.asc'), `line ${i} col ${at}: ${v.run.stdout}${v.run.stderr}`);
  }
});

test('public.asc replaced by other keys: reported with the user\'s keys, and signatures still checked against them', () => {
  const r = copyRepo('replaced-keys');
  const other = makeKeys();
  writeFileSync(join(r, 'keys', 'public.asc'), readFileSync(other.recipient));
  const v = verifyRepo(r, keys.recipient);
  assert.equal(v.run.code, 1);
  assert.ok(v.problems.some((p) => p.object === 'keys/public.asc' && /lacks key/.test(p.message)), v.run.stdout);
});
