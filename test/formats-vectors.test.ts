/**
 * The vectors of every formats/ structure (test/vectors/<structure>/): a success vector
 * must decode and encode back to the very same bytes; a failure vector must make the
 * decoder throw a FormatError with the vector's code. Manifests and catalogues are also
 * fed to the streaming parser in odd slices (1 byte, 321 bytes), which must agree. Index
 * objects (sealed pieces) go through openIndexObject, whose failures may also be an
 * AuthError ('auth-failed').
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import * as openpgp from 'openpgp';
import { decodeDoc, DocParser, LineSplitter, type DocItem, type DocKind } from '../formats/manifest.js';
import { decodeSnapshotRecord, encodeSnapshotRecord } from '../formats/snapshot.js';
import { decodeForget, encodeForget } from '../formats/forget.js';
import { decodeHostKey, encodeHostKey } from '../formats/host-key.js';
import { checkStatement } from '../engine/repo/host-keys.js';
import { decodeIndex, encodeIndex, INDEX_PIECE_FRAME, type IndexItem } from '../formats/blockindex.js';
import { decodeEnvelopeHeader, encodeEnvelopeHeader, ENVELOPE_HEADER, indexContext, TAG_LENGTH } from '../formats/envelope.js';
import { AuthError, FormatError } from '../formats/errors.js';
import { deriveKey, hmac, pgpClearVerify, sealEnvelope, sha384 } from '../engine/crypto/crypto.js';
import { blockDigest } from '../engine/crypto/hashes.js';
import { openIndexObject } from '../engine/repo/index-object.js';
import { decodeTarHeader, encodeTarHeader } from '../formats/tar.js';
import { decodeVolumeHeader, encodeVolumeHeader } from '../formats/volume.js';
import { decodeKeyFile, encodeKeyFile } from '../formats/keyfile.js';
import { quoteBytes, unquoteBytes, type BlockHash } from '../formats/text.js';
import { decodeConfig, encodeConfig } from '../formats/config.js';
import { decodeDiscLabel, encodeDiscLabel } from '../formats/disc-label.js';
import { decodeLock, encodeLock } from '../formats/lock.js';
import { CACHE_STATE_MAGIC, decodeCacheState, encodeCacheState } from '../formats/cache-state.js';
import { decodeResume, encodeResume, RESUME_MAGIC } from '../formats/resume.js';
import { loadVectors, VECTOR_ROOT, type Vector } from './vectors.js';
import { encodeItems, expectFormatError, slices } from './formats-helpers.js';

const STRUCTURES = ['manifest', 'catalog', 'envelope-header', 'tar-header', 'volume-header', 'snapshot', 'snapshot-signed', 'index', 'index-object', 'keyfile', 'quote', 'keyed-ids', 'config', 'lock', 'cache-state', 'resume', 'disc-label', 'forget', 'host-key'];

test('every structure of formats/ has vectors, successes and failures', () => {
  const dirs = readdirSync(VECTOR_ROOT);
  for (const s of STRUCTURES) assert.ok(dirs.includes(s), `test/vectors/${s}/ is missing`);
  for (const s of STRUCTURES) {
    const vs = loadVectors(s);
    assert.ok(vs.some((v) => v.keys.expect === 'success'), `${s}: no success vector`);
    assert.ok(vs.some((v) => v.keys.expect === 'failure'), `${s}: no failure vector`);
    for (const v of vs) assert.ok(v.keys.description, `${s}/${v.name}: no description`);
  }
});

/** Runs `check` on each vector of a structure as its own subtest. */
function eachVector(structure: string, check: (v: Vector) => void | Promise<void>): void {
  test(`vectors: ${structure}`, async (t) => {
    for (const v of loadVectors(structure)) await t.test(v.name, () => check(v));
  });
}

