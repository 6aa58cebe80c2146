/**
 * Path traversal (SPEC.md "Manifest grammar"): a manifest path can never name anything
 * outside the restore target or have two spellings. checkPath is the single gate; the
 * parser must apply it to every file line, whatever the quoting.
 */
import { test } from 'node:test';
import { checkPath, decodeDoc, encodeRecord, type FileRecord } from '../formats/manifest.js';
import { expectFormatError, sealDoc } from './formats-helpers.js';

const B = (s: string) => Buffer.from(s, 'latin1');

/** Paths that must be refused, as raw bytes. */
const BAD: [string, Uint8Array][] = [
  ['empty', B('')],
  ['..', B('..')],
  ['../x', B('../x')],
  ['a/../../x', B('a/../../x')],
  ['a/..', B('a/..')],
  ['.', B('.')],
  ['./a', B('./a')],
  ['a/./b', B('a/./b')],
  ['/abs', B('/abs')],
  ['/', B('/')],
  ['a//b', B('a//b')],
  ['a/', B('a/')],
  ['NUL inside', B('a\0b')],
  ['NUL alone', B('\0')],
  ['component of 256 bytes', B('x'.repeat(256))],
  ['path of 16385 bytes', B(('y'.repeat(255) + '/').repeat(64) + 'z')],
];

/** Paths that look odd but are plain names. */
const GOOD = ['...', '.a', 'a.', '..a', 'a..', 'a/.../b', '-', ' ', '\\..\\x', 'a\\..', 'x'.repeat(255), ('y'.repeat(255) + '/').repeat(63) + 'a/' + 'y'.repeat(254), '\xff/\xfe'];

test('checkPath refuses every way out of the target and every non-canonical spelling', () => {
  for (const [what, p] of BAD) expectFormatError(() => checkPath(p, what), 'bad-path', what);
});

test('checkPath accepts odd but plain names', () => {
  for (const p of GOOD) checkPath(B(p), JSON.stringify(p));
});

test('the manifest parser applies checkPath to every kind of record', () => {
  const header = ['IEBS-MANIFEST 1', 'p_2026-01-01_full 2026-01-01T00:00:00.000000000Z h', 'parent -', ''];
  for (const kind of ['file', 'dir', 'symlink'] as const) {
    for (const [what, path] of BAD) {
      const r: FileRecord = { uuid: '550e8400-e29b-41d4-a716-446655440000', path, size: 0, mtimeNs: 0n, uid: 0, gid: 0, blockSize: 0, kind, mode: 0o755, blocks: [] };
      if (kind === 'symlink') r.target = B('/etc');
      const doc = sealDoc('manifest', header, [{ record: encodeRecord(r).split('\n').slice(0, -2) }]);
      expectFormatError(() => decodeDoc('manifest', B(doc), what), 'bad-path', `${kind} ${what}`);
    }
  }
});
