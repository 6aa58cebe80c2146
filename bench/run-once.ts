/**
 * Runs one backup or restore in this process and prints its time and peak RSS as JSON,
 * so bench/scale.ts can measure each step in a fresh process.
 *   node dist/bench/run-once.js backup SRC REPO BACKUP_KEY      (cache in $IEBS_CACHE_DIR, if set)
 *   node dist/bench/run-once.js restore REPO RESTORE_KEY TARGET
 */
import { isMainThread, Worker } from 'node:worker_threads';
import { beforeEngineThread, engineHeap, onEngineThread } from '../cli/heap.js';

// As the iebs command does (cli/main.ts), the work runs on a thread with a capped heap
// and the command's old-generation floor (cli/heap.ts).
if (isMainThread && process.env.IEBS_NO_THREAD !== '1') {
  beforeEngineThread(process.argv[2], ['--repo', process.argv[2] === 'backup' ? process.argv[4] : process.argv[3]]);
  const w = new Worker(new URL(import.meta.url), { argv: process.argv.slice(2), resourceLimits: engineHeap(process.argv[2]) });
  w.on('error', (e) => { throw e; });
  w.on('exit', (code) => { process.exitCode = code; });
} else {
  if (!isMainThread) onEngineThread();
  await main();
}

async function main(): Promise<void> {
  // Loaded on the thread that runs the step only: the main thread stays as small as the command's.
  const { backup } = await import('../engine/backup/backup.js');
  const { loadBackupKey, loadRestoreKey } = await import('../engine/crypto/keys.js');
  const { restore } = await import('../engine/restore/restore.js');
  const { openStorage } = await import('../engine/storage/open.js');
  const [verb, a, b, c] = process.argv.slice(2);
  const t0 = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  let detail: unknown;
  if (verb === 'backup') {
    const r = await backup(openStorage(b), await loadBackupKey(c), { create: true, sources: [a], volumeSize: 1024 ** 3, system: 'bench', cacheDir: process.env.IEBS_CACHE_DIR || undefined });
    detail = { snapshot: r.snapshot, files: r.counts.files, read: r.read, stored: r.counts.stored };
  } else if (verb === 'restore') {
    const r = await restore(openStorage(a), await loadRestoreKey(b, undefined), { target: c });
    detail = { files: r.files, bytes: r.bytes, failures: r.failures.length };
  } else {
    throw new Error('usage: run-once backup SRC REPO KEY | restore REPO KEY TARGET');
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  process.stdout.write(JSON.stringify({ verb, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, peakRssMiB: process.resourceUsage().maxRSS / 1024, detail }) + '\n');
}
