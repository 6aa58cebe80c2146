/**
 * The storage contract's conformance suite (engine/storage/storage.ts): what every
 * backend must do, run against each one by storage-conformance.test.ts (and by the
 * tests of each remote backend). The suite is the contract, not the comments.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { IebsError, NotFoundError } from '../formats/errors.js';
import { listAll, type Storage, type StorageCode } from '../engine/storage/storage.js';

/** How to get a fresh, empty destination of the backend under test. */
export interface Backend {
  label: string;
  make(): Promise<Storage>;
  /** Names in a listing test (thousands for a real backend; its pages must be exercised). */
  manyNames?: number;
}

const codeOf = (e: unknown) => (e instanceof IebsError ? e.code : `not an IebsError: ${String(e)}`);

/** Asserts that `p` rejects with the storage code `code`, naming the object and the destination. */
export async function rejectsWith(p: Promise<unknown>, code: StorageCode, s: Storage, name: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.equal(codeOf(e), code, `expected ${code}: ${(e as Error)?.message}`);
    assert.ok((e as Error).message.includes(name), `the message names the object: ${(e as Error).message}`);
    assert.ok((e as Error).message.includes(s.where), `the message names the destination: ${(e as Error).message}`);
    if (code === 'not-found' || code === 'short-read') assert.ok(e instanceof NotFoundError, 'missing is a NotFoundError');
    return true;
  });
}

