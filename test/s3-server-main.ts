/**
 * The S3 server of the tests, run in a process of its own by test/s3-server.ts (the CLI
 * tests block their own event loop in spawnSync, so the server cannot live there). It is
 * s3rver (npm @20minutes/s3rver), a real S3-protocol server over a folder, behind a front
 * handler that adds what s3rver lacks and what the tests measure:
 *
 * - ListMultipartUploads and AbortMultipartUpload, which s3rver answers NotImplemented,
 *   over s3rver's own folder of uploads (removeDebris needs both);
 * - `If-None-Match: *` on PutObject and CompleteMultipartUpload (412 when the key
 *   exists, one request per key at a time), which s3rver ignores; IEBS_S3_CONDITIONAL=0
 *   leaves it ignored, as some stores do;
 * - ListObjectsV2 answered here, in the byte order of the keys as S3 gives it (s3rver
 *   lists folder by folder: `a/x` before `a-b`); like the two above it checks no
 *   signature, while every object request goes through s3rver's check;
 * - other bucket-level requests' signatures checked over `/BUCKET/`, the path the SDK
 *   signs (s3rver signs `/BUCKET`);
 * - counts of the requests and of the response body bytes per method, at `/__stats`
 *   (reset by `POST /__stats`), so a test can see that a range read fetched no more than
 *   its range.
 *
 * It starts only when IEBS_S3_SERVER_DIR names its folder (node --test runs every file
 * under dist/test/), listens on 127.0.0.1 on a free port, and prints `{"port":N}`.
 * IEBS_S3_DEBUG=1 prints each request line on stderr.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { AsyncLocalStorage } from 'node:async_hooks';
import { createRequire } from 'node:module';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** The part of s3rver this file uses. */
interface S3rverInstance {
  configureBuckets(): Promise<unknown>;
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  store: { existsObject(bucket: string, key: string): Promise<boolean> };
}

const dir = process.env.IEBS_S3_SERVER_DIR;
if (dir) await main(dir);

