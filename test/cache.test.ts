/**
 * The local cache of chain states (engine/cache.ts): a state kept after each backup
 * must equal the state composed from the repository's indexes, an increment that has
 * one must not need the indexes it stands for, a damaged or foreign state must be
 * ignored and rebuilt, old states must go, and the CLI must keep the cache where it
 * says (with --no-cache, nowhere).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { backup } from '../engine/backup/backup.js';
import type { BackupOptions, Limits } from '../engine/backup/options.js';
import { restore } from '../engine/restore/restore.js';
import { StateCache } from '../engine/backup/cache.js';
import { ChainState } from '../engine/backup/state.js';
import { SortedTable } from '../engine/scratch/sorter.js';
import { chainOf, listSnapshots, readConfig, type Snapshot } from '../engine/repo/repo.js';
import { LAYOUT } from '../formats/names.js';
import type { BackupKey, RestoreKey } from '../engine/crypto/keys.js';
import { openStorage } from '../engine/storage/open.js';
import type { Storage } from '../engine/storage/storage.js';
import { diffTrees, iebsOk, makeKeys, readTree, tempDir, writeSeeded, MiB } from './helpers.js';

let bk: BackupKey;
let rk: RestoreKey;
before(async () => {
  const { loadKeys } = await import('./helpers.js');
  ({ bk, rk } = await loadKeys());
});

test('a sealed table opens from its file, in memory or on disk, and finds every key', () => {
  const dir = tempDir('sealed');
  const keys = Array.from({ length: 5000 }, () => randomBytes(32)).sort(Buffer.compare);
  const t = new SortedTable(join(dir, 't'), 32, 'sealed');
  keys.forEach((k, i) => t.append(k, Buffer.alloc(i % 150, i & 0xff)));
  t.finish();
  const seal = t.seal!;
  assert.equal(seal.count, keys.length);
  assert.ok(seal.sha256.equals(createHash('sha256').update(readFileSync(join(dir, 't'))).digest()));
  t.release();
  assert.ok(existsSync(join(dir, 't')), 'release keeps the file');
  for (const hold of [0, 64 * MiB]) {
    const seen: string[] = [];
    const o = SortedTable.open(join(dir, 't'), 32, seal, (k) => seen.push(k.toString('hex')), hold);
    assert.deepEqual(seen, keys.map((k) => k.toString('hex')));
    keys.forEach((k, i) => {
      const got = o.get(k);
      assert.ok(got && got.ordinal === i && got.value.equals(Buffer.alloc(i % 150, i & 0xff)), `hold ${hold}: key ${i}`);
    });
    for (let i = 0; i < 500; i++) assert.equal(o.get(randomBytes(32)), undefined);
    // Keys that share their first four bytes with a page's first key.
    for (const k of keys.slice(0, 300)) assert.equal(o.get(Buffer.concat([k.subarray(0, 4), randomBytes(28)])), undefined);
    o.close();
    assert.ok(existsSync(join(dir, 't')), 'closing an opened table keeps the file');
  }
});

test('a table that does not match its seal is refused', () => {
  const dir = tempDir('sealed-bad');
  const keys = Array.from({ length: 2000 }, () => randomBytes(32)).sort(Buffer.compare);
  const t = new SortedTable(join(dir, 't'), 32, 'sealed');
  for (const k of keys) t.append(k, Buffer.from('value'));
  t.finish().release();
  const seal = t.seal!;
  const good = readFileSync(join(dir, 't'));
  const tryOpen = (bytes: Buffer, s = seal) => {
    writeFileSync(join(dir, 'x'), bytes);
    return () => SortedTable.open(join(dir, 'x'), 32, s, undefined, 0).close();
  };
  assert.doesNotThrow(tryOpen(good));
  const flipped = Buffer.from(good);
  flipped[good.length >> 1] ^= 1;
  assert.throws(tryOpen(flipped), /checksum|out of order/);
  assert.throws(tryOpen(good.subarray(0, good.length - 3)), /bytes, not/);
  assert.throws(tryOpen(good.subarray(0, good.length - 3), { ...seal, size: good.length - 3 }), /cut short|truncated/);
  assert.throws(tryOpen(good, { ...seal, count: seal.count + 1 }), /entries, not/);
  // Held in memory, an index sized by the count it was told: more entries than that are refused.
  writeFileSync(join(dir, 'x'), good);
  assert.throws(() => SortedTable.open(join(dir, 'x'), 32, { ...seal, count: seal.count - 1 }, undefined, 64 * MiB), /more than/);
  // Two entries swapped, sealed as they are: well hashed, but out of order.
  const e = 32 + 2 + 5;
  const swapped = Buffer.concat([good.subarray(e, 2 * e), good.subarray(0, e), good.subarray(2 * e)]);
  assert.throws(tryOpen(swapped, { ...seal, sha256: createHash('sha256').update(swapped).digest() }), /out of order/);
});

/** A tree of a few hundred small files and one larger file. */
function makeTree(src: string): void {
  for (let d = 0; d < 12; d++) {
    mkdirSync(join(src, `d${d}`), { recursive: true });
    for (let f = 0; f < 20; f++) writeFileSync(join(src, `d${d}`, `f${f}.txt`), `file ${d}/${f}\n`.repeat(1 + ((d * 20 + f) % 30)));
  }
  writeSeeded(join(src, 'big.bin'), 'cache-big', 3 * MiB);
}

