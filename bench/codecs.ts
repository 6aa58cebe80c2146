/**
 * Measures the block codecs on three corpora in 1 MiB blocks, median of 5: compress
 * and decompress MiB/s and the ratio (input / output, stored blocks counted at full
 * size). The numbers pick DEFAULT_CODEC in engine/codec.ts.
 *
 * One block at a time, so one core works at a time; the time is the process's CPU time
 * (main thread and the thread pool the codecs run on), which other load on the machine
 * disturbs far less than wall time does. compressBlock includes looksIncompressible.
 *
 *   npx tsc -p . && node dist/bench/codecs.js
 *
 * (a) text: C headers from /usr/include and text files from /usr/share, 64 MiB
 * (b) binary: programs and libraries from /usr/bin and /usr/lib/x86_64-linux-gnu, 64 MiB
 * (c) random: 16 MiB from the CSPRNG
 * xz runs on the first 8 MiB of each corpus only: at its speed the full corpus would
 * take minutes per level.
 *
 * Then zstd level 3 on text blocks of 512 B to 1 MiB, as the engine calls it: CPU µs
 * per block and MiB/s (best of 3), what a small file's block costs beside a large one.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, lstatSync, openSync, readSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  compressBlock,
  decompressBlock,
  looksIncompressible,
  skipByExtension,
  type CodecChoice,
  type CompressedBlock,
} from '../engine/codec.js';

const MiB = 1024 * 1024;
const RUNS = 5;

/** Reads files under `roots` in sorted order, at most `perFile` bytes of each, up to `total`. */
function corpus(roots: string[], total: number, perFile: number, accept: (head: Uint8Array) => boolean): Uint8Array {
  const out = new Uint8Array(total);
  let n = 0;
  const share = Math.floor(total / roots.length);
  const visit = (path: string, limit: number): void => {
    if (n >= limit) return;
    let st;
    try {
      st = lstatSync(path);
    } catch {
      return;
    }
    if (st.isDirectory()) {
      let names: string[];
      try {
        names = readdirSync(path).sort();
      } catch {
        return;
      }
      for (const name of names) visit(join(path, name), limit);
    } else if (st.isFile() && st.size > 0 && !skipByExtension(path)) {
      const want = Math.min(st.size, perFile, limit - n);
      const buf = new Uint8Array(want);
      let fd: number;
      try {
        fd = openSync(path, 'r');
      } catch {
        return;
      }
      const got = readSync(fd, buf, 0, want, 0);
      closeSync(fd);
      if (accept(buf.subarray(0, Math.min(got, 4096)))) {
        out.set(buf.subarray(0, got), n);
        n += got;
      }
    }
  };
  roots.forEach((root, i) => visit(root, share * (i + 1)));
  return out.subarray(0, n - (n % MiB));
}

function blocksOf(data: Uint8Array): Uint8Array[] {
  const blocks: Uint8Array[] = [];
  for (let i = 0; i < data.length; i += MiB) blocks.push(data.subarray(i, i + MiB));
  return blocks;
}

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}

/** Milliseconds of CPU time used by this process since `since`. */
function cpuMs(since: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1000;
}

async function measure(blocks: Uint8Array[], choice: CodecChoice): Promise<string> {
  const size = blocks.reduce((s, b) => s + b.length, 0);
  const ctimes: number[] = [];
  const dtimes: number[] = [];
  let packed: CompressedBlock[] = [];
  for (let run = 0; run < RUNS; run++) {
    let t = process.cpuUsage();
    packed = [];
    for (const b of blocks) packed.push(await compressBlock(b, choice));
    ctimes.push(cpuMs(t));
    t = process.cpuUsage();
    for (let i = 0; i < packed.length; i++) await decompressBlock(packed[i].codec, packed[i].bytes, blocks[i].length);
    dtimes.push(cpuMs(t));
  }
  const out = packed.reduce((s, p) => s + p.bytes.length, 0);
  const stored = packed.filter((p) => p.codec === 0).length;
  const rate = (ms: number): string => ((size / MiB / ms) * 1000).toFixed(0).padStart(6);
  const name = `${choice.name}:${choice.level}`.padEnd(10);
  return `${name} ${rate(median(ctimes))} ${rate(median(dtimes))} ${(size / out).toFixed(2).padStart(6)} ${String(stored).padStart(4)}/${packed.length}`;
}

