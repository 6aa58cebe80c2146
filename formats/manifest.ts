/**
 * The manifest and the volume catalogue: the IEBS line-oriented description of a
 * snapshot's files (SPEC.md "Manifest grammar"). Both share one record grammar:
 *
 *   file-line    uuid SP qpath SP size SP mtime SP owner SP blocksize SP kind SP mode [SP qtarget]
 *   block-line   index SP size SP digest SP offset SP volume SP data-offset SP length SP entry [SP start]
 *   end-of-file  "-- END OF FILE -- " sha384(hex of the record's preceding lines)
 *   deletion     "deleted" SP uuid
 *
 * A block's digest is sha384(hex), or from manifest 4 and catalogue 3 on sha256(hex).
 *
 * The encoder and the parser are pure and streaming: one record at a time, a running
 * sha384 for the `-- END OF MANIFEST --` line, so no manifest is ever held whole.
 */
import { createHash, hash, type Hash } from 'node:crypto';
import { FormatError } from './errors.js';
import { checkName, HOST_RE, parseBlockEntry, SNAPSHOT_RE, UUID_RE, VOLUME_RE, MAX_BLOCK_INDEX } from './names.js';
import { formatDigest, formatSha384, formatTime, parseDigest, parseSha384, parseTime, parseUint, quoteBytes, unquoteBytes, type Where } from './text.js';

/** What a record describes. */
export type EntryKind = 'file' | 'dir' | 'symlink';

/** Where one block of a file lives and what it must hash to. */
export interface BlockRef {
  index: number;
  /** Plaintext length of the block. */
  size: number;
  /** Digest of the plaintext block (sha384; its length says which hash). */
  digest: Uint8Array;
  /** Offset of the block in the file. */
  offset: number;
  /** Volume object that holds the block's envelope. */
  volume: string;
  /** Offset of the envelope's first byte in the volume (just after its tar header). */
  dataOffset: number;
  /** Length of the envelope in bytes. */
  length: number;
  /** Tar entry name of the envelope. */
  entry: string;
  /**
   * Where the block starts in its envelope's plaintext when the envelope is a pack of
   * several blocks (SPEC.md "Packs"); undefined when the envelope holds this block alone.
   */
  start?: number;
}

/** One file, directory or symlink of a snapshot. */
export interface FileRecord {
  uuid: string;
  /** Path relative to the snapshot root, `/`-separated, any bytes but NUL. */
  path: Uint8Array;
  size: number;
  mtimeNs: bigint;
  uid: number;
  gid: number;
  /** Nominal (average) block size the file was cut with; 0 for non-files. */
  blockSize: number;
  kind: EntryKind;
  /** Permission bits, 0..0o7777. */
  mode: number;
  /** Symlink target bytes (symlinks only). */
  target?: Uint8Array;
  blocks: BlockRef[];
}

/**
 * The snapshot root's own metadata (SPEC.md "Manifest grammar", root line): the one
 * directory that was backed up, whose contents are the snapshot's paths.
 */
export interface RootMeta { mtimeNs: bigint; uid: number; gid: number; mode: number }

/** The archive lines that open a manifest. */
export interface ManifestHeader {
  snapshot: string;
  time: bigint;
  host: string;
  /** For an increment: the full snapshot its chain starts at. */
  full?: string;
  /** Previous snapshot of the system and the sha384 of its snapshot record. */
  parent?: { name: string; sha384: Uint8Array };
  /** The root directory's metadata: present exactly in a version 2 manifest. */
  root?: RootMeta;
  volumes: { name: string; size: number; digest: Uint8Array }[];
  /** The version read (a parser sets it); a writer writes the newest when it is absent. */
  version?: number;
}

/** The lines that open a volume catalogue. */
export interface CatalogHeader {
  volume: string;
  snapshot: string;
  time: bigint;
  host: string;
  /** The version read (a parser sets it); a writer writes the newest when it is absent. */
  version?: number;
}

/** Which of the two documents a stream is. */
export type DocKind = 'manifest' | 'catalog';

