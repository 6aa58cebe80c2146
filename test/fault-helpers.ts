/**
 * What the fault-injection suites (test/fault-*.test.ts) share, on top of helpers.ts:
 * reading the tar layout of volumes (to know, independently of iebs, which bytes of which
 * volume each file of a snapshot needs), flipping bits, re-armoring OpenPGP blocks after
 * a flip (so the damage is in the packet, not in the base64), parsing `iebs verify`
 * output, checking a restore that had to work around damage, running the CLI without
 * blocking the event loop, and killing a backup at a moment seen in the repository
 * (runKillScenario: kill, verify, back up again, restore, for a list of kill points).
 *
 * The oracle of which file needs which bytes relies on SPEC.md only: a block entry is
 * named `<uu>/<UUID>/<index/10000>/<index>`, and a file keeps its UUID across the
 * increments of a chain, so for a snapshot the block `index` of a file is the entry of
 * that name in the latest volume of the chain (up to the snapshot) that holds one. That
 * holds for the trees these suites build: no two files share content (no dedup across
 * files) and changed files keep their block count.
 */
import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdirSync, openSync, readSync, readdirSync, rmSync, statSync, watch, writeFileSync, writeSync, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { MiB, diffTrees, iebs, iebsChild, listFiles, readTree, writeSeeded, type Keys, type Run, type RunOptions, type Tree } from './helpers.js';

/** One entry of a tar volume: where its 512-byte header and its data start. */
export interface TarEntry { name: string; header: number; data: number; size: number }

/** Lists the entries of a ustar file by reading its headers (stops at the zero blocks). */
export function tarEntries(path: string): TarEntry[] {
  const fd = openSync(path, 'r');
  try {
    const size = statSync(path).size;
    const out: TarEntry[] = [];
    const h = Buffer.alloc(512);
    for (let off = 0; off + 512 <= size;) {
      readSync(fd, h, 0, 512, off);
      if (h.every((b) => b === 0)) break;
      const field = (a: number, n: number) => h.subarray(a, a + n).toString('latin1').replace(/\0.*$/s, '');
      const prefix = field(345, 155);
      const name = (prefix ? prefix + '/' : '') + field(0, 100);
      const len = parseInt(field(124, 12).trim(), 8);
      out.push({ name, header: off, data: off + 512, size: len });
      off += 512 + Math.ceil(len / 512) * 512;
    }
    return out;
  } finally { closeSync(fd); }
}

/** Flips bit `bit` of the byte at `offset` of a file, in place. */
export function flipBit(path: string, offset: number, bit = 0): void {
  const fd = openSync(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    assert.equal(readSync(fd, b, 0, 1, offset), 1, `${path} has no byte ${offset}`);
    b[0] ^= 1 << bit;
    writeSync(fd, b, 0, 1, offset);
  } finally { closeSync(fd); }
}

/** sha256 of every file under `dir` (relative path → hex): a repository's exact state. */
export function fileDigests(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, e] of readTree(dir)) if (e.kind === 'file') out.set(k, e.sha256!);
  return out;
}

// ---- OpenPGP armor -------------------------------------------------------------------

/** CRC-24 of RFC 4880 section 6.1 (the armor checksum). */
export function crc24(data: Uint8Array): number {
  let c = 0xb704ce;
  for (const x of data) {
    c ^= x << 16;
    for (let i = 0; i < 8; i++) { c <<= 1; if (c & 0x1000000) c ^= 0x1864cfb; }
  }
  return c & 0xffffff;
}

/** One armored block inside a text: its place, type, armor headers and decoded bytes. */
export interface Armored { start: number; end: number; type: string; headers: string[]; data: Buffer; hasCrc: boolean }

