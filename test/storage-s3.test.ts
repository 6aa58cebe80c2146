/**
 * The S3 backend (engine/storage/s3.ts) against a real S3-protocol server on loopback
 * (test/s3-server.ts): the conformance suite, on a store with conditional writes and
 * behind the retry wrapper; what a store without them does; a multipart upload killed
 * with SIGKILL; range reads that fetch only their range; the REPO forms open.ts takes
 * and refuses; the SDK loaded only when an S3 repository is first used.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { S3Client, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { S3Storage, parseS3Url } from '../engine/storage/s3.js';
import { openStorage } from '../engine/storage/open.js';
import { withRetry } from '../engine/storage/retry.js';
import { listAll } from '../engine/storage/storage.js';
import { rejectsWith, storageConformance } from './storage-conformance.js';
import { startS3Server, type S3Server } from './s3-server.js';

let server: S3Server;
let plain: S3Server;
let serial = 0;
const MiB = 1024 * 1024;

before(async () => {
  [server, plain] = await Promise.all([startS3Server(), startS3Server({ conditional: false })]);
  Object.assign(process.env, server.env);
});
after(async () => { await Promise.all([server?.close(), plain?.close()]); });

/** A fresh repository: a new prefix in the server's bucket. */
const fresh = (s: S3Server = server, o: ConstructorParameters<typeof S3Storage>[1] = {}) =>
  new S3Storage({ bucket: s.bucket, prefix: `t${serial++}/repo` }, { pageSize: 100, env: { AWS_ENDPOINT_URL_S3: s.endpoint }, ...o });

storageConformance({ label: 's3', make: async () => fresh(), manyNames: 1200 });
storageConformance({ label: 's3 with retries', make: async () => withRetry(fresh()), manyNames: 300 });

test('s3: the store honours If-None-Match, and a streamed put of several parts commits once', async () => {
  const s = fresh();
  try {
    assert.equal(await s.conditionalWrites(), true);
    const data = randomBytes(13 * MiB);
    const w = await s.create('volumes/big.tar');
    for (let i = 0; i < data.length; i += 1 * MiB + 7) await w.write(data.subarray(i, i + 1 * MiB + 7));
    assert.equal(await s.stat('volumes/big.tar'), null, 'not visible before commit');
    await w.commit();
    assert.ok(Buffer.from(await s.get('volumes/big.tar')).equals(data));
    const again = await s.create('volumes/big.tar');
    await again.write(randomBytes(6 * MiB));
    await rejectsWith(again.commit(), 'exists', s, 'volumes/big.tar');
    assert.equal(await s.stat('volumes/big.tar'), data.length, 'the first stays');
    assert.equal(await s.removeDebris('volumes/'), 0, 'the refused multipart upload was aborted, not left');
    const empty = await s.create('indexes/empty');
    await empty.commit();
    assert.equal(await s.stat('indexes/empty'), 0, 'a streamed put of nothing is an empty object');
  } finally { await s.close(); }
});

test('s3: an object that may exceed 10,000 parts of the usual size goes up in larger parts', async () => {
  const s = fresh();
  try {
    const data = randomBytes(30 * MiB);
    assert.equal(await s.conditionalWrites(), true); // its probe, not counted below
    const parts = async (maxSize: number | undefined): Promise<number> => {
      await server.stats(true);
      const w = await s.create(`volumes/sized-${maxSize ?? 'none'}.tar`, maxSize === undefined ? undefined : { maxSize });
      for (let i = 0; i < data.length; i += 4 * MiB) await w.write(data.subarray(i, i + 4 * MiB));
      await w.commit();
      return (await server.stats()).PUT?.requests ?? 0;
    };
    // 5 MiB parts: 6 of them. A volume of up to 200 GiB needs parts of 21 MiB: 2.
    assert.equal(await parts(undefined), 6);
    assert.equal(await parts(200 * 1024 * MiB), 2);
    assert.ok(Buffer.from(await s.get('volumes/sized-214748364800.tar')).equals(data));
  } finally { await s.close(); }
});

