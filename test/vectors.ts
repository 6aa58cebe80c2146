/**
 * Loader of the test vectors under test/vectors/<structure>/NAME.txt (SPEC.md names the
 * directory of each structure). A vector is `key: value` lines, a blank line, then the
 * body: the exact bytes for text formats, or hex (whitespace ignored) when the keys say
 * `encoding: hex`. Every vector says `expect: success` or `expect: failure`, and a
 * failure names the FormatError `code` the decoder must throw.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** One vector: its file name without `.txt`, its keys and its body bytes. */
export interface Vector {
  name: string;
  keys: Record<string, string>;
  body: Buffer;
}

/** test/vectors/, located from the compiled file in dist/test/. */
export const VECTOR_ROOT = fileURLToPath(new URL('../../test/vectors/', import.meta.url));

/** Parses the text of one vector file; throws on a malformed file so a typo is not a silent skip. */
export function parseVector(name: string, file: Buffer): Vector {
  const split = file.indexOf('\n\n');
  if (split < 0) throw new Error(`vector ${name}: no blank line after the keys`);
  const keys: Record<string, string> = {};
  for (const line of file.subarray(0, split).toString('utf8').split('\n')) {
    const colon = line.indexOf(': ');
    if (colon <= 0) throw new Error(`vector ${name}: bad key line ${JSON.stringify(line)}`);
    const key = line.slice(0, colon);
    if (key in keys) throw new Error(`vector ${name}: key ${key} given twice`);
    keys[key] = line.slice(colon + 2);
  }
  if (keys.expect !== 'success' && keys.expect !== 'failure') throw new Error(`vector ${name}: expect must be success or failure`);
  if (keys.expect === 'failure' && !keys.code) throw new Error(`vector ${name}: a failure vector needs a code`);
  let body = file.subarray(split + 2);
  if (keys.encoding === 'hex') {
    const hex = body.toString('latin1').replace(/\s+/g, '');
    if (!/^([0-9a-f]{2})*$/.test(hex)) throw new Error(`vector ${name}: body is not lower-case hex`);
    body = Buffer.from(hex, 'hex');
  } else if (keys.encoding !== undefined) {
    throw new Error(`vector ${name}: unknown encoding ${keys.encoding}`);
  }
  return { name, keys, body: Buffer.from(body) };
}

/** All vectors of one structure, sorted by name. */
export function loadVectors(structure: string): Vector[] {
  const dir = VECTOR_ROOT + structure + '/';
  return readdirSync(dir)
    .filter((f) => f.endsWith('.txt'))
    .sort()
    .map((f) => parseVector(f.slice(0, -4), readFileSync(dir + f)));
}