const changes = [
  (src: string) => {
    appendFileSync(join(src, 'd1', 'f1.txt'), 'more\n');
    writeFileSync(join(src, 'd2', 'f2.txt'), 'rewritten\n');
    renameSync(join(src, 'd3'), join(src, 'd3-renamed'));
    rmSync(join(src, 'd4'), { recursive: true });
    for (let i = 0; i < 10; i++) writeFileSync(join(src, 'd5', `new${i}.txt`), `new ${i}\n`);
  },
  (src: string) => {
    rmSync(join(src, 'd6', 'f1.txt'));
    mkdirSync(join(src, 'd6', 'f1.txt'));
    writeFileSync(join(src, 'd6', 'f1.txt', 'inside'), 'a file where a file was\n');
    appendFileSync(join(src, 'big.bin'), 'tail');
  },
  () => {},
];

/** A tree in a folder of its own, with a repository and a cache beside it, and the options of its backups. */
function setup(label: string, system: string) {
  const dir = tempDir(label);
  const src = join(dir, 'src');
  makeTree(src);
  const cacheDir = join(dir, 'cache');
  const o: BackupOptions = { create: true, sources: [src], volumeSize: 8 * MiB, system, cacheDir };
  return { dir, src, cacheDir, storage: openStorage(join(dir, 'repo')), o };
}

async function chainOfSystem(storage: Storage, system: string): Promise<Snapshot[]> {
  const { snapshots } = await listSnapshots(storage, [bk.signer.toPublic()]);
  const mine = snapshots.filter((s) => s.record.system === system);
  return chainOf(mine[mine.length - 1], snapshots);
}

/** Every entry of a table, as text. */
const dump = (t: SortedTable) => [...t.entries()].map(([k, v]) => `${k.toString('hex')} ${v.toString('latin1')}`);

for (const limits of [undefined, { arena: 2048 } as Limits]) {
  test(`the state kept after each backup equals the state composed from the indexes${limits ? ' (every sorter spilling)' : ''}`, async () => {
    const dir = tempDir('cache-chain');
    const src = join(dir, 'src');
    makeTree(src);
    const cacheDir = join(dir, 'cache');
    const cached = openStorage(join(dir, 'repo'));
    const plain = openStorage(join(dir, 'plain'));
    const o: BackupOptions = { create: true, sources: [src], volumeSize: 8 * MiB, system: 'cached', limits };
    for (let i = 0; i <= changes.length; i++) {
      if (i > 0) changes[i - 1](src);
      const a = await backup(cached, bk, { ...o, cacheDir });
      const b = await backup(plain, bk, o);
      assert.deepEqual(a.counts, { ...b.counts, stored: a.counts.stored }, `step ${i}: what the run found`);
      assert.equal(a.counts.stored > 0, b.counts.stored > 0);

      const chain = await chainOfSystem(cached, 'cached');
      assert.equal(chain[chain.length - 1].record.name, a.snapshot);
      const cache = StateCache.open(cacheDir, (await readConfig(cached)).id, bk.indexKey)!;
      const kept = cache.find(chain);
      assert.ok(kept, `step ${i}: a state is kept`);
      assert.equal(kept.pos, chain.length - 1, `step ${i}: for the new snapshot`);
      const scratch = tempDir('scratch');
      const composed = await ChainState.load(cached, bk.indexKey, chain, scratch, 'sha384', limits?.arena);
      assert.equal(kept.hash, 'sha256', `step ${i}: the state names the chain's hash`);
      assert.equal(composed.blockHash, 'sha256', `step ${i}: as the indexes do`);
      assert.deepEqual(dump(kept.paths), dump(composed.pathTable), `step ${i}: paths`);
      assert.deepEqual(dump(kept.blocks), dump(composed.blockTable), `step ${i}: blocks`);
      for (const [id] of composed.blockTable.entries()) assert.ok(kept.bloom.has(id));
      composed.close(); kept.paths.close(); kept.blocks.close();
      assert.equal(readdirSync(join(cacheDir, (await readConfig(cached)).id)).filter((n) => n.endsWith('.state')).length, 1, 'one state per system');
    }
    const out = join(dir, 'out');
    const r = await restore(cached, rk, { target: out });
    assert.deepEqual(r.failures, []);
    assert.deepEqual(diffTrees(readTree(src), readTree(out)), []);
    await cached.close(); await plain.close();
  });
}

