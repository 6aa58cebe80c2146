/**
 * What the end-to-end tests share: temporary directories, running the real CLI
 * (dist/cli/main.js) in a child process, deterministic pseudo-random data, and a byte
 * for byte comparison of two trees (kinds, contents, modes, symlink targets, empty
 * directories, mtimes).
 *
 * Every CLI run gets IEBS_CONFIG_DIR, IEBS_CACHE_DIR, IEBS_JOBS_DIR, IEBS_STATE_DIR and TMPDIR pointing into this process's temporary
 * directory unless the caller sets them, so no test ever touches ~/.config or ~/.cache.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadBackupKey, loadRestoreKey, type BackupKey, type RestoreKey } from '../engine/crypto/keys.js';

/** The compiled CLI, next to this module's own directory once compiled (dist/test → dist/cli). */
export const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export const MiB = 1024 * 1024;

let root: string | null = null;

/** This process's temporary root, removed when the process exits (unless KEEP_TEMP=1). */
function tempRoot(): string {
  if (root) return root;
  root = mkdtempSync(join(tmpdir(), 'iebs-e2e-'));
  mkdirSync(join(root, 'config'));
  mkdirSync(join(root, 'tmp'));
  process.on('exit', () => {
    if (process.env.KEEP_TEMP === '1') { process.stderr.write(`kept ${root}\n`); return; }
    removeTree(root!);
  });
  return root;
}

/** A new empty directory under the process's temporary root. */
export function tempDir(label = 'd'): string {
  return mkdtempSync(join(tempRoot(), `${label.replace(/[^A-Za-z0-9_-]/g, '_')}-`));
}

/** Removes a tree even where a test left directories without write permission. */
export function removeTree(path: string): void {
  const open = (p: Buffer) => {
    let st;
    try { st = lstatSync(p); } catch { return; }
    if (!st.isDirectory()) return;
    try { chmodSync(p, 0o700); } catch { /* not ours */ }
    for (const n of readdirSync(p, { encoding: 'buffer' })) open(Buffer.concat([p, Buffer.from('/'), n]));
  };
  open(Buffer.from(path));
  rmSync(path, { recursive: true, force: true });
}

