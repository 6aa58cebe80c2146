/**
 * A backup never extends a chain it cannot stand on (issue 16, defect 2). With an object
 * the increment would depend on damaged (a flipped bit in the newest manifest, a
 * truncated volume, a missing index it must read, a missing parent record), the next backup makes a
 * new full, says so on stderr and exits 3; it restores, and so does every snapshot that
 * was sound before.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MiB, diffTrees, iebs, iebsOk, makeKeys, readTree, snapshots, tempDir, writeSeeded, type Keys } from './helpers.js';
import { flipBit, verifyRepo } from './fault-helpers.js';
import { createHash } from 'node:crypto';
import { MemoryStorage } from '../engine/storage/memory.js';
import { chainDamage, type Snapshot } from '../engine/repo/repo.js';

let keys: Keys;
before(() => { keys = makeKeys(); });

interface Setup { dir: string; src: string; repo: string; names: string[] }

/** A full and one increment of a small tree. */
function twoSnapshots(label: string): Setup {
  const dir = tempDir(label);
  const src = join(dir, 'src');
  const repo = join(dir, 'repo');
  mkdirSync(src);
  writeSeeded(join(src, 'big.bin'), `${label}-big`, 3 * MiB);
  writeFileSync(join(src, 'a.txt'), 'first\n');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--no-cache']);
  writeFileSync(join(src, 'a.txt'), 'second\n');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--no-cache']);
  return { dir, src, repo, names: snapshots(repo).map((s) => s.name) };
}

/** The next backup after damage: a new full, a warning that says so, exit 3; it restores. */
function nextIsFull(s: Setup, why: RegExp): void {
  writeFileSync(join(s.src, 'a.txt'), 'third\n');
  const r = iebs(['backup', '--init', s.src, '--repo', s.repo, '--key', keys.backup, '--no-cache']);
  assert.equal(r.code, 3, `exit 3 (done with a problem), got ${r.code}: ${r.stderr}`);
  assert.match(r.stderr, /chain of \S+ is damaged/);
  assert.match(r.stderr, why);
  assert.match(r.stderr, /new full/);
  const list = snapshots(s.repo);
  const made = list[list.length - 1];
  assert.equal(made.type, 'full', 'the backup after the damage is a full');
  assert.equal(made.chain, made.name);
  const target = join(s.dir, 'restored');
  iebsOk(['restore', '--repo', s.repo, '--key', keys.restore, '--target', target]);
  assert.deepEqual(diffTrees(readTree(s.src), readTree(target)), [], 'the new full restores');
  const v = verifyRepo(s.repo, keys.recipient);
  for (const p of v.problems) assert.ok(!p.affects.includes(made.name), `the new full is not affected by ${p.object}`);
}

test('a flipped bit in the newest manifest: the next backup is a new full, not an increment on it', () => {
  const s = twoSnapshots('damage-manifest');
  const manifests = readdirSync(join(s.repo, 'manifests')).filter((n) => n.startsWith(s.names[1]));
  assert.equal(manifests.length, 1);
  const m = join(s.repo, 'manifests', manifests[0]);
  flipBit(m, Math.floor(statSync(m).size / 2));
  nextIsFull(s, /manifest.*does not match its sha384/);
  // And the one after it is an increment of the new full again.
  writeFileSync(join(s.src, 'a.txt'), 'fourth\n');
  iebsOk(['backup', '--init', s.src, '--repo', s.repo, '--key', keys.backup, '--no-cache']);
  const list = snapshots(s.repo);
  assert.equal(list[list.length - 1].type, 'increment');
  assert.equal(list[list.length - 1].chain, list[list.length - 2].name);
});

test('a truncated volume of the full: the next backup is a new full', () => {
  const s = twoSnapshots('damage-volume');
  const vol = readdirSync(join(s.repo, 'volumes')).find((n) => n.startsWith(s.names[0]))!;
  const p = join(s.repo, 'volumes', vol);
  truncateSync(p, statSync(p).size - 512);
  nextIsFull(s, /is \d+ bytes, its record says \d+/);
});