/** Parses a document fed in slices of the given lengths, as a stream reader would. */
function parseInSlices(kind: DocKind, bytes: Uint8Array, lengths: number[], source: string): DocItem[] {
  const split = new LineSplitter(source);
  const parser = new DocParser(kind, source);
  const items: DocItem[] = [];
  for (const piece of slices(bytes, lengths)) {
    for (const line of split.push(piece)) {
      const it = parser.line(line);
      if (it) items.push(it);
    }
  }
  split.end();
  parser.finish();
  return items;
}

for (const kind of ['manifest', 'catalog'] as const) {
  eachVector(kind, (v) => {
    const where = `${kind}/${v.name}`;
    if (v.keys.expect === 'failure') {
      expectFormatError(() => decodeDoc(kind, v.body, where), v.keys.code, where);
      for (const n of [1, 321]) expectFormatError(() => parseInSlices(kind, v.body, [n], where), v.keys.code, `${where} in ${n}-byte slices`);
      return;
    }
    const items = decodeDoc(kind, v.body, where);
    assert.equal(encodeItems(kind, items), v.body.toString('latin1'));
    for (const n of [1, 321]) assert.deepEqual(parseInSlices(kind, v.body, [n], where), items, `${n}-byte slices`);
  });
}

test('a line the parser refuses is named in its error by its number, counted from 1', () => {
  let named = 0;
  for (const kind of ['manifest', 'catalog'] as const) {
    for (const v of loadVectors(kind)) {
      if (v.keys.expect !== 'failure') continue;
      const parser = new DocParser(kind, v.name);
      const lines = v.body.toString('latin1').split('\n');
      for (let n = 1; n <= lines.length; n++) {
        let error: unknown = null;
        try { parser.line(lines[n - 1]); } catch (e) { error = e; }
        if (!error) continue;
        assert.ok(error instanceof FormatError, `${kind}/${v.name}: ${String(error)}`);
        assert.ok(error.message.startsWith(`${v.name} line ${n}: `), `${kind}/${v.name}: ${error.message}`);
        named++;
        break;
      }
    }
  }
  assert.ok(named >= 20, `${named} refused lines`);
});

test('vectors: manifest/full decodes to the names and blocks it was made from', () => {
  const v = loadVectors('manifest').find((x) => x.name === 'full')!;
  const records = decodeDoc('manifest', v.body, 'full').flatMap((it) => (it.type === 'record' ? [it.record] : []));
  const paths = records.map((r) => Buffer.from(r.path).toString('latin1'));
  assert.deepEqual(paths, ['docs', 'docs/report.txt', 'docs/latest', `docs/it's a \\ "name"\nwith\xffbyte`, 'docs/caf\xc3\xa9', 'docs/cafe\xcc\x81', 'bin']);
  assert.equal(Buffer.from(records[4].path).toString('utf8').normalize('NFC'), Buffer.from(records[5].path).toString('utf8').normalize('NFC'));
  assert.deepEqual(records.map((r) => r.kind), ['dir', 'file', 'symlink', 'file', 'file', 'file', 'file']);
  assert.deepEqual(records[1].blocks.map((b) => [b.index, b.offset, b.size]), [[0, 0, 4096], [1, 4096, 4096], [2, 8192, 1808]]);
  assert.equal(Buffer.from(records[2].target!).toString('latin1'), 'report.txt');
  assert.equal(records[0].mtimeNs, -14182939999999999n);
  assert.equal(records[6].mode, 0o4755);
});

eachVector('forget', (v) => {
  const text = v.body.toString('latin1');
  if (v.keys.expect === 'failure') return expectFormatError(() => decodeForget(text, v.name), v.keys.code, v.name);
  const f = decodeForget(text, v.name);
  assert.equal(encodeForget(f), text);
  for (const r of f.removed) assert.equal(sha384(r.text).length, 48);
  assert.deepEqual(f.removed.map((r) => r.record.sequence), [...f.removed.map((r) => r.record.sequence)].sort((a, b) => a - b));
});

/**
 * Host key statements (SPEC.md "Changing keys"): stored signed objects, checked as a
 * verifier does (owner signature, text, the carried keys' fingerprints). The host key is
 * not handed to the check: a statement it signed is named unauthorized from the keys the
 * statement itself carries. A success vector's text decodes and encodes back to itself.
 */
