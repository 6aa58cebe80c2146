/**
 * Shared by bench/e2e.ts and bench/scale.ts (never part of npm test):
 *
 * - `--cpus LIST` (e.g. `1,2,all`): the core counts to run every step at. A count N runs
 *   each step's process under `taskset -c 0-(N-1)` (CPUs 0 to N-1, so 1 is `-c 0` and 2 is
 *   `-c 0,1`); `all` runs it without taskset (every CPU this process may use).
 * - The /usr corpus: a copy of /usr (or of some of its top-level folders), made with tar
 *   as `cp -a` would (modes, times, symlinks, hard links), after checking the free space.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, lstatSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';

const MiB = 1048576;

/** An error the bench reports as its one line (no stack): bad options, no space. */
export class BenchError extends Error {}

/** Prints one line saying what is wrong and exits non-zero (for bad options, before anything is written). */
export function fail(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

/** One core count of --cpus: its label, the taskset argv prefix (empty for all) and the CPUs it names. */
export interface CpuSet { label: string; prefix: string[]; about: string }

/**
 * Parses --cpus (comma-separated whole numbers and `all`); fails with one line when a
 * count is not a whole number from 1 to the CPUs this process may use, or when taskset
 * is needed and missing.
 */
export function parseCpus(list: string): CpuSet[] {
  const have = availableParallelism();
  const items = list.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) fail('--cpus takes a list like 1,2,all');
  const sets: CpuSet[] = [];
  for (const item of items) {
    if (sets.some((s) => s.label === item)) fail(`--cpus ${list}: ${item} is given twice`);
    if (item === 'all') { sets.push({ label: 'all', prefix: [], about: `all: no taskset (${have} CPUs)` }); continue; }
    const n = Number(item);
    if (!/^\d+$/.test(item) || n < 1 || n > have) fail(`--cpus ${list}: ${item} is not all or a whole number from 1 to ${have} (the CPUs this process may use)`);
    const cpus = n === 1 ? '0' : n === 2 ? '0,1' : `0-${n - 1}`;
    sets.push({ label: item, prefix: ['taskset', '-c', cpus], about: `${item}: taskset -c ${cpus}` });
  }
  if (sets.some((s) => s.prefix.length > 0)) {
    const r = spawnSync('taskset', ['--version'], { encoding: 'utf8' });
    if (r.error || r.status !== 0) fail(`--cpus ${list}: taskset not found (it is in util-linux: apt-get install -y util-linux), needed for counts other than all`);
  }
  return sets;
}

/**
 * Checks --usr-parts (top-level folders of /usr, comma-separated; none: the whole /usr)
 * and --usr-max-mib (0: no limit); fails with one line when either is wrong.
 */
export function usrOptions(partsArg: string, maxArg: string): { parts: string[]; maxMiB: number } {
  const parts = partsArg.split(',').map((p) => p.trim()).filter(Boolean);
  for (const p of parts) {
    if (!/^[^/]+$/.test(p) || p === '.' || p === '..') fail(`--usr-parts ${partsArg}: ${p} is not the name of a folder in /usr`);
    let isDir = false;
    try { isDir = lstatSync(join('/usr', p)).isDirectory(); } catch { /* not there */ }
    if (!isDir) fail(`--usr-parts ${partsArg}: /usr/${p} is not a folder`);
  }
  const maxMiB = Number(maxArg);
  if (!Number.isFinite(maxMiB) || maxMiB < 0) fail(`--usr-max-mib ${maxArg}: takes a number of MiB (0: no limit)`);
  return { parts, maxMiB };
}

/** What copyUsr copied. */
export interface UsrCopy {
  /** The copy's root (the destination). */
  root: string;
  /** Regular files (hard links counted once per name), their bytes, symbolic links, directories. */
  files: number; bytes: number; symlinks: number; dirs: number;
  /** Entries left out because this process cannot read them, or are neither file, folder nor link. */
  skipped: number;
  /** One line for the bench's header: what was copied, from where, and the space check. */
  about: string;
}

function freeBytes(dir: string): number {
  const r = spawnSync('df', ['-B1', '--output=avail', dir], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.trim().split('\n').pop()) : NaN;
}

function duBytes(paths: string[]): number {
  const r = spawnSync('du', ['-scb', ...paths], { encoding: 'utf8' });
  return Number(r.stdout.trim().split('\n').pop()?.split('\t')[0]);
}

