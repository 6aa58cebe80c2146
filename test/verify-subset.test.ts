/**
 * Cheaper verifies for remote repositories: `--quick` checks volumes by size only, and
 * `--subset N/M` hashes part N of M of the volumes. A volume damaged in place (same
 * size) is found by a full verify and by exactly one part of any M, and is missed by
 * --quick, which says how many volumes it checked by size only; parts 1..M of M cover
 * every volume exactly once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { hashesVolume } from '../engine/verify.js';
import { flipBit } from './fault-helpers.js';
import { MiB, assertOneLineError, iebs, iebsOk, makeKeys, tempDir, writeSeeded } from './helpers.js';

test('verify --quick and --subset N/M: what each hashes, and what each finds', () => {
  const keys = makeKeys();
  const dir = tempDir('verify-subset');
  const src = join(dir, 'src');
  mkdirSync(src);
  for (let i = 0; i < 5; i++) writeSeeded(join(src, `f${i}.bin`), `subset-${i}`, 6 * MiB);
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--volume-size', '8MiB']);
  const volumes = readdirSync(join(repo, 'volumes')).map((n) => `volumes/${n}`);
  assert.ok(volumes.length >= 4);

  for (const m of [1, 2, 3, 7]) {
    for (const v of volumes) {
      const parts = Array.from({ length: m }, (_, i) => i + 1).filter((n) => hashesVolume(v, { n, m }));
      assert.equal(parts.length, 1, `${v} is in exactly one part of ${m}`);
    }
  }

  assert.match(iebsOk(['verify', '--repo', repo, '--quick']).stdout, new RegExp(`^ok: .*\\(${volumes.length} volume\\(s\\) by size only\\)`, 'm'));
  const damaged = volumes[1];
  flipBit(join(repo, damaged), 4 * MiB);
  const full = iebs(['verify', '--repo', repo]);
  assert.equal(full.code, 1);
  assert.match(full.stdout, new RegExp(`PROBLEM ${damaged.replace(/\./g, '\\.')}: .*does not match its sha256`));
  assert.equal(iebs(['verify', '--repo', repo, '--quick']).code, 0, 'same size: --quick cannot see it');

  const m = 3;
  const found = [1, 2, 3].filter((n) => iebs(['verify', '--repo', repo, '--subset', `${n}/${m}`]).code === 1);
  assert.deepEqual(found, [1, 2, 3].filter((n) => hashesVolume(damaged, { n, m })));

  for (const bad of ['0/3', '4/3', '1/0', 'x', '1/3/4']) {
    const r = iebs(['verify', '--repo', repo, '--subset', bad]);
    assert.equal(r.code, 2, bad);
    assertOneLineError(r, /--subset/);
  }
  const both = iebs(['verify', '--repo', repo, '--subset', '1/2', '--quick']);
  assert.equal(both.code, 2);
});