/** Registers the suite for one backend. */
export function storageConformance(b: Backend): void {
  const t = (name: string, fn: (s: Storage) => Promise<void>) => test(`${b.label}: ${name}`, async () => {
    const s = await b.make();
    try { await fn(s); } finally { await s.close(); }
  });

  t('put, get, stat and delete an object; deleting a missing one is no error', async (s) => {
    const data = randomBytes(100_000);
    assert.equal(await s.stat('volumes/a.bin'), null);
    await s.put('volumes/a.bin', data);
    assert.equal(await s.stat('volumes/a.bin'), data.length);
    assert.ok(Buffer.from(await s.get('volumes/a.bin')).equals(data));
    await s.put('empty', new Uint8Array(0));
    assert.equal(await s.stat('empty'), 0);
    assert.equal((await s.get('empty')).length, 0);
    await s.delete('volumes/a.bin');
    assert.equal(await s.stat('volumes/a.bin'), null);
    await s.delete('volumes/a.bin');
    await rejectsWith(s.get('volumes/a.bin'), 'not-found', s, 'volumes/a.bin');
  });

  t('bytes given to a write are the caller\'s again once it resolves, and bytes a range read returns are the caller\'s: changing them changes nothing stored', async (s) => {
    const parts = [randomBytes(300_000), randomBytes(1_200_000), randomBytes(70_000)];
    const want = Buffer.concat(parts);
    const w = await s.create('volumes/reused');
    for (const p of parts) {
      await w.write(p);
      p.fill(0x5a); // what a spent batch or a reused buffer would do
    }
    await w.commit();
    assert.ok(Buffer.from(await s.get('volumes/reused')).equals(want));
    // And what a range read returns is the caller's: freeing or changing it changes nothing stored.
    const whole = await s.getRange('volumes/reused', 0, want.length);
    whole.fill(0xa5);
    assert.ok(Buffer.from(await s.getRange('volumes/reused', 0, want.length)).equals(want));
  });

  t('a streamed put is invisible until committed, and an aborted one leaves nothing', async (s) => {
    const w = await s.create('manifests/m');
    await w.write(Buffer.from('first part '));
    assert.equal(await s.stat('manifests/m'), null, 'not visible while written');
    assert.deepEqual(await listAll(s, 'manifests/'), []);
    await w.write(Buffer.from('second part'));
    await w.commit();
    assert.equal(Buffer.from(await s.get('manifests/m')).toString(), 'first part second part');
    const a = await s.create('manifests/n');
    await a.write(randomBytes(5000));
    await a.abort();
    assert.equal(await s.stat('manifests/n'), null);
    assert.deepEqual(await listAll(s, 'manifests/'), ['manifests/m']);
    await s.removeDebris('manifests/');
    assert.deepEqual(await listAll(s, 'manifests/'), ['manifests/m'], 'removeDebris keeps committed objects');
  });

  t('a put never replaces a committed object: exists, and the first stays', async (s) => {
    await s.put('snapshots/r', 'one');
    await rejectsWith(s.put('snapshots/r', 'two'), 'exists', s, 'snapshots/r');
    const w = await s.create('snapshots/r');
    await w.write(Buffer.from('three'));
    await rejectsWith(w.commit(), 'exists', s, 'snapshots/r');
    assert.equal(Buffer.from(await s.get('snapshots/r')).toString(), 'one');
  });

  t('of concurrent puts of one name exactly one commits; concurrent puts of many names all do', async (s) => {
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => s.put('locks/x', `writer ${i}`)));
    const ok = results.filter((r) => r.status === 'fulfilled');
    assert.equal(ok.length, 1, 'exactly one put wins');
    for (const r of results) if (r.status === 'rejected') assert.equal(codeOf(r.reason), 'exists');
    assert.match(Buffer.from(await s.get('locks/x')).toString(), /^writer \d$/);
    const datas = Array.from({ length: 24 }, () => randomBytes(20_000));
    await Promise.all(datas.map((d, i) => s.put(`volumes/c${String(i).padStart(2, '0')}`, d)));
    for (const [i, d] of datas.entries()) assert.ok(Buffer.from(await s.get(`volumes/c${String(i).padStart(2, '0')}`)).equals(d));
  });

  t('conditional create: exactly one of many wins, and the winner\'s content is whole', async (s) => {
    if (!s.createExclusive) return;
    const body = (i: number) => JSON.stringify({ i, pad: 'x'.repeat(2000) });
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => s.createExclusive!('locks/lock', body(i))));
    assert.equal(results.filter(Boolean).length, 1);
    const winner = results.indexOf(true);
    assert.equal(Buffer.from(await s.get('locks/lock')).toString(), body(winner));
  });

  t('range reads: at the start, at the end, of one byte, empty, and past the end', async (s) => {
    const data = randomBytes(70_001);
    await s.put('volumes/r.tar', data);
    await checkRanges(s, data);
  });

  t('list by prefix pages over thousands of names, in byte order, each once', async (s) => {
    const n = b.manyNames ?? 2500;
    const names = Array.from({ length: n }, (_, i) => `volumes/v${String(i).padStart(6, '0')}.tar`);
    for (let i = 0; i < names.length; i += 50) await Promise.all(names.slice(i, i + 50).map((x) => s.put(x, x)));
    await s.put('volumesX', 'a sibling the prefix volumes/ must not match');
    await s.put('manifests/other', 'another folder');
    const got = await listAll(s, 'volumes/');
    assert.equal(got.length, n);
    assert.deepEqual(got, [...names].sort());
    assert.deepEqual(await listAll(s, 'volumes/v00001'), names.slice(10, 20));
    assert.deepEqual(await listAll(s, 'nothing/'), []);
  });

  t('list gives byte order across folders: a/x comes after a-b and a.c', async (s) => {
    for (const n of ['x/a/1', 'x/a-b', 'x/a.c', 'x/a0', 'x/a/0/deep', 'x/b']) await s.put(n, n);
    const want = ['x/a-b', 'x/a.c', 'x/a/0/deep', 'x/a/1', 'x/a0', 'x/b'];
    assert.deepEqual(want, [...want].sort((p, q) => Buffer.compare(Buffer.from(p), Buffer.from(q))), 'the expectation is byte order');
    assert.deepEqual(await listAll(s, 'x/'), want);
    assert.deepEqual(await listAll(s, 'x/a'), want.slice(0, 5));
  });

  t('names with every character a repository uses', async (s) => {
    const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-';
    const names = [`snapshots/${chars}.snapshot.asc`, 'volumes/h0st.name-1_2026-12-06_increment_2026-12-06-04-25-7.files.0001.tar', 'a', 'keys/public.asc', 'locks/break-0123456789abcdef'];
    for (const n of names) await s.put(n, n);
    for (const n of names) assert.equal(Buffer.from(await s.get(n)).toString(), n);
    assert.deepEqual(await listAll(s, 'snapshots/'), [names[0]]);
    for (const bad of ['', '/a', 'a/', 'a//b', '../x', 'a/./b', 'a/../b']) {
      await assert.rejects(s.put(bad, 'x'), (e: unknown) => codeOf(e) === 'bad-object', JSON.stringify(bad));
    }
  });
}

/** How to get a read-only backend holding given objects (a disc image made of them). */
export interface ReadOnlyBackend {
  label: string;
  make(objects: Map<string, Uint8Array>): Promise<Storage>;
}

