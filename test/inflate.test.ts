/**
 * The pulled DecompressionStream (engine/inflate.ts): it decompresses what zlib wrote,
 * in every format, fails on damage instead of hanging, and takes input only as fast as
 * its output is read, also inside the thread that decrypts manifests.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { deflateSync, deflateRawSync, gzipSync } from 'node:zlib';
import { PulledDecompressionStream } from '../engine/crypto/inflate.js';
import { pgpSealStream } from '../engine/crypto/crypto.js';
import { pgpOpenStreamThreaded, pgpThreadsStarted, warmPgpThread } from '../engine/crypto/pgp-thread.js';
import { loadKeys } from './helpers.js';

/** Text that compresses about fivefold, like a manifest: repeated words and numbers. */
function compressible(bytes: number): Buffer {
  const lines: string[] = [];
  let n = 0;
  let x = 12345;
  for (let i = 0; n < bytes; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const l = `file ${i} size ${(i * 7919) % 100000} mode 644 ${x.toString(36)}\n`;
    lines.push(l);
    n += l.length;
  }
  return Buffer.from(lines.join('')).subarray(0, bytes);
}

/** A web stream over `data` in `piece`-byte chunks that counts the bytes it gave. */
function counted(data: Buffer, piece: number): { stream: ReadableStream<Uint8Array>; given: () => number } {
  let at = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (at >= data.length) { c.close(); return; }
      c.enqueue(new Uint8Array(data.subarray(at, at + piece)));
      at += piece;
    },
  }, { highWaterMark: 0 });
  return { stream, given: () => Math.min(at, data.length) };
}

async function readAll(s: ReadableStream<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of s as unknown as AsyncIterable<Uint8Array>) parts.push(c);
  return Buffer.concat(parts);
}

for (const [format, pack] of [['deflate', deflateSync], ['deflate-raw', deflateRawSync], ['gzip', gzipSync]] as const) {
  test(`${format}: what zlib compressed comes back whole, fed in pieces of any size`, async () => {
    const plain = Buffer.concat([compressible(700_000), randomBytes(100_000)]);
    for (const piece of [1, 777, 65536, 1 << 22]) {
      const input = piece === 1 ? pack(plain.subarray(0, 5000)) : pack(plain);
      const want = piece === 1 ? plain.subarray(0, 5000) : plain;
      const got = await readAll(counted(input, piece).stream.pipeThrough(new PulledDecompressionStream(format)));
      assert.ok(got.equals(want), `${format} in ${piece}-byte pieces`);
    }
  });
}

test('input is taken only as fast as output is read', async () => {
  const plain = compressible(16 << 20);
  const input = deflateSync(plain);
  assert.ok(input.length > 3 << 20, `the compressed input is several MiB (${input.length})`);
  const { stream, given } = counted(input, 65536);
  const reader = stream.pipeThrough(new PulledDecompressionStream('deflate')).getReader();
  let read = 0;
  while (read < 256 * 1024) { const { value } = await reader.read(); read += value!.length; }
  // Give the pipe every chance to run ahead.
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(given() < 1 << 20, `took ${given()} bytes of input for ${read} bytes read`);
  // The rest still comes, and is right.
  const parts = [plain.subarray(0, 0)];
  for (;;) { const { value, done } = await reader.read(); if (done) break; parts.push(Buffer.from(value)); }
  assert.equal(read + Buffer.concat(parts).length, plain.length);
  assert.equal(given(), input.length);
});

test('damaged or cut-short input is an error, not a hang', async () => {
  const input = deflateSync(compressible(300_000));
  const bad = Buffer.from(input);
  bad.fill(0x55, 2000, 2100);
  await assert.rejects(readAll(counted(bad, 4096).stream.pipeThrough(new PulledDecompressionStream('deflate'))));
  await assert.rejects(readAll(counted(input.subarray(0, input.length - 200), 4096).stream.pipeThrough(new PulledDecompressionStream('deflate'))));
});

test('after a failure, what feeds the stream is drained to its end, not cancelled, and the failure reaches both sides', { timeout: 20_000 }, async () => {
  const input = Buffer.from(deflateSync(compressible(300_000)));
  input.fill(0x55, 100, 120);
  let at = 0;
  let cancelled = false;
  const source = new ReadableStream<Uint8Array>({
    pull(c) {
      if (at >= input.length) { c.close(); return; }
      c.enqueue(new Uint8Array(input.subarray(at, at + 1024)));
      at += 1024;
    },
    cancel() { cancelled = true; },
  }, { highWaterMark: 0 });
  const ds = new PulledDecompressionStream('deflate');
  // As openpgp.js has it: a pipe into the writable side, and a reader of the readable side.
  const [piped, read] = await Promise.allSettled([source.pipeTo(ds.writable), readAll(ds.readable)]);
  assert.equal(read.status, 'rejected', 'the reader gets the failure');
  assert.equal(piped.status, 'rejected', 'the pipe ends with the failure');
  assert.equal(cancelled, false, 'the source was not cancelled');
  assert.ok(at >= input.length, `the source was read to its end (${at} of ${input.length})`);
});

