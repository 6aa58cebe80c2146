/**
 * The walk on its own thread (engine/backup/walker.ts, walk-worker.ts): what crosses from
 * it comes back as it went (walk-protocol.ts), and the thread hands over the same
 * entries, in the same order, as the walk itself, each with its keyed path id and the
 * UUID a new path gets, warnings in their place; patterns reach it; a source that cannot
 * be read fails before the thread starts. The walk begins before it has its keys: what
 * it packs meanwhile gets its ids once they are given, and a run that ends first ends the
 * thread. The UUID of a new path is the one SPEC.md derives, computed here with
 * node:crypto's HMAC.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../formats/errors.js';
import { hmac } from '../engine/crypto/crypto.js';
import { fillIds, packWalkItems, unpackWalkItems, WalkPacker, type WalkItem } from '../engine/backup/walk-protocol.js';
import { runUuid } from '../engine/backup/run-uuid.js';
import { walk } from '../engine/backup/walk.js';
import { Walker } from '../engine/backup/walker.js';
import type { Warning } from '../engine/backup/options.js';
import { tempDir } from './helpers.js';

/** Items as comparable values (bytes as hex, BigInts as text). */
const plain = (items: unknown) => JSON.parse(JSON.stringify(items, (_, v) => (typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v)));

test('walk items come back as they went: every byte of a name, the edges of each number, warnings', () => {
  const name = Buffer.from([0x66, 0xff, 0x0a, 0x27, 0x5c, 0x80]);
  const items: WalkItem[] = [
    { warning: { code: 'unreadable', path: 'a/ünï', message: 'cannot list directory (EACCES)' } },
    { kind: 'file', rel: name, abs: Buffer.concat([Buffer.from('/src/'), name]), pathId: new Uint8Array(randomBytes(32)), uuid: '550e8400-e29b-41d4-a716-446655440000', st: { size: 2n ** 64n - 1n, mtimeNs: -(2n ** 63n), ctimeNs: 2n ** 63n - 1n, ino: 2n ** 64n - 1n, mode: 0o100644n, uid: 4294967295n, gid: 0n } },
    { kind: 'dir', rel: Buffer.from('d'), abs: Buffer.from('/src/d'), pathId: new Uint8Array(32), uuid: 'ffffffff-ffff-4fff-bfff-ffffffffffff', st: { size: 0n, mtimeNs: 0n, ctimeNs: -1n, ino: 1n, mode: 0o40755n, uid: 0n, gid: 4294967295n } },
    { kind: 'symlink', rel: Buffer.from('l'), abs: Buffer.from('/src/l'), pathId: new Uint8Array(randomBytes(32)), uuid: '00000000-0000-4000-8000-000000000000', st: { size: 3n, mtimeNs: 1n, ctimeNs: 1n, ino: 2n, mode: 0o120777n, uid: 1n, gid: 1n } },
  ];
  const buf = packWalkItems(items);
  assert.deepEqual(plain(unpackWalkItems(structuredClone(buf, { transfer: [buf] }))), plain(items));
  // A buffer cut anywhere inside an item is refused, never read past.
  const whole = packWalkItems(items);
  for (const cut of [1, 10, 60, whole.byteLength - 1]) assert.throws(() => unpackWalkItems(whole.slice(0, cut)), /runs past|unknown kind/);
});

