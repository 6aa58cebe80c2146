/**
 * Who may talk to the service. Every /api request carries the token (`Authorization:
 * Bearer TOKEN`, the token kept 0600 as serve.token in the config directory) or the
 * session cookie the page got from a one-time login link. A login link holds a one-time
 * code, not the token: it is worthless once used or after ten minutes, so a link left in
 * a browser's history or a terminal's scrollback opens nothing. The session cookie is
 * HttpOnly (the page's scripts never see it) and SameSite=Strict (no other site's page
 * sends it). Requests must also name this service in Host (so a DNS-rebinding page cannot
 * reach it under its own name) and come from its own Origin.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { UsageError } from '../formats/errors.js';

/** Reads the token file, or makes it (0600) if there is none. A token file others can read is refused. */
export function loadToken(file: string, dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  try {
    const fd = openSync(file, 'wx', 0o600);
    const token = randomBytes(32).toString('hex');
    try { writeSync(fd, token + '\n'); } finally { closeSync(fd); }
    return token;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const mode = statSync(file).mode & 0o777;
  if (mode & 0o077) throw new UsageError('bad-config', `${file}: the token file is readable by others (mode ${mode.toString(8).padStart(4, '0')}); chmod 600 it, or delete it to make a new token`);
  const token = readFileSync(file, 'utf8').trim();
  if (!/^[0-9a-f]{64}$/.test(token)) throw new UsageError('bad-config', `${file}: not a token made by iebs serve (delete it to make a new one)`);
  return token;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Compares secrets in constant time. */
export function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(digest(a), digest(b));
}

/** The name of the session cookie. */
export const COOKIE = 'iebs_session';

/** One-time login codes and the sessions they opened (in memory: a restart logs everyone out). */
export class Sessions {
  private readonly codes = new Map<string, number>();
  private readonly sessions = new Set<string>();

  constructor(private readonly now: () => number = Date.now) {}

  /** A new one-time code, valid for ten minutes. */
  code(): string {
    const c = randomBytes(24).toString('base64url');
    this.codes.set(c, this.now() + 10 * 60_000);
    return c;
  }

  /** Uses a code: a new session id, or null if the code is unknown, used or expired. */
  redeem(code: string): string | null {
    let hit: string | null = null;
    for (const [c, until] of this.codes) {
      if (until < this.now()) this.codes.delete(c);
      else if (sameSecret(c, code)) hit = c;
    }
    if (!hit) return null;
    this.codes.delete(hit);
    const s = randomBytes(32).toString('base64url');
    this.sessions.add(s);
    return s;
  }

  /** Whether a session id is one of ours. */
  valid(session: string): boolean {
    for (const s of this.sessions) if (sameSecret(s, session)) return true;
    return false;
  }
}

/** The value of one cookie in a Cookie header. */
export function cookie(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Host names that always mean this machine. */
const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/** Whether an address is a loopback one. */
export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host) || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * Whether a Host header names this service: a loopback name (any port: an SSH tunnel may
 * use another local port) or the address it listens on.
 */
export function hostAllowed(hostHeader: string | undefined, listenHost: string): boolean {
  if (!hostHeader) return false;
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(hostHeader);
  if (!m) return false;
  const h = m[1].toLowerCase();
  return isLoopback(h) || h === listenHost.toLowerCase() || `[${listenHost.toLowerCase()}]` === h;
}
