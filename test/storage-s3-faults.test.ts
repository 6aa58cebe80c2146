/**
 * The S3 backend when the network or the store misbehaves, through a fault proxy
 * (test/s3-fault-proxy.ts) in front of the loopback S3 server: each S3 error maps to its
 * contract code, naming the object and the destination; a transient one is retried by
 * withRetry alone (the SDK adds no attempts of its own, so one failure costs exactly one
 * more request); a connection cut while a part goes up is resent by the SDK's part retry,
 * and when every attempt is cut the upload fails and its multipart upload is aborted; a
 * connection cut mid-download and a server that stops answering are transient; a writer
 * holds bounded memory however much it writes. And through the CLI: a backup, a restore
 * and a verify --read-data that meet 503s, 500s and cut connections come out whole.
 */
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { S3Client, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { S3Storage, type S3Options } from '../engine/storage/s3.js';
import { withRetry } from '../engine/storage/retry.js';
import { rejectsWith } from './storage-conformance.js';
import { MiB as MB, diffTrees, iebsChild, makeKeys, readTree, tempDir, writeSeeded } from './helpers.js';
import { startS3Server, type S3Server } from './s3-server.js';
import { startFaultProxy, type FaultProxy } from './s3-fault-proxy.js';

let server: S3Server;
let proxy: FaultProxy;
let serial = 0;
const MiB = 1024 * 1024;
const fast = { tries: 4, baseMs: 1, maxMs: 5 };

before(async () => {
  server = await startS3Server();
  Object.assign(process.env, server.env);
  proxy = await startFaultProxy(server.endpoint);
});
after(async () => { await proxy?.close(); await server?.close(); });
beforeEach(() => { proxy?.clear(); });

/** A fresh repository reached through the proxy. */
const viaProxy = (o: S3Options = {}) => new S3Storage({ bucket: server.bucket, prefix: `f${serial++}` }, { env: { AWS_ENDPOINT_URL_S3: proxy.endpoint }, ...o });

async function uploadsUnder(prefix: string): Promise<number> {
  const raw = new S3Client({ region: 'us-east-1', endpoint: server.endpoint, forcePathStyle: true });
  try { return ((await raw.send(new ListMultipartUploadsCommand({ Bucket: server.bucket, Prefix: prefix }))).Uploads ?? []).length; } finally { raw.destroy(); }
}

test('s3 faults: S3 errors map to contract codes naming object and destination; only transient ones are retried, once per failure', async () => {
  const s = viaProxy();
  try {
    await s.put('volumes/v', 'data');
    for (const [status, code, want] of [[503, 'SlowDown', 'transient'], [500, 'InternalError', 'transient'], [403, 'AccessDenied', 'permission'], [400, 'EntityTooLarge', 'no-space'], [400, 'InvalidArgument', 'permanent']] as const) {
      proxy.fail({ method: 'GET', times: 1, action: { kind: 'error', status, code } });
      proxy.seen(true);
      await rejectsWith(s.get('volumes/v'), want, s, 'volumes/v');
      assert.equal(proxy.seen().GET, 1, `${code}: the SDK made one attempt`);
    }
    proxy.fail({ method: 'PUT', times: 1, action: { kind: 'error', status: 400, code: 'EntityTooLarge' } });
    await rejectsWith(s.put('volumes/w', 'x'), 'no-space', s, 'volumes/w');
    proxy.fail({ method: 'HEAD', times: 1, action: { kind: 'error', status: 403, code: 'AccessDenied' } });
    await rejectsWith(s.stat('volumes/v'), 'permission', s, 'volumes/v');

    const r = withRetry(s, fast);
    for (const code of ['SlowDown', 'InternalError']) {
      proxy.fail({ method: 'GET', times: 2, action: { kind: 'error', status: code === 'SlowDown' ? 503 : 500, code } });
      proxy.seen(true);
      assert.equal(Buffer.from(await r.get('volumes/v')).toString(), 'data');
      assert.equal(proxy.seen().GET, 3, `${code}: two failures, then success: three requests, no more`);
    }
    proxy.fail({ method: 'GET', times: 1, action: { kind: 'error', status: 403, code: 'AccessDenied' } });
    proxy.seen(true);
    await rejectsWith(r.get('volumes/v'), 'permission', s, 'volumes/v');
    assert.equal(proxy.seen().GET, 1, 'permission is not retried');
    proxy.fail({ method: 'PUT', times: 1, action: { kind: 'error', status: 503, code: 'SlowDown' } });
    await r.put('volumes/x', 'after a 503');
    assert.equal(Buffer.from(await s.get('volumes/x')).toString(), 'after a 503');
  } finally { await s.close(); }
});

test('s3 faults: a connection cut mid-download is transient; with retries the range comes back whole', async () => {
  const s = viaProxy();
  try {
    const data = randomBytes(3 * MiB);
    await s.put('volumes/v.tar', data);
    proxy.fail({ method: 'GET', times: 1, action: { kind: 'cut-response', afterBytes: 100_000 } });
    await rejectsWith(s.getRange('volumes/v.tar', 1000, 2 * MiB), 'transient', s, 'volumes/v.tar');
    proxy.fail({ method: 'GET', times: 2, action: { kind: 'cut-response', afterBytes: 70_000 } });
    assert.ok(Buffer.from(await withRetry(s, fast).getRange('volumes/v.tar', 1000, 2 * MiB)).equals(data.subarray(1000, 1000 + 2 * MiB)));
  } finally { await s.close(); }
});

test('s3 faults: a connection cut while a part goes up: the SDK resends the part; cut every time, the upload fails and is aborted', async () => {
  const s = viaProxy();
  try {
    const data = randomBytes(20 * MiB);
    proxy.fail({ method: 'PUT', url: /partNumber=2/, times: 1, action: { kind: 'cut-request', afterBytes: 3 * MiB } });
    const w = await s.create('volumes/a.tar');
    for (let i = 0; i < data.length; i += MiB) await w.write(data.subarray(i, i + MiB));
    await w.commit();
    assert.ok(Buffer.from(await s.get('volumes/a.tar')).equals(data), 'whole after a resent part');

    proxy.fail({ method: 'PUT', url: /partNumber=2/, times: 10, action: { kind: 'cut-request', afterBytes: 1 * MiB } });
    const b = await s.create('volumes/b.tar');
    const writing = (async () => {
      for (let i = 0; i < data.length; i += MiB) await b.write(data.subarray(i, i + MiB));
      await b.commit();
    })();
    await rejectsWith(writing, 'transient', s, 'volumes/b.tar');
    await b.abort();
    assert.equal(await s.stat('volumes/b.tar'), null, 'nothing visible');
    assert.equal(await uploadsUnder(`${s.location.prefix}/`), 0, 'the multipart upload was aborted');
  } finally { await s.close(); }
});

test('s3 faults: a server that stops answering is transient after the idle timeout', async () => {
  const s = viaProxy({ idleTimeoutMs: 1000 });
  try {
    await s.put('volumes/v', 'data');
    proxy.fail({ method: 'GET', times: 1, action: { kind: 'hang' } });
    const t0 = Date.now();
    await rejectsWith(s.get('volumes/v'), 'transient', s, 'volumes/v');
    assert.ok(Date.now() - t0 < 10_000, 'gave up within seconds');
    proxy.fail({ method: 'HEAD', times: 1, action: { kind: 'hang' } });
    assert.equal(await withRetry(s, fast).stat('volumes/v'), 4, 'the retry after a hang succeeds');
  } finally { await s.close(); }
});

const S3 = fileURLToPath(new URL('../engine/storage/s3.js', import.meta.url));

test('s3 faults: a streamed put of 96 MiB holds bounded memory', async () => {
  // In a child with --expose-gc, so that what is measured is what the writer holds, not
  // garbage not yet collected.
  const prefix = `f${serial++}`;
  const code = `
    const { S3Storage } = await import(${JSON.stringify(S3)});
    const s = new S3Storage({ bucket: ${JSON.stringify(server.bucket)}, prefix: ${JSON.stringify(prefix)} });
    const chunk = Buffer.alloc(1 << 20, 7);
    gc();
    const base = process.memoryUsage().arrayBuffers;
    let peak = 0;
    const w = await s.create('volumes/big.tar');
    for (let i = 0; i < 96; i++) {
      await w.write(chunk);
      if (i % 4 === 3) { gc(); peak = Math.max(peak, process.memoryUsage().arrayBuffers - base); }
    }
    await w.commit();
    process.stdout.write(JSON.stringify({ peak, size: await s.stat('volumes/big.tar') }));
    await s.close();
  `;
  const child = spawn(process.execPath, ['--expose-gc', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...server.env } });
  let out = '';
  child.stdout!.on('data', (d) => { out += String(d); });
  const status = await new Promise((r) => child.on('close', r));
  assert.equal(status, 0);
  const { peak, size } = JSON.parse(out) as { peak: number; size: number };
  assert.equal(size, 96 * MiB);
  // (queueSize + 2) parts of 5 MiB: two in flight, one being gathered and its copy when
  // it is cut; then a little stream buffer (38 MiB measured with the 8 MiB parts of before).
  assert.ok(peak < 48 * MiB, `peak ${Math.round(peak / MiB)} MiB of buffers while writing 96 MiB`);
});

