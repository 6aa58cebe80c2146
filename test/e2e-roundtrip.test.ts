/**
 * End to end, through the real CLI: a tree of awkward names and entry kinds restores
 * byte for byte; volumes are plain tar that GNU tar lists; --volume-size splits and
 * bounds volumes; several sources restore side by side.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  MiB, assertOneLineError, diffTrees, iebs, iebsOk, makeKeys, readTree, snapshots, tempDir, writeSeeded, type Keys,
} from './helpers.js';

let keys: Keys;
/** The awkward tree and its repository, shared by the round-trip and tar tests. */
let awkward: { src: string; repo: string } | null = null;

before(() => { keys = makeKeys(); });

/** Builds the awkward tree under `src`. */
function makeAwkwardTree(src: string): void {
  mkdirSync(src);
  const f = (name: string | Buffer, data: string | Buffer = '') => writeFileSync(typeof name === 'string' ? join(src, name) : Buffer.concat([Buffer.from(src + '/'), name]), data);
  f('with space', 'space\n');
  f("it's", 'single quote\n');
  f('say "hi"', 'double quotes\n');
  f('new\nline', 'newline in the name\n');
  f('back\\slash', 'backslash\n');
  f('-', 'just a dash\n');
  f('-rf', 'leading dash\n');
  f('tab\tand\rcr', 'tab and carriage return\n');
  mkdirSync(join(src, 'unicode'));
  f('unicode/caf\u00e9', 'NFC\n');
  f('unicode/cafe\u0301', 'NFD\n');
  f('unicode/\u65e5\u672c\u8a9e \ud83d\ude00', 'CJK and an emoji\n');
  f('n'.repeat(255), '255-byte name\n');
  f('\u00e9'.repeat(127) + 'x', '255 bytes of two-byte characters\n');
  // Names that are not UTF-8: latin-1 é, a lone continuation byte, 0xff.
  const latin = Buffer.from([0x6c, 0x61, 0x74, 0x69, 0x6e, 0xe9]);
  f(latin, 'latin-1 name\n');
  f(Buffer.from([0x62, 0x61, 0x64, 0x80, 0xff, 0xfe]), 'invalid UTF-8\n');
  mkdirSync(Buffer.concat([Buffer.from(src + '/'), Buffer.from([0x64, 0x69, 0x72, 0xe9])]));
  f(Buffer.from([0x64, 0x69, 0x72, 0xe9, 0x2f, 0x69, 0x6e, 0x73, 0x69, 0x64, 0x65]), 'inside a non-UTF-8 directory\n');
  f('empty');
  mkdirSync(join(src, 'emptydir'));
  mkdirSync(join(src, 'nested/empty/dirs/all/the/way'), { recursive: true });
  f('nested/empty/also-empty-file');
  symlinkSync('with space', join(src, 'link-relative'));
  symlinkSync('/etc/hostname', join(src, 'link-absolute'));
  symlinkSync('no/such/target', join(src, 'link-dangling'));
  symlinkSync('nested', join(src, 'link-to-dir'));
  symlinkSync('../-rf', join(src, 'unicode/link-up'));
  symlinkSync(Buffer.from([0x6c, 0x61, 0x74, 0x69, 0x6e, 0xe9]), Buffer.from(src + '/link-to-latin1'));
  f('mode-0600', 'private\n'); chmodSync(join(src, 'mode-0600'), 0o600);
  f('mode-0755', '#!/bin/sh\n'); chmodSync(join(src, 'mode-0755'), 0o755);
  f('mode-0444', 'read only\n'); chmodSync(join(src, 'mode-0444'), 0o444);
  mkdirSync(join(src, 'private'));
  f('private/secret', 'in a 0700 directory\n');
  chmodSync(join(src, 'private'), 0o700);
  // An old mtime with a fractional part, to see times survive.
  f('old', 'from 2001\n');
  utimesSync(join(src, 'old'), 981_173_106.123456, 981_173_106.123456);
  writeSeeded(join(src, 'big.bin'), 'roundtrip-big', 30 * MiB);
}

test('awkward names, kinds, modes and a 30 MiB file restore byte for byte', () => {
  const dir = tempDir('awkward');
  const src = join(dir, 'src');
  const repo = join(dir, 'repo');
  makeAwkwardTree(src);
  const before = readTree(src);
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--volume-size', '8MiB']);
  const target = join(dir, 'restored');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
  assert.deepEqual(diffTrees(before, readTree(target)), []);
  // The source was only read.
  assert.deepEqual(diffTrees(before, readTree(src)), []);

  const listed = JSON.parse(iebsOk(['ls', '--repo', repo, '--key', keys.restore, '--json']).stdout) as { files: { path: string; kind: string }[] };
  assert.equal(listed.files.length, before.size, 'ls lists every entry');
  const paths = new Set(listed.files.map((e) => e.path));
  for (const p of ['new\nline', 'unicode/caf\u00e9', 'unicode/cafe\u0301', '-', '-rf', 'nested/empty/dirs/all/the/way', 'link-to-dir']) assert.ok(paths.has(p), `ls lists ${JSON.stringify(p)}`);
  awkward = { src, repo };
});