test('s3: an aborted streamed put of several parts aborts its multipart upload', async () => {
  const s = fresh();
  try {
    const w = await s.create('volumes/gone.tar');
    for (let i = 0; i < 20; i++) await w.write(randomBytes(MiB));
    const raw = new S3Client({ region: 'us-east-1', endpoint: server.endpoint, forcePathStyle: true });
    try {
      const uploads = async () => ((await raw.send(new ListMultipartUploadsCommand({ Bucket: server.bucket, Prefix: `${s.location.prefix}/` }))).Uploads ?? []).length;
      assert.equal(await uploads(), 1, 'parts went up');
      await w.abort();
      assert.equal(await uploads(), 0, 'aborted');
    } finally { raw.destroy(); }
    assert.equal(await s.stat('volumes/gone.tar'), null);
    await assert.rejects(w.write(Buffer.from('x')));
  } finally { await s.close(); }
});

test('s3: on a store that ignores If-None-Match, the probe says so and a HEAD check still refuses a taken name', async () => {
  const s = fresh(plain);
  try {
    assert.equal(await s.conditionalWrites(), false);
    await s.put('snapshots/r', 'one');
    await rejectsWith(s.put('snapshots/r', 'two'), 'exists', s, 'snapshots/r');
    const w = await s.create('snapshots/r');
    await w.write(Buffer.from('three'));
    await rejectsWith(w.commit(), 'exists', s, 'snapshots/r');
    assert.equal(await s.createExclusive('locks/lock', 'a'), true);
    assert.equal(await s.createExclusive('locks/lock', 'b'), false);
    assert.equal(Buffer.from(await s.get('snapshots/r')).toString(), 'one');
    assert.equal(Buffer.from(await s.get('locks/lock')).toString(), 'a');
    assert.deepEqual(await listAll(s, 'locks/'), ['locks/lock'], 'the probe left nothing');
  } finally { await s.close(); }
});

const S3 = fileURLToPath(new URL('../engine/storage/s3.js', import.meta.url));