eachVector('host-key', async (v) => {
  const stored = v.body.toString('latin1');
  const owner = await openpgp.readKey({ binaryKey: Buffer.from(v.keys['owner-key'], 'hex') });
  if (v.keys.expect === 'failure') return expectRejection(() => checkStatement(stored, [owner], [], v.name), v.keys.code, v.name);
  const { statement, oldKey, newKey } = await checkStatement(stored, [owner], [], v.name);
  const text = recordText(stored);
  assert.equal(encodeHostKey(decodeHostKey(text, v.name)), text);
  assert.equal(oldKey.getFingerprint(), statement.old);
  assert.equal(newKey.getFingerprint(), statement.new);
  assert.equal(Buffer.from(oldKey.write()).toString('hex'), v.keys['host-key'], 'the old key is the host key the vector names');
});

eachVector('snapshot', (v) => {
  const text = v.body.toString('latin1');
  if (v.keys.expect === 'failure') return expectFormatError(() => decodeSnapshotRecord(text, v.name), v.keys.code, v.name);
  assert.equal(encodeSnapshotRecord(decodeSnapshotRecord(text, v.name)), text);
});

/**
 * The record text of a stored snapshot object, read as SPEC.md "Snapshot record" says,
 * without OpenPGP: the lines between the armor headers' blank line and the signature
 * line, each without its CR, dash-escapes undone, joined with LF; the line break just
 * before the signature line is not part of the text.
 */
function recordText(stored: string): string {
  const lines = stored.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  let i = lines.indexOf('-----BEGIN PGP SIGNED MESSAGE-----') + 1;
  assert.ok(i > 0, 'no cleartext header');
  while (lines[i] !== '') i++;
  const end = lines.indexOf('-----BEGIN PGP SIGNATURE-----', ++i);
  assert.ok(end > 0, 'no signature line');
  return lines.slice(i, end).map((l) => (l.startsWith('- ') ? l.slice(2) : l)).join('\n');
}

eachVector('snapshot-signed', async (v) => {
  const stored = v.body.toString('latin1');
  const key = await openpgp.readKey({ binaryKey: Buffer.from(v.keys['host-key'], 'hex') });
  if (v.keys.expect === 'failure') return expectRejection(() => pgpClearVerify(stored, [key], v.name), v.keys.code, v.name);
  const text = recordText(stored);
  assert.equal(Buffer.from(sha384(text)).toString('hex'), v.keys.sha384);
  assert.equal(encodeSnapshotRecord(decodeSnapshotRecord(text, v.name)), text);
  assert.equal(await pgpClearVerify(stored, [key], v.name), text, 'openpgp.js reads the same text');
});

/**
 * Keyed ids (SPEC.md "Key derivation and ids"): from the dedup secret, the four keys;
 * the block id is HMAC-SHA256 over the raw bytes of the block's digest (48 of its sha384,
 * or 32 of its sha256 in a chain whose index names sha256), the path id over the path
 * bytes. A failure vector gives an id that a wrong reading of the rule makes (HMAC over
 * the hex digits, or over the other hash's digest): the engine must not make it.
 */
eachVector('keyed-ids', (v) => {
  const secret = Buffer.from(v.keys.secret, 'hex');
  const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
  for (const purpose of ['block-id', 'path-id', 'index', 'gear']) {
    if (v.keys[purpose] !== undefined) assert.equal(hex(deriveKey(secret, purpose)), v.keys[purpose], purpose);
  }
  const block = Buffer.from(v.keys.block, 'hex');
  // The chain's hash is the one the vector gives the block's digest with.
  const hash = v.keys['block-sha256'] !== undefined ? 'sha256' : 'sha384';
  const digest = blockDigest(hash, block);
  assert.equal(hex(digest), v.keys[`block-${hash}`]);
  const blockId = hex(hmac(deriveKey(secret, 'block-id'), digest));
  const pathId = hex(hmac(deriveKey(secret, 'path-id'), Buffer.from(v.keys.path, 'hex')));
  if (v.keys.expect === 'failure') {
    assert.notEqual(blockId, v.keys['block-id-of'], 'the engine makes the id of a wrong reading');
    return;
  }
  assert.equal(blockId, v.keys['block-id-of']);
  assert.equal(pathId, v.keys['path-id-of']);
});

