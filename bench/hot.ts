/**
 * The hot path piece by piece (not part of npm test): block hashing (sha256, the default
 * since block hashes were named, and sha384, which older chains keep), block-id
 * derivation, block sealing and tar entry writing, in MiB/s of block data, median of five
 * runs over 256 MiB in 1 MiB blocks. Chunking and the codecs have their own scripts
 * (bench/chunker.ts, bench/codecs.ts); `npm run bench:hot` runs all three.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { hmac, sealEnvelope } from '../engine/crypto/crypto.js';
import { blockDigest } from '../engine/crypto/hashes.js';
import { counterNonce, blockContext } from '../formats/envelope.js';
import { encodeTarHeader } from '../formats/tar.js';

const BLOCK = 1024 * 1024;
const TOTAL = 256 * BLOCK;
const blocks: Buffer[] = [];
const ks = createCipheriv('aes-128-ctr', Buffer.alloc(16, 7), Buffer.alloc(16));
for (let i = 0; i < TOTAL / BLOCK; i++) blocks.push(ks.update(Buffer.alloc(BLOCK)));
const key = randomBytes(32), volumeId = randomBytes(16);

function median(xs: number[]): number { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; }

function measure(label: string, fn: (b: Buffer, i: number) => void, bytes = TOTAL): void {
  const rates: number[] = [];
  for (let run = 0; run < 5; run++) {
    const t0 = process.hrtime.bigint();
    blocks.forEach(fn);
    rates.push(bytes / 1048576 / (Number(process.hrtime.bigint() - t0) / 1e9));
  }
  console.log(`${label.padEnd(44)} ${median(rates).toFixed(0).padStart(6)} MiB/s`);
}

console.log(`hot path, 1 MiB blocks, ${TOTAL / 1048576} MiB, median of 5, one core`);
measure('sha256 (block hash)', (b) => { blockDigest('sha256', b); });
measure('sha384 (block hash of older chains)', (b) => { blockDigest('sha384', b); });
const digest = blockDigest('sha256', blocks[0]);
measure('HMAC-SHA256 of the sha256 (block id)', () => { hmac(key, digest); });
measure('AES-256-GCM seal (envelope)', (b, i) => { sealEnvelope(key, counterNonce(i + 1), 0, b.length, b, blockContext(volumeId, `55/550e8400-e29b-41d4-a716-446655440000/00000/${String(i).padStart(8, '0')}`)); });
measure('tar header per block', (_b, i) => { encodeTarHeader(`55/550e8400-e29b-41d4-a716-446655440000/00000/${String(i).padStart(8, '0')}`, BLOCK, 1); });
measure('hash + id + seal + tar header (all of it)', (b, i) => {
  hmac(key, blockDigest('sha256', b));
  sealEnvelope(key, counterNonce(i + 1), 0, b.length, b, blockContext(volumeId, 'x'));
  encodeTarHeader('x', BLOCK, 1);
});
