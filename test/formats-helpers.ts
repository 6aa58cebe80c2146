/**
 * Shared pieces of the formats/ tests: the FormatError assertion, the re-encoding of
 * parsed documents, a raw document sealer (correct checksums over arbitrary lines, so a
 * test can damage one field and still reach the check it aims at), and the fast-check
 * arbitraries of every structure.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { FormatError } from '../formats/errors.js';
import { DocEncoder, MAX_BLOCK, MAX_ENVELOPE_OVERHEAD, type BlockRef, type CatalogHeader, type DocItem, type DocKind, type FileRecord, type ManifestHeader } from '../formats/manifest.js';
import { blockEntry, HOST_RE, SNAPSHOT_RE, VOLUME_RE } from '../formats/names.js';
import type { IndexItem } from '../formats/blockindex.js';
import type { SnapshotRecord } from '../formats/snapshot.js';
import type { VolumeHeader } from '../formats/volume.js';
import { TIME_NS_MAX, TIME_NS_MIN, U64_MAX } from '../formats/text.js';

/** fast-check runs: few by default, 20 times more with SLOW=1. */
export const RUNS = process.env.SLOW === '1' ? 20 : 1;
/** fast-check parameters for `n` runs by default (times RUNS). */
export const runs = (n: number) => ({ numRuns: n * RUNS });

/** Asserts that `fn` throws a FormatError with `code` (and nothing else: no TypeError, no success). */
export function expectFormatError(fn: () => unknown, code: string, what: string): void {
  let result: unknown;
  try {
    result = fn();
  } catch (e) {
    if (!(e instanceof FormatError)) assert.fail(`${what}: threw ${e instanceof Error ? e.stack : String(e)} instead of a FormatError`);
    assert.equal(e.code, code, `${what}: got code ${e.code} (${e.message}), expected ${code}`);
    return;
  }
  assert.fail(`${what}: decoded (${typeof result}) but should fail with ${code}`);
}

/** Runs a decoder on damaged input: it may succeed or throw a FormatError, nothing else. */
export function decodesOrFormatError<T>(fn: () => T, what: () => string): T | FormatError {
  try {
    return fn();
  } catch (e) {
    if (e instanceof FormatError) return e;
    assert.fail(`${what()}: threw ${e instanceof Error ? e.stack : String(e)} instead of a FormatError`);
  }
}

/** Encodes the items of a parsed document again, in order. */
export function encodeItems(kind: DocKind, items: DocItem[]): string {
  const e = new DocEncoder(kind);
  let s = '';
  for (const it of items) {
    if (it.type === 'header') s += e.header(it.header);
    else if (it.type === 'record') s += e.record(it.record);
    else if (it.type === 'deleted') s += e.deletion(it.uuid);
    else s += e.end();
  }
  return s;
}

const sha384hex = (text: string) => createHash('sha384').update(text, 'latin1').digest('hex');

/** One part of a raw document: the lines of a record (file line, then block lines) or a single deletion line. */
export type RawPart = { record: string[] } | { line: string };

/**
 * Writes a manifest or catalogue from raw lines with correct END OF FILE and END
 * checksums. Lines are latin1 strings without their LF; `header` ends with the blank line ('').
 */
export function sealDoc(kind: DocKind, header: string[], parts: RawPart[], end = true): string {
  let s = header.map((l) => l + '\n').join('');
  for (const p of parts) {
    if ('line' in p) { s += p.line + '\n'; continue; }
    const body = p.record.map((l) => l + '\n').join('');
    s += `${body}-- END OF FILE -- sha384(${sha384hex(body)})\n`;
  }
  if (end) s += `-- END OF ${kind === 'manifest' ? 'MANIFEST' : 'CATALOG'} -- sha384(${sha384hex(s)})\n`;
  return s;
}

/** Re-seals an index body (everything before its closing line). */
export function sealIndex(body: string): string {
  return `${body}-- END OF INDEX -- sha384(${sha384hex(body)})\n`;
}

/** Splits bytes into slices of the given lengths (cycled), the last one shorter. */
export function slices(bytes: Uint8Array, lengths: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let o = 0, i = 0; o < bytes.length; i++) {
    const n = Math.max(1, lengths[i % lengths.length]);
    out.push(bytes.subarray(o, o + n));
    o += n;
  }
  return out;
}

