/**
 * The block hash of a chain (SPEC.md "Index", "Changes by version"), and volumes hashed
 * with sha256 whatever it is (records of version 3): a new chain hashes its blocks with
 * sha256, a chain begun with sha384 keeps sha384 in its increments (with or without the
 * local cache) so that they still find its blocks, both kinds restore, verify every block
 * and salvage, and a diff across the two hashes compares contents. Indexes of one chain
 * that name different hashes are damage, never composed into one state; encoders refuse
 * a sha256 digest where the version has none.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { backup } from '../engine/backup/backup.js';
import { ChainState } from '../engine/backup/state.js';
import { diff } from '../engine/query/diff.js';
import { loadBackupKey, loadRestoreKey } from '../engine/crypto/keys.js';
import { listSnapshots, type Snapshot } from '../engine/repo/repo.js';
import { readIndex } from '../engine/repo/index-object.js';
import { readManifest } from '../engine/repo/manifest-object.js';
import { restore } from '../engine/restore/restore.js';
import { openStorage } from '../engine/storage/open.js';
import { verify } from '../engine/verify.js';
import { encodeIndexHead } from '../formats/blockindex.js';
import { FormatError } from '../formats/errors.js';
import { encodeSnapshotRecord, type SnapshotRecord } from '../formats/snapshot.js';
import { diffTrees, iebs, makeKeys, MiB, readTree, seededBytes, tempDir, writeSeeded } from './helpers.js';

/** A tree of small files (packed) and one large file. */
function tree(src: string): void {
  mkdirSync(join(src, 'small'), { recursive: true });
  for (let i = 0; i < 200; i++) writeFileSync(join(src, 'small', `f${i}`), seededBytes(`bh-${i}`, 100 + i * 37));
  writeSeeded(join(src, 'large.bin'), 'bh-large', 6 * MiB);
}

test('a new chain hashes its blocks with sha256; a sha384 chain keeps sha384 in its increments and still finds its blocks; both restore, verify and salvage', { timeout: 180_000 }, async () => {
  const keys = makeKeys();
  const bk = await loadBackupKey(keys.backup);
  const rk = await loadRestoreKey(keys.restore, undefined);
  const dir = tempDir('block-hash');
  const src = join(dir, 'src');
  tree(src);
  const repo = join(dir, 'repo');
  const cacheDir = join(dir, 'cache');
  const run = (system: string, o: { blockHash?: 'sha256' | 'sha384'; cache?: boolean } = {}) =>
    backup(openStorage(repo), bk, { create: true, sources: [src], volumeSize: 8 * MiB, system, blockHash: o.blockHash, cacheDir: o.cache ? cacheDir : undefined });

  // A chain begun with sha384 (as every chain before sha256 was).
  await run('old', { blockHash: 'sha384', cache: true });
  appendFileSync(join(src, 'large.bin'), 'a few bytes more\n');
  appendFileSync(join(src, 'small', 'f1'), 'changed\n');
  // Its increments hash with sha384 whatever a run asks: from the kept state, then from the indexes.
  const inc1 = await run('old', { blockHash: 'sha256', cache: true });
  appendFileSync(join(src, 'large.bin'), 'and more\n');
  const inc2 = await run('old');
  // A new chain of the same files.
  await run('new');
  appendFileSync(join(src, 'large.bin'), 'and a last line\n');
  const inc3 = await run('new');
  for (const [name, r] of [['old, from the kept state', inc1], ['old, from the indexes', inc2], ['new', inc3]] as const) {
    assert.equal(r.counts.changed, name === 'old, from the kept state' ? 2 : 1, name);
    // The large file's 6 MiB are found in the chain but for its last block (up to 4 MiB:
    // the chunker is keyed, so where it cuts differs with each test's keys): a block id
    // made from another hash would have found nothing and stored all 6 MiB again.
    assert.ok(r.counts.stored < 5 * MiB, `${name}: stored ${r.counts.stored} bytes`);
  }

  const storage = openStorage(repo);
  const { snapshots } = await listSnapshots(storage, rk.verifiers);
  assert.equal(snapshots.length, 5);
  const of = (system: string) => snapshots.filter((s) => s.record.system === system);
  for (const [system, hash, length] of [['old', 'sha384', 48], ['new', 'sha256', 32]] as const) {
    for (const s of of(system)) {
      // Volumes are hashed with sha256 whatever the chain's block hash: a record of version 3.
      assert.equal(s.record.version, 3);
      assert.ok(s.record.volumes.length > 0 && s.record.volumes.every((v) => v.digest.length === 32), `${s.record.name}: sha256 volumes`);
      assert.equal(await readIndex(storage, bk.indexKey, s, () => {}), hash, `${s.record.name}: its index names ${hash}`);
      const lengths = new Set<number>();
      await readManifest(storage, rk, rk.verifiers, s, (r) => { if (!('deleted' in r)) for (const b of r.blocks) lengths.add(b.digest.length); });
      assert.deepEqual([...lengths], [length], `${s.record.name}: every block digest is ${hash}`);
    }
  }

  // A diff across the two hashes reads the files it cannot compare by digest: the new full
  // holds what the sha384 chain's last increment held, and the next increment one change.
  const changes = async (x: Snapshot, y: Snapshot) => {
    const out: string[] = [];
    await diff(storage, rk, { a: x.record.name, b: y.record.name }, (d) => { out.push(`${d.change} ${Buffer.from(d.path).toString()}`); });
    return out;
  };
  assert.deepEqual(await changes(of('old').at(-1)!, of('new')[0]), []);
  assert.deepEqual(await changes(of('old').at(-1)!, of('new')[1]), ['M large.bin']);
  assert.deepEqual(await changes(of('old')[0], of('new')[0]), ['M large.bin', 'M small/f1']);

  // Every block of both kinds of chain is read and checked.
  const v = await verify(storage, rk.verifiers, { restoreKey: rk, readData: true });
  assert.deepEqual(v.problems, []);
  assert.ok(v.blocks > 0);
  // The latest of each restores byte for byte; so does the sha384 full (the tree before the changes differs only in what was appended).
  for (const system of ['old', 'new']) {
    const out = join(dir, `out-${system}`);
    const r = await restore(openStorage(repo), rk, { target: out, snapshot: of(system).at(-1)!.record.name });
    assert.deepEqual(r.failures, []);
    if (system === 'new') assert.deepEqual(diffTrees(readTree(src), readTree(out)), []);
    else {
      // The sha384 chain's last increment came before large.bin's last line.
      const [want, got] = [readTree(src), readTree(out)];
      want.delete('large.bin'); got.delete('large.bin');
      assert.deepEqual(diffTrees(want, got), []);
      const large = readFileSync(join(src, 'large.bin'));
      assert.ok(readFileSync(join(out, 'large.bin')).equals(large.subarray(0, large.length - 'and a last line\n'.length)), 'large.bin as the increment saw it');
    }
  }
  // Each chain's full, salvaged from its volumes alone, gives back every file.
  for (const system of ['old', 'new']) {
    const full = of(system)[0].record.name;
    const volumes = readdirSync(join(repo, 'volumes')).filter((n) => n.startsWith(`${full}.`)).map((n) => join(repo, 'volumes', n));
    const target = join(dir, `salvaged-${system}`);
    const r = iebs(['salvage', ...volumes, '--key', keys.restore, '--target', target]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const got = readTree(target);
    const want = readTree(src);
    // Only small/f1 changed after the sha384 full; the large file grew after both fulls.
    for (let i = 0; i < 200; i++) {
      const p = `small/f${i}`;
      assert.ok(got.get(p), `${system}: ${p} salvaged`);
      if (!(system === 'old' && i === 1)) assert.equal(got.get(p)!.sha256, want.get(p)!.sha256, `${system}: ${p}`);
    }
    assert.ok(got.get('large.bin'), `${system}: large.bin salvaged`);
  }
  await storage.close();
});

test('indexes of one chain that name different hashes are damage: no state is composed from them', { timeout: 120_000 }, async () => {
  const keys = makeKeys();
  const bk = await loadBackupKey(keys.backup);
  const dir = tempDir('block-hash-mixed');
  const src = join(dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'a'), 'a\n');
  const repo = join(dir, 'repo');
  await backup(openStorage(repo), bk, { create: true, sources: [src], volumeSize: 8 * MiB, system: 'x', blockHash: 'sha384' });
  await backup(openStorage(repo), bk, { sources: [src], volumeSize: 8 * MiB, system: 'y' });
  const storage = openStorage(repo);
  const { snapshots } = await listSnapshots(storage, [bk.signer.toPublic()]);
  const byName = (system: string) => snapshots.find((s) => s.record.system === system)!;
  // Read as if y's full were an increment of x's: the second index names sha256 where the first named sha384.
  const chain: Snapshot[] = [byName('x'), byName('y')];
  await assert.rejects(ChainState.load(storage, bk.indexKey, chain, tempDir('scratch'), 'sha256'),
    (e: unknown) => e instanceof FormatError && e.code === 'bad-index' && /names sha256 blocks where the chain before it has sha384/.test(e.message));
  // Each alone is composed, with its own hash.
  for (const [s, hash] of [[chain[0], 'sha384'], [chain[1], 'sha256']] as const) {
    const state = await ChainState.load(storage, bk.indexKey, [s], tempDir('scratch'), hash === 'sha384' ? 'sha256' : 'sha384');
    assert.equal(state.blockHash, hash);
    state.close();
  }
  await storage.close();
});