/**
 * The read part of the contract, for backends that cannot write (disc sets): get, ranged
 * get, stat and list behave as in the writable suite, and every write is refused with
 * `permission`, naming the object and the destination, leaving the objects as they were.
 */
export function storageConformanceReadOnly(b: ReadOnlyBackend): void {
  const objects = new Map<string, Uint8Array>();
  const big = randomBytes(70_001);
  objects.set('volumes/r.tar', big);
  objects.set('empty', new Uint8Array(0));
  for (const n of ['x/a/1', 'x/a-b', 'x/a.c', 'x/a0', 'x/a/0/deep', 'x/b']) objects.set(n, Buffer.from(n));
  const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-';
  const named = [`snapshots/${chars}.snapshot.asc`, 'volumes/h0st.name-1_2026-12-06_increment_2026-12-06-07-25-7.files.0001.tar', 'a', 'keys/public.asc'];
  for (const n of named) objects.set(n, Buffer.from(n));
  const many = Array.from({ length: 300 }, (_, i) => `many/v${String(i).padStart(6, '0')}.tar`);
  for (const n of many) objects.set(n, Buffer.from(n));
  let made: Promise<Storage> | null = null;
  const t = (name: string, fn: (s: Storage) => Promise<void>) => test(`${b.label}: ${name}`, async () => { await fn(await (made ??= b.make(objects))); });

  t('get and stat every object; a missing one is not-found', async (s) => {
    for (const [n, d] of objects) {
      assert.equal(await s.stat(n), d.length, n);
      assert.ok(Buffer.from(await s.get(n)).equals(d), n);
    }
    assert.equal(await s.stat('volumes/none.tar'), null);
    await rejectsWith(s.get('volumes/none.tar'), 'not-found', s, 'volumes/none.tar');
  });

  t('range reads: at the start, at the end, of one byte, empty, and past the end', async (s) => {
    await checkRanges(s, big);
  });

  t('list by prefix, in byte order across folders, each once', async (s) => {
    assert.deepEqual(await listAll(s, 'many/'), many);
    assert.deepEqual(await listAll(s, 'many/v00001'), many.slice(10, 20));
    const want = ['x/a-b', 'x/a.c', 'x/a/0/deep', 'x/a/1', 'x/a0', 'x/b'];
    assert.deepEqual(await listAll(s, 'x/'), want);
    assert.deepEqual(await listAll(s, 'x/a'), want.slice(0, 5));
    assert.deepEqual(await listAll(s, 'snapshots/'), [named[0]]);
    assert.deepEqual(await listAll(s, 'nothing/'), []);
    for (const bad of ['', '/a', 'a/', 'a//b', '../x', 'a/./b', 'a/../b']) {
      await assert.rejects(s.get(bad), (e: unknown) => codeOf(e) === 'bad-object', JSON.stringify(bad));
    }
  });

  t('writes are refused with permission, and change nothing', async (s) => {
    await rejectsWith(s.put('volumes/new.tar', 'x'), 'permission', s, 'volumes/new.tar');
    await rejectsWith(s.put('a', 'replaced'), 'permission', s, 'a');
    await rejectsWith(s.create('manifests/m').then(() => undefined), 'permission', s, 'manifests/m');
    await rejectsWith(s.delete('a'), 'permission', s, 'a');
    assert.equal(Buffer.from(await s.get('a')).toString(), 'a');
    assert.equal(await s.stat('volumes/new.tar'), null);
    await s.close();
  });
}

/** Range reads of `volumes/r.tar`, which holds `data`: at the start, the end, one byte, empty, past the end; and of a missing object. */
async function checkRanges(s: Storage, data: Uint8Array): Promise<void> {
  const eq = async (off: number, len: number) => assert.ok(Buffer.from(await s.getRange('volumes/r.tar', off, len)).equals(data.subarray(off, off + len)), `${off}+${len}`);
  await eq(0, 512);
  await eq(0, data.length);
  await eq(data.length - 1, 1);
  await eq(data.length - 4097, 4097);
  await eq(12_345, 1);
  await eq(data.length, 0);
  await rejectsWith(s.getRange('volumes/r.tar', data.length - 10, 11), 'short-read', s, 'volumes/r.tar');
  await rejectsWith(s.getRange('volumes/r.tar', data.length + 100, 1), 'short-read', s, 'volumes/r.tar');
  await rejectsWith(s.getRange('volumes/none.tar', 0, 1), 'not-found', s, 'volumes/none.tar');
}