// ------------------------------------------------------------------ arbitraries

/** fc.record with plain prototypes, as the decoders build their objects (deepStrictEqual compares prototypes). */
export function rec<T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  return fc.record(model, { noNullPrototype: true }) as unknown as fc.Arbitrary<T>;
}

const NS = 1_000_000_000n;
/** 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z in ns: the range formatTime writes. */
export const MIN_TIME = -62167219200n * NS;
export const MAX_TIME = 253402300799n * NS + NS - 1n;

/** Any time formatTime can write, nanoseconds included. */
export const timeArb = fc.bigInt({ min: MIN_TIME, max: MAX_TIME });
/** A lower-case textual UUID. */
export const uuidArb = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => {
  const h = Buffer.from(b).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
});
/** Any 48-byte digest. */
export const sha384Arb = fc.uint8Array({ minLength: 48, maxLength: 48 });
/** The hashes a block may be hashed with. */
export const blockHashArb = fc.constantFrom('sha256' as const, 'sha384' as const);
/** Names that match the patterns of formats/names.ts. */
export const snapshotNameArb = fc.stringMatching(SNAPSHOT_RE);
export const volumeNameArb = fc.stringMatching(VOLUME_RE);
export const hostArb = fc.stringMatching(HOST_RE);
/** Any size or count a decimal field may hold. */
export const safeUint = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });

/** One path component: 1..255 bytes, no NUL or '/', not '.' or '..'. */
export const componentArb = fc
  .uint8Array({ minLength: 1, maxLength: 255 })
  .map((b) => b.map((x) => (x === 0 || x === 0x2f ? x | 0x80 : x)))
  .filter((b) => !(b.length === 1 && b[0] === 0x2e) && !(b.length === 2 && b[0] === 0x2e && b[1] === 0x2e));

/** A valid relative path of 1..5 components. */
export const pathArb = fc.array(componentArb, { minLength: 1, maxLength: 5 }).map((cs) => {
  const out = new Uint8Array(cs.reduce((n, c) => n + c.length + 1, -1));
  let o = 0;
  cs.forEach((c, i) => { if (i) out[o++] = 0x2f; out.set(c, o); o += c.length; });
  return out;
});

const blockSpecArb = rec({
  size: fc.oneof(fc.integer({ min: 1, max: MAX_BLOCK }), fc.constantFrom(1, MAX_BLOCK)),
  digest: sha384Arb,
  volume: volumeNameArb,
  dataOffset: fc.integer({ min: 0, max: 2 ** 43 }).map((n) => n * 512),
  length: fc.integer({ min: 0, max: MAX_BLOCK + MAX_ENVELOPE_OVERHEAD }),
  // Where the block starts in a pack (SPEC.md "Packs"), or -1: stored alone.
  start: fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: MAX_BLOCK - 1 })),
});

/** A record of a manifest: contiguous blocks from 0 whose sizes sum to the file size. */
export const recordArb: fc.Arbitrary<FileRecord> = fc
  .record({
    uuid: uuidArb,
    path: pathArb,
    mtimeNs: timeArb,
    uid: fc.integer({ min: 0, max: 0xffffffff }),
    gid: fc.integer({ min: 0, max: 0xffffffff }),
    blockSize: fc.integer({ min: 0, max: MAX_BLOCK }),
    kind: fc.constantFrom('file', 'dir', 'symlink') as fc.Arbitrary<FileRecord['kind']>,
    mode: fc.integer({ min: 0, max: 0o7777 }),
    target: fc.uint8Array({ minLength: 1, maxLength: 300 }).map((b) => b.map((x) => x || 1)),
    blocks: fc.array(blockSpecArb, { maxLength: 4 }),
  })
  .map((x) => {
    // Directories and symlinks have block size 0 (SPEC.md "Manifest grammar").
    const r: FileRecord = { uuid: x.uuid, path: x.path, size: 0, mtimeNs: x.mtimeNs, uid: x.uid, gid: x.gid, blockSize: x.kind === 'file' ? x.blockSize : 0, kind: x.kind, mode: x.mode, blocks: [] };
    if (x.kind === 'symlink') r.target = x.target;
    if (x.kind === 'file') {
      let offset = 0;
      r.blocks = x.blocks.map((b, index): BlockRef => {
        const ref: BlockRef = { index, size: b.size, digest: b.digest, offset, volume: b.volume, dataOffset: b.dataOffset, length: b.length, entry: blockEntry(x.uuid, index) };
        // A pack ends within the largest one.
        if (b.start >= 0) ref.start = Math.min(b.start, MAX_BLOCK - b.size);
        offset += b.size;
        return ref;
      });
      r.size = offset;
    }
    return r;
  });

