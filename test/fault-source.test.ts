/**
 * Fault injection, source trouble: the source changes under a running backup.
 * - A file that vanishes during the walk (deleted after its directory was listed, while
 *   the backup, stopped with SIGSTOP meanwhile, has an earlier big file open): a warning
 *   on stderr names it, exit 3, the rest of the tree is stored and restores.
 * - A 20 MiB file written by another process for the whole backup (appended to, and
 *   its first bytes rewritten to say how much was appended): it is read three times,
 *   then stored as the last reading saw it, never silently: a warning names it and says
 *   so, and the exit code is 3; the restore gives bytes the file really held (the base
 *   body, then the writer's records). The next backup, with the writer stopped, reads it
 *   again although its metadata did not change since, and stores it whole.
 * - Small files written to by another process for the whole backup, among 2,000 that do
 *   not change, all packed: a reading that tears is taken back out of its pack and read
 *   again (about 20 times a run here), and one torn on every reading is stored as last read
 *   with a warning. The unchanged files restore byte for byte, and each written one as a
 *   prefix of its own text: no reading taken back left its bytes in a neighbour's place.
 * - A directory replaced by a file (and a file by a directory) between two backups:
 *   both snapshots restore as they were.
 * A file that cannot be opened is not tested: the suite runs as root, whom chmod 000
 * does not stop.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, realpathSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MiB, diffTrees, iebs, iebsChild, iebsOk, makeKeys, pathKey, readTree, seededBytes, snapshots, tempDir, writeSeeded, type Keys, type Run } from './helpers.js';

let keys: Keys;
before(() => { keys = makeKeys(); });

const VOL = ['--volume-size', '8MiB'];

/** Warning lines of a backup's stderr that name `path`. */
const warningsFor = (r: Run, path: string) => r.stderr.split('\n').filter((l) => l.startsWith('iebs: warning: ') && l.includes(path));

/**
 * Runs a backup and deletes `victim` at a moment when the run is reading `reading`
 * (which the walk reaches first): the run is stopped with SIGSTOP every few milliseconds
 * and its open files looked at in /proc, so the deletion lands while `reading` is open,
 * after the directory was listed and before the walk gets to `victim`, however loaded the
 * machine. Returns the run and whether the deletion happened.
 */
async function deleteWhileReading(args: string[], reading: string, victim: string): Promise<{ run: Run; deleted: boolean }> {
  const child = iebsChild(args);
  let stdout = '', stderr = '';
  child.stdout!.on('data', (d) => { stdout += d; });
  child.stderr!.on('data', (d) => { stderr += d; });
  let ended = false;
  const exited = new Promise<Run>((resolve) => child.on('close', (code, signal) => { ended = true; resolve({ code, signal, stdout, stderr }); }));
  const want = realpathSync(reading);
  const fds = `/proc/${child.pid}/fd`;
  let deleted = false;
  while (!ended && !deleted) {
    child.kill('SIGSTOP');
    try {
      if (readdirSync(fds).some((fd) => { try { return readlinkSync(join(fds, fd)) === want; } catch { return false; } })) {
        unlinkSync(victim);
        deleted = true;
      }
    } catch { /* the process is gone */ }
    child.kill('SIGCONT');
    await sleep(3);
  }
  return { run: await exited, deleted };
}

