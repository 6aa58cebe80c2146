/**
 * Fault injection, tampering: one bit (or one object) changed in a repository of a full
 * and one increment (8 MiB volumes, a ~25 MiB tree of several files), each case on its
 * own copy. For every case:
 * - DETECTION: `iebs verify --key recipient.asc` (public keys only) exits 1 and names the
 *   changed object in a `PROBLEM` line, with the damaged snapshots in its `affects:` line;
 *   for block-level damage `verify --read-data` also names a damaged file;
 * - WHAT CAN STILL BE RESTORED: each snapshot is restored and either comes back whole
 *   (the damage is in a part it does not need), or exactly the files whose bytes were hit
 *   are listed as not restored (exit 3) and absent, every other file byte-identical; a
 *   snapshot whose record or manifest is gone fails with one line (exit 1) and writes no
 *   wrong file.
 *
 * Which file needs which bytes is worked out from the tar layout of the volumes and
 * `iebs ls --json` (test/fault-helpers.ts), not from iebs's own manifest reader.
 *
 * Detection needs no private key for any change to a stored object: records are signed,
 * and every manifest, index and volume a record names carries its size and sha384 in
 * it. So no case here is detectable only with --read-data. Two are different in kind:
 * (j) the key files are not in the repository (the command using them must refuse, with
 * one line), and (q) an extra object no record names is reported as a note, not a problem
 * (the same note as for the debris of an interrupted run), and exit 0.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, symlinkSync, truncateSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import {
  MiB, copyTree, diffTrees, iebs, iebsOk, listFiles, makeKeys, readTree, seededBytes, snapshots, tempDir, writeSeeded, type Keys, type Tree,
} from './helpers.js';
import {
  checkRestore, fileDigests, filesWhere, flipArmoredBit, flipBit, lsSnapshot, needs, packets, armoredBlocks, tarEntries, verifyRepo, volumesOf,
  type Need, type RestoreExpectation, type TarEntry,
} from './fault-helpers.js';

let keys: Keys;
let work: string;
let src: string;
let base: string;
let full: string;
let inc: string;
const trees = new Map<string, Tree>();
const need = new Map<string, Map<string, Need[]>>();
const SYSTEM = 'tamper';
const BACKUP = ['--volume-size', '8MiB', '--name', SYSTEM];

let tried = 0;
let detected = 0;
const tally: string[] = [];

before(() => {
  keys = makeKeys();
  work = tempDir('tamper');
  src = join(work, 'src');
  mkdirSync(join(src, 'sub', 'deep'), { recursive: true });
  mkdirSync(join(src, 'notes'));
  writeSeeded(join(src, 'big1.bin'), 'tamper-big1', 9 * MiB);
  writeSeeded(join(src, 'big2.bin'), 'tamper-big2', 7 * MiB);
  writeSeeded(join(src, 'sub', 'c.bin'), 'tamper-c', 5 * MiB);
  writeSeeded(join(src, 'sub', 'd.bin'), 'tamper-d', 2 * MiB);
  writeSeeded(join(src, 'sub', 'deep', 'e.bin'), 'tamper-e', 1.5 * MiB);
  for (let i = 0; i < 6; i++) writeFileSync(join(src, 'notes', `n${i}.txt`), `note ${i}\n`.repeat(20 + i));
  writeFileSync(join(src, 'small.txt'), 'small\n');
  writeFileSync(join(src, 'empty'), '');
  symlinkSync('small.txt', join(src, 'link'));
  base = join(work, 'repo');
  iebsOk(['backup', '--init', src, '--repo', base, '--key', keys.backup, ...BACKUP]);
  trees.set('full', readTree(src));

  // The increment: a few bytes of big2.bin change (its first block only), a file is
  // added, one deleted, one rewritten.
  const fd = openSync(join(src, 'big2.bin'), 'r+');
  writeSync(fd, Buffer.from('changed'), 0, 7, 100);
  closeSync(fd);
  writeSeeded(join(src, 'new.bin'), 'tamper-new', 1.5 * MiB);
  unlinkSync(join(src, 'sub', 'deep', 'e.bin'));
  writeFileSync(join(src, 'small.txt'), 'small, changed\n');
  iebsOk(['backup', '--init', src, '--repo', base, '--key', keys.backup, ...BACKUP]);
  trees.set('inc', readTree(src));

  const list = snapshots(base);
  assert.deepEqual(list.map((s) => s.type), ['full', 'increment']);
  full = list[0].name;
  inc = list[1].name;
  trees.set(full, trees.get('full')!);
  trees.set(inc, trees.get('inc')!);
  assert.ok(volumesOf(base, full).length >= 4, `the full should span at least 4 volumes: ${volumesOf(base, full).join(', ')}`);
  need.set(full, needs(base, [full], lsSnapshot(base, keys, full)));
  need.set(inc, needs(base, [full, inc], lsSnapshot(base, keys, inc)));
});

after(() => {
  for (const line of tally) console.log(line);
  console.log(`fault-tamper: ${tried} tamper cases tried, ${detected} detected`);
});

/** What one tamper case expects. */
interface Spec {
  /** Objects (repository-relative) that verify must name in a PROBLEM line; or a note it must print instead. */
  detect: { problems: string[] } | { note: string };
  /** Restore expectation per snapshot (`latest` allowed); snapshots not named must restore whole. */
  restore?: Record<string, RestoreExpectation>;
  /** Also run verify --read-data and expect it to name a damaged file. */
  readData?: boolean;
  /** More checks on the tampered copy. */
  more?: (repo: string) => string[];
}

