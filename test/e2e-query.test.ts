/**
 * The query verbs through the real CLI, on one repository of two systems: `ls` with
 * paths, --long, --json and latest --system; `find` across the snapshots of a chain
 * (checked against what `ls` lists of each snapshot, and that each manifest is read
 * once); `diff` with every letter; `dump` of a file byte for byte and of folders through
 * the system's `tar -x`, compared with the source trees (modes, mtimes, long and
 * non-UTF-8 names); `stats` against the repository's files; and each verb's bad input.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CLI, MiB, assertOneLineError, copyTree, diffTrees, iebs, iebsOk, makeKeys, readTree, snapshots, tempDir, writeSeeded, type Keys, type Tree,
} from './helpers.js';

let keys: Keys;
let repo: string;
/** Copies of the lap source as each of its three snapshots saw it, and desk's. */
let trees: { lap1: string; lap2: string; lap3: string; desk: string };
let names: { lap1: string; lap2: string; lap3: string; desk: string };

const LONG_DIR = 'deep/' + 'd'.repeat(90) + '/' + 'e'.repeat(90);
const LONG_FILE = LONG_DIR + '/' + 'f'.repeat(120) + '.txt';
const LATIN1 = Buffer.from([0x6c, 0x61, 0x74, 0x69, 0x6e, 0xe9, 0x2e, 0x70, 0x64, 0x66]); // "latiné.pdf" in latin-1

function makeLap(src: string): void {
  mkdirSync(join(src, 'taxes/2024'), { recursive: true });
  mkdirSync(join(src, 'taxes/2023'));
  mkdirSync(join(src, 'notes'));
  mkdirSync(join(src, 'empty'));
  mkdirSync(join(src, LONG_DIR), { recursive: true });
  writeSeeded(join(src, 'taxes/2024/return.pdf'), 'return', 3 * MiB + 123);
  writeSeeded(join(src, 'taxes/2023/return.pdf'), 'old-return', 200_000);
  writeFileSync(join(src, 'taxes/copy-of-2024.pdf'), readFileSync(join(src, 'taxes/2024/return.pdf')));
  writeFileSync(join(src, 'notes/todo'), 'a file that becomes a directory\n');
  writeFileSync(join(src, 'notes/n.md'), 'first\n');
  writeFileSync(join(src, 'notes/private.txt'), 'private\n', { mode: 0o600 });
  chmodSync(join(src, 'notes/private.txt'), 0o600);
  writeFileSync(join(src, LONG_FILE), 'a name longer than ustar holds\n');
  writeFileSync(Buffer.concat([Buffer.from(join(src, 'taxes') + '/'), LATIN1]), 'latin-1 name\n');
  symlinkSync('x'.repeat(150), join(src, 'notes/long-link'));
  symlinkSync('../taxes', join(src, 'notes/to-taxes'));
  writeFileSync(join(src, 'notes/old'), 'from 2001\n');
  utimesSync(join(src, 'notes/old'), 981_173_106.123456, 981_173_106.123456);
  chmodSync(join(src, 'taxes/2023'), 0o750);
}

function snapshot(src: string, dest: string): string {
  copyTree(src, dest);
  return dest;
}

before(() => {
  keys = makeKeys();
  const dir = tempDir('query');
  repo = join(dir, 'repo');
  const lap = join(dir, 'lap');
  mkdirSync(lap);
  makeLap(lap);
  iebsOk(['backup', '--init', lap, '--repo', repo, '--key', keys.backup, '--name', 'lap']);
  const lap1 = snapshot(lap, join(dir, 'lap1'));
  // Second: contents (M), metadata only (U), a kind change (T), a deletion (-), an addition (+).
  writeFileSync(join(lap, 'notes/n.md'), 'first\nsecond\n');
  chmodSync(join(lap, 'notes/private.txt'), 0o640);
  rmSync(join(lap, 'notes/todo'));
  mkdirSync(join(lap, 'notes/todo'));
  writeFileSync(join(lap, 'notes/todo/item.pdf'), 'an item\n');
  rmSync(join(lap, 'taxes/2023/return.pdf'));
  writeSeeded(join(lap, 'taxes/2024/receipt.pdf'), 'receipt', 5000);
  iebsOk(['backup', lap, '--repo', repo, '--key', keys.backup, '--name', 'lap']);
  const lap2 = snapshot(lap, join(dir, 'lap2'));
  // Third: only a rename.
  renameSync(join(lap, 'taxes/2024/receipt.pdf'), join(lap, 'taxes/2024/receipt-renamed.pdf'));
  iebsOk(['backup', lap, '--repo', repo, '--key', keys.backup, '--name', 'lap']);
  const lap3 = snapshot(lap, join(dir, 'lap3'));
  const desk = join(dir, 'desk');
  mkdirSync(join(desk, 'work'), { recursive: true });
  writeFileSync(join(desk, 'work/plan.pdf'), 'desk plan\n');
  iebsOk(['backup', desk, '--repo', repo, '--key', keys.backup, '--name', 'desk']);
  trees = { lap1, lap2, lap3, desk };
  const s = snapshots(repo);
  const lapNames = s.filter((x) => x.system === 'lap').map((x) => x.name);
  assert.equal(lapNames.length, 3);
  names = { lap1: lapNames[0], lap2: lapNames[1], lap3: lapNames[2], desk: s.find((x) => x.system === 'desk')!.name };
});