/**
 * The versions a reader knows (SPEC.md "Changes by version"). Manifest 1 has no root line,
 * 2 has one; manifest 3 and catalogue 2 may carry packed blocks (a block line's `start`),
 * and a manifest 3 has a root line exactly when the snapshot has a root; manifest 4 and
 * catalogue 3 are those with a block's digest `sha384(...)` or `sha256(...)`. A writer
 * writes the newest: earlier readers reject them by their first line.
 */
const MAGICS: Record<DocKind, readonly string[]> = {
  manifest: ['IEBS-MANIFEST 1', 'IEBS-MANIFEST 2', 'IEBS-MANIFEST 3', 'IEBS-MANIFEST 4'],
  catalog: ['IEBS-CATALOG 1', 'IEBS-CATALOG 2', 'IEBS-CATALOG 3'],
};
const WRITE_MAGIC: Record<DocKind, string> = { manifest: 'IEBS-MANIFEST 4', catalog: 'IEBS-CATALOG 3' };
/** The first version of each document whose block lines may carry packs, and sha256 digests. */
const PACKS_FROM: Record<DocKind, number> = { manifest: 3, catalog: 2 };
const SHA256_FROM: Record<DocKind, number> = { manifest: 4, catalog: 3 };
const END: Record<DocKind, string> = { manifest: '-- END OF MANIFEST -- ', catalog: '-- END OF CATALOG -- ' };
const END_OF_FILE = '-- END OF FILE -- ';

/**
 * Longest line a reader accepts, not counting its LF; longer input is rejected before it
 * is buffered. It is the longest line the grammar allows (SPEC.md "Limits"): the file
 * line of a symlink whose path and target are MAX_PATH bytes each, every byte escaped but
 * the 64 slashes the path needs to keep its components at most 255 bytes.
 */
export const MAX_LINE = 130992;
/** Largest uid or gid (POSIX ids are unsigned 32-bit). */
export const MAX_OWNER_ID = 4294967295;
/** Largest plaintext block a reader accepts. */
export const MAX_BLOCK = 16 * 1024 * 1024;
/** Largest envelope overhead over a block's compressed size a reader accepts. */
export const MAX_ENVELOPE_OVERHEAD = 1024;
/** Most path bytes a record may carry. */
export const MAX_PATH = 16384;

/** Every kind of entry; a kind's position is its code where it is stored as a number (local tables, SPEC.md "Local cache"). */
export const ENTRY_KINDS: readonly EntryKind[] = ['file', 'dir', 'symlink'];

/** Encodes the lines of one record, including its `-- END OF FILE --` line. */
export function encodeRecord(r: FileRecord): string {
  let body = `${r.uuid} ${quoteBytes(r.path)} ${r.size} ${formatTime(r.mtimeNs)} ${r.uid}:${r.gid} ${r.blockSize} ${r.kind} ${formatMode(r.mode)}`;
  if (r.kind === 'symlink') body += ` ${quoteBytes(r.target ?? new Uint8Array())}`;
  body += '\n';
  for (const b of r.blocks) {
    body += `${b.index} ${b.size} ${formatDigest(b.digest)} ${b.offset} ${b.volume} ${b.dataOffset} ${b.length} ${b.entry}${b.start === undefined ? '' : ' ' + b.start}\n`;
  }
  return body + END_OF_FILE + 'sha384(' + hash('sha384', body, 'hex') + ')\n';
}

function formatMode(mode: number): string {
  return mode.toString(8).padStart(4, '0');
}

/** Encodes a deletion line (increments only). */
export function encodeDeletion(uuid: string): string {
  return `deleted ${uuid}\n`;
}

/** The closing line of a document whose preceding bytes hash to `digest`. */
export function encodeDocEnd(kind: DocKind, digest: Uint8Array): string {
  return END[kind] + formatSha384(digest) + '\n';
}

