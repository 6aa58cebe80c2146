/**
 * The rclone backend (engine/storage/rclone.ts) against real rclone remotes, never a
 * mock: the conformance suite on a `type = local` remote, and on a WebDAV and an SFTP
 * remote served by `rclone serve` on 127.0.0.1 (real network protocols, with a user and
 * password). Then: listing order across folders; a dead rclone restarted; a put killed
 * with SIGKILL (nothing under its name, no rclone left, debris removed); a 256 MiB put in
 * bounded memory; every CLI verb through `--repo rclone:...`, a stale lock included; and
 * the one-line errors of a missing remote, a bad REPO, a wrong password (never shown), an
 * encrypted config and a missing rclone.
 *
 * Every rclone here reads a temporary config file (RCLONE_CONFIG), never the user's.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { RcloneStorage, rcloneEnv } from '../engine/storage/rclone.js';
import { withRetry } from '../engine/storage/retry.js';
import { listAll } from '../engine/storage/storage.js';
import { openStorage } from '../engine/storage/open.js';
import { encodeLock } from '../formats/lock.js';
import { diffTrees, iebs, iebsOk, makeKeys, readTree, tempDir, writeSeeded, MiB, type Keys } from './helpers.js';
import { storageConformance } from './storage-conformance.js';

const dir = tempDir('rclone');
const CONFIG = join(dir, 'rclone.conf');
const DAV_ROOT = join(dir, 'dav-root');
const DAV_USER = 'iebs-test';
const DAV_PASS = randomBytes(12).toString('hex');
mkdirSync(DAV_ROOT);
// The local remote now; the webdav one once its server has a port (before()).
writeFileSync(CONFIG, '[disk]\ntype = local\n');
process.env.RCLONE_CONFIG = CONFIG;

let dav: ChildProcess | null = null;
let davPort = 0;
let sftp: ChildProcess | null = null;
const SFTP_ROOT = join(dir, 'sftp-root');
mkdirSync(SFTP_ROOT);

/** A free port on 127.0.0.1 (the kernel's pick, released for rclone to take). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Starts `rclone serve PROTOCOL` on ROOT at 127.0.0.1:PORT with the test's user and password. */
async function serve(protocol: string, root: string, port: number): Promise<ChildProcess> {
  // Its host keys (sftp) go to a cache of the test's own, not the user's.
  const child = spawn('rclone', ['serve', protocol, root, '--addr', `127.0.0.1:${port}`, '--user', DAV_USER, '--pass', DAV_PASS],
    { env: rcloneEnv({ RCLONE_CACHE_DIR: join(dir, 'cache') }), stdio: ['ignore', 'ignore', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (d) => { err += d; if (/listening|Server started|Serving/i.test(err)) resolve(); });
    child.on('exit', (c) => reject(new Error(`rclone serve ${protocol} exited (${c}): ${err}`)));
    setTimeout(() => reject(new Error(`rclone serve ${protocol} did not start: ${err}`)), 30_000).unref();
  });
  return child;
}

before(async () => {
  davPort = await freePort();
  dav = await serve('webdav', DAV_ROOT, davPort);
  const sftpPort = await freePort();
  sftp = await serve('sftp', SFTP_ROOT, sftpPort);
  const obscured = spawnSync('rclone', ['obscure', DAV_PASS], { env: rcloneEnv(), encoding: 'utf8' });
  assert.equal(obscured.status, 0, obscured.stderr);
  const pass = obscured.stdout.trim();
  writeFileSync(CONFIG, [
    '[disk]', 'type = local', '',
    '[dav]', 'type = webdav', `url = http://127.0.0.1:${davPort}/`, 'vendor = other', `user = ${DAV_USER}`, `pass = ${pass}`, '',
    '[sf]', 'type = sftp', 'host = 127.0.0.1', `port = ${sftpPort}`, `user = ${DAV_USER}`, `pass = ${pass}`, 'shell_type = none', '',
    // The wrong password, and the right one in the URL where a careless config might put it: neither may show in a message.
    '[davbad]', 'type = webdav', `url = http://${DAV_USER}:${DAV_PASS}@127.0.0.1:${davPort}/`, 'vendor = other', `user = ${DAV_USER}`,
    `pass = ${spawnSync('rclone', ['obscure', 'wrong-password'], { env: rcloneEnv(), encoding: 'utf8' }).stdout.trim()}`, '',
  ].join('\n'));
});

