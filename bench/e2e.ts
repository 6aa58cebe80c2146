/**
 * End-to-end benchmark (not part of npm test): iebs against restic and borg on one
 * corpus, in one run, with the same steps for each tool: full backup, a scripted ~1%
 * mutation of the source, incremental backup, restore of the latest snapshot into a
 * fresh directory (checked file by file against the source), and the repository check.
 * A `tar | cat` read of the source gives the rate the disk and file system allow.
 *
 * Each step is one child process run under /usr/bin/time (wall time, user+sys CPU and
 * peak RSS of the child), with the page cache dropped before it when the kernel lets us.
 * restic and borg run when they are on the PATH; a tool that fails is reported and the
 * others go on. Nothing is installed and nothing is written outside the temp directory.
 *
 *   npm run bench -- [--size-mib 1024] [--source PATH] [--dir /path/with/space]
 *                        [--tools iebs,restic,borg] [--rounds N] [--keep] [--repo-kind local|s3 [--s3-delay-ms N]]
 *                        [--corpus generated|usr [--usr-parts share,lib] [--usr-max-mib N]] [--cpus 1,2,all]
 *                        [--baseline DIR]
 *   npm run bench -- --generate DIR [--size-mib N]   (writes the corpus only, for profiling)
 *
 * The generated corpus (deterministic) is shaped like a home directory: 60% of the bytes
 * source-like text in ~40k files per GiB, 20% semi-compressible binaries, 20%
 * incompressible video in a few big files. With --source the given tree is never
 * modified: the incremental is then an unchanged one.
 *
 * With --rounds N, the full backup (each time into a fresh repository), the restore and
 * the check run N times per tool, the tools taking turns, and the tables show each
 * tool's median run: on a machine shared with others, a burst of load then hits one run
 * of a tool rather than the tool's only run. The incremental too: each tool's repository
 * and cache are copied before its first round and put back before each later one (on
 * S3, the prefix's folder on the server), so every round backs up the same change.
 *
 * With --corpus usr the source is a copy of /usr (bench/shared.ts: tar, as `cp -a`, after
 * a df check; share and lib only when the whole does not fit; --usr-parts names the
 * top-level folders, --usr-max-mib caps the copy for a short run), and the same scripted
 * mutation changes it, its files chosen by sorted path (scan).
 *
 * With --cpus LIST (e.g. 1,2,all), the whole run (tar read, full backup, mutation,
 * incremental, restore, check) happens once per core count, from fresh repositories and a
 * fresh copy of the source, every step under `taskset -c 0` (1), `taskset -c 0,1` (2) or
 * no taskset (all); the tables and ratios are printed per count, then a scaling table.
 *
 * With --baseline DIR (a built checkout of another commit: `git worktree add DIR COMMIT`,
 * then `npm ci && npm run build` there), that build runs as one more tool, `iebs@COMMIT`,
 * taking its turns with the others, so a change is measured against the commit before it
 * in one run, with the same ratios as against restic.
 *
 * With --repo-kind s3, iebs and restic write to the tests' S3-protocol server (s3rver
 * behind test/s3-server-main.ts) on loopback, each full backup under a fresh prefix; the
 * repository size is that of the server's folder for the prefix (borg has no S3 backend
 * and is left out). The server runs on the same two cores, so the times include it.
 * With --s3-delay-ms N as well, both tools reach the server through a loopback proxy
 * that holds each piece of data N ms in each direction (bench/delay-proxy.ts): a round
 * trip of 2N ms, as to a store in another place.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import {
  accessSync, closeSync, constants, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync,
  readlinkSync, readSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync, appendFileSync,
} from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { basename, delimiter, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startS3Server, type S3Server } from '../test/s3-server.js';
import { startDelayProxy, type DelayProxy } from './delay-proxy.js';
import { BenchError, copyUsr, fail, parseCpus, usrOptions } from './shared.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : dflt; };
const flag = (name: string) => args.includes(`--${name}`);
const sizeMiB = Number(opt('size-mib', '1024'));
const givenSource = opt('source', '');
const keep = flag('keep');
const wanted = opt('tools', 'iebs,restic,borg').split(',').filter(Boolean);
const rounds = Number(opt('rounds', '1'));
const repoKind = opt('repo-kind', 'local');
if (repoKind !== 'local' && repoKind !== 's3') throw new Error('--repo-kind takes local or s3');
const s3DelayMs = Number(opt('s3-delay-ms', '0'));
if (!Number.isInteger(s3DelayMs) || s3DelayMs < 0 || s3DelayMs > 1000) throw new Error('--s3-delay-ms takes a whole number of milliseconds from 0 to 1000');
if (s3DelayMs && repoKind !== 's3') throw new Error('--s3-delay-ms needs --repo-kind s3');
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) throw new Error('--rounds takes a whole number from 1 to 20');
const corpusKind = opt('corpus', 'generated');
if (corpusKind !== 'generated' && corpusKind !== 'usr') fail(`--corpus ${corpusKind}: takes generated or usr`);
if (corpusKind === 'usr' && givenSource) fail('--corpus usr and --source PATH: give one of them');
const usr = usrOptions(opt('usr-parts', ''), opt('usr-max-mib', '0'));
const cpuSets = parseCpus(opt('cpus', 'all'));
const cli = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const baseline = opt('baseline', '');
if (baseline && !existsSync(join(baseline, 'dist', 'cli', 'main.js'))) fail(`--baseline ${baseline}: no dist/cli/main.js there (build that checkout first)`);
const MiB = 1048576;
const TIME = '/usr/bin/time';

// ---------------------------------------------------------------------------------------
// Deterministic data

/** mulberry32: a small seeded PRNG; returns floats in [0, 1). */
function prng(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Incompressible bytes: AES-CTR keystream, as in bench/scale.ts. */
function keystream(seed: number) {
  const c = createCipheriv('aes-128-ctr', Buffer.alloc(16, seed), Buffer.alloc(16));
  return (n: number) => c.update(Buffer.alloc(n));
}

const WORDS = ('value index count buffer result error state config options item list map key name path file ' +
  'data size offset length start end node tree parent child entry record block chunk volume stream reader writer ' +
  'handle open close read write flush sync lock unlock retry timeout limit queue task job worker pool cache store ' +
  'load save parse format encode decode check verify hash digest sign seal token user group mode time date').split(' ');
const KEYWORDS = ['const', 'let', 'return', 'await', 'if', 'for', 'while', 'export', 'function', 'import', 'new', 'throw'];

/** Source-like text of exactly `size` bytes from a small vocabulary (compresses ~3-4x). */
function sourceText(rand: () => number, size: number): Buffer {
  const pick = <T>(a: readonly T[]) => a[Math.floor(rand() * a.length)];
  const id = () => { const w = pick(WORDS); return rand() < 0.5 ? w : w + pick(WORDS).replace(/^./, (c) => c.toUpperCase()); };
  const lines: string[] = [];
  let n = 0;
  let depth = 0;
  while (n < size) {
    const ind = '  '.repeat(depth);
    const r = rand();
    let line: string;
    if (r < 0.22) line = `${ind}const ${id()} = ${id()}(${id()}, ${Math.floor(rand() * 1000)});`;
    else if (r < 0.36) { line = `${ind}if (${id()}.${id()} === ${id()}) {`; if (depth < 5) depth++; }
    else if (r < 0.48 && depth > 0) { depth--; line = `${'  '.repeat(depth)}}`; }
    else if (r < 0.60) line = `${ind}// ${pick(WORDS)} ${pick(WORDS)} ${pick(WORDS)} ${pick(WORDS)} ${pick(WORDS)}`;
    else if (r < 0.72) line = `${ind}${pick(KEYWORDS)} ${id()}.${id()}(${id()});`;
    else if (r < 0.80) line = `${ind}${id()}[${Math.floor(rand() * 64)}] = '${pick(WORDS)}-${Math.floor(rand() * 100000)}';`;
    else if (r < 0.86) line = `import { ${id()}, ${id()} } from './${pick(WORDS)}.js';`;
    else if (r < 0.92) line = '';
    else line = `${ind}${id()} += ${id()}.length * ${Math.floor(rand() * 16)};`;
    lines.push(line);
    n += line.length + 1;
  }
  return Buffer.from(lines.join('\n') + '\n').subarray(0, size);
}

/** Semi-compressible binary of `size` bytes: 64-byte records, a quarter of each random. */
function records(rand: () => number, noise: (n: number) => Buffer, size: number): Buffer {
  const TAGS = ['temperature', 'humidity', 'pressure', 'voltage', 'current', 'rpm', 'flow', 'level'].map((t) => Buffer.from(t.padEnd(16, '\0')));
  const out = Buffer.alloc(size);
  const rnd = noise(Math.ceil(size / 64) * 16);
  let t = 1_700_000_000;
  for (let i = 0, off = 0; off + 64 <= size; i++, off += 64) {
    out.writeUInt32LE(i, off);
    out.writeUInt32LE((t += 60 + Math.floor(rand() * 4)), off + 4);
    TAGS[i & 7].copy(out, off + 8);
    out.writeDoubleLE(Math.round(rand() * 2000) / 10, off + 24);
    rnd.copy(out, off + 32, i * 16, i * 16 + 16);
    out.writeUInt16LE(i % 977, off + 48);
  }
  return out;
}

/** `n` sizes summing to `total`, skewed like real files (many small, some large). */
function sizes(rand: () => number, n: number, total: number, minSize: number): number[] {
  const w = Array.from({ length: n }, () => Math.exp(rand() * 5));
  const sum = w.reduce((a, b) => a + b, 0);
  return w.map((x) => Math.max(minSize, Math.round((x * total) / sum)));
}

/**
 * A tree the mutation can change: `text` are the files it appends to, edits, renames and
 * deletes (in a seeded shuffle of their order), `bins` the ones it edits in place (the
 * first two) and deletes (the last), `big[0]` the one it inserts 100 bytes into; new
 * files go into `fresh`, a new binary at `newBin`, and `moveDir` (when there is one) is
 * the folder it renames.
 */
interface Corpus {
  text: string[]; bins: string[]; big: string[]; bytes: number; textBytes: number; binBytes: number; bigBytes: number;
  fresh: string; newBin: string; moveDir: string;
}

/** Writes the generated corpus of about `mib` MiB under `root`. */
function generate(root: string, mib: number): Corpus {
  const rand = prng(1);
  const total = mib * MiB;
  const c: Corpus = {
    text: [], bins: [], big: [], bytes: 0, textBytes: 0, binBytes: 0, bigBytes: 0,
    fresh: join(root, 'projects', 'new-work'), newBin: join(root, 'data', 'sensor-new.db'), moveDir: join(root, 'projects', 'p0', 'm1'),
  };
  const exts = ['ts', 'ts', 'js', 'md', 'txt', 'c', 'h', 'py', 'json'];
  const textSizes = sizes(rand, Math.max(10, Math.round((40000 * mib) / 1024)), Math.round(total * 0.6), 64);
  textSizes.forEach((size, i) => {
    const d = Math.floor(i / 40);
    const dir = join(root, 'projects', `p${Math.floor(d / 25)}`, `m${d % 25}`);
    if (i % 40 === 0) mkdirSync(dir, { recursive: true });
    const path = join(dir, `${WORDS[i % WORDS.length]}-${i}.${exts[i % exts.length]}`);
    writeFileSync(path, sourceText(rand, size));
    c.text.push(path);
    c.textBytes += size;
  });
  const noise = keystream(2);
  mkdirSync(join(root, 'data'), { recursive: true });
  sizes(rand, Math.max(2, Math.round((25 * mib) / 1024)), Math.round(total * 0.2), 4096).forEach((size, i) => {
    const path = join(root, 'data', `sensor-${String(i).padStart(2, '0')}.db`);
    writeFileSync(path, records(rand, noise, size));
    c.bins.push(path);
    c.binBytes += size;
  });
  mkdirSync(join(root, 'Videos'), { recursive: true });
  const bigEach = Math.max(MiB, Math.round((total * 0.2) / 3));
  const video = keystream(3);
  for (let i = 0; i < 3; i++) {
    const path = join(root, 'Videos', `holiday-${i + 1}.mp4`);
    const fd = openSync(path, 'w');
    for (let left = bigEach; left > 0; left -= MiB) writeSync(fd, video(Math.min(MiB, left)));
    closeSync(fd);
    c.big.push(path);
    c.bigBytes += bigEach;
  }
  c.bytes = c.textBytes + c.binBytes + c.bigBytes;
  return c;
}

/**
 * An existing tree (the /usr copy) as a Corpus, every choice by sorted path: the three
 * largest regular files are `big` (ties by path), the other files of 256 KiB or more
 * `bins`, the rest `text`; `moveDir` is the middle one, in sorted order, of the folders
 * that hold files and no folders. Symbolic links are left alone.
 */
function scan(root: string): Corpus {
  const files: { path: string; size: number }[] = [];
  const leaves: string[] = [];
  const walk = (dir: string) => {
    let sub = 0, held = 0;
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const st = lstatSync(p);
      if (st.isDirectory()) { sub++; walk(p); } else if (st.isFile()) { held++; files.push({ path: p, size: st.size }); }
    }
    if (sub === 0 && held > 0 && dir !== root) leaves.push(dir);
  };
  walk(root);
  leaves.sort();
  const big = new Set([...files].sort((a, b) => b.size - a.size || (a.path < b.path ? -1 : 1)).slice(0, 3).map((f) => f.path));
  const c: Corpus = {
    text: [], bins: [], big: [...big], bytes: 0, textBytes: 0, binBytes: 0, bigBytes: 0,
    fresh: join(root, 'new-work'), newBin: join(root, 'new-work', 'records-new.db'), moveDir: leaves[Math.floor(leaves.length / 2)] ?? '',
  };
  for (const f of files) {
    c.bytes += f.size;
    if (big.has(f.path)) c.bigBytes += f.size;
    else if (f.size >= 256 * 1024) { c.bins.push(f.path); c.binBytes += f.size; }
    else { c.text.push(f.path); c.textBytes += f.size; }
  }
  return c;
}

