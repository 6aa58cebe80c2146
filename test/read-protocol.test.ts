/**
 * What crosses between the main thread and the reader threads (engine/read-wire.ts):
 * every kind of event and every field comes back as it went, at the edges of its range;
 * paths of any bytes but NUL come back byte for byte; a cut or unknown buffer is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { packEvents, packFiles, unpackEvents, unpackFiles, type ReadFile } from '../engine/backup/read-protocol.js';
import type { ReadEvent } from '../engine/backup/read-protocol.js';

const events: ReadEvent[] = [
  { t: 'block', f: 0, index: 0, offset: 0, size: 0, digest: new Uint8Array(randomBytes(48)), blockId: new Uint8Array(randomBytes(32)), codec: 0, bytes: new Uint8Array(0) },
  { t: 'block', f: 63, index: 0xffffffff, offset: 2 ** 53 - 1, size: 4 * 1024 * 1024, digest: new Uint8Array(randomBytes(48)), blockId: new Uint8Array(randomBytes(32)), codec: -1, bytes: new Uint8Array(randomBytes(60000)) },
  { t: 'end', f: 1, meta: { size: 2n ** 64n - 1n, mtimeNs: -1_000_000_007n, ctimeNs: 2n ** 63n - 1n, ino: 2n ** 64n - 2n, mode: 0o100644n }, read: 2 ** 53 - 1 },
  { t: 'end', f: 2, meta: { size: 0n, mtimeNs: -(2n ** 63n), ctimeNs: 0n, ino: 1n, mode: 0o40755n }, read: 0 },
  { t: 'torn', f: 3, last: false },
  { t: 'torn', f: 4, last: true },
  { t: 'fail', f: 5, vanished: false, message: 'cannot read (EACCES) — ünïcode 日本' },
  { t: 'fail', f: 6, vanished: true, message: '' },
  { t: 'block', f: 7, index: 1, offset: 12345, size: 99, digest: new Uint8Array(randomBytes(32)), blockId: new Uint8Array(randomBytes(32)), codec: 4, bytes: new Uint8Array(randomBytes(99)) },
  // Large and owning its buffer: moves beside the packed buffer.
  { t: 'block', f: 8, index: 0, offset: 0, size: 1 << 20, digest: new Uint8Array(randomBytes(48)), blockId: new Uint8Array(randomBytes(32)), codec: 1, bytes: new Uint8Array(randomBytes(1 << 20).buffer.slice(0)) },
  // Large but a view into a larger buffer: copied in.
  { t: 'block', f: 9, index: 0, offset: 0, size: 100000, digest: new Uint8Array(randomBytes(48)), blockId: new Uint8Array(randomBytes(32)), codec: 1, bytes: new Uint8Array(randomBytes(300000).buffer, 1000, 100000) },
  // A pack (small: copied in) and its members, at the edges of their fields.
  { t: 'pack', f: 10, size: 4 * 1024 * 1024, codec: -1, bytes: new Uint8Array(randomBytes(5000)) },
  { t: 'member', f: 10, size: 1, start: 0, digest: new Uint8Array(randomBytes(32)), blockId: new Uint8Array(randomBytes(32)) },
  { t: 'member', f: 0xffffffff, size: 262144, start: 0xffffffff, digest: new Uint8Array(randomBytes(48)), blockId: new Uint8Array(randomBytes(32)) },
];

/** Events as comparable values (typed arrays as hex). */
const plain = (es: ReadEvent[]) => JSON.parse(JSON.stringify(es, (_, v) => (typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v)));