/** Encodes the opening lines of a manifest, up to and including the blank line. */
export function encodeManifestHeader(h: ManifestHeader): string {
  let s = `${h.version ? MAGICS.manifest[h.version - 1] : WRITE_MAGIC.manifest}\n${h.snapshot} ${formatTime(h.time)} ${h.host}${h.full ? ' ' + h.full : ''}\n`;
  s += h.parent ? `parent ${h.parent.name} ${formatSha384(h.parent.sha384)}\n` : 'parent -\n';
  if (h.root) s += `root ${formatTime(h.root.mtimeNs)} ${h.root.uid}:${h.root.gid} ${formatMode(h.root.mode)}\n`;
  for (const v of h.volumes) s += `volume ${v.name} ${v.size} ${formatDigest(v.digest)}\n`;
  return s + '\n';
}

/** Encodes the opening lines of a volume catalogue, up to and including the blank line. */
export function encodeCatalogHeader(h: CatalogHeader): string {
  return `${h.version ? MAGICS.catalog[h.version - 1] : WRITE_MAGIC.catalog}\n${h.volume} ${h.snapshot} ${formatTime(h.time)} ${h.host}\n\n`;
}

/**
 * The running sha384 of a document, fed text in pieces of about 64 KiB: a call to
 * `update` per line or record cost more than hashing its bytes.
 */
class DocHash {
  private readonly hash: Hash = createHash('sha384');
  private unhashed = '';
  add(text: string): void {
    this.unhashed += text;
    if (this.unhashed.length >= 64 * 1024) { this.hash.update(this.unhashed); this.unhashed = ''; }
  }
  /** The digest of all text added; the hash must not be used after it. */
  digest(): Buffer {
    this.hash.update(this.unhashed);
    this.unhashed = '';
    return this.hash.digest();
  }
}

/**
 * Builds a manifest or catalogue text piece by piece and keeps the running sha384 that
 * the closing line carries. Each method returns the text to append.
 */
export class DocEncoder {
  private readonly hash = new DocHash();
  constructor(readonly kind: DocKind) {}
  /** Appends raw text that is part of the hashed document. */
  private add(text: string): string { this.hash.add(text); return text; }
  header(h: ManifestHeader | CatalogHeader): string {
    return this.add(this.kind === 'manifest' ? encodeManifestHeader(h as ManifestHeader) : encodeCatalogHeader(h as CatalogHeader));
  }
  record(r: FileRecord): string { return this.add(encodeRecord(r)); }
  /** Appends a record encoded already by `encodeRecord`. */
  encoded(text: string): string { return this.add(text); }
  deletion(uuid: string): string {
    if (this.kind !== 'manifest') throw new FormatError('bad-line', 'a catalogue holds no deletions');
    return this.add(encodeDeletion(uuid));
  }
  /** The closing line; the encoder must not be used after it. */
  end(): string { return encodeDocEnd(this.kind, this.hash.digest()); }
}

/** One item a parser yields. */
export type DocItem =
  | { type: 'header'; header: ManifestHeader | CatalogHeader }
  | { type: 'record'; record: FileRecord }
  | { type: 'deleted'; uuid: string }
  | { type: 'end' };

/**
 * A strict, streaming parser of manifests and catalogues. Feed it one line at a time
 * (without the LF); it returns an item when one is complete. `finish()` throws unless
 * the closing line was seen. It never holds more than one record (and up to 64 KiB of
 * lines not yet hashed).
 */
export class DocParser {
  private readonly hash = new DocHash();
  private state: 'magic' | 'archive' | 'meta' | 'records' | 'blocks' | 'done' = 'magic';
  private lineNo = 0;
  /** The current record's lines so far, hashed at once at its closing line. */
  private recordText = '';
  private current: FileRecord | null = null;
  private header: ManifestHeader | null = null;
  private cat: CatalogHeader | null = null;
  private sawParent = false;
  /** The document's version (its first line's number). */
  private version = 0;
  /** The last volume name a block line gave, already checked: most lines repeat it. */
  private lastVolume = '';

  constructor(readonly kind: DocKind, readonly source: string) {}

  /** Where the current line is, as errors name it: made into text only when one is written. */
  private readonly at: Where = { toString: () => `${this.source} line ${this.lineNo}` };