eachVector('index', (v) => {
  const text = v.body.toString('latin1');
  const items: IndexItem[] = [];
  if (v.keys.expect === 'failure') return expectFormatError(() => decodeIndex(text, v.name, (it) => items.push(it)), v.keys.code, v.name);
  const head = decodeIndex(text, v.name, (it) => items.push(it));
  assert.equal(head.hash, v.keys.hash ?? 'sha384', 'the hash the index names (sha384 before version 3)');
  // Encoded again in the vector's own version.
  assert.equal(encodeIndex(head, items, Number(/^IEBS-INDEX (\d+)\n/.exec(text)![1])), text);
});

/**
 * Asserts that `fn` rejects with a FormatError, or an AuthError, with `code` (nothing
 * else: no TypeError, no success).
 */
async function expectRejection(fn: () => Promise<unknown>, code: string, what: string): Promise<void> {
  let result: unknown;
  try {
    result = await fn();
  } catch (e) {
    if (!(e instanceof FormatError) && !(e instanceof AuthError)) assert.fail(`${what}: threw ${e instanceof Error ? e.stack : String(e)} instead of a FormatError or AuthError`);
    assert.equal(e.code, code, `${what}: got code ${e.code} (${e.message}), expected ${code}`);
    return;
  }
  assert.fail(`${what}: decoded (${typeof result}) but should fail with ${code}`);
}

eachVector('index-object', async (v) => {
  const key = Buffer.from(v.keys.key, 'hex');
  const items: IndexItem[] = [];
  // openIndexObject promises to read in order and each byte once, never past `size`.
  let next = 0;
  const read = async (off: number, len: number) => {
    assert.equal(off, next, `read at ${off}, expected ${next}`);
    assert.ok(len >= 0 && off + len <= v.body.length, `read of ${len} at ${off} past the end`);
    next = off + len;
    return new Uint8Array(v.body.subarray(off, off + len));
  };
  const open = () => openIndexObject(read, v.body.length, key, v.keys.snapshot, v.name, (it) => items.push(it));
  if (v.keys.expect === 'failure') return expectRejection(open, v.keys.code, v.name);
  assert.deepEqual(await open(), { snapshot: v.keys.snapshot, hash: v.keys.hash ?? 'sha384' });
  assert.equal(next, v.body.length, 'read the whole object');
  assert.equal(items.length, Number(v.keys.items));
  // Round trip: the document encoded again, cut into pieces of the given line counts and
  // sealed with the given nonces, is the very same object.
  const lines = encodeIndex({ snapshot: v.keys.snapshot, hash: (v.keys.hash ?? 'sha384') as BlockHash }, items, Number(v.keys.version ?? 1)).split(/(?<=\n)/);
  const counts = v.keys['piece-lines'].split(' ').map(Number);
  const nonces = v.keys.nonces.split(' ').map((n) => Buffer.from(n, 'hex'));
  assert.equal(counts.length, nonces.length, 'one nonce per piece');
  assert.equal(counts.reduce((a, b) => a + b, 0), lines.length, 'piece-lines covers the document');
  const parts: Uint8Array[] = [];
  let at = 0;
  counts.forEach((n, piece) => {
    const plain = Buffer.from(lines.slice(at, at + n).join(''), 'latin1');
    at += n;
    const env = sealEnvelope(key, nonces[piece], Number(v.keys.codec), plain.length, plain, indexContext(v.keys.snapshot, piece));
    const frame = Buffer.alloc(INDEX_PIECE_FRAME);
    frame.writeUInt32BE(env.length);
    parts.push(frame, env);
  });
  assert.deepEqual(Buffer.concat(parts), v.body);
});

