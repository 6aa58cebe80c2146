/**
 * Damage tests of the formats/ decoders: random mutations (flip a byte, cut the tail,
 * insert a byte, drop a line) of valid manifests, catalogues, snapshot records, index
 * documents, volume, envelope and tar headers and key files either decode or throw a
 * FormatError, never another error type. Where a mutation keeps the checksums right
 * (the document is sealed again after the damage), the field checks themselves are
 * reached. And since every decoder accepts exactly what its encoder writes, whatever
 * still decodes must encode back to the same bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeDoc, encodeManifestHeader, encodeCatalogHeader, encodeRecord, encodeDeletion, type DocItem } from '../formats/manifest.js';
import { decodeSnapshotRecord, encodeSnapshotRecord } from '../formats/snapshot.js';
import { decodeIndex, encodeIndex, encodeIndexItem, type IndexItem } from '../formats/blockindex.js';
import { decodeEnvelopeHeader, encodeEnvelopeHeader, ENVELOPE_HEADER } from '../formats/envelope.js';
import { decodeTarHeader } from '../formats/tar.js';
import { decodeVolumeHeader, encodeVolumeHeader } from '../formats/volume.js';
import { decodeKeyFile } from '../formats/keyfile.js';
import { formatTime, parseTime, parseUint, quoteBytes, unquoteBytes } from '../formats/text.js';
import { FormatError } from '../formats/errors.js';
import { loadVectors } from './vectors.js';
import {
  blockHashArb, catalogHeaderArb, decodesOrFormatError, encodeItems, indexItemsArb, manifestItemsArb, mutate, mutateText, mutationArb, recordArb,
  rec, runs, sealDoc, sealIndex, snapshotNameArb, snapshotRecordArb, volumeHeaderArb, type Mutation, type RawPart,
} from './formats-helpers.js';

const show = (m: Mutation) => JSON.stringify(m);
const latin1 = (s: string) => Buffer.from(s, 'latin1');

test('damaged manifests decode or throw a FormatError', () => {
  fc.assert(fc.property(manifestItemsArb, mutationArb, (items, m) => {
    const bytes = mutate(latin1(encodeItems('manifest', items)), m);
    decodesOrFormatError(() => decodeDoc('manifest', bytes, 'mut'), () => show(m));
  }), runs(200));
});

/** A manifest as raw lines: header lines (with the blank line) and parts. */
function rawManifest(items: DocItem[]): { header: string[]; parts: RawPart[] } {
  const [first, ...rest] = items;
  if (first.type !== 'header') throw new Error('no header');
  const header = encodeManifestHeader(first.header as Parameters<typeof encodeManifestHeader>[0]).split('\n').slice(0, -1);
  const parts: RawPart[] = [];
  for (const it of rest) {
    if (it.type === 'record') parts.push({ record: encodeRecord(it.record).split('\n').slice(0, -2) });
    else if (it.type === 'deleted') parts.push({ line: encodeDeletion(it.uuid).slice(0, -1) });
  }
  return { header, parts };
}

/** Damages one line of a raw document (or drops it, or doubles it) and seals it again. */
const lineDamageArb = rec({ line: fc.nat(), how: fc.oneof(mutationArb.map((m) => ({ m })), fc.constantFrom('drop' as const, 'double' as const)) });
function damageLine(lines: string[], d: { line: number; how: { m: Mutation } | 'drop' | 'double' }): void {
  const i = d.line % lines.length;
  if (d.how === 'drop') lines.splice(i, 1);
  else if (d.how === 'double') lines.splice(i, 0, lines[i]);
  else lines[i] = mutateText(lines[i], d.how.m);
}

/** Picks the line `d.line` over header and parts, damages it and seals the document again. */
function resealDamaged(kind: 'manifest' | 'catalog', raw: { header: string[]; parts: RawPart[] }, d: Parameters<typeof damageLine>[1]): string {
  const all: string[][] = [raw.header, ...raw.parts.map((p) => ('record' in p ? p.record : [p.line]))];
  const total = all.reduce((n, l) => n + l.length, 0);
  let at = d.line % total;
  for (const [k, lines] of all.entries()) {
    if (at < lines.length) {
      damageLine(lines, { ...d, line: at });
      if (k > 0 && 'line' in raw.parts[k - 1]) raw.parts.splice(k - 1, 1, ...lines.map((line) => ({ line })));
      break;
    }
    at -= lines.length;
  }
  return sealDoc(kind, raw.header, raw.parts);
}

