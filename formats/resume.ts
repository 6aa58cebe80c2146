/**
 * The resume journal (SPEC.md "Resume journal"): a local file of the backup host, not
 * repository content, that lets a backup interrupted after some of its volumes were
 * committed reuse them instead of uploading them again. Its head names the run (the
 * snapshot's name, type, time and parent, which the volumes' headers carry); then, for
 * each volume committed, the places of the blocks it holds and last the volume's own
 * line, which makes that group count. It is only appended to, so a crash may leave a
 * torn last line or block lines without their volume line: both are ignored.
 */
import { FormatError } from './errors.js';
import { SNAPSHOT_RE, SYSTEM_RE, VOLUME_RE, checkName, parseBlockEntry, volumeName } from './names.js';
import { fields, formatDigest, formatSha384, formatTime, fromHex, parseDigest, parseSha384, parseTime, parseUint, toHex, type BlockHash } from './text.js';

/**
 * First line of a journal. Version 2 lets a block line carry the block's start in a
 * pack; version 3 names the hash the run's blocks are hashed with (a version 2 journal
 * is of a sha384 run, and is read as one); a version 1 journal is not used.
 */
export const RESUME_MAGIC = 'iebs-resume 3';
const RESUME_2 = 'iebs-resume 2';

/** Lines of the head, in order: version 3's, and version 2's (without `hash`). */
const HEAD_KEYS = ['key', 'repository', 'system', 'snapshot', 'type', 'hash', 'time', 'parent', 'uuids'] as const;
const HEAD_KEYS_2 = HEAD_KEYS.filter((k) => k !== 'hash');

/** The run a journal belongs to. */
export interface ResumeHead {
  /** sha256 hex of "iebs resume key" || 0x00 || the index key: journals of another key are not used. */
  key: string;
  /** The repository's id (its config). */
  repository: string;
  system: string;
  snapshot: string;
  type: 'full' | 'increment';
  /** The hash of the run's blocks (its keyed ids are made from these digests). */
  hash: BlockHash;
  time: bigint;
  parent?: { name: string; sha384: Uint8Array };
  /** Secret (32 bytes) from which the run derives the UUIDs of new paths. */
  uuids: Uint8Array;
}

/** A block the journaled volume holds: its keyed id and place in the volume. */
export interface ResumeBlock { id: Uint8Array; dataOffset: number; length: number; entry: string; start?: number }

/** A committed volume: its record line's fields and the id in its header. */
export interface ResumeVolume { name: string; size: number; digest: Uint8Array; volumeId: Uint8Array }

/** One line after the head. */
export type ResumeItem = { t: 'block'; block: ResumeBlock } | { t: 'volume'; volume: ResumeVolume };

/** Envelope lengths a block line may give (SPEC.md "Manifest grammar", `length`). */
const MAX_LENGTH = 16 * 1024 * 1024 + 1024;

export function encodeResumeHead(h: ResumeHead): string {
  const parent = h.parent ? `${h.parent.name} ${formatSha384(h.parent.sha384)}` : '-';
  return `${RESUME_MAGIC}\nkey ${h.key}\nrepository ${h.repository}\nsystem ${h.system}\nsnapshot ${h.snapshot}\ntype ${h.type}\nhash ${h.hash}\ntime ${formatTime(h.time)}\nparent ${parent}\nuuids ${toHex(h.uuids)}\n`;
}

export function encodeResumeBlock(b: ResumeBlock): string {
  return `block ${toHex(b.id)} ${b.dataOffset} ${b.length} ${b.entry}${b.start === undefined ? '' : ' ' + b.start}\n`;
}

export function encodeResumeVolume(v: ResumeVolume): string {
  return `volume ${v.name} ${v.size} ${formatDigest(v.digest)} ${toHex(v.volumeId)}\n`;
}

/**
 * Reads a journal line by line: the head first (`head` once it is complete), then block
 * and volume lines, each checked; volume lines must name the snapshot's volumes 0001,
 * 0002, … in order.
 */
export class ResumeParser {
  private readonly head: Partial<Record<(typeof HEAD_KEYS)[number], string>> = {};
  private at = 0;
  private volumes = 0;
  private keys: readonly (typeof HEAD_KEYS)[number][] = HEAD_KEYS;
  parsed: ResumeHead | null = null;
  constructor(private readonly where: string) {}