const R = () => ['--repo', repo, '--key', keys.restore];

interface LsJson { files: { path: string; kind: string; size: number; mode: string; uid: number; gid: number; mtime: string }[]; snapshot: string }
const lsJson = (...args: string[]) => JSON.parse(iebsOk(['ls', ...R(), ...args, '--json']).stdout) as LsJson;

test('ls PATH... lists those paths and what is under them, in any spelling', () => {
  const all = lsJson(names.lap3).files.map((f) => f.path);
  const under = (p: string) => all.filter((x) => x === p || x.startsWith(p + '/'));
  for (const spelling of ['taxes/', '/taxes', './taxes', 'taxes']) {
    assert.deepEqual(lsJson(names.lap3, spelling).files.map((f) => f.path), under('taxes'), spelling);
  }
  assert.deepEqual(lsJson(names.lap3, 'taxes/2024', 'notes/n.md').files.map((f) => f.path), [...under('notes/n.md'), ...under('taxes/2024')]);
  // --snapshot names the snapshot, and then every argument is a path.
  assert.deepEqual(lsJson('--snapshot', names.lap3, 'notes').files.map((f) => f.path), under('notes'));
  // The text form: one path a line, directories with a /.
  const text = iebsOk(['ls', ...R(), names.lap3, 'taxes/2024']).stdout;
  assert.equal(text, 'taxes/2024/\ntaxes/2024/receipt-renamed.pdf\ntaxes/2024/return.pdf\n');
  // A prefix of a name is not a path: "tax" names nothing.
  const r = iebs(['ls', ...R(), names.lap3, 'tax']);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assertOneLineError(r, /holds no "tax"/);
  // With a path that names something beside it, that one is listed, and written out before the error.
  const some = iebs(['ls', ...R(), names.lap3, 'taxes/2024', 'tax']);
  assert.equal(some.code, 1);
  assert.equal(some.stdout, text);
  assertOneLineError(some, /holds no "tax"/);
});

test('ls --long shows mode, owner, size and mtime like ls -l', () => {
  const lines = iebsOk(['ls', ...R(), names.lap3, 'notes', '--long']).stdout.trim().split('\n');
  const st = statSync(join(trees.lap3, 'notes/private.txt'));
  const line = lines.find((l) => l.endsWith(' notes/private.txt'));
  assert.ok(line, lines.join('\n'));
  assert.match(line, new RegExp(`^-rw-r----- ${st.uid}:${st.gid} +${st.size} ${st.mtime.toISOString().slice(0, 19)}Z notes/private.txt$`));
  assert.ok(lines.some((l) => /^drwx/.test(l) && l.endsWith(' notes/todo/')), 'a directory, with d and a /');
  assert.ok(lines.some((l) => /^lrwxrwxrwx /.test(l) && l.endsWith(' notes/to-taxes -> ../taxes')), 'a symlink and its target');
  assert.ok(lines.some((l) => l.includes(' 2001-02-03T04:05:06Z notes/old')), 'the mtime in UTC');
});

test('latest, and latest --system S, name a snapshot in ls, restore and dump', () => {
  assert.equal(lsJson().snapshot, names.desk, 'latest: the newest of all');
  assert.equal(lsJson('latest').snapshot, names.desk);
  assert.equal(lsJson('latest', '--system', 'lap').snapshot, names.lap3);
  assert.equal(iebsOk(['dump', 'latest', 'notes/n.md', '--system', 'lap', ...R()]).stdout, 'first\nsecond\n');
  const target = join(tempDir('restore-system'), 't');
  iebsOk(['restore', ...R(), '--target', target, '--system', 'lap']);
  assert.deepEqual(diffTrees(readTree(trees.lap3), readTree(target)), []);
  const r = iebs(['ls', ...R(), 'latest', '--system', 'nosuch']);
  assert.equal(r.code, 1);
  assertOneLineError(r, /no snapshot of system nosuch/);
});

