/**
 * The index (SPEC.md "Index"): what the backup host needs to make the next increment
 * without any decryption key: keyed ids of the blocks a snapshot stored with their
 * places, and keyed ids of the paths it saw with the metadata that tells an unchanged
 * file. No name or content hash appears in it; it is sealed with the index key.
 *
 *   IEBS-INDEX 3
 *   <snapshot>
 *   hash sha256|sha384            the hash the chain's block ids are made from
 *   B <block id hex64> <volume> <data offset> <length> <entry> [<start>]
 *   F <path id hex64> <uuid> <kind> <size> <mtime ns> <ctime ns> <inode> <mode octal>
 *   D <path id hex64>
 *   -- END OF INDEX -- sha384(<hex of everything above>)
 */
import { createHash } from 'node:crypto';
import { FormatError } from './errors.js';
import { checkName, parseBlockEntry, SNAPSHOT_RE, UUID_RE, VOLUME_RE } from './names.js';
import { formatSha384, fromHex, parseBigInt, parseSha384, parseUint, TIME_NS_MAX, TIME_NS_MIN, toHex, U64_MAX, type BlockHash } from './text.js';
import { MAX_BLOCK, MAX_ENVELOPE_OVERHEAD, type EntryKind } from './manifest.js';

/** A stored block: where the envelope with this keyed id lives. */
export interface IndexBlock { id: Uint8Array; volume: string; dataOffset: number; length: number; entry: string; start?: number }
/** The state of a path at the snapshot, for unchanged-file detection. */
export interface IndexFile { pathId: Uint8Array; uuid: string; kind: EntryKind; size: number; mtimeNs: bigint; ctimeNs: bigint; ino: bigint; mode: number }
/** One line of an index. */
export type IndexItem = { t: 'B'; block: IndexBlock } | { t: 'F'; file: IndexFile } | { t: 'D'; pathId: Uint8Array };

/**
 * Largest plaintext of one piece of an index object. An index object is a sequence of
 * `length (u32 BE) || envelope`, each envelope sealing whole lines of the document.
 */
export const INDEX_PIECE = 4 * 1024 * 1024;
/** Bytes of the length before each piece's envelope. */
export const INDEX_PIECE_FRAME = 4;

/**
 * Version 2 lets a B line name a block's start in a pack; version 3 names the hash the
 * chain's blocks are hashed with (1 and 2 are sha384). A writer writes version 3.
 */
const MAGICS = ['IEBS-INDEX 1', 'IEBS-INDEX 2', 'IEBS-INDEX 3'];
const END = '-- END OF INDEX -- ';
const HASH_LINES = new Map<string, BlockHash>([['hash sha256', 'sha256'], ['hash sha384', 'sha384']]);

/** What an index says before its lines: its snapshot, and the hash its block ids are made from. */
export interface IndexHead { snapshot: string; hash: BlockHash }

/** The head of an index document: its version, its snapshot and (from version 3) its hash. */
export function encodeIndexHead(head: IndexHead, version = 3): string {
  if (version < 3 && head.hash !== 'sha384') throw new FormatError('unknown-version', `an index of version ${version} has sha384 blocks only`);
  return `${MAGICS[version - 1]}\n${head.snapshot}\n${version < 3 ? '' : `hash ${head.hash}\n`}`;
}

/** The closing line of an index document, given the sha384 of every byte before it. */
export function encodeIndexEnd(digest: Uint8Array): string {
  return END + formatSha384(digest) + '\n';
}

/** Encodes an index document. */
export function encodeIndex(head: IndexHead, items: Iterable<IndexItem>, version = 3): string {
  let s = encodeIndexHead(head, version);
  for (const it of items) s += encodeIndexItem(it);
  return s + encodeIndexEnd(createHash('sha384').update(s).digest());
}

/** The frame before a piece's envelope in an index object: its length, u32 big-endian. */
export function encodePieceFrame(envelopeLength: number): Uint8Array {
  if (!Number.isInteger(envelopeLength) || envelopeLength < 0 || envelopeLength > 0xffffffff) throw new FormatError('absurd-size', `an index piece of ${envelopeLength} bytes`);
  const b = new Uint8Array(INDEX_PIECE_FRAME);
  new DataView(b.buffer).setUint32(0, envelopeLength);
  return b;
}

/** The envelope length a piece frame gives. */
export function decodePieceFrame(frame: Uint8Array): number {
  if (frame.length !== INDEX_PIECE_FRAME) throw new FormatError('truncated', `a piece frame of ${frame.length} bytes`);
  return new DataView(frame.buffer, frame.byteOffset, INDEX_PIECE_FRAME).getUint32(0);
}

/** Encodes one index line. */
export function encodeIndexItem(it: IndexItem): string {
  if (it.t === 'B') return `B ${toHex(it.block.id)} ${it.block.volume} ${it.block.dataOffset} ${it.block.length} ${it.block.entry}${it.block.start === undefined ? '' : ' ' + it.block.start}\n`;
  if (it.t === 'D') return `D ${toHex(it.pathId)}\n`;
  const f = it.file;
  return `F ${toHex(f.pathId)} ${f.uuid} ${f.kind} ${f.size} ${f.mtimeNs} ${f.ctimeNs} ${f.ino} ${f.mode.toString(8).padStart(4, '0')}\n`;
}