async function main(root: string): Promise<void> {
  const bucket = process.env.IEBS_S3_BUCKET ?? 'iebs-test';
  const conditional = process.env.IEBS_S3_CONDITIONAL !== '0';
  const S3rver = createRequire(import.meta.url)('@20minutes/s3rver') as new (o: object) => S3rverInstance;
  const s3 = new S3rver({ silent: true, directory: root, configureBuckets: [{ name: bucket }] });
  await s3.configureBuckets();
  // s3rver signs a bucket-level request (a listing) over `/BUCKET`, where the SDK sends and
  // signs `/BUCKET/`: for those requests only, a signature mismatch is let through.
  const bucketLevel = new AsyncLocalStorage<boolean>();
  Object.defineProperty(s3, 'allowMismatchedSignatures', { get: () => bucketLevel.getStore() === true });
  const callback = s3.callback();
  const inner = (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === `/${bucket}/`) bucketLevel.run(true, () => callback(req, res));
    else callback(req, res);
  };
  const uploadsDir = join(root, bucket, '._S3rver_uploads');
  const stats: Record<string, { requests: number; bytes: number }> = {};
  /** The tail of the promise chain of each key under a conditional write. */
  const busy = new Map<string, Promise<void>>();

  const xml = (res: ServerResponse, status: number, body: string) => {
    res.writeHead(status, { 'content-type': 'application/xml' });
    res.end(`<?xml version="1.0" encoding="UTF-8"?>\n${body}`);
  };
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const error = (res: ServerResponse, status: number, code: string, message: string) => xml(res, status, `<Error><Code>${code}</Code><Message>${esc(message)}</Message></Error>`);

  async function listUploads(res: ServerResponse, prefix: string): Promise<void> {
    let ids: string[] = [];
    try { ids = await readdir(uploadsDir); } catch { /* none yet */ }
    const found: { key: string; id: string; time: Date }[] = [];
    for (const id of ids) {
      try {
        const key = await readFile(join(uploadsDir, id, 'key'), 'utf8');
        if (key.startsWith(prefix)) found.push({ key, id, time: (await stat(join(uploadsDir, id))).mtime });
      } catch { /* completed or aborted meanwhile */ }
    }
    found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.id < b.id ? -1 : 1));
    xml(res, 200, `<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>${esc(bucket)}</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><Prefix>${esc(prefix)}</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>${
      found.map((u) => `<Upload><Key>${esc(u.key)}</Key><UploadId>${u.id}</UploadId><Initiated>${u.time.toISOString()}</Initiated><StorageClass>STANDARD</StorageClass></Upload>`).join('')
    }</ListMultipartUploadsResult>`);
  }

  /**
   * ListObjectsV2 over s3rver's folder of objects, in the byte order of the keys, as S3
   * lists them (s3rver lists folder by folder, so `a/x` came before `a-b`); the
   * continuation token is the last key given, base64url.
   */
  async function listObjects(res: ServerResponse, q: URLSearchParams): Promise<void> {
    const prefix = q.get('prefix') ?? '';
    const maxKeys = Math.min(1000, Math.max(1, Number(q.get('max-keys') ?? '1000') || 1000));
    const token = q.get('continuation-token');
    const after = token ? Buffer.from(token, 'base64url').toString('utf8') : (q.get('start-after') ?? '');
    const SUFFIX = '._S3rver_object';
    const found: { key: string; size: number; time: Date }[] = [];
    const walk = async (dir: string, rel: string): Promise<void> => {
      let names: string[] = [];
      try { names = await readdir(dir); } catch { return; }
      for (const n of names) {
        if (rel === '' && n === '._S3rver_uploads') continue;
        const p = join(dir, n);
        const st = await stat(p).catch(() => null);
        if (!st) continue;
        if (st.isDirectory()) await walk(p, `${rel}${n}/`);
        else if (n.endsWith(SUFFIX)) {
          const key = rel + n.slice(0, -SUFFIX.length);
          if (key.startsWith(prefix)) found.push({ key, size: st.size, time: st.mtime });
        }
      }
    };
    await walk(join(root, bucket), '');
    const order = (a: { key: string }, b: { key: string }) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key));
    found.sort(order);
    const rest = after ? found.filter((o) => Buffer.compare(Buffer.from(o.key), Buffer.from(after)) > 0) : found;
    const page = rest.slice(0, maxKeys);
    const truncated = rest.length > page.length;
    const next = truncated ? `<NextContinuationToken>${Buffer.from(page[page.length - 1].key).toString('base64url')}</NextContinuationToken>` : '';
    xml(res, 200, `<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>${esc(bucket)}</Name><Prefix>${esc(prefix)}</Prefix><KeyCount>${page.length}</KeyCount><MaxKeys>${maxKeys}</MaxKeys><IsTruncated>${truncated}</IsTruncated>${next}${
      page.map((o) => `<Contents><Key>${esc(o.key)}</Key><LastModified>${o.time.toISOString()}</LastModified><ETag>"0"</ETag><Size>${o.size}</Size><StorageClass>STANDARD</StorageClass></Contents>`).join('')
    }</ListBucketResult>`);
  }

  async function abortUpload(res: ServerResponse, id: string): Promise<void> {
    if (!/^[0-9a-f]+$/.test(id)) return error(res, 404, 'NoSuchUpload', 'no such upload');
    try { await stat(join(uploadsDir, id)); } catch { return error(res, 404, 'NoSuchUpload', 'no such upload'); }
    await rm(join(uploadsDir, id), { recursive: true, force: true });
    res.writeHead(204);
    res.end();
  }

  /** A put or a completion that must not replace `key`: one at a time per key, refused when it exists. */
  async function conditionalWrite(req: IncomingMessage, res: ServerResponse, key: string): Promise<void> {
    const before = busy.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => { release = r; });
    const tail = before.then(() => mine);
    busy.set(key, tail);
    await before;
    try {
      if (await s3.store.existsObject(bucket, key)) {
        // As S3 does, answer once the request is read: a 412 sent while the client still
        // sends its body breaks the connection under it (EPIPE, a transient error).
        await new Promise<void>((r) => { req.once('end', r); req.once('error', () => r()); req.resume(); });
        error(res, 412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
        await new Promise((r) => res.once('close', r));
        return;
      }
      const finished = new Promise((r) => res.once('close', r));
      inner(req, res);
      await finished;
    } finally {
      release();
      if (busy.get(key) === tail) busy.delete(key);
    }
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (process.env.IEBS_S3_DEBUG) process.stderr.write(`${req.method} ${req.url}\n`);
    if (url.pathname === '/__stats') {
      if (req.method === 'POST') for (const k of Object.keys(stats)) delete stats[k];
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(stats));
      return;
    }
    // Response body bytes per method, as a client receives them.
    const entry = (stats[req.method ?? '?'] ??= { requests: 0, bytes: 0 });
    entry.requests++;
    const write = res.write.bind(res) as (chunk: unknown, ...rest: unknown[]) => boolean;
    const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
    const size = (c: unknown) => (typeof c === 'string' ? Buffer.byteLength(c) : c instanceof Uint8Array ? c.length : 0);
    res.write = ((chunk: unknown, ...rest: unknown[]) => { entry.bytes += size(chunk); return write(chunk, ...rest); }) as typeof res.write;
    res.end = ((...args: unknown[]) => { if (args.length && typeof args[0] !== 'function') entry.bytes += size(args[0]); return end(...args); }) as typeof res.end;

    const [, b, ...rest] = url.pathname.split('/');
    const key = rest.map(decodeURIComponent).join('/');
    const q = url.searchParams;
    const handled = (p: Promise<void>) => p.catch((e) => { if (!res.headersSent) error(res, 500, 'InternalError', String(e)); else res.destroy(); });
    if (b === bucket && !key && req.method === 'GET' && q.has('uploads')) return void handled(listUploads(res, q.get('prefix') ?? ''));
    if (b === bucket && !key && req.method === 'GET' && q.get('list-type') === '2') return void handled(listObjects(res, q));
    if (b === bucket && key && req.method === 'DELETE' && q.has('uploadId')) return void handled(abortUpload(res, q.get('uploadId')!));
    const guarded = (req.method === 'PUT' && !q.has('uploadId') && !req.headers['x-amz-copy-source']) || (req.method === 'POST' && q.has('uploadId'));
    if (conditional && b === bucket && key && guarded && req.headers['if-none-match'] === '*') return void handled(conditionalWrite(req, res, key));
    inner(req, res);
  });
  server.listen(0, '127.0.0.1', () => {
    const a = server.address();
    process.stdout.write(`${JSON.stringify({ port: typeof a === 'object' && a ? a.port : 0 })}\n`);
  });
}