after(() => { dav?.kill(); sftp?.kill(); });

storageConformance({ label: 'rclone local remote', make: async () => new RcloneStorage(`disk:${tempDir('conf-rclone')}`), manyNames: 1500 });
storageConformance({ label: 'rclone local remote with retries', make: async () => withRetry(new RcloneStorage(`disk:${tempDir('conf-rclone-retry')}`)), manyNames: 300 });
storageConformance({ label: 'rclone webdav remote', make: async () => new RcloneStorage(`dav:conf-${randomBytes(6).toString('hex')}`), manyNames: 100 });
storageConformance({ label: 'rclone sftp remote', make: async () => new RcloneStorage(`sf:conf-${randomBytes(6).toString('hex')}`), manyNames: 300 });

test('rclone: a listing is in byte order across folders (folder a holds a/x, which sorts after the file a-b)', async () => {
  const s = new RcloneStorage(`disk:${tempDir('rclone-order')}`);
  try {
    for (const n of ['a/x', 'a-b', 'a.c', 'a0', 'b']) await s.put(n, n);
    assert.deepEqual(await listAll(s, ''), ['a-b', 'a.c', 'a/x', 'a0', 'b']);
    assert.deepEqual(await listAll(s, 'a'), ['a-b', 'a.c', 'a/x', 'a0']);
  } finally { await s.close(); }
});

test('rclone: when its rclone dies, the next operation starts another (a transient failure at most, which retries absorb)', async () => {
  const s = withRetry(new RcloneStorage(`disk:${tempDir('rclone-restart')}`), { tries: 3, baseMs: 50, maxMs: 200 });
  try {
    await s.put('config', 'one');
    const rcd = descendants(process.pid).filter((p) => cmdline(p).startsWith('rclone rcd'));
    assert.ok(rcd.length > 0, 'an rclone rcd runs');
    for (const p of rcd) process.kill(p, 'SIGKILL');
    for (let i = 0; i < 50 && rcd.some((p) => existsSync(`/proc/${p}`) && !readFileSync(`/proc/${p}/status`, 'utf8').includes('zombie')); i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(Buffer.from(await s.get('config')).toString(), 'one');
    await s.put('keys/public.asc', 'two');
    assert.equal(await s.stat('keys/public.asc'), 3);
  } finally { await s.close(); }
});

/** The processes under `pid`, children first. */
function descendants(pid: number): number[] {
  const kids = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number);
  return kids.flatMap((k) => [k, ...descendants(k)]);
}

/** A process's command line, arguments joined by spaces ('' once it is gone). */
function cmdline(pid: number): string {
  try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' '); } catch { return ''; }
}

const RCLONE = fileURLToPath(new URL('../engine/storage/rclone.js', import.meta.url));

