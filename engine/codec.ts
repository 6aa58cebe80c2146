/**
 * Block compression (SPEC.md "Block envelope": the codec byte). Every block is
 * compressed here, then sealed by engine/crypto.ts; on restore the envelope opens first
 * and only authenticated bytes reach `decompressBlock`.
 *
 * Codec ids are on-disk format and never change meaning:
 *   0 none    the plaintext as is
 *   1 zstd    one Zstandard frame (`zstd -d` reads it), zstd-napi (libzstd)
 *   2 xz      one .xz stream, LZMA2 only (`xz -d` reads it): written by the xz program
 *             (xz-utils, see xzProgram), read by @napi-rs/lzma
 *   3 lz4     an LZ4 *block* (not frame) after its plaintext length as u32 LE, the layout
 *             of lz4_flex `compress_prepend_size` and python-lz4 `lz4.block` with
 *             store_size; the `lz4` tool does not read it. lz4-napi
 *   4 brotli  a raw Brotli stream, node:zlib
 * Raw deflate (5) is left out: for deflate 1, 3 and 6 some brotli level is both faster
 * and smaller (deflate 1: 118 MiB/s for 4.26x; brotli 0: 259 MiB/s for 4.30x).
 *
 * zstd, the default, runs on the calling thread with a context kept per thread
 * (`compressBlockNow`, `decompressBlockNow`): a binding that went through libuv's pool
 * with a fresh context per call cost 40 to 150 µs of the caller's time per block
 * whatever its size, more than the work on a file of a few KiB. Callers that want the
 * work off their thread run it on a thread of their own (the readers of backup). The
 * other codecs are async and run on libuv's pool, except xz: the releases of
 * @napi-rs/lzma that compress with liblzma and take a preset (1.5 on) declare Node
 * ^22.20 || ^24.12, and 1.4.5 (Node 10 on) writes only uncompressed LZMA2 chunks; so
 * iebs reads xz with 1.4.5 and writes it with the xz program, one process per block,
 * off this thread (an archival codec, slow anyway): writing xz needs xz-utils.
 *
 * Bombs: the xz and lz4 decoders grow their output without limit, so before one runs,
 * the compressed bytes are walked (xz LZMA2 chunk headers, the lz4 length prefix) to
 * prove the output fits the expected size. zstd decodes into exactly the expected size
 * of room, after its frame's header and block headers are checked. Brotli is bounded
 * by zlib's `maxOutputLength` (its decoder may also hold a window of up to 16 MiB). The
 * bound of each codec is stated at its check; the compressor runs the same check on its
 * own output, so a block it writes is always one this module reads back.
 *
 * Integrity: only xz carries a checksum (CRC64). A corrupted zstd, lz4 or brotli block
 * can decode to wrong bytes of the right length; the envelope's AEAD tag is what
 * catches corruption, this module only promises no crash and no unbounded memory.
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { FormatError, UsageError } from '../formats/errors.js';

const require = createRequire(import.meta.url);
// The bindings are CommonJS; typed by hand to the subset used here.
/**
 * zstd-napi's thin binding of libzstd (built from the source it bundles): one-shot calls
 * on the calling thread, each with a context kept for the thread and output written
 * into a buffer the caller gives.
 */
const zstd = require('zstd-napi/binding.js') as {
  CCtx: new () => { compress(dst: Uint8Array, src: Uint8Array, level: number): number };
  DCtx: new () => { decompress(dst: Uint8Array, src: Uint8Array): number };
  compressBound(size: number): number;
};

/** This thread's zstd contexts and its scratch output, made on first use. */
let cctx: InstanceType<typeof zstd.CCtx> | null = null;
let dctx: InstanceType<typeof zstd.DCtx> | null = null;
let scratch = Buffer.alloc(0);

/** zstd at `level` on this thread; the output is a copy of exactly its size, or null if it would be over `most` bytes. */
function zstdCompress(input: Uint8Array, level: number, most: number): Uint8Array | null {
  cctx ??= new zstd.CCtx();
  const bound = zstd.compressBound(input.length);
  if (scratch.length < bound) scratch = Buffer.allocUnsafeSlow(bound);
  const n = cctx.compress(scratch, input, level);
  if (n > most) return null;
  const out = Buffer.allocUnsafeSlow(n);
  scratch.copy(out, 0, 0, n);
  return out;
}

