/**
 * How a restore reads volumes (engine/volumes.ts VolumeReader): the envelopes of small
 * files read in order come through a few windowed reads instead of one read each, the
 * large blocks of a file that lie one after another a run (up to 4 MiB) at a time, and
 * reads out of order or of large blocks still get exactly their own bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { backup } from '../engine/backup/backup.js';
import { restore } from '../engine/restore/restore.js';
import { openStorage } from '../engine/storage/open.js';
import type { Storage } from '../engine/storage/storage.js';
import { PackCache } from '../engine/repo/volumes.js';
import { FormatError, IoError } from '../formats/errors.js';
import { loadKeys, tempDir, MiB } from './helpers.js';

/** A storage that counts range reads of volumes, and their bytes. */
function counting(inner: Storage): { storage: Storage; reads: () => number; bytes: () => number } {
  let reads = 0, bytes = 0;
  const storage = Object.create(inner) as Storage;
  storage.getRange = async (name, offset, length) => {
    if (name.startsWith('volumes/')) { reads++; bytes += length; }
    return inner.getRange(name, offset, length);
  };
  return { storage, reads: () => reads, bytes: () => bytes };
}

test('small files in order are read through windows; a subset and large files read only their own', async () => {
  // Small files each in an envelope of their own, as before packs (`pack: false`).
  const { bk, rk } = await loadKeys();
  const dir = tempDir('volume-reader');
  const src = join(dir, 'src');
  const files = new Map<string, Buffer>();
  for (let d = 0; d < 4; d++) {
    mkdirSync(join(src, `d${d}`), { recursive: true });
    for (let f = 0; f < 100; f++) files.set(`d${d}/f${f}`, randomBytes(100 + ((f * 797) % 3000)));
  }
  files.set('big.bin', randomBytes(5 * MiB));
  for (const [p, b] of files) writeFileSync(join(src, p), b);
  await backup(openStorage(join(dir, 'repo')), bk, { create: true, sources: [src], volumeSize: 64 * MiB, system: 'win', pack: false });

  const all = counting(openStorage(join(dir, 'repo')));
  const out = join(dir, 'out');
  const r = await restore(all.storage, rk, { target: out });
  assert.equal(r.failures.length, 0);
  for (const [p, b] of files) assert.ok(readFileSync(join(out, p)).equals(b), `${p} restored whole`);
  // 400 small files and a few large blocks: one read each would be over 400.
  assert.ok(all.reads() < 60, `${all.reads()} volume reads for ${files.size} files`);

  // One small file alone: its own envelope, not a window.
  const one = counting(openStorage(join(dir, 'repo')));
  const out2 = join(dir, 'out2');
  const r2 = await restore(one.storage, rk, { target: out2, include: [/^d2\/f7$/] });
  assert.equal(r2.files, 1);
  assert.ok(readFileSync(join(out2, 'd2/f7')).equals(files.get('d2/f7')!));
  assert.ok(one.bytes() < 64 * 1024, `read ${one.bytes()} bytes of volumes for one small file`);

  // Packed: the same small file is read with its pack (a batch's new files: about 1 MiB
  // of them, these being incompressible), and all 400 with a handful of reads.
  await backup(openStorage(join(dir, 'packed')), bk, { create: true, sources: [src], volumeSize: 64 * MiB, system: 'win' });
  const packed = counting(openStorage(join(dir, 'packed')));
  const r3 = await restore(packed.storage, rk, { target: join(dir, 'out3'), include: [/^d2\/f7$/] });
  assert.equal(r3.files, 1);
  assert.ok(readFileSync(join(dir, 'out3', 'd2/f7')).equals(files.get('d2/f7')!));
  assert.ok(packed.bytes() > 64 * 1024 && packed.bytes() < 2 * MiB, `read ${packed.bytes()} bytes of volumes for one small file in a pack`);
  const whole = counting(openStorage(join(dir, 'packed')));
  const r4 = await restore(whole.storage, rk, { target: join(dir, 'out4') });
  assert.equal(r4.failures.length, 0);
  for (const [p, b] of files) assert.ok(readFileSync(join(dir, 'out4', p)).equals(b), `${p} restored whole from a pack`);
  assert.ok(whole.reads() < 30, `${whole.reads()} volume reads for ${files.size} files with packs`);
  rmSync(dir, { recursive: true, force: true });
});