/** What a CLI run returned. */
export interface Run { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** Options of a CLI run. */
export interface RunOptions { env?: Record<string, string | undefined>; cwd?: string; timeoutMs?: number }

function childEnv(extra: Record<string, string | undefined> | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, IEBS_CONFIG_DIR: join(tempRoot(), 'config'), IEBS_CACHE_DIR: join(tempRoot(), 'cache'), IEBS_JOBS_DIR: join(tempRoot(), 'jobs'), IEBS_STATE_DIR: join(tempRoot(), 'state'), TMPDIR: join(tempRoot(), 'tmp') };
  delete env.IEBS_DEBUG;
  delete env.IEBS_PASSPHRASE;
  delete env.IEBS_PASSPHRASE_FILE;
  delete env.IEBS_REPO;
  delete env.IEBS_KEY;
  for (const [k, v] of Object.entries(extra ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** Runs `iebs ARGS...` to completion. */
export function iebs(args: string[], o: RunOptions = {}): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    env: childEnv(o.env), cwd: o.cwd, encoding: 'utf8', timeout: o.timeoutMs ?? 120_000, maxBuffer: 64 * MiB,
  });
  if (r.error) throw r.error;
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** Starts `iebs ARGS...` without waiting (for tests that kill it). */
export function iebsChild(args: string[], o: RunOptions = {}): ChildProcess {
  return spawn(process.execPath, [CLI, ...args], { env: childEnv(o.env), cwd: o.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Drives a program on a real pseudo-terminal (python's pty module): see `onTerminal`. */
const PTY_DRIVER = `
import fcntl, os, pty, struct, sys, termios, time
cols, prompt, answer = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3].encode()
pid, fd = pty.fork()
if pid == 0:
    if cols: fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack('HHHH', 24, cols, 0, 0))
    os.execve(sys.argv[4], sys.argv[4:], os.environ)
seen = b''
def read(until=None, limit=60):
    global seen
    end = time.time() + limit
    while until is None or (until not in seen and time.time() < end):
        try: chunk = os.read(fd, 4096)
        except OSError: return
        if not chunk: return
        seen += chunk
if prompt:
    read(prompt)
    time.sleep(0.3)
    os.write(fd, answer + b'\\r')
read()
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode('utf8', 'replace'))
sys.exit(os.waitstatus_to_exitcode(status))
`;

/**
 * Runs `iebs ARGS...` on a real pseudo-terminal, `columns` wide (the pty's default if not
 * given); with `answer`, types its text and Enter once `prompt` shows. Returns the exit
 * status and what the terminal showed (stdout and stderr together, as a terminal does).
 */
export function onTerminal(args: string[], env: NodeJS.ProcessEnv, o: { columns?: number; answer?: { prompt: string; text: string } } = {}): { status: number | null; shown: string; stderr: string } {
  const r = spawnSync('python3', ['-c', PTY_DRIVER, String(o.columns ?? 0), o.answer?.prompt ?? '', o.answer?.text ?? '', process.execPath, CLI, ...args], { encoding: 'utf8', env, timeout: 120_000 });
  if (r.error) throw r.error;
  return { status: r.status, shown: r.stdout, stderr: r.stderr };
}

/** Runs the CLI and fails with its output unless it exits with `code`. */
export function iebsOk(args: string[], o: RunOptions = {}, code = 0): Run {
  const r = iebs(args, o);
  if (r.code !== code) {
    throw new Error(`iebs ${args.join(' ')}: exit ${r.code}${r.signal ? ` (${r.signal})` : ''}, expected ${code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
  return r;
}

/** Paths of a key set made by `iebs keygen`. */
export interface Keys { dir: string; restore: string; backup: string; recipient: string }

/** Generates a key set in a new temporary directory (about 0.3 s: do it once per file). */
export function makeKeys(): Keys {
  const dir = join(tempDir('keys'), 'k');
  iebsOk(['keygen', '--out', dir, '--name', 'e2e']);
  return { dir, restore: join(dir, 'restore.key'), backup: join(dir, 'backup.key'), recipient: join(dir, 'recipient.asc') };
}

/** A new key set (as `makeKeys`), loaded for calls into the engine. */
export async function loadKeys(): Promise<{ bk: BackupKey; rk: RestoreKey }> {
  const k = makeKeys();
  return { bk: await loadBackupKey(k.backup), rk: await loadRestoreKey(k.restore, undefined) };
}

/**
 * `size` deterministic pseudo-random (incompressible) bytes for `seed`: AES-256-CTR over
 * zeros, keyed by sha256(seed). The same seed gives the same bytes on every platform.
 */
export function seededBytes(seed: string, size: number): Buffer {
  const key = createHash('sha256').update(`iebs-e2e:${seed}`).digest();
  const c = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return Buffer.concat([c.update(Buffer.alloc(size)), c.final()]);
}

/** Writes a file of `size` seeded bytes. */
export function writeSeeded(path: string | Buffer, seed: string, size: number, mode?: number): void {
  writeFileSync(path, seededBytes(seed, size), mode === undefined ? undefined : { mode });
  if (mode !== undefined) chmodSync(path, mode);
}

/** One entry of a tree as the comparison sees it. */
export interface TreeEntry {
  kind: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  size: number;
  mtimeNs: bigint;
  /** sha256 of a file's contents. */
  sha256?: string;
  /** A symlink's target, hex of its bytes. */
  target?: string;
}

/** A tree: relative path (latin1 of its bytes, so any name round-trips) to entry. The root itself is not included. */
export type Tree = Map<string, TreeEntry>;

/** Reads a tree without following symlinks. */
export function readTree(dir: string): Tree {
  const out: Tree = new Map();
  const walk = (abs: Buffer, rel: Buffer) => {
    for (const name of (readdirSync(abs, { encoding: 'buffer' }) as Buffer[]).sort(Buffer.compare)) {
      const cabs = Buffer.concat([abs, Buffer.from('/'), name]);
      const crel = rel.length ? Buffer.concat([rel, Buffer.from('/'), name]) : name;
      const st = lstatSync(cabs, { bigint: true });
      const e: TreeEntry = {
        kind: st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other',
        mode: Number(st.mode & 0o7777n), size: st.isFile() ? Number(st.size) : 0, mtimeNs: st.mtimeNs,
      };
      if (e.kind === 'file') e.sha256 = createHash('sha256').update(readFileSync(cabs)).digest('hex');
      if (e.kind === 'symlink') e.target = (readlinkSync(cabs, { encoding: 'buffer' }) as Buffer).toString('hex');
      out.set(crel.toString('latin1'), e);
      if (e.kind === 'dir') walk(cabs, crel);
    }
  };
  walk(Buffer.from(dir), Buffer.alloc(0));
  return out;
}

/** A path key of a Tree shown readably (UTF-8 where it is, escapes otherwise). */
export function showPath(key: string): string {
  return JSON.stringify(Buffer.from(key, 'latin1').toString('utf8'));
}

/** The path key of a Tree for a UTF-8 path. */
export function pathKey(path: string): string {
  return Buffer.from(path, 'utf8').toString('latin1');
}

/** Options of a tree comparison. */
export interface CompareOptions {
  /** Compare only source paths for which this is true (the path is given as UTF-8 text). */
  only?: (path: string) => boolean;
  /** Also compare directory mtimes (default true). */
  dirMtimes?: boolean;
}

/**
 * Differences between an expected tree and an actual one, one line each: paths missing
 * or extra, kind, mode, size, contents, symlink target, file (and directory) mtime to
 * the millisecond. An empty list means equal.
 */
export function diffTrees(expected: Tree, actual: Tree, o: CompareOptions = {}): string[] {
  const diffs: string[] = [];
  const keep = (k: string) => !o.only || o.only(Buffer.from(k, 'latin1').toString('utf8'));
  const ms = 1_000_000n;
  for (const [k, e] of expected) {
    if (!keep(k)) continue;
    const a = actual.get(k);
    const p = showPath(k);
    if (!a) { diffs.push(`${p}: missing`); continue; }
    if (a.kind !== e.kind) { diffs.push(`${p}: kind ${a.kind}, expected ${e.kind}`); continue; }
    if (e.kind !== 'symlink' && a.mode !== e.mode) diffs.push(`${p}: mode ${a.mode.toString(8)}, expected ${e.mode.toString(8)}`);
    if (a.size !== e.size) diffs.push(`${p}: size ${a.size}, expected ${e.size}`);
    else if (a.sha256 !== e.sha256) diffs.push(`${p}: contents differ`);
    if (a.target !== e.target) diffs.push(`${p}: target ${Buffer.from(a.target ?? '', 'hex').toString()}, expected ${Buffer.from(e.target ?? '', 'hex').toString()}`);
    const checkTime = e.kind === 'file' || (e.kind === 'dir' && o.dirMtimes !== false);
    const dt = a.mtimeNs - e.mtimeNs;
    if (checkTime && (dt >= ms || dt <= -ms)) diffs.push(`${p}: mtime ${a.mtimeNs}, expected ${e.mtimeNs} (${e.kind})`);
  }
  for (const k of actual.keys()) if (!expected.has(k) || !keep(k)) diffs.push(`${showPath(k)}: extra`);
  return diffs;
}

/** Copies a tree preserving modes, times and symlinks (`cp -a`). */
export function copyTree(from: string, to: string): void {
  const r = spawnSync('cp', ['-a', '--', from, to], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cp -a ${from} ${to}: ${r.stderr}`);
}

/** Every file below `dir` (relative paths, `/` separators), for checking repository contents. */
export function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const n of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${n.name}` : n.name;
      if (n.isDirectory()) walk(r); else out.push(r);
    }
  };
  walk('');
  return out.sort();
}

/**
 * Asserts that a failed run printed exactly one `iebs: ...` line (`iebs VERB: ...` for bad
 * arguments), matching `re` if given, and no stack trace.
 */
export function assertOneLineError(r: Run, re?: RegExp): void {
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `expected one line on stderr, got ${lines.length}: ${JSON.stringify(r.stderr)}`);
  assert.match(lines[0], /^iebs( [a-z]+)?: /, 'the line starts with "iebs: " or "iebs VERB: "');
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
  assert.doesNotMatch(r.stderr, /internal error/, 'a known error, not an internal one');
  if (re) assert.match(lines[0], re);
}

/** The parsed output of `iebs snapshots --json`. */
export interface SnapshotInfo {
  name: string; system: string; type: 'full' | 'increment'; time: string; chain: string; parent: string | null;
  files: number; bytes: number; new: number; changed: number; unchanged: number; deleted: number; stored: number; volumes: number;
}

/** `iebs snapshots --repo REPO --json`, parsed. */
export function snapshots(repo: string): SnapshotInfo[] {
  return JSON.parse(iebsOk(['snapshots', '--repo', repo, '--json']).stdout) as SnapshotInfo[];
}