const ok: RestoreExpectation = { mustFail: new Set() };
const fatal: RestoreExpectation = { fatal: true };

/** Block entries of a volume of the base repository. */
function blocks(volume: string): TarEntry[] {
  return tarEntries(join(base, 'volumes', volume)).filter((e) => /^[0-9a-f]{2}\//.test(e.name));
}

/** Per snapshot, the files that must fail: those needing a block entry for which `hit` is true (its bytes were hit). */
function hitting(hit: (n: Need) => boolean): Record<string, RestoreExpectation> {
  const out: Record<string, RestoreExpectation> = {};
  for (const s of [full, inc]) out[s] = { mustFail: filesWhere(need.get(s)!, hit) };
  return out;
}

/**
 * Snapshots that verify must name as affected: those a restore cannot bring back whole
 * (and whose record is still there to be named).
 */
function damaged(repo: string, restore: Record<string, RestoreExpectation>): string[] {
  return Object.entries(restore)
    .filter(([s, w]) => s !== 'latest' && (w.fatal || w.mustFail.size > 0) && existsSync(join(repo, 'snapshots', `${s}.snapshot.asc`)))
    .map(([s]) => s);
}

function tamperCase(id: string, title: string, tamper: (repo: string) => Spec): void {
  test(`(${id}) ${title}`, () => {
    const dir = tempDir(`tamper-${id}`);
    const repo = join(dir, 'repo');
    copyTree(base, repo);
    const spec = tamper(repo);
    const restore: Record<string, RestoreExpectation> = { [full]: ok, [inc]: ok, ...spec.restore };
    const problems: string[] = [];
    tried++;

    const v = verifyRepo(repo, keys.recipient);
    const shown = `verify exit ${v.run.code}:\n${v.run.stdout}${v.run.stderr}`;
    let found: boolean;
    if ('note' in spec.detect) {
      const note = spec.detect.note;
      found = v.run.code === 0 && v.problems.length === 0 && v.notes.some((n) => n.includes(note));
    } else {
      const named = spec.detect.problems.filter((o) => v.problems.some((p) => p.object === o));
      found = v.run.code === 1 && named.length === spec.detect.problems.length;
      const affected = new Set(v.problems.flatMap((p) => p.affects));
      const unsaid = damaged(repo, restore).filter((s) => !affected.has(s));
      if (found && unsaid.length) problems.push(`verify does not list ${unsaid.join(', ')} as affected; ${shown}`);
    }
    if (found) detected++;
    else problems.push(`verify did not detect it (expected ${JSON.stringify(spec.detect)}); ${shown}`);
    if (/^\s+at /m.test(v.run.stderr)) problems.push(`verify printed a stack trace: ${v.run.stderr}`);
    const outcomes: string[] = [];

    if (spec.readData) {
      const rd = iebs(['verify', '--repo', repo, '--key', keys.restore, '--read-data', '--json']);
      const must = new Set(Object.values(restore).flatMap((w) => (w.fatal ? [] : [...w.mustFail])));
      const parsed = rd.code === 1 ? (JSON.parse(rd.stdout) as { problems: { message: string; files?: number }[] }) : null;
      const fileProblems = parsed?.problems.filter((p) => p.files) ?? [];
      if (!parsed) problems.push(`verify --read-data: exit ${rd.code}, expected 1; ${rd.stderr}`);
      else if (must.size && fileProblems.length === 0) problems.push(`verify --read-data names no damaged file: ${rd.stdout}`);
      for (const p of fileProblems) {
        const first = /first: (.+?): /.exec(p.message)?.[1];
        if (!first || !must.has(first)) problems.push(`verify --read-data names ${first} as damaged, expected one of ${[...must].join(', ')}: ${p.message}`);
      }
    }

    for (const [snap, want] of Object.entries(restore)) {
      const tree = trees.get(snap === 'latest' ? inc : snap) ?? trees.get(inc)!;
      const out = checkRestore(repo, keys, snap, join(dir, `restored-${snap}`), tree, want);
      problems.push(...out.problems);
      const label = snap === full ? 'full' : snap === inc ? 'inc' : snap === 'latest' ? 'latest' : 'other';
      outcomes.push(`${label} exit ${out.code}${out.notRestored.length ? ` (${out.notRestored.length} not restored)` : ''}`);
    }
    tally.push(`fault-tamper (${id}) ${found ? 'detected' : 'NOT DETECTED'}; restore: ${outcomes.join(', ')}`);
    if (spec.more) problems.push(...spec.more(repo));
    assert.deepEqual(problems, [], problems.join('\n'));
  });
}

const vol = (repo: string, name: string) => join(repo, 'volumes', name);
const at = (v: string, e: TarEntry) => (n: Need) => n.volume === v && n.entry.name === e.name;

/** The first block entry of `volume` that `snapshot` needs (so the damage matters to it). */
function neededBlock(volume: string, snapshot: string): TarEntry {
  const e = blocks(volume).find((b) => filesWhere(need.get(snapshot)!, at(volume, b)).size > 0);
  assert.ok(e, `no block of ${volume} is needed by ${snapshot}`);
  return e;
}

tamperCase('a', 'a bit of a block envelope\'s ciphertext', (repo) => {
  const v = volumesOf(base, full)[1];
  const e = neededBlock(v, inc);
  flipBit(vol(repo, v), e.data + 20 + Math.floor((e.size - 36) / 2), 3);
  return { detect: { problems: [`volumes/${v}`] }, restore: hitting(at(v, e)), readData: true };
});

tamperCase('b', 'a bit of a block\'s GCM tag', (repo) => {
  const v = volumesOf(base, full)[2];
  const e = neededBlock(v, full);
  flipBit(vol(repo, v), e.data + e.size - 8, 0);
  return { detect: { problems: [`volumes/${v}`] }, restore: hitting(at(v, e)) };
});

tamperCase('c', 'a bit of a block\'s envelope header nonce (in the increment\'s volume)', (repo) => {
  const v = volumesOf(base, inc)[0];
  const e = neededBlock(v, inc);
  flipBit(vol(repo, v), e.data + 8 + 11, 0);
  return { detect: { problems: [`volumes/${v}`] }, restore: hitting(at(v, e)) };
});

tamperCase('d', 'a bit of the tar header of a block entry', (repo) => {
  const v = volumesOf(base, full)[0];
  const e = blocks(v)[1];
  flipBit(vol(repo, v), e.header + 20, 1);
  // Restore reads envelopes by offset and never needs the tar header: the file may come
  // back whole (its envelope is intact and authenticated) or be refused, never wrong.
  const may = hitting(at(v, e));
  const restore: Record<string, RestoreExpectation> = {};
  for (const [s, w] of Object.entries(may)) restore[s] = { mustFail: new Set(), mayFail: (w as { mustFail: Set<string> }).mustFail };
  return { detect: { problems: [`volumes/${v}`] }, restore };
});

tamperCase('e', 'a bit of the volume header (inside the sealed data key)', (repo) => {
  const v = volumesOf(base, full)[3];
  const h = tarEntries(vol(base, v))[0];
  assert.equal(h.name, 'iebs.volume');
  flipBit(vol(repo, v), h.data + Math.floor(h.size * 0.6), 2);
  return { detect: { problems: [`volumes/${v}`] }, restore: hitting((n) => n.volume === v), readData: true };
});

tamperCase('f', 'a bit of the increment\'s manifest', (repo) => {
  const m = join(repo, 'manifests', `${inc}.manifest.pgp`);
  flipBit(m, Math.floor(readFileSync(m).length / 2), 4);
  return { detect: { problems: [`manifests/${inc}.manifest.pgp`] }, restore: { [full]: ok, [inc]: fatal } };
});

tamperCase('g', 'a bit of the signature of the full\'s record (.snapshot.asc)', (repo) => {
  const r = join(repo, 'snapshots', `${full}.snapshot.asc`);
  writeFileSync(r, flipArmoredBit(readFileSync(r, 'utf8'), 'SIGNATURE', (d) => d.length - 20, 5));
  return { detect: { problems: [`snapshots/${full}.snapshot.asc`] }, restore: { [full]: fatal, [inc]: fatal } };
});

tamperCase('h', 'a bit of the signed text of the increment\'s record', (repo) => {
  const r = join(repo, 'snapshots', `${inc}.snapshot.asc`);
  const text = readFileSync(r);
  const i = text.indexOf('\nbytes ');
  assert.ok(i > 0);
  flipBit(r, i + 7, 0);
  return { detect: { problems: [`snapshots/${inc}.snapshot.asc`] }, restore: { [full]: ok, [inc]: fatal } };
});

tamperCase('i', 'a bit of the increment\'s index', (repo) => {
  const x = join(repo, 'indexes', `${inc}.index`);
  flipBit(x, Math.floor(readFileSync(x).length / 2), 6);
  return {
    detect: { problems: [`indexes/${inc}.index`] },
    // Restores never read indexes. The next backup of the chain needs it: it must refuse
    // with one line and commit nothing, or (if it copes) make a snapshot that restores.
    more: (r) => {
      const out: string[] = [];
      const before = snapshots(r).length;
      const b = iebs(['backup', '--init', src, '--repo', r, '--key', keys.backup, ...BACKUP]);
      if (b.code === 1) {
        const lines = b.stderr.split('\n').filter((l) => l);
        if (lines.length !== 1 || !/index/.test(lines[0])) out.push(`backup after a damaged index: expected one line naming the index, got ${JSON.stringify(b.stderr)}`);
        if (snapshots(r).length !== before) out.push('backup after a damaged index exited 1 but committed a snapshot');
      } else if (b.code !== 0) out.push(`backup after a damaged index: exit ${b.code}: ${b.stderr}`);
      const f = iebs(['backup', '--init', src, '--repo', r, '--key', keys.backup, ...BACKUP, '--full']);
      if (f.code !== 0) out.push(`backup --full after a damaged index: exit ${f.code}: ${f.stderr}`);
      else {
        const t = join(r, '..', 'after-full');
        const rr = iebs(['restore', '--repo', r, '--key', keys.restore, '--target', t]);
        const d = rr.code === 0 ? diffTrees(trees.get(inc)!, readTree(t)) : [`exit ${rr.code}: ${rr.stderr}`];
        if (d.length) out.push(`restore of the new full: ${d.join('; ')}`);
      }
      return out;
    },
  };
});

tamperCase('k', 'a volume truncated to half its size', (repo) => {
  const v = volumesOf(base, full)[2];
  const size = readFileSync(vol(base, v)).length;
  const cut = Math.floor(size / 2);
  truncateSync(vol(repo, v), cut);
  return { detect: { problems: [`volumes/${v}`] }, restore: hitting((n) => n.volume === v && n.entry.data + n.entry.size > cut) };
});

tamperCase('l', 'a volume deleted', (repo) => {
  const v = volumesOf(base, full)[1];
  rmSync(vol(repo, v));
  return { detect: { problems: [`volumes/${v}`] }, restore: hitting((n) => n.volume === v), readData: true };
});

tamperCase('m', 'two volumes\' names swapped', (repo) => {
  const [v1, , , v4] = volumesOf(base, full);
  renameSync(vol(repo, v1), vol(repo, 'swap'));
  renameSync(vol(repo, v4), vol(repo, v1));
  renameSync(vol(repo, 'swap'), vol(repo, v4));
  return { detect: { problems: [`volumes/${v1}`, `volumes/${v4}`] }, restore: hitting((n) => n.volume === v1 || n.volume === v4) };
});

tamperCase('n', 'a volume of the full copied over the increment\'s volume (another snapshot\'s name)', (repo) => {
  const from = volumesOf(base, full)[0];
  const to = volumesOf(base, inc)[0];
  copyFileSync(vol(base, from), vol(repo, to));
  return { detect: { problems: [`volumes/${to}`] }, restore: hitting((n) => n.volume === to), readData: true };
});

tamperCase('o', 'replay: the increment\'s record and manifest copied under a new, later snapshot name', (repo) => {
  const replay = `${SYSTEM}_${full.split('_')[1]}_increment_2099-12-31-23-59`;
  copyFileSync(join(repo, 'snapshots', `${inc}.snapshot.asc`), join(repo, 'snapshots', `${replay}.snapshot.asc`));
  copyFileSync(join(repo, 'manifests', `${inc}.manifest.pgp`), join(repo, 'manifests', `${replay}.manifest.pgp`));
  trees.set(replay, trees.get(inc)!);
  // The replayed name must never be restorable, and `latest` must still be the real increment.
  return { detect: { problems: [`snapshots/${replay}.snapshot.asc`] }, restore: { [replay]: fatal, latest: ok } };
});

tamperCase('p', 'a middle snapshot record deleted (full, increment, increment)', (repo) => {
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, ...BACKUP]);
  const list = snapshots(repo);
  assert.equal(list.length, 3);
  const last = list[2].name;
  trees.set(last, trees.get(inc)!);
  rmSync(join(repo, 'snapshots', `${inc}.snapshot.asc`));
  return { detect: { problems: [`snapshots/${last}.snapshot.asc`] }, restore: { [full]: ok, [inc]: fatal, [last]: fatal } };
});