test('an increment with a kept state reads none of the indexes it stands for', async () => {
  const { dir, src, storage, o } = setup('cache-noindex', 'idx');
  const full = await backup(storage, bk, o);
  // Hide the full's index: only the kept state can tell the increment what the chain holds.
  const index = join(dir, 'repo', LAYOUT.indexes, `${full.snapshot}.index`);
  const away = join(dir, 'index.away'); // outside the repository: a run removes objects no record names
  renameSync(index, away);
  // Without the kept state the index is needed: the run would be a new full.
  assert.equal((await backup(storage, bk, { ...o, cacheDir: undefined, dryRun: true })).type, 'full');
  changes[0](src);
  const inc = await backup(storage, bk, o);
  assert.equal(inc.type, 'increment');
  assert.ok(inc.counts.unchanged > 200, `${inc.counts.unchanged} entries found unchanged`);
  assert.equal(inc.counts.deleted, 2 * 21, 'the folders d3 (renamed) and d4, and their files');
  renameSync(away, index);
  const out = join(dir, 'out');
  assert.deepEqual((await restore(storage, rk, { target: out })).failures, []);
  assert.deepEqual(diffTrees(readTree(src), readTree(out)), []);
  await storage.close();
});

test('a damaged, foreign or stale kept state is not used, and the next backup keeps a good one', async () => {
  const { dir, src, cacheDir, storage, o } = setup('cache-bad', 'bad');
  await backup(storage, bk, o);
  const repoId = (await readConfig(storage)).id;
  const folder = join(cacheDir, repoId);
  const table = (ext: string) => join(folder, readdirSync(folder).find((n) => n.endsWith(ext))!);

  // Another index key finds nothing.
  assert.equal(StateCache.open(cacheDir, repoId, randomBytes(32))!.find(await chainOfSystem(storage, 'bad')), undefined);

  // One bit of the paths table flipped: refused, removed, and the run reads the indexes.
  const paths = table('.paths');
  const b = readFileSync(paths);
  b[b.length - 10] ^= 0x20;
  writeFileSync(paths, b);
  changes[0](src);
  const inc = await backup(storage, bk, o);
  assert.ok(!existsSync(paths), 'the damaged table is gone');
  assert.equal(inc.counts.deleted, 2 * 21, 'd3 (renamed) and d4, each with its files');
  assert.ok(StateCache.open(cacheDir, repoId, bk.indexKey)!.find(await chainOfSystem(storage, 'bad')), 'a good state is kept again');

  // A cut-short blocks table, and a state file whose index hash is not the record's.
  truncateSync(table('.blocks'), statSync(table('.blocks')).size - 1);
  const chain = await chainOfSystem(storage, 'bad');
  assert.equal(StateCache.open(cacheDir, repoId, bk.indexKey)!.find(chain), undefined);
  await backup(storage, bk, o);
  const state = join(folder, readdirSync(folder).find((n) => n.endsWith('.state'))!);
  const good = readFileSync(state, 'latin1');
  writeFileSync(state, good.replace(/^iebs-state-cache \d+/, 'iebs-state-cache 1'));
  assert.equal(StateCache.open(cacheDir, repoId, bk.indexKey)!.find(await chainOfSystem(storage, 'bad')), undefined, 'a state of another version');
  writeFileSync(state, good);
  assert.ok(StateCache.open(cacheDir, repoId, bk.indexKey)!.find(await chainOfSystem(storage, 'bad')));
  writeFileSync(state, readFileSync(state, 'latin1').replace(/^index ([0-9a-f])/m, (_, c: string) => `index ${c === '0' ? '1' : '0'}`));
  assert.equal(StateCache.open(cacheDir, repoId, bk.indexKey)!.find(await chainOfSystem(storage, 'bad')), undefined);
  assert.ok(!existsSync(state), 'the stale state is removed');

  // What the cache held was never used: every run's restore is right.
  changes[1](src);
  await backup(storage, bk, o);
  const out = join(dir, 'out');
  assert.deepEqual((await restore(storage, rk, { target: out })).failures, []);
  assert.deepEqual(diffTrees(readTree(src), readTree(out)), []);
  await storage.close();
});