test('a file that vanishes during the walk: a warning names it, exit 3, the rest is stored', async () => {
  const dir = tempDir('src-vanish');
  const src = join(dir, 'src');
  const repo = join(dir, 'repo');
  mkdirSync(join(src, 'sub'), { recursive: true });
  // Sorted first, so it is read while the walk has listed, but not reached, the others.
  writeSeeded(join(src, 'a-big.bin'), 'vanish-big', 20 * MiB);
  writeFileSync(join(src, 'b-vanish.txt'), 'here when the walk began\n');
  writeFileSync(join(src, 'c-after.txt'), 'after\n');
  writeFileSync(join(src, 'sub', 'x.txt'), 'x\n');
  const r = await deleteWhileReading(['backup', '--init', src, '--repo', repo, '--key', keys.backup, ...VOL], join(src, 'a-big.bin'), join(src, 'b-vanish.txt'));
  assert.ok(r.deleted, `the backup was never seen reading a-big.bin (exit ${r.run.code}: ${r.run.stderr})`);
  const problems: string[] = [];
  if (warningsFor(r.run, 'b-vanish.txt').length !== 1) problems.push(`expected one warning naming b-vanish.txt on stderr, got ${JSON.stringify(r.run.stderr)}`);
  if (r.run.code !== 3) problems.push(`exit ${r.run.code}, expected 3 (a file could not be read)`);
  const target = join(dir, 'restored');
  const rr = iebs(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
  if (rr.code !== 0) problems.push(`restore: exit ${rr.code}: ${rr.stderr}`);
  else {
    const d = diffTrees(readTree(src), readTree(target));
    if (d.length) problems.push(`restore differs from the source without the vanished file: ${d.join('; ')}`);
  }
  assert.deepEqual(problems, [], problems.join('\n'));
});

/** Record `k` the writer appends: 4096 bytes that say which record they are. */
function record(k: number): Buffer {
  const b = Buffer.alloc(4096);
  for (let i = 0; i < b.length; i++) b[i] = (k * 7 + i) & 0xff;
  b.write(`record ${k}\n`, 0, 'latin1');
  return b;
}

/**
 * Starts a process that, every millisecond, appends record k to `path` and then writes
 * record k over the file's first 4096 bytes (a header saying how many records follow),
 * until stopped. A reader that catches the file between two of its versions sees a
 * header that does not match the records after it.
 */
async function startWriter(path: string): Promise<{ stop: () => Promise<void> }> {
  const code = `
    const fs = require('node:fs');
    const path = ${JSON.stringify(path)};
    const record = ${record.toString()};
    const fd = fs.openSync(path, 'r+');
    let k = 0;
    const tick = () => {
      const r = record(k++);
      fs.appendFileSync(path, r);
      fs.writeSync(fd, r, 0, r.length, 0);
      setTimeout(tick, 1);
    };
    tick();
  `;
  const size = statSync(path).size;
  const child = spawn(process.execPath, ['-e', code], { stdio: 'ignore' });
  const deadline = Date.now() + 10_000;
  while (statSync(path).size === size) {
    assert.ok(Date.now() < deadline, 'the writer did not start');
    await sleep(5);
  }
  return {
    stop: async () => {
      const done = new Promise((resolve) => child.on('close', resolve));
      child.kill('SIGTERM');
      await done;
    },
  };
}

/**
 * Whether a restored copy of the written file holds only bytes the file held: the base
 * body, then whole records in order, with at most the last one cut short (read while it
 * was appended); the header may be of any version.
 */
function readFromFile(got: Buffer, base: Buffer): string {
  if (got.length < base.length) return `shorter than the base file (${got.length} bytes)`;
  if (!got.subarray(4096, base.length).equals(base.subarray(4096))) return 'the body differs from the base file';
  for (let k = 0, at = base.length; at < got.length; k++, at += 4096) {
    const piece = got.subarray(at, Math.min(at + 4096, got.length));
    if (!piece.equals(record(k).subarray(0, piece.length))) return `record ${k} differs`;
  }
  return 'read from the file';
}

/**
 * How a restored copy of the written file relates to what the writer wrote: 'whole' if
 * it is one of its versions (the base with n records appended and a header naming the
 * last, or the one before while a tick is half done), else what is mixed up.
 */
function versionOf(got: Buffer, base: Buffer): string {
  if (got.length < base.length) return `shorter than the base file (${got.length} bytes)`;
  if (!got.subarray(4096, base.length).equals(base.subarray(4096))) return 'the body differs from the base file';
  const tail = got.length - base.length;
  if (tail % 4096) return `base plus ${tail} bytes: a torn record`;
  const n = tail / 4096;
  for (let k = 0; k < n; k++) if (!got.subarray(base.length + k * 4096, base.length + (k + 1) * 4096).equals(record(k))) return `record ${k} differs`;
  const head = got.subarray(0, 4096);
  const fits = (h: number) => (h >= 0 ? head.equals(record(h)) : h === -1 && head.equals(base.subarray(0, 4096)));
  if (fits(n - 1) || fits(n - 2)) return 'whole';
  return `${n} records follow a header that names none of the last two: a mix of versions`;
}

test('a file appended to during the whole backup is stored as last read, never silently: warning, exit 3, its bytes restore', async (t) => {
  const dir = tempDir('src-grow');
  const src = join(dir, 'src');
  mkdirSync(src);
  const grow = join(src, 'grow.bin');
  const base = seededBytes('grow-base', 20 * MiB);
  writeFileSync(grow, base);
  writeFileSync(join(src, 'other.txt'), 'other\n');

  // An increment while the writer runs: the file was stored whole before.
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, ...VOL]);
  const writer = await startWriter(grow);
  let inc: Run;
  try {
    inc = iebs(['backup', '--init', src, '--repo', repo, '--key', keys.backup, ...VOL]);
  } finally { await writer.stop(); }
  // A full, in a new repository, while the writer runs: no earlier version exists.
  writeFileSync(grow, base);
  const repo2 = join(dir, 'repo2');
  const writer2 = await startWriter(grow);
  let fresh: Run;
  try {
    fresh = iebs(['backup', '--init', src, '--repo', repo2, '--key', keys.backup, ...VOL]);
  } finally { await writer2.stop(); }

  for (const [label, run, r, target] of [['increment', () => inc, repo, 'restored-inc'], ['full', () => fresh, repo2, 'restored-full']] as const) {
    await t.test(`the ${label} warns that grow.bin was stored as last read, exits 3, and restores bytes the file held`, () => {
      const w = warningsFor(run(), 'grow.bin');
      assert.equal(w.length, 1, `one warning naming grow.bin: ${run().stderr}`);
      assert.match(w[0], /changed on every one of 3 readings; stored as the last reading saw it/);
      assert.equal(run().code, 3, run().stderr);
      const at = join(dir, target);
      iebsOk(['restore', '--repo', r, '--key', keys.restore, '--target', at]);
      assert.ok(existsSync(join(at, 'other.txt')));
      const got = readFileSync(join(at, 'grow.bin'));
      assert.equal(readFromFile(got, base), 'read from the file');
      t.diagnostic(`the ${label} restored grow.bin as the base plus ${((got.length - base.length) / 4096).toFixed(2)} records (${versionOf(got, base)})`);
    });
  }

  await t.test('with the writer stopped, the next backup stores the file as it now is', () => {
    const r = iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, ...VOL]);
    assert.doesNotMatch(r.stderr, /warning/);
    const target = join(dir, 'restored-after');
    iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
    assert.deepEqual(diffTrees(readTree(src), readTree(target)), []);
  });
});

