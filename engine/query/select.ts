/**
 * Choosing what a query looks at: paths a user names inside a snapshot (`ls`, `dump`)
 * and glob patterns (`find`). Pure: no I/O.
 */
import { UsageError } from '../../formats/errors.js';

/**
 * A path as a user names it inside a snapshot (`taxes/`, `/taxes/2024`, `./a`), as the
 * bytes a manifest records: relative to the snapshot root, no empty or `.` component,
 * no trailing `/`. The snapshot root itself (`/`, `.`, ``) is the empty path. `..` is
 * refused: it can name nothing inside a snapshot.
 */
export function snapshotPath(text: string): Buffer {
  const parts = text.split('/').filter((c) => c !== '' && c !== '.');
  if (parts.includes('..')) throw new UsageError('bad-path', `${JSON.stringify(text)}: ".." names nothing inside a snapshot`);
  return Buffer.from(parts.join('/'), 'utf8');
}

/** True if `p` is `sel` or lies under it; every path lies under the root (the empty path). */
export function atOrUnder(p: Uint8Array, sel: Uint8Array): boolean {
  if (sel.length === 0) return true;
  if (p.length < sel.length || Buffer.compare(p.subarray(0, sel.length), sel) !== 0) return false;
  return p.length === sel.length || p[sel.length] === 0x2f;
}

/**
 * The paths a listing is restricted to: an entry is chosen when it is one of them or
 * lies under one. Remembers which of them chose something, so that a name that matched
 * nothing can be reported.
 */
export class PathSelection {
  private readonly paths: Buffer[];
  private readonly hit: boolean[];
  constructor(texts: string[]) {
    this.paths = texts.map(snapshotPath);
    this.hit = this.paths.map(() => false);
  }
  /** True when nothing restricts the listing. */
  get all(): boolean { return this.paths.length === 0; }
  /** Whether `p` is chosen (and notes which selection chose it). */
  chooses(p: Uint8Array): boolean {
    if (this.paths.length === 0) return true;
    let yes = false;
    this.paths.forEach((sel, i) => { if (atOrUnder(p, sel)) { this.hit[i] = true; yes = true; } });
    return yes;
  }
  /** The paths that named no entry (as given, relative to the root); the root always names something. */
  missing(): string[] {
    return this.paths.filter((p, i) => !this.hit[i] && p.length > 0).map((p) => p.toString('utf8'));
  }
}

/**
 * Compiles a glob (restic's `find`: `*` and `?` within one name, `[abc]`, `[!a-z]`, `\x`
 * for a literal `x`; and `**`, any run of names) into a matcher of paths. A pattern
 * without `/` is matched against the last name of a path, one with `/` against the
 * whole path (a leading `/` is the snapshot root).
 */
export function globMatcher(pattern: string): (path: string) => boolean {
  if (pattern === '') throw new UsageError('bad-pattern', 'an empty pattern matches nothing');
  const whole = pattern.includes('/');
  const body = whole ? pattern.replace(/^\/+/, '') : pattern;
  let re = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c === '*') {
      if (body[i + 1] === '*') {
        // `**/` is zero or more whole names; a `**` elsewhere, anything.
        if (body[i + 2] === '/') { re += '(?:.*/)?'; i += 2; } else { re += '.*'; i += 1; }
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '\\') {
      if (i + 1 >= body.length) throw new UsageError('bad-pattern', `${JSON.stringify(pattern)}: ends in a lone \\`);
      re += escapeRe(body[++i]);
    } else if (c === '[') {
      const end = body.indexOf(']', i + 2);
      if (end < 0) throw new UsageError('bad-pattern', `${JSON.stringify(pattern)}: [ without ]`);
      let set = body.slice(i + 1, end);
      const negate = set.startsWith('!') || set.startsWith('^');
      if (negate) set = set.slice(1);
      re += `[${negate ? '^/' : ''}${set.replace(/[\\\]^]/g, (x) => '\\' + x)}]`;
      i = end;
    } else re += escapeRe(c);
  }
  let compiled: RegExp;
  try { compiled = new RegExp(`^${re}$`, 'su'); } catch (cause) {
    throw new UsageError('bad-pattern', `${JSON.stringify(pattern)}: not a valid pattern`, { cause });
  }
  if (whole) return (path) => compiled.test(path);
  return (path) => compiled.test(path.slice(path.lastIndexOf('/') + 1));
}

function escapeRe(c: string): string {
  return /[.*+?^${}()|[\]\\]/.test(c) ? '\\' + c : c;
}
