/**
 * The query wing at engine level: globs and snapshot paths (engine/query/select.ts), the
 * pax records of the dump archive (formats/archive.ts), and that find and diff give the
 * same answers when every scratch sort spills to disk (a 4 KiB arena) as in memory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { atOrUnder, globMatcher, snapshotPath } from '../engine/query/select.js';
import { encodeArchiveHeader, paxRecord, paxTime } from '../formats/archive.js';
import { find, type FindMatch } from '../engine/query/find.js';
import { diff, type Difference } from '../engine/query/diff.js';
import { loadRestoreKey } from '../engine/crypto/keys.js';
import { openStorage } from '../engine/storage/open.js';
import { readableSnapshots } from '../engine/restore/compose.js';
import { iebsOk, makeKeys, tempDir } from './helpers.js';

test('globs: a name without /, a whole path with /; sets, escapes and **', () => {
  const yes = (p: string, path: string) => assert.ok(globMatcher(p)(path), `${p} matches ${path}`);
  const no = (p: string, path: string) => assert.ok(!globMatcher(p)(path), `${p} does not match ${path}`);
  yes('*.pdf', 'taxes/2024/a.pdf'); yes('*.pdf', 'a.pdf'); no('*.pdf', 'a.pdf/x');
  yes('a?.txt', 'd/ab.txt'); no('a?.txt', 'd/abc.txt');
  yes('[ab]*', 'x/beta'); no('[!ab]*', 'x/beta'); yes('[a-c]x', 'bx');
  yes('taxes/*/*.pdf', 'taxes/2024/a.pdf'); no('taxes/*/*.pdf', 'taxes/a.pdf'); no('taxes/*/*.pdf', 'home/taxes/2024/a.pdf');
  yes('/taxes/*', 'taxes/x'); yes('home/**/notes.md', 'home/notes.md'); yes('home/**/notes.md', 'home/a/b/notes.md');
  yes('\\*', 'dir/*'); no('\\*', 'dir/x'); yes('a.b', 'a.b'); no('a.b', 'axb'); yes('(x)+', '(x)+');
  for (const bad of ['', '[abc', 'a\\']) assert.throws(() => globMatcher(bad), { code: 'bad-pattern' });
});

test('snapshot paths: any spelling of a path, the root, and .. refused', () => {
  for (const s of ['taxes/2024', '/taxes/2024/', './taxes//2024', 'taxes/./2024']) assert.equal(snapshotPath(s).toString(), 'taxes/2024');
  for (const s of ['/', '.', '', './']) assert.equal(snapshotPath(s).length, 0);
  assert.throws(() => snapshotPath('a/../b'), { code: 'bad-path' });
  const b = (s: string) => Buffer.from(s);
  assert.ok(atOrUnder(b('a/b'), b('a'))); assert.ok(atOrUnder(b('a'), b('a'))); assert.ok(!atOrUnder(b('ab'), b('a'))); assert.ok(atOrUnder(b('x'), b('')));
});

test('pax records count their own length; times keep nanoseconds; ustar is used when it suffices', () => {
  for (const n of [0, 1, 80, 89, 90, 91, 985, 986, 987, 5000]) {
    const r = paxRecord('path', Buffer.alloc(n, 0x61));
    assert.equal(Number(Buffer.from(r).toString('latin1').split(' ')[0]), r.length, `value of ${n} bytes`);
  }
  assert.equal(paxTime(1_600_000_003_999_999_999n), '1600000003.999999999');
  assert.equal(paxTime(1_000_000_000n), '1');
  assert.equal(paxTime(-1_500_000_000n), '-1.5');
  const plain = { kind: 'file' as const, mode: 0o644, uid: 1000, gid: 1000, size: 5, mtimeNs: 1_600_000_000_000_000_000n };
  assert.equal(encodeArchiveHeader({ ...plain, name: Buffer.from('a/b.txt') }).length, 512, 'a short name, whole seconds: one ustar block');
  const long = encodeArchiveHeader({ ...plain, name: Buffer.from('x'.repeat(300)) });
  assert.equal(Buffer.from(long.subarray(156, 157)).toString(), 'x', 'a pax header first');
  assert.match(Buffer.from(long.subarray(512, 1024)).toString('latin1'), /^\d+ path=x{300}\n/);
  const binary = encodeArchiveHeader({ ...plain, name: Buffer.concat([Buffer.from('y'.repeat(200)), Buffer.from([0xff])]) });
  assert.match(Buffer.from(binary.subarray(512, 1024)).toString('latin1'), /^\d+ hdrcharset=BINARY\n\d+ path=y{200}\xff\n/);
});

test('find and diff answer the same when every sort spills to disk', async () => {
  const keys = makeKeys();
  const dir = tempDir('spill');
  const src = join(dir, 'src');
  const repo = join(dir, 'repo');
  for (let d = 0; d < 6; d++) {
    mkdirSync(join(src, `d${d}`), { recursive: true });
    for (let f = 0; f < 40; f++) writeFileSync(join(src, `d${d}`, `f${f}.txt`), `${d}/${f}\n`);
  }
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
  for (let f = 0; f < 40; f += 3) writeFileSync(join(src, 'd2', `f${f}.txt`), `changed ${f}\n`);
  writeFileSync(join(src, 'd5', 'new.txt'), 'new\n');
  iebsOk(['backup', src, '--repo', repo, '--key', keys.backup]);
  const key = await loadRestoreKey(keys.restore, undefined);
  const storage = openStorage(repo);
  const { snapshots } = await readableSnapshots(storage, key);
  const run = async (arena?: number) => {
    const found: string[] = [];
    const r = await find(storage, key, { patterns: ['f1*.txt', 'new.txt'], arena }, (m: FindMatch) => { found.push(`${m.snapshot.record.name} ${Buffer.from(m.record.path).toString()} ${m.record.size}`); });
    const changes: string[] = [];
    const d = await diff(storage, key, { a: snapshots[0].record.name, b: snapshots[1].record.name, arena }, (x: Difference) => { changes.push(`${x.change} ${Buffer.from(x.path).toString()}`); });
    return { found, changes, summary: d.summary, manifests: r.manifests };
  };
  const small = await run(4096);
  const big = await run();
  assert.deepEqual(small, big);
  assert.equal(big.manifests, 2);
  // 6 × f1, f10..f19 = 11 names a snapshot, in both, and new.txt in the second.
  assert.equal(big.found.length, 6 * 11 * 2 + 1);
  assert.equal(big.summary.changed, 14);
  assert.equal(big.summary.added, 1);
  await storage.close();
});

test('public keys generations: keys/public.asc is the first, keys/public.N.asc (N from 2) the later ones', async () => {
  const { publicKeysGeneration, publicKeysObject } = await import('../formats/names.js');
  assert.equal(publicKeysObject(1), 'keys/public.asc');
  assert.equal(publicKeysObject(2), 'keys/public.2.asc');
  assert.equal(publicKeysGeneration('keys/public.asc'), 1);
  assert.equal(publicKeysGeneration('keys/public.12.asc'), 12);
  for (const n of ['keys/public.1.asc', 'keys/public.02.asc', 'keys/public.0.asc', 'keys/public.x.asc', 'keys/public.2.asc.tmp-abc', 'keys/other.asc']) assert.equal(publicKeysGeneration(n), null, n);
  assert.throws(() => publicKeysObject(0), { code: 'absurd-size' });
});
