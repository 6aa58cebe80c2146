/**
 * The one-shot digests of engine/hashes.ts give what node:crypto's Hmac and Hash objects
 * give: HMAC-SHA256 for keys shorter than, equal to and longer than the 64-byte block,
 * and messages up to and past the room the inner buffer starts with (it grows), the
 * same key used again after a long message, and sha384 of bytes and strings; a block's
 * digest by either hash, checked and written by the hash its length names.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { blockDigest, digestMatches, hmac, sha384 } from '../engine/crypto/hashes.js';
import { formatDigest, parseDigest } from '../formats/text.js';
import { FormatError } from '../formats/errors.js';

test('hmac equals createHmac sha256 for every key and message length around the edges', () => {
  for (const keyLength of [0, 1, 31, 32, 63, 64, 65, 200]) {
    const key = new Uint8Array(randomBytes(keyLength));
    for (const n of [0, 1, 47, 48, 255, 256, 257, 5000, 3, 16384]) {
      const data = new Uint8Array(randomBytes(n));
      const want = createHmac('sha256', key).update(data).digest();
      assert.deepEqual(Buffer.from(hmac(key, data)), want, `key ${keyLength} bytes, message ${n} bytes`);
    }
  }
});

test('hmac results are independent: an earlier digest is not overwritten by a later call', () => {
  const key = new Uint8Array(randomBytes(32));
  const a = hmac(key, new Uint8Array([1, 2, 3]));
  const copy = Buffer.from(a);
  hmac(key, new Uint8Array([4, 5, 6]));
  assert.deepEqual(Buffer.from(a), copy);
});

test('sha384 equals createHash for bytes and strings', () => {
  for (const n of [0, 1, 111, 112, 128, 100000]) {
    const data = new Uint8Array(randomBytes(n));
    assert.deepEqual(Buffer.from(sha384(data)), createHash('sha384').update(data).digest());
  }
  assert.deepEqual(Buffer.from(sha384('IEBS-MANIFEST 1\n')), createHash('sha384').update('IEBS-MANIFEST 1\n').digest());
});

test('a block digest is sha384 or sha256 as asked; it is checked and written by the hash its length names', () => {
  const data = new Uint8Array(randomBytes(5000));
  for (const h of ['sha384', 'sha256'] as const) {
    const d = blockDigest(h, data);
    assert.deepEqual(Buffer.from(d), createHash(h).update(data).digest());
    assert.ok(digestMatches(data, d));
    const other = data.slice();
    other[4999] ^= 1;
    assert.ok(!digestMatches(other, d), `${h}: a changed byte does not match`);
    assert.equal(formatDigest(d), `${h}(${Buffer.from(d).toString('hex')})`);
    assert.deepEqual(Buffer.from(parseDigest(formatDigest(d), 'here', true)), Buffer.from(d));
  }
  // A sha256 digest is read only where sha256 is allowed; a digest of another length is never a digest.
  const s256 = formatDigest(blockDigest('sha256', data));
  assert.throws(() => parseDigest(s256, 'at line 3', false), (e: unknown) => e instanceof FormatError && e.code === 'bad-hash' && /at line 3: expected sha384/.test(e.message));
  assert.throws(() => parseDigest('sha256(' + '0'.repeat(96) + ')', 'x', true), (e: unknown) => e instanceof FormatError && e.code === 'bad-hex');
  assert.throws(() => parseDigest('sha384(' + '0'.repeat(64) + ')', 'x', true), (e: unknown) => e instanceof FormatError && e.code === 'bad-hex');
  assert.throws(() => formatDigest(new Uint8Array(40)), /a digest of 40 bytes/);
  assert.throws(() => digestMatches(data, new Uint8Array(20)), /a digest of 20 bytes/);
});