interface FindJson { matches: { snapshot: string; path: string; size: number; mtime: string }[]; searched: number; manifests: number }

test('find reports every snapshot holding a match, as ls sees each, reading each manifest once', () => {
  const expected: string[] = [];
  const order = [names.desk, names.lap1, names.lap2, names.lap3];
  for (const s of order) for (const f of lsJson(s).files) if (f.kind !== 'dir' && /\.pdf$/.test(f.path)) expected.push(`${s} ${f.path} ${f.size} ${f.mtime}`);
  const r = JSON.parse(iebsOk(['find', '*.pdf', ...R(), '--json']).stdout) as FindJson;
  const got = r.matches.map((m) => `${m.snapshot} ${m.path} ${m.size} ${m.mtime}`);
  assert.deepEqual([...got].sort(), [...expected].sort());
  assert.deepEqual(got.map((g) => g.split(' ')[0]), expected.map((e) => e.split(' ')[0]), 'grouped by snapshot, chain by chain, systems in name order');
  assert.equal(r.searched, 4);
  assert.equal(r.manifests, 4, 'three snapshots of one chain, one of another: four manifests read');
  // The text form: SNAPSHOT SIZE MTIME PATH.
  const text = iebsOk(['find', 'receipt*', ...R()]).stdout.trim().split('\n');
  assert.deepEqual(text.map((l) => l.replace(/ +/g, ' ').replace(/ \S+Z /, ' T ')), [
    `${names.lap2} 5000 T taxes/2024/receipt.pdf`, `${names.lap3} 5000 T taxes/2024/receipt-renamed.pdf`,
  ]);
});

test('find: a pattern with / matches the whole path; --snapshot and --system narrow the search', () => {
  const paths = (args: string[]) => (JSON.parse(iebsOk(['find', ...args, ...R(), '--json']).stdout) as FindJson).matches.map((m) => `${m.snapshot} ${m.path}`);
  assert.deepEqual(paths(['taxes/*/*.pdf', '--snapshot', names.lap1]), [`${names.lap1} taxes/2023/return.pdf`, `${names.lap1} taxes/2024/return.pdf`]);
  assert.deepEqual(paths(['/notes/**/*.pdf']), [`${names.lap2} notes/todo/item.pdf`, `${names.lap3} notes/todo/item.pdf`]);
  assert.deepEqual(paths(['*.pdf', '--system', 'desk']), [`${names.desk} work/plan.pdf`]);
  assert.deepEqual(paths(['n.md', 'todo']), [
    `${names.lap1} notes/n.md`, `${names.lap1} notes/todo`, `${names.lap2} notes/n.md`, `${names.lap2} notes/todo`, `${names.lap3} notes/n.md`, `${names.lap3} notes/todo`,
  ]);
  // --snapshot of an early snapshot reads no manifest after it.
  assert.equal((JSON.parse(iebsOk(['find', '*', '--snapshot', names.lap1, ...R(), '--json']).stdout) as FindJson).manifests, 1);
  // Nothing found: exit 0, a note on stderr.
  const none = iebsOk(['find', '*.docx', ...R()]);
  assert.equal(none.stdout, '');
  assert.match(none.stderr, /nothing matches in 4 snapshot/);
});

test('diff shows +, -, M, U and T, and counts them', () => {
  const r = iebsOk(['diff', names.lap1, names.lap2, ...R()]);
  const lines = r.stdout.trim().split('\n');
  const summary = lines.pop()!;
  assert.deepEqual(lines, [
    'U    notes/',
    'M    notes/n.md',
    'U    notes/private.txt',
    'T    notes/todo/',
    '+    notes/todo/item.pdf',
    'U    taxes/2023/',
    '-    taxes/2023/return.pdf',
    'U    taxes/2024/',
    '+    taxes/2024/receipt.pdf',
  ]);
  assert.match(summary, new RegExp(`^${names.lap1} -> ${names.lap2}: 2 added \\(4\\.9 KiB\\), 1 removed \\(195\\.3 KiB\\), 1 changed \\(6 B -> 13 B\\), 4 metadata only, 1 kind changed$`));
  const j = JSON.parse(iebsOk(['diff', names.lap1, names.lap2, ...R(), '--json']).stdout) as { changes: { change: string; path: string }[]; a: string; b: string; summary: Record<string, number> };
  assert.equal(j.changes.length, 9);
  assert.deepEqual(j.changes.find((c) => c.path === 'notes/todo'), { change: 'T', path: 'notes/todo', from: 'file', to: 'dir', sizeBefore: 32 });
  assert.deepEqual(j.summary, { added: 2, removed: 1, changed: 1, metadata: 4, type: 1, addedBytes: 5000 + 8, removedBytes: 200_000, changedBytesBefore: 6, changedBytesAfter: 13 });
  // A rename is a removal and an addition; the same snapshot twice differs in nothing.
  assert.deepEqual(iebsOk(['diff', names.lap2, names.lap3, ...R()]).stdout.trim().split('\n').slice(0, -1), ['U    taxes/2024/', '+    taxes/2024/receipt-renamed.pdf', '-    taxes/2024/receipt.pdf']);
  assert.match(iebsOk(['diff', names.lap3, names.lap3, ...R()]).stdout, /^\S+ -> \S+: 0 added \(0 B\), 0 removed \(0 B\), 0 changed \(0 B -> 0 B\), 0 metadata only, 0 kind changed\n$/);
  // Across systems (and chains): by path.
  const cross = iebsOk(['diff', names.desk, names.lap1, ...R()]).stdout;
  assert.match(cross, /^-    work\/$/m);
  assert.match(cross, /^\+    taxes\/2024\/return\.pdf$/m);
});