test('rclone: a put killed with SIGKILL mid-upload leaves nothing under its name, and no rclone; removeDebris takes the rest', async () => {
  const root = tempDir('rclone-kill');
  const code = `
    const { RcloneStorage } = await import(${JSON.stringify(RCLONE)});
    const s = new RcloneStorage(${JSON.stringify(`disk:${root}`)});
    const w = await s.create('volumes/big.tar');
    for (let i = 0; i < 4; i++) await w.write(Buffer.alloc(1 << 20, 7));
    process.stdout.write('written\\n');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'], env: process.env });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => { if (String(d).includes('written')) resolve(); });
    child.on('exit', (c) => reject(new Error(`the writer exited early (${c})`)));
  });
  const mine = descendants(child.pid!);
  assert.ok(mine.some((p) => cmdline(p).startsWith('rclone rcd')), `the writer runs an rclone rcd: ${mine.map(cmdline).join('; ')}`);
  child.kill('SIGKILL');
  await new Promise((r) => child.on('close', r));
  // The watchdog sees its pipe close and stops rclone.
  for (let i = 0; i < 50 && mine.some((p) => existsSync(`/proc/${p}`)); i++) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(mine.filter((p) => existsSync(`/proc/${p}`)), [], 'no rclone left running');
  const s = new RcloneStorage(`disk:${root}`);
  try {
    assert.equal(await s.stat('volumes/big.tar'), null, 'nothing under the name');
    assert.deepEqual(await listAll(s, 'volumes/'), [], 'the listing does not show the half-written object');
    // rclone removes the partial upload when it sees the connection end before its own
    // SIGTERM, and leaves it when not: a race. What it would leave is put there by hand.
    mkdirSync(join(root, 'volumes'), { recursive: true });
    writeFileSync(join(root, 'volumes', 'big.tar.tmp-0123456789ab'), Buffer.alloc(1000));
    const left = readdirSync(join(root, 'volumes'));
    assert.ok(left.length <= 2 && left.every((n) => /^big\.tar\.tmp-[0-9a-f]{12}$/.test(n)), `only temporary objects: ${left.join(', ')}`);
    assert.deepEqual(await listAll(s, 'volumes/'), [], 'temporary objects are not listed');
    assert.equal(await s.removeDebris('volumes/'), left.length);
    assert.deepEqual(existsSync(join(root, 'volumes')) ? readdirSync(join(root, 'volumes')) : [], []);
    await s.put('volumes/big.tar', 'whole');
    assert.equal(await s.stat('volumes/big.tar'), 5);
  } finally { await s.close(); }
});

test('rclone: a streamed put of 256 MiB holds memory bounded, and arrives whole', async () => {
  const root = tempDir('rclone-big');
  const s = new RcloneStorage(`disk:${root}`);
  try {
    const chunk = randomBytes(MiB);
    let peak = 0;
    const sample = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 5);
    const rss0 = process.memoryUsage().rss;
    const w = await s.create('volumes/big.tar');
    for (let i = 0; i < 256; i++) { chunk[0] = i; await w.write(chunk); }
    await w.commit();
    clearInterval(sample);
    assert.ok(peak - rss0 < 128 * MiB, `peak RSS grew by ${((peak - rss0) / MiB).toFixed(0)} MiB for 256 MiB`);
    assert.equal(await s.stat('volumes/big.tar'), 256 * MiB);
    const at = 200 * MiB;
    const got = Buffer.from(await s.getRange('volumes/big.tar', at - 1, 2));
    assert.deepEqual([...got], [chunk[MiB - 1], 200]);
  } finally { await s.close(); }
});

test('rclone: a missing remote, a bare path and a failed login are one clear line each, without the password', async () => {
  const s = new RcloneStorage('nosuch:repo');
  try {
    await assert.rejects(s.stat('config'), (e: Error) => {
      assert.match(e.message, /^rclone:nosuch:repo: no remote named "nosuch" in the file RCLONE_CONFIG names/);
      assert.ok(!e.message.includes('\n'));
      return true;
    });
  } finally { await s.close(); }
  assert.throws(() => openStorage('rclone:/tmp/x'), /expected rclone:REMOTE:PATH/);
  assert.throws(() => openStorage('rclone:'), /expected rclone:REMOTE:PATH/);
  assert.throws(() => openStorage('rclone:disk:a//b'), /empty, \. or \.\. component/);
  assert.throws(() => openStorage('rclone:disk:a/../b'), /empty, \. or \.\. component/);
  for (const conn of [":webdav,url='http://127.0.0.1:1/',pass=SECRET:x", 'disk,pass=SECRET:x']) {
    assert.throws(() => openStorage(`rclone:${conn}`), (e: Error) => /connection strings .* are not taken/.test(e.message) && !e.message.includes('SECRET'));
  }
  // The wrong password for the webdav server: permission, naming the object, no password in it.
  const bad = new RcloneStorage('davbad:x');
  try {
    await assert.rejects(bad.put('config', 'x'), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'permission', e.message);
      assert.ok(e.message.startsWith('rclone:davbad:x: config: '), e.message);
      assert.ok(!e.message.includes(DAV_PASS) && !e.message.includes('wrong-password'), e.message);
      return true;
    });
    await assert.rejects(bad.get('config'), (e: Error) => !e.message.includes(DAV_PASS) && e.message.startsWith('rclone:davbad:x: config: '));
  } finally { await bad.close(); }
});

let keys: Keys;

test('rclone: every CLI verb through rclone:REMOTE:PATH (local and webdav remotes)', async (t) => {
  keys = makeKeys();
  for (const remote of ['disk', 'dav']) {
    await t.test(remote, async () => {
      const repo = remote === 'disk' ? `rclone:disk:${join(tempDir('cli-repo'), 'repo')}` : `rclone:dav:cli-${randomBytes(4).toString('hex')}`;
      const src = join(tempDir('cli-src'), 'src');
      mkdirSync(join(src, 'sub'), { recursive: true });
      writeSeeded(join(src, 'big.bin'), 'big', 17 * MiB + 17);
      writeFileSync(join(src, 'sub', 'note.txt'), 'first\n');
      const env = { RCLONE_CONFIG: CONFIG };
      iebsOk(['init', repo, '--key', keys.backup], { env });
      iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--name', 'rc', '--volume-size', String(8 * MiB)], { env });
      writeFileSync(join(src, 'sub', 'note.txt'), 'second\n');
      writeSeeded(join(src, 'new.bin'), 'new', 200_000);
      const inc = iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--name', 'rc', '--json'], { env });
      assert.match(inc.stdout, /increment/);
      const snaps = iebsOk(['snapshots', '--repo', repo, '--json'], { env });
      assert.equal((JSON.parse(snaps.stdout) as unknown[]).length, 2, snaps.stdout);
      const ls = iebsOk(['ls', '--repo', repo, '--key', keys.restore], { env });
      assert.match(ls.stdout, /new\.bin/);
      const target = join(tempDir('cli-target'), 't');
      iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target], { env });
      assert.deepEqual(diffTrees(readTree(src), readTree(target)), []);
      iebsOk(['verify', '--repo', repo], { env });
      iebsOk(['verify', '--repo', repo, '--key', keys.restore, '--read-data'], { env });
      assert.equal(iebsOk(['unlock', '--repo', repo], { env }).stdout, 'no lock\n');
      // A lock another machine left: the backup stops (exit 11), unlock removes it, the backup runs.
      const fs = repo.slice('rclone:'.length);
      const s = new RcloneStorage(fs);
      await s.put('locks/lock', encodeLock({ host: 'another-host', pid: 4242, time: '2026-12-06T00:00:00.000Z', run: '0123456789abcdef' }));
      await s.close();
      const locked = iebs(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--name', 'rc'], { env });
      assert.equal(locked.code, 11, locked.stderr);
      assert.match(locked.stderr, /locked by pid 4242 on another-host/);
      assert.match(iebsOk(['unlock', '--repo', repo], { env }).stdout, /^lock removed \(held by pid 4242 on another-host/);
      iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--name', 'rc'], { env });
      assert.equal((JSON.parse(iebsOk(['snapshots', '--repo', repo, '--json'], { env }).stdout) as unknown[]).length, 3);
    });
  }
});

test('rclone: the CLI with a remote that is not in the config, a bad REPO, or no rclone: one line each', () => {
  const r = iebs(['snapshots', '--repo', 'rclone:nosuch:somewhere'], { env: { RCLONE_CONFIG: CONFIG } });
  assert.equal(r.code, 2, 'a bad REPO argument');
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /no remote named "nosuch"/);
  const bare = iebs(['snapshots', '--repo', 'rclone:nocolon'], { env: { RCLONE_CONFIG: CONFIG } });
  assert.notEqual(bare.code, 0);
  assert.equal(bare.stderr.trim().split('\n').length, 1, bare.stderr);
  // An encrypted rclone config and no RCLONE_CONFIG_PASS: rclone's own reason, at once, not a prompt or a retry.
  const encrypted = join(tempDir('rclone-enc'), 'rclone.conf');
  writeFileSync(encrypted, '# Encrypted rclone configuration File\n\nRCLONE_ENCRYPT_V0:\nXZFQ3mgxTnQeVcbVB/HJ79vXxt8k+CmYsVZ9Kf1SIlRmF3Ng6ZjHxxbeKZqE7DvlnQ==\n');
  const t0 = Date.now();
  const enc = iebs(['snapshots', '--repo', 'rclone:disk:/nowhere'], { env: { RCLONE_CONFIG: encrypted, RCLONE_CONFIG_PASS: undefined } });
  assert.equal(enc.code, 1);
  assert.match(enc.stderr, /^iebs: rclone:disk:\/nowhere: rclone exited while stat: .*set RCLONE_CONFIG_PASS[^\n]*\n$/);
  assert.ok(Date.now() - t0 < 10_000, 'not retried');
  // No rclone on PATH (only node there): one line that says so.
  const bin = tempDir('no-rclone');
  symlinkSync(process.execPath, join(bin, 'node'));
  const none = iebs(['snapshots', '--repo', 'rclone:disk:/nowhere'], { env: { RCLONE_CONFIG: CONFIG, PATH: bin } });
  assert.equal(none.code, 1);
  assert.match(none.stderr, /^iebs: rclone:disk:\/nowhere: rclone is not installed \(or not on PATH\)[^\n]*\n$/);
});