  /** Feeds one line (ASCII, no LF). */
  line(text: string): DocItem | null {
    this.lineNo++;
    const where = this.at;
    if (text.length > MAX_LINE) throw new FormatError('line-too-long', `${where}: line longer than ${MAX_LINE} bytes`);
    if (!/^[\x20-\x7e]*$/.test(text)) throw new FormatError('bad-line', `${where}: non-printable or non-ASCII byte`);
    if (this.state === 'done') throw new FormatError('trailing-data', `${where}: data after the closing line`);
    const full = text + '\n';
    if (this.state === 'blocks') {
      if (text.startsWith(END_OF_FILE)) {
        // The line is right only as written from the digest (lower-case hex): anything else
        // is a malformed line or a wrong checksum, told apart by parsing it.
        if (text !== END_OF_FILE + 'sha384(' + hash('sha384', this.recordText, 'hex') + ')') {
          parseSha384(text.slice(END_OF_FILE.length), where);
          throw new FormatError('bad-checksum', `${where}: END OF FILE checksum does not match the record`);
        }
        this.hash.add(full);
        const record = this.current!;
        this.finishRecord(record, where);
        this.current = null; this.recordText = ''; this.state = 'records';
        return { type: 'record', record };
      }
      this.current!.blocks.push(this.parseBlock(text, where));
      this.recordText += full;
      this.hash.add(full);
      return null;
    }
    if (this.state === 'records' && text.startsWith(END[this.kind])) {
      const want = parseSha384(text.slice(END[this.kind].length), where);
      if (!this.hash.digest().equals(want)) throw new FormatError('bad-checksum', `${where}: END checksum does not match the document`);
      this.state = 'done';
      return { type: 'end' };
    }
    this.hash.add(full);
    switch (this.state) {
      case 'magic':
        this.version = MAGICS[this.kind].indexOf(text) + 1;
        if (this.version === 0) {
          if (text.startsWith(MAGICS[this.kind][0].slice(0, -1))) throw new FormatError('unknown-version', `${where}: unknown ${this.kind} version ${JSON.stringify(text.slice(0, 40))}`);
          throw new FormatError('bad-magic', `${where}: not an iebs ${this.kind}`);
        }
        this.state = 'archive';
        return null;
      case 'archive':
        return this.parseArchive(text, where);
      case 'meta':
        return this.parseMeta(text, where);
      case 'records':
        if (text.startsWith('deleted ')) {
          if (this.kind !== 'manifest') throw new FormatError('bad-line', `${where}: a catalogue holds no deletions`);
          const uuid = text.slice(8);
          if (!UUID_RE.test(uuid)) throw new FormatError('bad-uuid', `${where}: bad UUID in deletion`);
          return { type: 'deleted', uuid };
        }
        this.current = this.parseFileLine(text, where);
        this.recordText = full;
        this.state = 'blocks';
        return null;
    }
    throw new FormatError('bad-line', `${where}: unexpected line`);
  }

  /** Throws unless the document was complete. */
  finish(): void {
    if (this.state !== 'done') throw new FormatError('truncated', `${this.source}: truncated after line ${this.lineNo} (no closing line)`);
  }

  private parseArchive(text: string, where: Where): DocItem | null {
    const f = text.split(' ');
    if (this.kind === 'catalog') {
      if (f.length !== 4) throw new FormatError('bad-line', `${where}: catalogue line needs volume, snapshot, time and host`);
      this.cat = {
        volume: checkName(VOLUME_RE, f[0], 'volume name', where),
        snapshot: checkName(SNAPSHOT_RE, f[1], 'snapshot name', where),
        time: parseTime(f[2], where),
        host: checkName(HOST_RE, f[3], 'host name', where),
        version: this.version,
      };
      this.state = 'meta';
      return null;
    }
    if (f.length !== 3 && f.length !== 4) throw new FormatError('bad-line', `${where}: archive line needs snapshot, time, host [and full]`);
    this.header = {
      snapshot: checkName(SNAPSHOT_RE, f[0], 'snapshot name', where),
      time: parseTime(f[1], where),
      host: checkName(HOST_RE, f[2], 'host name', where),
      volumes: [],
      version: this.version,
    };
    if (f.length === 4) this.header.full = checkName(SNAPSHOT_RE, f[3], 'snapshot name', where);
    this.state = 'meta';
    return null;
  }

