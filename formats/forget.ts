/**
 * The forget record (SPEC.md "Forget record"): the owner's signed statement that some
 * snapshots of one system are removed. It names each removed snapshot by name and the
 * sha384 of its record text, and carries that record text itself, so that after the
 * records are deleted a verifier still sees the removed records' sequence, times and
 * hash links and can check the records that remain against them. Stored as an OpenPGP
 * cleartext-signed message, signed by a recipient (owner) key, never the host's.
 */
import { createHash } from 'node:crypto';
import { FormatError } from './errors.js';
import { checkName, SNAPSHOT_RE, SYSTEM_RE } from './names.js';
import { decodeSnapshotRecord, type SnapshotRecord } from './snapshot.js';
import { formatSha384, formatTime, parseSha384, parseTime } from './text.js';

/** One removed snapshot: its name, the sha384 of its record text, and that text. */
export interface Forgotten { name: string; sha384: Uint8Array; text: string; record: SnapshotRecord }

/** A forget record. */
export interface ForgetRecord {
  system: string;
  /** The owner's clock when the forget was made. */
  time: bigint;
  /** The keep rules that chose the removals: for people, nothing checks them. */
  rules: string[];
  /** The removed snapshots, in increasing sequence. */
  removed: Forgotten[];
}

const MAGIC = 'IEBS-FORGET 1';
/** Largest forget object a reader accepts (its text or its stored form). */
export const MAX_FORGET = 64 * 1024 * 1024;
/** At most this many rule lines, each at most RULE_MAX bytes. */
export const MAX_RULES = 32;
const RULE_RE = /^[\x21-\x7e]+( [\x21-\x7e]+)*$/;
const RULE_MAX = 200;

/** A forget's name: `SYSTEM_yyyy-mm-dd_hh-mm-ss[-N]`, from its time (UTC, whole seconds). */
export const FORGET_RE = /^([A-Za-z0-9][A-Za-z0-9.-]{0,62})_(\d{4}-\d{2}-\d{2})_(\d{2}-\d{2}-\d{2})(-[1-9][0-9]{0,5})?$/;

/** The folder of forget objects. */
export const FORGETS = 'forgets';

/** Object name of a forget. */
export const forgetObject = (name: string) => `${FORGETS}/${name}.forget.asc`;

/** The base name (without suffix) of a forget of `system` made at `time`. */
export function forgetBaseName(system: string, time: bigint): string {
  const t = formatTime(time);
  return `${system}_${t.slice(0, 10)}_${t.slice(11, 13)}-${t.slice(14, 16)}-${t.slice(17, 19)}`;
}

/** The sha384 of a record text, as a parent line carries it. */
export function recordHash(text: string): Uint8Array {
  return new Uint8Array(createHash('sha384').update(text, 'latin1').digest());
}

/** Encodes a forget to the exact text that is signed. */
export function encodeForget(f: ForgetRecord): string {
  let s = `${MAGIC}\nsystem ${f.system}\ntime ${formatTime(f.time)}\n`;
  for (const r of f.rules) s += `rule ${r}\n`;
  for (const r of f.removed) {
    s += `forget ${r.name} ${formatSha384(r.sha384)}\n`;
    for (const line of r.text.slice(0, -1).split('\n')) s += ` ${line}\n`;
  }
  return s;
}

/**
 * Decodes a forget; checks every embedded record: it decodes, its name is the one named,
 * its system is the forget's, its text hashes to the named sha384, and sequences increase.
 */
export function decodeForget(text: string, where: string): ForgetRecord {
  if (text.length > MAX_FORGET) throw new FormatError('absurd-size', `${where}: forget record larger than 64 MiB`);
  if (!text.endsWith('\n')) throw new FormatError('truncated', `${where}: forget record does not end with a newline`);
  const lines = text.slice(0, -1).split('\n');
  if (lines[0] !== MAGIC) {
    if (lines[0]?.startsWith('IEBS-FORGET ')) throw new FormatError('unknown-version', `${where}: unknown forget record version`);
    throw new FormatError('bad-magic', `${where}: not an iebs forget record`);
  }
  const field = (i: number, key: string): string => {
    const line = lines[i];
    if (line === undefined) throw new FormatError('truncated', `${where}: forget record ends before "${key}"`);
    if (!line.startsWith(`${key} `)) throw new FormatError('bad-line', `${where} line ${i + 1}: expected "${key}"`);
    return line.slice(key.length + 1);
  };
  const system = checkName(SYSTEM_RE, field(1, 'system'), 'system name', where);
  const time = parseTime(field(2, 'time'), `${where} line 3`);
  let i = 3;
  const rules: string[] = [];
  while (lines[i]?.startsWith('rule ')) {
    const r = lines[i].slice(5);
    if (!RULE_RE.test(r) || r.length > RULE_MAX) throw new FormatError('bad-line', `${where} line ${i + 1}: a rule is 1 to ${RULE_MAX} printable ASCII bytes, single spaces`);
    if (rules.length === MAX_RULES) throw new FormatError('absurd-size', `${where} line ${i + 1}: more than ${MAX_RULES} rule lines`);
    rules.push(r);
    i++;
  }
  const removed: Forgotten[] = [];
  const names = new Set<string>();
  while (i < lines.length) {
    const at = `${where} line ${i + 1}`;
    const f = field(i, 'forget').split(' ');
    if (f.length !== 2) throw new FormatError('bad-line', `${at}: "forget" takes a snapshot name and its sha384`);
    const name = checkName(SNAPSHOT_RE, f[0], 'snapshot name', at);
    const sha = parseSha384(f[1], at);
    i++;
    let body = '';
    while (lines[i]?.startsWith(' ')) body += lines[i++].slice(1) + '\n';
    if (body === '') throw new FormatError('truncated', `${at}: no record text follows`);
    const record = decodeSnapshotRecord(body, `${at} (embedded record)`);
    if (record.name !== name) throw new FormatError('bad-name', `${at}: the embedded record is ${record.name}, not ${name}`);
    if (record.system !== system) throw new FormatError('bad-name', `${at}: ${name} is of system ${record.system}, the forget of ${system}`);
    if (!Buffer.from(recordHash(body)).equals(sha)) throw new FormatError('bad-hash', `${at}: the embedded record of ${name} does not hash to the sha384 named`);
    if (names.has(name)) throw new FormatError('bad-line', `${at}: ${name} named twice`);
    const prev = removed[removed.length - 1];
    if (prev && prev.record.sequence >= record.sequence) throw new FormatError('bad-line', `${at}: removed snapshots must come in increasing sequence`);
    names.add(name);
    removed.push({ name, sha384: sha, text: body, record });
  }
  if (removed.length === 0) throw new FormatError('truncated', `${where}: a forget record removes at least one snapshot`);
  return { system, time, rules, removed };
}
