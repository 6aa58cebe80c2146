/**
 * Manifest records as a restore keeps them in its scratch sorters: packed by hand.
 * `v8.serialize` and `deserialize` of a record took about a seventh of the main
 * thread's time restoring small files. Private scratch, never repository content.
 *
 * Layout, integers big-endian: uuid (36 ASCII bytes), kind (u8), mode (u16), uid (u32),
 * gid (u32), size (f64), mtime ns (i64), block size (f64), path (u32 n, n bytes), target
 * (i32 n, -1 when absent, n bytes), blocks (u32 count), each: index (f64), size (f64),
 * digest (u8 n: 48 for sha384, 32 for sha256; then 48 bytes, the first n the digest), offset (f64), data offset (f64), length (f64), start in a pack (f64, -1
 * when none), volume (u16 n, n latin1 bytes), entry (u16 n, n latin1 bytes).
 */
import { ENTRY_KINDS, type BlockRef, type FileRecord } from '../../formats/manifest.js';

const HEAD = 36 + 1 + 2 + 4 + 4 + 8 + 8 + 8;
/** Where the kind and the size lie: read on their own by `packedKind` and `packedSize`. */
const KIND_AT = 36;
const SIZE_AT = 47;
const BLOCK = 8 + 8 + 49 + 8 + 8 + 8 + 8 + 2 + 2;

/** Packs a record. */
export function packRecord(r: FileRecord): Buffer {
  let size = HEAD + 4 + r.path.length + 4 + (r.target ? r.target.length : 0) + 4;
  for (const b of r.blocks) size += BLOCK + b.volume.length + b.entry.length;
  const out = Buffer.allocUnsafe(size);
  const dv = new DataView(out.buffer, out.byteOffset, out.length);
  out.write(r.uuid, 0, 36, 'latin1');
  out[KIND_AT] = ENTRY_KINDS.indexOf(r.kind);
  dv.setUint16(37, r.mode); dv.setUint32(39, r.uid); dv.setUint32(43, r.gid);
  dv.setFloat64(SIZE_AT, r.size); dv.setBigInt64(55, r.mtimeNs); dv.setFloat64(63, r.blockSize);
  let p = HEAD;
  dv.setUint32(p, r.path.length); out.set(r.path, p + 4); p += 4 + r.path.length;
  if (r.target) { dv.setInt32(p, r.target.length); out.set(r.target, p + 4); p += 4 + r.target.length; } else { dv.setInt32(p, -1); p += 4; }
  dv.setUint32(p, r.blocks.length); p += 4;
  for (const b of r.blocks) {
    dv.setFloat64(p, b.index); dv.setFloat64(p + 8, b.size); out[p + 16] = b.digest.length; out.set(b.digest, p + 17); out.fill(0, p + 17 + b.digest.length, p + 65);
    dv.setFloat64(p + 65, b.offset); dv.setFloat64(p + 73, b.dataOffset); dv.setFloat64(p + 81, b.length); dv.setFloat64(p + 89, b.start ?? -1);
    dv.setUint16(p + 97, b.volume.length); out.write(b.volume, p + 99, 'latin1');
    p += 99 + b.volume.length;
    dv.setUint16(p, b.entry.length); out.write(b.entry, p + 2, 'latin1');
    p += 2 + b.entry.length;
  }
  return out;
}

/** The kind of a packed record, read without unpacking it. */
export function packedKind(v: Uint8Array): FileRecord['kind'] | undefined {
  return ENTRY_KINDS[v[KIND_AT]];
}

/** The size field of a packed record, read without unpacking it. */
export function packedSize(v: Uint8Array): number {
  return new DataView(v.buffer, v.byteOffset, v.length).getFloat64(SIZE_AT);
}

/** Unpacks what `packRecord` made; byte fields are views into `v`. */
export function unpackRecord(v: Uint8Array): FileRecord {
  const b = Buffer.from(v.buffer, v.byteOffset, v.length);
  const dv = new DataView(v.buffer, v.byteOffset, v.length);
  let p = HEAD;
  const pathLength = dv.getUint32(p);
  const path = b.subarray(p + 4, p + 4 + pathLength);
  p += 4 + pathLength;
  const targetLength = dv.getInt32(p);
  const target = targetLength < 0 ? undefined : b.subarray(p + 4, p + 4 + targetLength);
  p += 4 + Math.max(0, targetLength);
  const count = dv.getUint32(p);
  p += 4;
  const blocks: BlockRef[] = [];
  for (let i = 0; i < count; i++) {
    const vl = dv.getUint16(p + 97);
    const volume = b.toString('latin1', p + 99, p + 99 + vl);
    const el = dv.getUint16(p + 99 + vl);
    const ref: BlockRef = {
      index: dv.getFloat64(p), size: dv.getFloat64(p + 8), digest: b.subarray(p + 17, p + 17 + b[p + 16]), offset: dv.getFloat64(p + 65),
      dataOffset: dv.getFloat64(p + 73), length: dv.getFloat64(p + 81), volume, entry: b.toString('latin1', p + 101 + vl, p + 101 + vl + el),
    };
    const start = dv.getFloat64(p + 89);
    if (start >= 0) ref.start = start;
    blocks.push(ref);
    p += 101 + vl + el;
  }
  if (p !== v.length || !packedKind(v)) throw new Error('a packed record is malformed');
  const r: FileRecord = {
    uuid: b.toString('latin1', 0, 36), kind: packedKind(v)!, mode: dv.getUint16(37), uid: dv.getUint32(39), gid: dv.getUint32(43),
    size: packedSize(v), mtimeNs: dv.getBigInt64(55), blockSize: dv.getFloat64(63), path, blocks,
  };
  if (target) r.target = target;
  return r;
}