test('s3: a multipart upload killed with SIGKILL leaves nothing visible; removeDebris aborts it', async () => {
  const prefix = `t${serial++}/killed`;
  const code = `
    const { S3Storage } = await import(${JSON.stringify(S3)});
    const s = new S3Storage({ bucket: ${JSON.stringify(server.bucket)}, prefix: ${JSON.stringify(prefix)} });
    const w = await s.create('volumes/big.tar');
    for (let i = 0; i < 12; i++) await w.write(Buffer.alloc(1 << 20, i));
    process.stdout.write('written\\n');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...server.env } });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => { if (String(d).includes('written')) resolve(); });
    child.on('exit', (c) => reject(new Error(`the writer exited early (${c})`)));
  });
  // 12 MiB written with 5 MiB parts: the first part is on its way or there.
  const raw = new S3Client({ region: 'us-east-1', endpoint: server.endpoint, forcePathStyle: true });
  const uploads = async () => (await raw.send(new ListMultipartUploadsCommand({ Bucket: server.bucket, Prefix: `${prefix}/` }))).Uploads ?? [];
  for (let i = 0; i < 100 && (await uploads()).length === 0; i++) await new Promise((r) => setTimeout(r, 50));
  child.kill('SIGKILL');
  await new Promise((r) => child.on('close', r));
  const s = new S3Storage({ bucket: server.bucket, prefix }, { env: server.env });
  try {
    assert.equal((await uploads()).length, 1, 'the killed writer left an incomplete multipart upload');
    assert.equal(await s.stat('volumes/big.tar'), null, 'nothing under the name');
    assert.deepEqual(await listAll(s, 'volumes/'), [], 'the listing does not show it');
    assert.equal(await s.removeDebris('volumes/'), 1);
    assert.equal((await uploads()).length, 0, 'aborted');
    await s.put('volumes/big.tar', 'whole');
    assert.equal(await s.stat('volumes/big.tar'), 5);
  } finally { await s.close(); raw.destroy(); }
});

test('s3: a range read fetches its range, not the object', async () => {
  const s = fresh();
  try {
    const data = randomBytes(4 * MiB);
    await s.put('volumes/v.tar', data);
    await server.stats(true);
    for (const [off, len] of [[0, 512], [3 * MiB, 4096], [data.length - 1, 1]]) {
      assert.ok(Buffer.from(await s.getRange('volumes/v.tar', off, len)).equals(data.subarray(off, off + len)));
    }
    const got = (await server.stats()).GET;
    assert.equal(got.requests, 3);
    assert.ok(got.bytes <= 512 + 4096 + 1, `${got.bytes} bytes came back for 4609 asked`);
    assert.ok(got.bytes >= 512 + 4096 + 1);
  } finally { await s.close(); }
});

test('s3: opening a local repository or naming an S3 one loads no AWS SDK; the S3 one loads it on its first operation', () => {
  // In a process of its own: this one loaded the SDK at its start. The SDK's packages are
  // CommonJS, so the require cache shows whether any of it was loaded.
  const script = `
    import { createRequire } from 'node:module';
    import { mkdtempSync } from 'node:fs';
    import { tmpdir } from 'node:os';
    import { join } from 'node:path';
    const { openStorage } = await import(${JSON.stringify(new URL('../engine/storage/open.js', import.meta.url).href)});
    const cache = createRequire(import.meta.url).cache;
    const sdk = () => Object.keys(cache).some((k) => k.includes('/@aws-sdk/'));
    const out = {};
    const local = openStorage(mkdtempSync(join(tmpdir(), 'lazy-')));
    await local.put('x', 'local');
    out.local = sdk();
    const s3 = openStorage('s3://${server.bucket}/lazy${serial++}');
    out.named = sdk();
    out.where = s3.where;
    out.exclusive = typeof s3.createExclusive;
    await s3.put('x', 'remote');
    out.used = sdk();
    out.back = Buffer.from(await s3.get('x')).toString();
    await s3.close();
    console.log(JSON.stringify(out));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ...server.env }, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.local, false, 'a local repository loaded the AWS SDK');
  assert.equal(out.named, false, 'naming an S3 repository loaded the AWS SDK');
  assert.match(out.where, new RegExp(`^s3://${server.bucket}/lazy\\d+$`));
  assert.equal(out.exclusive, 'function', 'the S3 repository offers its exclusive create before it is loaded');
  assert.equal(out.used, true, 'its first operation loaded the SDK');
  assert.equal(out.back, 'remote');
});

test('s3: REPO forms: s3://BUCKET[/PREFIX] opens, credentials and bad names are refused without being echoed', async () => {
  assert.deepEqual(parseS3Url('s3://my-bucket'), { bucket: 'my-bucket', prefix: '' });
  assert.deepEqual(parseS3Url('s3://my-bucket/'), { bucket: 'my-bucket', prefix: '' });
  assert.deepEqual(parseS3Url('s3://my-bucket/host/a/'), { bucket: 'my-bucket', prefix: 'host/a' });
  const s = openStorage(`s3://${server.bucket}/p`);
  assert.equal(s.where, `s3://${server.bucket}/p`);
  await s.close();
  for (const bad of ['s3://', 's3://AKIAXXXX:secretsecret@bucket/p', 's3://b', 's3://Bucket/p', 's3://bucket/a//b', 's3://bucket/../x', 's3://bucket/p?region=x']) {
    assert.throws(() => openStorage(bad), (e: Error) => {
      assert.doesNotMatch(e.message, /secretsecret|AKIA/, 'no credential in the message');
      return (e as { code?: string }).code === 'bad-repo';
    }, bad);
  }
  for (const other of ['sftp://user:hunter2@host/x', 'gs://bucket/x', 'user@host:backups', 'host:path']) {
    assert.throws(() => openStorage(other), (e: Error) => { assert.doesNotMatch(e.message, /hunter2/); return (e as { code?: string }).code === 'unsupported-repo'; }, other);
  }
});