/** Decodes a checked zstd frame into exactly `size` bytes of room: more fails in libzstd. */
function zstdDecompress(input: Uint8Array, size: number): Uint8Array {
  dctx ??= new zstd.DCtx();
  // Every byte is written when the frame decodes to `size`; anything less is an error.
  const out = Buffer.allocUnsafeSlow(size);
  const n = dctx.decompress(out, input);
  return n === size ? out : out.subarray(0, n);
}

/**
 * The xz and LZ4 bindings are loaded on first use, on each thread: most runs never need
 * xz, and LZ4 only for a sample of data that looks random. Loading both cost each
 * process about 15 MiB of resident memory and each thread 15 ms.
 */
let lzmaBinding: { xz: { decompress(b: Uint8Array): Promise<Buffer> } } | null = null;
const lzma = () => (lzmaBinding ??= require('@napi-rs/lzma') as NonNullable<typeof lzmaBinding>);

/**
 * xz at `preset` by the xz program: one .xz stream of one block, LZMA2 alone, CRC64
 * (single-threaded, so one block), read back by the same checks as the binding's.
 */
function xzProgram(input: Uint8Array, preset: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('xz', ['--format=xz', '--check=crc64', '-T1', `-${preset}`, '-c'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('error', (e: NodeJS.ErrnoException) => reject(e.code === 'ENOENT'
      ? new UsageError('bad-codec', `compression xz:${preset} needs the xz program (xz-utils) on the PATH`)
      : e));
    child.on('close', (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`xz -${preset} exited with ${code}: ${err.trim()}`))));
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}
let lz4Binding: { compressSync(b: Buffer): Buffer; compress(b: Uint8Array): Promise<Buffer>; uncompress(b: Uint8Array): Promise<Buffer> } | null = null;
const lz4 = () => (lz4Binding ??= require('lz4-napi') as NonNullable<typeof lz4Binding>);
const brotliCompress = promisify(zlib.brotliCompress);
const brotliDecompress = promisify(zlib.brotliDecompress);

/** Codec ids as stored in the envelope header. */
export const CODEC = { none: 0, zstd: 1, xz: 2, lz4: 3, brotli: 4 } as const;

/** The name of a codec, as the user writes it. */
export type CodecName = keyof typeof CODEC;

/** A codec and its level, as chosen with `--compression NAME[:LEVEL]`. */
export interface CodecChoice {
  name: CodecName;
  level: number;
}

/**
 * The codec for a run's own text (catalogue pieces, index pieces): its codec, but zstd
 * at level 1 at most. On that text (names, decimal numbers, hex digests) level 1 is both
 * faster and smaller than 3: catalogue pieces 0.65 against 1.10 ms per 256 KiB, at 3.07x
 * against 2.91x; the index of 100,000 small files 10.1 against 11.0 MB.
 */
export function textCodec(choice: CodecChoice): CodecChoice {
  return choice.name === 'zstd' && choice.level > 1 ? { name: 'zstd', level: 1 } : choice;
}

/** The output of a compressor; `codec` is 0 and `bytes` the input when it did not pay. */
export interface CompressedBlock {
  codec: number;
  bytes: Uint8Array;
}

/**
 * The level range of each codec and the level a bare name means: the tool's own default,
 * except brotli, whose 11 runs at 3 MiB/s. xz stops at 6 because
 * presets 7-9 only grow the dictionary past the largest block; zstd stops at 15 because
 * from 13 on it runs at under 3 MiB/s, and 16 to 19 gain little more (4 MiB of source
 * text: 4.11x at 15, 4.51x at 19 at 1.1 MiB/s).
 */
const LEVELS: Record<CodecName, { min: number; max: number; bare: number } | null> = {
  none: null,
  zstd: { min: 1, max: 15, bare: 3 },
  xz: { min: 0, max: 6, bare: 6 },
  lz4: null,
  brotli: { min: 0, max: 11, bare: 1 },
};

/**
 * zstd level 3. bench/codecs.ts on this machine: 188 MiB/s per core on text (5.51x) and
 * 128 on binaries (2.66x); zstd 1-2 are 10-35% faster for 4-10% less ratio, and every
 * brotli level as fast compresses less.
 */
export const DEFAULT_CODEC: CodecChoice = { name: 'zstd', level: 3 };

/** Output must be at most this share of the input, or the block is stored as is. */
const SHRINK = 0.97;
/** Largest window (zstd) or dictionary (xz) a block may declare: a decoder allocates it. */
const MAX_WINDOW = 8 * 1024 * 1024;
/** zstd's largest block: a compressed block never decodes to more. */
const ZSTD_BLOCK = 128 * 1024;