test('the blocks of a large file that lie one after another are read a run at a time, each block its own bytes', async () => {
  const { bk, rk } = await loadKeys();
  const dir = tempDir('volume-runs');
  const src = join(dir, 'src');
  mkdirSync(src, { recursive: true });
  // Random bytes: about 24 blocks (1 MiB on average), stored as they are, one after another.
  const big = randomBytes(24 * MiB);
  writeFileSync(join(src, 'big.bin'), big);
  await backup(openStorage(join(dir, 'repo')), bk, { create: true, sources: [src], volumeSize: 64 * MiB, system: 'runs' });
  const c = counting(openStorage(join(dir, 'repo')));
  const r = await restore(c.storage, rk, { target: join(dir, 'out') });
  assert.equal(r.failures.length, 0);
  assert.ok(readFileSync(join(dir, 'out', 'big.bin')).equals(big), 'restored whole');
  // One read a block would be about 24 (and the volume's header two more); runs of up to
  // 4 MiB make it 6 to 8, each reading only the envelopes and the tar headers between them.
  assert.ok(c.reads() <= 14, `${c.reads()} volume reads for a 24 MiB file`);
  assert.ok(c.bytes() < 24 * MiB + 2 * MiB, `read ${c.bytes()} bytes of volumes for 24 MiB`);
  rmSync(dir, { recursive: true, force: true });
});

test('a run that cannot be read fails its file alone: the others are restored, no temporary file is left', async () => {
  const { bk, rk } = await loadKeys();
  const dir = tempDir('volume-runs-fail');
  const src = join(dir, 'src');
  mkdirSync(src, { recursive: true });
  const big = randomBytes(12 * MiB);
  const small = randomBytes(3000);
  writeFileSync(join(src, 'big.bin'), big);
  writeFileSync(join(src, 'small.txt'), small);
  await backup(openStorage(join(dir, 'repo')), bk, { create: true, sources: [src], volumeSize: 64 * MiB, system: 'runs' });
  // Reads of more than 1.5 MiB are runs of several blocks (blocks are about 1 MiB): the
  // first one fails, as a remote store's request may.
  const inner = openStorage(join(dir, 'repo'));
  const storage = Object.create(inner) as Storage;
  let failed = 0;
  storage.getRange = async (name, offset, length) => {
    if (name.startsWith('volumes/') && length > 1.5 * MiB && failed++ === 0) throw new IoError('io', `${name}: the read of a run failed here`);
    return inner.getRange(name, offset, length);
  };
  const out = join(dir, 'out');
  const r = await restore(storage, rk, { target: out });
  assert.equal(failed >= 1, true, 'a run was read');
  assert.deepEqual(r.failures.map((f) => f.path), ['big.bin']);
  assert.match(r.failures[0].message, /the read of a run failed here/);
  assert.ok(readFileSync(join(out, 'small.txt')).equals(small), 'the other file restored');
  assert.deepEqual(readdirSync(out).sort(), ['small.txt'], 'no temporary file left, no half-written big.bin');
  rmSync(dir, { recursive: true, force: true });
});

test('a pack is opened once for its blocks; a block past its end is refused; a pack that failed to open is tried again', async () => {
  const packs = new PackCache(2);
  const ref = (start: number, size: number) => ({ index: 0, size, digest: new Uint8Array(48), offset: 0, volume: 'v.files.0001.tar', dataOffset: 512, length: 100, entry: 'e', start });
  let opens = 0;
  const plain = Buffer.from('alpha bravo charlie');
  const open = async () => { opens++; return plain; };
  assert.equal(Buffer.from(await packs.block('v@512', ref(6, 5), open)).toString(), 'bravo');
  assert.equal(Buffer.from(await packs.block('v@512', ref(0, 5), open)).toString(), 'alpha');
  assert.equal(opens, 1, 'the second block came from the kept pack');
  // A start and size that a manifest may claim but the pack does not hold.
  await assert.rejects(packs.block('v@512', ref(15, 5), open), (e: unknown) => e instanceof FormatError && e.code === 'bad-size');
  let tries = 0;
  const failing = async (): Promise<Uint8Array> => { tries++; throw new FormatError('auth-failed', 'damaged'); };
  await assert.rejects(packs.block('w@512', ref(0, 1), failing), /damaged/);
  await assert.rejects(packs.block('w@512', ref(0, 1), failing), /damaged/);
  assert.equal(tries, 2, 'a failure is not kept');
  // Only `kept` packs stay: a third pack pushes out the first.
  await packs.block('x@512', ref(0, 1), open);
  await packs.block('y@512', ref(0, 1), open);
  await packs.block('v@512', ref(0, 1), open);
  assert.equal(opens, 4);
});