/** Decodes an index document held in memory; calls `each` per line item. */
export function decodeIndex(text: string, where: string, each: (it: IndexItem) => void): IndexHead {
  if (!text.endsWith('\n')) throw new FormatError('truncated', `${where}: index does not end with a newline`);
  const endAt = text.lastIndexOf('\n' + END);
  if (endAt < 0) throw new FormatError('truncated', `${where}: index has no closing line`);
  // The checksum is checked before any line is parsed, so damage is reported as such.
  const body = text.slice(0, endAt + 1);
  const want = parseSha384(text.slice(endAt + 1 + END.length, -1), `${where} closing line`);
  if (!createHash('sha384').update(body).digest().equals(want)) throw new FormatError('bad-checksum', `${where}: index checksum does not match`);
  const d = new IndexDecoder(where, each);
  d.push(text);
  return d.end();
}

/**
 * Decodes an index document given in pieces that each end at a line end (SPEC.md
 * "Index": an index object is a sequence of sealed pieces). Lines are visited one at a
 * time: an index can hold millions of them. `end` checks the closing line and returns
 * the snapshot name and hash.
 */
export class IndexDecoder {
  private readonly hash = createHash('sha384');
  private lineNo = 0;
  private snapshot: string | null = null;
  private blockHash: BlockHash | null = null;
  private closing: Uint8Array | null = null;
  private version = 0;
  constructor(private readonly where: string, private readonly each: (it: IndexItem) => void) {}

  push(text: string): void {
    const where = this.where;
    if (this.closing) throw new FormatError('trailing-data', `${where}: data after the closing line`);
    if (!text.endsWith('\n')) throw new FormatError('truncated', `${where}: index piece ${text.length ? 'does not end at a line end' : 'is empty'}`);
    let pos = 0;
    while (pos < text.length) {
      const nl = text.indexOf('\n', pos);
      const line = text.slice(pos, nl);
      this.lineNo++;
      if (line.startsWith(END)) {
        this.hash.update(text.slice(0, pos), 'latin1');
        this.closing = parseSha384(line.slice(END.length), `${where} closing line`);
        if (nl + 1 !== text.length) throw new FormatError('trailing-data', `${where}: data after the closing line`);
        return;
      }
      this.line(line, `${where} line ${this.lineNo}`);
      pos = nl + 1;
    }
    this.hash.update(text, 'latin1');
  }

  private line(line: string, w: string): void {
    if (this.lineNo === 1) {
      this.version = MAGICS.indexOf(line) + 1;
      if (this.version === 0) throw new FormatError(line.startsWith('IEBS-INDEX ') ? 'unknown-version' : 'bad-magic', `${this.where}: not an iebs index of a known version`);
      return;
    }
    if (this.lineNo === 2) {
      this.snapshot = checkName(SNAPSHOT_RE, line, 'snapshot name', this.where);
      if (this.version < 3) this.blockHash = 'sha384';
      return;
    }
    if (this.lineNo === 3 && this.version >= 3) {
      const hash = HASH_LINES.get(line);
      if (!hash) throw new FormatError('bad-line', `${w}: expected "hash sha256" or "hash sha384"`);
      this.blockHash = hash;
      return;
    }
    const f = line.split(' ');
    if (f[0] === 'B' && (f.length === 6 || (f.length === 7 && this.version >= 2))) {
      parseBlockEntry(f[5], w);
      const block: IndexBlock = { id: fromHex(f[1], 32, w), volume: checkName(VOLUME_RE, f[2], 'volume name', w), dataOffset: parseUint(f[3], w), length: parseUint(f[4], w, MAX_BLOCK + MAX_ENVELOPE_OVERHEAD), entry: f[5] };
      if (f.length === 7) block.start = parseUint(f[6], w, MAX_BLOCK - 1);
      this.each({ t: 'B', block });
    } else if (f[0] === 'F' && f.length === 9) {
      if (!UUID_RE.test(f[2])) throw new FormatError('bad-uuid', `${w}: bad UUID`);
      if (f[3] !== 'file' && f[3] !== 'dir' && f[3] !== 'symlink') throw new FormatError('bad-kind', `${w}: bad kind`);
      if (!/^[0-7]{4}$/.test(f[8])) throw new FormatError('bad-mode', `${w}: bad mode`);
      this.each({ t: 'F', file: { pathId: fromHex(f[1], 32, w), uuid: f[2], kind: f[3], size: parseUint(f[4], w), mtimeNs: parseBigInt(f[5], w, TIME_NS_MIN, TIME_NS_MAX), ctimeNs: parseBigInt(f[6], w, TIME_NS_MIN, TIME_NS_MAX), ino: parseBigInt(f[7], w, 0n, U64_MAX), mode: parseInt(f[8], 8) } });
    } else if (f[0] === 'D' && f.length === 2) {
      this.each({ t: 'D', pathId: fromHex(f[1], 32, w) });
    } else throw new FormatError('bad-line', `${w}: unknown index line`);
  }

  /** True once the closing line was read: nothing may follow. */
  get closed(): boolean { return this.closing !== null; }

  end(): IndexHead {
    if (!this.closing) throw new FormatError('truncated', `${this.where}: index has no closing line`);
    if (!this.hash.digest().equals(this.closing)) throw new FormatError('bad-checksum', `${this.where}: index checksum does not match`);
    if (this.snapshot === null || this.blockHash === null) throw new FormatError('truncated', `${this.where}: index has no ${this.snapshot === null ? 'snapshot' : 'hash'} line`);
    return { snapshot: this.snapshot, hash: this.blockHash };
  }
}