/**
 * Parses `NAME[:LEVEL]` ("zstd:3", "xz", "lz4", "brotli:1", "none"). A bare name takes
 * the codec's usual level; codecs without levels refuse one.
 */
export function parseCodecChoice(text: string): CodecChoice {
  const m = /^([a-z0-9]+)(?::(\d{1,2}))?$/.exec(text.trim().toLowerCase());
  if (m === null || !Object.hasOwn(CODEC, m[1])) {
    throw new UsageError('bad-codec', `unknown compression ${JSON.stringify(text)}: use none, zstd[:1-15], xz[:0-6], lz4 or brotli[:0-11]`);
  }
  const name = m[1] as CodecName;
  const range = LEVELS[name];
  if (range === null) {
    if (m[2] !== undefined) throw new UsageError('bad-codec', `compression ${name} takes no level`);
    return { name, level: 0 };
  }
  const level = m[2] === undefined ? range.bare : Number(m[2]);
  const choice = { name, level };
  checkChoice(choice);
  return choice;
}

function checkChoice(c: CodecChoice): void {
  const range = LEVELS[c.name];
  const ok = range === null ? c.level === 0 : Number.isInteger(c.level) && c.level >= range.min && c.level <= range.max;
  if (!ok) {
    const want = range === null ? 'no level' : `a level from ${range.min} to ${range.max}`;
    throw new UsageError('bad-codec', `compression ${c.name} takes ${want}, not ${c.level}`);
  }
}

/**
 * True when a cheap look at the data says compressing it will not pay: random bytes,
 * or data that is already compressed. Looks at up to 64 KiB in four slices: if the
 * byte entropy is below 7.8 bits an entropy coder alone gets under 97%; above it, only
 * repeats can help, which one fast LZ4 pass over the sample finds.
 */
export function looksIncompressible(data: Uint8Array): boolean {
  const sample = sampleOf(data);
  if (sample.length < 256) return false;
  // The entropy estimate needs no more than 4096 bytes, spread over the sample: counting
  // every byte cost more than compressing a small block. With 4096 draws, uniform random
  // bytes still measure about 7.95 bits.
  const counts = new Uint32Array(256);
  const stride = Math.max(1, Math.floor(sample.length / ENTROPY_DRAWS));
  let drawn = 0;
  for (let i = 0; i < sample.length; i += stride) { counts[sample[i]]++; drawn++; }
  let bits = 0;
  for (let i = 0; i < 256; i++) {
    if (counts[i] !== 0) {
      const p = counts[i] / drawn;
      bits -= p * Math.log2(p);
    }
  }
  if (bits < 7.8) return false;
  return lz4().compressSync(asBuffer(sample)).length - 4 > sample.length * SHRINK;
}

/** Bytes the entropy estimate looks at. */
const ENTROPY_DRAWS = 4096;

function sampleOf(data: Uint8Array): Uint8Array {
  const slice = 16 * 1024;
  if (data.length <= 4 * slice) return data;
  const out = new Uint8Array(4 * slice);
  const step = Math.floor((data.length - slice) / 3);
  for (let i = 0; i < 4; i++) out.set(data.subarray(i * step, i * step + slice), i * slice);
  return out;
}

const SKIP_EXTENSIONS = new Set(
  ('jpg jpeg png gif webp heic heif avif jxl mp3 m4a aac ogg oga opus flac wma ' +
    'mp4 m4v mkv mov avi webm wmv flv 3gp ' +
    'zip gz tgz bz2 tbz2 xz txz lzma zst tzst lz4 lz br 7z rar cab ' +
    'jar war apk aab ipa whl nupkg epub deb rpm ' +
    'docx xlsx pptx odt ods odp woff woff2').split(' '),
);

/**
 * True for names of formats that are compressed already (images, audio, video,
 * archives, office files that are zips, web fonts), case-insensitive. PDF is not on the
 * list: its text and fonts are often stored raw, so a block decides for itself.
 */
export function skipByExtension(name: string): boolean {
  const base = name.slice(name.lastIndexOf('/') + 1);
  const dot = base.lastIndexOf('.');
  return dot > 0 && SKIP_EXTENSIONS.has(base.slice(dot + 1).toLowerCase());
}

/**
 * Compresses one block with the chosen codec. Returns codec 0 and the input itself
 * when the data looks incompressible (see `looksIncompressible`) or the output is not
 * at most 97% of the input.
 */