/** The armored blocks of a text, in order. */
export function armoredBlocks(text: string): Armored[] {
  const re = /-----BEGIN PGP ([A-Z ]+)-----\r?\n([\s\S]*?)-----END PGP \1-----/g;
  const out: Armored[] = [];
  for (let m; (m = re.exec(text));) {
    const lines = m[2].split(/\r?\n/);
    let i = 0;
    while (i < lines.length && lines[i] !== '') i++;
    const body: string[] = [];
    let hasCrc = false;
    for (const l of lines.slice(i + 1)) {
      if (l.startsWith('=')) hasCrc = true;
      else if (l) body.push(l);
    }
    out.push({ start: m.index, end: m.index + m[0].length, type: m[1], headers: lines.slice(0, i), data: Buffer.from(body.join(''), 'base64'), hasCrc });
  }
  return out;
}

/** Armors `data` as a block of `type` (64-column base64, with a correct CRC-24 when `crc`). */
export function armor(type: string, headers: string[], data: Uint8Array, crc: boolean): string {
  const b64 = (Buffer.from(data).toString('base64').match(/.{1,64}/g) ?? []).join('\n');
  const c = crc24(data);
  const sum = Buffer.from([c >> 16, (c >> 8) & 255, c & 255]).toString('base64');
  return `-----BEGIN PGP ${type}-----\n${headers.map((h) => h + '\n').join('')}\n${b64}\n${crc ? `=${sum}\n` : ''}-----END PGP ${type}-----`;
}

/**
 * Returns `text` with one bit flipped inside the decoded bytes of its armored block of
 * `type` (the `nth` such block), re-armored with a valid checksum: the damage is in the
 * OpenPGP packets themselves, not a base64 typo.
 */
export function flipArmoredBit(text: string, type: string, offset: (data: Buffer) => number, bit = 0, nth = 0): string {
  const blocks = armoredBlocks(text).filter((b) => b.type === type);
  const b = blocks[nth];
  assert.ok(b, `no armored ${type} block #${nth}`);
  const data = Buffer.from(b.data);
  const at = offset(data);
  assert.ok(at >= 0 && at < data.length, `offset ${at} outside the ${data.length}-byte ${type}`);
  data[at] ^= 1 << bit;
  return text.slice(0, b.start) + armor(b.type, b.headers, data, b.hasCrc) + text.slice(b.end);
}

/** One OpenPGP packet (new format headers only, as openpgp.js writes): tag, where its body starts, its length. */
export interface Packet { tag: number; body: number; length: number }

/** The packets of a binary OpenPGP message or key. */
export function packets(data: Uint8Array): Packet[] {
  const out: Packet[] = [];
  for (let o = 0; o < data.length;) {
    const h = data[o];
    assert.ok(h & 0x80 && h & 0x40, `old-format or bad packet header at ${o}`);
    const l1 = data[o + 1];
    let length: number, hl: number;
    if (l1 < 192) { length = l1; hl = 2; } else if (l1 < 224) { length = ((l1 - 192) << 8) + data[o + 2] + 192; hl = 3; } else if (l1 === 255) { length = Buffer.from(data).readUInt32BE(o + 2); hl = 6; } else throw new Error('partial body lengths are not expected in a key');
    out.push({ tag: h & 0x3f, body: o + hl, length });
    o += hl + length;
  }
  return out;
}

// ---- verify output -------------------------------------------------------------------

/** `iebs verify` output, parsed. */
export interface VerifyReport {
  run: Run;
  problems: { object: string; message: string; affects: string[] }[];
  notes: string[];
}

/** Parses the text output of `iebs verify` (PROBLEM lines with their affects: lines, notes). */
export function parseVerify(run: Run): VerifyReport {
  const report: VerifyReport = { run, problems: [], notes: [] };
  for (const line of run.stdout.split('\n')) {
    const p = /^PROBLEM (\S+): (.*)$/.exec(line);
    if (p) { report.problems.push({ object: p[1], message: p[2], affects: [] }); continue; }
    const a = /^\s+affects: (.*)$/.exec(line);
    if (a && report.problems.length) { report.problems[report.problems.length - 1].affects.push(...a[1].split(', ')); continue; }
    if (line.startsWith('note: ')) report.notes.push(line);
  }
  return report;
}