test('every volume is a tar that GNU tar lists, with only iebs entry names', () => {
  assert.ok(awkward, 'needs the round-trip test');
  const repo: string = awkward.repo;
  const volumes = readdirSync(join(repo, 'volumes'));
  assert.ok(volumes.length >= 4, `30 MiB in 8 MiB volumes: ${volumes.length} volumes`);
  const block = /^([0-9a-f]{2})\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\/(\d{5})\/(\d{8})$/;
  let blocks = 0;
  for (const v of volumes) {
    assert.match(v, /^[A-Za-z0-9.-]+_\d{4}-\d{2}-\d{2}_full\.files\.\d{4}\.tar$/);
    const r = spawnSync('tar', ['-tf', join(repo, 'volumes', v)], { encoding: 'utf8' });
    assert.equal(r.status, 0, `tar -tf ${v}: ${r.stderr}`);
    assert.equal(r.stderr, '', `tar -tf ${v} warns: ${r.stderr}`);
    const names = r.stdout.split('\n').filter((n) => n !== '');
    assert.equal(names[0], 'iebs.volume', `${v} starts with its header`);
    for (const n of names) {
      if (n === 'iebs.volume' || /^iebs\.catalog\.\d{6}$/.test(n)) continue;
      const m = block.exec(n);
      assert.ok(m, `${v}: unexpected entry ${JSON.stringify(n)}`);
      assert.equal(m[1], m[2].slice(0, 2), `${n}: folder is the uuid's first two characters`);
      assert.equal(Number(m[3]), Math.floor(Number(m[4]) / 10000), `${n}: block folder`);
      blocks++;
    }
    assert.ok(names.some((n) => n.startsWith('iebs.catalog.')), `${v} carries a catalogue piece`);
  }
  // The 30 MiB file is cut into blocks of at most 4 MiB; the small files share a pack.
  assert.ok(blocks >= 8, `30 MiB in blocks of at most 4 MiB: ${blocks} block entries`);
});

test('--volume-size 8MiB splits a 30 MiB incompressible file into volumes of at most 8 MiB', () => {
  const dir = tempDir('volsize');
  const file = join(dir, 'noise.bin');
  writeSeeded(file, 'volume-size', 30 * MiB);
  const repo = join(dir, 'repo');
  const r = JSON.parse(iebsOk(['backup', '--init', file, '--repo', repo, '--key', keys.backup, '--volume-size', '8MiB', '--json']).stdout) as { volumes: { name: string; size: number }[] };
  const files = readdirSync(join(repo, 'volumes'));
  assert.ok(files.length >= 4, `${files.length} volumes`);
  assert.equal(files.length, r.volumes.length);
  for (const v of files) {
    const size = statSync(join(repo, 'volumes', v)).size;
    assert.ok(size <= 8 * MiB, `${v}: ${size} bytes > 8 MiB`);
  }
  assert.equal(snapshots(repo)[0].volumes, files.length);
  // A single file as the source restores under its own name.
  const target = join(dir, 'restored');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
  assert.deepEqual(diffTrees(readTree(dir), readTree(target), { only: (p) => p === 'noise.bin' }), []);
});

test('--volume-size accepts media names and refuses nonsense with exit 2', () => {
  const dir = tempDir('volname');
  const src = join(dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'a'), 'a\n');
  iebsOk(['backup', '--init', src, '--repo', join(dir, 'repo-cd'), '--key', keys.backup, '--volume-size', 'cd']);
  assert.equal(readdirSync(join(dir, 'repo-cd', 'volumes')).length, 1);

  const bad = iebs(['backup', '--init', src, '--repo', join(dir, 'repo-bad'), '--key', keys.backup, '--volume-size', '12XB']);
  assert.equal(bad.code, 2, bad.stderr);
  assertOneLineError(bad, /12XB/);
  assert.ok(!existsSync(join(dir, 'repo-bad')), 'a refused run creates no repository');
});

test('--volume-size below the 8 MiB minimum is a usage error (exit 2) and creates nothing', () => {
  const dir = tempDir('volsmall');
  const src = join(dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'a'), 'a\n');
  const r = iebs(['backup', '--init', src, '--repo', join(dir, 'repo'), '--key', keys.backup, '--volume-size', '1MiB']);
  assertOneLineError(r, /minimum/);
  assert.equal(r.code, 2, `exit ${r.code}: ${r.stderr}`);
  assert.ok(!existsSync(join(dir, 'repo')), 'a refused run creates no repository');
});

test('several sources restore side by side under their names; one source restores its contents', () => {
  const dir = tempDir('multi');
  const srcs = join(dir, 'srcs');
  for (const s of ['alpha', 'beta']) {
    mkdirSync(join(srcs, s, 'sub'), { recursive: true });
    writeFileSync(join(srcs, s, 'sub', 'f.txt'), `${s} file\n`);
    writeFileSync(join(srcs, s, 'top'), `${s} top\n`);
    mkdirSync(join(srcs, s, 'empty'));
    symlinkSync('sub/f.txt', join(srcs, s, 'link'));
  }
  chmodSync(join(srcs, 'beta'), 0o750);
  const expected = readTree(srcs);

  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', join(srcs, 'alpha'), join(srcs, 'beta') + '/', '--repo', repo, '--key', keys.backup]);
  const target = join(dir, 'restored');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
  assert.deepEqual(readdirSync(target).sort(), ['alpha', 'beta']);
  assert.deepEqual(diffTrees(expected, readTree(target)), []);

  const repo1 = join(dir, 'repo1');
  iebsOk(['backup', '--init', join(srcs, 'alpha'), '--repo', repo1, '--key', keys.backup]);
  const target1 = join(dir, 'restored1');
  iebsOk(['restore', '--repo', repo1, '--key', keys.restore, '--target', target1]);
  assert.deepEqual(diffTrees(readTree(join(srcs, 'alpha')), readTree(target1)), []);
});