test('a missing index: without the cached state the next backup is a new full; with it, an increment as before', () => {
  const s = twoSnapshots('damage-index');
  const idx = readdirSync(join(s.repo, 'indexes')).find((n) => n.startsWith(s.names[1]))!;
  const away = join(s.dir, 'index.away');
  renameSync(join(s.repo, 'indexes', idx), away);
  nextIsFull(s, /index.* missing/);

  const c = twoSnapshots('damage-index-cached');
  // A backup with the cache keeps the chain's state; the index is then not read.
  writeFileSync(join(c.src, 'a.txt'), 'cached\n');
  iebsOk(['backup', '--init', c.src, '--repo', c.repo, '--key', keys.backup]);
  const names = snapshots(c.repo).map((x) => x.name);
  rmSync(join(c.repo, 'indexes', readdirSync(join(c.repo, 'indexes')).find((n) => n.startsWith(names[2]))!));
  writeFileSync(join(c.src, 'a.txt'), 'cached again\n');
  const r = iebsOk(['backup', '--init', c.src, '--repo', c.repo, '--key', keys.backup]);
  assert.equal(r.stderr, '');
  assert.equal(snapshots(c.repo).pop()!.type, 'increment');
});

test('a parent record deleted from the middle of the chain: the next backup is a new full', () => {
  const s = twoSnapshots('damage-record');
  writeFileSync(join(s.src, 'a.txt'), 'third-pre\n');
  iebsOk(['backup', '--init', s.src, '--repo', s.repo, '--key', keys.backup, '--no-cache']);
  rmSync(join(s.repo, 'snapshots', `${s.names[1]}.snapshot.asc`));
  nextIsFull(s, /parent .* is missing/);
});

test('a sound chain is extended as before, with no warning', () => {
  const s = twoSnapshots('damage-none');
  writeFileSync(join(s.src, 'a.txt'), 'third\n');
  const r = iebsOk(['backup', '--init', s.src, '--repo', s.repo, '--key', keys.backup, '--no-cache']);
  assert.equal(r.stderr, '');
  assert.equal(snapshots(s.repo).pop()!.type, 'increment');
});

/** A memory store whose stat waits a turn of the event loop, counting the stats under way at once. */
class CountingStats extends MemoryStorage {
  under = 0;
  most = 0;
  override async stat(name: string): Promise<number | null> {
    this.most = Math.max(this.most, ++this.under);
    try {
      await new Promise((r) => setImmediate(r));
      return await super.stat(name);
    } finally { this.under--; }
  }
}

test('the chain check asks for every size at once (a round trip each on a remote store), then names what is wrong', async () => {
  const s = new CountingStats();
  const chain: Snapshot[] = [];
  for (const name of ['s_2026-01-01_full', 's_2026-01-01_increment_2026-01-02-00-00', 's_2026-01-01_increment_2026-01-03-00-00']) {
    const manifest = Buffer.from(`manifest of ${name}`);
    await s.put(`manifests/${name}.manifest.pgp`, manifest);
    const volumes = [];
    for (const n of [1, 2]) {
      const v = `${name}.files.000${n}.tar`;
      await s.put(`volumes/${v}`, `volume ${n} of ${name}`);
      volumes.push({ name: v, size: `volume ${n} of ${name}`.length, digest: new Uint8Array(32) });
    }
    const record = { name, manifest: { name: `${name}.manifest.pgp`, size: manifest.length, digest: new Uint8Array(createHash('sha256').update(manifest).digest()) }, volumes };
    chain.push({ record, sha384: new Uint8Array(48), object: `snapshots/${name}.snapshot.asc` } as unknown as Snapshot);
  }
  assert.equal(await chainDamage(s, chain), null, 'a sound chain');
  assert.equal(s.most, 9, 'the three manifests and six volumes were asked for at once');
  await s.delete('volumes/s_2026-01-01_increment_2026-01-02-00-00.files.0002.tar');
  assert.equal(await chainDamage(s, chain), 'volumes/s_2026-01-01_increment_2026-01-02-00-00.files.0002.tar is missing');
  await s.put('volumes/s_2026-01-01_increment_2026-01-02-00-00.files.0002.tar', 'volume 2 of s_2026-01-01_increment_2026-01-02-00-00');
  const full = chain[0].record.manifest.name;
  await s.delete(`manifests/${full}`);
  await s.put(`manifests/${full}`, 'manifest of s_2026-01-01_fulX');
  assert.equal(await chainDamage(s, chain), `manifests/${full} does not match its sha256 (damaged or replaced)`);
});
