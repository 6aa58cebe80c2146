/**
 * The repository config object `config` (SPEC.md "Repository layout"): an unsigned
 * convenience that says a destination holds an iebs repository and gives it an id (which
 * keys the local cache).
 */
import { FormatError } from './errors.js';
import { formatTime, parseTime } from './text.js';

/** The repository config. */
export interface RepoConfig { id: string; created: bigint }

export const CONFIG_MAGIC = 'IEBS-REPOSITORY 1';

/** Encodes the config object. */
export function encodeConfig(c: RepoConfig): string {
  return `${CONFIG_MAGIC}\nid ${c.id}\ncreated ${formatTime(c.created)}\n`;
}

/** Decodes the config object. */
export function decodeConfig(text: string, where: string): RepoConfig {
  const lines = text.split('\n');
  if (lines[0] !== CONFIG_MAGIC) {
    throw new FormatError(lines[0]?.startsWith('IEBS-REPOSITORY ') ? 'unknown-version' : 'bad-magic', `${where}: not an iebs repository config of a known version`);
  }
  const id = /^id ([0-9a-f]{32})$/.exec(lines[1] ?? '');
  const created = /^created (\S+)$/.exec(lines[2] ?? '');
  if (!id || !created || lines.length !== 4 || lines[3] !== '') throw new FormatError('bad-line', `${where}: malformed repository config`);
  return { id: id[1], created: parseTime(created[1], where) };
}
