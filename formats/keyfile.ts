/**
 * The key files (SPEC.md "Keys"): `backup.key` and `restore.key` are a few
 * `key value` header lines, a blank line, then ASCII-armored OpenPGP key blocks, so that
 * `gpg --import` reads the blocks of either file directly. `recipient.asc` is armored
 * public keys only. Parsing the OpenPGP packets is engine/keys.ts's job; this module
 * only splits and checks the text.
 */
import { FormatError } from './errors.js';
import { parseTime, formatTime } from './text.js';

/** Which key file a text is. */
export type KeyFileKind = 'backup' | 'restore';

const MAGIC: Record<KeyFileKind, string> = { backup: 'IEBS-BACKUP-KEY 1', restore: 'IEBS-RESTORE-KEY 1' };
/** A key name: also the OpenPGP user id `iebs <name>`. */
export const KEY_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$/;
/** Largest key file a reader accepts. */
export const MAX_KEY_FILE = 1024 * 1024;

/** One armored block, kept as text. */
export interface ArmorBlock { type: 'PRIVATE' | 'PUBLIC'; text: string }

/** A decoded key file. */
export interface KeyFile {
  kind: KeyFileKind;
  name: string;
  created: bigint;
  /** backup.key: the 32-byte dedup secret. */
  dedup?: Uint8Array;
  /** restore.key: whether the private key is passphrase protected. */
  protected?: boolean;
  blocks: ArmorBlock[];
}

/** Encodes a key file. */
export function encodeKeyFile(k: KeyFile): string {
  let s = `${MAGIC[k.kind]}\nname ${k.name}\ncreated ${formatTime(k.created)}\n`;
  if (k.kind === 'backup') s += `dedup ${Buffer.from(k.dedup!).toString('base64')}\n`;
  else s += `protected ${k.protected ? 'yes' : 'no'}\n`;
  s += '\n';
  for (const b of k.blocks) s += b.text.trimEnd() + '\n';
  return s;
}

/**
 * The text with CRLF line ends turned into LF: a key file mailed, or edited on Windows,
 * reads as the one keygen wrote (SPEC.md "Keys": readers accept CRLF).
 */
export function lfLineEnds(text: string): string {
  return text.includes('\r\n') ? text.replace(/\r\n/g, '\n') : text;
}

/** Finds the armored key blocks of a text, in order; each block's text has LF line ends. */
export function armorBlocks(text: string): ArmorBlock[] {
  const out: ArmorBlock[] = [];
  const lf = lfLineEnds(text);
  const re = /-----BEGIN PGP (PRIVATE|PUBLIC) KEY BLOCK-----[\s\S]*?-----END PGP \1 KEY BLOCK-----/g;
  for (let m = re.exec(lf); m; m = re.exec(lf)) out.push({ type: m[1] as 'PRIVATE' | 'PUBLIC', text: m[0] + '\n' });
  return out;
}

/**
 * Decodes a key file. `where` is the file name for messages. Returns null when the text
 * has no iebs header (a bare armored key, as `gpg --export-secret-keys -a` writes).
 * CRLF line ends are read as LF; the last line may lack its line end.
 */
export function decodeKeyFile(crlfOrLf: string, where: string): KeyFile | null {
  if (crlfOrLf.length > MAX_KEY_FILE) throw new FormatError('absurd-size', `${where}: key file larger than 1 MiB`);
  const text = lfLineEnds(crlfOrLf);
  const nl = text.indexOf('\n');
  const first = nl < 0 ? text : text.slice(0, nl);
  const kind = (Object.keys(MAGIC) as KeyFileKind[]).find((k) => MAGIC[k] === first);
  if (!kind) {
    if (first.startsWith('IEBS-')) throw new FormatError('unknown-version', `${where}: unknown key file kind or version ${JSON.stringify(first.slice(0, 40))}`);
    return null;
  }
  const blank = text.indexOf('\n\n');
  if (blank < 0) throw new FormatError('truncated', `${where}: key file header has no end (truncated?)`);
  const lines = text.slice(0, blank).split('\n').slice(1);
  const get = (key: string) => {
    const line = lines.find((l) => l.startsWith(key + ' '));
    if (!line) throw new FormatError('truncated', `${where}: key file has no "${key}" line`);
    return line.slice(key.length + 1);
  };
  const name = get('name');
  if (!KEY_NAME_RE.test(name)) throw new FormatError('bad-name', `${where}: bad key name`);
  const rest = text.slice(blank);
  const blocks = armorBlocks(rest);
  if (blocks.reduce((r, b) => r.replace(b.text.trimEnd(), ''), rest).trim() !== '') {
    throw new FormatError('truncated', `${where}: damaged or truncated key block`);
  }
  const k: KeyFile = { kind, name, created: parseTime(get('created'), where), blocks };
  if (kind === 'backup') {
    const d = get('dedup');
    const bytes = Buffer.from(d, 'base64');
    if (bytes.length !== 32 || bytes.toString('base64') !== d) throw new FormatError('bad-key', `${where}: dedup secret must be 32 bytes of base64`);
    k.dedup = new Uint8Array(bytes);
    if (k.blocks.filter((b) => b.type === 'PRIVATE').length !== 1 || k.blocks[0].type !== 'PRIVATE' || k.blocks.length < 2) {
      throw new FormatError('bad-key', `${where}: a backup key holds one signing private key then one or more recipient public keys (truncated?)`);
    }
  } else {
    const p = get('protected');
    if (p !== 'yes' && p !== 'no') throw new FormatError('bad-key', `${where}: "protected" must be yes or no`);
    k.protected = p === 'yes';
    if (k.blocks.length !== 2 || k.blocks[0].type !== 'PRIVATE' || k.blocks[1].type !== 'PUBLIC') throw new FormatError('bad-key', `${where}: a restore key holds the private key, then the host's public key (truncated?)`);
  }
  return k;
}
