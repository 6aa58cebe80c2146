/**
 * A repository on any rclone remote (`rclone:REMOTE:PATH`): the storage contract
 * (storage.ts) through the system's rclone, so every provider rclone reaches (Google
 * Drive, OneDrive, Swift, SFTP, WebDAV, ...) is a destination. The remote's settings and
 * credentials stay in rclone's own config file (RCLONE_CONFIG, else rclone's default);
 * iebs never reads them.
 *
 * How: one `rclone rcd` per storage, started on first use, listening on 127.0.0.1 on a
 * port the kernel picks, with a random user and password passed in its environment (not
 * its command line, which any local user can read). Metadata goes through its HTTP API
 * (operations/stat, list, movefile, deletefile, uploadfile) and reads through its
 * `--rc-serve` object URLs with a Range header.
 *
 * Why a daemon and not one rclone process per operation: measured (bench/rclone.ts, 2
 * cores, rclone 1.60.1, a local remote so that only rclone's own cost counts), 200 stats
 * took 10,969 ms as `rclone lsjson --stat` processes and 111 ms through rcd; 200 puts of
 * 1 KB 12,919 ms as `rclone rcat` and 540 ms through rcd (upload, stat, move each); a
 * streamed 64 MiB put 305 ms and 333 ms. A process costs about 60 ms to start, which a
 * repository of thousands of volumes (a stat of each before an increment, verify) cannot
 * afford; for big objects the two ways are equal.
 *
 * The daemon runs under a small shell watchdog that kills it when this process's end of
 * a pipe closes, so a SIGKILLed iebs leaves no rclone behind; the child and its pipes are
 * unreferenced, so an open storage never keeps Node alive.
 *
 * A put streams its bytes to `NAME.tmp-<random>` (rclone's rcat: streamed where the
 * backend can, else spooled to a local temporary file by rclone, so memory stays
 * bounded either way), then, when the upload is whole, checks that NAME is free and moves
 * the temporary object onto it server side. rclone has no conditional create: the
 * check and the move are serialized within this process, but two processes may race
 * between them (SPEC.md "Locks" says what that means for the lock). List hides and
 * removeDebris removes the temporary names, as on a directory destination.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import type { Readable, Writable } from 'node:stream';
import { IebsError, UsageError } from '../../formats/errors.js';
import { checkObjectName, putThrough, storageError, walkFolders, folderOf, type ObjectWriter, type Storage, type StorageCode } from './storage.js';

const TMP = '.tmp-';

/**
 * Runs rclone with its stdin from /dev/null and a reader on fd 3 that kills it when fd 3
 * reaches end of file: when this process closes the pipe or dies however (SIGKILL too).
 */
const WATCHDOG = `
rclone=$1; shift
"$rclone" "$@" </dev/null 3<&- & p=$!
{ read -r _ <&3; kill "$p" 2>/dev/null; } &
wait "$p"
`;

/** A running `rclone rcd`. */
interface Daemon {
  child: ChildProcess;
  port: number;
  auth: string;
  agent: http.Agent;
  /** Set once the daemon has exited. */
  exited: boolean;
  /** Resolves when it has exited. */
  gone: Promise<void>;
  /** The last line rclone wrote to stderr, credentials taken out: why it exited. */
  lastLine(): string;
}

/** What one HTTP exchange with the daemon returned. */
interface Reply { status: number; body: Buffer }

/**
 * Checks a `REMOTE:PATH`: REMOTE must be a remote of rclone's config, so its settings and
 * credentials stay in that file. Connection strings (`:webdav,url=...,pass=...:path`,
 * `remote,user=...:path`) are refused: their options would show in messages and in
 * process listings. PATH must be the same after the HTTP server cleans it (no `//`, `.`
 * or `..`), which would otherwise answer a read with a redirect, and free of `]`, which
 * ends the remote in the object URLs of `rclone rcd --rc-serve`.
 */
