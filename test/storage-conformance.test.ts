/**
 * The storage contract, against every backend there is: a local directory (plain, behind
 * the retry wrapper, and made on first use as an S3 repository is) and memory. A storage
 * made on first use that fails to load fails every call, and closes. Then what only a real file system shows: a put
 * killed with SIGKILL leaves nothing under its name, and the next run's removeDebris
 * takes what it left; a full and a read-only file system map to `no-space` and
 * `permission`. And the retry wrapper: transient failures retried with backoff, others
 * not, a listing resumed where it broke.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalStorage } from '../engine/storage/local.js';
import { MemoryStorage } from '../engine/storage/memory.js';
import { lazyStorage } from '../engine/storage/lazy.js';
import { withRetry } from '../engine/storage/retry.js';
import { listAll, storageError, type Storage } from '../engine/storage/storage.js';
import { tempDir } from './helpers.js';
import { rejectsWith, storageConformance } from './storage-conformance.js';

storageConformance({ label: 'local', make: async () => new LocalStorage(tempDir('conf-local')) });
storageConformance({ label: 'local with retries', make: async () => withRetry(new LocalStorage(tempDir('conf-retry'))) });
storageConformance({ label: 'memory', make: async () => new MemoryStorage('memory:test', 100) });
storageConformance({ label: 'local made on first use', make: async () => { const dir = tempDir('conf-lazy'); return lazyStorage(dir, async () => new LocalStorage(dir), { createExclusive: true }); } });

test('a storage made on first use is made once; one that fails to load fails every call, and closes', async () => {
  let made = 0;
  const dir = tempDir('lazy-once');
  const once = lazyStorage(dir, async () => { made++; return new LocalStorage(dir); }, { createExclusive: true });
  assert.equal(made, 0, 'nothing is made before the first call');
  await Promise.all([once.put('a', 'x'), once.put('b', 'y'), once.stat('a')]);
  assert.deepEqual(await listAll(once, ''), ['a', 'b']);
  assert.equal(made, 1);
  await once.close();
  let tries = 0;
  const broken = lazyStorage('nowhere', async () => { tries++; throw new Error('cannot load the backend'); }, { createExclusive: true });
  await assert.rejects(broken.get('a'), /cannot load the backend/);
  await assert.rejects(broken.createExclusive!('locks/lock', 'x'), /cannot load the backend/);
  assert.equal(tries, 1, 'the failed load is not tried again');
  await broken.close();
});

const LOCAL = fileURLToPath(new URL('../engine/storage/local.js', import.meta.url));

test('local: a put killed with SIGKILL mid-write leaves nothing under its name; removeDebris takes the rest', async () => {
  const root = tempDir('conf-kill');
  const code = `
    const { LocalStorage } = await import(${JSON.stringify(LOCAL)});
    const s = new LocalStorage(${JSON.stringify(root)});
    const w = await s.create('volumes/big.tar');
    await w.write(Buffer.alloc(4 << 20, 7));
    process.stdout.write('written\\n');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => { if (String(d).includes('written')) resolve(); });
    child.on('exit', (c) => reject(new Error(`the writer exited early (${c})`)));
  });
  child.kill('SIGKILL');
  await new Promise((r) => child.on('close', r));
  const s = new LocalStorage(root);
  assert.equal(await s.stat('volumes/big.tar'), null, 'nothing under the name');
  assert.deepEqual(await listAll(s, 'volumes/'), [], 'the listing does not show the half-written object');
  assert.equal(readdirSync(join(root, 'volumes')).length, 1, 'the temporary file is there to clean');
  assert.equal(await s.removeDebris('volumes/'), 1);
  assert.deepEqual(readdirSync(join(root, 'volumes')), []);
  await s.put('volumes/big.tar', 'whole');
  assert.equal(await s.stat('volumes/big.tar'), 5);
});

/** Mounts a tmpfs of `mib` MiB at `dir` with `opts`; fails the test when it cannot (it needs root). */
function mountTmpfs(dir: string, mib: number, opts = ''): () => void {
  mkdirSync(dir, { recursive: true });
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m${opts ? `,${opts}` : ''}`, 'tmpfs', dir], { encoding: 'utf8' });
  assert.equal(r.status, 0, `mount tmpfs (this test needs root): ${r.stderr}`);
  return () => { if (spawnSync('umount', [dir]).status !== 0) spawnSync('umount', ['-l', dir]); };
}

test('local: a full destination is no-space and a read-only one permission, naming the object and the destination', async () => {
  const dir = tempDir('conf-errors');
  const full = join(dir, 'full');
  const unmountFull = mountTmpfs(full, 1);
  try {
    const s = new LocalStorage(full);
    await rejectsWith(s.put('volumes/v.tar', Buffer.alloc(2 << 20)), 'no-space', s, 'volumes/v.tar');
    assert.deepEqual(await listAll(s, ''), [], 'nothing left under any name');
    assert.equal(await s.removeDebris(''), 0, 'not even a temporary file');
  } finally { unmountFull(); }
  const ro = join(dir, 'ro');
  const unmountRo = mountTmpfs(ro, 1, 'ro');
  try {
    const s = new LocalStorage(ro);
    await rejectsWith(s.put('config', 'x'), 'permission', s, 'config');
    assert.equal(await s.stat('config'), null);
    await rejectsWith(s.get('config'), 'not-found', s, 'config');
  } finally { unmountRo(); }
  rmSync(dir, { recursive: true, force: true });
});

/** A memory backend that fails its first `failures` calls of each kind with `code`. */
function flaky(inner: Storage, failures: number, code: 'transient' | 'permanent'): Storage & { calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const hit = (op: string) => {
    const n = (calls.get(op) ?? 0) + 1;
    calls.set(op, n);
    if (n <= failures) throw storageError(code, inner.where, op, `${code} failure ${n}`);
  };
  return {
    calls,
    get where() { return inner.where; },
    create: async (name) => { hit('create'); return inner.create(name); },
    put: async (name, data) => { hit('put'); return inner.put(name, data); },
    get: async (name) => { hit('get'); return inner.get(name); },
    getRange: async (name, o, l) => { hit('getRange'); return inner.getRange(name, o, l); },
    stat: async (name) => { hit('stat'); return inner.stat(name); },
    list: (prefix) => (async function* () {
      let i = 0;
      for await (const n of inner.list(prefix)) {
        // Breaks after the third name of each listing while failures last.
        if (i++ === 3) hit('list');
        yield n;
      }
    })(),
    delete: async (name) => { hit('delete'); return inner.delete(name); },
    removeDebris: async (p) => { hit('removeDebris'); return inner.removeDebris(p); },
    close: () => inner.close(),
  };
}

test('retry: transient failures are retried with growing, jittered waits; a put that landed counts as done', async () => {
  const mem = new MemoryStorage();
  await mem.put('a', 'alpha');
  const waits: number[] = [];
  const f = flaky(mem, 3, 'transient');
  const s = withRetry(f, { tries: 5, baseMs: 100, maxMs: 1000, sleep: async (ms) => { waits.push(ms); } });
  assert.equal(Buffer.from(await s.get('a')).toString(), 'alpha');
  assert.equal(f.calls.get('get'), 4, 'three failures, then success');
  assert.equal(waits.length, 3);
  waits.forEach((w, i) => assert.ok(w >= 0 && w <= 100 * 2 ** i, `wait ${i} of ${w} ms within its cap`));
  assert.equal(await s.stat('a'), 5);
  await s.put('b', 'beta');
  assert.equal(Buffer.from(await mem.get('b')).toString(), 'beta');

  // A listing that breaks part way resumes after the last name it gave, each name once.
  for (let i = 0; i < 10; i++) await mem.put(`l/${i}`, 'x');
  assert.deepEqual(await listAll(s, 'l/'), Array.from({ length: 10 }, (_, i) => `l/${i}`));

  // A put whose first attempt landed but reported a transient failure.
  let first = true;
  const landed: Storage = { ...mem, where: mem.where, put: async (n, d) => { await mem.put(n, d); if (first) { first = false; throw storageError('transient', mem.where, n, 'connection reset after the write'); } }, get: (n) => mem.get(n), stat: (n) => mem.stat(n), list: (p) => mem.list(p), create: (n) => mem.create(n), getRange: (n, o, l) => mem.getRange(n, o, l), delete: (n) => mem.delete(n), removeDebris: (p) => mem.removeDebris(p), close: () => mem.close() };
  await withRetry(landed, { tries: 3, baseMs: 1, maxMs: 1, sleep: async () => {} }).put('c', 'gamma');
  assert.equal(Buffer.from(await mem.get('c')).toString(), 'gamma');
});

test('retry: gives up after its tries with the last error, and never retries what is not transient', async () => {
  const mem = new MemoryStorage();
  await mem.put('a', 'alpha');
  const t = flaky(mem, 100, 'transient');
  await rejectsWith(withRetry(t, { tries: 4, baseMs: 1, maxMs: 1, sleep: async () => {} }).get('a'), 'transient', mem, 'get');
  assert.equal(t.calls.get('get'), 4);
  const p = flaky(mem, 100, 'permanent');
  await rejectsWith(withRetry(p, { tries: 4, baseMs: 1, maxMs: 1, sleep: async () => {} }).get('a'), 'permanent', mem, 'get');
  assert.equal(p.calls.get('get'), 1);
  await rejectsWith(withRetry(mem, { tries: 4, baseMs: 1, maxMs: 1, sleep: async () => {} }).get('none'), 'not-found', mem, 'none');
});