test('vectors: envelope-header/index-empty is sealed with the index context of piece 0', () => {
  const v = loadVectors('envelope-header').find((x) => x.name === 'index-empty')!;
  assert.equal(v.keys.context, Buffer.from(indexContext('alpha_2026-11-22_full', 0)).toString('hex'));
});

eachVector('envelope-header', (v) => {
  const maxPlain = Number(v.keys['max-plain']);
  assert.ok(Number.isSafeInteger(maxPlain), 'max-plain');
  if (v.keys.expect === 'failure') return expectFormatError(() => decodeEnvelopeHeader(v.body, maxPlain, v.name), v.keys.code, v.name);
  const h = decodeEnvelopeHeader(v.body, maxPlain, v.name);
  assert.equal(h.codec, Number(v.keys.codec));
  assert.equal(h.plainLength, Number(v.keys['plain-length']));
  assert.equal(Buffer.from(h.nonce).toString('hex'), v.keys.nonce);
  const header = encodeEnvelopeHeader(h);
  assert.deepEqual(Buffer.from(header), v.body.subarray(0, ENVELOPE_HEADER));
  // The body is a whole envelope: check the AEAD binding of header and context with node's GCM.
  const key = Buffer.from(v.keys.key, 'hex'), context = Buffer.from(v.keys.context, 'hex'), payload = Buffer.from(v.keys.payload, 'hex');
  const c = createCipheriv('aes-256-gcm', key, h.nonce);
  c.setAAD(Buffer.concat([header, context]));
  assert.deepEqual(Buffer.concat([header, c.update(payload), c.final(), c.getAuthTag()]), v.body);
  const d = createDecipheriv('aes-256-gcm', key, h.nonce);
  d.setAAD(Buffer.concat([header, context]));
  d.setAuthTag(v.body.subarray(v.body.length - TAG_LENGTH));
  assert.deepEqual(Buffer.concat([d.update(v.body.subarray(ENVELOPE_HEADER, v.body.length - TAG_LENGTH)), d.final()]), payload);
});

eachVector('tar-header', (v) => {
  if (v.keys.expect === 'failure') return expectFormatError(() => decodeTarHeader(v.body, 0), v.keys.code, v.name);
  const h = decodeTarHeader(v.body, 0);
  if (v.keys.result === 'end-of-archive') return assert.equal(h, null);
  assert.ok(h);
  assert.equal(h.name, v.keys.name);
  assert.equal(h.size, Number(v.keys.size));
  assert.deepEqual(Buffer.from(encodeTarHeader(h.name, h.size, Number(v.keys.mtime))), v.body);
});

eachVector('volume-header', (v) => {
  if (v.keys.expect === 'failure') return expectFormatError(() => decodeVolumeHeader(v.body, v.name), v.keys.code, v.name);
  assert.deepEqual(Buffer.from(encodeVolumeHeader(decodeVolumeHeader(v.body, v.name))), v.body);
});

eachVector('keyfile', async (v) => {
  const text = v.body.toString('utf8');
  if (v.keys.expect === 'failure') return expectFormatError(() => decodeKeyFile(text, v.name), v.keys.code, v.name);
  const k = decodeKeyFile(text, v.name);
  if (v.keys.result === 'null') return assert.equal(k, null);
  assert.ok(k);
  assert.equal(k.kind, v.keys.kind);
  // A file with CRLF line ends (and perhaps no last one) reads as the LF file keygen writes.
  if (v.keys['line-ends'] === 'crlf') assert.equal(encodeKeyFile(k), text.replace(/\r\n/g, '\n').replace(/\n?$/, '\n'));
  else assert.equal(encodeKeyFile(k), text);
  // Real fixtures: every block is a key openpgp.js reads, of the type the armor says.
  for (const b of k.blocks) {
    const key = await openpgp.readKey({ armoredKey: b.text });
    assert.equal(key.isPrivate(), b.type === 'PRIVATE');
  }
});

