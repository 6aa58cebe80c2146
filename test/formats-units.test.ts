/**
 * Hand-checked values and boundaries of formats/: expected bytes here are worked out
 * from the layouts in the doc comments, not taken from the encoders.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { blockContext, counterNonce, decodeEnvelopeHeader, encodeEnvelopeHeader, indexContext } from '../formats/envelope.js';
import { decodeTarHeader, encodeTarHeader, tarEntrySize, tarPadding } from '../formats/tar.js';
import { decodeVolumeKey, encodeVolumeKey, VOLUME_HEADER_ENTRY } from '../formats/volume.js';
import { blockEntry, parseBlockEntry, snapshotName, volumeName } from '../formats/names.js';
import { fields, formatTime, parseBigInt, parseSha384, parseTime, parseUint, TIME_NS_MAX, TIME_NS_MIN, U64_MAX } from '../formats/text.js';
import { DocParser, LineSplitter, MAX_LINE } from '../formats/manifest.js';
import { loadVectors } from './vectors.js';
import { expectFormatError } from './formats-helpers.js';

const U = '550e8400-e29b-41d4-a716-446655440000';
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

test('counterNonce is 4 zero bytes then the counter as u64 big-endian', () => {
  assert.equal(hex(counterNonce(0)), '000000000000000000000000');
  assert.equal(hex(counterNonce(1)), '000000000000000000000001');
  assert.equal(hex(counterNonce(2 ** 40 + 7)), '000000000000010000000007');
  assert.equal(hex(counterNonce(Number.MAX_SAFE_INTEGER)), '00000000001fffffffffffff');
});

test('contexts: "iebs-volume-entry" NUL id entry, and "iebs-index" NUL snapshot', () => {
  const id = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
  assert.equal(hex(blockContext(id, 'ab')), Buffer.from('iebs-volume-entry').toString('hex') + '00' + '00112233445566778899aabbccddeeff' + '6162');
  assert.equal(hex(indexContext('s_2026-01-01_full', 258)), Buffer.from('iebs-index').toString('hex') + '00' + Buffer.from('s_2026-01-01_full').toString('hex') + '00' + '00000102');
});

test('envelope header layout and encoder bounds', () => {
  const h = encodeEnvelopeHeader({ codec: 3, plainLength: 0x01020304, nonce: counterNonce(5) });
  assert.equal(hex(h), '01' + '03' + '0000' + '01020304' + '000000000000000000000005');
  assert.throws(() => encodeEnvelopeHeader({ codec: 0, plainLength: 0, nonce: new Uint8Array(11) }), { code: 'bad-nonce' });
  assert.throws(() => encodeEnvelopeHeader({ codec: 256, plainLength: 0, nonce: new Uint8Array(12) }), { code: 'bad-codec' });
  assert.throws(() => encodeEnvelopeHeader({ codec: 0, plainLength: 2 ** 32, nonce: new Uint8Array(12) }), { code: 'absurd-size' });
  // Exactly header + tag is the shortest envelope; the limit is inclusive.
  const env = new Uint8Array(36);
  env.set(encodeEnvelopeHeader({ codec: 0, plainLength: 100, nonce: new Uint8Array(12) }));
  assert.equal(decodeEnvelopeHeader(env, 100, 'x').plainLength, 100);
  expectFormatError(() => decodeEnvelopeHeader(env, 99, 'x'), 'absurd-size', 'limit');
});

test('envelope header decoding does not alias the caller\'s buffer', () => {
  const env = Buffer.alloc(36);
  env.set(encodeEnvelopeHeader({ codec: 0, plainLength: 1, nonce: counterNonce(9) }));
  const h = decodeEnvelopeHeader(env, 10, 'x');
  env.fill(0xee);
  assert.equal(hex(h.nonce), '000000000000000000000009');
});

test('tar header fields sit where ustar puts them (read by hand from the vector)', () => {
  const v = loadVectors('tar-header').find((x) => x.name === 'block-entry')!;
  const h = v.body;
  const field = (off: number, len: number) => h.subarray(off, off + len).toString('latin1');
  assert.equal(field(0, 100).replace(/\0+$/, ''), v.keys.name);
  assert.equal(field(100, 8), '0000644\0');
  assert.equal(field(108, 8), '0000000\0');
  assert.equal(field(116, 8), '0000000\0');
  assert.equal(field(124, 12), Number(v.keys.size).toString(8).padStart(11, '0') + '\0');
  assert.equal(field(136, 12), Number(v.keys.mtime).toString(8).padStart(11, '0') + '\0');
  assert.equal(h[156], 0x30);
  assert.equal(field(257, 8), 'ustar\x0000');
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
  assert.equal(field(148, 8), sum.toString(8).padStart(6, '0') + '\0 ');
});

test('tar sizes, padding and encoder bounds', () => {
  assert.deepEqual([0, 1, 511, 512, 513].map(tarEntrySize), [512, 1024, 1024, 1024, 1536]);
  assert.deepEqual([0, 1, 511, 512, 513].map(tarPadding), [0, 511, 1, 0, 511]);
  assert.throws(() => encodeTarHeader('a b', 0, 0), { code: 'bad-entry' });
  assert.throws(() => encodeTarHeader('', 0, 0), { code: 'bad-entry' });
  assert.throws(() => encodeTarHeader('x'.repeat(101), 0, 0), { code: 'bad-entry' });
  assert.throws(() => encodeTarHeader('x', 8 ** 11, 0), { code: 'absurd-size' });
  assert.equal(decodeTarHeader(encodeTarHeader(VOLUME_HEADER_ENTRY, 0, -5), 0)?.name, VOLUME_HEADER_ENTRY);
});

test('volume header fields sit at the offsets of the layout (read by hand from the vector)', () => {
  const b = loadVectors('volume-header').find((x) => x.name === 'full')!.body;
  const vol = 'alpha_2026-11-22_full.files.0001.tar', snap = 'alpha_2026-11-22_full';
  assert.equal(b.subarray(0, 8).toString('latin1'), 'IEBS-VOL');
  assert.deepEqual([...b.subarray(8, 12)], [1, 1, 0, 0]);
  assert.equal(hex(b.subarray(12, 28)), '00112233445566778899aabbccddeeff');
  assert.equal(b.readUInt16BE(28), vol.length);
  assert.equal(b.subarray(30, 30 + vol.length).toString('latin1'), vol);
  let o = 30 + vol.length;
  assert.equal(b.readUInt16BE(o), snap.length);
  assert.equal(b.subarray(o + 2, o + 2 + snap.length).toString('latin1'), snap);
  o += 2 + snap.length;
  assert.equal(b.readBigUInt64BE(o), BigInt(Date.UTC(2026, 10, 22, 10)) * 1_000_000n + 123_456_789n);
  assert.equal(b.readUInt32BE(o + 8), 64);
  assert.deepEqual([...b.subarray(o + 12)], Array.from({ length: 64 }, (_, i) => i));
});

test('sealed volume key plaintext: "IEBS-VK1" || volume id || data key', () => {
  const id = Buffer.alloc(16, 0x11), key = Buffer.alloc(32, 0x22);
  const p = encodeVolumeKey(id, key);
  assert.equal(hex(p), Buffer.from('IEBS-VK1').toString('hex') + '11'.repeat(16) + '22'.repeat(32));
  assert.deepEqual(Buffer.from(decodeVolumeKey(p, id, 'x')), key);
  expectFormatError(() => decodeVolumeKey(p, Buffer.alloc(16, 0x12), 'x'), 'bad-key', 'other volume');
  expectFormatError(() => decodeVolumeKey(p.subarray(0, 55), id, 'x'), 'bad-key', 'short');
  expectFormatError(() => decodeVolumeKey(Buffer.concat([Buffer.from('IEBS-VK2'), p.subarray(8)]), id, 'x'), 'bad-key', 'magic');
  assert.throws(() => encodeVolumeKey(id, key.subarray(0, 31)), { code: 'bad-key' });
});

test('block entry names: shard, uuid, folder of 10000, 8-digit index', () => {
  assert.equal(blockEntry(U, 311), `55/${U}/00000/00000311`);
  assert.equal(blockEntry(U, 10000), `55/${U}/00001/00010000`);
  assert.equal(blockEntry(U, 99_999_999), `55/${U}/09999/99999999`);
  assert.throws(() => blockEntry(U, 100_000_000), { code: 'absurd-size' });
  assert.throws(() => blockEntry(U, -1), { code: 'absurd-size' });
  assert.deepEqual(parseBlockEntry(`55/${U}/00001/00010000`, 'x'), { uuid: U, index: 10000 });
  for (const bad of [`56/${U}/00000/00000000`, `55/${U}/00001/00000000`, `55/${U}/0000/00000000`, `55/${U.toUpperCase()}/00000/00000000`, `55/${U}/00000/00000000/`, `../${U}/00000/00000000`]) {
    expectFormatError(() => parseBlockEntry(bad, 'x'), 'bad-entry', bad);
  }
});

test('volume and snapshot names', () => {
  assert.equal(volumeName('alpha_2026-11-22_full', 1), 'alpha_2026-11-22_full.files.0001.tar');
  assert.equal(volumeName('alpha_2026-11-22_full', 9999), 'alpha_2026-11-22_full.files.9999.tar');
  assert.throws(() => volumeName('a', 0), { code: 'absurd-size' });
  assert.throws(() => volumeName('a', 10000), { code: 'absurd-size' });
  const full = BigInt(Date.UTC(2026, 10, 22, 23, 59)) * 1_000_000n;
  const inc = BigInt(Date.UTC(2026, 10, 23, 10, 0, 59)) * 1_000_000n;
  assert.equal(snapshotName('alpha', 'full', full, full, () => false), 'alpha_2026-11-22_full');
  const used = new Set(['alpha_2026-11-22_full', 'alpha_2026-11-22_full-2']);
  assert.equal(snapshotName('alpha', 'full', full, full, (n) => used.has(n)), 'alpha_2026-11-22_full-3');
  assert.equal(snapshotName('alpha', 'increment', full, inc, () => false), 'alpha_2026-11-22_increment_2026-11-23-10-00');
  assert.throws(() => snapshotName('-alpha', 'full', full, full, () => false), { code: 'bad-name' });
});

test('times: hand-checked values around the epoch and the calendar edges', () => {
  assert.equal(formatTime(0n), '1970-01-01T00:00:00.000000000Z');
  assert.equal(formatTime(-1n), '1969-12-31T23:59:59.999999999Z');
  assert.equal(formatTime(-1_000_000_000n), '1969-12-31T23:59:59.000000000Z');
  assert.equal(formatTime(1n), '1970-01-01T00:00:00.000000001Z');
  assert.equal(parseTime('1969-12-31T23:59:59.999999999Z', 'x'), -1n);
  assert.equal(parseTime('0001-01-01T00:00:00.000000000Z', 'x'), -62135596800n * 1_000_000_000n);
  assert.equal(parseTime('9999-12-31T23:59:59.999999999Z', 'x'), 253402300799999999999n);
  assert.equal(parseTime('2000-02-29T00:00:00.000000000Z', 'x'), 951782400n * 1_000_000_000n);
  assert.equal(parseTime('0400-02-29T00:00:00.000000000Z', 'x'), BigInt(Date.UTC(2000, 1, 29) - 1600 * 31556952000) * 1_000_000n);
  for (const bad of ['1900-02-29T00:00:00.000000000Z', '0100-02-29T00:00:00.000000000Z', '2026-13-01T00:00:00.000000000Z', '2026-01-01T24:00:00.000000000Z', '2026-01-01T00:00:60.000000000Z', '2026-01-01 00:00:00.000000000Z', '2026-01-01T00:00:00.000000000z', '+2026-01-01T00:00:00.000000000Z']) {
    expectFormatError(() => parseTime(bad, 'x'), 'bad-time', bad);
  }
  expectFormatError(() => formatTime(253402300800n * 1_000_000_000n), 'bad-time', 'year 10000');
  expectFormatError(() => formatTime(-62167219200n * 1_000_000_000n - 1n), 'bad-time', 'year -1');
});

test('times: 0000-02-29 (year 0 is a leap year) round-trips', () => {
  const ns = BigInt(Date.UTC(2000, 1, 29, 12) - 2000 * 31556952000) * 1_000_000n;
  assert.equal(formatTime(ns), '0000-02-29T12:00:00.000000000Z');
  assert.equal(parseTime('0000-02-29T12:00:00.000000000Z', 'x'), ns);
});

test('numbers: strict decimal, within the range of each field', () => {
  assert.equal(parseUint('0', 'x'), 0);
  assert.equal(parseUint('9007199254740991', 'x'), Number.MAX_SAFE_INTEGER);
  assert.equal(parseUint('16777216', 'x', 16777216), 16777216);
  expectFormatError(() => parseUint('16777217', 'x', 16777216), 'absurd-size', 'over max');
  expectFormatError(() => parseUint('9007199254740992', 'x'), 'absurd-size', '2^53');
  for (const bad of ['', '01', '-1', '+1', '1e3', '0x10', ' 1', '1 ', '1.0', '١']) expectFormatError(() => parseUint(bad, 'x'), 'bad-number', JSON.stringify(bad));
  // Index times: the nanoseconds of a 64-bit signed count of seconds; inodes: unsigned 64-bit.
  assert.equal(parseBigInt('-9223372036854775808000000000', 'x', TIME_NS_MIN, TIME_NS_MAX), TIME_NS_MIN);
  assert.equal(parseBigInt('9223372036854775807999999999', 'x', TIME_NS_MIN, TIME_NS_MAX), TIME_NS_MAX);
  expectFormatError(() => parseBigInt('-9223372036854775808000000001', 'x', TIME_NS_MIN, TIME_NS_MAX), 'absurd-size', 'below the smallest time');
  expectFormatError(() => parseBigInt('9223372036854775808000000000', 'x', TIME_NS_MIN, TIME_NS_MAX), 'absurd-size', 'past the largest time');
  assert.equal(parseBigInt('18446744073709551615', 'x', 0n, U64_MAX), U64_MAX);
  expectFormatError(() => parseBigInt('18446744073709551616', 'x', 0n, U64_MAX), 'absurd-size', '2^64');
  expectFormatError(() => parseBigInt('-1', 'x', 0n, U64_MAX), 'bad-number', 'unsigned');
  expectFormatError(() => parseBigInt('-0', 'x', TIME_NS_MIN, TIME_NS_MAX), 'bad-number', '-0');
  expectFormatError(() => parseBigInt('1'.repeat(31), 'x', 0n, 10n ** 40n), 'bad-number', '31 digits');
  expectFormatError(() => parseSha384('sha384(' + 'a'.repeat(96) + ')x', 'x'), 'bad-hash', 'suffix');
  expectFormatError(() => parseSha384('sha256(' + 'a'.repeat(96) + ')', 'x'), 'bad-hash', 'sha256');
  expectFormatError(() => fields('a  b', 'x'), 'bad-line', 'double space');
});

test('a number of 17 digits is an absurd size like one of 16 digits over 2^53', () => {
  expectFormatError(() => parseUint('10000000000000000', 'x'), 'absurd-size', '17 digits');
  expectFormatError(() => parseUint('1'.repeat(40), 'x'), 'absurd-size', '40 digits');
});

test('lines: exactly 64 KiB is accepted, one byte more is refused before it is buffered', () => {
  const s = new LineSplitter('x');
  assert.deepEqual(s.push(Buffer.from('a'.repeat(MAX_LINE) + '\n')).map((l) => l.length), [MAX_LINE]);
  expectFormatError(() => new LineSplitter('x').push(Buffer.from('a'.repeat(MAX_LINE + 1) + '\n')), 'line-too-long', 'one chunk');
  // Streamed without a newline: refused as soon as the pending bytes pass the limit.
  const t = new LineSplitter('x');
  const chunk = Buffer.alloc(1000, 0x61);
  let pushed = 0;
  expectFormatError(() => { for (;;) { t.push(chunk); pushed += chunk.length; } }, 'line-too-long', 'streamed');
  assert.ok(pushed <= MAX_LINE, `buffered ${pushed} bytes`);
  expectFormatError(() => new DocParser('manifest', 'x').line('a'.repeat(MAX_LINE + 1)), 'line-too-long', 'parser');
  const u = new LineSplitter('x');
  u.push(Buffer.from('abc'));
  expectFormatError(() => u.end(), 'truncated', 'no final LF');
});

test('a finished parser refuses more lines and an unfinished one refuses to finish', () => {
  const p = new DocParser('manifest', 'x');
  expectFormatError(() => p.finish(), 'truncated', 'empty');
  expectFormatError(() => new DocParser('catalog', 'x').line('IEBS-MANIFEST 1'), 'bad-magic', 'kind');
});
