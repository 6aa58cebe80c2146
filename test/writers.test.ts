/**
 * The restore's writer threads (engine/writers.ts): blocks of a larger file are checked
 * against their sha384 on the thread and written at their offsets, small files checked
 * and written whole; what does not match is refused and nothing of it is written; and
 * directories get their modes and times.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WriterError, WriterPool } from '../engine/restore/writers.js';
import { tempDir } from './helpers.js';

const sha384 = (b: Uint8Array) => createHash('sha384').update(b).digest();

test('blocks are written at their offsets, in any order, beside small files in one batch', async () => {
  const dir = tempDir('writers');
  const content = randomBytes(3 * 1024 * 1024 + 123);
  const cuts = [0, 700_000, 1_500_000, 2_900_000, content.length];
  const fd = openSync(join(dir, 'big'), 'wx', 0o600);
  const pool = new WriterPool(2);
  try {
    const blocks = cuts.slice(0, -1).map((from, i) => ({ offset: from, data: new Uint8Array(content.subarray(from, cuts[i + 1])) }));
    const small = randomBytes(5000);
    const smallCopy = Buffer.from(small); // the write moves `small` away
    await Promise.all([
      ...blocks.reverse().map((b) => pool.writeBlock({ fd, offset: b.offset, data: b.data, digest: sha384(b.data) })),
      pool.write({ tmp: join(dir, '.tmp-small'), final: join(dir, 'small'), data: small, mode: 0o640, mtime: 1_000_000 }),
    ]);
    // A moved block leaves nothing behind on this thread.
    assert.equal(blocks[0].data.byteLength, 0, 'the block buffer was moved, not copied');
    assert.ok(readFileSync(join(dir, 'big')).equals(content));
    assert.ok(readFileSync(join(dir, 'small')).equals(smallCopy));
    assert.equal(statSync(join(dir, 'small')).mode & 0o777, 0o640);
  } finally {
    closeSync(fd);
    await pool.close();
  }
});

test('a block or small file that does not match its sha384 is refused, and nothing of it is written', async () => {
  const dir = tempDir('writers');
  const fd = openSync(join(dir, 'big'), 'wx', 0o600);
  const pool = new WriterPool(1);
  try {
    const good = randomBytes(100_000);
    const bad = Buffer.from(good);
    bad[50_000] ^= 1;
    await assert.rejects(pool.writeBlock({ fd, offset: 4096, data: bad, digest: sha384(good) }), (e: unknown) => e instanceof WriterError && e.failure.why === 'bad-hash');
    assert.equal(statSync(join(dir, 'big')).size, 0);
    // A small file likewise: neither it nor its temporary file is left.
    const small = Buffer.from('small file\n');
    await assert.rejects(pool.write({ tmp: join(dir, '.tmp-s'), final: join(dir, 's'), data: Buffer.from('small filE\n'), digest: sha384(small), mode: 0o644, mtime: 0 }), (e: unknown) => e instanceof WriterError && e.failure.why === 'bad-hash');
    assert.deepEqual(readdirSync(dir), ['big']);
    const want = Buffer.from(good); // the write moves `good` away
    await pool.writeBlock({ fd, offset: 4096, data: good, digest: sha384(want) });
    assert.ok(readFileSync(join(dir, 'big')).subarray(4096).equals(want));
  } finally {
    closeSync(fd);
    await pool.close();
  }
});

test('a direct small file is made under its final name; a name taken meanwhile is replaced by a rename; a failed one is removed', async () => {
  const dir = tempDir('writers-direct');
  const pool = new WriterPool(1);
  try {
    // The temporary name lies in a folder that does not exist: only a write that never uses it succeeds.
    const nowhere = join(dir, 'missing', '.tmp');
    const data = randomBytes(3000);
    const want = Buffer.from(data);
    await pool.write({ tmp: nowhere, final: join(dir, 'a'), direct: true, data, digest: sha384(want), mode: 0o640, mtime: 1_000_000 });
    assert.ok(readFileSync(join(dir, 'a')).equals(want));
    assert.equal(statSync(join(dir, 'a')).mode & 0o777, 0o640);
    assert.equal(statSync(join(dir, 'a')).mtimeMs, 1_000_000_000);
    // Without `direct` the same write goes through the temporary name, and fails.
    await assert.rejects(pool.write({ tmp: nowhere, final: join(dir, 'b'), data: randomBytes(10), mode: 0o644, mtime: 0 }), (e: unknown) => e instanceof WriterError && e.code === 'ENOENT');
    // A name taken since the folder was made: replaced whole, through the temporary file.
    writeFileSync(join(dir, 'c'), 'someone else\'s\n');
    await pool.write({ tmp: join(dir, '.tmp-c'), final: join(dir, 'c'), direct: true, data: Buffer.from('ours\n'), mode: 0o644, mtime: 0 });
    assert.equal(readFileSync(join(dir, 'c'), 'utf8'), 'ours\n');
    // A file that fails after it was made (here its mtime cannot be set) is not left half done.
    await assert.rejects(pool.write({ tmp: nowhere, final: join(dir, 'd'), direct: true, data: randomBytes(10), mode: 0o644, mtime: 'not a time' }), (e: unknown) => e instanceof WriterError);
    // A bad hash writes nothing.
    await assert.rejects(pool.write({ tmp: nowhere, final: join(dir, 'e'), direct: true, data: Buffer.from('x'), digest: sha384(Buffer.from('y')), mode: 0o644, mtime: 0 }), (e: unknown) => e instanceof WriterError && e.failure.why === 'bad-hash');
    assert.deepEqual(readdirSync(dir).sort(), ['a', 'c']);
  } finally {
    await pool.close();
  }
});

test('views into larger buffers are copied, not moved: the buffers they belong to stay whole', async () => {
  const dir = tempDir('writers');
  const pool = new WriterPool(1);
  const fd = openSync(join(dir, 'big'), 'wx', 0o600);
  try {
    const backing = randomBytes(256 * 1024);
    const data = backing.subarray(1000, 3000);
    const digests = Buffer.concat([randomBytes(100), sha384(data), randomBytes(100)]);
    const digest = digests.subarray(100, 148);
    await pool.write({ tmp: join(dir, '.tmp-v'), final: join(dir, 'v'), data, digest: digest, mode: 0o644, mtime: 0 });
    await pool.writeBlock({ fd, offset: 10, data, digest: digest });
    assert.equal(backing.length, 256 * 1024, 'the data\'s buffer was not taken away');
    assert.equal(digests.length, 248, 'the digest\'s buffer was not taken away');
    assert.ok(readFileSync(join(dir, 'v')).equals(data));
    assert.ok(readFileSync(join(dir, 'big')).subarray(10).equals(data));
  } finally {
    closeSync(fd);
    await pool.close();
  }
});

test('content handed over twice (its buffer already moved away) is refused instead of hanging the write', { timeout: 30_000 }, async () => {
  const dir = tempDir('writers');
  const pool = new WriterPool(1);
  try {
    const data = new Uint8Array(Buffer.from('moved once\n'.repeat(100)));
    const digest = sha384(data);
    await pool.write({ tmp: join(dir, '.tmp-1'), final: join(dir, 'one'), data, digest: digest, mode: 0o600, mtime: 0 });
    assert.equal(data.byteLength, 0);
    await assert.rejects(pool.write({ tmp: join(dir, '.tmp-2'), final: join(dir, 'two'), data, digest: digest, mode: 0o600, mtime: 0 }), (e: unknown) => e instanceof WriterError && e.failure.why === 'bad-hash');
    assert.deepEqual(readdirSync(dir), ['one']);
  } finally {
    await pool.close();
  }
});

test('a batch that cannot be posted to its thread fails its writes instead of hanging them', { timeout: 30_000 }, async () => {
  const dir = tempDir('writers');
  const pool = new WriterPool(1);
  try {
    // A value structured cloning refuses stands in for any batch the thread cannot take.
    const data = new Uint8Array(Buffer.from('never posted\n'));
    const unsendable = Object.assign({ tmp: join(dir, '.tmp-u'), final: join(dir, 'u'), data, mode: 0o600, mtime: 0 }, { mtime: (() => 0) as unknown as number });
    await assert.rejects(pool.write(unsendable), (e: unknown) => e instanceof WriterError && e.code === 'EINVAL' && /cannot hand a batch/.test(e.message));
    assert.deepEqual(readdirSync(dir), []);
    // The pool still works afterwards.
    const ok = new Uint8Array(Buffer.from('posted\n'));
    const digest = sha384(ok);
    await pool.write({ tmp: join(dir, '.tmp-2'), final: join(dir, 'two'), data: ok, digest: digest, mode: 0o600, mtime: 0 });
    assert.deepEqual(readdirSync(dir), ['two']);
  } finally {
    await pool.close();
  }
});

test("directories get their modes and times, and a directory that is not there fails alone", async () => {
  const dir = tempDir('writers');
  const paths = ['a/b/c', 'a/b', 'a'].map((p) => join(dir, p));
  mkdirSync(paths[0], { recursive: true });
  const pool = new WriterPool(3);
  try {
    const modes = [0o750, 0o511, 0o1777];
    const settled = await Promise.allSettled([
      ...paths.map((p, i) => pool.setDir({ path: p, mode: modes[i], mtime: 1_000_000 + i })),
      pool.setDir({ path: join(dir, 'a/missing'), mode: 0o755, mtime: 5 }),
    ]);
    assert.deepEqual(settled.slice(0, 3).map((s) => s.status), ['fulfilled', 'fulfilled', 'fulfilled']);
    const missing = settled[3];
    assert.ok(missing.status === 'rejected' && missing.reason instanceof WriterError && missing.reason.code === 'ENOENT');
    paths.forEach((p, i) => {
      const st = statSync(p);
      assert.equal(st.mode & 0o7777, modes[i], p);
      assert.equal(st.mtimeMs, (1_000_000 + i) * 1000, p);
    });
  } finally {
    for (const p of paths.reverse()) chmodSync(p, 0o755);
    await pool.close();
  }
});