function untar(stdout: Buffer, into: string): void {
  mkdirSync(into, { recursive: true });
  const t = spawnSync('tar', ['-xpf', '-', '-C', into], { input: stdout });
  assert.equal(t.status, 0, `tar -x: ${t.stderr.toString()}`);
  assert.equal(t.stderr.toString(), '', 'tar warns of nothing');
}

function dumpBytes(args: string[]): Buffer {
  const r = spawnSync(process.execPath, [CLI, 'dump', ...args, ...R()], { maxBuffer: 64 * MiB, env: { ...process.env, IEBS_CONFIG_DIR: join(repo, '..', 'cfg'), TMPDIR: join(repo, '..') } });
  assert.equal(r.status, 0, `dump ${args.join(' ')}: ${r.stderr.toString()}`);
  return r.stdout;
}

/** The entries of `tree` under `prefix/`, renamed relative to `prefix`'s parent. */
function subtree(tree: Tree, prefix: string): Tree {
  const cut = prefix.lastIndexOf('/') + 1;
  const out: Tree = new Map();
  for (const [k, v] of tree) if (k === prefix || k.startsWith(prefix + '/')) out.set(k.slice(cut), v);
  return out;
}

test('dump of a file writes its bytes; of a folder, a tar that tar -x makes into the source tree', () => {
  assert.ok(dumpBytes([names.lap1, 'taxes/2024/return.pdf']).equals(readFileSync(join(trees.lap1, 'taxes/2024/return.pdf'))), 'a 3 MiB file of several blocks');
  assert.ok(dumpBytes([names.lap1, '/' + LONG_FILE]).equals(readFileSync(join(trees.lap1, LONG_FILE))));
  for (const [snap, src, path] of [[names.lap1, trees.lap1, 'taxes'], [names.lap2, trees.lap2, 'notes'], [names.lap1, trees.lap1, 'deep']] as const) {
    const out = tempDir('dump');
    untar(dumpBytes([snap, path]), out);
    assert.deepEqual(readdirSync(out), [path], 'the archive starts at the folder itself');
    assert.deepEqual(diffTrees(subtree(readTree(src), path), readTree(out)), [], `${snap} ${path}`);
  }
  // The whole snapshot: long names, a non-UTF-8 name, a 150-byte symlink target, modes, sub-second mtimes.
  const out = tempDir('dump-all');
  untar(dumpBytes([names.lap1, '/']), out);
  assert.deepEqual(diffTrees(readTree(trees.lap1), readTree(out)), []);
});

test('dump: a missing path, an unknown snapshot, a wrong key and bad arguments are one clear line', () => {
  const missing = iebs(['dump', names.lap1, 'taxes/2025', ...R()]);
  assert.equal(missing.code, 1);
  assert.equal(missing.stdout, '', 'nothing is written');
  assertOneLineError(missing, /holds no "taxes\/2025"/);
  const unknown = iebs(['dump', 'nosuch_2020-01-01_full', 'taxes', ...R()]);
  assert.equal(unknown.code, 1);
  assertOneLineError(unknown, /no snapshot named nosuch/);
  const other = makeKeys();
  const wrong = iebs(['dump', 'latest', 'taxes', '--repo', repo, '--key', other.restore]);
  assert.equal(wrong.code, 1);
  assertOneLineError(wrong, /wrong key/);
  const backupKey = iebs(['dump', 'latest', 'taxes', '--repo', repo, '--key', keys.backup]);
  assert.equal(backupKey.code, 1);
  assertOneLineError(backupKey, /restoring needs the restore key/);
  assertOneLineError(iebs(['dump', 'latest', ...R()]), /^iebs dump: missing required argument 'PATH'/);
  assert.equal(iebs(['dump', 'latest', 'a', '--archive', 'zip', ...R()]).code, 2);
  assert.equal(iebs(['dump', 'latest', '../etc', ...R()]).code, 2);
});