tamperCase('q', 'an unsigned extra object in volumes/ under a name of the full', (repo) => {
  const extra = `${full}.files.${String(volumesOf(base, full).length + 1).padStart(4, '0')}.tar`;
  writeFileSync(vol(repo, extra), seededBytes('tamper-extra', MiB));
  return { detect: { note: `volumes/${extra}` } };
});

// ---- (j) key files -------------------------------------------------------------------

/** Places inside the armored private key of a key file to flip one bit, one per field of interest. */
function keySpots(text: string): { label: string; offset: number }[] {
  const data = armoredBlocks(text).find((b) => b.type === 'PRIVATE KEY BLOCK')!.data;
  const ps = packets(data);
  const spots: { label: string; offset: number }[] = [];
  const sigs = ps.filter((p) => p.tag === 2);
  const primary = ps.find((p) => p.tag === 5), sub = ps.find((p) => p.tag === 7), uid = ps.find((p) => p.tag === 13);
  if (primary) {
    spots.push({ label: 'primary key: public point', offset: primary.body + 25 });
    spots.push({ label: 'primary key: secret scalar', offset: primary.body + primary.length - 10 });
  }
  if (uid) spots.push({ label: 'user id', offset: uid.body + (uid.length >> 1) });
  if (sigs[0]) spots.push({ label: 'self-signature', offset: sigs[0].body + (sigs[0].length >> 1) });
  if (sub) {
    spots.push({ label: 'subkey: public point', offset: sub.body + 25 });
    spots.push({ label: 'subkey: secret scalar', offset: sub.body + sub.length - 10 });
  }
  if (sigs[1]) spots.push({ label: 'subkey binding signature', offset: sigs[1].body + (sigs[1].length >> 1) });
  return spots;
}