  private parseMeta(text: string, where: Where): DocItem | null {
    if (text === '') {
      if (this.kind === 'manifest' && !this.sawParent) throw new FormatError('bad-line', `${where}: manifest has no parent line`);
      if (this.kind === 'manifest' && this.version === 2 && !this.header!.root) throw new FormatError('bad-line', `${where}: a version 2 manifest has no root line`);
      this.state = 'records';
      const header = this.kind === 'manifest' ? this.header! : this.cat!;
      return { type: 'header', header };
    }
    if (this.kind === 'catalog') throw new FormatError('bad-line', `${where}: expected a blank line`);
    const f = text.split(' ');
    const h = this.header!;
    if (f[0] === 'parent') {
      if (h.volumes.length > 0 || this.sawParent || (f.length === 2 && f[1] !== '-') || (f.length !== 2 && f.length !== 3)) throw new FormatError('bad-line', `${where}: bad parent line`);
      if (f.length === 3) h.parent = { name: checkName(SNAPSHOT_RE, f[1], 'snapshot name', where), sha384: parseSha384(f[2], where) };
      this.sawParent = true;
      return null;
    }
    if (f[0] === 'root') {
      if (this.version === 1) throw new FormatError('bad-line', `${where}: a root line in a version 1 manifest`);
      if (!this.sawParent || h.root || h.volumes.length > 0 || f.length !== 4) throw new FormatError('bad-line', `${where}: bad root line (once, after the parent line, with time, owner and mode)`);
      const owner = parseOwner(f[2], where);
      h.root = { mtimeNs: parseTime(f[1], where), uid: owner.uid, gid: owner.gid, mode: parseMode(f[3], where) };
      return null;
    }
    if (f[0] === 'volume' && f.length === 4) {
      if (!this.sawParent) throw new FormatError('bad-line', `${where}: volume line before the parent line`);
      if (h.volumes.length >= 9999) throw new FormatError('absurd-size', `${where}: more than 9999 volumes`);
      h.volumes.push({ name: checkName(VOLUME_RE, f[1], 'volume name', where), size: parseUint(f[2], where), digest: parseDigest(f[3], where, this.version >= SHA256_FROM.manifest) });
      return null;
    }
    throw new FormatError('bad-line', `${where}: unknown archive line ${JSON.stringify(f[0].slice(0, 20))}`);
  }

  private parseFileLine(text: string, where: Where): FileRecord {
    const sp1 = text.indexOf(' ');
    const uuid = text.slice(0, sp1);
    if (sp1 < 0 || !UUID_RE.test(uuid)) throw new FormatError('bad-uuid', `${where}: file line must start with a UUID`);
    const q = unquoteBytes(text, sp1 + 1, where);
    checkPath(q.bytes, where);
    // After the path: six plain fields, then (symlinks only) a quoted target.
    const f: string[] = [];
    let pos = q.end;
    for (let n = 0; n < 6; n++) {
      if (text.charCodeAt(pos) !== 0x20) throw new FormatError('bad-line', `${where}: file line needs size, mtime, owner, blocksize, kind and mode`);
      let next = text.indexOf(' ', pos + 1);
      if (next < 0) next = text.length;
      f.push(text.slice(pos + 1, next));
      if (f[n].length === 0) throw new FormatError('bad-line', `${where}: empty field in file line`);
      pos = next;
    }
    let target: Uint8Array | undefined;
    if (pos < text.length) {
      const t = unquoteBytes(text, pos + 1, where);
      if (t.end !== text.length) throw new FormatError('bad-line', `${where}: text after the symlink target`);
      target = t.bytes;
    }
    f.unshift('');
    const size = parseUint(f[1], where);
    const mtimeNs = parseTime(f[2], where);
    const owner = parseOwner(f[3], where);
    const blockSize = parseUint(f[4], where, MAX_BLOCK);
    const kind = f[5] as EntryKind;
    if (!ENTRY_KINDS.includes(kind)) throw new FormatError('bad-kind', `${where}: unknown kind ${JSON.stringify(f[5].slice(0, 20))}`);
    const mode = parseMode(f[6], where);
    if ((kind === 'symlink') !== (target !== undefined)) throw new FormatError('bad-line', `${where}: a symlink and only a symlink carries a target`);
    if (kind !== 'file' && (size !== 0 || blockSize !== 0)) throw new FormatError('bad-line', `${where}: a ${kind} has size 0 and block size 0`);
    const r: FileRecord = { uuid, path: q.bytes, size, mtimeNs, uid: owner.uid, gid: owner.gid, blockSize, kind, mode, blocks: [] };
    if (target !== undefined) {
      if (target.length === 0 || target.length > MAX_PATH || target.includes(0)) throw new FormatError('bad-path', `${where}: bad symlink target`);
      r.target = target;
    }
    return r;
  }

