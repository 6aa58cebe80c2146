/**
 * `iebs serve`: the JSON HTTP API under /api/, the web page, and the scheduler, in one
 * node:http server on loopback (or a Unix socket).
 *
 * Each request passes, in order: the Host check (DNS rebinding), the Origin check (another
 * site's page), then for /api/ the token or session check (service/auth.ts); only then is
 * it routed. Routes match whole path segments, each decoded and checked against a strict
 * pattern (a repository name, a job id, a snapshot name), so no part of a URL ever
 * becomes a file path; the page's files are a fixed list. Work on repositories runs in
 * child processes of the iebs CLI (service/runner.ts): backups, verifies and restores as
 * jobs that publish their progress (engine/jobs), which /api/jobs/ID/events streams as
 * Server-Sent Events. The routes are listed in ROUTES and written down in
 * docs/openapi.json; test/serve-api.test.ts checks that the two agree.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { historyFile, isJobId, listJobs, readHistory, readJob, watchJob, type JobRecord } from '../engine/jobs/jobs.js';
import { COOKIE, cookie, hostAllowed, sameSecret, Sessions } from './auth.js';
import { type RepoConfig, type ServeConfig } from './config.js';
import { Runner } from './runner.js';
import { Scheduler } from './scheduler.js';

/** A route: method, path pattern (OpenAPI style, `{param}`), handler. */
interface Route { method: 'GET' | 'POST'; path: string; handle: (c: Ctx) => Promise<void> | void }

/** What a handler gets. */
interface Ctx { req: IncomingMessage; res: ServerResponse; params: Record<string, string>; query: URLSearchParams; body: () => Promise<Record<string, unknown>> }

/** An API error: status and one line. */
class HttpError extends Error {
  constructor(readonly status: number, message: string) { super(message); }
}

/** How the service is set up. */
export interface ServeOptions {
  config: ServeConfig;
  token: string;
  /** Job folder (engine/jobs). */
  jobs: string;
  /** The iebs CLI's main.js, which runs the jobs. */
  cli: string;
  /** Scheduler state file. */
  stateFile: string;
  /** The host the server listens on (for the Host check); undefined on a Unix socket. */
  listenHost?: string;
  /** The clock of the scheduler (tests). */
  now?: () => Date;
  /** Environment of the children (tests set the config and cache folders). */
  env?: NodeJS.ProcessEnv;
  /** Messages for the operator (start, scheduled runs); never a token or key. */
  log?: (line: string) => void;
}

const SEGMENT = {
  name: /^[A-Za-z0-9_-]{1,64}$/,
  snapshot: /^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/,
} as const;