test('small files written to during the backup: their neighbours in the same packs restore byte for byte, and each restores as bytes it held', async (t) => {
  const dir = tempDir('src-hot');
  const src = join(dir, 'src');
  mkdirSync(src);
  // Static small files, and among them some that another process writes to for the whole
  // backup: a reading of one that tears is taken back out of its pack and read again.
  // Each of those holds a prefix of its own text, 100 to 240 KB (packed: under a block's
  // minimum): the writer appends to them in turn, and cuts one back to 100 KB once it
  // passes 240, so a reading often overlaps a write.
  const hot = Array.from({ length: 50 }, (_, i) => join(src, `hot-${String(i).padStart(2, '0')}.txt`));
  const text = (i: number) => { let s = ''; for (let k = 0; s.length < 250_000; k++) s += `${i}:${k};`; return s; };
  hot.forEach((h, i) => writeFileSync(h, text(i).slice(0, 100_000)));
  for (let i = 0; i < 2000; i++) writeSeeded(join(src, `f-${String(i).padStart(4, '0')}.bin`), `hot-${i}`, 200 + ((i * 7919) % 6000));
  const code = `
    const fs = require('node:fs');
    const text = ${text.toString()};
    const files = ${JSON.stringify(hot)}.map((p, i) => ({ fd: fs.openSync(p, 'r+'), text: text(i), len: 100000 }));
    let n = 0;
    const tick = () => {
      for (let k = 0; k < 200; k++) {
        const f = files[n++ % files.length];
        if (f.len >= 240000) { fs.ftruncateSync(f.fd, 100000); f.len = 100000; continue; }
        f.len += fs.writeSync(f.fd, f.text.slice(f.len, f.len + 400), f.len);
      }
      setImmediate(tick);
    };
    tick();
  `;
  const writer = spawn(process.execPath, ['-e', code], { stdio: 'ignore' });
  const repo = join(dir, 'repo');
  let r: Run;
  try {
    await sleep(200);
    r = iebs(['backup', '--init', src, '--repo', repo, '--key', keys.backup, ...VOL]);
  } finally {
    const done = new Promise((resolve) => writer.on('close', resolve));
    writer.kill('SIGTERM');
    await done;
  }
  assert.ok(r.code === 0 || r.code === 3, r.stderr);
  const target = join(dir, 'restored');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
  const isHot = (p: string) => p.startsWith('hot-');
  const statics = (tree: ReturnType<typeof readTree>) => new Map([...tree].filter(([p]) => !isHot(p)));
  assert.deepEqual(diffTrees(statics(readTree(src)), statics(readTree(target))), [], 'the static files restore byte for byte');
  hot.forEach((h, i) => {
    const name = h.slice(src.length + 1);
    const got = readFileSync(join(target, name), 'latin1');
    assert.ok(got.length >= 100_000 && got === text(i).slice(0, got.length), `${name} restores as a prefix of its own text (${got.length} bytes: ${got.slice(0, 12)}...)`);
  });
  t.diagnostic(`exit ${r.code}; ${hot.filter((h) => warningsFor(r, h.slice(src.length + 1)).length > 0).length} of ${hot.length} written files stored as last read, with a warning`);
});

