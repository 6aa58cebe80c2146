/**
 * The one-shot digests of engine/hashes.ts give what node:crypto's Hmac and Hash objects
 * give: HMAC-SHA256 for keys shorter than, equal to and longer than the 64-byte block,
 * and messages up to and past the room the inner buffer starts with (it grows), the
 * same key used again after a long message, and sha384 of bytes and strings.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { hmac, sha384 } from '../engine/crypto/hashes.js';

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
