/**
 * The host key statement (SPEC.md "Repository layout", "Changing keys"): the owner's
 * signed word that the backup host's signing key `old` is replaced by `new`, and how far
 * the records `old` signed stay trusted, per system: all of them (the key was lost), those
 * up to and including one named record and its ancestors (the key was stolen: what came
 * after may be forged), or none. Both public keys travel inside, as base64 of their
 * binary packets, so a reader needs nothing else to check the records either key signed.
 * Stored as `keys/host.N.asc`, an OpenPGP cleartext message signed by an owner key (a
 * recipient), never a host key.
 */
import { FormatError } from './errors.js';
import { checkName, SNAPSHOT_RE, SYSTEM_RE } from './names.js';
import { formatSha384, formatTime, parseSha384, parseTime } from './text.js';

/** How far the records of one system that the old key signed are trusted. */
export type HostTrustPoint = { kind: 'all' } | { kind: 'none' } | { kind: 'upto'; snapshot: string; sha384: Uint8Array };

/** A host key statement. */
export interface HostKeyStatement {
  /** The owner's clock when the statement was made. */
  time: bigint;
  /** Fingerprints (40 lower-case hex digits) of the replaced and the new host signing key. */
  old: string;
  new: string;
  /** One per system, in increasing byte order of the system name. */
  trust: { system: string; point: HostTrustPoint }[];
  /** The binary OpenPGP public keys (transferable public key packets) of old and new. */
  oldKey: Uint8Array;
  newKey: Uint8Array;
}

const MAGIC = 'IEBS-HOST-KEY 1';
/** Largest statement text a reader accepts (and twice that stored). */
export const MAX_HOST_KEY = 1024 * 1024;
/** Base64 characters per key line. */
const B64_LINE = 76;
const FPR_RE = /^[0-9a-f]{40}$/;
const B64_RE = /^[A-Za-z0-9+/]+={0,2}$/;

/** The object name of statement `n` (1 … 999999). */
export function hostKeyObject(n: number): string {
  if (!Number.isSafeInteger(n) || n < 1 || n > 999999) throw new FormatError('absurd-size', `host key statement ${n} out of range 1..999999`);
  return `keys/host.${n}.asc`;
}

/** The number of a `keys/` object that is a host key statement, or null. */
export function hostKeyNumber(name: string): number | null {
  const m = /^keys\/host\.([1-9][0-9]{0,5})\.asc$/.exec(name);
  return m ? Number(m[1]) : null;
}

function keyLines(bytes: Uint8Array): string {
  const b64 = Buffer.from(bytes).toString('base64');
  let s = '';
  for (let i = 0; i < b64.length; i += B64_LINE) s += ` ${b64.slice(i, i + B64_LINE)}\n`;
  return s;
}

/** Encodes a statement to the exact text that is signed. */
export function encodeHostKey(h: HostKeyStatement): string {
  let s = `${MAGIC}\ntime ${formatTime(h.time)}\nold ${h.old}\nnew ${h.new}\n`;
  for (const t of h.trust) {
    const p = t.point;
    s += `trust ${t.system} ${p.kind === 'upto' ? `${p.snapshot} ${formatSha384(p.sha384)}` : p.kind}\n`;
  }
  return `${s}old-key\n${keyLines(h.oldKey)}new-key\n${keyLines(h.newKey)}`;
}