  private parseBlock(text: string, where: Where): BlockRef {
    const r = this.current!;
    if (r.kind !== 'file') throw new FormatError('bad-line', `${where}: a ${r.kind} has no blocks`);
    const f = text.split(' ');
    // A ninth field, the block's start in a pack, only where the version allows packs.
    const packs = this.version >= PACKS_FROM[this.kind];
    if (f.length !== 8 && !(f.length === 9 && packs)) throw new FormatError('bad-line', `${where}: block line needs 8 fields${packs ? ' (9 in a pack)' : ''}`);
    const b: BlockRef = {
      index: parseUint(f[0], where, MAX_BLOCK_INDEX),
      size: parseUint(f[1], where, MAX_BLOCK),
      digest: parseDigest(f[2], where, this.version >= SHA256_FROM[this.kind]),
      offset: parseUint(f[3], where),
      volume: f[4] === this.lastVolume ? this.lastVolume : (this.lastVolume = checkName(VOLUME_RE, f[4], 'volume name', where)),
      dataOffset: parseUint(f[5], where),
      length: parseUint(f[6], where, MAX_BLOCK + MAX_ENVELOPE_OVERHEAD),
      entry: f[7],
    };
    parseBlockEntry(b.entry, where);
    if (f.length === 9) {
      b.start = parseUint(f[8], where, MAX_BLOCK);
      if (b.start + b.size > MAX_BLOCK) throw new FormatError('bad-line', `${where}: block runs past the largest pack (${MAX_BLOCK} bytes)`);
    }
    if (b.size === 0) throw new FormatError('bad-line', `${where}: empty block`);
    if (b.dataOffset % 512 !== 0) throw new FormatError('bad-line', `${where}: data offset is not on a tar block boundary`);
    const prev = r.blocks[r.blocks.length - 1];
    if (this.kind === 'manifest') {
      const wantIndex = prev ? prev.index + 1 : 0;
      const wantOffset = prev ? prev.offset + prev.size : 0;
      if (b.index !== wantIndex) throw new FormatError('bad-block-order', `${where}: expected block ${wantIndex}, got ${b.index}`);
      if (b.offset !== wantOffset) throw new FormatError('bad-block-order', `${where}: block ${b.index} should start at offset ${wantOffset}`);
    } else if (b.volume !== this.cat!.volume) {
      throw new FormatError('bad-line', `${where}: a catalogue lists only blocks of its own volume`);
    } else if (prev && (b.index <= prev.index || b.offset < prev.offset + prev.size)) {
      throw new FormatError('bad-block-order', `${where}: blocks out of order`);
    }
    if (b.offset + b.size > r.size) throw new FormatError('bad-block-order', `${where}: block ${b.index} runs past the file size ${r.size}`);
    return b;
  }

