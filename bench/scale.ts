/**
 * Scale benchmark (not part of npm test): peak RSS and time of a full backup, an
 * unchanged increment and a restore for trees of many small files, and for one large
 * file. Each step runs in a fresh process (bench/run-once.ts).
 *
 *   npm run bench -- [--files 10000,100000] [--big-mib 4096] [--dir /path/with/space]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, openSync, writeSync, closeSync } from 'node:fs';
import { createCipheriv } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { keygen } from '../engine/keys.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : dflt; };
const counts = opt('files', '10000,100000').split(',').filter(Boolean).map(Number);
const bigMiB = Number(opt('big-mib', '4096'));
const base = mkdtempSync(join(opt('dir', tmpdir()), 'iebs-scale-'));
const runner = fileURLToPath(new URL('./run-once.js', import.meta.url));

/** Deterministic, incompressible-ish bytes: AES-CTR keystream. */
function stream(seed: number) {
  const c = createCipheriv('aes-128-ctr', Buffer.alloc(16, seed), Buffer.alloc(16));
  return (n: number) => c.update(Buffer.alloc(n));
}

function step(argv: string[]) {
  const r = spawnSync(process.execPath, [runner, ...argv], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`${argv[0]} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

const rows: string[][] = [['corpus', 'step', 'seconds', 'MiB/s', 'CPU s', 'peak RSS MiB']];
async function measure(label: string, src: string, bytes: number) {
  const keys = join(base, `keys-${label}`);
  await keygen({ out: keys, name: 'bench' });
  const repo = join(base, `repo-${label}`);
  for (const [name, argv] of [
    ['full backup', ['backup', src, repo, join(keys, 'backup.key')]],
    ['unchanged increment', ['backup', src, repo, join(keys, 'backup.key')]],
    ['restore', ['restore', repo, join(keys, 'restore.key'), join(base, `out-${label}`)]],
  ] as const) {
    const r = step([...argv]);
    const moved = name === 'unchanged increment' ? 0 : bytes;
    rows.push([label, name, r.seconds.toFixed(2), moved ? (moved / 1048576 / r.seconds).toFixed(0) : '-', r.cpuSeconds.toFixed(2), r.peakRssMiB.toFixed(0)]);
    console.error(rows[rows.length - 1].join('  '));
  }
  rmSync(join(base, `out-${label}`), { recursive: true, force: true });
  rmSync(repo, { recursive: true, force: true });
}

try {
  for (const n of counts) {
    const src = join(base, `files-${n}`);
    const next = stream(n % 251);
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      const dir = join(src, String(Math.floor(i / 1000)));
      if (i % 1000 === 0) mkdirSync(dir, { recursive: true });
      const size = 100 + ((i * 7919) % 4000);
      writeFileSync(join(dir, `f${i}.txt`), next(size));
      bytes += size;
    }
    await measure(`${n} small files`, src, bytes);
    rmSync(src, { recursive: true, force: true });
  }
  if (bigMiB > 0) {
    const src = join(base, 'big');
    mkdirSync(src);
    const fd = openSync(join(src, 'big.bin'), 'w');
    const next = stream(7);
    for (let i = 0; i < bigMiB; i++) writeSync(fd, next(1048576));
    closeSync(fd);
    await measure(`one ${bigMiB} MiB file`, src, bigMiB * 1048576);
  }
} finally {
  rmSync(base, { recursive: true, force: true });
}
const width = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
for (const r of rows) console.log(r.map((c, i) => c.padEnd(width[i])).join('  '));
