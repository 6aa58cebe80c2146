/**
 * A repository in an S3 bucket, or under a prefix of one: the storage contract
 * (storage.ts) over the S3 protocol through the AWS SDK v3, for AWS and the stores that
 * speak its protocol (MinIO, Ceph, Wasabi, Backblaze B2, Cloudflare R2). Object `NAME`
 * is key `PREFIX/NAME` (SPEC.md "Repository layout").
 *
 * A streamed put feeds an `Upload` (lib-storage) through a small stream: it cuts parts of
 * `partSize` and keeps at most `queueSize` of them in flight, so a writer holds about
 * (queueSize + 2) × partSize bytes whatever the size of the object (the parts in flight,
 * the one being gathered and its copy as it is cut: 20 MiB with the defaults, 5 MiB
 * parts, S3's smallest; 8 MiB parts held 38 MiB and a backup's peak 22 MiB more),
 * and `write` waits while the parts are on their way. Nothing is visible before `commit`: a part is not an
 * object, and the store makes the object only when the upload completes (or, for an
 * object smaller than one part, when its single PUT does). An abort or a failure aborts
 * the multipart upload; a writer that was killed leaves an incomplete upload, which
 * `removeDebris` aborts.
 *
 * No commit replaces an object: every put and every completion carries
 * `If-None-Match: *`, which the store refuses (412) when the key exists. Stores that
 * ignore that header exist; the first write of a run finds out with a probe (a put of a
 * fresh key twice), and on such a store each commit is preceded by a HEAD check, which
 * keeps a run from replacing what an earlier run wrote but not two runs from racing for
 * one name (SPEC.md "Locks": the lock is only as strong as the store's conditional writes).
 *
 * Retries: `withRetry` (retry.ts) retries every operation from outside, so the client
 * of the operations makes one attempt (two layers would multiply their tries). The one
 * exception is the parts of a streamed put: `withRetry` cannot replay a stream, while a
 * part is a buffer the SDK can send again, so uploads use a client with the SDK's own
 * retries, and one part that meets a 503 does not cost the whole volume.
 */