test('every kind of event comes back as it went, at the edges of each field', () => {
  const want = plain(events);
  // Packed, sent across as a thread would (the moving blob is detached here), unpacked.
  const copy = structuredClone(events);
  const sent = packEvents(copy);
  assert.equal(sent.blobs.length, 1, 'only the large block that owns its buffer moves');
  assert.ok(events.some((e) => e.t === 'pack') && events.some((e) => e.t === 'member'), 'packs and members are among the kinds tried');
  const back = unpackEvents(structuredClone(sent, { transfer: [sent.buf, ...sent.blobs.map((b) => b.buffer as ArrayBuffer)] }));
  assert.deepEqual(plain(back), want);
  assert.equal((copy[9] as Extract<ReadEvent, { t: 'block' }>).bytes.byteLength, 0, 'the blob moved');
  // Digests and ids are copies; small block bytes are views of the one buffer.
  const packed = packEvents(events);
  const unpacked = unpackEvents(packed);
  assert.deepEqual(plain(unpacked), want);
  const b = unpacked[1] as Extract<ReadEvent, { t: 'block' }>;
  assert.notEqual(b.digest.buffer, packed.buf);
  assert.notEqual(b.blockId.buffer, packed.buf);
  assert.equal(b.bytes.buffer, packed.buf);
  assert.deepEqual(unpackEvents(packEvents([])), []);
});

test('a cut or unknown packed buffer is refused', () => {
  const packed = packEvents(events);
  const buf = new Uint8Array(packed.buf);
  for (const cut of [1, 4, 30, 100, buf.length - 1]) {
    assert.throws(() => unpackEvents({ buf: buf.slice(0, cut).buffer, blobs: packed.blobs }), /runs past|unknown type|blobs left over/, `cut at ${cut}`);
  }
  const odd = buf.slice();
  odd[0] = 9;
  assert.throws(() => unpackEvents({ buf: odd.buffer, blobs: packed.blobs }), /unknown type 9/);
  assert.throws(() => unpackEvents({ buf: packed.buf, blobs: [] }), /blob that is not there/);
  assert.throws(() => unpackEvents({ buf: packed.buf, blobs: [...packed.blobs, new Uint8Array(1)] }), /1 blobs left over/);
  assert.throws(() => packEvents([{ ...(events[0] as Extract<ReadEvent, { t: 'block' }>), blockId: new Uint8Array(48) }]), /wrong length/);
  assert.throws(() => packEvents([{ ...(events[0] as Extract<ReadEvent, { t: 'block' }>), digest: new Uint8Array(40) }]), /a digest of 40 bytes/);
  // A digest's length byte that names neither hash is refused, not read as one.
  const lone = packEvents([events[0]]);
  new Uint8Array(lone.buf)[22] = 40;
  assert.throws(() => unpackEvents(lone), /a packed digest of 40 bytes/);
});

test('a job\'s paths of any bytes but NUL come back byte for byte, with their flags and what the walk saw', () => {
  const names = [Buffer.from('/a/b c'), Buffer.from('/tmp/\n\t"\'\\'), Buffer.from([0x2f, 0x80, 0xff, 0xfe, 0x41]), Buffer.from('/x/日本.txt'), Buffer.from('/')];
  const files: ReadFile[] = names.map((n, i) => ({ abs: n.toString('latin1'), skip: i % 2 === 1 }));
  files[1].seen = { size: 5n, mtimeNs: 1_796_608_238_849_337_189n, ctimeNs: -3n };
  files[2].seen = { size: 2n ** 62n, mtimeNs: 0n, ctimeNs: 1n };
  const back = unpackFiles(packFiles(files));
  assert.deepEqual(back, files);
  back.forEach((f, i) => assert.ok(Buffer.from(f.abs, 'latin1').equals(names[i])));
  assert.throws(() => unpackFiles({ paths: 'a\0b', flags: '1', seen: new BigInt64Array(6) }), /2 paths, 1 flags and 6 numbers/);
  assert.throws(() => unpackFiles({ paths: 'a\0b', flags: '11', seen: new BigInt64Array(3) }), /2 paths, 2 flags and 3 numbers/);
  assert.throws(() => unpackFiles({ paths: 'a', flags: '4', seen: new BigInt64Array(3) }), /file flag 4/);
});
