/**
 * The `.state` file of the local cache of chain states (SPEC.md "Local cache of chain
 * states"): not repository content, but a file iebs writes and reads back, so its bytes
 * are written down here like the others. It names the snapshot and chain it belongs to,
 * the sha384 of that snapshot's index (from the signed record), a hash of the index key,
 * the hash the chain's blocks are hashed with, and the length, entry count and sha256 of
 * each of its two tables.
 */
import { FormatError } from './errors.js';
import type { BlockHash } from './text.js';

/**
 * First line of a `.state` file. Version 3: a block place in the tables carries its start
 * in a pack (SPEC.md "Local cache"); version 4 names the chain's block hash (a version 3
 * state is of a sha384 chain, and is read as one).
 */
export const CACHE_STATE_MAGIC = 'iebs-state-cache 4';

/** One table a state names: its file (in the same folder) and seal. */
export interface CacheTable { file: string; size: number; count: number; sha256: Uint8Array }

/** What a `.state` file says. */
export interface CacheState {
  /** sha256 hex of "iebs state cache key" || 0x00 || the index key. */
  key: string;
  snapshot: string;
  chain: string;
  /** sha384 hex of the snapshot's index object. */
  index: string;
  /** The hash of the chain's blocks, as its indexes name it. */
  hash: BlockHash;
  paths: CacheTable;
  blocks: CacheTable;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const LINE_RE = /^iebs-state-cache (?:3|4)\nkey ([0-9a-f]{64})\nsnapshot (\S+)\nchain (\S+)\nindex ([0-9a-f]{96})\n(?:hash (sha256|sha384)\n)?paths (\S+) (\d{1,15}) (\d{1,15}) ([0-9a-f]{64})\nblocks (\S+) (\d{1,15}) (\d{1,15}) ([0-9a-f]{64})\n$/;

/** Encodes a `.state` file. */
export function encodeCacheState(s: CacheState): string {
  const table = (t: CacheTable) => `${t.file} ${t.size} ${t.count} ${Buffer.from(t.sha256).toString('hex')}`;
  return `${CACHE_STATE_MAGIC}\nkey ${s.key}\nsnapshot ${s.snapshot}\nchain ${s.chain}\nindex ${s.index}\nhash ${s.hash}\npaths ${table(s.paths)}\nblocks ${table(s.blocks)}\n`;
}

/** Decodes a `.state` file; a FormatError for anything else (the cache then drops it). */
export function decodeCacheState(text: string, where: string): CacheState {
  if (text.length > 4096) throw new FormatError('absurd-size', `${where}: larger than a state file`);
  if (!text.startsWith('iebs-state-cache ')) throw new FormatError('bad-magic', `${where}: not a state file`);
  if (!text.startsWith(`${CACHE_STATE_MAGIC}\n`) && !text.startsWith('iebs-state-cache 3\n')) throw new FormatError('unknown-version', `${where}: a state file of another version`);
  const m = LINE_RE.exec(text);
  // The hash line is in version 4 and only there.
  if (!m || (m[5] === undefined) !== text.startsWith('iebs-state-cache 3\n')) throw new FormatError('bad-line', `${where}: malformed state file`);
  if (![m[2], m[3], m[6], m[10]].every((n) => NAME_RE.test(n))) throw new FormatError('bad-name', `${where}: a name outside the cache's names`);
  const table = (file: string, size: string, count: string, sha: string): CacheTable => ({ file, size: Number(size), count: Number(count), sha256: Buffer.from(sha, 'hex') });
  return { key: m[1], snapshot: m[2], chain: m[3], index: m[4], hash: (m[5] ?? 'sha384') as BlockHash, paths: table(m[6], m[7], m[8], m[9]), blocks: table(m[10], m[11], m[12], m[13]) };
}
