/**
 * Records as restore and verify keep them in scratch sorters (engine/record-pack.ts):
 * every field comes back as it went, at the edges of its range.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { packRecord, packedKind, packedSize, unpackRecord } from '../engine/scratch/record-pack.js';
import type { BlockRef, FileRecord } from '../formats/manifest.js';

const block = (i: number): BlockRef => ({
  index: i, size: i === 0 ? 0 : 4 * 1024 * 1024, digest: new Uint8Array(randomBytes(i % 2 ? 32 : 48)), offset: 2 ** 53 - 1 - i,
  volume: `sys-${'x'.repeat(60)}_2026-11-22_increment_2026-11-22-18-05-3.files.${String(i).padStart(4, '0')}.tar`, dataOffset: 2 ** 40 + i, length: 0xffffffff + i,
  entry: `ab/${randomUUID()}/${String(i % 10000).padStart(5, '0')}/${String(i).padStart(8, '0')}`,
});

const records: FileRecord[] = [
  { uuid: randomUUID(), path: Buffer.from([0x61, 0x2f, 0x80, 0xff, 0x0a, 0x20]), size: 2 ** 53 - 1, mtimeNs: -(2n ** 63n), uid: 0xffffffff, gid: 0, blockSize: 1048576, kind: 'file', mode: 0o7777, blocks: Array.from({ length: 300 }, (_, i) => block(i)) },
  { uuid: randomUUID(), path: Buffer.from('dir/日本'), size: 0, mtimeNs: 2n ** 63n - 1n, uid: 1000, gid: 1000, blockSize: 0, kind: 'dir', mode: 0o755, blocks: [] },
  { uuid: randomUUID(), path: Buffer.from('link'), size: 0, mtimeNs: 1763800000123456789n, uid: 1, gid: 2, blockSize: 0, kind: 'symlink', mode: 0o777, target: Buffer.from('../a b/\xff', 'latin1'), blocks: [] },
  { uuid: randomUUID(), path: Buffer.alloc(4096, 0x61), size: 1, mtimeNs: 0n, uid: 0, gid: 0, blockSize: 65536, kind: 'file', mode: 0, blocks: [block(7)] },
];

/** A record as comparable values: byte fields as hex, whether Buffer (which JSON sees as {type, data}) or Uint8Array. */
const plain = (r: FileRecord) => JSON.parse(JSON.stringify(r, (_, v) => (
  typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v?.type === 'Buffer' && Array.isArray(v.data) ? Buffer.from(v.data).toString('hex') : v)));

test('a packed record comes back as it went, at the edges of each field', () => {
  for (const r of records) assert.deepEqual(plain(unpackRecord(packRecord(r))), plain(r), r.kind);
  // In the middle of a larger buffer, as a sorter hands it out.
  const packed = packRecord(records[2]);
  const inside = Buffer.concat([randomBytes(13), packed, randomBytes(7)]).subarray(13, 13 + packed.length);
  assert.deepEqual(plain(unpackRecord(inside)), plain(records[2]));
});

test('the kind and size read straight from a packed record are the record\'s, inside a larger buffer too', () => {
  for (const r of records) {
    const packed = packRecord(r);
    const inside = Buffer.concat([randomBytes(5), packed]).subarray(5);
    for (const v of [packed, inside]) {
      assert.equal(packedKind(v), r.kind);
      assert.equal(packedSize(v), r.size);
    }
  }
});

test('a packed record with bytes left over or cut short is refused', () => {
  const packed = packRecord(records[0]);
  assert.throws(() => unpackRecord(Buffer.concat([packed, Buffer.from([0])])), /malformed/);
  assert.throws(() => unpackRecord(packed.subarray(0, packed.length - 1)));
});
