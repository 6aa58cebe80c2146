/**
 * Setuid and setgid files (SPEC.md "Restore"): a stolen backup key can forge a snapshot
 * that names a file owned by root with mode 4755, and a restore run as root would make
 * it a way in. So restore and salvage give regular files their setuid and setgid bits
 * only with --setuid, and say how many they left without; directories keep theirs (a
 * setgid directory only passes its group on). Owners are restored when run as root.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, lstatSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { diffTrees, iebsOk, makeKeys, readTree, tempDir, type Keys } from './helpers.js';

let keys: Keys;
let src: string;
let repo: string;
let dir: string;
const asRoot = process.getuid?.() === 0;

before(() => {
  keys = makeKeys();
  dir = tempDir('setid');
  src = join(dir, 'src');
  mkdirSync(join(src, 'shared'), { recursive: true });
  writeFileSync(join(src, 'suid'), '#!/bin/sh\n');
  chmodSync(join(src, 'suid'), 0o4755);
  writeFileSync(join(src, 'sgid'), '#!/bin/sh\n');
  chmodSync(join(src, 'sgid'), 0o2711);
  writeFileSync(join(src, 'plain'), '#!/bin/sh\n');
  chmodSync(join(src, 'plain'), 0o755);
  writeFileSync(join(src, 'shared', 'owned'), 'owned by someone else\n');
  if (asRoot) chownSync(join(src, 'shared', 'owned'), 1234, 5678);
  chmodSync(join(src, 'shared'), 0o2775);
  repo = join(dir, 'repo');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
});

const mode = (p: string) => lstatSync(p).mode & 0o7777;

test('restore leaves setuid and setgid bits off files unless --setuid, and says so; directories keep theirs', () => {
  const target = join(dir, 'plain-restore');
  const r = iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
  assert.match(r.stderr, /^iebs: 2 file\(s\) restored without their setuid\/setgid bits \(pass --setuid to keep them\)$/m);
  assert.equal(mode(join(target, 'suid')), 0o755);
  assert.equal(mode(join(target, 'sgid')), 0o711);
  assert.equal(mode(join(target, 'plain')), 0o755);
  assert.equal(mode(join(target, 'shared')), 0o2775);
  const json = JSON.parse(iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', join(dir, 'json'), '--json']).stdout) as { setidDropped: number };
  assert.equal(json.setidDropped, 2);
});

test('restore --setuid gives every mode back, and as root every owner', () => {
  const target = join(dir, 'setuid-restore');
  const r = iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target, '--setuid']);
  assert.doesNotMatch(r.stderr, /setuid/);
  assert.deepEqual(diffTrees(readTree(src), readTree(target)), []);
  if (asRoot) {
    const st = lstatSync(join(target, 'shared', 'owned'));
    assert.deepEqual([st.uid, st.gid], [1234, 5678]);
    assert.deepEqual([lstatSync(join(target, 'suid')).uid], [0]);
  }
});

test('salvage leaves setuid and setgid bits off files unless --setuid', () => {
  const volumes = readdirSync(join(repo, 'volumes')).map((v) => join(repo, 'volumes', v));
  const plain = join(dir, 'plain-salvage');
  const r = iebsOk(['salvage', ...volumes, '--key', keys.restore, '--target', plain]);
  assert.match(r.stderr, /^iebs: 2 file\(s\) written without their setuid\/setgid bits \(pass --setuid to keep them\)$/m);
  assert.equal(mode(join(plain, 'suid')), 0o755);
  assert.equal(mode(join(plain, 'sgid')), 0o711);
  const kept = join(dir, 'setuid-salvage');
  iebsOk(['salvage', ...volumes, '--key', keys.restore, '--target', kept, '--setuid']);
  assert.equal(mode(join(kept, 'suid')), 0o4755);
  assert.equal(mode(join(kept, 'sgid')), 0o2711);
});