/** The scripted ~1% mutation; deterministic. Returns a one-line description. */
function mutate(root: string, c: Corpus): string {
  const rand = prng(7);
  const noise = keystream(9);
  const order = [...c.text];
  for (let i = order.length - 1; i > 0; i--) { const j = Math.floor(rand() * (i + 1)); [order[i], order[j]] = [order[j], order[i]]; }
  const n = Math.max(1, Math.round(c.text.length / 200));
  let at = 0;
  const take = (k: number) => order.slice(at, (at += k));
  let added = 0;
  const appends = take(n);
  for (const p of appends) { const b = sourceText(rand, 256 + Math.floor(rand() * 3840)); appendFileSync(p, b); added += b.length; }
  const edits = take(n);
  for (const p of edits) {
    const size = statSync(p).size;
    if (size < 128) continue;
    const fd = openSync(p, 'r+');
    writeSync(fd, sourceText(rand, 64), 0, 64, Math.floor(size / 2));
    closeSync(fd);
  }
  for (const p of c.bins.slice(0, 2)) {
    const size = statSync(p).size;
    const fd = openSync(p, 'r+');
    for (const f of [0.1, 0.5, 0.9]) writeSync(fd, noise(4096), 0, 4096, Math.max(0, Math.floor(size * f) - 4096));
    closeSync(fd);
  }
  if (c.big.length > 0) {
    const big = readFileSync(c.big[0]);
    writeFileSync(c.big[0], Buffer.concat([big.subarray(0, 4096), noise(100), big.subarray(4096)]));
    added += 100;
  }
  const renames = take(Math.ceil(n / 2));
  for (const p of renames) renameSync(p, join(dirname(p), `renamed-${basename(p)}`));
  const deletes = take(Math.ceil(n / 2));
  for (const p of deletes) unlinkSync(p);
  const binGone = c.bins.length > 0 ? 1 : 0;
  if (binGone) unlinkSync(c.bins[c.bins.length - 1]);
  mkdirSync(c.fresh, { recursive: true });
  const news = Math.ceil(n / 2);
  for (let i = 0; i < news; i++) { const b = sourceText(rand, 1024 + Math.floor(rand() * 30000)); writeFileSync(join(c.fresh, `draft-${i}.ts`), b); added += b.length; }
  const newBin = records(rand, noise, Math.max(4096, Math.round(c.bytes * 0.005)));
  writeFileSync(c.newBin, newBin);
  added += newBin.length;
  if (c.moveDir) renameSync(c.moveDir, `${c.moveDir}-moved`);
  return `${appends.length} appends, ${edits.length} text + ${Math.min(2, c.bins.length)} binary in-place edits, ` +
    `${c.big.length ? `100 bytes inserted at 4 KiB into ${relative(root, c.big[0])}` : 'no large file to insert into'}, ` +
    `${renames.length} file renames + ${c.moveDir ? `1 directory rename (${relative(root, c.moveDir)})` : 'no directory rename'}, ` +
    `${deletes.length + binGone} deletions, ${news + 1} new files; ${(added / MiB).toFixed(1)} MiB of new bytes`;
}