  line(line: string): ResumeItem | null {
    const where = `${this.where} line ${++this.at}`;
    if (line.length > 1024) throw new FormatError('absurd-size', `${where}: longer than any journal line`);
    if (this.at === 1) {
      if (line === RESUME_MAGIC) return null;
      if (line === RESUME_2) { this.keys = HEAD_KEYS_2; return null; }
      throw new FormatError(line.startsWith('iebs-resume ') ? 'unknown-version' : 'bad-magic', `${where}: not a resume journal of version 2 or 3`);
    }
    const f = fields(line, where);
    if (!this.parsed) {
      const key = this.keys[this.at - 2];
      if (f[0] !== key) throw new FormatError('bad-line', `${where}: expected "${key}"`);
      if (key === 'parent' ? !(f.length === 2 || f.length === 3) : f.length !== 2) throw new FormatError('bad-line', `${where}: "${key}" has the wrong number of fields`);
      this.head[key] = f.slice(1).join(' ');
      if (key === 'uuids') this.parsed = this.decodeHead(where);
      return null;
    }
    if (f[0] === 'block' && (f.length === 5 || f.length === 6)) {
      const id = fromHex(f[1], 32, where);
      parseBlockEntry(f[4], where);
      const block: ResumeBlock = { id, dataOffset: parseUint(f[2], where), length: parseUint(f[3], where, MAX_LENGTH), entry: f[4] };
      if (f.length === 6) block.start = parseUint(f[5], where, MAX_LENGTH);
      return { t: 'block', block };
    }
    if (f[0] === 'volume' && f.length === 5) {
      checkName(VOLUME_RE, f[1], 'volume name', where);
      if (f[1] !== volumeName(this.parsed.snapshot, this.volumes + 1)) throw new FormatError('bad-name', `${where}: expected volume ${volumeName(this.parsed.snapshot, this.volumes + 1)}`);
      this.volumes++;
      return { t: 'volume', volume: { name: f[1], size: parseUint(f[2], where), digest: parseDigest(f[3], where, this.keys === HEAD_KEYS), volumeId: fromHex(f[4], 16, where) } };
    }
    throw new FormatError('bad-line', `${where}: not a block or volume line`);
  }

  private decodeHead(where: string): ResumeHead {
    const h = this.head as Record<(typeof HEAD_KEYS)[number], string>;
    if (!/^[0-9a-f]{64}$/.test(h.key)) throw new FormatError('bad-hex', `${where}: key is not 64 lower-case hex digits`);
    if (!/^[0-9a-f]{32}$/.test(h.repository)) throw new FormatError('bad-hex', `${where}: repository is not 32 lower-case hex digits`);
    if (h.type !== 'full' && h.type !== 'increment') throw new FormatError('bad-line', `${where}: unknown snapshot type`);
    const hash = h.hash ?? 'sha384';
    if (hash !== 'sha256' && hash !== 'sha384') throw new FormatError('bad-line', `${where}: unknown hash`);
    const p = h.parent.split(' ');
    let parent: ResumeHead['parent'];
    if (p.length === 2) parent = { name: checkName(SNAPSHOT_RE, p[0], 'snapshot name', where), sha384: parseSha384(p[1], where) };
    else if (p[0] !== '-') throw new FormatError('bad-line', `${where}: bad parent line`);
    return {
      key: h.key, repository: h.repository, system: checkName(SYSTEM_RE, h.system, 'system name', where),
      snapshot: checkName(SNAPSHOT_RE, h.snapshot, 'snapshot name', where), type: h.type, hash, time: parseTime(h.time, where), parent, uuids: fromHex(h.uuids, 32, where),
    };
  }
}

/** What a whole journal holds that counts: its head and its committed volumes with their blocks. */
export interface Resume { head: ResumeHead; volumes: { volume: ResumeVolume; blocks: ResumeBlock[] }[] }

/**
 * Decodes a whole journal (tests and small journals; the engine reads it line by line).
 * A last line without its LF, and block lines after the last volume line, were torn by a
 * crash and are left out.
 */
export function decodeResume(text: string, where: string): Resume {
  const lines = text.split('\n');
  lines.pop(); // '' after the final LF, or a torn line
  const p = new ResumeParser(where);
  const volumes: Resume['volumes'] = [];
  let blocks: ResumeBlock[] = [];
  for (const line of lines) {
    const it = p.line(line);
    if (it?.t === 'block') blocks.push(it.block);
    else if (it?.t === 'volume') { volumes.push({ volume: it.volume, blocks }); blocks = []; }
  }
  if (!p.parsed) throw new FormatError('truncated', `${where}: the journal ends within its head`);
  return { head: p.parsed, volumes };
}

/** Encodes a whole journal, as decodeResume reads it. */
export function encodeResume(r: Resume): string {
  let out = encodeResumeHead(r.head);
  for (const v of r.volumes) out += v.blocks.map(encodeResumeBlock).join('') + encodeResumeVolume(v.volume);
  return out;
}