test('encoders refuse a sha256 digest in a version that has none, and a record version that does not match its sources line', () => {
  const snapshot = 'alpha_2026-12-07_full';
  assert.throws(() => encodeIndexHead({ snapshot, hash: 'sha256' }, 2), (e: unknown) => e instanceof FormatError && e.code === 'unknown-version');
  assert.equal(encodeIndexHead({ snapshot, hash: 'sha384' }, 2), `IEBS-INDEX 2\n${snapshot}\n`);
  const ref = (name: string, n: number) => ({ name, size: 1, digest: new Uint8Array(n) });
  const record: SnapshotRecord = {
    name: snapshot, system: 'alpha', host: 'h', sources: '0'.repeat(32), type: 'full', time: 0n, sequence: 0, chain: snapshot,
    manifest: ref(`${snapshot}.manifest.pgp`, 48), index: ref(`${snapshot}.index`, 48), volumes: [ref(`${snapshot}.files.0001.tar`, 32)],
    counts: { files: 0, bytes: 0, new: 0, changed: 0, unchanged: 0, deleted: 0, stored: 1 },
  };
  assert.match(encodeSnapshotRecord(record), /^IEBS-SNAPSHOT 3\n/);
  assert.throws(() => encodeSnapshotRecord({ ...record, version: 2 }), (e: unknown) => e instanceof FormatError && e.code === 'bad-hash');
  assert.throws(() => encodeSnapshotRecord({ ...record, version: 1 }), (e: unknown) => e instanceof FormatError && e.code === 'bad-line');
  const { sources: _, ...without } = record;
  assert.throws(() => encodeSnapshotRecord({ ...without, version: 3 }), (e: unknown) => e instanceof FormatError && e.code === 'bad-line');
  assert.match(encodeSnapshotRecord({ ...record, volumes: [ref(`${snapshot}.files.0001.tar`, 48)], version: 2 }), /^IEBS-SNAPSHOT 2\n/);
});
