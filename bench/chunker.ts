/**
 * Chunker throughput: chunkStream over 256 MiB of pseudo-random data fed in 4 MiB
 * pieces (as a file read would), and cutPoint alone over the same bytes in memory, so
 * the cost of the stream window shows as the difference. Median of 5 runs each.
 * Run: npx tsc -p . && node dist/bench/chunker.js
 */

import { chunkParams, chunkStream, cutPoint, type ChunkerParams } from '../engine/chunker.js';

const MiB = 1024 * 1024;
const SIZE = 256 * MiB;
const PIECE = 4 * MiB;
const RUNS = 5;

/** Deterministic pseudo-random bytes (xorshift32), so runs compare like with like. */
function randomBytes(size: number, seed: number): Uint8Array {
  const words = new Uint32Array(size / 4);
  let x = seed | 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
  return new Uint8Array(words.buffer);
}

async function* pieces(data: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < data.length; off += size) yield data.subarray(off, off + size);
}

async function runStream(p: ChunkerParams, data: Uint8Array): Promise<number> {
  let count = 0;
  for await (const _ of chunkStream(p, pieces(data, PIECE))) count++;
  return count;
}

function runCut(p: ChunkerParams, data: Uint8Array): number {
  let count = 0;
  for (let s = 0; s < data.length; count++) s += cutPoint(p, data, s, data.length, true);
  return count;
}

async function measure(name: string, run: () => Promise<number> | number): Promise<void> {
  const rates: number[] = [];
  let chunks = 0;
  for (let r = 0; r < RUNS; r++) {
    const t0 = process.hrtime.bigint();
    chunks = await run();
    rates.push(SIZE / MiB / (Number(process.hrtime.bigint() - t0) / 1e9));
  }
  rates.sort((a, b) => a - b);
  const spread = `${rates[0].toFixed(0)}..${rates[RUNS - 1].toFixed(0)}`;
  console.log(`${name}: ${rates[RUNS >> 1].toFixed(0)} MiB/s (median of ${RUNS}, range ${spread}), ${chunks} chunks, avg ${(SIZE / chunks / 1024).toFixed(0)} KiB`);
}

const p = chunkParams(new Uint8Array(32).fill(7));
const data = randomBytes(SIZE, 0x9e3779b9);
await measure('chunkStream, 4 MiB pieces', () => runStream(p, data));
await measure('cutPoint, in memory', () => runCut(p, data));