// ---------------------------------------------------------------------------------------
// Trees: digests and comparison

/** Every entry under `root`: relative path -> "d", "l TARGET" or "f SIZE SHA256". */
function digest(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const buf = Buffer.allocUnsafe(MiB);
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = join(dir, e.name);
      const rel = relative(root, p);
      if (e.isDirectory()) { out.set(rel, 'd'); walk(p); }
      else if (e.isSymbolicLink()) out.set(rel, `l ${readlinkSync(p)}`);
      else if (e.isFile()) {
        const h = createHash('sha256');
        const fd = openSync(p, 'r');
        let size = 0;
        for (let k; (k = readSync(fd, buf, 0, buf.length, null)) > 0; size += k) h.update(buf.subarray(0, k));
        closeSync(fd);
        out.set(rel, `f ${size} ${h.digest('hex')}`);
      }
    }
  };
  walk(root);
  return out;
}

/** Total size of the regular files under `root`. */
function fileBytes(root: string): number {
  let n = 0;
  for (const e of readdirSync(root, { withFileTypes: true })) {
    const p = join(root, e.name);
    if (e.isDirectory()) n += fileBytes(p);
    else if (e.isFile()) n += statSync(p).size;
  }
  return n;
}

/** Makes `to` an exact copy of folder `from` (`cp -a`; none if `from` is missing), replacing what was there. */
function copyTree(from: string, to: string): void {
  rmSync(to, { recursive: true, force: true });
  if (!existsSync(from)) return;
  const r = spawnSync('cp', ['-a', from, to], { encoding: 'utf8' });
  if (r.status !== 0) throw new BenchError(`cp -a ${from} ${to}: ${r.stderr.trim() || `exit ${r.status}`}`);
}