/** A manifest header, with the optional keys absent (as the parser builds it) when not used. */
export const manifestHeaderArb: fc.Arbitrary<ManifestHeader> = fc
  .record({
    snapshot: snapshotNameArb,
    time: timeArb,
    host: hostArb,
    full: fc.option(snapshotNameArb, { nil: undefined }),
    parent: fc.option(rec({ name: snapshotNameArb, sha384: sha384Arb }), { nil: undefined }),
    volumes: fc.array(rec({ name: volumeNameArb, size: safeUint, digest: sha384Arb }), { maxLength: 3 }),
  })
  .map((x) => {
    const h: ManifestHeader = { snapshot: x.snapshot, time: x.time, host: x.host, volumes: x.volumes, version: 3 };
    if (x.full !== undefined) h.full = x.full;
    if (x.parent !== undefined) h.parent = x.parent;
    return h;
  });

/** A catalogue header. */
export const catalogHeaderArb: fc.Arbitrary<CatalogHeader> = rec({ volume: volumeNameArb, snapshot: snapshotNameArb, time: timeArb, host: hostArb, version: fc.constant(2) });

/** The items of a whole manifest: header, records and deletions in any order, end. */
export const manifestItemsArb: fc.Arbitrary<DocItem[]> = fc
  .tuple(manifestHeaderArb, fc.array(fc.oneof({ weight: 4, arbitrary: recordArb.map((record): DocItem => ({ type: 'record', record })) }, { weight: 1, arbitrary: uuidArb.map((uuid): DocItem => ({ type: 'deleted', uuid })) }), { maxLength: 6 }))
  .map(([header, body]) => [{ type: 'header', header } as DocItem, ...body, { type: 'end' } as DocItem]);

/** A snapshot record that satisfies every cross-field rule of the decoder. */
export const snapshotRecordArb: fc.Arbitrary<SnapshotRecord> = fc
  .record({
    name: snapshotNameArb,
    system: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$/),
    host: hostArb,
    type: fc.constantFrom('full', 'increment') as fc.Arbitrary<'full' | 'increment'>,
    time: timeArb,
    sequence: fc.oneof(fc.constant(0), safeUint),
    otherChain: snapshotNameArb,
    parent: rec({ name: snapshotNameArb, sha384: sha384Arb }),
    manifest: rec({ size: safeUint, digest: sha384Arb }),
    index: rec({ size: safeUint, digest: sha384Arb }),
    volumes: fc.array(rec({ n: fc.integer({ min: 0, max: 9999 }), size: safeUint, digest: sha384Arb, sha256: fc.uint8Array({ minLength: 32, maxLength: 32 }), use256: fc.boolean() }), { maxLength: 4 }),
    // No sources line (version 1), or one, in version 2 (sha384 volumes) or 3 (either).
    sources: fc.option(fc.stringMatching(/^[0-9a-f]{32}$/), { nil: undefined }),
    v3: fc.boolean(),
    counts: rec({ files: safeUint, bytes: safeUint, new: safeUint, changed: safeUint, unchanged: safeUint, deleted: safeUint, stored: safeUint }),
  })
  .filter((x) => x.type === 'full' || x.otherChain !== x.name)
  .map((x): SnapshotRecord => ({
    name: x.name, system: x.system, host: x.host, type: x.type, time: x.time, sequence: x.sequence,
    chain: x.type === 'full' ? x.name : x.otherChain,
    parent: x.sequence === 0 ? undefined : x.parent,
    manifest: { name: `${x.name}.manifest.pgp`, ...x.manifest },
    index: { name: `${x.name}.index`, ...x.index },
    volumes: x.volumes.map((v) => ({ name: `${x.name}.files.${String(v.n).padStart(4, '0')}.tar`, size: v.size, digest: x.sources !== undefined && x.v3 && v.use256 ? v.sha256 : v.digest })),
    counts: x.counts,
    ...(x.sources === undefined ? {} : { sources: x.sources }),
    version: x.sources === undefined ? 1 : x.v3 ? 3 : 2,
  }));