/** Decodes a statement; checks its grammar (the keys' fingerprints are the engine's to check). */
export function decodeHostKey(text: string, where: string): HostKeyStatement {
  if (text.length > MAX_HOST_KEY) throw new FormatError('absurd-size', `${where}: host key statement larger than 1 MiB`);
  if (!text.endsWith('\n')) throw new FormatError('truncated', `${where}: host key statement does not end with a newline`);
  const lines = text.slice(0, -1).split('\n');
  if (lines[0] !== MAGIC) {
    if (lines[0]?.startsWith('IEBS-HOST-KEY ')) throw new FormatError('unknown-version', `${where}: unknown host key statement version`);
    throw new FormatError('bad-magic', `${where}: not an iebs host key statement`);
  }
  const field = (i: number, key: string): string => {
    const line = lines[i];
    if (line === undefined) throw new FormatError('truncated', `${where}: host key statement ends before "${key}"`);
    if (!line.startsWith(`${key} `)) throw new FormatError('bad-line', `${where} line ${i + 1}: expected "${key}"`);
    return line.slice(key.length + 1);
  };
  const time = parseTime(field(1, 'time'), `${where} line 2`);
  const fpr = (i: number, key: string) => {
    const v = field(i, key);
    if (!FPR_RE.test(v)) throw new FormatError('bad-hex', `${where} line ${i + 1}: "${key}" takes a fingerprint of 40 lower-case hex digits`);
    return v;
  };
  const old = fpr(2, 'old');
  const neu = fpr(3, 'new');
  if (old === neu) throw new FormatError('bad-key', `${where} line 4: the new host key is the old one`);
  let i = 4;
  const trust: HostKeyStatement['trust'] = [];
  while (lines[i]?.startsWith('trust ')) {
    const at = `${where} line ${i + 1}`;
    const f = lines[i].slice(6).split(' ');
    const system = checkName(SYSTEM_RE, f[0] ?? '', 'system name', at);
    let point: HostTrustPoint;
    if (f.length === 2 && (f[1] === 'all' || f[1] === 'none')) point = { kind: f[1] };
    else if (f.length === 3) {
      const snapshot = checkName(SNAPSHOT_RE, f[1], 'snapshot name', at);
      if (!snapshot.startsWith(`${system}_`)) throw new FormatError('bad-name', `${at}: ${snapshot} is not a snapshot of ${system}`);
      point = { kind: 'upto', snapshot, sha384: parseSha384(f[2], at) };
    } else throw new FormatError('bad-line', `${at}: "trust" takes a system and all, none, or a snapshot and its sha384`);
    const prev = trust[trust.length - 1];
    if (prev && Buffer.compare(Buffer.from(prev.system), Buffer.from(system)) >= 0) throw new FormatError('bad-line', `${at}: trust lines come once per system, in increasing order of the system name`);
    trust.push({ system, point });
    i++;
  }
  const key = (what: string): Uint8Array => {
    if (lines[i] !== what) throw new FormatError(lines[i] === undefined ? 'truncated' : 'bad-line', `${where} line ${i + 1}: expected "${what}"`);
    i++;
    let b64 = '';
    const start = i;
    while (lines[i]?.startsWith(' ')) {
      const l = lines[i].slice(1);
      if (l.length === 0 || l.length > B64_LINE || !/^[A-Za-z0-9+/=]+$/.test(l)) throw new FormatError('bad-line', `${where} line ${i + 1}: a key line is 1 to ${B64_LINE} base64 characters after one space`);
      b64 += l;
      i++;
    }
    if (i === start) throw new FormatError('truncated', `${where} line ${i + 1}: no key follows "${what}"`);
    const bytes = Buffer.from(b64, 'base64');
    if (!B64_RE.test(b64) || b64.length % 4 !== 0 || bytes.toString('base64') !== b64) throw new FormatError('bad-line', `${where} line ${start + 1}: "${what}" is not canonical base64`);
    return new Uint8Array(bytes);
  };
  const oldKey = key('old-key');
  const newKey = key('new-key');
  if (i !== lines.length) throw new FormatError('trailing-data', `${where} line ${i + 1}: nothing may follow the new key`);
  // Re-encoding must give the text back: one form per statement (key lines of exactly 76 but the last).
  const h: HostKeyStatement = { time, old, new: neu, trust, oldKey, newKey };
  if (encodeHostKey(h) !== text) throw new FormatError('bad-line', `${where}: key lines are ${B64_LINE} base64 characters each but the last`);
  return h;
}