export async function compressBlock(data: Uint8Array, choice: CodecChoice): Promise<CompressedBlock> {
  const now = compressBlockNow(data, choice);
  if (now) return now;
  const input = asBuffer(data);
  let out: Uint8Array;
  switch (choice.name) {
    case 'xz':
      out = await xzProgram(input, choice.level);
      break;
    case 'lz4':
      out = await lz4().compress(input);
      break;
    default:
      out = await brotliCompress(input, brotliOptions(choice.level, input.length));
  }
  return keepIfSmaller(data, CODEC[choice.name], out);
}

/**
 * `compressBlock` on the calling thread, for the codecs that run there (zstd, and none);
 * null for the others, which need `compressBlock`.
 */
export function compressBlockNow(data: Uint8Array, choice: CodecChoice): CompressedBlock | null {
  checkChoice(choice);
  // Below 16 KiB the look costs more than compressing: keepIfSmaller decides alone.
  if (choice.name === 'none' || data.length === 0 || (data.length >= 16384 && looksIncompressible(data))) return { codec: CODEC.none, bytes: data };
  if (choice.name !== 'zstd') return null;
  // A frame that saves too little is not copied out of the scratch buffer at all.
  const out = zstdCompress(data, choice.level, Math.floor(data.length * SHRINK));
  return out ? keepIfSmaller(data, CODEC.zstd, out) : { codec: CODEC.none, bytes: data };
}

function keepIfSmaller(data: Uint8Array, codec: number, out: Uint8Array): CompressedBlock {
  if (out.length > Math.floor(data.length * SHRINK)) return { codec: CODEC.none, bytes: data };
  try {
    checkBound(codec, out, data.length);
  } catch {
    // Unreachable for the levels allowed (test/codec.test.ts tries them all); storing the
    // block raw keeps it restorable if a binding update ever changes its framing.
    return { codec: CODEC.none, bytes: data };
  }
  return { codec, bytes: out };
}

function brotliOptions(level: number, size: number): zlib.BrotliOptions {
  return {
    params: {
      [zlib.constants.BROTLI_PARAM_QUALITY]: level,
      [zlib.constants.BROTLI_PARAM_SIZE_HINT]: size,
    },
  };
}

/**
 * Decompresses one block, which must come out at exactly `expectedSize` bytes (the
 * plain length in its envelope). Throws `FormatError` with code `codec-unknown`,
 * `codec-size` (the output would not be `expectedSize` bytes) or `codec-corrupt`; never
 * lets a decoder produce much more than `expectedSize` (see the module comment).
 */
export async function decompressBlock(codec: number, bytes: Uint8Array, expectedSize: number): Promise<Uint8Array> {
  const now = decompressBlockNow(codec, bytes, expectedSize);
  if (now) return now;
  const input = asBuffer(bytes);
  let out: Uint8Array;
  try {
    switch (codec) {
      case CODEC.xz:
        out = await lzma().xz.decompress(input);
        break;
      case CODEC.lz4:
        out = await lz4().uncompress(input);
        break;
      default:
        out = await brotliDecompress(input, { maxOutputLength: Math.max(1, expectedSize) });
    }
  } catch (e) {
    throw decodeError(codec, e);
  }
  if (out.length !== expectedSize) throw sizeError(codec, `decoded to ${out.length} bytes, expected ${expectedSize}`);
  return out;
}

/**
 * `decompressBlock` on the calling thread for the codecs that run there (zstd, and
 * none); null for the others, which need `decompressBlock`. Throws as it does.
 */
export function decompressBlockNow(codec: number, bytes: Uint8Array, expectedSize: number): Uint8Array | null {
  if (!prepare(codec, bytes, expectedSize)) return bytes;
  if (codec !== CODEC.zstd) return null;
  let out: Uint8Array;
  try {
    // The frame's checked bound keeps the output near expectedSize (checkZstd), and the
    // decoder writes into exactly that much room: a frame that would need more fails.
    out = zstdDecompress(bytes, expectedSize);
  } catch (e) {
    throw decodeError(codec, e);
  }
  if (out.length !== expectedSize) throw sizeError(codec, `decoded to ${out.length} bytes, expected ${expectedSize}`);
  return out;
}

