import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Chunker, chunkParams, chunkStream, cutPoint, gearTable, DEFAULT_SIZES, type ChunkerParams } from '../engine/chunker.js';

type Sizes = { min: number; avg: number; max: number };

const MiB = 1024 * 1024;
const SMALL: Sizes = { min: 4096, avg: 16384, max: 65536 };

/** The vector directory, whether this runs from test/ or from dist/test/. */
const VECTORS = [new URL('vectors/chunker/', import.meta.url), new URL('../../test/vectors/chunker/', import.meta.url)]
  .map((u) => fileURLToPath(u))
  .find((dir) => existsSync(dir)) ?? assert.fail('test/vectors/chunker/ not found');

function readVector(name: string): { fields: Map<string, string>; body: string[] } {
  const text = readFileSync(VECTORS + name, 'utf8');
  const split = text.indexOf('\n\n');
  const fields = new Map<string, string>();
  for (const line of text.slice(0, split).split('\n')) {
    const colon = line.indexOf(': ');
    fields.set(line.slice(0, colon), line.slice(colon + 2));
  }
  return { fields, body: text.slice(split + 2).split('\n').filter((l) => l !== '') };
}

/** Deterministic pseudo-random bytes: xorshift32 words written little-endian by hand, so no platform dependence. */
function xorshiftBytes(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed | 0 || 1;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x;
    if (i + 1 < size) out[i + 1] = x >>> 8;
    if (i + 2 < size) out[i + 2] = x >>> 16;
    if (i + 3 < size) out[i + 3] = x >>> 24;
  }
  return out;
}

/** SHA-256(seed || uint32be(j)) for j = 0, 1, …, concatenated: the cuts-small vector input. */
function counterBytes(seed: string, length: number): Uint8Array {
  const out = new Uint8Array(length);
  const msg = Buffer.alloc(seed.length + 4);
  msg.write(seed, 'ascii');
  for (let j = 0, off = 0; off < length; j++, off += 32) {
    msg.writeUInt32BE(j, seed.length);
    out.set(createHash('sha256').update(msg).digest().subarray(0, length - off), off);
  }
  return out;
}

/** The gear table computed independently of engine/chunker.ts. */
function refGear(key: Uint8Array): number[] {
  const gear: number[] = [];
  for (let i = 0; i < 256; i++) {
    const mac = createHmac('sha256', Buffer.from(key)).update(Buffer.concat([Buffer.from('iebs-gear'), Buffer.from([i])])).digest();
    gear.push(mac[0] * 2 ** 24 + mac[1] * 2 ** 16 + mac[2] * 2 ** 8 + mac[3]);
  }
  return gear;
}

/**
 * A straightforward reading of the prose in engine/chunker.ts, byte by byte with plain
 * arithmetic (no shifts, no int32 tricks, no split loops), so that the optimised code
 * is checked against something that shares none of its shortcuts.
 */
function refChunks(data: Uint8Array, gear: number[], sizes: Sizes): number[] {
  const { min, avg, max } = sizes;
  const bits = Math.log2(avg);
  const maskS = 2 ** 32 - 2 ** (32 - (bits + 2));
  const maskL = 2 ** 32 - 2 ** (32 - (bits - 2));
  const lengths: number[] = [];
  let s = 0;
  while (s < data.length) {
    const n = data.length - s;
    let len = Math.min(n, max);
    if (n > min) {
      let h = 0;
      for (let i = s + min; i < s + n && i < s + max; i++) {
        h = (h * 2 + gear[data[i]]) % 2 ** 32;
        const mask = i - s < avg ? maskS : maskL;
        if ((h & mask) === 0) {
          len = i - s + 1;
          break;
        }
      }
    }
    lengths.push(len);
    s += len;
  }
  return lengths;
}

async function* slices(data: Uint8Array, size: (i: number) => number): AsyncGenerator<Uint8Array> {
  for (let off = 0, i = 0; off < data.length; i++) {
    const n = size(i);
    yield data.subarray(off, off + n);
    off += n;
  }
}

/** Piece sizes 1 … limit from a seeded generator, so a failure replays. */
function randomSizes(seed: number, limit: number): (i: number) => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return ((x >>> 0) % limit) + 1;
  };
}

async function collect(p: ChunkerParams, source: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  for await (const c of chunkStream(p, source)) chunks.push(c);
  return chunks;
}

function cutLoop(p: ChunkerParams, data: Uint8Array): number[] {
  const lengths: number[] = [];
  for (let s = 0; s < data.length; ) {
    const len = cutPoint(p, data, s, data.length, true);
    lengths.push(len);
    s += len;
  }
  return lengths;
}

