import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import zlib from 'node:zlib';
import {
  CODEC,
  DEFAULT_CODEC,
  compressBlock,
  decompressBlock,
  looksIncompressible,
  parseCodecChoice,
  skipByExtension,
  textCodec,
  type CodecChoice,
} from '../engine/codec.js';
import { FormatError, UsageError } from '../formats/errors.js';

const require = createRequire(import.meta.url);
const MiB = 1024 * 1024;

/** Source-like text from a fixed seed: identifiers, numbers and punctuation on short lines. */
function sourceText(size: number, seed = 1): Buffer {
  let s = seed;
  const rnd = (n: number): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
  const words = Array.from({ length: 400 }, (_, i) => `${['get', 'set', 'read', 'make', 'is'][i % 5]}${String.fromCharCode(65 + (i % 26))}${'xyzwvq'.slice(0, i % 6)}${i}`);
  const parts: string[] = [];
  let n = 0;
  while (n < size) {
    const line = `${'  '.repeat(rnd(4))}const ${words[rnd(400)]} = ${words[rnd(400)]}(${rnd(1000)}, ${words[rnd(400)]});\n`;
    parts.push(line);
    n += line.length;
  }
  return Buffer.from(parts.join('')).subarray(0, size);
}

const TEXT = sourceText(MiB);
const SMALL = sourceText(8 * 1024, 7);

const CHOICES: CodecChoice[] = [
  { name: 'zstd', level: 1 },
  { name: 'zstd', level: 3 },
  { name: 'xz', level: 0 },
  { name: 'xz', level: 6 },
  { name: 'lz4', level: 0 },
  { name: 'brotli', level: 1 },
  { name: 'brotli', level: 4 },
];

function label(c: CodecChoice): string {
  return `${c.name}:${c.level}`;
}

test('each codec round-trips compressible data at 2x or better', async () => {
  for (const choice of CHOICES) {
    const r = await compressBlock(TEXT, choice);
    assert.equal(r.codec, CODEC[choice.name], label(choice));
    assert.ok(r.bytes.length * 2 <= TEXT.length, `${label(choice)} gave ${TEXT.length} -> ${r.bytes.length}`);
    assert.deepEqual(Buffer.from(await decompressBlock(r.codec, r.bytes, TEXT.length)), TEXT, label(choice));
  }
});

test('every allowed zstd and xz level writes blocks the bomb checks accept', async () => {
  const data = TEXT.subarray(0, 256 * 1024);
  const choices: CodecChoice[] = [];
  for (let level = 1; level <= 15; level++) choices.push({ name: 'zstd', level });
  for (let level = 0; level <= 6; level++) choices.push({ name: 'xz', level });
  for (const choice of choices) {
    const r = await compressBlock(data, choice);
    assert.equal(r.codec, CODEC[choice.name], `${label(choice)} fell back to stored`);
    assert.deepEqual(Buffer.from(await decompressBlock(r.codec, r.bytes, data.length)), data);
  }
});

test('xz blocks are .xz files that xz-utils reads', async () => {
  for (const level of [0, 6]) {
    const r = await compressBlock(TEXT, { name: 'xz', level });
    const out = spawnSync('xz', ['-dc'], { input: r.bytes, maxBuffer: 4 * MiB });
    assert.equal(out.status, 0, `xz -dc failed: ${out.stderr}`);
    assert.deepEqual(out.stdout, TEXT);
  }
});

const hasZstd = spawnSync('zstd', ['--version']).status === 0;
test('zstd blocks are .zst frames that the zstd tool reads', { skip: !hasZstd && 'no zstd tool' }, async () => {
  const r = await compressBlock(TEXT, { name: 'zstd', level: 3 });
  const out = spawnSync('zstd', ['-dc'], { input: r.bytes, maxBuffer: 4 * MiB });
  assert.equal(out.status, 0, `zstd -dc failed: ${out.stderr}`);
  assert.deepEqual(out.stdout, TEXT);
});