/**
 * Copies /usr, or its top-level folders `parts` (checked by usrOptions), into `dest` (created; must not exist).
 * With `maxMiB`, each part contributes at most maxMiB / parts.length MiB: its entries in
 * sorted path order up to the first regular file that would pass the budget. Without
 * parts, the whole /usr is copied when the free space under `dest` holds `spaceFactor`
 * times its size (the copy, the tools' repositories and a restore), else share and lib
 * if those fit (said in `about`), else the run fails with a BenchError. Entries this process
 * cannot read are left out and counted, so no tool meets an unreadable file.
 */
export function copyUsr(dest: string, o: { parts: string[]; maxMiB: number; spaceFactor: number }): UsrCopy {
  const USR = '/usr';
  const free = freeBytes(join(dest, '..'));
  const budget = o.maxMiB > 0 ? o.maxMiB * MiB : Infinity;
  let parts = o.parts;
  let fallback = '';
  const need = (ps: string[]) => Math.min(duBytes(ps.length ? ps.map((p) => join(USR, p)) : [USR]), budget) * o.spaceFactor;
  if (Number.isFinite(free)) {
    if (parts.length === 0 && need(parts) > free) {
      fallback = `the whole /usr needs ${(need(parts) / 2 ** 30).toFixed(1)} GiB with repositories and a restore, more than the ${(free / 2 ** 30).toFixed(1)} GiB free: `;
      parts = ['share', 'lib'];
    }
    if (need(parts) > free) {
      throw new BenchError(`${fallback}/usr${parts.length ? `/{${parts.join(',')}}` : ''}: needs about ${(need(parts) / 2 ** 30).toFixed(1)} GiB (${o.spaceFactor}x the copy) under ${dest}, ` +
        `${(free / 2 ** 30).toFixed(1)} GiB free; use --usr-parts, --usr-max-mib or --dir`);
    }
  }

  // The list of entries, relative to /usr, in sorted path order; then one tar pipe copies them.
  const list: string[] = [];
  const c: UsrCopy = { root: dest, files: 0, bytes: 0, symlinks: 0, dirs: 0, skipped: 0, about: '' };
  const partBudget = parts.length ? budget / parts.length : budget;
  const walk = (rel: string, left: { bytes: number }): boolean => {
    const names = readdirSync(join(USR, rel)).sort();
    for (const name of names) {
      const r = rel ? `${rel}/${name}` : name;
      const abs = join(USR, r);
      let st;
      try { st = lstatSync(abs); } catch { c.skipped++; continue; }
      if (st.isSymbolicLink()) { list.push(r); c.symlinks++; continue; }
      if (st.isDirectory()) {
        try { accessSync(abs, constants.R_OK | constants.X_OK); } catch { c.skipped++; continue; }
        list.push(r); c.dirs++;
        if (!walk(r, left)) return false;
        continue;
      }
      if (!st.isFile()) { c.skipped++; continue; }
      try { accessSync(abs, constants.R_OK); } catch { c.skipped++; continue; }
      if (st.size > left.bytes) return false;
      left.bytes -= st.size;
      list.push(r); c.files++; c.bytes += st.size;
    }
    return true;
  };
  if (parts.length === 0) walk('', { bytes: budget });
  else for (const p of parts) { list.push(p); c.dirs++; walk(p, { bytes: partBudget }); }

  mkdirSync(dest);
  const listFile = `${dest}.list`;
  writeFileSync(listFile, list.join('\0'));
  const t0 = Date.now();
  const r = spawnSync('sh', ['-c', 'tar -C /usr --null --no-recursion -T "$0" -cf - | tar -C "$1" -xpf -', listFile, dest], { encoding: 'utf8', maxBuffer: 1 << 24 });
  rmSync(listFile, { force: true });
  if (r.status !== 0) throw new BenchError(`copying /usr into ${dest} failed: ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-2).join(' | ')}`);
  const what = parts.length ? parts.map((p) => `/usr/${p}`).join(' and ') : '/usr';
  c.about = `${fallback}copy of ${what}${o.maxMiB > 0 ? ` (at most ${o.maxMiB} MiB: the first files in sorted path order${parts.length > 1 ? ', shared evenly between the folders' : ''})` : ''}: ` +
    `${c.files} files, ${(c.bytes / MiB).toFixed(0)} MiB, ${c.symlinks} symbolic links, ${c.dirs} folders` +
    `${c.skipped ? `, ${c.skipped} unreadable or special entries left out` : ''} (tar copy in ${((Date.now() - t0) / 1000).toFixed(0)} s; ` +
    `${Number.isFinite(free) ? `${(free / 2 ** 30).toFixed(1)} GiB were free` : 'free space unknown'})`;
  return c;
}
