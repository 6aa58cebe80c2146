/**
 * Scale benchmark (not part of npm test): time, CPU and peak RSS of a full backup, an
 * unchanged increment and a restore for trees of many small files (1000 per directory),
 * and for one large file. Each step runs in a fresh process: iebs through
 * bench/run-once.ts, and restic (when installed, unless --only iebs) on the same tree
 * under /usr/bin/time, with iebs/restic ratios of seconds and peak RSS. restic's seconds
 * include its process start and password key derivation (about 0.8 s on a 2-CPU VM);
 * iebs's are taken inside run-once, without Node's start and module loading (about
 * 0.25 s), so on small corpora the seconds ratio flatters iebs.
 *
 * With --cpus LIST (e.g. 1,2,all) each corpus is measured at each core count: every
 * step's process (iebs's run-once and restic alike) runs under `taskset -c 0` for 1,
 * `taskset -c 0,1` for 2, without taskset for all (bench/shared.ts), and a table is
 * printed per core count, then the seconds side by side. With --usr, a copy of /usr (or
 * of --usr-parts share,lib, at most --usr-max-mib MiB of it) is measured beside the
 * file-count corpora: symbolic links and all, as tar copies it.
 *
 * The page cache is left as it is unless --cold: the trees were just written, so the
 * steps measure CPU more than the disk. With --cold (as root) it is dropped before every
 * step of either tool, as `npm run bench` does.
 *
 *   npm run bench:scale -- [--files 10000,100000] [--big-mib 4096] [--only iebs|all] [--dir /path/with/space]
 *                          [--cpus 1,2,all] [--usr [--usr-parts share,lib] [--usr-max-mib N]] [--cold]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync, openSync, writeSync, closeSync, existsSync } from 'node:fs';
import { createCipheriv } from 'node:crypto';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { keygen } from '../engine/crypto/keys.js';
import { BenchError, copyUsr, parseCpus, usrOptions, type CpuSet } from './shared.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : dflt; };
// `--files 0` runs no small-file corpus.
const counts = opt('files', '10000,100000').split(',').filter(Boolean).map(Number).filter((n) => n !== 0);
const bigMiB = Number(opt('big-mib', '4096'));
const only = opt('only', 'all');
if (!counts.every((n) => Number.isInteger(n) && n > 0)) throw new Error('--files takes positive integers, comma-separated');
if (!Number.isInteger(bigMiB) || bigMiB < 0) throw new Error('--big-mib takes a whole number of MiB (0 to skip)');
if (only !== 'iebs' && only !== 'all') throw new Error('--only takes iebs or all');
const cpuSets = parseCpus(opt('cpus', 'all'));
const many = cpuSets.length > 1 || cpuSets[0].label !== 'all';
const withUsr = args.includes('--usr');
const cold = args.includes('--cold');
const usr = usrOptions(opt('usr-parts', ''), opt('usr-max-mib', '0'));
const TIME = '/usr/bin/time';
const FILES_PER_DIR = 1000;
const runner = fileURLToPath(new URL('./run-once.js', import.meta.url));
const withRestic = only === 'all' && resticInstalled();
// The folder given with --dir is made if missing, as a place for the corpora.
const baseParent = opt('dir', tmpdir());
mkdirSync(baseParent, { recursive: true });
const base = mkdtempSync(join(baseParent, 'iebs-scale-'));

const STEPS = ['full backup', 'unchanged increment', 'restore'] as const;
type Step = (typeof STEPS)[number];
/** One step of one tool: wall seconds, user + system CPU seconds, peak RSS in MiB. */
interface Sample { seconds: number; cpuSeconds: number; peakRssMiB: number }
type Samples = Record<Step, Sample>;
/** One tree to back up: its label in the table, where it is, its file count and total bytes. */
interface Corpus { label: string; src: string; files: number; bytes: number }

/** True when restic can run here; says on stderr why restic rows are missing otherwise. */
function resticInstalled() {
  if (spawnSync('restic', ['version']).status !== 0) {
    console.error('restic not found (apt-get install -y restic): iebs rows only');
    return false;
  }
  if (!existsSync(TIME)) throw new Error(`${TIME} not found: apt-get install -y time, or run with --only iebs`);
  return true;
}