test('a packer used batch after batch: each batch holds its own items, whole, and an item larger than the packer grows it', () => {
  const item = (i: number, nameBytes: number): WalkItem => i % 5 === 4
    ? { warning: { code: 'vanished', path: `p${i}`, message: 'vanished before it was read' } }
    : { kind: 'file', rel: Buffer.alloc(nameBytes, 0x61 + (i % 26)), abs: Buffer.concat([Buffer.from('/s/'), Buffer.alloc(nameBytes, 0x61 + (i % 26))]), pathId: new Uint8Array(randomBytes(32)), uuid: '550e8400-e29b-41d4-a716-44665544' + String(i).padStart(4, '0'), st: { size: BigInt(i), mtimeNs: BigInt(i) * 1000n, ctimeNs: 7n, ino: BigInt(i + 1), mode: 0o100600n, uid: 1n, gid: 2n } };
  const packer = new WalkPacker(512);
  const batches: { items: WalkItem[]; buf: ArrayBuffer }[] = [];
  let items: WalkItem[] = [];
  for (let i = 0; i < 60; i++) {
    const it = item(i, i === 30 ? 5000 : 1 + ((i * 37) % 90));
    packer.add(it);
    items.push(it);
    assert.equal(packer.count, items.length);
    if (i % 7 === 6) { batches.push({ items, buf: packer.take() }); items = []; assert.equal(packer.bytes, 0); }
  }
  batches.push({ items, buf: packer.take() });
  // Each batch as taken, though the packer went on (and grew) after it.
  for (const b of batches) {
    assert.deepEqual(plain(unpackWalkItems(b.buf)), plain(b.items));
    assert.equal(Buffer.from(b.buf).equals(Buffer.from(packWalkItems(b.items))), true);
  }
});