/** Runs `iebs verify` (public keys unless `args` say otherwise) and parses it. */
export function verifyRepo(repo: string, key: string, extra: string[] = []): VerifyReport {
  return parseVerify(iebs(['verify', '--repo', repo, '--key', key, ...extra]));
}

// ---- which file needs which bytes ----------------------------------------------------

/** One place a file of a snapshot needs: a block entry of a volume. */
export interface Need { volume: string; entry: TarEntry }

/** An entry of `iebs ls --json`. */
export interface LsEntry { path: string; kind: 'file' | 'dir' | 'symlink'; size: number; uuid: string; blocks?: { volume: string; entry: string; start?: number }[] }

/** `iebs ls --json` of a snapshot: path → entry. */
export function lsSnapshot(repo: string, keys: Keys, snapshot: string): Map<string, LsEntry> {
  const r = iebs(['ls', '--repo', repo, '--key', keys.restore, snapshot, '--json']);
  assert.equal(r.code, 0, `ls ${snapshot}: ${r.stderr}`);
  const files = (JSON.parse(r.stdout) as { files: LsEntry[] }).files;
  return new Map(files.map((f) => [f.path, f]));
}

/** Volume object names of a snapshot, in order, as found in the repository. */
export function volumesOf(repo: string, snapshot: string): string[] {
  const dir = join(repo, 'volumes');
  return readdirSync(dir).filter((n) => n.startsWith(`${snapshot}.files.`) && /\.files\.\d{4}\.tar$/.test(n)).sort();
}

/**
 * For each file of `listing`, the block entries it needs, given the snapshots of its
 * chain up to it (full first). Volumes are read from `layoutRepo` (an undamaged copy).
 */