/** With --cold, writes out what is dirty and drops the page cache (root only); a no-op otherwise. */
function dropCaches() {
  if (!cold) return;
  spawnSync('sync');
  try { writeFileSync('/proc/sys/vm/drop_caches', '3'); } catch (e) {
    throw new Error(`--cold drops the page cache, which needs root: ${(e as Error).message}`);
  }
}

/** Deterministic, incompressible-ish bytes: AES-CTR keystream. */
function stream(seed: number) {
  const c = createCipheriv('aes-128-ctr', Buffer.alloc(16, seed), Buffer.alloc(16));
  return (n: number) => c.update(Buffer.alloc(n));
}

/** Size in bytes of small file number i: 100 to 4099, spread evenly. */
const smallSize = (i: number) => 100 + ((i * 7919) % 4000);

/**
 * Writes n small files into src/<i / 1000>/f<i>.txt, their bytes one keystream taken a
 * directory at a time (the same bytes as one read per file); returns their total size.
 */
function makeSmallFiles(src: string, n: number) {
  const t0 = performance.now();
  const next = stream(n % 251);
  let bytes = 0;
  for (let first = 0; first < n; first += FILES_PER_DIR) {
    const dir = join(src, String(first / FILES_PER_DIR));
    mkdirSync(dir, { recursive: true });
    const last = Math.min(n, first + FILES_PER_DIR);
    let dirBytes = 0;
    for (let i = first; i < last; i++) dirBytes += smallSize(i);
    const block = next(dirBytes);
    let at = 0;
    for (let i = first; i < last; i++) writeFileSync(`${dir}/f${i}.txt`, block.subarray(at, (at += smallSize(i))));
    bytes += dirBytes;
  }
  console.error(`generated ${n} small files (${(bytes / 1048576).toFixed(0)} MiB) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return bytes;
}

/** Writes one file of mib MiB into src/big.bin. */
function makeBigFile(src: string, mib: number) {
  const t0 = performance.now();
  mkdirSync(src);
  const fd = openSync(join(src, 'big.bin'), 'w');
  const next = stream(7);
  for (let i = 0; i < mib; i++) writeSync(fd, next(1048576));
  closeSync(fd);
  console.error(`generated one ${mib} MiB file in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/** Runs one iebs step in a fresh process (bench/run-once.ts), under the core count's taskset, and returns its sample. */
function iebsStep(argv: string[], cache: string, cpu: CpuSet): Sample {
  const cmd = [...cpu.prefix, process.execPath, runner, ...argv];
  dropCaches();
  const r = spawnSync(cmd[0], cmd.slice(1), { encoding: 'utf8', maxBuffer: 1 << 24, env: { ...process.env, IEBS_CACHE_DIR: cache } });
  if (r.status !== 0) throw new Error(`${argv[0]} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

/** The three iebs steps on the corpus, with fresh keys, repository and cache (removed afterwards), as restic has. */
async function runIebs(c: Corpus, cpu: CpuSet): Promise<Samples> {
  const { label, src } = c;
  const keys = join(base, `keys-${label}`);
  await keygen({ out: keys, name: 'bench' });
  const repo = join(base, `repo-${label}`);
  const out = join(base, `out-${label}`);
  const cache = join(base, `iebs-cache-${label}`);
  const argv: Record<Step, string[]> = {
    'full backup': ['backup', src, repo, join(keys, 'backup.key')],
    'unchanged increment': ['backup', src, repo, join(keys, 'backup.key')],
    restore: ['restore', repo, join(keys, 'restore.key'), out],
  };
  const samples = {} as Samples;
  for (const name of STEPS) progress(c, cpu, 'iebs', name, (samples[name] = iebsStep(argv[name], cache, cpu)));
  for (const p of [keys, repo, out, cache]) rmSync(p, { recursive: true, force: true });
  return samples;
}

/** Runs restic with env under /usr/bin/time and the core count's taskset; returns its sample and stdout. */
function resticStep(argv: string[], env: NodeJS.ProcessEnv, cpu: CpuSet): { sample: Sample; stdout: string } {
  const timeFile = join(base, 'time.txt');
  const cmd = [...cpu.prefix, TIME, '-f', '%e %U %S %M', '-o', timeFile, 'restic', ...argv];
  if (argv[0] !== 'init') dropCaches();
  const r = spawnSync(cmd[0], cmd.slice(1), { env, encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`restic ${argv[0]} failed: ${r.stderr}`);
  const [seconds, user, sys, rssKiB] = readFileSync(timeFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
  return { sample: { seconds, cpuSeconds: user + sys, peakRssMiB: rssKiB / 1024 }, stdout: r.stdout };
}

/** Warns on stderr when restic's backup summary does not show the files the step expects. */
function checkSummary(name: Step, stdout: string, files: number) {
  const s = JSON.parse(stdout.trim().split('\n').pop()!);
  const seen = name === 'full backup' ? s.files_new : s.files_unmodified;
  if (seen !== files) console.error(`warning: restic ${name} saw ${seen} of ${files} files as ${name === 'full backup' ? 'new' : 'unmodified'}`);
}

/** The three restic steps on the corpus (after an untimed `restic init`), repository and cache removed afterwards. */
function runRestic(c: Corpus, cpu: CpuSet): Samples {
  const { label, src } = c;
  const repo = join(base, `restic-repo-${label}`);
  const cache = join(base, `restic-cache-${label}`);
  const out = join(base, `restic-out-${label}`);
  const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RESTIC_'))), RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: repo, RESTIC_CACHE_DIR: cache };
  resticStep(['init', '-q'], env, cpu);
  const argv: Record<Step, string[]> = {
    'full backup': ['backup', '--json', '-q', src],
    'unchanged increment': ['backup', '--json', '-q', src],
    restore: ['restore', 'latest', '--target', out, '-q'],
  };
  const samples = {} as Samples;
  for (const name of STEPS) {
    const { sample, stdout } = resticStep(argv[name], env, cpu);
    if (name !== 'restore') checkSummary(name, stdout, c.files);
    progress(c, cpu, 'restic', name, (samples[name] = sample));
  }
  for (const p of [repo, cache, out]) rmSync(p, { recursive: true, force: true });
  return samples;
}

const HEAD = ['corpus', 'tool', 'step', 'seconds', 'MiB/s', 'CPU s', 'peak RSS MiB', 'seconds iebs/restic', 'RSS iebs/restic'];
/** The table of each core count (--cpus label), and every sample by core count, corpus, tool and step for the scaling table. */
const tables = new Map<string, string[][]>(cpuSets.map((c) => [c.label, [HEAD]]));
const seconds = new Map<string, number>();
const corpora: string[] = [];

/** One table row; the ratio columns are filled when the restic sample of the step is given. */
function row(c: Corpus, tool: string, name: Step, s: Sample, vs?: Sample) {
  const moved = name === 'unchanged increment' ? 0 : c.bytes;
  return [
    c.label, tool, name, s.seconds.toFixed(2), moved ? (moved / 1048576 / s.seconds).toFixed(0) : '-', s.cpuSeconds.toFixed(2), s.peakRssMiB.toFixed(0),
    vs ? (s.seconds / vs.seconds).toFixed(2) : '-', vs ? (s.peakRssMiB / vs.peakRssMiB).toFixed(2) : '-',
  ];
}

/** Prints a step's row (without ratios) to stderr as soon as it is measured. */
function progress(c: Corpus, cpu: CpuSet, tool: string, name: Step, s: Sample) {
  console.error(`${many ? `[cpus ${cpu.label}] ` : ''}${row(c, tool, name, s).slice(0, 7).join('  ')}`);
}

/** Measures every tool on one corpus at each core count and adds its rows, iebs beside restic step by step. */
async function measure(c: Corpus) {
  corpora.push(c.label);
  // The corpus was just written: its dirty pages go to disk now, not during the first
  // tool's backup (iebs's 4 GiB file took 22.8 s against restic's 16.3 while the kernel
  // wrote the file out; written out, and with the cache dropped before each, 14.6 and
  // 16.4 s against 18.4 and 19.8).
  spawnSync('sync');
  for (const cpu of cpuSets) {
    const iebs = await runIebs(c, cpu);
    const restic = withRestic ? runRestic(c, cpu) : undefined;
    const rows = tables.get(cpu.label)!;
    for (const name of STEPS) {
      rows.push(row(c, 'iebs', name, iebs[name], restic?.[name]));
      seconds.set(`${cpu.label}|${c.label}|iebs|${name}`, iebs[name].seconds);
      if (restic) { rows.push(row(c, 'restic', name, restic[name])); seconds.set(`${cpu.label}|${c.label}|restic|${name}`, restic[name].seconds); }
    }
  }
}

const print = (rows: string[][]) => {
  const width = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(width[i])).join('  ').trimEnd());
};

const start = `${cpus().length} CPUs, load average ${loadavg()[0].toFixed(2)}; restic ${withRestic ? 'included' : 'skipped'}; page cache ${cold ? 'dropped before each step' : 'warm (not dropped)'}`;
console.error(start);
if (many) console.error(`cpus: ${cpuSets.map((c) => c.about).join('; ')}`);
let usrAbout = '';
try {
  for (const n of counts) {
    const src = join(base, `files-${n}`);
    await measure({ label: `${n} small files`, src, files: n, bytes: makeSmallFiles(src, n) });
    rmSync(src, { recursive: true, force: true });
  }
  if (withUsr) {
    const src = join(base, 'usr');
    const copy = copyUsr(src, { ...usr, spaceFactor: 3 });
    usrAbout = copy.about;
    console.error(usrAbout);
    await measure({ label: `/usr copy (${copy.files} files)`, src, files: copy.files, bytes: copy.bytes });
    rmSync(src, { recursive: true, force: true });
  }
  if (bigMiB > 0) {
    const src = join(base, 'big');
    makeBigFile(src, bigMiB);
    await measure({ label: `one ${bigMiB} MiB file`, src, files: 1, bytes: bigMiB * 1048576 });
  }
} catch (e) {
  if (!(e instanceof BenchError)) throw e;
  console.error(e.message);
  process.exitCode = 2;
} finally {
  rmSync(base, { recursive: true, force: true });
}
if (process.exitCode !== 2) {
  if (many) {
    console.log(`${start}; load average at end ${loadavg()[0].toFixed(2)}`);
    console.log(`cpus: ${cpuSets.map((c) => c.about).join('; ')}; every step's process pinned so`);
  }
  if (usrAbout) console.log(`/usr corpus: ${usrAbout}`);
  if (many || usrAbout) console.log('');
  for (const cpu of cpuSets) {
    if (many) { console.log(`== cpus ${cpu.about}`); console.log(''); }
    print(tables.get(cpu.label)!);
    if (many) console.log('');
  }
  // Scaling: the seconds of each corpus, tool and step at each core count, and the speed-up over the first count.
  if (cpuSets.length > 1) {
    const first = cpuSets[0].label;
    const scaling: string[][] = [['corpus', 'tool', 'step', ...cpuSets.map((c) => `cpus ${c.label} s`), ...cpuSets.slice(1).map((c) => `speed-up ${c.label}/${first}`)]];
    for (const label of corpora) {
      for (const tool of withRestic ? ['iebs', 'restic'] : ['iebs']) {
        for (const name of STEPS) {
          const at = (cpu: string) => seconds.get(`${cpu}|${label}|${tool}|${name}`);
          const s0 = at(first);
          scaling.push([label, tool, name, ...cpuSets.map((c) => at(c.label)?.toFixed(2) ?? '-'),
            ...cpuSets.slice(1).map((c) => { const s = at(c.label); return s0 !== undefined && s ? `${(s0 / s).toFixed(2)}x` : '-'; })]);
        }
      }
    }
    console.log('== scaling (seconds by core count; speed-up >1: faster than at the first count)');
    console.log('');
    print(scaling);
  }
}
