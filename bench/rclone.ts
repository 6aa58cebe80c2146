/**
 * Why the rclone backend talks to one `rclone rcd` rather than starting an rclone per
 * operation (not part of npm test): 200 stats, 200 puts of 1 KB and a streamed 64 MiB
 * put, each way, on a `type = local` remote in a temporary config, so the figures are
 * rclone's own cost and not a network's. Then the same through RcloneStorage itself, with
 * this process's peak RSS over the 64 MiB put (streamed: it must not grow by 64 MiB).
 *
 * Run: `npx tsc -p . && node dist/bench/rclone.js`
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { RcloneStorage, rcloneEnv } from '../engine/storage/rclone.js';

const N = 200;
const root = mkdtempSync(join(tmpdir(), 'iebs-bench-rclone-'));
writeFileSync(join(root, 'rclone.conf'), '[disk]\ntype = local\n');
process.env.RCLONE_CONFIG = join(root, 'rclone.conf');
const env = rcloneEnv();
const small = randomBytes(1000);
const MiB = 1 << 20;
const chunk = randomBytes(MiB);

/** Runs rclone ARGS to completion, with `input` on its stdin. */
function rclone(args: string[], input?: (w: NodeJS.WritableStream & { once: (e: string, f: () => void) => void }) => Promise<void>): Promise<number> {
  return new Promise((resolve) => {
    const c = spawn('rclone', args, { env, stdio: ['pipe', 'ignore', 'ignore'] });
    c.on('close', (code) => resolve(code ?? -1));
    if (input) void input(c.stdin).then(() => c.stdin.end()); else c.stdin.end();
  });
}

async function time(label: string, fn: () => Promise<void>): Promise<void> {
  const t0 = performance.now();
  await fn();
  console.log(`${label.padEnd(52)} ${(performance.now() - t0).toFixed(0).padStart(7)} ms`);
}

const fs = `disk:${join(root, 'data')}`;
await time(`process per operation: ${N} puts of 1 KB (rcat)`, async () => {
  for (let i = 0; i < N; i++) await rclone(['rcat', `${fs}/p/o${i}`], async (w) => { w.write(small); });
});
await time(`process per operation: ${N} stats (lsjson --stat)`, async () => {
  for (let i = 0; i < N; i++) await rclone(['lsjson', '--stat', `${fs}/p/o${i}`]);
});
await time('process per operation: 64 MiB streamed put (rcat)', async () => {
  await rclone(['rcat', `${fs}/big-p`], async (w) => {
    for (let i = 0; i < 64; i++) if (!w.write(chunk)) await new Promise<void>((r) => w.once('drain', r));
  });
});

const s = new RcloneStorage(fs);
await time('rcd: start', async () => { await s.stat('none'); });
await time(`rcd: ${N} puts of 1 KB (upload, stat, move)`, async () => {
  for (let i = 0; i < N; i++) await s.put(`q/o${i}`, small);
});
await time(`rcd: ${N} stats`, async () => {
  for (let i = 0; i < N; i++) await s.stat(`q/o${i}`);
});
let peak = 0;
const sample = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 5);
const rss0 = process.memoryUsage().rss;
await time('rcd: 64 MiB streamed put (create, 64 writes, commit)', async () => {
  const w = await s.create('big-r');
  for (let i = 0; i < 64; i++) await w.write(chunk);
  await w.commit();
});
clearInterval(sample);
console.log(`peak RSS over the 64 MiB put: +${((peak - rss0) / MiB).toFixed(1)} MiB`);
await s.close();
rmSync(root, { recursive: true, force: true });