/** A one-line failure that names the key file (not a manifest or volume it failed to open). */
function keyLineProblems(what: string, r: { code: number | null; stderr: string }, keyFile: string): string[] {
  const out: string[] = [];
  const lines = r.stderr.split('\n').filter((l) => l);
  if (r.code !== 1) out.push(`${what}: exit ${r.code}, expected 1; stderr ${JSON.stringify(r.stderr.trim())}`);
  else if (lines.length !== 1 || !lines[0].startsWith('iebs: ')) out.push(`${what}: expected one "iebs: ..." line, got ${JSON.stringify(r.stderr)}`);
  else if (/internal error/.test(lines[0]) || /^\s+at /m.test(r.stderr)) out.push(`${what}: an internal error, not a clear one: ${lines[0]}`);
  else if (!lines[0].includes(keyFile)) out.push(`${what}: the line does not name the key file ${keyFile}: ${lines[0]}`);
  return out;
}

test('(j) a flipped bit inside the armored key of backup.key: backup refuses with one line and changes nothing', () => {
  const dir = tempDir('tamper-j-backup');
  const text = readFileSync(keys.backup, 'utf8');
  const problems: string[] = [];
  const missed: string[] = [];
  const spots = keySpots(text);
  for (const [i, spot] of spots.entries()) {
    tried++;
    const key = join(dir, `backup-${i}.key`);
    writeFileSync(key, flipArmoredBit(text, 'PRIVATE KEY BLOCK', () => spot.offset, 2));
    const repo = join(dir, `repo-${i}`);
    copyTree(base, repo);
    const before = fileDigests(repo);
    const r = iebs(['backup', '--init', src, '--repo', repo, '--key', key, ...BACKUP]);
    if (r.code !== 0) detected++;
    if (r.code === 0) missed.push(spot.label);
    problems.push(...keyLineProblems(`backup.key, ${spot.label}`, r, key));
    const afterRun = fileDigests(repo);
    const changed = [...new Set([...before.keys(), ...afterRun.keys()])].filter((k) => before.get(k) !== afterRun.get(k));
    if (r.code !== 0 && changed.length) problems.push(`backup.key, ${spot.label}: the failed backup changed the repository: ${changed.join(', ')}`);
    const fresh = join(dir, `fresh-${i}`);
    const f = iebs(['backup', '--init', src, '--repo', fresh, '--key', key, ...BACKUP]);
    if (f.code !== 0 && existsSync(fresh)) problems.push(`backup.key, ${spot.label}: a refused backup created a repository at ${fresh}: ${listFiles(fresh).join(', ')}`);
  }
  tally.push(`fault-tamper (j) backup.key: ${spots.length - missed.length} of ${spots.length} flipped bits refused${missed.length ? `; NOT DETECTED: ${missed.join(', ')}` : ''}`);
  assert.deepEqual(problems, [], problems.join('\n'));
});