test('a directory replaced by a file, and a file by a directory, between two backups: both snapshots restore', () => {
  const dir = tempDir('src-kind');
  const src = join(dir, 'src');
  const repo = join(dir, 'repo');
  mkdirSync(join(src, 'x', 'deeper'), { recursive: true });
  writeFileSync(join(src, 'x', 'a.txt'), 'a\n');
  writeSeeded(join(src, 'x', 'deeper', 'b.bin'), 'kind-b', MiB);
  writeFileSync(join(src, 'y'), 'y was a file\n');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, ...VOL]);
  const before = readTree(src);

  rmSync(join(src, 'x'), { recursive: true });
  writeSeeded(join(src, 'x'), 'kind-x-file', 300 * 1024);
  rmSync(join(src, 'y'));
  mkdirSync(join(src, 'y'));
  writeFileSync(join(src, 'y', 'inside.txt'), 'y is a directory now\n');
  const r = iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, ...VOL]);
  assert.doesNotMatch(r.stderr, /warning/);
  const afterTree = readTree(src);
  assert.equal(afterTree.get(pathKey('x'))!.kind, 'file');

  const [s0, s1] = snapshots(repo);
  const t1 = join(dir, 'restored-1');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', t1, '--snapshot', s1.name]);
  assert.deepEqual(diffTrees(afterTree, readTree(t1)), []);
  const t0 = join(dir, 'restored-0');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', t0, '--snapshot', s0.name]);
  assert.deepEqual(diffTrees(before, readTree(t0)), []);
});
