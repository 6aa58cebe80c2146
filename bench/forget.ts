/**
 * Forget benchmark (issue 19, not part of npm test): time, CPU seconds and peak RSS of
 * `iebs forget --prune` beside restic's `forget --prune` on the same history: a tree of
 * many small files (1000 per directory, 100 to 4099 bytes) backed up once a "day" for
 * `--snapshots` days, a few files changed between backups. iebs makes a new full every
 * `--max-increments`+1 snapshots (so the history has several chains); restic's snapshots
 * are given the same times (`backup --time`). The history is made untimed (iebs in this
 * process with the engine's clock set, restic as a command); then each tool forgets with
 * the same rules and prunes, timed in a fresh process under /usr/bin/time.
 *
 *   npm run build && node dist/bench/forget.js [--files 100000] [--snapshots 200] [--max-increments 19] [--dir /path/with/space]
 */
import { spawnSync } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { backup } from '../engine/backup/backup.js';
import { keygen, loadBackupKey } from '../engine/crypto/keys.js';
import { initRepo } from '../engine/repo/repo.js';
import { openStorage } from '../engine/storage/open.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : dflt; };
const FILES = Number(opt('files', '100000'));
const SNAPSHOTS = Number(opt('snapshots', '200'));
const MAX_INCREMENTS = Number(opt('max-increments', '19'));
const CHANGED = 20;
const RULES = ['--keep-daily', '7', '--keep-weekly', '4', '--keep-monthly', '3'];
const TIME = '/usr/bin/time';
const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));
for (const n of [FILES, SNAPSHOTS, MAX_INCREMENTS]) if (!Number.isInteger(n) || n < 0) throw new Error('--files, --snapshots and --max-increments take whole numbers');
if (!existsSync(TIME)) throw new Error(`${TIME} not found (apt-get install -y time)`);
if (spawnSync('restic', ['version']).status !== 0) throw new Error('restic not found (apt-get install -y restic)');
const base = mkdtempSync(join(opt('dir', tmpdir()), 'iebs-forget-bench-'));
const log = (s: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${s}`);

/** Size of small file i: 100 to 4099 bytes. */
const size = (i: number) => 100 + ((i * 7919) % 4000);
const keystream = (seed: number) => { const c = createCipheriv('aes-128-ctr', Buffer.alloc(16, seed), Buffer.alloc(16)); return (n: number) => c.update(Buffer.alloc(n)); };
const file = (src: string, i: number) => join(src, String(Math.floor(i / 1000)), `f${i}.txt`);

function makeTree(src: string): number {
  const next = keystream(1);
  let bytes = 0;
  for (let i = 0; i < FILES; i++) {
    if (i % 1000 === 0) mkdirSync(join(src, String(i / 1000)), { recursive: true });
    writeFileSync(file(src, i), next(size(i)));
    bytes += size(i);
  }
  return bytes;
}

/** One tool's forget --prune: wall and CPU seconds, peak RSS. */
interface Sample { seconds: number; cpuSeconds: number; peakRssMiB: number; stdout: string }
function timed(cmd: string, argv: string[], env: NodeJS.ProcessEnv): Sample {
  const out = join(base, 'time.txt');
  const r = spawnSync(TIME, ['-f', '%e %U %S %M', '-o', out, cmd, ...argv], { env, encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')}: exit ${r.status}: ${r.stderr}`);
  const [seconds, user, sys, rss] = readFileSync(out, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
  return { seconds, cpuSeconds: user + sys, peakRssMiB: rss / 1024, stdout: r.stdout };
}
const du = (p: string) => Number(spawnSync('du', ['-sb', p], { encoding: 'utf8' }).stdout.split('\t')[0]);