test('an unknown format is refused like DecompressionStream refuses it', () => {
  assert.throws(() => new PulledDecompressionStream('brotli'), TypeError);
});

test('the decryption thread takes a long sealed message only as fast as its plaintext is taken', async () => {
  const { bk: backup, rk: restore } = await loadKeys();
  // Like a manifest: a line per file with its hashes, which compress little.
  const plain = Buffer.concat([compressible(4 << 20), Buffer.from(randomBytes(12 << 20).toString('hex'))]);
  const sealed = await readAll((await pgpSealStream((async function* () { for (let i = 0; i < plain.length; i += 1 << 20) yield plain.subarray(i, i + (1 << 20)); })(), backup.recipients, backup.signer)));
  assert.ok(sealed.length > 4 << 20, `the sealed message is several MiB (${sealed.length})`);
  let given = 0;
  async function* source() { for (let i = 0; i < sealed.length; i += 65536) { given = Math.min(i + 65536, sealed.length); yield new Uint8Array(sealed.subarray(i, i + 65536)); } }
  let taken = 0;
  let worstLead = 0;
  const got = createHash('sha256');
  await pgpOpenStreamThreaded(source(), restore.decryptionKeys, restore.verifiers, 'test message', (chunk) => {
    got.update(chunk);
    taken += chunk.length;
    // How far the ciphertext taken runs ahead of the plaintext handed over.
    worstLead = Math.max(worstLead, given - (taken / plain.length) * sealed.length);
    const until = Date.now() + 1; while (Date.now() < until); // a slow taker
  });
  assert.equal(got.digest('hex'), createHash('sha256').update(plain).digest('hex'));
  // Measured: 0.3 MB here; Node's own DecompressionStream ran 5 MB ahead.
  assert.ok(worstLead < 2 << 20, `ciphertext ran ${worstLead} bytes ahead of the plaintext taken (of ${sealed.length})`);
});

test('a decryption thread warmed ahead opens the next long message: no second thread is started for it, and it is used once', async (t) => {
  if (availableParallelism() < 2) { t.skip('one core: no thread is warmed ahead'); return; }
  const { bk, rk } = await loadKeys();
  const seal = async (plain: Buffer) => readAll(await pgpSealStream((async function* () { yield plain; })(), bk.recipients, bk.signer));
  const open = async (sealed: Uint8Array) => {
    const parts: Uint8Array[] = [];
    await pgpOpenStreamThreaded((async function* () { yield new Uint8Array(sealed); })(), rk.decryptionKeys, rk.verifiers, 'warm', (c) => parts.push(c));
    return Buffer.concat(parts);
  };
  const a = compressible(300_000), b = compressible(200_000);
  const [sa, sb] = [await seal(a), await seal(b)];
  const before = pgpThreadsStarted();
  warmPgpThread();
  warmPgpThread();
  assert.equal(pgpThreadsStarted(), before + 1, 'one thread is warmed, however often asked');
  assert.ok((await open(sa)).equals(a));
  assert.equal(pgpThreadsStarted(), before + 1, 'the message went to the warmed thread');
  assert.ok((await open(sb)).equals(b));
  assert.equal(pgpThreadsStarted(), before + 2, 'a thread decrypts one message: the next starts its own');
});

test('a sealed message with a bit flipped fails to open, every time, instead of hanging', { timeout: 120_000 }, async () => {
  // A bit flipped in OpenPGP's CFB ciphertext garbles 16 bytes of the compressed data,
  // and zlib fails on the write that carries them. When that failure cancelled the
  // ciphertext stream, openpgp.js waited for ever (one try in three to ten hung).
  const { bk, rk } = await loadKeys();
  for (let t = 0; t < 40; t++) {
    const plain = compressible(3000 + t * 97);
    const sealed = await readAll(await pgpSealStream((async function* () { yield plain; })(), bk.recipients, bk.signer));
    sealed[sealed.length >> 1] ^= 0x10;
    const opened = pgpOpenStreamThreaded((async function* () { yield new Uint8Array(sealed); })(), rk.decryptionKeys, [bk.signer.toPublic()], `try ${t}`, () => {});
    let timer: NodeJS.Timeout | undefined;
    const hung = new Promise<string>((r) => { timer = setTimeout(() => r('hung'), 10_000); });
    const outcome = await Promise.race([opened.then(() => 'opened', (e: Error) => e.name), hung]);
    clearTimeout(timer);
    assert.equal(outcome, 'AuthError', `try ${t}`);
  }
});