export function needs(layoutRepo: string, chain: string[], listing: Map<string, LsEntry>): Map<string, Need[]> {
  // By volume and entry name: a later increment may store a block under an entry name an
  // earlier volume has too (the same file's block 0, changed).
  const entries = new Map<string, Need>();
  for (const s of chain) {
    for (const v of volumesOf(layoutRepo, s)) {
      for (const e of tarEntries(join(layoutRepo, 'volumes', v))) if (/^[0-9a-f]{2}\//.test(e.name)) entries.set(`${v}/${e.name}`, { volume: v, entry: e });
    }
  }
  const out = new Map<string, Need[]>();
  for (const [path, f] of listing) {
    if (f.kind !== 'file') continue;
    // The blocks `ls --json` names (a block of a pack lies in its pack's entry).
    const list = (f.blocks ?? []).map((b) => entries.get(`${b.volume}/${b.entry}`)).filter((n): n is Need => n !== undefined);
    assert.ok(f.size === 0 || list.length > 0, `${path}: no block entry found for uuid ${f.uuid}`);
    out.set(path, list);
  }
  return out;
}

/** Files (of `need`) for which `hit` is true for some needed entry. */
export function filesWhere(need: Map<string, Need[]>, hit: (n: Need) => boolean): Set<string> {
  const out = new Set<string>();
  for (const [path, list] of need) if (list.some(hit)) out.add(path);
  return out;
}

// ---- restore around damage -----------------------------------------------------------

/** What a restore is expected to do. */
export type RestoreExpectation =
  | { fatal: true }
  | { fatal?: false; mustFail: Set<string>; mayFail?: Set<string> };

/** What happened, for the case's summary. */
export interface RestoreOutcome { code: number | null; notRestored: string[]; problems: string[] }

/**
 * Restores `snapshot` into a new `target` and checks it against `expected` (the source
 * as it was) and `want`:
 * - exit 0: every file of the snapshot restored, byte-identical, nothing extra;
 * - exit 3: the files listed as not restored are exactly those that must fail (plus any
 *   that may), they are absent from the target, everything else is byte-identical;
 * - exit 1 only when the damage is fatal for the whole snapshot: one line, no stack, and
 *   no file written with wrong content.
 * Returns a list of problems (empty when all is as expected) rather than throwing, so a
 * case can report every restore it tried.
 */
export function checkRestore(repo: string, keys: Keys, snapshot: string, target: string, expected: Tree, want: RestoreExpectation, o: RunOptions = {}): RestoreOutcome {
  const r = iebs(['restore', '--repo', repo, '--key', keys.restore, '--target', target, '--snapshot', snapshot], o);
  const problems: string[] = [];
  const where = `restore ${snapshot}`;
  const notRestored = [...r.stderr.matchAll(/^iebs: not restored: (.+?): /gm)].map((m) => m[1]).sort();
  if (/^\s+at /m.test(r.stderr) || /internal error/.test(r.stderr)) problems.push(`${where}: stack trace or internal error: ${r.stderr.trim()}`);
  const actual = existsSync(target) ? readTree(target) : new Map();
  const fileDiffs = diffTrees(expected, actual, { dirMtimes: false });
  if (want.fatal) {
    if (r.code !== 1) problems.push(`${where}: exit ${r.code}, expected 1 (nothing restorable); stderr ${JSON.stringify(r.stderr.trim())}`);
    else {
      const lines = r.stderr.split('\n').filter((l) => l);
      if (lines.length !== 1 || !lines[0].startsWith('iebs: ')) problems.push(`${where}: expected one "iebs: ..." line, got ${JSON.stringify(r.stderr)}`);
    }
    const wrong = fileDiffs.filter((d) => !d.endsWith(': missing'));
    if (wrong.length) problems.push(`${where}: target holds wrong or extra files: ${wrong.join('; ')}`);
    return { code: r.code, notRestored, problems };
  }
  const must = want.mustFail, may = want.mayFail ?? new Set<string>();
  const expectedCode = must.size ? 3 : null;
  if (r.code !== 0 && r.code !== 3) problems.push(`${where}: exit ${r.code}, expected ${expectedCode ?? '0 (or 3)'}; stderr ${JSON.stringify(r.stderr.trim())}`);
  if (r.code === 0 && notRestored.length) problems.push(`${where}: exit 0 but listed ${notRestored.join(', ')}`);
  if (r.code === 3 && notRestored.length === 0) problems.push(`${where}: exit 3 but no file listed as not restored`);
  const missed = [...must].filter((p) => !notRestored.includes(p));
  if (missed.length && (r.code === 0 || r.code === 3)) problems.push(`${where}: not listed as not restored though its data is damaged: ${missed.join(', ')}`);
  const extra = notRestored.filter((p) => !must.has(p) && !may.has(p));
  if (extra.length) problems.push(`${where}: listed as not restored though its data is intact: ${extra.join(', ')}`);
  if (r.code === 0 || r.code === 3) {
    const listed = new Set(notRestored.map((p) => JSON.stringify(p)));
    const wrong = diffTrees(expected, actual, { dirMtimes: true }).filter((d) => {
      const m = /^(".*"): missing$/.exec(d);
      return !(m && listed.has(m[1]));
    });
    if (wrong.length) problems.push(`${where}: restored tree differs from the source: ${wrong.join('; ')}`);
  }
  return { code: r.code, notRestored, problems };
}

// ---- running the CLI asynchronously --------------------------------------------------

/** Runs `iebs ARGS...` without blocking the event loop. */
export function iebsAsync(args: string[], o: RunOptions = {}): Promise<Run> {
  const child = iebsChild(args, o);
  let stdout = '', stderr = '';
  child.stdout!.on('data', (d) => { stdout += d; });
  child.stderr!.on('data', (d) => { stderr += d; });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

// ---- killing a backup at a chosen moment ---------------------------------------------

/** What a running backup has left in the repository so far (compared with when it started). */
export interface Observed {
  lock: boolean;
  /** Volumes being written (`.tmp-` names) and their sizes. */
  tmpVolumes: { name: string; size: number }[];
  /** Volumes committed by this run. */
  newVolumes: number;
  manifestTmp: boolean;
  newManifest: boolean;
  /** An index of this run, temporary or committed. */
  index: boolean;
  recordTmp: boolean;
  newRecord: boolean;
}

/**
 * What the next run is expected to be: its type, and how long runs of that type worked
 * (from taking the lock to the end; the shortest so far).
 */
export interface Expected { type: 'full' | 'increment'; workMs: number }

/** What a kill plan knows besides the repository: the run's expected type and work time, and when it took the lock. */
export interface KillContext { expected: Expected; lockMs: number | null }

/**
 * When to kill: a condition on what the run has written, the milliseconds since it
 * started and what it is expected to be.
 */
export interface KillPlan {
  label: string;
  when: (o: Observed, ms: number, c: KillContext) => boolean;
  /** Wait this long after the condition holds. */
  delay?: number;
}

const FOLDERS = ['locks', 'volumes', 'manifests', 'indexes', 'snapshots'] as const;

function listing(repo: string): Record<(typeof FOLDERS)[number], string[]> {
  const out = {} as Record<(typeof FOLDERS)[number], string[]>;
  for (const f of FOLDERS) {
    try { out[f] = readdirSync(join(repo, f)); } catch { out[f] = []; }
  }
  return out;
}

function observe(repo: string, start: ReturnType<typeof listing>): Observed {
  const now = listing(repo);
  const fresh = (f: (typeof FOLDERS)[number]) => now[f].filter((n) => !n.includes('.tmp-') && !start[f].includes(n));
  const tmp = (f: (typeof FOLDERS)[number]) => now[f].filter((n) => n.includes('.tmp-'));
  const size = (p: string) => { try { return statSync(p).size; } catch { return 0; } };
  return {
    lock: now.locks.includes('lock'),
    tmpVolumes: tmp('volumes').map((n) => ({ name: n, size: size(join(repo, 'volumes', n)) })),
    newVolumes: fresh('volumes').length,
    manifestTmp: tmp('manifests').length > 0,
    newManifest: fresh('manifests').length > 0,
    index: tmp('indexes').length > 0 || fresh('indexes').length > 0,
    recordTmp: tmp('snapshots').length > 0,
    newRecord: fresh('snapshots').length > 0,
  };
}

/** Describes an observation in a few words, for the log of kill points. */
export function describeObserved(o: Observed): string {
  const parts = [`${o.newVolumes} volume(s) committed`];
  if (o.tmpVolumes.length) parts.push(`writing ${o.tmpVolumes.map((v) => `${v.name.replace(/^.*\.files\./, '').replace(/\.tmp-.*$/, '')} (${(v.size / MiB).toFixed(1)} MiB)`).join(', ')}`);
  if (o.manifestTmp) parts.push('manifest being written');
  if (o.newManifest) parts.push('manifest committed');
  if (o.index) parts.push('index written');
  if (o.recordTmp) parts.push('record being written');
  if (o.newRecord) parts.push('record committed');
  if (!o.lock && !o.newRecord) parts.push('no lock yet');
  return parts.join(', ');
}

/** What a kill attempt did; `lockMs` is when the lock was first seen (ms after the start). */
export interface KillResult { killed: boolean; run: Run; ms: number; lockMs: number | null; seen: Observed | null }

/**
 * Runs `iebs ARGS...` (a backup into `repo`) and kills it with SIGKILL when `plan` says
 * so. The repository is watched with inotify (fs.watch) and polled
 * every 5 ms, so short stages (a record being written) can be hit. If the run ends
 * first, `killed` is false and `run` is its result.
 */
export async function killBackup(args: string[], repo: string, plan: KillPlan, expected: Expected = { type: 'full', workMs: 1500 }): Promise<KillResult> {
  const start = listing(repo);
  const t0 = Date.now();
  const child = iebsChild(args);
  let stdout = '', stderr = '';
  child.stdout!.on('data', (d) => { stdout += d; });
  child.stderr!.on('data', (d) => { stderr += d; });
  const watchers = new Map<string, FSWatcher>();
  let seen: Observed | null = null;
  let lockMs: number | null = null;
  let fired = false;
  let ended = false;
  const fire = () => {
    if (ended) return;
    child.kill('SIGKILL');
  };
  const check = () => {
    if (fired || ended) return;
    for (const d of ['', ...FOLDERS]) {
      const p = join(repo, d);
      if (watchers.has(p) || !existsSync(p)) continue;
      try {
        const w = watch(p, check);
        w.on('error', () => {});
        watchers.set(p, w);
      } catch { /* appeared and vanished */ }
    }
    const o = observe(repo, start);
    const ms = Date.now() - t0;
    if (lockMs === null && (o.lock || o.tmpVolumes.length > 0 || o.newVolumes > 0)) lockMs = ms;
    if (plan.when(o, ms, { expected, lockMs })) {
      fired = true;
      seen = o;
      if (plan.delay) setTimeout(fire, plan.delay); else fire();
    }
  };
  const timer = setInterval(check, 5);
  check();
  const end = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  ended = true;
  clearInterval(timer);
  for (const w of watchers.values()) w.close();
  return { killed: end.signal === 'SIGKILL', run: { code: end.code, signal: end.signal, stdout, stderr }, ms: Date.now() - t0, lockMs, seen };
}

/** Options of a kill scenario. */
export interface KillScenario {
  keys: Keys;
  /** Where the source, repository and restores go. */
  dir: string;
  /** One kill plan per backup, in order; the source changes before each. */
  plans: KillPlan[];
  /** Extra backup arguments (volume size, increments per chain). */
  args: string[];
  /** Log of each kill point (t.diagnostic). */
  log: (line: string) => void;
}

const MANY = 200;
const BIGS: [string, number][] = [['big0.bin', 9 * MiB], ['sub/big1.bin', 9 * MiB], ['big2.bin', 6 * MiB], ['sub/big3.bin', 5 * MiB]];

/** The ~30 MiB tree of the kill scenarios (4-5 volumes of 8 MiB): four big files and 200 small ones. */
function makeKillTree(src: string): void {
  mkdirSync(join(src, 'sub'), { recursive: true });
  mkdirSync(join(src, 'many'));
  for (const [name, size] of BIGS) writeSeeded(join(src, name), `kill-${name}`, size);
  for (let i = 0; i < MANY; i++) writeFileSync(join(src, 'many', `s${i}.txt`), `small file ${i}\n`.repeat(1 + (i % 50)));
}

/** Step `k`'s change: one 9 MiB file rewritten (2 volumes to store), a fifth of the small ones rewritten, one removed, one added. */
function mutateKillTree(src: string, k: number): void {
  const [name, size] = BIGS[k % 2];
  writeSeeded(join(src, name), `kill-${name}-${k}`, size);
  for (let i = k % 5; i < MANY; i += 5) {
    const p = join(src, 'many', `s${i}.txt`);
    if (existsSync(p)) writeFileSync(p, `small file ${i}, step ${k}\n`.repeat(1 + ((i + k) % 50)));
  }
  rmSync(join(src, 'many', `s${(k * 7) % MANY}.txt`), { force: true });
  writeFileSync(join(src, 'many', `added-${k}.txt`), `added at step ${k}\n`);
}

/** Problems of a repository after a successful backup: debris left, objects without a record, a lock. */
export function debrisProblems(repo: string): string[] {
  const out: string[] = [];
  const files = listFiles(repo);
  const tmp = files.filter((f) => f.includes('.tmp-'));
  if (tmp.length) out.push(`temporary objects left: ${tmp.join(', ')}`);
  const recorded = new Set(readdirSync(join(repo, 'snapshots')).filter((n) => n.endsWith('.snapshot.asc')).map((n) => n.replace(/\.snapshot\.asc$/, '')));
  const owner = (f: string) => f.replace(/^[^/]+\//, '').replace(/(\.files\.\d{4}\.tar|\.manifest\.pgp|\.index)$/, '');
  const orphans = files.filter((f) => /^(volumes|manifests|indexes)\//.test(f) && !f.includes('.tmp-') && !recorded.has(owner(f)));
  if (orphans.length) out.push(`objects of no snapshot left: ${orphans.join(', ')}`);
  if (files.includes('locks/lock')) out.push('the lock was left');
  return out;
}


/**
 * Runs backups into one repository, killing each with SIGKILL as its plan says; after
 * each kill: `verify --key recipient.asc` exits 0 (debris is a note, not a problem), a
 * new backup succeeds and cleans up, and the latest snapshot restores equal to the
 * source. At the end every snapshot restores equal to the source as it was then.
 *
 * Earlier snapshots are covered by verify, after every kill: it checks every object each
 * record names against the size and sha384 in the signed record, so a kill (or the
 * cleanup after it) that touched any byte an earlier snapshot needs would show at once.
 * Each snapshot was restored and compared right after it was made, and what a restore
 * gives is a function of those objects alone; so at the end a `verify --read-data`
 * (every block of every snapshot decrypted and hashed) stands in for restoring each one
 * again, which would cost time quadratic in the number of kill points. Snapshots never
 * restored yet (committed by a run that was then killed, or not killed) are restored.
 *
 * Returns how many kill points were survived (a plan whose run ended before its moment
 * came is not counted) and the problems found.
 */
export async function runKillScenario(s: KillScenario): Promise<{ survived: number; problems: string[] }> {
  const src = join(s.dir, 'src');
  const repo = join(s.dir, 'repo');
  makeKillTree(src);
  const init = await iebsAsync(['init', repo, '--key', s.keys.backup]);
  if (init.code !== 0) return { survived: 0, problems: [`iebs init: exit ${init.code}: ${init.stderr}`] };
  const trees = new Map<string, Tree>();
  const restored = new Set<string>();
  const problems: string[] = [];
  const backupArgs = ['backup', '--init', src, '--repo', repo, '--key', s.keys.backup, ...s.args];
  const records = () => new Set(readdirSync(join(repo, 'snapshots')).filter((n) => n.endsWith('.snapshot.asc')).map((n) => n.replace(/\.snapshot\.asc$/, '')));
  // The type of each snapshot made, and the shortest run time of each type, so that plans
  // can aim at a fraction of the run they kill.
  const types: ('full' | 'increment')[] = [];
  const shortest: Record<'full' | 'increment', number | null> = { full: null, increment: null };
  const maxIncrements = Number(s.args[s.args.indexOf('--max-increments') + 1] ?? 50);
  const expect = (): Expected => {
    let trailing = 0;
    while (trailing < types.length && types[types.length - 1 - trailing] === 'increment') trailing++;
    const type = types.length === 0 || trailing >= maxIncrements ? 'full' : 'increment';
    const other = type === 'full' ? 'increment' : 'full';
    return { type, workMs: shortest[type] ?? (shortest[other] !== null ? shortest[other]! / 2 : 1500) };
  };
  const ran = (type: 'full' | 'increment', r: KillResult) => {
    types.push(type);
    if (r.lockMs !== null) shortest[type] = Math.min(shortest[type] ?? Infinity, r.ms - r.lockMs);
  };
  const never: KillPlan = { label: 'never', when: () => false };
  let survived = 0;
  for (const [k, plan] of s.plans.entries()) {
    if (k > 0) mutateKillTree(src, k);
    const tree = readTree(src);
    const before = existsSync(join(repo, 'snapshots')) ? records() : new Set<string>();
    const expected = expect();
    const r = await killBackup([...backupArgs, '--json'], repo, plan, expected);
    const made = (existsSync(join(repo, 'snapshots')) ? [...records()] : []).filter((n) => !before.has(n));
    for (const n of made) trees.set(n, tree);
    const where = `step ${k} (${expected.type}, ${plan.label})`;
    if (!r.killed) {
      s.log(`${where}: the backup ended before its kill point (exit ${r.run.code}, ${r.ms} ms)`);
      if (r.run.code !== 0) problems.push(`${where}: backup exit ${r.run.code}: ${r.run.stderr}`);
      else ran((JSON.parse(r.run.stdout) as { type: 'full' | 'increment' }).type, r);
      continue;
    }
    if (made.length) types.push(expected.type);
    survived++;
    const t0 = Date.now();
    const v = parseVerify(await iebsAsync(['verify', '--repo', repo, '--key', s.keys.recipient]));
    if (v.run.code !== 0 || v.problems.length) problems.push(`${where}: verify after the kill: exit ${v.run.code}\n${v.run.stdout}${v.run.stderr}`);
    const t1 = Date.now();
    const next = await killBackup([...backupArgs, '--json'], repo, never);
    const b = next.run;
    const t2 = Date.now();
    if (b.code !== 0) { problems.push(`${where}: the backup after the kill: exit ${b.code}: ${b.stderr}`); continue; }
    const made2 = JSON.parse(b.stdout) as { snapshot: string; type: 'full' | 'increment' };
    const name = made2.snapshot;
    ran(made2.type, next);
    trees.set(name, tree);
    problems.push(...debrisProblems(repo).map((p) => `${where}: after the next backup: ${p}`));
    const target = join(s.dir, `restore-${k}`);
    const rr = await iebsAsync(['restore', '--repo', repo, '--key', s.keys.restore, '--target', target]);
    const d = rr.code === 0 ? diffTrees(tree, readTree(target)) : [`exit ${rr.code}: ${rr.stderr}`];
    if (d.length) problems.push(`${where}: restore of the latest snapshot ${name}: ${d.join('; ')}`);
    else restored.add(name);
    rmSync(target, { recursive: true, force: true });
    s.log(`${where}: killed after ${r.ms} ms: ${r.seen ? describeObserved(r.seen) : '?'}${made.length ? ' (its snapshot was already committed)' : ''}; ` +
      `verify, backup, restore in ${((t1 - t0) / 1000).toFixed(1)}, ${((t2 - t1) / 1000).toFixed(1)}, ${((Date.now() - t2) / 1000).toFixed(1)} s`);
  }

  const v = parseVerify(await iebsAsync(['verify', '--repo', repo, '--key', s.keys.recipient]));
  if (v.run.code !== 0 || v.problems.length || v.notes.length) problems.push(`final verify: exit ${v.run.code}\n${v.run.stdout}${v.run.stderr}`);
  const rd = await iebsAsync(['verify', '--repo', repo, '--key', s.keys.restore, '--read-data']);
  if (rd.code !== 0) problems.push(`final verify --read-data: exit ${rd.code}\n${rd.stdout}${rd.stderr}`);
  const sl = await iebsAsync(['snapshots', '--repo', repo, '--json']);
  if (sl.code !== 0) return { survived, problems: [...problems, `snapshots --json: exit ${sl.code}: ${sl.stderr}`] };
  const list = JSON.parse(sl.stdout) as { name: string; parent: string | null }[];
  if (list.length !== trees.size) problems.push(`${list.length} snapshots in the repository, ${trees.size} made: ${list.map((x) => x.name).join(', ')}`);
  for (const [i, snap] of list.entries()) {
    if (i > 0 && snap.parent !== list[i - 1].name) problems.push(`${snap.name}: parent ${snap.parent}, expected ${list[i - 1].name}`);
    const tree = trees.get(snap.name);
    if (!tree) { problems.push(`${snap.name}: a snapshot no backup reported`); continue; }
    if (restored.has(snap.name)) continue;
    const target = join(s.dir, `final-${i}`);
    const rr = await iebsAsync(['restore', '--repo', repo, '--key', s.keys.restore, '--target', target, '--snapshot', snap.name]);
    const d = rr.code === 0 ? diffTrees(tree, readTree(target)) : [`exit ${rr.code}: ${rr.stderr}`];
    if (d.length) problems.push(`restore of ${snap.name} at the end: ${d.join('; ')}`);
    rmSync(target, { recursive: true, force: true });
  }
  return { survived, problems };
}
