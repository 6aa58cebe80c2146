/**
 * The manifest's ZLIB stream made in pieces side by side (engine/crypto/deflate.ts): node's
 * inflater reads it back whole at every edge of its pieces, its Adler-32 is zlib's, and
 * pieces primed with the window before them compress as one stream does.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { adler32, deflatePieces } from '../engine/crypto/deflate.js';

async function deflate(input: Uint8Array, piece: number, chunk: number): Promise<Buffer> {
  async function* source() { for (let i = 0; i < input.length; i += chunk) yield input.subarray(i, i + chunk); }
  const out: Uint8Array[] = [];
  for await (const c of deflatePieces(source(), piece)) out.push(c);
  return Buffer.concat(out);
}

/** Text that repeats at distances up to about 20 KiB, as a manifest's paths and lines do. */
function text(n: number): Buffer {
  const parts: Buffer[] = [];
  let size = 0;
  for (let i = 0; size < n; i++) {
    const p = Buffer.from(i % 3 ? `${i} 'src/dir${i % 50}/file${i}.txt' ${(i * 2654435761 >>> 0).toString(16)} 0644\n` : `${i % 300} block line of the kind every file has\n`);
    parts.push(p);
    size += p.length;
  }
  return Buffer.concat(parts).subarray(0, n);
}

test('the stream inflates to its input at every edge of its pieces', async () => {
  const piece = 4096;
  for (const n of [0, 1, piece - 1, piece, piece + 1, 2 * piece, 3 * piece + 17, 40_000]) {
    for (const input of [text(n), randomBytes(n)]) {
      for (const chunk of [1000, piece, 3 * piece + 1]) {
        const z = await deflate(input, piece, chunk);
        assert.deepEqual(zlib.inflateSync(z), input, `${n} bytes in chunks of ${chunk}`);
      }
    }
  }
});

test('the Adler-32 is zlib\'s, continued across pieces', () => {
  for (const n of [0, 1, 5551, 5552, 5553, 100_000]) {
    const b = randomBytes(n);
    const z = zlib.deflateSync(b);
    assert.equal(adler32(1, b), z.readUInt32BE(z.length - 4), `${n} bytes`);
    const cut = n >> 1;
    assert.equal(adler32(adler32(1, b.subarray(0, cut)), b.subarray(cut)), adler32(1, b));
  }
  // All 0xff: the sums at their largest before each modulo.
  const ff = Buffer.alloc(200_000, 0xff);
  assert.equal(adler32(1, ff), zlib.deflateSync(ff).readUInt32BE(zlib.deflateSync(ff).length - 4));
});

test('pieces primed with the window before them compress about as well as one stream', async () => {
  const input = text(600_000);
  const one = zlib.deflateSync(input).length;
  const pieces = await deflate(input, 64 * 1024, 10_000);
  // Without the priming each of the ten pieces starts cold; 2.4% larger here.
  assert.ok(pieces.length <= one * 1.003 + 64, `${pieces.length} bytes in pieces against ${one} as one stream`);
  assert.deepEqual(zlib.inflateSync(pieces), input);
});

test('a damaged stream fails its check', async () => {
  const input = text(50_000);
  const z = await deflate(input, 8192, 5000);
  const bad = Buffer.from(z);
  bad[bad.length - 2] ^= 1; // in the Adler-32
  assert.throws(() => zlib.inflateSync(bad), /incorrect data check/);
});

test('a consumer that stops early leaves nothing running unhandled', async () => {
  const input = randomBytes(200_000);
  async function* source() { for (let i = 0; i < input.length; i += 10_000) yield input.subarray(i, i + 10_000); }
  const it = deflatePieces(source(), 8192);
  let taken = 0;
  for await (const c of it) { taken += c.length; if (taken > 20_000) break; }
  const unhandled: unknown[] = [];
  const on = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', on);
  await new Promise((r) => setTimeout(r, 200));
  process.off('unhandledRejection', on);
  assert.deepEqual(unhandled, []);
});