/** Runs the CLI without blocking this process (the fault proxy lives here) and collects its output. */
async function cli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = iebsChild(args, { env });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => { stdout += String(d); });
  child.stderr!.on('data', (d) => { stderr += String(d); });
  const code = await new Promise<number | null>((r) => child.on('close', r));
  return { code, stdout, stderr };
}

test('s3 faults: a backup through 503s and a dropped upload, and a restore through cut downloads, still come out whole', async () => {
  const keys = makeKeys();
  const dir = tempDir('s3-faults-e2e');
  const src = join(dir, 'src');
  mkdirSync(src);
  writeSeeded(join(src, 'big.bin'), 'faults', 10 * MB);
  writeFileSync(join(src, 'small.txt'), 'small\n');
  const env = { ...server.env, AWS_ENDPOINT_URL_S3: proxy.endpoint };
  const repo = `s3://${server.bucket}/f${serial++}`;
  proxy.fail({ method: 'PUT', times: 3, action: { kind: 'error', status: 503, code: 'SlowDown' } });
  proxy.fail({ method: 'PUT', url: /partNumber=1/, times: 1, action: { kind: 'cut-request', afterBytes: 2 * MiB } });
  proxy.fail({ method: 'HEAD', times: 1, action: { kind: 'error', status: 500, code: 'InternalError' } });
  const b = await cli(['backup', '--init', src, '--repo', repo, '--key', keys.backup], env);
  assert.equal(b.code, 0, b.stderr);
  assert.equal(proxy.pending(), 0, 'every fault struck the backup');
  proxy.fail({ method: 'GET', times: 3, action: { kind: 'cut-response', afterBytes: 5000 } });
  const target = join(dir, 'restored');
  const r = await cli(['restore', '--repo', repo, '--key', keys.restore, '--target', target], env);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(proxy.pending(), 0, 'every fault struck the restore');
  assert.deepEqual(diffTrees(readTree(src), readTree(target)), []);
  const v = await cli(['verify', '--repo', repo, '--key', keys.restore, '--read-data'], env);
  assert.equal(v.code, 0, v.stderr);
});
