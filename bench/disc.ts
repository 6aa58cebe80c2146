/**
 * What a disc costs to write and to check (not part of npm test): a repository of
 * incompressible data (`--mib`, default 1024) in volumes of `--volume-mib` (default 256),
 * put on one disc of a medium that holds it, through the real CLI:
 *   - `iebs disc write` (staging with digest checks, par2 at --parity, xorriso, read back),
 *     at each parity asked (`--parities 10,5`);
 *   - plain `xorriso -as mkisofs` of the same repository folder, the floor;
 *   - `par2 create` alone on the same files at the same block size and count, to show its share;
 *   - `iebs disc verify IMAGE` (copy out, par2 verify).
 * Each step a fresh process; MB/s are of the repository's bytes; `uptime` before and after.
 *
 * Run: `npx tsc -p . && node dist/bench/disc.js [--mib 1024] [--volume-mib 256] [--parities 10,5]`
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';

const arg = (name: string, dflt: string) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? process.argv[i + 1] : dflt; };
const MIB = Number(arg('mib', '1024'));
const VOL = Number(arg('volume-mib', '256'));
const PARITIES = arg('parities', '10,5').split(',').map(Number);
const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const root = mkdtempSync(join(tmpdir(), 'iebs-bench-disc-'));
const MB = 1e6;

function run(cmd: string, args: string[], cwd = root): { s: number; out: string } {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  const s = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  return { s, out: r.stdout + r.stderr };
}
const iebs = (args: string[]) => run(process.execPath, [CLI, ...args]);
const dropCaches = () => { try { writeFileSync('/proc/sys/vm/drop_caches', '3'); } catch { /* not root: caches stay warm */ } };

console.log(`uptime: ${spawnSync('uptime', { encoding: 'utf8' }).stdout.trim()}`);
try {
  // The source: incompressible files; stored with --compression none, so the repository is as large.
  const src = join(root, 'src');
  mkdirSync(src);
  for (let f = 0; f * 64 < MIB; f++) {
    const fd = openSync(join(src, `f${f}.bin`), 'w');
    for (let i = 0; i < Math.min(64, MIB - f * 64); i++) writeSync(fd, randomBytes(1 << 20));
    closeSync(fd);
  }
  const keys = join(root, 'keys');
  iebs(['keygen', '--out', keys, '--name', 'bench']);
  const repo = join(root, 'repo');
  iebs(['init', repo, '--key', join(keys, 'backup.key')]);
  iebs(['backup', src, '--repo', repo, '--key', join(keys, 'backup.key'), '--volume-size', `${VOL}MiB`, '--compression', 'none']);
  rmSync(src, { recursive: true });
  const repoBytes = readdirSync(join(repo, 'volumes')).reduce((a, n) => a + statSync(join(repo, 'volumes', n)).size, 0);
  const media = `${Math.ceil((repoBytes * 1.2) / MB)}MB`;
  console.log(`repository: ${(repoBytes / MB).toFixed(0)} MB in ${readdirSync(join(repo, 'volumes')).length} volumes; medium ${media}`);
  const rate = (s: number) => `${s.toFixed(1).padStart(7)} s  ${(repoBytes / MB / s).toFixed(1).padStart(6)} MB/s`;

  dropCaches();
  const plain = join(root, 'plain.iso');
  const x = run('xorriso', ['-as', 'mkisofs', '-quiet', '-iso-level', '3', '-J', '-joliet-long', '-r', '-o', plain, repo]);
  console.log(`plain xorriso of the repository folder          ${rate(x.s)}`);
  rmSync(plain);

  for (const p of PARITIES) {
    const out = join(root, `out-${p}`);
    dropCaches();
    const w = iebs(['disc', 'write', '--repo', repo, '--media', media, '--out', out, '--parity', String(p)]);
    const img = join(out, readdirSync(out)[0]);
    const m = /parity (\d+) of (\d+) blocks of (\d+) bytes/.exec(w.out);
    console.log(`iebs disc write, ${String(p).padStart(2)}% parity (${m?.[1]} of ${m?.[2]} blocks of ${m?.[3]} B) ${rate(w.s)}  image ${(statSync(img).size / MB).toFixed(0)} MB`);
    dropCaches();
    const v = iebs(['disc', 'verify', img, '--scratch', root]);
    console.log(`iebs disc verify (copy out, par2 verify)         ${rate(v.s)}`);
    // par2 create alone, at the same parameters, on the repository folder.
    if (m) {
      const files = [...readdirSync(join(repo, 'volumes')).map((n) => `volumes/${n}`)];
      dropCaches();
      const c = run('par2', ['create', '-q', '-q', `-s${m[3]}`, `-c${m[1]}`, `-n${Math.min(8, Number(m[1]))}`, '-u', `-B${repo}`, join(root, `alone-${p}.par2`), '--', ...files], repo);
      console.log(`  of which par2 create alone on the volumes      ${rate(c.s)}`);
      for (const n of readdirSync(root)) if (n.startsWith(`alone-${p}`)) rmSync(join(root, n));
    }
    rmSync(out, { recursive: true });
  }
} finally {
  rmSync(root, { recursive: true, force: true });
  console.log(`uptime: ${spawnSync('uptime', { encoding: 'utf8' }).stdout.trim()}`);
}