test('find, diff, ls and stats: unknown snapshots, wrong keys and bad arguments are one clear line', () => {
  for (const args of [['ls', 'nosuch'], ['diff', names.lap1, 'nosuch'], ['find', '*', '--snapshot', 'nosuch'], ['stats', 'nosuch']]) {
    const r = iebs([...args, ...R()]);
    assert.equal(r.code, 1, args.join(' '));
    assertOneLineError(r, /no snapshot named nosuch/);
  }
  const other = makeKeys();
  for (const args of [['ls'], ['diff', 'latest', 'latest'], ['find', '*']]) {
    const r = iebs([...args, '--repo', repo, '--key', other.restore]);
    assert.equal(r.code, 1, args.join(' '));
    assertOneLineError(r, /wrong key/);
  }
  const usage = [['find'], ['diff', 'latest'], ['find', '[abc'], ['stats', 'a', 'b']];
  for (const args of usage) {
    const r = iebs([...args, ...R()]);
    assert.equal(r.code, 2, args.join(' '));
    assertOneLineError(r);
  }
});

interface StatsJson {
  snapshots: { name: string; files: number; bytes: number; stored: number }[];
  repository: { snapshots: number; restoreBytes: number; volumeBytes: number; metadataBytes: number; ratio: number };
  contents?: {
    snapshot?: { files: number; dirs: number; symlinks: number; bytes: number; blocks: number; plainBytes: number; storedBytes: number; dedupRatio: number };
    repository?: { blocks: number; plainBytes: number; storedBytes: number; overheadBytes: number; dedupRatio: number; compressionRatio: number };
  };
}

const sizeOf = (dir: string) => readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);

test('stats: public figures match the repository; with the restore key, dedup and compression come apart', () => {
  const pub = JSON.parse(iebsOk(['stats', '--repo', repo, '--json']).stdout) as StatsJson;
  assert.equal(pub.contents, undefined, 'no restore key, no contents');
  assert.equal(pub.repository.snapshots, 4);
  assert.equal(pub.repository.volumeBytes, sizeOf(join(repo, 'volumes')));
  assert.equal(pub.repository.metadataBytes, sizeOf(join(repo, 'manifests')) + sizeOf(join(repo, 'indexes')));
  assert.equal(pub.repository.restoreBytes, snapshots(repo).reduce((n, s) => n + s.bytes, 0));
  assert.equal(JSON.stringify(JSON.parse(iebsOk(['stats', '--repo', repo, '--key', keys.recipient, '--json']).stdout)), JSON.stringify(pub), 'recipient.asc: the same, checked against your keys');

  const one = JSON.parse(iebsOk(['stats', names.lap1, ...R(), '--json']).stdout) as StatsJson;
  const listed = lsJson(names.lap1).files;
  const c = one.contents!.snapshot!;
  assert.equal(c.files, listed.filter((f) => f.kind === 'file').length);
  assert.equal(c.dirs, listed.filter((f) => f.kind === 'dir').length);
  assert.equal(c.symlinks, 2);
  assert.equal(c.bytes, listed.reduce((n, f) => n + f.size, 0));
  // copy-of-2024.pdf holds the same blocks as 2024/return.pdf: stored once.
  const copy = 3 * MiB + 123;
  assert.equal(c.plainBytes, c.bytes - copy);
  assert.ok(c.dedupRatio > 1.9, `dedup ${c.dedupRatio}`);
  assert.ok(c.storedBytes > c.plainBytes, 'random data does not compress: envelopes are a little larger');

  const all = JSON.parse(iebsOk(['stats', ...R(), '--json']).stdout) as StatsJson;
  const rc = all.contents!.repository!;
  assert.ok(rc.plainBytes < all.repository.restoreBytes / 3, 'the unchanged files of three snapshots are stored once');
  assert.equal(rc.overheadBytes, all.repository.volumeBytes - rc.storedBytes);
  assert.ok(rc.overheadBytes > 0);
  const text = iebsOk(['stats', ...R()]).stdout;
  assert.match(text, /^repository: 4 snapshots, 2 system\(s\), 2 chain\(s\)$/m);
  assert.match(text, /^ {2}dedup \d+\.\d\dx .*compression \d\.\d\dx/m);
});