/** Where round `round` of `rounds` restores: the last into `target` (which is then checked), the others beside it. */
function roundTarget(target: string, round: number, rounds: number): string {
  return round === rounds - 1 ? target : `${target}-round${round + 1}`;
}

/** Differences between the source and a restored tree, at most a few listed. */
function compare(want: Map<string, string>, got: Map<string, string>): string[] {
  const bad: string[] = [];
  for (const [p, v] of want) {
    const g = got.get(p);
    if (g === undefined) bad.push(`missing ${p}`);
    else if (g !== v) bad.push(`differs ${p} (${v.slice(0, 24)} vs ${g.slice(0, 24)})`);
  }
  for (const p of got.keys()) if (!want.has(p)) bad.push(`extra ${p}`);
  return bad;
}

// ---------------------------------------------------------------------------------------
// Running and measuring

interface Run { ok: boolean; seconds: number; cpu: number; rssMiB: number; error: string }

let child: ChildProcess | undefined;
const hasTime = (() => { try { accessSync(TIME, constants.X_OK); return true; } catch { return false; } })();

function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((d) => { try { accessSync(join(d, cmd), constants.X_OK); return true; } catch { return false; } });
}

/** The taskset prefix of the core count being measured (--cpus); empty for all. */
let pin: string[] = [];

