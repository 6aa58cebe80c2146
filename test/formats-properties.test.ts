/**
 * Property tests of formats/: decode∘encode is the identity for every structure, on
 * arbitrary valid values (fast-check; SLOW=1 runs 20 times more cases).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DocEncoder, DocParser, decodeDoc, encodeRecord, LineSplitter, type DocItem } from '../formats/manifest.js';
import { decodeSnapshotRecord, encodeSnapshotRecord } from '../formats/snapshot.js';
import { decodeIndex, encodeIndex, type IndexItem } from '../formats/blockindex.js';
import { decodeEnvelopeHeader, encodeEnvelopeHeader, TAG_LENGTH } from '../formats/envelope.js';
import { decodeTarHeader, encodeTarHeader, TAR_BLOCK } from '../formats/tar.js';
import { decodeVolumeHeader, decodeVolumeKey, encodeVolumeHeader, encodeVolumeKey } from '../formats/volume.js';
import { formatTime, parseTime, quoteBytes, unquoteBytes } from '../formats/text.js';
import { blockEntry, parseBlockEntry } from '../formats/names.js';
import {
  blockHashArb, catalogHeaderArb, encodeItems, manifestItemsArb, recordArb, runs, slices, snapshotNameArb, snapshotRecordArb,
  indexItemsArb, rec, timeArb, uuidArb, volumeHeaderArb,
} from './formats-helpers.js';

const bytesArb = fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 50 }).map((s) => new Uint8Array(Buffer.from(s, 'utf8'))));

test('quoteBytes/unquoteBytes is the identity on any bytes, and the quoted form is printable ASCII', () => {
  fc.assert(fc.property(bytesArb, fc.string({ maxLength: 5 }), (bytes, tail) => {
    const q = quoteBytes(bytes);
    assert.match(q, /^'[\x20-\x7e]*'$/);
    const back = unquoteBytes(q + tail, 0, 'prop');
    assert.deepEqual(back.bytes, bytes);
    assert.equal(back.end, q.length);
  }), runs(200));
});

test('formatTime/parseTime is the identity from year 0000 to 9999, with nanoseconds and before 1970', () => {
  fc.assert(fc.property(timeArb, (ns) => {
    const s = formatTime(ns);
    assert.match(s, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$/);
    assert.equal(parseTime(s, 'prop'), ns);
  }), runs(500));
});

test('formatTime agrees with Date.toISOString where both apply', () => {
  fc.assert(fc.property(fc.integer({ min: -62_000_000_000_000, max: 253_000_000_000_000 }), fc.integer({ min: 0, max: 999_999 }), (ms, subMs) => {
    const ns = BigInt(ms) * 1_000_000n + BigInt(subMs);
    const iso = new Date(ms).toISOString();
    assert.equal(formatTime(ns), `${iso.slice(0, 20)}${iso.slice(20, 23)}${String(subMs).padStart(6, '0')}Z`);
  }), runs(200));
});

test('parseTime accepts a calendar date and time exactly when Date does, and agrees with it', () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 9999 }), fc.integer({ min: 0, max: 13 }), fc.integer({ min: 0, max: 32 }), fc.integer({ min: 0, max: 25 }), fc.integer({ min: 0, max: 61 }), fc.integer({ min: 0, max: 61 }), fc.integer({ min: 0, max: 999_999_999 }),
    (y, mo, d, h, mi, s, frac) => {
      const p = (n: number, w = 2) => String(n).padStart(w, '0');
      const text = `${p(y, 4)}-${p(mo)}-${p(d)}T${p(h)}:${p(mi)}:${p(s)}.${p(frac, 9)}Z`;
      const at = new Date(0);
      at.setUTCFullYear(y, mo - 1, d);
      at.setUTCHours(h, mi, s, 0);
      const valid = at.getUTCFullYear() === y && at.getUTCMonth() === mo - 1 && at.getUTCDate() === d && at.getUTCHours() === h && at.getUTCMinutes() === mi && at.getUTCSeconds() === s;
      if (valid) assert.equal(parseTime(text, 'prop'), BigInt(at.getTime() / 1000) * 1_000_000_000n + BigInt(frac));
      else assert.throws(() => parseTime(text, 'prop'), { code: 'bad-time' });
    }), runs(2000));
});

test('blockEntry/parseBlockEntry is the identity', () => {
  fc.assert(fc.property(uuidArb, fc.integer({ min: 0, max: 99_999_999 }), (uuid, index) => {
    assert.deepEqual(parseBlockEntry(blockEntry(uuid, index), 'prop'), { uuid, index });
  }), runs(200));
});

test('encodeRecord then DocParser gives back the same record', () => {
  fc.assert(fc.property(recordArb, (record) => {
    const parser = new DocParser('manifest', 'prop');
    const header = new DocEncoder('manifest').header({ snapshot: 'a_2026-01-01_full', time: 0n, host: 'h', volumes: [] });
    const lines = (header + encodeRecord(record)).split('\n').slice(0, -1);
    const items = lines.map((l) => parser.line(l)).filter((x): x is DocItem => x !== null);
    assert.equal(items.length, 2);
    assert.deepEqual(items[1], { type: 'record', record });
  }), runs(200));
});

test('whole manifests fed in 1-byte, 321-byte and random slices parse to the same items', () => {
  fc.assert(fc.property(manifestItemsArb, fc.array(fc.integer({ min: 1, max: 700 }), { minLength: 1, maxLength: 20 }), (items, random) => {
    const text = encodeItems('manifest', items);
    const bytes = Buffer.from(text, 'latin1');
    assert.deepEqual(decodeDoc('manifest', bytes, 'prop'), items);
    for (const lengths of [[1], [321], random]) {
      const split = new LineSplitter('prop');
      const parser = new DocParser('manifest', 'prop');
      const got: DocItem[] = [];
      for (const piece of slices(bytes, lengths)) for (const l of split.push(piece)) { const it = parser.line(l); if (it) got.push(it); }
      split.end();
      parser.finish();
      assert.deepEqual(got, items, `slices ${lengths.join(',')}`);
    }
  }), runs(100));
});

test('catalogues: encode then decode is the identity (blocks may be sparse)', () => {
  const sparse = fc.tuple(recordArb, fc.array(fc.boolean(), { minLength: 4, maxLength: 4 })).map(([r, keep]) => ({ ...r, blocks: r.blocks.filter((_, i) => keep[i]) }));
  fc.assert(fc.property(catalogHeaderArb, fc.array(sparse, { maxLength: 4 }), (header, records) => {
    // A catalogue lists only blocks of its own volume.
    const own = records.map((r) => ({ ...r, blocks: r.blocks.map((b) => ({ ...b, volume: header.volume })) }));
    const items: DocItem[] = [{ type: 'header', header }, ...own.map((record): DocItem => ({ type: 'record', record })), { type: 'end' }];
    assert.deepEqual(decodeDoc('catalog', Buffer.from(encodeItems('catalog', items), 'latin1'), 'prop'), items);
  }), runs(100));
});

test('snapshot records: encode then decode is the identity', () => {
  fc.assert(fc.property(snapshotRecordArb, (r) => {
    const text = encodeSnapshotRecord(r);
    assert.deepEqual(decodeSnapshotRecord(text, 'prop'), r);
  }), runs(200));
});

test('index: encode then decode is the identity', () => {
  fc.assert(fc.property(snapshotNameArb, blockHashArb, indexItemsArb, (snapshot, hash, items) => {
    const got: IndexItem[] = [];
    assert.deepEqual(decodeIndex(encodeIndex({ snapshot, hash }, items), 'prop', (it) => got.push(it)), { snapshot, hash });
    assert.deepEqual(got, items);
  }), runs(200));
});

test('envelope header: encode then decode is the identity', () => {
  const arb = rec({ codec: fc.integer({ min: 0, max: 255 }), plainLength: fc.integer({ min: 0, max: 0xffffffff }), nonce: fc.uint8Array({ minLength: 12, maxLength: 12 }) });
  fc.assert(fc.property(arb, (h) => {
    const env = new Uint8Array(20 + TAG_LENGTH);
    env.set(encodeEnvelopeHeader(h));
    const got = decodeEnvelopeHeader(env, 0xffffffff, 'prop');
    assert.deepEqual({ ...got, nonce: new Uint8Array(got.nonce) }, h);
  }), runs(200));
});

test('tar header: encode then decode is the identity', () => {
  const arb = rec({
    name: fc.stringMatching(/^[\x21-\x7e]{1,100}$/),
    size: fc.oneof(fc.integer({ min: 0, max: 0o77777777777 }), fc.constantFrom(0, 0o77777777777)),
    mtime: fc.integer({ min: 0, max: 0o77777777777 }),
  });
  fc.assert(fc.property(arb, ({ name, size, mtime }) => {
    const h = encodeTarHeader(name, size, mtime);
    assert.equal(h.length, TAR_BLOCK);
    assert.deepEqual(decodeTarHeader(h, 0), { name, size });
  }), runs(200));
});

test('volume header: encode then decode is the identity', () => {
  fc.assert(fc.property(volumeHeaderArb, (h) => {
    assert.deepEqual(decodeVolumeHeader(encodeVolumeHeader(h), 'prop'), h);
  }), runs(100));
});

test('sealed volume key plaintext: encode then decode is the identity, bound to its volume id', () => {
  const id = fc.uint8Array({ minLength: 16, maxLength: 16 });
  fc.assert(fc.property(id, id, fc.uint8Array({ minLength: 32, maxLength: 32 }), (volumeId, other, key) => {
    const plain = encodeVolumeKey(volumeId, key);
    assert.deepEqual(decodeVolumeKey(plain, volumeId, 'prop'), key);
    if (!Buffer.from(other).equals(volumeId)) assert.throws(() => decodeVolumeKey(plain, other, 'prop'), { code: 'bad-key' });
  }), runs(200));
});