export function checkRemote(fs: string): void {
  const m = /^([A-Za-z0-9_.+@-](?:[A-Za-z0-9_.+@ -]*[A-Za-z0-9_.+@-])?):(.*)$/s.exec(fs);
  if (!m) {
    if (/^:|^[^:/]*,/.test(fs)) {
      throw new UsageError('bad-repo', `rclone:${fs.split(/[,:]/).filter(Boolean)[0] ?? ''}...: rclone connection strings (:backend,option=... or REMOTE,option=...) are not taken, as their options (passwords among them) would show in messages: add the remote with rclone config and use rclone:REMOTE:PATH`);
    }
    throw new UsageError('bad-repo', `rclone:${fs}: expected rclone:REMOTE:PATH, REMOTE being a remote of rclone's config (rclone listremotes shows them)`);
  }
  const path = m[2];
  if (/[\x00-\x1f\]]/.test(path) || path.replace(/^\//, '').split('/').some((c, i, all) => c === '.' || c === '..' || (c === '' && i < all.length - 1))) {
    throw new UsageError('bad-repo', `rclone:${fs}: the path on the remote has an empty, . or .. component, a control character or a ]; write it plainly`);
  }
}

/** A message of rclone's with anything that looks like a credential taken out. */
function redactMessage(text: string): string {
  let t = text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/?)[^/\s@"']*@/gi, '$1***@');
  t = t.replace(/([?&;,][^=&\s"',:]*(?:sig|signature|token|key|secret|pass|password|credential|auth)[^=&\s"',:]*=)[^&\s"',]*/gi, '$1***');
  return t.replace(/\s+/g, ' ').trim();
}

/**
 * The contract's code for a failure rclone reported. rclone's own low-level retries have
 * already run by then, so only what is plainly about the network or the server's load
 * is `transient`; anything unknown is `permanent` rather than retried for half a minute.
 */
function codeOf(status: number, message: string): StorageCode {
  const m = message.toLowerCase();
  if (status === 404 || /object not found|directory not found|file not found|doesn't exist|does not exist|no such file/.test(m)) return 'not-found';
  if (/no space left|quota|insufficient storage|\b507\b|storage (is )?full|disk full/.test(m)) return 'no-space';
  if (/permission denied|access denied|forbidden|\b403\b|read-only file system|not authori[sz]ed|unauthori[sz]ed|\b401\b|unable to authenticate|authentication failed|invalid credentials|invalid_grant/.test(m)) return 'permission';
  if (/timeout|timed out|connection reset|connection refused|broken pipe|\beof\b|temporar|try again|too many requests|\b429\b|\b50[0234]\b|rate ?limit|no route to host|network is unreachable|tls handshake/.test(m)) return 'transient';
  return 'permanent';
}

/** The remote's name in a `REMOTE:PATH`. */
function remoteName(fs: string): string {
  return fs.slice(0, fs.indexOf(':'));
}

/** A repository on an rclone remote. */
export class RcloneStorage implements Storage {
  readonly where: string;
  private daemon: Promise<Daemon> | null = null;
  /** The check-then-move of each name being committed, one at a time per name. */
  private readonly placing = new Map<string, Promise<void>>();
  /** Folders made (or being made) by this process, so uploads into one never race to make it. */
  private readonly folders = new Map<string, Promise<void>>();

  /**
   * @param fs rclone's `REMOTE:PATH`, REMOTE a remote of rclone's config (checkRemote).
   * @param rclone the rclone executable.
   */
  constructor(readonly fs: string, private readonly rclone = 'rclone') {
    checkRemote(fs);
    this.where = `rclone:${fs}`;
  }

  /** Starts the daemon on first use; again after it died or failed to start. */
  private start(): Promise<Daemon> {
    const seen = this.daemon;
    if (!seen) return this.restart(null);
    return seen.then((x) => (x.exited ? this.restart(seen) : x), () => this.restart(seen));
  }

  /** A new daemon in place of `seen`, unless a concurrent call has already started one. */
  private restart(seen: Promise<Daemon> | null): Promise<Daemon> {
    if (this.daemon !== seen && this.daemon) return this.daemon;
    this.daemon = startDaemon(this.rclone, this.where);
    return this.daemon;
  }

  /** One HTTP exchange with the daemon; a broken connection is `transient`. */
  private async exchange(name: string, what: string, o: { method: string; path: string; headers?: Record<string, string>; body?: string }): Promise<Reply> {
    const d = await this.start();
    return new Promise<Reply>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: d.port, agent: d.agent, method: o.method, path: o.path, headers: { authorization: d.auth, ...o.headers } }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
        res.on('error', (e) => reject(storageError('transient', this.where, name, `connection to rclone broke while ${what}: ${e.message}`, e)));
        res.on('aborted', () => reject(storageError('transient', this.where, name, `connection to rclone broke while ${what}`)));
      });
      req.on('error', (e) => { void this.broken(d, name, what, e).then(reject); });
      req.end(o.body);
    });
  }

  /**
   * The error for a connection to the daemon that failed: when rclone exited (it does on
   * a config it cannot read, such as an encrypted one without RCLONE_CONFIG_PASS), its last
   * words, which a retry cannot change; else `transient`, as a new daemon may do better.
   */
  private async broken(d: Daemon, name: string, what: string, e: Error): Promise<IebsError> {
    await Promise.race([d.gone, new Promise((r) => setTimeout(r, 500))]);
    if (!d.exited) return storageError('transient', this.where, name, `cannot reach rclone while ${what}: ${e.message}`, e);
    const last = d.lastLine();
    const config = /config/i.test(last);
    return storageError(config ? 'permanent' : 'transient', this.where, config ? '' : name, `rclone exited while ${what}: ${last || e.message}`, e);
  }

  /** Calls an rc method; a failure becomes the contract's error. */
  private async rc(method: string, params: Record<string, unknown>, name: string, what: string): Promise<Record<string, unknown>> {
    const r = await this.exchange(name, what, { method: 'POST', path: `/${method}`, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ fs: this.fs, ...params }) });
    if (r.status !== 200) throw this.failure(r, name, what);
    try { return JSON.parse(r.body.toString('utf8')) as Record<string, unknown>; } catch (e) {
      throw storageError('permanent', this.where, name, `${what}: rclone's reply is not JSON`, e);
    }
  }

  /** The contract's error for a reply that is not a success. */
  private failure(r: Reply, name: string, what: string): IebsError {
    let message = r.body.toString('utf8');
    try { message = String((JSON.parse(message) as { error?: unknown }).error ?? message); } catch { /* not JSON: rclone's plain text */ }
    message = redactMessage(message);
    if (/didn't find section in config file/.test(message)) {
      const file = process.env.RCLONE_CONFIG ? `the file RCLONE_CONFIG names, ${process.env.RCLONE_CONFIG}` : 'rclone\'s config file (`rclone config file` shows which; RCLONE_CONFIG names another)';
      return new UsageError('bad-repo', `${this.where}: no remote named "${remoteName(this.fs)}" in ${file}`);
    }
    const code = codeOf(r.status, message);
    return storageError(code, this.where, name, `${what}: ${message || `HTTP ${r.status}`}`);
  }

  /** The `--rc-serve` URL path of an object. */
  private servePath(name: string): string {
    return `/${encodeURIComponent(`[${this.fs}]`)}/${name.split('/').map(encodeURIComponent).join('/')}`;
  }

  async create(name: string): Promise<ObjectWriter> {
    checkObjectName(name);
    const tmp = `${name}${TMP}${randomBytes(6).toString('hex')}`;
    const cut = tmp.lastIndexOf('/');
    const dir = cut < 0 ? '' : tmp.slice(0, cut);
    const base = tmp.slice(cut + 1);
    const d = await this.start();
    await this.folder(dir);
    const boundary = `iebs-${randomBytes(12).toString('hex')}`;
    const query = new URLSearchParams({ fs: this.fs, remote: dir }).toString();
    const req = http.request({
      host: '127.0.0.1', port: d.port, agent: d.agent, method: 'POST', path: `/operations/uploadfile?${query}`,
      headers: { authorization: d.auth, 'content-type': `multipart/form-data; boundary=${boundary}` },
    });
    let failed: IebsError | null = null;
    let state: 'open' | 'ended' | 'done' = 'open';
    // The reply comes when rclone has stored the whole temporary object, or early when it failed.
    const reply = new Promise<Reply>((resolve, reject) => {
      req.on('response', (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
        res.on('error', reject);
      });
      req.on('error', reject);
    }).then((r) => {
      if (r.status !== 200) failed ??= this.failure(r, name, 'uploading');
      else if (state === 'open') failed ??= storageError('transient', this.where, name, 'rclone ended the upload before it was complete');
      return r;
    }, async (e: Error) => {
      failed ??= await this.broken(d, name, 'uploading', e);
      throw failed;
    });
    reply.catch(() => {});
    const drained = () => new Promise<void>((resolve) => {
      const done = () => { req.off('drain', done); req.off('close', done); resolve(); };
      req.on('drain', done);
      req.on('close', done);
    });
    // Names are sent in RFC 2231 form, so no character of one can break the header.
    req.write(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename*=UTF-8''${encodeURIComponent(base)}\r\nContent-Type: application/octet-stream\r\n\r\n`);
    const dropTmp = async () => {
      await this.rc('operations/deletefile', { remote: tmp }, tmp, 'removing a temporary object').catch(() => {});
    };
    return {
      write: async (data) => {
        if (failed) throw failed;
        if (state !== 'open') throw storageError('permanent', this.where, name, 'write after commit');
        // A copy: the caller may reuse its buffer once this returns, before the socket has sent it.
        if (!req.write(Buffer.from(data))) await drained();
        if (failed) throw failed;
      },
      commit: async () => {
        if (failed) throw failed;
        if (state !== 'open') throw storageError('permanent', this.where, name, 'commit after commit or abort');
        state = 'ended';
        req.end(`\r\n--${boundary}--\r\n`);
        try { await reply; } catch { /* failed says why */ }
        // Set by the reply's handler, which the compiler cannot see.
        const upload = failed as IebsError | null;
        if (upload) {
          // Refused at the door (a wrong password), there is nothing to drop, and asking costs rclone's retries again.
          if (upload.code !== 'permission') await dropTmp();
          throw upload;
        }
        state = 'done';
        try {
          await this.place(tmp, name);
        } catch (e) {
          await dropTmp();
          failed = e as IebsError;
          throw e;
        }
      },
      abort: async () => {
        if (state !== 'open') return;
        state = 'ended';
        // Ended cleanly, the upload finishes now and its temporary object can be removed
        // at once; a connection that broke may leave one for removeDebris.
        if (failed) req.destroy(); else req.end(`\r\n--${boundary}--\r\n`);
        failed ??= storageError('permanent', this.where, name, 'write after abort');
        await reply.catch(() => {});
        await dropTmp();
      },
    };
  }

  /**
   * Makes `dir` on the remote once per process before the first upload into it: uploads
   * that each create a missing folder race on some remotes (SFTP), and the loser fails as
   * if the folder were not there.
   */
  private folder(dir: string): Promise<void> {
    if (!dir) return Promise.resolve();
    let made = this.folders.get(dir);
    if (!made) {
      made = this.rc('operations/mkdir', { fs: this.fs, remote: dir }, dir, 'making the folder').then(() => {});
      made.catch(() => this.folders.delete(dir));
      this.folders.set(dir, made);
    }
    return made;
  }

  /** Moves the whole temporary object `tmp` onto `name` unless `name` exists. */
  private place(tmp: string, name: string): Promise<void> {
    const before = this.placing.get(name) ?? Promise.resolve();
    const mine = before.then(async () => {
      if ((await this.stat(name)) !== null) throw storageError('exists', this.where, name, 'already exists (written by another run); not replaced');
      await this.rc('operations/movefile', { srcFs: this.fs, srcRemote: tmp, dstFs: this.fs, dstRemote: name }, name, 'moving the uploaded object to its name');
    });
    const tail = mine.catch(() => {});
    this.placing.set(name, tail);
    void tail.then(() => { if (this.placing.get(name) === tail) this.placing.delete(name); });
    return mine;
  }

  put(name: string, data: Uint8Array | string): Promise<void> { return putThrough(this, name, data); }

  async get(name: string): Promise<Uint8Array> {
    checkObjectName(name);
    const r = await this.exchange(name, 'reading', { method: 'GET', path: this.servePath(name) });
    if (r.status !== 200) throw this.failure(r, name, 'reading');
    return new Uint8Array(r.body.buffer, r.body.byteOffset, r.body.length);
  }

  async getRange(name: string, offset: number, length: number): Promise<Uint8Array> {
    checkObjectName(name);
    const short = () => storageError('short-read', this.where, name, `object ends before byte ${offset + length} (truncated?)`);
    if (length === 0) {
      // No byte range can say "none": the size answers whether the range lies inside.
      const size = await this.stat(name);
      if (size === null) throw storageError('not-found', this.where, name, 'not found');
      if (offset > size) throw short();
      return new Uint8Array(0);
    }
    const r = await this.exchange(name, 'reading', { method: 'GET', path: this.servePath(name), headers: { range: `bytes=${offset}-${offset + length - 1}` } });
    if (r.status === 416) throw short();
    if (r.status !== 206 && r.status !== 200) {
      const e = this.failure(r, name, 'reading');
      // Some remotes (WebDAV) answer a range past the end as if the object were missing.
      if (e.code === 'not-found') {
        const size = await this.stat(name);
        if (size !== null && offset + length > size) throw short();
      }
      throw e;
    }
    // A server that ignores Range sends the whole object (200).
    const body = r.status === 200 ? r.body.subarray(offset, offset + length) : r.body;
    if (body.length !== length) throw short();
    return new Uint8Array(body.buffer, body.byteOffset, body.length);
  }

  async stat(name: string): Promise<number | null> {
    checkObjectName(name);
    const r = await this.rc('operations/stat', { remote: name, opt: { noModTime: true, noMimeType: true } }, name, 'stat');
    const item = r.item as { Size?: number; IsDir?: boolean } | null | undefined;
    if (!item || item.IsDir) return null;
    return typeof item.Size === 'number' && item.Size >= 0 ? item.Size : null;
  }

  /**
   * Walks the folders the prefix reaches, one folder's listing at a time, as on a
   * directory destination: rclone lists a folder in one reply, so memory holds one
   * folder's names (a repository's folders are flat; volumes/ is the largest).
   */
  async *list(prefix: string): AsyncIterable<string> {
    yield* this.walk(folderOf(prefix), prefix, false);
  }

  /** The files under `folder` that start with `prefix`: temporary ones (`debris`) or the others. */
  private walk(folder: string, prefix: string, debris: boolean): AsyncGenerator<string> {
    return walkFolders(async (f) => {
      if (f) checkObjectName(f);
      try {
        const r = await this.rc('operations/list', { remote: f, opt: { noModTime: true, noMimeType: true } }, f, 'listing');
        return ((r.list as { Name: string; IsDir: boolean }[] | undefined) ?? []).map((e) => ({ name: e.Name, dir: e.IsDir }));
      } catch (e) {
        if (e instanceof IebsError && e.code === 'not-found') return [];
        throw e;
      }
    }, folder, prefix, (n) => n.includes(TMP) === debris);
  }


  async delete(name: string): Promise<void> {
    checkObjectName(name);
    try {
      await this.rc('operations/deletefile', { remote: name }, name, 'deleting');
    } catch (e) {
      if (e instanceof IebsError && e.code === 'not-found') return;
      throw e;
    }
  }

  async removeDebris(prefix: string): Promise<number> {
    const found: string[] = [];
    for await (const d of this.walk(folderOf(prefix), prefix, true)) found.push(d);
    for (const d of found) await this.delete(d);
    return found.length;
  }

  /** Stops the daemon (an open storage that is never closed stops it when this process exits). */
  async close(): Promise<void> {
    const p = this.daemon;
    this.daemon = null;
    const d = await p?.catch(() => null);
    if (!d) return;
    d.agent.destroy();
    if (d.exited) return;
    // The timer is referenced: it keeps Node alive until rclone has gone (or 5 s passed).
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 5000);
      d.child.once('exit', () => { clearTimeout(timer); resolve(); });
      (d.child.stdio[3] as Writable).end();
    });
  }
}

/** The environment of rclone's processes: the user's, without what would change how the daemon listens or logs. */
export function rcloneEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  // rclone refuses to start when AWS_CA_BUNDLE names a file its S3 client cannot use.
  delete env.AWS_CA_BUNDLE;
  for (const k of Object.keys(env)) {
    if (k.startsWith('RCLONE_RC_') || ['RCLONE_LOG_FILE', 'RCLONE_LOG_LEVEL', 'RCLONE_VERBOSE', 'RCLONE_QUIET', 'RCLONE_USE_JSON_LOG', 'RCLONE_LOG_FORMAT'].includes(k)) delete env[k];
  }
  return { ...env, ...extra };
}

/** Starts `rclone rcd` and waits until it listens. */
function startDaemon(rclone: string, where: string): Promise<Daemon> {
  const user = randomBytes(9).toString('hex');
  const pass = randomBytes(24).toString('base64url');
  const child = spawn('/bin/sh', ['-c', WATCHDOG, 'iebs-rclone', rclone, 'rcd', '--rc-addr', '127.0.0.1:0', '--rc-serve', '--log-level', 'NOTICE',
    // Its stdin is not the user's terminal: an encrypted config says so rather than waiting for a password.
    '--ask-password=false',
    // No time limit on a request: a volume's upload lasts as long as the backup takes to fill it.
    '--rc-server-read-timeout', '0', '--rc-server-write-timeout', '0'], {
    env: rcloneEnv({ RCLONE_RC_USER: user, RCLONE_RC_PASS: pass }),
    stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
  });
  let tail = '';
  const lastLine = () => redactMessage(tail.trim().split('\n').pop()?.replace(/^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d /, '') ?? '');
  const d: Daemon = {
    child, port: 0, auth: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`, agent: new http.Agent({ keepAlive: true }), exited: false,
    // A moment after the exit, for rclone's last words still in the pipe.
    gone: new Promise<void>((r) => child.once('exit', () => setTimeout(r, 50))), lastLine,
  };
  const stderr = child.stderr as Readable & { unref(): void };
  // Referenced while it starts, so that a caller awaiting it keeps Node alive; once it
  // listens, only requests under way do.
  const unref = () => {
    child.unref();
    (child.stdio[3] as unknown as { unref(): void }).unref();
    stderr.unref();
  };
  return new Promise<Daemon>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill(); fail(`rclone rcd did not start within 30 s: ${lastLine()}`); }, 30_000);
    timer.unref();
    const fail = (what: string) => { clearTimeout(timer); unref(); reject(storageError('permanent', where, '', what)); };
    stderr.setEncoding('utf8');
    stderr.on('data', (s: string) => {
      // Kept short: rclone logs each failed call, which nobody reads after the start.
      tail = (tail + s).slice(-4000);
      if (d.port) return;
      const m = /Serving remote control on http:\/\/127\.0\.0\.1:(\d+)\//.exec(tail);
      if (m) { d.port = Number(m[1]); clearTimeout(timer); unref(); resolve(d); }
    });
    child.on('error', (e) => fail(`cannot run sh to start rclone: ${e.message}`));
    child.on('exit', (code) => {
      d.exited = true;
      // The watchdog's reader is left waiting on the pipe: let it go.
      (child.stdio[3] as Writable).end();
      d.agent.destroy();
      if (d.port) return;
      if (code === 127) fail('rclone is not installed (or not on PATH): see https://rclone.org/install/ or your system\'s rclone package');
      else fail(`rclone rcd failed to start (exit ${code}): ${lastLine()}`);
    });
  });
}