/** Runs argv to completion under /usr/bin/time (and taskset, see pin); never throws. */
function run(argv: string[], o: { cwd?: string; env?: Record<string, string>; okCodes?: number[] } = {}): Promise<Run> {
  const timeFile = join(base, `time-${process.pid}.txt`);
  const full = [...pin, ...(hasTime ? [TIME, '-f', '%e %U %S %M', '-o', timeFile, ...argv] : argv)];
  const t0 = process.hrtime.bigint();
  return new Promise((resolve) => {
    let tail = '';
    const keepTail = (d: Buffer) => { tail = (tail + d.toString()).slice(-4000); };
    const p = (child = spawn(full[0], full.slice(1), { cwd: o.cwd, env: { ...process.env, ...o.env }, stdio: ['ignore', 'pipe', 'pipe'] }));
    p.stdout!.on('data', keepTail);
    p.stderr!.on('data', keepTail);
    const done = (status: number | null, err?: Error) => {
      child = undefined;
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      let cpu = NaN, rssMiB = NaN;
      if (hasTime && existsSync(timeFile)) {
        const last = readFileSync(timeFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
        if (last.length === 4) { cpu = last[1] + last[2]; rssMiB = last[3] / 1024; }
        rmSync(timeFile, { force: true });
      }
      const ok = !err && status !== null && (o.okCodes ?? [0]).includes(status);
      const lines = tail.trim().split('\n').filter(Boolean);
      const error = ok ? '' : (err ? err.message : `exit ${status}: ${lines.slice(-3).join(' | ')}`);
      resolve({ ok, seconds, cpu, rssMiB, error });
    };
    p.on('error', (e) => done(null, e));
    p.on('close', (code) => done(code));
  });
}

let cacheNote = 'cold cache (page cache dropped before each step)';
/** Drops the page cache so each step reads from disk; notes once when not permitted. */
function dropCaches() {
  spawnSync('sync');
  try { writeFileSync('/proc/sys/vm/drop_caches', '3'); } catch { cacheNote = 'warm cache (dropping the page cache was not permitted)'; }
}

function duBytes(path: string): number {
  const r = spawnSync('du', ['-sb', path], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.split('\t')[0]) : NaN;
}

function version(argv: string[]): string {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim().split('\n')[0] : 'unknown version';
}

// ---------------------------------------------------------------------------------------
// The tools

type Step = 'full backup' | 'incremental' | 'restore' | 'check';
interface Cmd { argv: string[]; cwd?: string; env?: Record<string, string>; okCodes?: number[] }
interface Tool {
  name: string;
  about: string;
  repo: string;
  /** Untimed preparation (keys, repository init); throws on failure. */
  setup(): Promise<void>;
  /** Untimed: an empty repository (and cache) again, for another full backup. */
  reset(): Promise<void>;
  /** The folders of its repository and cache: copied before the incremental, and put back before each of its later rounds. */
  readonly state: string[];
  cmd(step: Step, target: string): Cmd;
  /** Where the source's contents are after `restore` into target. */
  restoredRoot(target: string): string;
  /** Space used beside the repository (caches), for the notes. */
  extra(): string;
}

const generateOnly = opt('generate', '');
if (generateOnly) {
  if (existsSync(generateOnly)) throw new Error(`--generate ${generateOnly}: already exists`);
  const c = generate(generateOnly, sizeMiB);
  process.stdout.write(`${generateOnly}: ${(c.bytes / MiB).toFixed(0)} MiB in ${c.text.length + c.bins.length + c.big.length} files\n`);
  process.exit(0);
}
// The folder given with --dir is made if missing, as a place for the corpora.
const baseParent = opt('dir', tmpdir());
mkdirSync(baseParent, { recursive: true });
const base = mkdtempSync(join(baseParent, 'iebs-bench-e2e-'));
const src = givenSource || join(base, corpusKind === 'usr' ? 'usr' : 'home');
const srcParent = dirname(src);
const srcName = basename(src);

async function must(argv: string[], o: Omit<Cmd, 'argv'> = {}) {
  const r = await run(argv, o);
  if (!r.ok) throw new Error(`${argv.slice(0, 3).join(' ')}: ${r.error}`);
}

/** The S3 server of --repo-kind s3 (started before the tools are made), as the tools reach it. */
let s3: S3Server | null = null;
/** The proxy of --s3-delay-ms. */
let delay: DelayProxy | null = null;
/** A fresh place for a tool's repository: a folder, or a prefix of the S3 server's bucket (and that prefix's folder there, to measure). */
function place(tool: string, n: number): { arg: string; dir: string } {
  if (!s3) return { arg: join(base, `${tool}-repo`), dir: join(base, `${tool}-repo`) };
  return { arg: `${tool}-${n}`, dir: join(s3.dir, s3.bucket, `${tool}-${n}`) };
}

/** iebs as this checkout builds it, or (named `iebs@COMMIT`) the build at `main`. */
function iebs(name = 'iebs', main = cli): Tool {
  const keys = join(base, `${name}-keys`);
  let n = 0;
  const cache = join(base, `${name}-cache`);
  const env = { IEBS_CACHE_DIR: cache, ...(s3?.env ?? {}) };
  const node = [process.execPath, main];
  const repoArg = () => (s3 ? `s3://${s3.bucket}/${place(name, n).arg}` : place(name, n).arg);
  return {
    name,
    get repo() { return place(name, n).dir; },
    get state() { return [place(name, n).dir, cache]; },
    about: `iebs ${version([...node, '--version']).replace(/^iebs /, '')} (node ${process.version}), zstd:3, 1 MiB FastCDC, cache in a temp IEBS_CACHE_DIR, verify with recipient.asc (records, chain, object sizes and digests; no block decryption)`,
    setup: () => must([...node, 'keygen', '--out', keys, '--name', 'bench']),
    // The first backup creates the repository.
    reset: async () => {
      if (s3) n++; else rmSync(place(name, n).dir, { recursive: true, force: true });
      rmSync(cache, { recursive: true, force: true });
    },
    cmd: (step, target) => ({
      'full backup': { argv: [...node, 'backup', '--init', src, '--repo', repoArg(), '--key', join(keys, 'backup.key'), '--name', 'bench'], env },
      incremental: { argv: [...node, 'backup', src, '--repo', repoArg(), '--key', join(keys, 'backup.key'), '--name', 'bench'], env },
      restore: { argv: [...node, 'restore', '--repo', repoArg(), '--key', join(keys, 'restore.key'), '--target', target], env },
      check: { argv: [...node, 'verify', '--repo', repoArg(), '--key', join(keys, 'recipient.asc')], env },
    })[step],
    restoredRoot: (target) => target,
    extra: () => `${name} cache ${(duBytes(cache) / MiB).toFixed(1)} MiB`,
  };
}

function restic(): Tool {
  let n = 0;
  const cache = join(base, 'restic-cache');
  const envOf = () => ({
    RESTIC_PASSWORD: 'bench', XDG_CACHE_HOME: cache,
    RESTIC_REPOSITORY: s3 ? `s3:${s3.endpoint}/${s3.bucket}/${place('restic', n).arg}` : place('restic', n).arg,
    ...(s3?.env ?? {}),
  });
  return {
    name: 'restic',
    get repo() { return place('restic', n).dir; },
    get state() { return [place('restic', n).dir, cache]; },
    about: `${version(['restic', 'version'])}, repository v2, compression auto, default cache in a temp XDG_CACHE_HOME; check without --read-data (structure and index)`,
    setup: () => must(['restic', 'init'], { env: envOf() }),
    reset: async () => {
      if (s3) n++; else rmSync(place('restic', n).dir, { recursive: true, force: true });
      rmSync(cache, { recursive: true, force: true });
      await must(['restic', 'init'], { env: envOf() });
    },
    cmd: (step, target) => ({
      'full backup': { argv: ['restic', 'backup', srcName], cwd: srcParent, env: envOf() },
      incremental: { argv: ['restic', 'backup', srcName], cwd: srcParent, env: envOf() },
      restore: { argv: ['restic', 'restore', 'latest', '--target', target], env: envOf() },
      check: { argv: ['restic', 'check'], env: envOf() },
    })[step],
    restoredRoot: (target) => existsSync(join(target, srcName)) ? join(target, srcName) : join(target, src),
    extra: () => `restic cache ${(duBytes(cache) / MiB).toFixed(1)} MiB`,
  };
}

function borg(): Tool {
  const repo = join(base, 'borg-repo');
  const home = join(base, 'borg-home');
  // borg exits 1 for warnings (e.g. a file changed while read): the step still completed.
  const env = { BORG_PASSPHRASE: 'bench', BORG_BASE_DIR: home, BORG_DISPLAY_PASSPHRASE: 'no' };
  return {
    name: 'borg', repo, state: [repo, home],
    about: `${version(['borg', '--version'])}, repokey, --compression lz4, default chunker (2 MiB average); check without --verify-data (reads and CRCs every segment, checks archives)`,
    setup: () => must(['borg', 'init', '-e', 'repokey', repo], { env }),
    reset: async () => {
      rmSync(repo, { recursive: true, force: true }); rmSync(home, { recursive: true, force: true });
      await must(['borg', 'init', '-e', 'repokey', repo], { env });
    },
    cmd: (step, target) => ({
      'full backup': { argv: ['borg', 'create', '--compression', 'lz4', `${repo}::a`, srcName], cwd: srcParent, env, okCodes: [0, 1] },
      incremental: { argv: ['borg', 'create', '--compression', 'lz4', `${repo}::b`, srcName], cwd: srcParent, env, okCodes: [0, 1] },
      restore: { argv: ['borg', 'extract', `${repo}::b`], cwd: target, env, okCodes: [0, 1] },
      check: { argv: ['borg', 'check', repo], env },
    })[step],
    restoredRoot: (target) => join(target, srcName),
    extra: () => `borg cache ${(duBytes(home) / MiB).toFixed(1)} MiB`,
  };
}

// ---------------------------------------------------------------------------------------
// The run

/** One measured step of one tool at one core count (`cpus`, a --cpus label). */
interface Row { cpus: string; tool: string; step: string; run?: Run; bytes: number; repoBytes: number; note: string }
const rows: Row[] = [];
const header: string[] = [];
const notes: string[] = [];
const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const many = cpuSets.length > 1;

function record(row: Row) {
  rows.push(row);
  const r = row.run;
  process.stderr.write(`  ${many ? `[cpus ${row.cpus}] ` : ''}${row.tool} ${row.step}: ${r ? (r.ok ? `${fmt(r.seconds, 2)} s` : `FAILED ${r.error}`) : row.note}\n`);
}

function cleanup() {
  if (keep) process.stderr.write(`kept ${base}\n`);
  else rmSync(base, { recursive: true, force: true });
}
process.once('SIGINT', () => { child?.kill('SIGINT'); cleanup(); process.exit(130); });

const print = (t: string[][]) => {
  const width = t[0].map((_, i) => Math.max(...t.map((r) => (r[i] ?? '').length)));
  for (const r of t) console.log(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(width[i]))).join('  ').trimEnd());
};