test('zstd blocks of every size class round-trip, the zstd tool reads them, and the tool\'s own frames read back', { skip: !hasZstd && 'no zstd tool' }, async () => {
  // One context per thread is reused: sizes go up and down so a context sized for a
  // large block then writes a small one, and the other way.
  const sizes = [1, 100, 1000, 4095, 4096, 16384, 16385, 65536, 300_000, 1000, 2 * MiB + 17, 7];
  for (const size of sizes) {
    const data = sourceText(size, size);
    for (const level of [1, 3, 9]) {
      const r = await compressBlock(data, { name: 'zstd', level });
      if (size >= 1000) assert.equal(r.codec, CODEC.zstd, `${size} bytes at level ${level} were stored as is`);
      if (r.codec !== CODEC.zstd) continue;
      assert.deepEqual(Buffer.from(await decompressBlock(r.codec, r.bytes, size)), data, `${size} bytes, level ${level}`);
      const out = spawnSync('zstd', ['-dc'], { input: r.bytes, maxBuffer: 4 * MiB });
      assert.deepEqual(out.stdout, data, `zstd -dc reads the frame of ${size} bytes`);
      // The tool's frames from a pipe carry no content size, and carry a checksum.
      const theirs = spawnSync('zstd', ['-c', `-${level}`], { input: data, maxBuffer: 4 * MiB }).stdout;
      assert.deepEqual(Buffer.from(await decompressBlock(CODEC.zstd, theirs, size)), data, `the tool's frame of ${size} bytes`);
    }
  }
});

test('a tiny zstd block: every cut and every flipped bit is a FormatError or a block of the right size', async () => {
  const data = sourceText(1500, 3);
  const r = await compressBlock(data, { name: 'zstd', level: 3 });
  assert.equal(r.codec, CODEC.zstd);
  for (let n = 0; n < r.bytes.length; n++) {
    await assert.rejects(decompressBlock(r.codec, r.bytes.subarray(0, n), data.length), FormatError, `cut at ${n}`);
  }
  let caught = 0;
  for (let i = 0; i < r.bytes.length * 8; i++) {
    const b = Buffer.from(r.bytes);
    b[i >> 3] ^= 1 << (i & 7);
    try {
      assert.equal((await decompressBlock(r.codec, b, data.length)).length, data.length);
    } catch (e) {
      assert.ok(e instanceof FormatError, `bit ${i}: ${String(e)}`);
      caught++;
    }
  }
  assert.ok(caught > 0);
  // After all that, the decoder still decodes good frames.
  assert.deepEqual(Buffer.from(await decompressBlock(r.codec, r.bytes, data.length)), data);
});

test('random and already-compressed data are stored as is', async () => {
  const random = randomBytes(MiB);
  const gz = zlib.gzipSync(sourceText(4 * MiB, 3));
  for (const data of [random, gz]) {
    for (const choice of CHOICES) {
      const r = await compressBlock(data, choice);
      assert.equal(r.codec, CODEC.none, label(choice));
      assert.equal(r.bytes, data);
    }
  }
  assert.equal((await compressBlock(TEXT, { name: 'none', level: 0 })).bytes, TEXT);
});

test('looksIncompressible tells random from text, base64 included', async () => {
  assert.equal(looksIncompressible(randomBytes(MiB)), true);
  assert.equal(looksIncompressible(zlib.gzipSync(TEXT)), true);
  assert.equal(looksIncompressible(TEXT), false);
  // 6 bits of entropy per byte: no repeats, yet an entropy coder gets it to 75%.
  const b64 = Buffer.from(randomBytes(768 * 1024).toString('base64'));
  assert.equal(looksIncompressible(b64), false);
  assert.equal((await compressBlock(b64, DEFAULT_CODEC)).codec, CODEC[DEFAULT_CODEC.name]);
  // Random bytes repeated: high byte entropy, but LZ matches.
  const rep = Buffer.concat(new Array<Buffer>(64).fill(randomBytes(4096)));
  assert.equal(looksIncompressible(rep), false);
});

test('a wrong expected size is a codec-size FormatError', async () => {
  for (const choice of [...CHOICES, { name: 'none', level: 0 } as CodecChoice]) {
    const r = await compressBlock(TEXT, choice);
    for (const size of [TEXT.length - 1, TEXT.length + 1, 0]) {
      await assert.rejects(decompressBlock(r.codec, r.bytes, size), { name: 'FormatError', code: 'codec-size' }, `${label(choice)} size ${size}`);
    }
  }
  for (const size of [-1, 1.5, 2 ** 32]) await assert.rejects(decompressBlock(0, TEXT, size), { code: 'codec-size' });
});

test('an unknown codec id is a codec-unknown FormatError', async () => {
  for (const codec of [5, 6, 255, -1, 1.5]) {
    await assert.rejects(decompressBlock(codec, TEXT, TEXT.length), { name: 'FormatError', code: 'codec-unknown' });
  }
});

test('truncated blocks are FormatErrors at every length', async () => {
  for (const choice of CHOICES) {
    const r = await compressBlock(SMALL, choice);
    for (let n = 0; n < r.bytes.length; n++) {
      await assert.rejects(decompressBlock(r.codec, r.bytes.subarray(0, n), SMALL.length), FormatError, `${label(choice)} cut at ${n}`);
    }
  }
});