test('old states go: one per system, none for a chain a new full replaced, no stray files', async () => {
  const dir = tempDir('cache-prune');
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  makeTree(a);
  mkdirSync(b);
  writeFileSync(join(b, 'only.txt'), 'system b\n');
  const cacheDir = join(dir, 'cache');
  const storage = openStorage(join(dir, 'repo'));
  const sa: BackupOptions = { create: true, sources: [a], volumeSize: 8 * MiB, system: 'sysa', cacheDir };
  const sb: BackupOptions = { create: true, sources: [b], volumeSize: 8 * MiB, system: 'sysb', cacheDir };
  await backup(storage, bk, sa);
  const headB = (await backup(storage, bk, sb)).snapshot;
  const folder = join(cacheDir, (await readConfig(storage)).id);
  writeFileSync(join(folder, 'stray.paths'), 'left by a crash');
  let headA = '';
  for (let i = 0; i < 3; i++) headA = (await backup(storage, bk, { ...sa, full: i === 2 })).snapshot;
  const states = readdirSync(folder).filter((n) => n.endsWith('.state')).sort();
  assert.deepEqual(states, [`${headA}.state`, `${headB}.state`].sort());
  assert.equal(readdirSync(folder).length, 3 * 2, 'each state and its two tables, nothing else');
  assert.ok(existsSync(join(cacheDir, 'CACHEDIR.TAG')));
  await storage.close();
});

test('the CLI keeps the cache in IEBS_CACHE_DIR or --cache-dir, nowhere with --no-cache, and backs up without one it cannot make', () => {
  const dir = tempDir('cache-cli');
  const keys = makeKeys();
  const src = join(dir, 'src');
  makeTree(src);
  const repo = join(dir, 'repo');
  const envCache = join(dir, 'env-cache');
  const flagCache = join(dir, 'flag-cache');
  const env = { IEBS_CACHE_DIR: envCache };
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--no-cache'], { env });
  assert.ok(!existsSync(envCache), '--no-cache writes no cache');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup], { env });
  assert.ok(existsSync(join(envCache, 'CACHEDIR.TAG')));
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--cache-dir', flagCache], { env });
  assert.ok(readdirSync(flagCache).includes('CACHEDIR.TAG'));
  const blocked = join(dir, 'a-file');
  writeFileSync(blocked, 'not a folder');
  const r = iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--cache-dir', join(blocked, 'cache')], { env });
  assert.match(r.stdout, /increment/);
  assert.equal(r.stderr, '');
});

test('a kept state one snapshot behind is brought up to date from the indexes after it', async () => {
  const { src, cacheDir, storage, o } = setup('cache-behind', 'behind');
  await backup(storage, bk, o);
  changes[0](src);
  await backup(storage, bk, { ...o, cacheDir: undefined }); // the cache does not hear of this one
  const repoId = (await readConfig(storage)).id;
  const behind = StateCache.open(cacheDir, repoId, bk.indexKey)!.find(await chainOfSystem(storage, 'behind'));
  assert.equal(behind?.pos, 0, 'the kept state is the full\'s');
  behind!.paths.close(); behind!.blocks.close();
  changes[1](src);
  const inc = await backup(storage, bk, o);
  // Had the run not composed the increment the cache missed, the 10 files it added and
  // the renamed folder would count as new again.
  assert.equal(inc.counts.new, 1, 'only d6/f1.txt/inside is new');
  assert.equal(inc.counts.deleted, 0);
  const chain = await chainOfSystem(storage, 'behind');
  const kept = StateCache.open(cacheDir, repoId, bk.indexKey)!.find(chain)!;
  assert.equal(kept.pos, chain.length - 1);
  const composed = await ChainState.load(storage, bk.indexKey, chain, tempDir('scratch'), 'sha256');
  assert.deepEqual(dump(kept.paths), dump(composed.pathTable));
  assert.deepEqual(dump(kept.blocks), dump(composed.blockTable));
  composed.close(); kept.paths.close(); kept.blocks.close();
  await storage.close();
});