test('(j) a flipped bit inside the armored key of restore.key: restore refuses with one line and writes nothing', () => {
  const dir = tempDir('tamper-j-restore');
  const text = readFileSync(keys.restore, 'utf8');
  const problems: string[] = [];
  const missed: string[] = [];
  const spots = keySpots(text);
  for (const [i, spot] of spots.entries()) {
    tried++;
    const key = join(dir, `restore-${i}.key`);
    writeFileSync(key, flipArmoredBit(text, 'PRIVATE KEY BLOCK', () => spot.offset, 2));
    const target = join(dir, `t-${i}`);
    const r = iebs(['restore', '--repo', base, '--key', key, '--target', target]);
    if (r.code !== 0) detected++;
    if (r.code === 0) missed.push(spot.label);
    problems.push(...keyLineProblems(`restore.key, ${spot.label}`, r, key));
    if (r.code !== 0 && existsSync(target) && listFiles(target).length) problems.push(`restore.key, ${spot.label}: files written: ${listFiles(target).join(', ')}`);
  }
  tally.push(`fault-tamper (j) restore.key: ${spots.length - missed.length} of ${spots.length} flipped bits refused${missed.length ? `; NOT DETECTED: ${missed.join(', ')}` : ''}`);
  assert.deepEqual(problems, [], problems.join('\n'));
});