import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import {
  AbortMultipartUploadCommand, DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand,
  ListObjectsV2Command, PutObjectCommand, S3Client, type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { IebsError } from '../../formats/errors.js';
import { checkObjectName, storageError, type CreateHint, type ObjectWriter, type Storage, type StorageCode } from './storage.js';
import { s3Where, type S3Location } from './s3-url.js';

export { parseS3Url, type S3Location } from './s3-url.js';

/** How an S3Storage talks to its store; tests shorten the timeouts. */
export interface S3Options {
  /** Bytes per part of a streamed put (at least 5 MiB, S3's minimum); 10,000 parts make the largest object. */
  partSize?: number;
  /** Parts of one streamed put in flight at once. */
  queueSize?: number;
  /** Keys per listing page (S3 gives at most 1000). */
  pageSize?: number;
  /** Milliseconds to open a connection before it counts as failed (transient). */
  connectTimeoutMs?: number;
  /**
   * Milliseconds a connection may go without a byte either way before the request counts
   * as failed (transient): a store that stops answering. Not a limit on a whole request,
   * which on a slow line may take minutes for one part.
   */
  idleTimeoutMs?: number;
  /** Attempts the SDK makes for each part of a streamed put (the only retries inside the backend). */
  partAttempts?: number;
  /** The environment the endpoint is read from (`process.env`). */
  env?: NodeJS.ProcessEnv;
}

const TMP = '.tmp-';
const MiB = 1024 * 1024;
/** Parts a multipart upload may have (S3's limit). */
const MAX_PARTS = 10_000;

/** S3 error names, by the contract code they map to. */
const NOT_FOUND = new Set(['NoSuchKey', 'NotFound', 'NoSuchUpload', 'NoSuchBucket']);
const PERMISSION = new Set(['AccessDenied', 'Forbidden', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AllAccessDisabled', 'AccountProblem', 'InvalidObjectState', 'ExpiredToken', 'InvalidToken']);
const NO_SPACE = new Set(['EntityTooLarge', 'QuotaExceeded', 'XMinioStorageFull', 'InsufficientStorage', 'StorageFull', 'TooManyParts']);
const TRANSIENT = new Set([
  'SlowDown', 'InternalError', 'ServiceUnavailable', 'RequestTimeout', 'RequestTimeoutException', 'Throttling', 'ThrottlingException',
  'RequestLimitExceeded', 'TooManyRequestsException', 'ConditionalRequestConflict', 'OperationAborted', 'TimeoutError', 'BadDigest',
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_SOCKET',
]);

/** The SDK's or the network's name for a failure: an S3 error code, a Node errno, or the error's name. */
function nameOf(e: unknown): string {
  const x = e as { Code?: string; code?: string; name?: string; cause?: unknown } | undefined;
  return x?.Code ?? (typeof x?.code === 'string' ? x.code : undefined) ?? x?.name ?? 'Error';
}

function statusOf(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

/** How S3 and network failures map to the contract's codes. */
export function s3CodeOf(e: unknown): StorageCode {
  const name = nameOf(e);
  const status = statusOf(e);
  if (NOT_FOUND.has(name) || status === 404) return 'not-found';
  if (name === 'PreconditionFailed' || status === 412) return 'exists';
  if (name === 'InvalidRange' || status === 416) return 'short-read';
  if (NO_SPACE.has(name) || status === 507 || status === 413) return 'no-space';
  if (PERMISSION.has(name) || status === 403 || status === 401) return 'permission';
  if (TRANSIENT.has(name) || (status !== undefined && (status >= 500 || status === 429 || status === 408))) return 'transient';
  if ((e as { $retryable?: unknown })?.$retryable) return 'transient';
  // A connection cut mid-body comes as a plain Error with an errno on its cause.
  const cause = (e as { cause?: unknown })?.cause;
  if (cause && cause !== e && TRANSIENT.has(nameOf(cause))) return 'transient';
  if (/socket hang up|ECONNRESET|aborted|premature close/i.test((e as Error)?.message ?? '')) return 'transient';
  return 'permanent';
}

const PHRASES: Record<StorageCode, string> = {
  'not-found': 'not found', 'short-read': 'shorter than expected', exists: 'already exists', permission: 'permission denied',
  'no-space': 'the store refused the size (quota or object too large)', transient: 'temporarily failed', permanent: 'failed',
};

/**
 * A failure while `what`, as a contract error. The message names the S3 error and the
 * HTTP status, never the SDK's own message or request, so no header, signature or key
 * id can reach a log; a failure to connect names the endpoint (its origin only).
 */
function s3Error(where: string, name: string, what: string, e: unknown, endpoint?: string): IebsError {
  if (e instanceof IebsError) return e;
  const id = nameOf(e);
  if (id === 'CredentialsProviderError') {
    return storageError('permission', where, name, `no AWS credentials found while ${what} (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)`, e);
  }
  const code = s3CodeOf(e);
  const status = statusOf(e);
  // A HEAD has no body, so its errors have no S3 code: the status says it all.
  const known = id !== 'Unknown' && id !== 'Error' && id !== 'UnknownError';
  const detail = status ? (known ? `${id}, HTTP ${status}` : `HTTP ${status}`) : `${id}${endpoint ? ` at ${endpoint}` : ''}`;
  return storageError(code, where, name, `${PHRASES[code]} (${detail}) while ${what}`, e);
}

/** A repository in an S3 bucket (SPEC.md "Repository layout", "Locks"). */
export class S3Storage implements Storage {
  readonly where: string;
  private readonly client: S3Client;
  private readonly uploadClient: S3Client;
  private readonly partSize: number;
  private readonly queueSize: number;
  private readonly pageSize: number;
  private probe: Promise<boolean> | null = null;
  /** The custom endpoint's origin (never its user information), for messages. */
  private readonly endpoint: string | undefined;

  constructor(readonly location: S3Location, options: S3Options = {}) {
    this.where = s3Where(location);
    this.partSize = Math.max(5 * MiB, options.partSize ?? 5 * MiB);
    this.queueSize = Math.max(1, options.queueSize ?? 2);
    this.pageSize = Math.min(1000, Math.max(1, options.pageSize ?? 1000));
    const env = options.env ?? process.env;
    // The endpoint the standard variables name; the SDK reads them too, but a custom
    // endpoint also means path-style addressing (bucket in the path, not in the host
    // name), which is what MinIO, Ceph and most others expect.
    const endpoint = env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS === 'true' ? undefined : (env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined);
    // The SDK's own chain (AWS_REGION, then the profile in ~/.aws/config), asked lazily.
    const sdkRegion = quietly(() => new S3Client({})).config.region;
    this.endpoint = endpoint ? originOf(endpoint) : undefined;
    const base: S3ClientConfig = {
      ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
      // Region from AWS_REGION or the profile; a custom endpoint usually has none, and
      // AWS itself redirects a request sent to the wrong region.
      region: async () => { try { return await sdkRegion(); } catch { return 'us-east-1'; } },
      followRegionRedirects: true,
      requestHandler: { connectionTimeout: options.connectTimeoutMs ?? 10_000, socketTimeout: options.idleTimeoutMs ?? 120_000 },
    };
    this.client = quietly(() => new S3Client({ ...base, maxAttempts: 1 }));
    this.uploadClient = quietly(() => new S3Client({ ...base, maxAttempts: options.partAttempts ?? 3 }));
  }

  /** A contract error about `name`, naming the custom endpoint when the store could not be reached. */
  private error(name: string, what: string, e: unknown): IebsError {
    return s3Error(this.where, name, what, e, this.endpoint);
  }

  private key(name: string): string {
    checkObjectName(name);
    return this.location.prefix ? `${this.location.prefix}/${name}` : name;
  }

  private nameOfKey(key: string): string {
    return this.location.prefix ? key.slice(this.location.prefix.length + 1) : key;
  }

  /**
   * Whether the store honours `If-None-Match: *` on a put, found once per instance by
   * putting a fresh key twice (then deleting it). A store that rejects the header
   * outright (501) counts as one that ignores it.
   */
  conditionalWrites(): Promise<boolean> {
    this.probe ??= (async () => {
      const name = `locks/probe${TMP}${randomBytes(8).toString('hex')}`;
      const Key = this.key(name);
      const put = () => this.client.send(new PutObjectCommand({ Bucket: this.location.bucket, Key, Body: 'probe', IfNoneMatch: '*' }));
      try {
        try { await put(); } catch (e) {
          if (nameOf(e) === 'NotImplemented' || statusOf(e) === 501) return false;
          throw this.error(name, 'checking for conditional writes', e);
        }
        try { await put(); return false; } catch (e) {
          if (s3CodeOf(e) === 'exists') return true;
          if (nameOf(e) === 'NotImplemented' || statusOf(e) === 501) return false;
          throw this.error(name, 'checking for conditional writes', e);
        }
      } finally {
        await this.client.send(new DeleteObjectCommand({ Bucket: this.location.bucket, Key })).catch(() => {});
      }
    })();
    this.probe.catch(() => { this.probe = null; });
    return this.probe;
  }

  /** Before a commit on a store without conditional writes: refuses a name that is taken. */
  private async refuseTaken(name: string, conditional: boolean): Promise<void> {
    if (!conditional && (await this.stat(name)) !== null) throw storageError('exists', this.where, name, 'already exists (written by another run); not replaced');
  }

  async create(name: string, hint?: CreateHint): Promise<ObjectWriter> {
    const Key = this.key(name);
    // S3 takes at most 10,000 parts: an object that may be larger than 10,000 parts of
    // the configured size (a volume over 48 GiB with 5 MiB parts) gets larger parts.
    const partSize = Math.max(this.partSize, Math.ceil((hint?.maxSize ?? 0) / MAX_PARTS / MiB) * MiB);
    let conditional: boolean;
    try { conditional = await this.conditionalWrites(); } catch (e) { throw this.error(name, 'creating', e); }
    // A stream with room for one write at a time in front of the part being cut: `write`
    // resolves when the Upload has taken the data, so memory stays within the parts.
    const body = new PassThrough({ highWaterMark: 1 * MiB });
    let failure: unknown = null;
    const client = this.uploadClient;
    // Every request of the upload, so that the first failure stops the writer at once
    // rather than at commit (the Upload itself only reports at the end of the stream).
    const watched = new Proxy(client, {
      get: (target, prop, receiver) => {
        if (prop !== 'send') return Reflect.get(target, prop, receiver);
        return (command: Parameters<S3Client['send']>[0]) => (target.send as (c: typeof command) => Promise<unknown>)(command).catch((e: unknown) => {
          failure ??= e;
          if (!body.destroyed) body.destroy(e instanceof Error ? e : new Error(String(e)));
          throw e;
        });
      },
    });
    const upload = new Upload({
      client: watched,
      params: { Bucket: this.location.bucket, Key, Body: body, ...(conditional ? { IfNoneMatch: '*' } : {}) },
      partSize,
      queueSize: this.queueSize,
      leavePartsOnError: false,
    });
    const done = upload.done();
    done.catch(() => {});
    let state: 'open' | 'done' | 'failed' = 'open';
    let failed: IebsError | null = null;
    const fail = async (e: unknown, what: string): Promise<never> => {
      state = 'failed';
      failed = this.error(name, what, failure ?? e);
      if (!body.destroyed) body.destroy(new Error('aborted'));
      await done.catch(() => {});
      throw failed;
    };
    return {
      write: async (data) => {
        if (failed) throw failed;
        if (state !== 'open') throw storageError('permanent', this.where, name, 'write after commit');
        if (failure || body.destroyed) return fail(failure, 'writing');
        if (!body.write(Buffer.from(data))) {
          await new Promise<void>((resolve) => {
            const go = () => { body.off('drain', go); body.off('close', go); resolve(); };
            body.on('drain', go);
            body.on('close', go);
          });
          if (failure || body.destroyed) return fail(failure, 'writing');
        }
      },
      commit: async () => {
        if (failed) throw failed;
        if (state !== 'open') throw storageError('permanent', this.where, name, 'commit after commit or abort');
        try { await this.refuseTaken(name, conditional); } catch (e) {
          state = 'failed';
          failed = e instanceof IebsError ? e : this.error(name, 'committing', e);
          if (!body.destroyed) body.destroy(new Error('aborted'));
          await done.catch(() => {});
          throw failed;
        }
        body.end();
        try { await done; } catch (e) { return fail(e, 'committing'); }
        state = 'done';
      },
      abort: async () => {
        if (state === 'done') return;
        state = 'failed';
        failed ??= storageError('permanent', this.where, name, 'write after abort');
        // A destroyed body makes the Upload stop cutting parts and abort its multipart upload.
        if (!body.destroyed) body.destroy(new Error('aborted'));
        await done.catch(() => {});
      },
    };
  }

  async put(name: string, data: Uint8Array | string): Promise<void> {
    const Key = this.key(name);
    let conditional: boolean;
    try { conditional = await this.conditionalWrites(); } catch (e) { throw this.error(name, 'writing', e); }
    await this.refuseTaken(name, conditional);
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.location.bucket, Key, Body: typeof data === 'string' ? Buffer.from(data) : data, ...(conditional ? { IfNoneMatch: '*' } : {}) }));
    } catch (e) {
      if (s3CodeOf(e) === 'exists') throw storageError('exists', this.where, name, 'already exists (written by another run); not replaced', e);
      throw this.error(name, 'writing', e);
    }
  }

  async get(name: string): Promise<Uint8Array> {
    const Key = this.key(name);
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.location.bucket, Key }));
      return r.Body ? await r.Body.transformToByteArray() : new Uint8Array(0);
    } catch (e) { throw this.error(name, 'reading', e); }
  }

  async getRange(name: string, offset: number, length: number): Promise<Uint8Array> {
    const Key = this.key(name);
    const short = () => storageError('short-read', this.where, name, `object ends before byte ${offset + length} (truncated?)`);
    if (offset < 0 || length < 0 || !Number.isSafeInteger(offset + length)) throw short();
    if (length === 0) {
      // No HTTP range is empty: a HEAD says whether the object is there and long enough.
      const size = await this.stat(name);
      if (size === null) throw storageError('not-found', this.where, name, 'not found');
      if (offset > size) throw short();
      return new Uint8Array(0);
    }
    let bytes: Uint8Array;
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.location.bucket, Key, Range: `bytes=${offset}-${offset + length - 1}` }));
      bytes = r.Body ? await r.Body.transformToByteArray() : new Uint8Array(0);
    } catch (e) {
      if (s3CodeOf(e) === 'short-read') throw storageError('short-read', this.where, name, `object ends before byte ${offset + length} (truncated?)`, e);
      throw this.error(name, 'reading', e);
    }
    // A range that runs past the end comes back cut at the end, not refused.
    if (bytes.length !== length) throw short();
    return bytes;
  }

  async stat(name: string): Promise<number | null> {
    const Key = this.key(name);
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.location.bucket, Key }));
      return r.ContentLength ?? 0;
    } catch (e) {
      // A HEAD has no body, so a missing bucket looks like a missing key (404 NotFound).
      if (s3CodeOf(e) === 'not-found') return null;
      throw this.error(name, 'stat', e);
    }
  }

  /** One ListObjectsV2 page at a time: S3 gives keys in UTF-8 byte order, which is the contract's order. */
  async *list(prefix: string): AsyncIterable<string> {
    const Prefix = this.location.prefix ? `${this.location.prefix}/${prefix}` : prefix;
    let ContinuationToken: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: this.location.bucket, Prefix, ContinuationToken, MaxKeys: this.pageSize }));
      } catch (e) { throw this.error(prefix, 'listing', e); }
      for (const o of page.Contents ?? []) {
        if (!o.Key || o.Key.includes(TMP)) continue;
        yield this.nameOfKey(o.Key);
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  async delete(name: string): Promise<void> {
    const Key = this.key(name);
    try { await this.client.send(new DeleteObjectCommand({ Bucket: this.location.bucket, Key })); } catch (e) {
      if (s3CodeOf(e) === 'not-found') return;
      throw this.error(name, 'deleting', e);
    }
  }

  async createExclusive(name: string, data: string): Promise<boolean> {
    try { await this.put(name, data); return true; } catch (e) {
      if (e instanceof IebsError && e.code === 'exists') return false;
      throw e;
    }
  }

  /**
   * Aborts the incomplete multipart uploads under `prefix` (what a killed writer
   * leaves), and deletes objects whose name marks them temporary (a probe cut short).
   * A store that cannot list multipart uploads (501) has none found here; a bucket
   * lifecycle rule that aborts incomplete uploads after a day cleans those (README).
   */
  async removeDebris(prefix: string): Promise<number> {
    const Prefix = this.location.prefix ? `${this.location.prefix}/${prefix}` : prefix;
    const Bucket = this.location.bucket;
    // Both listings at once: each is a round trip or more, and a backup cleans several prefixes.
    const [uploads, temporary] = await Promise.all([this.incompleteUploads(Bucket, Prefix, prefix), this.temporaries(Bucket, Prefix, prefix)]);
    let n = 0;
    for (const u of uploads) {
      try { await this.client.send(new AbortMultipartUploadCommand({ Bucket, Key: u.Key, UploadId: u.UploadId })); n++; } catch (e) {
        if (s3CodeOf(e) !== 'not-found') throw this.error(this.nameOfKey(u.Key), 'aborting an incomplete upload', e);
      }
    }
    for (const Key of temporary) { await this.delete(this.nameOfKey(Key)); n++; }
    return n;
  }

  /** The multipart uploads under `Prefix` never completed (none where the store has no such listing). */
  private async incompleteUploads(Bucket: string, Prefix: string, prefix: string): Promise<{ Key: string; UploadId: string }[]> {
    const uploads: { Key: string; UploadId: string }[] = [];
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    try {
      for (;;) {
        const page = await this.client.send(new ListMultipartUploadsCommand({ Bucket, Prefix, KeyMarker, UploadIdMarker }));
        for (const u of page.Uploads ?? []) if (u.Key && u.UploadId) uploads.push({ Key: u.Key, UploadId: u.UploadId });
        if (!page.IsTruncated) break;
        KeyMarker = page.NextKeyMarker;
        UploadIdMarker = page.NextUploadIdMarker;
      }
    } catch (e) {
      if (!(nameOf(e) === 'NotImplemented' || statusOf(e) === 501)) throw this.error(prefix, 'listing incomplete uploads', e);
    }
    return uploads;
  }

  /** The keys under `Prefix` of temporary objects. */
  private async temporaries(Bucket: string, Prefix: string, prefix: string): Promise<string[]> {
    let ContinuationToken: string | undefined;
    const temporary: string[] = [];
    do {
      let page;
      try { page = await this.client.send(new ListObjectsV2Command({ Bucket, Prefix, ContinuationToken })); } catch (e) { throw this.error(prefix, 'listing', e); }
      for (const o of page.Contents ?? []) if (o.Key?.includes(TMP)) temporary.push(o.Key);
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
    return temporary;
  }

  async close(): Promise<void> {
    this.client.destroy();
    this.uploadClient.destroy();
  }
}

const QUIET = 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED';

/**
 * Makes an S3 client without the SDK's warning, on Node 20, that its releases after
 * January 2027 will need Node 22: news for whoever upgrades the pinned SDK (README
 * "Destinations"), not for every run of a backup. The SDK's own switch, set only while
 * the client is made, and only when the user has not set it.
 */
function quietly<T>(make: () => T): T {
  if (process.env[QUIET] !== undefined) return make();
  process.env[QUIET] = 'true';
  try { return make(); } finally { delete process.env[QUIET]; }
}

/** `scheme://host:port` of a URL, without user information or path; the text itself if it does not parse. */
function originOf(url: string): string {
  try { return new URL(url).origin; } catch { return 'the endpoint in AWS_ENDPOINT_URL_S3'; }
}