/** Checks everything that can be checked before decoding; false when there is nothing to decode. */
function prepare(codec: number, bytes: Uint8Array, expectedSize: number): boolean {
  if (!Number.isInteger(expectedSize) || expectedSize < 0 || expectedSize > 0xffffffff) {
    throw new FormatError('codec-size', `block plain length ${expectedSize} is out of range`);
  }
  if (codec === CODEC.none) {
    if (bytes.length !== expectedSize) throw sizeError(codec, `is ${bytes.length} bytes, expected ${expectedSize}`);
    return false;
  }
  if (codec > CODEC.brotli || !Number.isInteger(codec) || codec < 0) {
    throw new FormatError('codec-unknown', `unknown block codec ${codec}`, { data: { codec } });
  }
  checkBound(codec, bytes, expectedSize);
  return true;
}

function decodeError(codec: number, e: unknown): FormatError {
  if ((e as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') return sizeError(codec, 'decodes to more bytes than expected');
  // libzstd's dstSize_tooSmall: the frame needs more room than the expected size.
  if (codec === CODEC.zstd && e instanceof Error && /destination buffer is too small/i.test(e.message)) return sizeError(codec, 'decodes to more bytes than expected');
  const why = e instanceof Error ? e.message : String(e);
  return new FormatError('codec-corrupt', `${codecName(codec)} block does not decode: ${why}`, { cause: e, data: { codec } });
}

function sizeError(codec: number, what: string): FormatError {
  return new FormatError('codec-size', `${codecName(codec)} block ${what}`, { data: { codec } });
}

function corrupt(codec: number, what: string): FormatError {
  return new FormatError('codec-corrupt', `${codecName(codec)} block ${what}`, { data: { codec } });
}

function codecName(codec: number): string {
  return (Object.keys(CODEC) as CodecName[]).find((k) => CODEC[k] === codec) ?? `codec ${codec}`;
}

/** Proves, without decoding, that the decoder's output cannot outgrow `expectedSize` by much. */
function checkBound(codec: number, b: Uint8Array, expectedSize: number): void {
  switch (codec) {
    case CODEC.zstd:
      return checkZstd(b, expectedSize);
    case CODEC.xz:
      return checkXz(b, expectedSize);
    case CODEC.lz4:
      // lz4_flex allocates the prefixed length and fails rather than write past it.
      if (b.length < 4) throw corrupt(codec, 'is truncated');
      if (readU32LE(b, 0) !== expectedSize) throw sizeError(codec, `says ${readU32LE(b, 0)} bytes, expected ${expectedSize}`);
      return;
    // brotli: bounded by maxOutputLength while it decodes.
  }
}

/**
 * Walks a zstd frame's block headers (RFC 8878 section 3.1.1): one frame, no dictionary,
 * a window of at most 8 MiB, a content size (when stated) of exactly expectedSize, raw
 * and RLE blocks (which decode to their stated size) adding up to no more, and nothing
 * after the frame. The decoder then writes into exactly expectedSize bytes of room and
 * fails beyond them, so no frame makes it allocate more.
 */
function checkZstd(b: Uint8Array, expectedSize: number): void {
  const C = CODEC.zstd;
  if (b.length < 6 || readU32LE(b, 0) !== 0xfd2fb528) throw corrupt(C, 'is not a zstd frame');
  const fhd = b[4];
  const fcsFlag = fhd >> 6;
  const single = (fhd & 0x20) !== 0;
  if ((fhd & 0x08) !== 0) throw corrupt(C, 'sets a reserved frame bit');
  if ((fhd & 0x03) !== 0) throw corrupt(C, 'needs a dictionary');
  let p = 5;
  let window = 0;
  if (!single) {
    const wd = b[p++];
    const base = 2 ** (10 + (wd >> 3));
    window = base + (base / 8) * (wd & 7);
  }
  const fcsBytes = [single ? 1 : 0, 2, 4, 8][fcsFlag];
  if (p + fcsBytes > b.length) throw corrupt(C, 'is truncated');
  if (fcsBytes > 0) {
    let fcs = 0;
    for (let i = fcsBytes - 1; i >= 0; i--) fcs = fcs * 256 + b[p + i];
    if (fcsBytes === 2) fcs += 256;
    if (fcs !== expectedSize) throw sizeError(C, `says ${fcs} bytes, expected ${expectedSize}`);
    if (single) window = fcs;
    p += fcsBytes;
  }
  if (window > MAX_WINDOW) throw corrupt(C, `declares a ${window}-byte window, over ${MAX_WINDOW}`);
  const blockMax = Math.min(window, ZSTD_BLOCK);
  let exact = 0;
  for (;;) {
    if (p + 3 > b.length) throw corrupt(C, 'is truncated');
    const h = b[p] | (b[p + 1] << 8) | (b[p + 2] << 16);
    const type = (h >> 1) & 3;
    const size = h >>> 3;
    p += 3;
    if (type === 3) throw corrupt(C, 'has a reserved block type');
    if (size > blockMax) throw corrupt(C, `has a ${size}-byte block, over ${blockMax}`);
    if (type !== 2) exact += size;
    p += type === 1 ? 1 : size;
    if (exact > expectedSize) throw sizeError(C, `decodes to more than ${expectedSize} bytes`);
    if ((h & 1) !== 0) break;
  }
  if ((fhd & 0x04) !== 0) p += 4;
  if (p > b.length) throw corrupt(C, 'is truncated');
  if (p < b.length) throw corrupt(C, 'has bytes after its frame');
}

const XZ_MAGIC = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
const XZ_CHECK_SIZE = [0, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64];

/**
 * Walks a single .xz stream (xz-file-format 1.2.0) down to its LZMA2 chunk headers,
 * each of which states the exact size it decodes to: the sum must be expectedSize. The
 * index is not trusted, so a stream whose index lies is still measured. LZMA2 must be
 * the only filter, with a dictionary of at most 8 MiB (the decoder allocates it).
 */
function checkXz(b: Uint8Array, expectedSize: number): void {
  const C = CODEC.xz;
  if (b.length < 32 || XZ_MAGIC.some((v, i) => b[i] !== v)) throw corrupt(C, 'is not an xz stream');
  const end = b.length - 12;
  if (b[b.length - 2] !== 0x59 || b[b.length - 1] !== 0x5a) throw corrupt(C, 'is truncated');
  if (b[6] !== 0 || b[7] > 0x0f || b[end + 8] !== b[6] || b[end + 9] !== b[7]) throw corrupt(C, 'has bad stream flags');
  const checkSize = XZ_CHECK_SIZE[b[7]];
  const indexStart = end - (readU32LE(b, end + 4) + 1) * 4;
  if (indexStart < 12) throw corrupt(C, 'has a bad index size');
  let total = 0;
  let p = 12;
  while (p < indexStart && b[p] !== 0) {
    const headerEnd = p + (b[p] + 1) * 4;
    const flags = b[p + 1];
    if (headerEnd > indexStart || (flags & 0x3c) !== 0) throw corrupt(C, 'has a bad block header');
    let q = p + 2;
    if ((flags & 0x40) !== 0) q = skipVarint(b, q, headerEnd);
    if ((flags & 0x80) !== 0) q = skipVarint(b, q, headerEnd);
    // One filter: id 0x21 (LZMA2), one property byte, the dictionary size code.
    if ((flags & 0x03) !== 0 || q + 3 > headerEnd || b[q] !== 0x21 || b[q + 1] !== 1) throw corrupt(C, 'uses a filter other than LZMA2 alone');
    if (b[q + 2] > 22) throw corrupt(C, `declares a dictionary over ${MAX_WINDOW} bytes`);
    let c = headerEnd;
    for (;;) {
      if (c >= indexStart) throw corrupt(C, 'is truncated');
      const ctrl = b[c];
      if (ctrl === 0) {
        c++;
        break;
      }
      if (ctrl === 1 || ctrl === 2) {
        const size = ((b[c + 1] << 8) | b[c + 2]) + 1;
        total += size;
        c += 3 + size;
      } else if (ctrl >= 0x80) {
        total += (((ctrl & 0x1f) << 16) | (b[c + 1] << 8) | b[c + 2]) + 1;
        c += 5 + (ctrl >= 0xc0 ? 1 : 0) + ((b[c + 3] << 8) | b[c + 4]) + 1;
      } else {
        throw corrupt(C, 'has a bad LZMA2 chunk');
      }
      if (total > expectedSize) throw sizeError(C, `decodes to more than ${expectedSize} bytes`);
    }
    p = c + ((4 - ((c - p) % 4)) % 4) + checkSize;
  }
  if (p !== indexStart || b[p] !== 0) throw corrupt(C, 'has a bad index position');
  if (total !== expectedSize) throw sizeError(C, `decodes to ${total} bytes, expected ${expectedSize}`);
}

function skipVarint(b: Uint8Array, p: number, end: number): number {
  for (let i = 0; i < 9 && p < end; i++) if ((b[p++] & 0x80) === 0) return p;
  throw corrupt(CODEC.xz, 'has a bad block header');
}

function readU32LE(b: Uint8Array, p: number): number {
  return (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}