test('a flipped bit is a FormatError or a block of the right size, never a crash', async () => {
  // zstd, lz4 and brotli carry no checksum: some flips decode to wrong bytes, which the
  // envelope's AEAD tag is there to catch. xz carries a CRC64: a flip is caught, or it
  // hit a bit the decoder does not use and the block decodes to its own bytes.
  for (const choice of CHOICES) {
    const r = await compressBlock(SMALL, choice);
    let caught = 0;
    let wrong = 0;
    for (let i = 0; i < r.bytes.length; i++) {
      const b = Buffer.from(r.bytes);
      b[i] ^= 1 << (i % 8);
      try {
        const out = await decompressBlock(r.codec, b, SMALL.length);
        assert.equal(out.length, SMALL.length);
        if (!Buffer.from(out).equals(SMALL)) wrong++;
      } catch (e) {
        assert.ok(e instanceof FormatError, `${label(choice)} byte ${i}: ${String(e)}`);
        caught++;
      }
    }
    if (choice.name === 'xz') assert.equal(wrong, 0, `${label(choice)} decoded a flip to wrong bytes`);
    else assert.ok(caught > 0, label(choice));
  }
});

/** A zstd frame with no content size, as a streaming compressor writes one. */
function unsizedZstd(data: Buffer): Buffer {
  const zstd = require('zstd-napi/binding.js');
  const cctx = new zstd.CCtx();
  cctx.setParameter(zstd.CParameter.compressionLevel, 3);
  const out = Buffer.alloc(zstd.compressBound(data.length) + 1024);
  const [, first, consumed] = cctx.compressStream2(out, data, zstd.EndDirective.continue);
  assert.equal(consumed, data.length);
  const [left, rest] = cctx.compressStream2(out.subarray(first), Buffer.alloc(0), zstd.EndDirective.end);
  assert.equal(left, 0);
  const frame = out.subarray(0, first + rest);
  assert.equal((frame[4] >> 6) | (frame[4] & 0x20), 0, 'the frame states its size');
  return frame;
}