test('manifests damaged in one line and sealed again decode or throw a FormatError, and what decodes is canonical', () => {
  fc.assert(fc.property(manifestItemsArb, lineDamageArb, (items, d) => {
    const text = resealDamaged('manifest', rawManifest(items), d);
    const got = decodesOrFormatError(() => decodeDoc('manifest', latin1(text), 'mut'), () => JSON.stringify(d));
    if (!(got instanceof FormatError)) assert.equal(encodeItems('manifest', got), text, `accepted a form the encoder does not write (${JSON.stringify(d)})`);
  }), runs(300));
});

test('catalogues damaged in one line and sealed again decode or throw a FormatError, and what decodes is canonical', () => {
  fc.assert(fc.property(catalogHeaderArb, fc.array(recordArb, { maxLength: 4 }), lineDamageArb, (header, records, d) => {
    const raw = { header: encodeCatalogHeader(header).split('\n').slice(0, -1), parts: records.map((r): RawPart => ({ record: encodeRecord(r).split('\n').slice(0, -2) })) };
    const text = resealDamaged('catalog', raw, d);
    const got = decodesOrFormatError(() => decodeDoc('catalog', latin1(text), 'mut'), () => JSON.stringify(d));
    if (!(got instanceof FormatError)) assert.equal(encodeItems('catalog', got), text, `accepted a form the encoder does not write (${JSON.stringify(d)})`);
  }), runs(200));
});

test('damaged snapshot records decode or throw a FormatError, and what decodes is canonical', () => {
  fc.assert(fc.property(snapshotRecordArb, fc.array(mutationArb, { minLength: 1, maxLength: 3 }), (r, ms) => {
    const text = ms.reduce((t, m) => mutateText(t, m), encodeSnapshotRecord(r));
    const got = decodesOrFormatError(() => decodeSnapshotRecord(text, 'mut'), () => JSON.stringify(ms));
    if (!(got instanceof FormatError)) assert.equal(encodeSnapshotRecord(got), text);
  }), runs(300));
});

test('damaged index documents decode or throw a FormatError; sealed again, what decodes is canonical', () => {
  fc.assert(fc.property(snapshotNameArb, blockHashArb, indexItemsArb, mutationArb, fc.boolean(), (snapshot, hash, items, m, reseal) => {
    const text = encodeIndex({ snapshot, hash }, items);
    const damaged = reseal ? sealIndex(mutateText(text.slice(0, text.indexOf('-- END OF INDEX')), m)) : mutateText(text, m);
    const got: IndexItem[] = [];
    const name = decodesOrFormatError(() => decodeIndex(damaged, 'mut', (it) => got.push(it)), () => show(m));
    // A flipped bit can turn the version line into an earlier one that still decodes
    // ("IEBS-INDEX 1" with no packed block): canonical in the version it was read as.
    const version = damaged.startsWith('IEBS-INDEX 1\n') ? 1 : damaged.startsWith('IEBS-INDEX 2\n') ? 2 : 3;
    if (!(name instanceof FormatError)) assert.equal(encodeIndex(name, got, version), damaged);
  }), runs(300));
});

test('damaged volume headers decode or throw a FormatError, and what decodes is canonical', () => {
  fc.assert(fc.property(volumeHeaderArb, fc.array(mutationArb, { minLength: 1, maxLength: 3 }), (h, ms) => {
    const bytes = ms.reduce((b, m) => mutate(b, m), encodeVolumeHeader(h));
    const got = decodesOrFormatError(() => decodeVolumeHeader(bytes, 'mut'), () => JSON.stringify(ms));
    if (!(got instanceof FormatError)) assert.deepEqual(Buffer.from(encodeVolumeHeader(got)), Buffer.from(bytes));
  }), runs(300));
});

test('damaged envelope headers decode or throw a FormatError, and what decodes is canonical', () => {
  const arb = rec({ codec: fc.integer({ min: 0, max: 255 }), plainLength: fc.integer({ min: 0, max: 0xffffffff }), nonce: fc.uint8Array({ minLength: 12, maxLength: 12 }) });
  fc.assert(fc.property(arb, fc.integer({ min: 0, max: 64 }), mutationArb, fc.integer({ min: 0, max: 0xffffffff }), (h, extra, m, maxPlain) => {
    const env = new Uint8Array(ENVELOPE_HEADER + 16 + extra);
    env.set(encodeEnvelopeHeader(h));
    const bytes = mutate(env, m);
    const got = decodesOrFormatError(() => decodeEnvelopeHeader(bytes, maxPlain, 'mut'), () => show(m));
    if (!(got instanceof FormatError)) assert.deepEqual(encodeEnvelopeHeader(got), bytes.subarray(0, ENVELOPE_HEADER));
  }), runs(300));
});