/** (Re)makes the source the bench backs up and mutates: the same bytes each time; its Corpus, or none for --source. */
function makeSource(first: boolean): Corpus | undefined {
  if (givenSource) {
    if (first) header.push(`source: ${src} (given; not modified, so the incremental is an unchanged one)`);
    return undefined;
  }
  rmSync(src, { recursive: true, force: true });
  const t0 = Date.now();
  if (corpusKind === 'usr') {
    const copy = copyUsr(src, { ...usr, spaceFactor: 4 });
    if (first) header.push(`source: ${copy.about}`);
    else process.stderr.write(`source copied again (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
    return scan(src);
  }
  const corpus = generate(src, sizeMiB);
  if (first) {
    header.push(`source: generated ${(corpus.bytes / MiB).toFixed(0)} MiB in ${corpus.text.length + corpus.bins.length + corpus.big.length} files (${((Date.now() - t0) / 1000).toFixed(0)} s): ` +
      `text ${(corpus.textBytes / MiB).toFixed(0)} MiB in ${corpus.text.length} files, binaries ${(corpus.binBytes / MiB).toFixed(0)} MiB in ${corpus.bins.length}, ` +
      `incompressible ${(corpus.bigBytes / MiB).toFixed(0)} MiB in ${corpus.big.length} .mp4`);
  } else process.stderr.write(`source generated again (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
  return corpus;
}

try {
  const load0 = loadavg();
  header.push(`iebs e2e benchmark, ${new Date().toISOString()}`);
  header.push(`machine: ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM; load average at start ${load0.map((x) => x.toFixed(2)).join(' ')}`);
  if (!hasTime) header.push(`${TIME} not found: CPU seconds and peak RSS are not measured`);
  if (rounds > 1) header.push(`rounds: ${rounds} (full backup, incremental, restore and check run ${rounds} times per tool, tools taking turns, each incremental from the state the full backup left; the tables show each tool's median run)`);
  if (many || cpuSets[0].label !== 'all') {
    header.push(`cpus: ${cpuSets.map((c) => c.about).join('; ')}. Every step of every tool (and the tar read) runs pinned so; ` +
      `each core count starts from fresh repositories and caches and a fresh copy of the source ` +
      `(iebs sizes its threads from os.availableParallelism(), which follows taskset)`);
  }

  if (repoKind === 's3') {
    s3 = await startS3Server({ bucket: 'bench' });
    header.push(`repository: S3 protocol, s3rver (test/s3-server-main.ts) at ${s3.endpoint} on this machine, a fresh prefix per full backup`);
    if (s3DelayMs) {
      delay = await startDelayProxy(s3.endpoint, s3DelayMs);
      s3 = { ...s3, endpoint: delay.endpoint, env: { ...s3.env, AWS_ENDPOINT_URL_S3: delay.endpoint } };
      header.push(`network: through a loopback proxy at ${delay.endpoint} that holds data ${s3DelayMs} ms each way (a round trip of ${2 * s3DelayMs} ms more)`);
    }
  }
  const tools: Tool[] = [];
  for (const [name, make, bin] of [['iebs', iebs, ''], ['restic', restic, 'restic'], ['borg', borg, 'borg']] as const) {
    if (!wanted.includes(name)) continue;
    if (s3 && name === 'borg') { header.push('borg: left out (no S3 backend)'); continue; }
    if (bin && !onPath(bin)) { header.push(`${name}: not installed`); record({ cpus: cpuSets[0].label, tool: name, step: 'all', bytes: 0, repoBytes: NaN, note: 'not installed' }); continue; }
    const t = make();
    header.push(`${name}: ${t.about}`);
    tools.push(t);
  }
  if (baseline) {
    const commit = spawnSync('git', ['-C', baseline, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim() || basename(baseline);
    const t = iebs(`iebs@${commit}`, join(baseline, 'dist', 'cli', 'main.js'));
    header.push(`${t.name}: ${t.about}`);
    tools.push(t);
  }
  const setupFailed = new Set<string>();
  for (const t of tools) {
    try { await t.setup(); } catch (e) { setupFailed.add(t.name); record({ cpus: cpuSets[0].label, tool: t.name, step: 'setup', bytes: 0, repoBytes: NaN, note: `FAILED ${(e as Error).message}` }); }
  }
  const others = tools.filter((t) => t.name !== 'iebs').map((t) => t.name);
  const sections: { cpu: (typeof cpuSets)[number]; table: string[][]; ratios: string[][]; notes: string[] }[] = [];

  for (const [k, cpu] of cpuSets.entries()) {
    const at = cpu.label;
    if (many) process.stderr.write(`cpus ${cpu.about}\n`);
    const failed = new Set(setupFailed);
    const here: string[] = [];
    pin = [];
    const corpus = makeSource(k === 0);
    const fullBytes = fileBytes(src);
    if (k > 0) {
      for (const t of tools) {
        if (failed.has(t.name)) continue;
        try { await t.reset(); } catch (e) { failed.add(t.name); record({ cpus: at, tool: t.name, step: 'reset', bytes: 0, repoBytes: NaN, note: `FAILED ${(e as Error).message}` }); }
      }
    }
    pin = cpu.prefix;

    dropCaches();
    const tar = await run(['sh', '-c', 'tar -cf - "$0" | cat > /dev/null', srcName], { cwd: srcParent });
    record({ cpus: at, tool: 'tar | cat', step: 'read source', run: tar, bytes: fullBytes, repoBytes: NaN, note: '' });

    const stepAll = async (step: Step, bytes: number, target?: (t: Tool) => string) => {
      const n = rounds;
      const runs = new Map<string, Run[]>(tools.map((t) => [t.name, []]));
      // Each round of the incremental starts from the state the full backup left.
      const before = (t: Tool) => t.state.map((_, i) => join(base, `${t.name}-before-incremental-${i}`));
      if (step === 'incremental' && n > 1) for (const t of tools) if (!failed.has(t.name)) t.state.forEach((d, i) => copyTree(d, before(t)[i]));
      for (let round = 0; round < n; round++) {
        for (const t of tools) {
          if (failed.has(t.name)) continue;
          if (step === 'full backup' && round > 0) {
            try { await t.reset(); } catch (e) { failed.add(t.name); runs.get(t.name)!.push({ ok: false, seconds: NaN, cpu: NaN, rssMiB: NaN, error: `reset: ${(e as Error).message}` }); continue; }
          }
          if (step === 'incremental' && round > 0) t.state.forEach((d, i) => copyTree(before(t)[i], d));
          // Each round restores into a directory of its own, and the earlier rounds' are
          // removed after the step: ext4 makes files slowly for a while where many were
          // just deleted (docs/PERFORMANCE.md, "Creating files"), which would weigh on
          // the next round.
          const dir = target ? roundTarget(target(t), round, n) : '';
          if (dir) { rmSync(dir, { recursive: true, force: true }); mkdirSync(dir, { recursive: true }); }
          dropCaches();
          const c = t.cmd(step, dir);
          const r = await run(c.argv, c);
          runs.get(t.name)!.push(r);
          if (n > 1) process.stderr.write(`    ${t.name} ${step} round ${round + 1}: ${r.ok ? `${fmt(r.seconds, 2)} s` : `FAILED ${r.error}`}\n`);
          if (!r.ok && step !== 'check') failed.add(t.name);
        }
      }
      if (target) for (const t of tools) for (let round = 0; round < n - 1; round++) rmSync(roundTarget(target(t), round, n), { recursive: true, force: true });
      if (step === 'incremental') for (const t of tools) for (const d of before(t)) rmSync(d, { recursive: true, force: true });
      for (const t of tools) {
        const all = runs.get(t.name)!;
        if (all.length === 0) { record({ cpus: at, tool: t.name, step, bytes: 0, repoBytes: NaN, note: 'skipped (an earlier step failed)' }); continue; }
        const bad = all.find((r) => !r.ok);
        // The median run by wall time (the lower of the two middle ones for an even count).
        const byTime = [...all].sort((a, b) => a.seconds - b.seconds);
        const r = bad ?? byTime[Math.floor((byTime.length - 1) / 2)];
        const note = all.length > 1 && !bad ? `median of ${all.length}: ${all.map((x) => fmt(x.seconds, 2)).join(' ')} s` : '';
        record({ cpus: at, tool: t.name, step, run: r, bytes, repoBytes: duBytes(t.repo), note });
      }
    };

    await stepAll('full backup', fullBytes);
    const mutation = corpus ? mutate(src, corpus) : 'none (given source)';
    if (k === 0) notes.push(`mutation: ${mutation}`);
    const want = digest(src);
    const mutatedBytes = fileBytes(src);
    await stepAll('incremental', mutatedBytes);
    const restored = (t: Tool) => join(base, `restore-${t.name}`);
    await stepAll('restore', mutatedBytes, restored);
    for (const t of tools) {
      const row = rows.find((r) => r.cpus === at && r.tool === t.name && r.step === 'restore');
      if (!row?.run?.ok) { here.push(`${t.name}: restore not checked (restore did not complete)`); continue; }
      const root = t.restoredRoot(restored(t));
      const bad = existsSync(root) ? compare(want, digest(root)) : [`nothing restored at ${root}`];
      here.push(`${t.name}: ${bad.length === 0 ? `restore OK (${want.size} entries, sizes and sha256 match)` : `restore MISMATCH, ${bad.length} difference(s): ${bad.slice(0, 5).join('; ')}`}`);
      rmSync(restored(t), { recursive: true, force: true });
    }
    await stepAll('check', 0);
    pin = [];
    for (const t of tools) { const e = t.extra(); if (e) here.push(`${e} (not counted in the repository size)`); }

    // The table of steps.
    const mine = rows.filter((r) => r.cpus === at);
    const table: string[][] = [['tool', 'step', 'seconds', 'MiB/s', 'CPU s', 'peak RSS MiB', 'repo MiB', 'note']];
    for (const r of mine) {
      const x = r.run;
      const rate = x?.ok && (r.step === 'full backup' || r.step === 'restore' || r.step === 'read source') ? fmt(r.bytes / MiB / x.seconds, 0) : '-';
      table.push([r.tool, r.step, x ? fmt(x.seconds, 2) : '-', rate, x ? fmt(x.cpu, 1) : '-', x ? fmt(x.rssMiB, 0) : '-', fmt(r.repoBytes / MiB, 1), x && !x.ok ? `FAILED ${x.error}` : r.note]);
    }

    // Ratios of iebs to each other tool.
    const get = (tool: string, step: string) => mine.find((r) => r.tool === tool && r.step === step && r.run?.ok);
    const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined && b > 0 && Number.isFinite(a / b) ? `${(a / b).toFixed(2)}x` : '-');
    const ratios: string[][] = [['step', 'metric (iebs / other)', ...others.map((o) => `iebs/${o}`)]];
    const line = (step: string, metric: string, f: (r: Row) => number) => ratios.push([step, metric, ...others.map((o) => {
      const a = get('iebs', step), b = get(o, step);
      return ratio(a && f(a), b && f(b));
    })]);
    const thr = (r: Row) => r.bytes / r.run!.seconds;
    line('full backup', 'throughput (>1: iebs faster)', thr);
    line('full backup', 'CPU seconds', (r) => r.run!.cpu);
    line('full backup', 'peak RSS', (r) => r.run!.rssMiB);
    line('full backup', 'repository size', (r) => r.repoBytes);
    line('incremental', 'time (>1: iebs slower)', (r) => r.run!.seconds);
    line('incremental', 'CPU seconds', (r) => r.run!.cpu);
    line('incremental', 'peak RSS', (r) => r.run!.rssMiB);
    line('incremental', 'repository size', (r) => r.repoBytes);
    line('restore', 'throughput (>1: iebs faster)', thr);
    line('restore', 'CPU seconds', (r) => r.run!.cpu);
    line('restore', 'peak RSS', (r) => r.run!.rssMiB);
    line('check', 'time (>1: iebs slower)', (r) => r.run!.seconds);
    line('check', 'peak RSS', (r) => r.run!.rssMiB);
    const tarRow = get('tar | cat', 'read source');
    for (const t of tools) {
      const f = get(t.name, 'full backup');
      if (f && tarRow) here.push(`${t.name} full backup at ${(thr(f) / MiB).toFixed(0)} MiB/s = ${((100 * thr(f)) / thr(tarRow)).toFixed(0)}% of the tar read rate (${(thr(tarRow) / MiB).toFixed(0)} MiB/s)`);
    }
    here.push(`load average after this core count ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    sections.push({ cpu, table, ratios, notes: here });
  }
  notes.push(`load average at end ${loadavg().map((x) => x.toFixed(2)).join(' ')}; ${cacheNote}`);

  console.log(header.join('\n'));
  console.log('');
  for (const sec of sections) {
    if (many || sec.cpu.label !== 'all') { console.log(`== cpus ${sec.cpu.about}`); console.log(''); }
    print(sec.table);
    console.log('');
    if (others.length) { print(sec.ratios); console.log(''); }
    console.log(sec.notes.join('\n'));
    console.log('');
  }
  // Scaling: each tool's seconds per step at each core count, and the speed-up over the first count.
  if (many) {
    const first = cpuSets[0].label;
    const scaling: string[][] = [['tool', 'step', ...cpuSets.map((c) => `cpus ${c.label} s`), ...cpuSets.slice(1).map((c) => `speed-up ${c.label}/${first}`)]];
    const secs = (at: string, tool: string, step: string) => rows.find((r) => r.cpus === at && r.tool === tool && r.step === step && r.run?.ok)?.run!.seconds;
    for (const tool of ['tar | cat', ...tools.map((t) => t.name)]) {
      for (const step of tool === 'tar | cat' ? ['read source'] : ['full backup', 'incremental', 'restore', 'check']) {
        const s0 = secs(first, tool, step);
        scaling.push([tool, step, ...cpuSets.map((c) => fmt(secs(c.label, tool, step) ?? NaN, 2)), ...cpuSets.slice(1).map((c) => {
          const s = secs(c.label, tool, step);
          return s0 !== undefined && s !== undefined && s > 0 ? `${(s0 / s).toFixed(2)}x` : '-';
        })]);
      }
    }
    console.log('== scaling (seconds by core count; speed-up >1: faster than at the first count)');
    console.log('');
    print(scaling);
    console.log('');
  }
  console.log(notes.join('\n'));
} catch (e) {
  if (!(e instanceof BenchError)) throw e;
  process.stderr.write(`${e.message}\n`);
  process.exitCode = 2;
} finally {
  await delay?.close();
  await s3?.close();
  cleanup();
}