test('the UUID of a new path is SPEC.md\'s: HMAC-SHA256(run secret, kind || 0x00 || path id), its first 16 bytes as a version 4 UUID', () => {
  const spec = (secret: Uint8Array, pathId: Uint8Array, kind: string) => {
    const h = createHmac('sha256', secret).update(Buffer.concat([Buffer.from(kind, 'latin1'), Buffer.from([0]), pathId])).digest();
    h[6] = (h[6] & 0x0f) | 0x40;
    h[8] = (h[8] & 0x3f) | 0x80;
    return [h.subarray(0, 4), h.subarray(4, 6), h.subarray(6, 8), h.subarray(8, 10), h.subarray(10, 16)].map((b) => b.toString('hex')).join('-');
  };
  for (let i = 0; i < 2000; i++) {
    const secret = randomBytes(32);
    const pathId = randomBytes(32);
    for (const kind of ['file', 'dir', 'symlink']) {
      const got = runUuid(secret, pathId, kind);
      assert.equal(got, spec(secret, pathId, kind), `${kind} ${pathId.toString('hex')}`);
      assert.match(got, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    }
  }
});

/** A tree of 600 files and a few odd entries, with patterns; what the walk of it gives, with ids. */
function walkerTree(name: string) {
  const dir = tempDir(name);
  const src = join(dir, 'src');
  for (const d of ['a', 'a/b', 'c', 'locked', 'skip']) mkdirSync(join(src, d), { recursive: true });
  for (let i = 0; i < 600; i++) writeFileSync(join(src, 'a', 'b', `f${i}`), `file ${i}\n`);
  writeFileSync(join(src, 'c', 'keep.txt'), 'x');
  writeFileSync(join(src, 'c', 'drop.tmp'), 'x');
  writeFileSync(join(src, 'skip', 'inside'), 'x');
  symlinkSync('a/b/f1', join(src, 'link'));
  chmodSync(join(src, 'locked'), 0o000);
  const o = { exclude: [/\.tmp$/, /^skip$/] };
  const key = new Uint8Array(randomBytes(32));
  const secret = new Uint8Array(randomBytes(32));
  const wantWarnings: Warning[] = [];
  const want: unknown[] = [];
  for (const e of walk([src], o, (w) => { wantWarnings.push(w); want.push({ warning: w }); })) {
    const pathId = hmac(key, e.rel);
    want.push({ ...e, pathId, uuid: runUuid(secret, pathId, e.kind) });
  }
  return { src, o, key, secret, want, wantWarnings, unlock: () => chmodSync(join(src, 'locked'), 0o755) };
}

/** Every batch of a started walker, unpacked, and how many batches there were. */
async function drain(walker: Walker): Promise<{ got: unknown[]; batches: number }> {
  const got: unknown[] = [];
  let batches = 0;
  try {
    for (let b = await walker.next(); b; b = await walker.next()) { batches++; got.push(...unpackWalkItems(b)); }
  } finally { await walker.close(); }
  return { got, batches };
}

test('the walk thread hands over what the walk gives, in order, with ids, UUIDs and warnings in their place', async () => {
  const t = walkerTree('walker');
  try {
    const walker = new Walker([t.src], t.o);
    walker.start(t.key, t.secret);
    const { got, batches } = await drain(walker);
    assert.ok(batches >= 3, `${batches} batches for ${t.want.length} items (256 a batch)`);
    assert.deepEqual(plain(got), plain(t.want));
    // Root sees through 0000, so only a non-root run meets the warning; the filters always apply.
    if (process.getuid?.() !== 0) assert.equal(t.wantWarnings.length, 1);
    const rels = got.filter((x): x is { rel: Buffer } => 'rel' in (x as object)).map((x) => Buffer.from(x.rel).toString());
    assert.ok(rels.includes('c/keep.txt') && !rels.includes('c/drop.tmp') && !rels.some((r) => r.startsWith('skip')), 'exclude patterns reach the thread');
  } finally {
    t.unlock();
  }
});

test('a walk given its keys late hands over the same: what it packed ahead (up to its hold, then it waits) gets its ids', async () => {
  const t = walkerTree('walker-late');
  try {
    // A hold of 4 KiB: the first batch fills it and the thread waits for its keys. A hold
    // larger than the tree: the thread walks it all, then waits to send the end.
    for (const hold of [4096, 64 * 1024 * 1024]) {
      const walker = new Walker([t.src], t.o, hold);
      await new Promise((r) => setTimeout(r, 300));
      walker.start(t.key, t.secret);
      assert.deepEqual(plain((await drain(walker)).got), plain(t.want), `hold ${hold}`);
    }
  } finally {
    t.unlock();
  }
});

test('a walker closed before it was given its keys ends its thread, whether it was walking or waiting', async () => {
  const t = walkerTree('walker-closed');
  try {
    for (const hold of [1, 64 * 1024 * 1024]) {
      const walker = new Walker([t.src], t.o, hold);
      await new Promise((r) => setTimeout(r, 100));
      await walker.close();
      await assert.rejects(walker.next(), /closed/, `hold ${hold}: no batch after close`);
    }
  } finally {
    t.unlock();
  }
});

test('ids written into a batch packed without them give the batch packed with them', () => {
  const key = new Uint8Array(randomBytes(32));
  const secret = new Uint8Array(randomBytes(32));
  const items: WalkItem[] = [];
  for (let i = 0; i < 40; i++) {
    if (i % 9 === 3) { items.push({ warning: { code: 'vanished', path: `w${i}`, message: 'vanished before it was read' } }); continue; }
    const rel = Buffer.from(`d/${'x'.repeat(i)}${i}`);
    const kind = (['file', 'dir', 'symlink'] as const)[i % 3];
    const pathId = hmac(key, rel);
    items.push({ kind, rel, abs: Buffer.concat([Buffer.from('/src/'), rel]), pathId, uuid: runUuid(secret, pathId, kind), st: { size: BigInt(i), mtimeNs: 5n, ctimeNs: 6n, ino: BigInt(i), mode: 0o100644n, uid: 0n, gid: 0n } });
  }
  const blank = packWalkItems(items.map((it) => ('warning' in it ? it : { ...it, pathId: new Uint8Array(32), uuid: '' })));
  assert.notDeepEqual(Buffer.from(blank), Buffer.from(packWalkItems(items)));
  fillIds(blank, (rel, kind) => { const pathId = hmac(key, rel); return { pathId, uuid: runUuid(secret, pathId, kind) }; });
  assert.deepEqual(Buffer.from(blank), Buffer.from(packWalkItems(items)));
});

test('a source that cannot be read fails before the walk thread starts, as the walk does', () => {
  const missing = join(tempDir('walker-missing'), 'nope');
  assert.throws(() => new Walker([missing], {}), (e: unknown) => e instanceof UsageError && /cannot read source/.test(e.message));
});