  private finishRecord(r: FileRecord, where: Where): void {
    if (this.kind === 'manifest' && r.kind === 'file') {
      const last = r.blocks[r.blocks.length - 1];
      const covered = last ? last.offset + last.size : 0;
      if (covered !== r.size) throw new FormatError('bad-size', `${where}: blocks cover ${covered} bytes of a ${r.size}-byte file`);
    }
  }
}

function parseOwner(text: string, where: Where): { uid: number; gid: number } {
  const owner = /^(0|[1-9][0-9]{0,9}):(0|[1-9][0-9]{0,9})$/.exec(text);
  if (!owner || Number(owner[1]) > MAX_OWNER_ID || Number(owner[2]) > MAX_OWNER_ID) throw new FormatError('bad-owner', `${where}: owner must be uid:gid, each at most ${MAX_OWNER_ID}`);
  return { uid: Number(owner[1]), gid: Number(owner[2]) };
}

function parseMode(text: string, where: Where): number {
  if (!/^[0-7]{4}$/.test(text)) throw new FormatError('bad-mode', `${where}: mode must be four octal digits`);
  return parseInt(text, 8);
}

/**
 * Rejects a path that could escape the restore target or is not canonical: empty,
 * absolute, empty components, `.` or `..` components, NUL bytes, or too long.
 */
export function checkPath(path: Uint8Array, where: Where): void {
  if (path.length === 0 || path.length > MAX_PATH) throw new FormatError('bad-path', `${where}: path is empty or longer than ${MAX_PATH} bytes`);
  if (path.includes(0)) throw new FormatError('bad-path', `${where}: path contains a NUL byte`);
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i === path.length || path[i] === 0x2f) {
      const len = i - start;
      if (len === 0) throw new FormatError('bad-path', `${where}: path is absolute or has an empty component`);
      if ((len === 1 && path[start] === 0x2e) || (len === 2 && path[start] === 0x2e && path[start + 1] === 0x2e)) {
        throw new FormatError('bad-path', `${where}: path has a . or .. component`);
      }
      if (len > 255) throw new FormatError('bad-path', `${where}: path component longer than 255 bytes`);
      start = i + 1;
    }
  }
}

/**
 * Splits a byte stream into lines for a parser, refusing any line over MAX_LINE before
 * buffering it. Call `push` with chunks and `end` at the end; each returns whole lines.
 */
export class LineSplitter {
  private pending: Buffer[] = [];
  private pendingLen = 0;
  constructor(readonly source: string) {}
  push(chunk: Uint8Array): string[] {
    const out: string[] = [];
    const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    // Lines are read by offset, without a view of each (two a line were 4% of `iebs ls`).
    for (let start = 0; ;) {
      const nl = buf.indexOf(0x0a, start);
      if (nl < 0) {
        this.pendingLen += buf.length - start;
        if (this.pendingLen > MAX_LINE) throw new FormatError('line-too-long', `${this.source}: line longer than ${MAX_LINE} bytes`);
        if (start < buf.length) this.pending.push(Buffer.from(buf.subarray(start)));
        return out;
      }
      if (this.pendingLen + nl - start > MAX_LINE) throw new FormatError('line-too-long', `${this.source}: line longer than ${MAX_LINE} bytes`);
      if (this.pending.length) {
        this.pending.push(buf.subarray(start, nl));
        out.push(Buffer.concat(this.pending).toString('latin1'));
        this.pending = []; this.pendingLen = 0;
      } else out.push(buf.toString('latin1', start, nl));
      start = nl + 1;
    }
  }
  /** Throws if the stream did not end with a newline. */
  end(): void {
    if (this.pendingLen > 0) throw new FormatError('truncated', `${this.source}: last line has no newline (truncated?)`);
  }
}

/** Parses a whole document held in memory (tests, vectors, small catalogues). */
export function decodeDoc(kind: DocKind, bytes: Uint8Array, source: string): DocItem[] {
  const split = new LineSplitter(source);
  const parser = new DocParser(kind, source);
  const items: DocItem[] = [];
  for (const l of split.push(bytes)) {
    const it = parser.line(l);
    if (it) items.push(it);
  }
  split.end();
  parser.finish();
  return items;
}