function offsets(lengths: number[]): number[] {
  let at = 0;
  return lengths.map((l) => (at += l));
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const key = (byte: number): Uint8Array => new Uint8Array(32).fill(byte);

let random64: Uint8Array | undefined;
/** 64 MiB of pseudo-random bytes, shared by the tests that need bulk. */
function bulk(): Uint8Array {
  return (random64 ??= xorshiftBytes(64 * MiB, 0x2545f491));
}

test('gearTable is deterministic for a key and differs between keys', () => {
  assert.deepEqual(gearTable(key(9)), gearTable(key(9)));
  const a = gearTable(key(0));
  const b = gearTable(key(1));
  assert.equal(a.length, 256);
  assert.ok(a.some((v, i) => v !== b[i]));
  assert.ok(new Set(a).size > 250, 'gear values should look random');
});

test('gearTable matches HMAC-SHA256 and the zero-key vector', () => {
  const { fields, body } = readVector('gear-zero-key.txt');
  assert.equal(fields.get('expect'), 'success');
  const k = Buffer.from(fields.get('key') ?? '', 'hex');
  assert.deepEqual(k, Buffer.alloc(32));
  const gear = gearTable(k);
  const ref = refGear(k);
  for (const i of [0, 1, 255]) assert.equal(gear[i], ref[i], `gear[${i}]`);
  assert.deepEqual(body, ref.slice(0, 4).map((v) => v.toString(16).padStart(8, '0')));
  assert.deepEqual(body, [...gear.slice(0, 4)].map((v) => v.toString(16).padStart(8, '0')));
});

test('chunkParams rejects sizes the algorithm does not define', () => {
  const p = chunkParams(key(0));
  assert.deepEqual([p.min, p.avg, p.max], [262144, 1048576, 4194304]);
  assert.deepEqual(chunkParams(key(0), { min: 64, avg: 128, max: 129 }).max, 129);
  for (const sizes of [
    { min: 32, avg: 128, max: 512 },
    { min: 4096, avg: 4096, max: 65536 },
    { min: 4096, avg: 16384, max: 16384 },
    { min: 4096, avg: 12288, max: 65536 },
    { min: 4096.5, avg: 16384, max: 65536 },
    { min: 4096, avg: 16384, max: Number.NaN },
    { min: 65536, avg: 16384, max: 4096 },
    { min: 4096, avg: 16384, max: 2 ** 31 },
  ]) {
    assert.throws(() => chunkParams(key(0), sizes), RangeError, JSON.stringify(sizes));
  }
});

test('chunks lie in (min, max] except the last, concatenate to the input, and average near avg', async () => {
  const data = bulk();
  const p = chunkParams(key(3));
  const chunks = await collect(p, slices(data, () => 4 * MiB));
  assert.equal(sha(Buffer.concat(chunks)), sha(data));
  for (const c of chunks.slice(0, -1)) assert.ok(c.length > p.min && c.length <= p.max, `chunk of ${c.length}`);
  const mean = data.length / chunks.length;
  assert.ok(mean >= p.avg / 2 && mean <= p.avg * 2, `${chunks.length} chunks, mean ${mean}`);
});

test('odd slices of the same input give identical boundaries', async () => {
  const cases: Array<[Sizes, Uint8Array, Array<[string, (i: number) => number]>]> = [
    // Kept short: under node --test every await costs a promise hook.
    [SMALL, xorshiftBytes(200003, 10), [['1 byte', () => 1]]],
    [SMALL, xorshiftBytes(MiB + 777, 11), [['321 bytes', () => 321], ['random ≤ 9000', randomSizes(5, 9000)]]],
    [
      DEFAULT_SIZES,
      bulk().subarray(0, 12 * MiB + 12345),
      [['321 bytes', () => 321], ['64 KiB', () => 65536], ['5 MiB', () => 5 * MiB], ['random ≤ 6 MiB', randomSizes(7, 6 * MiB)], ['whole', () => 12 * MiB + 12345]],
    ],
  ];
  for (const [sizes, data, feeds] of cases) {
    const p = chunkParams(key(4), sizes);
    const expected = cutLoop(p, data);
    assert.ok(expected.length > 5, 'input should span many chunks');
    for (const [name, size] of feeds) {
      const chunks = await collect(p, slices(data, size));
      assert.deepEqual(chunks.map((c) => c.length), expected, `${name} slices, max ${sizes.max}`);
      assert.equal(sha(Buffer.concat(chunks)), sha(data));
    }
  }
});

test('reading into the window (room, filledBy) gives the boundaries of push, for reads of any size', () => {
  for (const [sizes, data] of [[SMALL, xorshiftBytes(MiB + 777, 12)], [DEFAULT_SIZES, bulk().subarray(0, 12 * MiB + 12345)]] as const) {
    const p = chunkParams(key(5), sizes);
    const expected = cutLoop(p, data);
    for (const [name, most] of [['1 byte', () => 1], ['321 bytes', () => 321], ['random', randomSizes(9, 3 * sizes.max)], ['all the room', () => Infinity]] as Array<[string, (i: number) => number]>) {
      const c = new Chunker(p);
      const chunks: Uint8Array[] = [];
      let at = 0;
      for (let i = 0; at < data.length; i++) {
        const room = c.room();
        assert.ok(room.length >= p.max, `room of ${room.length} bytes, max ${p.max}`);
        const n = Math.min(room.length, most(i), data.length - at);
        room.set(data.subarray(at, at + n));
        at += n;
        for (const chunk of c.filledBy(n)) chunks.push(chunk);
      }
      for (const chunk of c.end()) chunks.push(chunk);
      assert.deepEqual(chunks.map((x) => x.length), expected, `${name} reads, max ${sizes.max}`);
      assert.equal(sha(Buffer.concat(chunks)), sha(data));
    }
    const c = new Chunker(p);
    const room = c.room().length;
    assert.throws(() => [...c.filledBy(room + 1)], /more than the room given/);
  }
});

test('inserting 100 bytes near the start changes at most 3 chunks', async () => {
  const old = bulk().subarray(0, 32 * MiB);
  const edited = Buffer.concat([old.subarray(0, 5000), xorshiftBytes(100, 99), old.subarray(5000)]);
  const p = chunkParams(key(5));
  const before = new Set((await collect(p, slices(old, () => MiB))).map(sha));
  const after = (await collect(p, slices(edited, () => MiB))).map(sha);
  assert.ok(after.length > 10);
  const fresh = after.filter((h) => !before.has(h));
  assert.ok(fresh.length <= 3, `${fresh.length} of ${after.length} chunks are new`);
});

test('different keys give different boundaries', () => {
  const data = bulk().subarray(0, 32 * MiB);
  const a = offsets(cutLoop(chunkParams(key(0x10)), data)).slice(0, -1);
  const b = new Set(offsets(cutLoop(chunkParams(key(0x11)), data)).slice(0, -1));
  assert.ok(a.length > 10);
  const shared = a.filter((o) => b.has(o));
  assert.ok(shared.length <= 2, `${shared.length} of ${a.length} boundaries shared`);
});

test('cut points match the cuts-small vector and the reference', async () => {
  const { fields, body } = readVector('cuts-small.txt');
  assert.equal(fields.get('expect'), 'success');
  assert.equal(fields.get('input'), 'sha256-counter');
  const sizes = { min: Number(fields.get('min')), avg: Number(fields.get('avg')), max: Number(fields.get('max')) };
  assert.deepEqual(sizes, SMALL);
  const k = Buffer.from(fields.get('key') ?? '', 'hex');
  assert.deepEqual(k, Buffer.alloc(32, 1));
  const data = counterBytes(fields.get('input-seed') ?? '', Number(fields.get('input-length')));
  assert.equal(sha(data), fields.get('input-sha256'));
  const expected = body.map(Number);
  assert.equal(expected.length, Number(fields.get('chunks')));

  assert.deepEqual(refChunks(data, refGear(k), sizes), expected);
  const p = chunkParams(k, sizes);
  assert.deepEqual(cutLoop(p, data), expected);
  assert.deepEqual((await collect(p, slices(data, randomSizes(3, 100000)))).map((c) => c.length), expected);
});

test('cutPoint and chunkStream agree with the reference on assorted inputs', async () => {
  const period7 = Uint8Array.from({ length: 300000 }, (_, i) => (i % 7) * 37);
  const sparse = new Uint8Array(400000);
  for (let i = 0; i < sparse.length; i += 1013) sparse[i] = i & 0xff;
  const inputs = [xorshiftBytes(MiB, 21), xorshiftBytes(200003, 22), period7, sparse, new Uint8Array(70000)];
  const paramSets: Sizes[] = [SMALL, { min: 64, avg: 256, max: 320 }, { min: 100, avg: 128, max: 1000 }, { min: 1000, avg: 1024, max: 1025 }, { min: 64, avg: 4096, max: 8192 }];
  for (const sizes of paramSets) {
    const k = key(sizes.avg & 0xff);
    const p = chunkParams(k, sizes);
    const gear = refGear(k);
    for (const [n, data] of inputs.entries()) {
      const expected = refChunks(data, gear, sizes);
      const what = `input ${n}, sizes ${JSON.stringify(sizes)}`;
      assert.deepEqual(cutLoop(p, data), expected, what);
      assert.deepEqual((await collect(p, slices(data, randomSizes(n + 1, 3 * sizes.max)))).map((c) => c.length), expected, what);
    }
  }
});

test('cutPoint without eof returns 0 only when more bytes could move the cut', () => {
  const data = xorshiftBytes(300000, 31);
  for (const sizes of [SMALL, { min: 64, avg: 256, max: 320 }]) {
    const p = chunkParams(key(2), sizes);
    const lengths = refChunks(data, refGear(key(2)), sizes);
    const next = randomSizes(17, sizes.max + 10);
    let s = 0;
    for (const len of lengths) {
      for (let k = 0; k < 20; k++) {
        const end = Math.min(data.length, s + next(0));
        const got = cutPoint(p, data, s, end, false);
        if (got === 0) {
          assert.ok(end - s < sizes.max);
          assert.ok(len > end - s || (s + len === data.length && end === data.length), `0 at ${s}..${end}, chunk ${len}`);
        } else {
          assert.equal(got, len, `at ${s}..${end}`);
        }
      }
      s += len;
    }
  }
});

test('edge cases: empty, short, exactly min, and runs of zeros', async () => {
  const p = chunkParams(key(0), SMALL);
  const lens = async (data: Uint8Array, piece = 1000): Promise<number[]> => (await collect(p, slices(data, () => piece))).map((c) => c.length);

  assert.deepEqual(await lens(new Uint8Array(0)), []);
  assert.deepEqual(await collect(p, (async function* () { yield new Uint8Array(0); yield new Uint8Array(0); })()), []);
  assert.equal(cutPoint(p, new Uint8Array(0), 0, 0, true), 0);
  assert.deepEqual(await lens(new Uint8Array(100)), [100]);
  assert.deepEqual(await lens(new Uint8Array(SMALL.min)), [SMALL.min]);
  assert.deepEqual(await lens(xorshiftBytes(SMALL.min + 1, 8)), [SMALL.min + 1]);
  assert.equal(cutPoint(p, new Uint8Array(SMALL.min), 0, SMALL.min, false), 0);

  // On zeros h settles after 32 bytes to -gear[0] mod 2^32; for the zero key that value
  // misses both masks, so zeros are cut only by max.
  const settled = (2 ** 32 - refGear(key(0))[0]) % 2 ** 32;
  assert.notEqual(settled & 0xfff00000, 0);
  assert.deepEqual(await lens(new Uint8Array(SMALL.max)), [SMALL.max]);
  assert.deepEqual(await lens(new Uint8Array(2 * SMALL.max + 5), 777), [SMALL.max, SMALL.max, 5]);
  assert.equal(cutPoint(p, new Uint8Array(SMALL.max), 0, SMALL.max, false), SMALL.max);
  const big = chunkParams(key(0));
  assert.deepEqual((await collect(big, slices(new Uint8Array(big.max), () => MiB))).map((c) => c.length), [big.max]);
});

test('cutPoint refuses a range outside the buffer', () => {
  const p = chunkParams(key(0), SMALL);
  const data = new Uint8Array(10);
  assert.throws(() => cutPoint(p, data, 0, 11, true), RangeError);
  assert.throws(() => cutPoint(p, data, 5, 4, true), RangeError);
  assert.throws(() => cutPoint(p, data, -1, 4, true), RangeError);
});

test('chunkStream reads no further ahead than its window, and chunks outlive it', async () => {
  const p = chunkParams(key(6), SMALL);
  let read = 0;
  const endless = (async function* () {
    for (let i = 0; ; i++) {
      const piece = xorshiftBytes(1000, i + 1);
      read += piece.length;
      yield piece;
    }
  })();
  const kept: Uint8Array[] = [];
  for await (const c of chunkStream(p, endless)) {
    kept.push(c);
    assert.ok(read - kept.reduce((n, k) => n + k.length, 0) <= 2 * p.max + 1000, `${read} read for ${kept.length} chunks`);
    if (kept.length === 50) break;
  }
  let seed = 1;
  const replay = Buffer.concat(kept);
  const original = Buffer.concat(Array.from({ length: Math.ceil(replay.length / 1000) }, () => xorshiftBytes(1000, seed++)));
  assert.equal(sha(replay), sha(original.subarray(0, replay.length)));
});