/** Index times: the nanoseconds of a 64-bit signed count of seconds (SPEC.md "Index"). */
const bigNs = fc.bigInt({ min: TIME_NS_MIN, max: TIME_NS_MAX });
/** The lines of an index. */
export const indexItemsArb: fc.Arbitrary<IndexItem[]> = fc.array(
  fc.oneof(
    rec({ id: fc.uint8Array({ minLength: 32, maxLength: 32 }), volume: volumeNameArb, dataOffset: safeUint, length: fc.integer({ min: 0, max: MAX_BLOCK + MAX_ENVELOPE_OVERHEAD }), uuid: uuidArb, index: fc.integer({ min: 0, max: 99_999_999 }), start: fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: MAX_BLOCK - 1 })) })
      .map((b): IndexItem => ({ t: 'B', block: { id: b.id, volume: b.volume, dataOffset: b.dataOffset, length: b.length, entry: blockEntry(b.uuid, b.index), ...(b.start >= 0 ? { start: b.start } : {}) } })),
    rec({ pathId: fc.uint8Array({ minLength: 32, maxLength: 32 }), uuid: uuidArb, kind: fc.constantFrom('file', 'dir', 'symlink') as fc.Arbitrary<FileRecord['kind']>, size: safeUint, mtimeNs: bigNs, ctimeNs: bigNs, ino: fc.bigInt({ min: 0n, max: U64_MAX }), mode: fc.integer({ min: 0, max: 0o7777 }) })
      .map((file): IndexItem => ({ t: 'F', file })),
    fc.uint8Array({ minLength: 32, maxLength: 32 }).map((pathId): IndexItem => ({ t: 'D', pathId })),
  ),
  { maxLength: 8 },
);

/** A volume header, the sealed key sometimes at its largest sizes. */
export const volumeHeaderArb: fc.Arbitrary<VolumeHeader> = rec({
  volumeId: fc.uint8Array({ minLength: 16, maxLength: 16 }),
  name: volumeNameArb,
  snapshot: snapshotNameArb,
  time: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  sealed: fc.oneof({ weight: 5, arbitrary: fc.uint8Array({ maxLength: 600 }) }, { weight: 1, arbitrary: fc.constantFrom(65535, 65536).map((n) => new Uint8Array(n).fill(0xa5)) }),
});

/** A random damage to bytes: flip one byte, cut the tail, or insert one byte. */
export type Mutation = { op: 'flip'; at: number; xor: number } | { op: 'truncate'; at: number } | { op: 'insert'; at: number; byte: number };
/** A mutation at any position (wrapped to the length). */
export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  rec({ op: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  rec({ op: fc.constant('truncate' as const), at: fc.nat() }),
  rec({ op: fc.constant('insert' as const), at: fc.nat(), byte: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0x0a, 0x20, 0x27, 0x5c, 0x2f, 0x2e, 0x30, 0x39)) }),
);

/** Applies a mutation; positions wrap around the length. */
export function mutate(bytes: Uint8Array, m: Mutation): Uint8Array {
  const n = bytes.length;
  if (m.op === 'flip') {
    if (n === 0) return bytes;
    const out = Uint8Array.from(bytes);
    out[m.at % n] ^= m.xor;
    return out;
  }
  if (m.op === 'truncate') return bytes.slice(0, n === 0 ? 0 : m.at % n);
  const at = m.at % (n + 1);
  const out = new Uint8Array(n + 1);
  out.set(bytes.subarray(0, at), 0);
  out[at] = m.byte;
  out.set(bytes.subarray(at), at + 1);
  return out;
}

/** Byte-level mutation of a latin1 string. */
export function mutateText(text: string, m: Mutation): string {
  return Buffer.from(mutate(Buffer.from(text, 'latin1'), m)).toString('latin1');
}