test('damaged tar headers decode or throw a FormatError', () => {
  const headers = loadVectors('tar-header').filter((v) => v.body.length === 512).map((v) => v.body);
  const resum = (h: Uint8Array) => {
    const b = Buffer.from(h);
    if (b.length !== 512) return b;
    b.fill(0x20, 148, 156);
    let s = 0;
    for (const x of b) s += x;
    b.write(s.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    return b;
  };
  fc.assert(fc.property(fc.constantFrom(...headers), mutationArb, fc.boolean(), (h, m, fix) => {
    const bytes = fix ? resum(mutate(h, m)) : mutate(h, m);
    decodesOrFormatError(() => decodeTarHeader(bytes, 0), () => show(m));
  }), runs(300));
});

test('damaged key files decode or throw a FormatError', () => {
  const files = loadVectors('keyfile').map((v) => v.body);
  fc.assert(fc.property(fc.constantFrom(...files), fc.array(mutationArb, { minLength: 1, maxLength: 3 }), (f, ms) => {
    const text = Buffer.from(ms.reduce((b, m) => mutate(b, m), f as Uint8Array)).toString('utf8');
    decodesOrFormatError(() => decodeKeyFile(text, 'mut'), () => JSON.stringify(ms));
  }), runs(200));
});

test('damaged vectors of every text structure decode or throw a FormatError', () => {
  const docs = [...loadVectors('manifest').map((v) => ['manifest', v.body] as const), ...loadVectors('catalog').map((v) => ['catalog', v.body] as const)];
  fc.assert(fc.property(fc.constantFrom(...docs), fc.array(mutationArb, { minLength: 1, maxLength: 4 }), ([kind, body], ms) => {
    const bytes = ms.reduce((b, m) => mutate(b, m), body as Uint8Array);
    decodesOrFormatError(() => decodeDoc(kind, bytes, 'mut'), () => JSON.stringify(ms));
  }), runs(300));
});

test('unquoteBytes accepts exactly what quoteBytes writes', () => {
  const chars = fc.constantFrom("'", '\\', 'x', '0', '4', '1', 'a', 'f', 'F', '7', 'e', ' ', '~', '\t', '\x7f', '\xe9', 'q');
  fc.assert(fc.property(fc.array(chars, { maxLength: 12 }).map((a) => "'" + a.join('')), (text) => {
    const got = decodesOrFormatError(() => unquoteBytes(text, 0, 'mut'), () => JSON.stringify(text));
    if (!(got instanceof FormatError)) assert.equal(quoteBytes(got.bytes), text.slice(0, got.end));
  }), runs(1000));
});

test('parseTime and parseUint accept exactly what formatTime and String write', () => {
  const digits = fc.constantFrom(...'0123456789'.split(''));
  fc.assert(fc.property(fc.array(digits, { minLength: 23, maxLength: 23 }), (d) => {
    const text = `${d.slice(0, 4).join('')}-${d.slice(4, 6).join('')}-${d.slice(6, 8).join('')}T${d.slice(8, 10).join('')}:${d.slice(10, 12).join('')}:${d.slice(12, 14).join('')}.${d.slice(14).join('')}Z`;
    const got = decodesOrFormatError(() => parseTime(text, 'mut'), () => text);
    if (!(got instanceof FormatError)) assert.equal(formatTime(got), text);
  }), runs(1000));
  fc.assert(fc.property(fc.stringMatching(/^[-+0-9]{1,18}$/), (text) => {
    const got = decodesOrFormatError(() => parseUint(text, 'mut'), () => text);
    if (!(got instanceof FormatError)) assert.equal(String(got), text);
  }), runs(1000));
});

test('every mutation of an index item line is checked (items sealed one at a time)', () => {
  // A narrower aim than the test above: one item line, damaged, in an otherwise valid index.
  fc.assert(fc.property(snapshotNameArb, indexItemsArb.filter((a) => a.length > 0), mutationArb, (snapshot, items, m) => {
    const lines = items.map(encodeIndexItem);
    lines[0] = mutateText(lines[0], m);
    const doc = sealIndex(`IEBS-INDEX 2\n${snapshot}\n${lines.join('')}`);
    const got: IndexItem[] = [];
    const name = decodesOrFormatError(() => decodeIndex(doc, 'mut', (it) => got.push(it)), () => show(m));
    if (!(name instanceof FormatError)) assert.equal(encodeIndex(name, got, 2), doc);
  }), runs(300));
});