// The quote vectors were written by hand from the rule in formats/text.ts, not by quoteBytes.
eachVector('quote', (v) => {
  const text = v.body.toString('latin1');
  if (v.keys.expect === 'failure') return expectFormatError(() => unquoteBytes(text, 0, v.name), v.keys.code, v.name);
  const bytes = Buffer.from(v.keys.bytes, 'hex');
  assert.equal(quoteBytes(bytes), text);
  const q = unquoteBytes(text, 0, v.name);
  assert.deepEqual(Buffer.from(q.bytes), bytes);
  assert.equal(q.end, text.length);
});

eachVector('config', (v) => {
  const where = `config/${v.name}`;
  if (v.keys.expect === 'failure') return expectFormatError(() => decodeConfig(v.body.toString('latin1'), where), v.keys.code, where);
  assert.equal(encodeConfig(decodeConfig(v.body.toString('latin1'), where)), v.body.toString('latin1'));
});

eachVector('disc-label', (v) => {
  const where = `disc-label/${v.name}`;
  if (v.keys.expect === 'failure') return expectFormatError(() => decodeDiscLabel(v.body.toString('latin1'), where), v.keys.code, where);
  assert.equal(encodeDiscLabel(decodeDiscLabel(v.body.toString('latin1'), where)), v.body.toString('latin1'));
});

eachVector('lock', (v) => {
  const where = `lock/${v.name}`;
  if (v.keys.expect === 'failure') return expectFormatError(() => decodeLock(v.body), v.keys.code, where);
  assert.equal(encodeLock(decodeLock(v.body)), v.body.toString('utf8'));
});

eachVector('cache-state', (v) => {
  const where = `cache-state/${v.name}`;
  if (v.keys.expect === 'failure') return expectFormatError(() => decodeCacheState(v.body.toString('latin1'), where), v.keys.code, where);
  const state = decodeCacheState(v.body.toString('latin1'), where);
  assert.equal(state.hash, v.keys.hash ?? 'sha256', 'the hash of the chain (a version 3 state is of a sha384 chain)');
  // A state of the earlier version is read; the current one is written back byte for byte.
  if (v.body.toString('latin1').startsWith(`${CACHE_STATE_MAGIC}\n`)) assert.equal(encodeCacheState(state), v.body.toString('latin1'));
});

eachVector('resume', (v) => {
  const where = `resume/${v.name}`;
  if (v.keys.expect === 'failure') return expectFormatError(() => decodeResume(v.body.toString('latin1'), where), v.keys.code, where);
  const journal = decodeResume(v.body.toString('latin1'), where);
  assert.equal(journal.head.hash, v.keys.hash ?? 'sha256', 'the hash of the run (a version 2 journal is of a sha384 run)');
  // A journal of the earlier version is read; the current one is written back byte for byte.
  if (v.body.toString('latin1').startsWith(`${RESUME_MAGIC}\n`)) assert.equal(encodeResume(journal), v.body.toString('latin1'));
});

test('resume journal: a torn last line and block lines without their volume line are left out, as a crash leaves them', () => {
  const text = readFileSync(new URL('../../test/vectors/resume/two-volumes.txt', import.meta.url), 'latin1').split('\n\n').slice(1).join('\n\n');
  const lines = text.split('\n');
  const v1 = lines.findIndex((l) => l.startsWith('volume '));
  const whole = decodeResume(text, 'two-volumes');
  assert.equal(whole.volumes.length, 2);
  assert.equal(whole.volumes[0].blocks.length, 4);
  assert.deepEqual(whole.volumes[0].blocks.map((b) => b.start), [undefined, undefined, 0, 200]);
  // Cut inside the second volume's line: only the first counts.
  const torn = text.slice(0, text.lastIndexOf('volume ') + 20);
  assert.deepEqual(decodeResume(torn, 'torn').volumes.map((v) => v.volume.name), [whole.volumes[0].volume.name]);
  // Block lines journaled before a crash, with no volume line after them: left out.
  const orphan = lines.slice(0, v1).join('\n') + '\n';
  assert.deepEqual(decodeResume(orphan, 'orphan').volumes, []);
});