test('decompression bombs are refused without allocating their output', { skip: process.platform !== 'linux' && 'reads /proc' }, async () => {
  const lz4 = require('lz4-napi');
  const zeros = Buffer.alloc(64 * MiB);
  const lz4Lying: Buffer = lz4.compressSync(zeros);
  lz4Lying.writeUInt32LE(MiB, 0); // the prefix claims 1 MiB, the block holds 64
  const bombs: Array<[string, number, Uint8Array]> = [
    ['zstd', CODEC.zstd, (await compressBlock(zeros, { name: 'zstd', level: 3 })).bytes],
    // Streamed frames state no content size: zeros become RLE blocks, found in the
    // block headers; a repeated pattern becomes compressed blocks, stopped by the room.
    ['zstd unsized rle', CODEC.zstd, unsizedZstd(zeros)],
    ['zstd unsized', CODEC.zstd, unsizedZstd(Buffer.alloc(64 * MiB, 'abcdefgh'))],
    ['xz', CODEC.xz, spawnSync('xz', ['-0', '-T1', '-c'], { input: zeros, maxBuffer: 64 * MiB }).stdout],
    ['lz4', CODEC.lz4, lz4.compressSync(zeros)],
    ['lz4 lying', CODEC.lz4, lz4Lying],
    ['brotli', CODEC.brotli, zlib.brotliCompressSync(zeros, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1 } })],
  ];
  const dir = mkdtempSync(join(tmpdir(), 'iebs-codec-'));
  try {
    // Each attempt runs in a fresh process and reads its peak RSS from VmHWM, which
    // starts anew at exec (getrusage's maxRSS would carry this process's peak over).
    // The child first decodes a small block of the same codec, so loading the binding
    // is not counted.
    const codecUrl = new URL('../engine/codec.js', import.meta.url).href;
    const child = `
      import { readFileSync } from 'node:fs';
      const peak = () => Number(/VmHWM:\\s*(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
      import { createRequire } from 'node:module';
      import * as c from ${JSON.stringify(codecUrl)};
      const [codec, file, mode, warmChoice] = process.argv.slice(1);
      const small = Buffer.alloc(200000, 'abc');
      const warm = await c.compressBlock(small, JSON.parse(warmChoice));
      await c.decompressBlock(warm.codec, warm.bytes, small.length);
      const before = peak();
      const bomb = readFileSync(file);
      let code = 'none';
      try {
        if (mode === 'raw') createRequire(${JSON.stringify(codecUrl)})('@napi-rs/lzma').xz.decompressSync(bomb);
        else await c.decompressBlock(+codec, bomb, ${MiB});
      } catch (e) { code = e.name + ':' + e.code; }
      console.log(JSON.stringify({ code, grewMiB: (peak() - before) / 1024 }));
    `;
    const warm: Record<number, CodecChoice> = { 1: { name: 'zstd', level: 1 }, 2: { name: 'xz', level: 0 }, 3: { name: 'lz4', level: 0 }, 4: { name: 'brotli', level: 1 } };
    const run = (codec: number, file: string, mode: string): { code: string; grewMiB: number } => {
      const args = ['--input-type=module', '-e', child, String(codec), file, mode, JSON.stringify(warm[codec])];
      const out = spawnSync(process.execPath, args, { encoding: 'utf8' });
      assert.equal(out.status, 0, out.stderr);
      return JSON.parse(out.stdout);
    };
    for (const [name, codec, bytes] of bombs) {
      const file = join(dir, name.replace(' ', '-'));
      writeFileSync(file, bytes);
      const r = run(codec, file, 'checked');
      assert.match(r.code, /^FormatError:codec-(size|corrupt)$/, name);
      assert.ok(r.grewMiB < 16, `${name} bomb grew RSS by ${r.grewMiB} MiB`);
    }
    // The measurement can see a bomb go off: the bare binding does allocate all 64 MiB.
    const raw = run(CODEC.xz, join(dir, 'xz'), 'raw');
    assert.equal(raw.code, 'none');
    assert.ok(raw.grewMiB > 48, `bare xz decode grew RSS by only ${raw.grewMiB} MiB`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('parseCodecChoice takes NAME[:LEVEL] within each range', async () => {
  assert.deepEqual(parseCodecChoice('xz:6'), { name: 'xz', level: 6 });
  assert.deepEqual(parseCodecChoice('xz'), { name: 'xz', level: 6 });
  assert.deepEqual(parseCodecChoice('xz:0'), { name: 'xz', level: 0 });
  assert.deepEqual(parseCodecChoice('zstd:3'), { name: 'zstd', level: 3 });
  assert.deepEqual(parseCodecChoice('ZSTD:15'), { name: 'zstd', level: 15 });
  assert.deepEqual(parseCodecChoice('zstd'), { name: 'zstd', level: 3 });
  assert.deepEqual(parseCodecChoice('none'), { name: 'none', level: 0 });
  assert.deepEqual(parseCodecChoice('lz4'), { name: 'lz4', level: 0 });
  assert.deepEqual(parseCodecChoice('brotli:1'), { name: 'brotli', level: 1 });
  assert.deepEqual(parseCodecChoice('brotli'), { name: 'brotli', level: 1 });
  assert.deepEqual(parseCodecChoice('brotli:11'), { name: 'brotli', level: 11 });
  assert.deepEqual(parseCodecChoice(`${DEFAULT_CODEC.name}:${DEFAULT_CODEC.level}`), DEFAULT_CODEC);
  for (const bad of ['', 'gzip', 'x\ny', 'deflate', 'zstd:0', 'zstd:16', 'zstd:-1', 'zstd:', 'zstd:3:1', 'zstd:003', 'zstd: 3', 'xz:7', 'xz:9', 'lz4:1', 'none:0', 'brotli:12', 'toString', 'constructor']) {
    assert.throws(
      () => parseCodecChoice(bad),
      (e: unknown) => e instanceof UsageError && !e.message.includes('\n'),
      `accepted "${bad}"`,
    );
  }
  await assert.rejects(compressBlock(TEXT, { name: 'zstd', level: 22 }), UsageError);
});

test('skipByExtension names already-compressed formats, any case', () => {
  for (const name of ['photo.JPG', 'a/b/archive.tar.gz', 'x.docx', 'font.woff2', 'movie.mkv', 'pkg.deb', 'data.ZST', 'song.flac']) {
    assert.equal(skipByExtension(name), true, name);
  }
  for (const name of ['notes.txt', 'report.pdf', 'Makefile', '.gz', 'dir.zip/file.txt', 'db.sqlite', 'a.tar', 'jpg']) {
    assert.equal(skipByExtension(name), false, name);
  }
});

test('a run’s own text is compressed with zstd at level 1 at most, other codecs as chosen', () => {
  assert.deepEqual(textCodec({ name: 'zstd', level: 3 }), { name: 'zstd', level: 1 });
  assert.deepEqual(textCodec({ name: 'zstd', level: 19 }), { name: 'zstd', level: 1 });
  assert.deepEqual(textCodec({ name: 'zstd', level: 1 }), { name: 'zstd', level: 1 });
  assert.deepEqual(textCodec({ name: 'xz', level: 6 }), { name: 'xz', level: 6 });
  assert.deepEqual(textCodec({ name: 'none', level: 0 }), { name: 'none', level: 0 });
});