const CHOICES: CodecChoice[] = [
  { name: 'lz4', level: 0 },
  { name: 'zstd', level: 1 },
  { name: 'zstd', level: 2 },
  { name: 'zstd', level: 3 },
  { name: 'zstd', level: 5 },
  { name: 'zstd', level: 9 },
  { name: 'brotli', level: 0 },
  { name: 'brotli', level: 1 },
  { name: 'brotli', level: 2 },
  { name: 'brotli', level: 3 },
  { name: 'brotli', level: 4 },
  { name: 'brotli', level: 5 },
  { name: 'xz', level: 0 },
  { name: 'xz', level: 3 },
  { name: 'xz', level: 6 },
];

const isText = (head: Uint8Array): boolean => !head.includes(0);
const corpora: Array<[string, Uint8Array]> = [
  ['(a) text', corpus(['/usr/include', '/usr/share'], 64 * MiB, 4 * MiB, isText)],
  ['(b) binary', corpus(['/usr/bin', '/usr/lib/x86_64-linux-gnu'], 64 * MiB, 4 * MiB, () => true)],
  ['(c) random', new Uint8Array(randomBytes(16 * MiB))],
];

console.log(`node ${process.version}, 1 MiB blocks, median of ${RUNS} runs, one core; MiB/s of plaintext`);
for (const [title, data] of corpora) {
  const blocks = blocksOf(data);
  console.log(`\n${title}: ${blocks.length} MiB`);
  console.log('codec       comp MiB/s  dec   ratio stored');
  for (const choice of CHOICES) {
    console.log(await measure(choice.name === 'xz' ? blocks.slice(0, 8) : blocks, choice));
  }
  const t = process.cpuUsage();
  let skipped = 0;
  for (const b of blocks) if (looksIncompressible(b)) skipped++;
  const us = (cpuMs(t) * 1000) / blocks.length;
  console.log(`looksIncompressible: ${us.toFixed(0)} us per block, ${skipped}/${blocks.length} judged incompressible`);
}

// Block sizes: per-block CPU of zstd:3 as the engine calls it, from a 512-byte file to a
// largest block: what a small file costs beside a large one.
const text = corpora[0][1];
console.log('\nzstd:3 on text by block size, CPU µs per block and MiB/s per core (best of 3)');
console.log('size       compress   MiB/s   decompress   MiB/s');
for (const size of [512, 2048, 4096, 16384, 65536, 262144, MiB]) {
  const n = Math.max(8, Math.min(4000, Math.floor((16 * MiB) / size)));
  const blocks = Array.from({ length: n }, (_, i) => Buffer.from(text.subarray((i * size) % (text.length - size), ((i * size) % (text.length - size)) + size)));
  let comp = Infinity;
  let dec = Infinity;
  for (let run = 0; run < 3; run++) {
    let t = process.cpuUsage();
    const packed = [];
    for (const b of blocks) packed.push(await compressBlock(b, { name: 'zstd', level: 3 }));
    comp = Math.min(comp, cpuMs(t));
    t = process.cpuUsage();
    for (const p of packed) await decompressBlock(p.codec, p.bytes, size);
    dec = Math.min(dec, cpuMs(t));
  }
  const us = (ms: number): string => ((ms * 1000) / n).toFixed(1).padStart(9);
  const rate = (ms: number): string => ((size * n) / MiB / (ms / 1000)).toFixed(0).padStart(7);
  console.log(`${String(size).padEnd(8)} ${us(comp)} ${rate(comp)}   ${us(dec)}   ${rate(dec)}`);
}
