/**
 * What the tests of `iebs serve` share: a service started as a real CLI child process
 * on a free loopback port with its own config, job and cache folders, and raw HTTP
 * requests (node:http, so that Host and Origin can be set as an attacker would).
 */
import { type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { request } from 'node:http';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { iebsChild, tempDir } from './helpers.js';

/** A running service. */
export interface Served {
  port: number;
  token: string;
  /** The path of the one-time login link printed at start. */
  login: string;
  config: string;
  jobs: string;
  cache: string;
  env: Record<string, string>;
  child: ChildProcess;
  log: () => string;
  stop: () => Promise<void>;
}

/** Starts `iebs serve --listen 127.0.0.1:0` with this serve.json (and optional scheduler state). */
export async function startServe(serveJson: unknown, o: { state?: unknown; dir?: string } = {}): Promise<Served> {
  const dir = o.dir ?? tempDir('serve');
  const config = join(dir, 'config'), jobs = join(dir, 'jobs'), cache = join(dir, 'cache');
  mkdirSync(config, { recursive: true, mode: 0o700 });
  writeFileSync(join(config, 'serve.json'), JSON.stringify(serveJson, null, 2));
  if (o.state) writeFileSync(join(config, 'serve-state.json'), JSON.stringify(o.state));
  const env = { IEBS_CONFIG_DIR: config, IEBS_JOBS_DIR: jobs, IEBS_CACHE_DIR: cache, IEBS_STATE_DIR: join(dir, 'state') };
  const child = iebsChild(['serve', '--listen', '127.0.0.1:0'], { env });
  let err = '';
  child.stderr!.on('data', (d) => { err += d; });
  child.stdout!.resume();
  for (;;) {
    const m = /login\?once=[A-Za-z0-9_-]+/.exec(err);
    if (m) break;
    if (child.exitCode !== null) throw new Error(`iebs serve ended: ${err}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(err)![1]);
  const login = '/' + /login\?once=[A-Za-z0-9_-]+/.exec(err)![0];
  const token = readFileSync(join(config, 'serve.token'), 'utf8').trim();
  return {
    port, token, login, config, jobs, cache, env, child, log: () => err,
    stop: async () => { if (child.exitCode === null) { child.kill('SIGTERM'); await once(child, 'exit'); } },
  };
}

/** A response. */
export interface Reply { status: number; headers: Record<string, string | string[] | undefined>; text: string; json: () => any }

/** One HTTP request to the service; `path` goes on the wire exactly as given. */
export function http(s: { port: number }, method: string, path: string, o: { headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: s.port, method, path, headers: { Host: `127.0.0.1:${s.port}`, ...o.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode!, headers: res.headers, text, json: () => JSON.parse(text) });
      });
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

/** An authorized API request (JSON body for POST). */
export function api(s: Served, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  return http(s, method, path, {
    headers: { Authorization: `Bearer ${s.token}`, ...(method === 'POST' ? { 'Content-Type': 'application/json' } : {}), ...headers },
    body: method === 'POST' ? JSON.stringify(body ?? {}) : undefined,
  });
}

/** Reads a job's Server-Sent Events to the end; returns the events. */
export function events(s: Served, id: string): Promise<{ event: string; data: any }[]> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: s.port, path: `/api/jobs/${id}/events`, headers: { Host: `127.0.0.1:${s.port}`, Authorization: `Bearer ${s.token}` } }, (res) => {
      let buf = '';
      res.on('data', (c) => { buf += c; });
      res.on('end', () => {
        const out: { event: string; data: any }[] = [];
        for (const block of buf.split('\n\n')) {
          const ev = /^event: (.*)$/m.exec(block), data = /^data: (.*)$/m.exec(block);
          if (ev && data) out.push({ event: ev[1], data: JSON.parse(data[1]) });
        }
        resolve(out);
      });
    });
    req.on('error', reject);
    req.end();
  });
}