async function main(): Promise<void> {
  log(`load average at start: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const src = join(base, 'src');
  const bytes = makeTree(src);
  log(`generated ${FILES} files (${(bytes / 2 ** 20).toFixed(0)} MiB)`);
  await keygen({ out: join(base, 'keys'), name: 'bench' });
  const bk = await loadBackupKey(join(base, 'keys', 'backup.key'));
  const repo = join(base, 'iebs-repo');
  const storage = openStorage(repo);
  await initRepo(storage, bk.publicArmored, BigInt(Date.now()) * 1_000_000n);
  const restic = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RESTIC_'))), RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: join(base, 'restic-repo'), RESTIC_CACHE_DIR: join(base, 'restic-cache') };
  if (spawnSync('restic', ['init', '-q'], { env: restic }).status !== 0) throw new Error('restic init failed');
  const next = keystream(2);
  const day = 86_400_000;
  const first = Date.now() - SNAPSHOTS * day;
  for (let s = 0; s < SNAPSHOTS; s++) {
    for (let k = 0; k < CHANGED && s > 0; k++) { const i = (s * 7919 + k * 104729) % FILES; writeFileSync(file(src, i), next(size(i))); }
    const t = first + s * day;
    await backup(storage, bk, { sources: [src], system: 'bench', volumeSize: 1024 ** 3, maxIncrements: MAX_INCREMENTS, now: () => BigInt(t) * 1_000_000n, cacheDir: join(base, 'iebs-cache') });
    const when = new Date(t).toISOString().slice(0, 19).replace('T', ' ');
    const r = spawnSync('restic', ['backup', '-q', '--time', when, '--host', 'bench', src], { env: restic, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`restic backup: ${r.stderr}`);
    if (s % 20 === 19) log(`${s + 1} of ${SNAPSHOTS} snapshots made by each tool`);
  }
  await storage.close();
  const before = { iebs: du(repo), restic: du(restic.RESTIC_REPOSITORY) };
  log(`history made: iebs ${(before.iebs / 2 ** 20).toFixed(0)} MiB, restic ${(before.restic / 2 ** 20).toFixed(0)} MiB; load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);

  const iebs = timed(process.execPath, [CLI, 'forget', '--repo', repo, '--key', join(base, 'keys', 'restore.key'), ...RULES, '--prune', '--json'], { ...process.env, IEBS_PASSPHRASE: undefined });
  const resticRun = timed('restic', ['forget', '-q', ...RULES, '--prune'], restic);
  const after = { iebs: du(repo), restic: du(restic.RESTIC_REPOSITORY) };
  const r = JSON.parse(iebs.stdout);
  const iebsGone = r.plans.reduce((a: number, p: { removed: string[] }) => a + p.removed.length, 0);
  const resticLeft = JSON.parse(spawnSync('restic', ['snapshots', '--json'], { env: restic, encoding: 'utf8' }).stdout).length;
  const freed = { iebs: before.iebs - after.iebs, restic: before.restic - after.restic };
  const mibs = (b: number, s: number) => (b / 2 ** 20 / s).toFixed(1);
  const rows = [
    ['tool', 'snapshots removed', 'freed MiB', 'seconds', 'freed MiB/s', 'CPU s', 'peak RSS MiB'],
    ['iebs', `${iebsGone} of ${SNAPSHOTS}`, (freed.iebs / 2 ** 20).toFixed(1), iebs.seconds.toFixed(2), mibs(freed.iebs, iebs.seconds), iebs.cpuSeconds.toFixed(2), iebs.peakRssMiB.toFixed(0)],
    ['restic', `${SNAPSHOTS - resticLeft} of ${SNAPSHOTS}`, (freed.restic / 2 ** 20).toFixed(1), resticRun.seconds.toFixed(2), mibs(freed.restic, resticRun.seconds), resticRun.cpuSeconds.toFixed(2), resticRun.peakRssMiB.toFixed(0)],
  ];
  console.log(`\nforget --prune ${RULES.join(' ')}, ${FILES} files, ${SNAPSHOTS} daily snapshots, iebs --max-increments ${MAX_INCREMENTS}`);
  for (const row of rows) console.log(`| ${row.join(' | ')} |`);
  console.log(`ratios iebs/restic: seconds ${(iebs.seconds / resticRun.seconds).toFixed(2)}, CPU ${(iebs.cpuSeconds / resticRun.cpuSeconds).toFixed(2)}, peak RSS ${(iebs.peakRssMiB / resticRun.peakRssMiB).toFixed(2)}`);
  console.log(`load average at the end: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  rmSync(base, { recursive: true, force: true });
}

await main();
