/**
 * The config file (README "Settings"): `$IEBS_CONFIG_DIR/config`, else
 * `$XDG_CONFIG_HOME/iebs/config`, else `~/.config/iebs/config`. Lines of `name = value`
 * give defaults for the flags of the same name; a `[VERB]` line starts a section whose
 * settings apply to that verb only and come before the top's. `#` at the start of a line
 * or after a space starts a comment; a value in double quotes is read as a JSON string; `~/` starts a path in the home
 * directory; a repeatable flag (exclude) may be set on several lines. A flag or its
 * environment variable wins over the file.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from '../formats/errors.js';
import type { Flag } from './verb.js';

/**
 * The names a setting may have at the top of the file: the flags of the verbs (a test
 * keeps this list equal to them). In a [VERB] section, only that verb's flags.
 */
export const SETTINGS = [
  'cache-dir', 'compression', 'exclude', 'full', 'include', 'init', 'json', 'key', 'limit-download', 'limit-upload',
  'max-increments', 'name', 'new-sources', 'no-cache', 'out', 'overwrite', 'passphrase-file', 'public', 'quick', 'quiet', 'read-data', 'recipient',
  'repo', 'reread', 'setuid', 'snapshot', 'subset', 'target', 'volume-size', 'dry-run',
  'archive', 'long', 'new-passphrase-file', 'no-passphrase', 'system', 'compromised', 'last-good',
  'all', 'chain', 'disc', 'media', 'parity', 'repair', 'scratch',
  'scan', 'follow', 'last', 'listen', 'socket', 'login-link',
  'keep-last', 'keep-hourly', 'keep-daily', 'keep-weekly', 'keep-monthly', 'keep-yearly', 'keep-within', 'forget-suspect', 'prune', 'untrusted',
];

interface Line { name: string; value: string; line: number }

/** A parsed config file. */
export class Config {
  constructor(readonly path: string, private readonly sections: Map<string, Line[]>) {}

  /** The value the file gives flag `f` of `verb`, if any: its [verb] section first, then the top. */
  value(verb: string, f: Flag): string | boolean | string[] | undefined {
    if (f.config === false) return undefined;
    const own = this.sections.get(verb)?.filter((l) => l.name === f.name) ?? [];
    const lines = own.length ? own : (this.sections.get('')?.filter((l) => l.name === f.name) ?? []);
    if (lines.length === 0) return undefined;
    const at = (l: Line) => `${this.path}:${l.line}`;
    if (!f.value) {
      const l = lines[lines.length - 1];
      if (l.value !== 'true' && l.value !== 'false') throw new UsageError('bad-flag', `${at(l)}: ${f.name} is true or false, not ${JSON.stringify(l.value)}`);
      return l.value === 'true' ? true : undefined;
    }
    const values = lines.map((l) => (f.path && l.value.startsWith('~/') ? join(homedir(), l.value.slice(2)) : l.value));
    if (f.many) return values;
    if (lines.length > 1) throw new UsageError('bad-flag', `${at(lines[1])}: ${f.name} is set twice`);
    if (f.choices && !f.choices.includes(values[0])) throw new UsageError('bad-flag', `${at(lines[0])}: ${f.name} is one of ${f.choices.join(', ')}`);
    return values[0];
  }

  /** Refuses settings in a [verb] section that the verb does not take. */
  check(verb: string, flags: Flag[]): void {
    for (const l of this.sections.get(verb) ?? []) {
      if (!flags.some((f) => f.name === l.name)) throw new UsageError('bad-flag', `${this.path}:${l.line}: iebs ${verb} has no --${l.name}`);
    }
  }
}

/** Parses the text of a config file. */
export function parseConfig(path: string, text: string, verbs?: string[]): Config {
  const sections = new Map<string, Line[]>([['', []]]);
  let section = '';
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    const t = raw.trim();
    if (t === '' || t.startsWith('#')) return;
    const s = /^\[([a-z][a-z-]*)\]$/.exec(t);
    if (s) {
      if (verbs && !verbs.includes(s[1])) throw new UsageError('bad-flag', `${path}:${line}: no command named ${s[1]}`);
      section = s[1];
      if (!sections.has(section)) sections.set(section, []);
      return;
    }
    const m = /^([a-z][a-z-]*)\s*=\s*(.*)$/.exec(t);
    if (!m) throw new UsageError('bad-flag', `${path}:${line}: expected NAME = VALUE or [COMMAND]`);
    if (section === '' && !SETTINGS.includes(m[1])) throw new UsageError('bad-flag', `${path}:${line}: no setting named ${m[1]}`);
    let value = m[2];
    if (value.startsWith('"')) {
      const q = /^("(?:[^"\\]|\\.)*")\s*(?:#.*)?$/.exec(value);
      try { value = JSON.parse(q?.[1] ?? '') as string; } catch { throw new UsageError('bad-flag', `${path}:${line}: a quoted value is a JSON string`); }
    } else value = value.replace(/\s+#.*$/, '');
    sections.get(section)!.push({ name: m[1], value, line });
  });
  return new Config(path, sections);
}

/** The user's iebs config directory: $IEBS_CONFIG_DIR, $XDG_CONFIG_HOME/iebs or ~/.config/iebs. */
export function configDir(): string {
  if (process.env.IEBS_CONFIG_DIR) return process.env.IEBS_CONFIG_DIR;
  return join(process.env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'iebs');
}

/** The path of the config file. */
export function configPath(): string {
  return join(configDir(), 'config');
}

/** Reads the config file (none is an empty one). */
export function configFile(verbs?: string[]): Config {
  const path = configPath();
  let text: string;
  try { text = readFileSync(path, 'utf8'); } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return new Config(path, new Map());
    throw new UsageError('bad-flag', `${path}: cannot read the config file (${code ?? 'error'})`, { cause: e });
  }
  return parseConfig(path, text, verbs);
}