/** The page's files: URL path to file under web/ (or the vendored chart library). */
const WEB = fileURLToPath(new URL('../../web/', import.meta.url));
const UPLOT = fileURLToPath(new URL('../../node_modules/uplot/dist/', import.meta.url));
const STATIC: Record<string, { file: string; type: string }> = {
  '/': { file: join(WEB, 'index.html'), type: 'text/html; charset=utf-8' },
  '/app.js': { file: join(WEB, 'app.js'), type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: join(WEB, 'style.css'), type: 'text/css; charset=utf-8' },
  '/vendor/uPlot.iife.min.js': { file: join(UPLOT, 'uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  '/vendor/uPlot.min.css': { file: join(UPLOT, 'uPlot.min.css'), type: 'text/css; charset=utf-8' },
};

/** Security headers on every response: no framing, no sniffing, scripts only from here. */
const HEADERS = {
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Content-Security-Policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'Cache-Control': 'no-store',
};

function send(res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
  const text = JSON.stringify(body, null, 1);
  res.writeHead(status, { ...HEADERS, 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text), ...extra });
  res.end(text);
}

/** Escapes text for a regular expression. */
function reEscape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** Checks a path inside a snapshot: relative, `/`-separated, no `.` or `..` segment, no NUL. */
export function snapshotPath(p: unknown): string {
  if (typeof p !== 'string' || p === '' || p.length > 4096) throw new HttpError(400, 'path must be a path inside the snapshot');
  if (p.startsWith('/') || p.includes('\0') || p.split('/').some((s) => s === '' || s === '.' || s === '..')) throw new HttpError(400, `path ${JSON.stringify(p)}: a relative path inside the snapshot, without . or .. segments`);
  return p;
}

/** The service. */
export class Service {
  readonly sessions = new Sessions();
  readonly runner: Runner;
  readonly scheduler: Scheduler;
  readonly routes: Route[];
  private timer: NodeJS.Timeout | null = null;
  private readonly log: (line: string) => void;

  constructor(private readonly o: ServeOptions) {
    this.runner = new Runner(o.jobs, o.cli, o.env);
    this.log = o.log ?? (() => {});
    this.scheduler = new Scheduler({
      entries: o.config.schedule, stateFile: o.stateFile, now: o.now ?? (() => new Date()),
      running: (id) => this.runner.running(id),
      start: (e) => {
        try {
          const { id } = this.startJob(this.repo(e.repository), e.run, {}, `schedule:${e.name}`);
          this.log(`scheduled ${e.name}: started ${e.run} of ${e.repository} as job ${id}`);
          return id;
        } catch (err) { this.log(`scheduled ${e.name}: could not start: ${(err as Error).message}`); return null; }
      },
    });
    this.routes = [
      { method: 'GET', path: '/api/repositories', handle: (c) => send(c.res, 200, [...o.config.repositories.values()].map((r) => this.repoView(r))) },
      { method: 'GET', path: '/api/repositories/{name}/snapshots', handle: (c) => this.snapshots(c) },
      { method: 'GET', path: '/api/repositories/{name}/snapshots/{snapshot}/files', handle: (c) => this.files(c) },
      { method: 'POST', path: '/api/repositories/{name}/backup', handle: (c) => this.post(c, 'backup') },
      { method: 'POST', path: '/api/repositories/{name}/plan', handle: (c) => this.post(c, 'plan') },
      { method: 'POST', path: '/api/repositories/{name}/verify', handle: (c) => this.post(c, 'verify') },
      { method: 'POST', path: '/api/repositories/{name}/restore', handle: (c) => this.post(c, 'restore') },
      { method: 'GET', path: '/api/jobs', handle: (c) => send(c.res, 200, listJobs(o.jobs)) },
      { method: 'GET', path: '/api/jobs/{id}', handle: (c) => this.job(c) },
      { method: 'POST', path: '/api/jobs/{id}/stop', handle: (c) => this.stop(c) },
      { method: 'GET', path: '/api/jobs/{id}/events', handle: (c) => this.events(c) },
      { method: 'GET', path: '/api/history', handle: (c) => send(c.res, 200, readHistory(historyFile(o.env ?? process.env))) },
      { method: 'GET', path: '/api/schedule', handle: (c) => send(c.res, 200, this.scheduler.view().map((v) => ({ ...v.entry, days: v.entry.days, lastRun: v.lastRun ?? null, lastJob: v.lastJob ?? null, next: v.next }))) },
      { method: 'POST', path: '/api/login-links', handle: (c) => send(c.res, 201, { path: `/login?once=${this.sessions.code()}` }) },
    ];
  }

  /** Starts the scheduler: runs missed at once, then a look every 30 s. */
  startScheduler(): void {
    this.scheduler.tick();
    this.timer = setInterval(() => this.scheduler.tick(), 30_000);
    this.timer.unref();
  }

  stopScheduler(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** The node:http server of this service. */
  server(): Server {
    return createServer((req, res) => {
      this.handle(req, res).catch((e) => {
        if (res.headersSent) { res.destroy(); return; }
        if (e instanceof HttpError) send(res, e.status, { error: e.message });
        else { this.log(`internal error: ${(e as Error).message}`); send(res, 500, { error: 'internal error' }); }
      });
    });
  }

  private repo(name: string): RepoConfig {
    const r = this.o.config.repositories.get(name);
    if (!r) throw new HttpError(404, `no repository ${JSON.stringify(name)}`);
    return r;
  }

  private repoView(r: RepoConfig) {
    return { name: r.name, repo: r.repo, sources: r.sources, canBackup: r.sources.length > 0, canRestore: r.restoreKey !== undefined, schedule: this.o.config.schedule.filter((e) => e.repository === r.name).map((e) => e.name) };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Host: only this service's own names (not one a rebinding DNS points here).
    if (this.o.listenHost !== undefined && !hostAllowed(req.headers.host, this.o.listenHost)) throw new HttpError(403, 'this Host is not served here');
    // Origin: only this page may call from a browser.
    const origin = req.headers.origin;
    if (origin !== undefined && (req.headers.host === undefined || origin !== `http://${req.headers.host}`)) throw new HttpError(403, 'foreign Origin refused');
    if (req.headers['sec-fetch-site'] === 'cross-site') throw new HttpError(403, 'cross-site request refused');
    const url = new URL(req.url ?? '/', 'http://service');
    if (url.pathname === '/login') return this.login(req, res, url);
    if (!url.pathname.startsWith('/api/')) return this.page(req, res, url.pathname);
    if (!this.authorized(req)) {
      send(res, 401, { error: 'a token is required (Authorization: Bearer TOKEN from serve.token, or the login link of iebs serve)' }, { 'WWW-Authenticate': 'Bearer realm="iebs"' });
      return;
    }
    const { route, params } = this.match(req.method ?? 'GET', url.pathname);
    await route.handle({
      req, res, params, query: url.searchParams,
      body: () => readBody(req),
    });
  }

  private authorized(req: IncomingMessage): boolean {
    const h = req.headers.authorization;
    if (h !== undefined) {
      const m = /^Bearer ([^\s]+)$/.exec(h);
      return !!m && sameSecret(m[1], this.o.token);
    }
    const s = cookie(req.headers.cookie, COOKIE);
    return s !== undefined && this.sessions.valid(s);
  }

  /** The route for a method and path; path segments are decoded and checked one by one. */
  match(method: string, pathname: string): { route: Route; params: Record<string, string> } {
    const raw = pathname.split('/');
    let pathFound = false;
    for (const route of this.routes) {
      const want = route.path.split('/');
      if (want.length !== raw.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < want.length && ok; i++) {
        const p = /^\{(\w+)\}$/.exec(want[i]);
        if (!p) { ok = want[i] === raw[i]; continue; }
        let v: string;
        try { v = decodeURIComponent(raw[i]); } catch { ok = false; continue; }
        const re = p[1] === 'id' ? null : SEGMENT[p[1] as keyof typeof SEGMENT];
        ok = p[1] === 'id' ? isJobId(v) : !!re && re.test(v);
        params[p[1]] = v;
      }
      if (!ok) continue;
      pathFound = true;
      if (route.method === method) return { route, params };
    }
    if (pathFound) throw new HttpError(405, `${method} is not allowed here`);
    throw new HttpError(404, 'no such route');
  }

  private login(req: IncomingMessage, res: ServerResponse, url: URL): void {
    if (req.method !== 'GET') throw new HttpError(405, 'GET only');
    const session = this.sessions.redeem(url.searchParams.get('once') ?? '');
    if (!session) {
      res.writeHead(403, { ...HEADERS, 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('This login link was used already or has expired. Run iebs serve --login-link for a new one.\n');
      return;
    }
    res.writeHead(303, { ...HEADERS, Location: '/', 'Set-Cookie': `${COOKIE}=${session}; HttpOnly; SameSite=Strict; Path=/` });
    res.end();
  }

  private page(req: IncomingMessage, res: ServerResponse, pathname: string): void {
    const f = Object.hasOwn(STATIC, pathname) ? STATIC[pathname] : undefined;
    if (!f) throw new HttpError(404, 'no such page');
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'GET only');
    const body = readFileSync(f.file);
    res.writeHead(200, { ...HEADERS, 'Content-Type': f.type, 'Content-Length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  /** Starts a job for a repository; `what` is backup, plan (a dry run), verify or restore. */
  startJob(r: RepoConfig, what: 'backup' | 'plan' | 'verify' | 'restore', body: Record<string, unknown>, origin = 'service'): { id: string; target?: string } {
    const args = ['--repo', r.repo];
    if (r.limitUpload) args.push('--limit-upload', r.limitUpload);
    if (r.limitDownload) args.push('--limit-download', r.limitDownload);
    if (r.passphraseFile && (what === 'restore' || (what === 'verify' && body.readData === true))) args.push('--passphrase-file', r.passphraseFile);
    if (what === 'backup' || what === 'plan') {
      if (r.sources.length === 0) throw new HttpError(409, `repository ${r.name} names no sources to back up`);
      if (r.key) args.push('--key', r.key);
      for (const x of r.include) args.push('--include', x);
      for (const x of r.exclude) args.push('--exclude', x);
      if (r.volumeSize) args.push('--volume-size', r.volumeSize);
      if (r.compression) args.push('--compression', r.compression);
      args.push(what === 'plan' ? '--dry-run' : '--scan');
      if (body.full === true && what === 'backup') args.push('--full');
      return { id: this.runner.start('backup', [...args, '--', ...r.sources], { repo: r.repo, origin, label: what === 'plan' ? 'backup --dry-run' : 'backup' }) };
    }
    if (what === 'verify') {
      if (body.readData === true) {
        if (!r.restoreKey) throw new HttpError(409, `repository ${r.name} has no restore key configured on this machine`);
        args.push('--read-data', '--key', r.restoreKey);
      } else if (r.verifyKey) args.push('--key', r.verifyKey);
      return { id: this.runner.start('verify', args, { repo: r.repo, origin }) };
    }
    if (!r.restoreKey) throw new HttpError(409, `repository ${r.name} has no restore key configured on this machine`);
    const snapshot = body.snapshot;
    if (typeof snapshot !== 'string' || !SEGMENT.snapshot.test(snapshot)) throw new HttpError(400, 'snapshot must be a snapshot name');
    const path = body.path === undefined ? undefined : snapshotPath(body.path);
    const target = join(r.restoreTarget, `${snapshot}-${Date.now().toString(36)}`);
    const id = this.runner.start('restore', [...args, '--key', r.restoreKey, '--snapshot', snapshot, '--target', target, ...(path ? ['--include', `^${reEscape(path)}(/|$)`] : [])], { repo: r.repo, origin });
    return { id, target };
  }

  private async post(c: Ctx, what: 'backup' | 'plan' | 'verify' | 'restore'): Promise<void> {
    const r = this.repo(c.params.name);
    const body = await c.body();
    if (what === 'restore') await mkdir(r.restoreTarget, { recursive: true, mode: 0o700 });
    const { id, target } = this.startJob(r, what, body);
    send(c.res, 202, { ...this.jobView(id), id, ...(target ? { target } : {}) });
  }

  private jobView(id: string): JobRecord | Record<string, unknown> {
    return readJob(this.o.jobs, id) ?? { id, state: 'starting' };
  }

  private job(c: Ctx): void {
    const r = readJob(this.o.jobs, c.params.id);
    if (!r) throw new HttpError(404, `no job ${c.params.id}`);
    const output = r.state === 'running' ? undefined : this.runner.output(r.id);
    send(c.res, 200, { ...r, output: output ?? null, messages: this.runner.messages(r.id) });
  }

  private stop(c: Ctx): void {
    const r = readJob(this.o.jobs, c.params.id);
    if (!r) throw new HttpError(404, `no job ${c.params.id}`);
    if (!this.runner.stop(r.id)) throw new HttpError(409, `job ${r.id} is not running`);
    send(c.res, 202, { id: r.id, stopping: true });
  }

  private async events(c: Ctx): Promise<void> {
    const id = c.params.id;
    if (!readJob(this.o.jobs, id)) throw new HttpError(404, `no job ${id}`);
    const stop = new AbortController();
    c.req.on('close', () => stop.abort());
    c.res.writeHead(200, { ...HEADERS, 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive' });
    c.res.write(': iebs job events\n\n');
    let last: JobRecord | undefined;
    for await (const r of watchJob(this.o.jobs, id, { signal: stop.signal })) {
      last = r;
      c.res.write(`event: progress\ndata: ${JSON.stringify(r)}\n\n`);
    }
    if (last && last.state !== 'running') c.res.write(`event: end\ndata: ${JSON.stringify(last)}\n\n`);
    c.res.end();
  }

  private async snapshots(c: Ctx): Promise<void> {
    const r = this.repo(c.params.name);
    const run = await this.runner.call('snapshots', ['--repo', r.repo, ...(r.verifyKey ? ['--key', r.verifyKey] : []), '--json']);
    if (run.code !== 0 && run.code !== 3) throw new HttpError(502, lastLine(run.stderr) ?? 'iebs snapshots failed');
    const list = JSON.parse(run.stdout) as { name: string }[];
    // How long each snapshot took, from this machine's history of backups.
    const took = new Map<string, number>();
    for (const h of readHistory(historyFile(this.o.env ?? process.env))) {
      const snap = h.result?.snapshot;
      if (h.verb === 'backup' && h.state === 'done' && typeof snap === 'string') took.set(snap, (Date.parse(h.ended) - Date.parse(h.started)) / 1000);
    }
    send(c.res, 200, { snapshots: list.map((s) => ({ ...s, duration: took.get(s.name) ?? null })), warnings: run.stderr.split('\n').filter(Boolean) });
  }

  private async files(c: Ctx): Promise<void> {
    const r = this.repo(c.params.name);
    if (!r.restoreKey) throw new HttpError(409, `repository ${r.name} has no restore key configured on this machine`);
    const args = ['--repo', r.repo, '--key', r.restoreKey, ...(r.passphraseFile ? ['--passphrase-file', r.passphraseFile] : []), c.params.snapshot, '--json'];
    const run = await this.runner.call('ls', args);
    if (run.code !== 0) throw new HttpError(run.stderr.includes('no snapshot') ? 404 : 502, lastLine(run.stderr) ?? 'iebs ls failed');
    send(c.res, 200, JSON.parse(run.stdout));
  }
}

function lastLine(text: string): string | undefined {
  return text.split('\n').filter(Boolean).pop()?.replace(/^iebs: /, '');
}

/** Reads a JSON object body (at most 64 KiB, Content-Type application/json, which a plain HTML form cannot send). */
async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > 65536) throw new HttpError(413, 'request body too large');
    chunks.push(c as Buffer);
  }
  if (!/^application\/json\b/.test(req.headers['content-type'] ?? '')) throw new HttpError(415, 'send JSON (Content-Type: application/json)');
  if (size === 0) return {};
  let v: unknown;
  try { v = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { throw new HttpError(400, 'the body is not JSON'); }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new HttpError(400, 'the body must be a JSON object');
  return v as Record<string, unknown>;
}
