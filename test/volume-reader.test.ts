/**
 * How a restore reads volumes (engine/volumes.ts VolumeReader): the envelopes of the
 * files it is about to restore that lie one after another come through one read a span
 * (up to 4 MiB), those of small files read in order otherwise through a few windowed reads
 * instead of one read each, and reads out of order or of large blocks still get exactly
 * their own bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { backup } from '../engine/backup/backup.js';
import { restore } from '../engine/restore/restore.js';
import { dump } from '../engine/query/dump.js';
import { verify } from '../engine/verify.js';
import { openStorage } from '../engine/storage/open.js';
import type { Storage } from '../engine/storage/storage.js';
import { PackCache, VolumeReader } from '../engine/repo/volumes.js';
import { listSnapshots } from '../engine/repo/repo.js';
import { readManifest } from '../engine/repo/manifest-object.js';
import { digestMatches } from '../engine/crypto/hashes.js';
import type { FileRecord } from '../formats/manifest.js';
import { FormatError, IoError } from '../formats/errors.js';
import { loadKeys, tempDir, MiB } from './helpers.js';
import { tarEntries } from './fault-helpers.js';

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
  // `iebs dump` and `iebs verify --read-data` read the file's blocks alike.
  const d = counting(openStorage(join(dir, 'repo')));
  const parts: Buffer[] = [];
  const dumped = await dump(d.storage, rk, { snapshot: 'latest', path: 'big.bin' }, { write: async (b) => { parts.push(Buffer.from(b)); } });
  assert.equal(dumped.kind, 'file');
  assert.ok(Buffer.concat(parts).equals(big), 'dumped whole');
  assert.ok(d.reads() <= 14, `${d.reads()} volume reads to dump a 24 MiB file`);
  await d.storage.close();
  const v = counting(openStorage(join(dir, 'repo')));
  // Without hashing the volume whole (`--volumes none`): only the blocks' reads are counted.
  const verified = await verify(v.storage, rk.verifiers, { restoreKey: rk, readData: true, volumes: 'none' });
  assert.deepEqual(verified.problems, []);
  assert.ok(verified.blocks > 0);
  assert.ok(v.reads() <= 14, `${v.reads()} volume reads to verify the ${verified.blocks} blocks of a 24 MiB file`);
  await v.storage.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Keys, and a fresh folder with an empty `src` in it. */
async function setUp(name: string) {
  const { bk, rk } = await loadKeys();
  const dir = tempDir(name);
  const src = join(dir, 'src');
  mkdirSync(src, { recursive: true });
  return { bk, rk, dir, src };
}

/**
 * Random content for file `f` of a few dozen: 300 to 500 KiB, too large for a pack and
 * mostly too small for a second block, so one envelope each.
 */
function oneEnvelope(f: number): Buffer {
  return randomBytes(300 * 1024 + ((f * 7919) % 200) * 1024);
}

test('files restored into an empty target are read a span at a time: their envelopes and the headers between, no more', async () => {
  const { bk, rk, dir, src } = await setUp('volume-spans');
  // One envelope each, one after another in the volume. Read one at a time, that is 40 reads.
  const files = new Map<string, Buffer>();
  for (let f = 0; f < 40; f++) files.set(`f${String(f).padStart(2, '0')}`, oneEnvelope(f));
  for (const [p, b] of files) writeFileSync(join(src, p), b);
  const total = [...files.values()].reduce((n, b) => n + b.length, 0);
  await backup(openStorage(join(dir, 'repo')), bk, { create: true, sources: [src], volumeSize: 64 * MiB, system: 'spans' });
  const c = counting(openStorage(join(dir, 'repo')));
  const r = await restore(c.storage, rk, { target: join(dir, 'out') });
  assert.equal(r.failures.length, 0);
  for (const [p, b] of files) assert.ok(readFileSync(join(dir, 'out', p)).equals(b), `${p} restored whole`);
  // About 17 MiB in spans of up to 4 MiB: 5 or 6 reads, and the header's two.
  assert.ok(c.reads() <= 12, `${c.reads()} volume reads for ${files.size} files`);
  assert.ok(c.bytes() < total + MiB, `read ${c.bytes()} bytes of volumes for ${total}`);

  // Into a target that holds the files already, each file is read when its turn comes
  // (the unchanged are not read at all): only the changed one is read.
  writeFileSync(join(dir, 'out', 'f17'), 'changed');
  const again = counting(openStorage(join(dir, 'repo')));
  const r2 = await restore(again.storage, rk, { target: join(dir, 'out'), overwrite: 'if-changed' });
  assert.equal(r2.failures.length, 0);
  assert.equal(r2.files, 1);
  assert.ok(readFileSync(join(dir, 'out', 'f17')).equals(files.get('f17')!));
  assert.ok(again.bytes() < files.get('f17')!.length + 64 * 1024, `read ${again.bytes()} bytes of volumes for one file`);
  rmSync(dir, { recursive: true, force: true });
});

test('a span is read from its first envelope still wanted: the blocks of a file forgotten before it are not read', async () => {
  const { bk, rk, dir, src } = await setUp('volume-spans-forgotten');
  for (let f = 0; f < 4; f++) writeFileSync(join(src, `f${f}`), oneEnvelope(f));
  await backup(openStorage(join(dir, 'repo')), bk, { create: true, sources: [src], volumeSize: 64 * MiB, system: 'forgotten' });
  const inner = openStorage(join(dir, 'repo'));
  const { snapshots } = await listSnapshots(inner, rk.verifiers);
  const files: FileRecord[] = [];
  await readManifest(inner, rk, rk.verifiers, snapshots[0], (r) => { if (!('deleted' in r) && r.kind === 'file') files.push(r); });
  files.sort((x, y) => x.blocks[0].dataOffset - y.blocks[0].dataOffset);
  const [a, b, c] = files;
  const spans: { offset: number; length: number }[] = [];
  const storage = Object.create(inner) as Storage;
  storage.getRange = async (name, offset, length) => {
    if (name.startsWith('volumes/') && offset > 1024) spans.push({ offset, length });
    return inner.getRange(name, offset, length);
  };
  const reader = new VolumeReader(storage, rk.decryptionKeys, rk.verifiers);
  reader.expect([...a.blocks, ...b.blocks, ...c.blocks]);
  // The first file fails (or is restored another way) before anything is read.
  reader.done(a.blocks);
  const first = b.blocks[0];
  assert.ok(digestMatches(await reader.readUnchecked(first), first.digest));
  const last = c.blocks[c.blocks.length - 1];
  assert.deepEqual(spans, [{ offset: first.dataOffset, length: last.dataOffset + last.length - first.dataOffset }], 'one read, from the second file to the third');
  for (const x of [...b.blocks.slice(1), ...c.blocks]) assert.ok(digestMatches(await reader.readUnchecked(x), x.digest));
  assert.equal(spans.length, 1, 'the rest came from the span');
  reader.done([...b.blocks, ...c.blocks]);
  await inner.close();
  rmSync(dir, { recursive: true, force: true });
});

test('the files of a chain come from the full\'s volume and the increment\'s in turn: each volume is still read a span at a time', async () => {
  const { bk, rk, dir, src } = await setUp('volume-spans-chain');
  // The full holds the even files, the increment adds the odd ones: in path order the
  // restore takes one from each volume in turn.
  const files = new Map<string, Buffer>();
  const add = (f: number) => { const p = `f${String(f).padStart(2, '0')}`; files.set(p, oneEnvelope(f)); writeFileSync(join(src, p), files.get(p)!); };
  for (let f = 0; f < 40; f += 2) add(f);
  await backup(openStorage(join(dir, 'repo')), bk, { create: true, sources: [src], volumeSize: 64 * MiB, system: 'chain' });
  for (let f = 1; f < 40; f += 2) add(f);
  await backup(openStorage(join(dir, 'repo')), bk, { sources: [src], volumeSize: 64 * MiB, system: 'chain' });
  const c = counting(openStorage(join(dir, 'repo')));
  const r = await restore(c.storage, rk, { target: join(dir, 'out') });
  assert.equal(r.failures.length, 0);
  for (const [p, b] of files) assert.ok(readFileSync(join(dir, 'out', p)).equals(b), `${p} restored whole`);
  // About 8 MiB in each volume: 2 or 3 spans each, and each header's two reads. A span
  // ended at each change of volume would make it 40.
  assert.ok(c.reads() <= 14, `${c.reads()} volume reads for ${files.size} files in two volumes`);
  rmSync(dir, { recursive: true, force: true });
});

test('a span that cannot be read is read envelope by envelope: a failed request loses nothing, a damaged place fails its file alone', async () => {
  const { bk, rk, dir, src } = await setUp('volume-spans-fail');
  const big = randomBytes(12 * MiB);
  const small = randomBytes(3000);
  writeFileSync(join(src, 'big.bin'), big);
  writeFileSync(join(src, 'small.txt'), small);
  await backup(openStorage(join(dir, 'repo')), bk, { create: true, sources: [src], volumeSize: 64 * MiB, system: 'spans' });
  const inner = openStorage(join(dir, 'repo'));

  // big.bin's envelopes, from the volume's tar headers (its blocks are about 1 MiB; the
  // catalogue pieces and small.txt's block are smaller).
  const volumes = join(dir, 'repo', 'volumes');
  const [volume] = readdirSync(volumes).filter((n) => n.endsWith('.tar'));
  const envelopes = tarEntries(join(volumes, volume)).filter((e) => !e.name.startsWith('iebs.') && e.size > 64 * 1024);
  assert.ok(envelopes.length >= 4, `${envelopes.length} envelopes of big.bin`);
  const within = (offset: number, length: number) => envelopes.filter((e) => offset <= e.data && e.data + e.size <= offset + length);

  // The first read that takes in two of big.bin's envelopes or more (a span) fails, as a
  // remote store's request may. Each of its envelopes is then read alone.
  const once = Object.create(inner) as Storage;
  let failedSpan: { offset: number; length: number; envelopes: number } | null = null;
  let reads = 0;
  const alone: { offset: number; length: number }[] = [];
  once.getRange = async (name, offset, length) => {
    if (name.startsWith('volumes/')) {
      reads++;
      const inside = within(offset, length);
      if (!failedSpan && inside.length >= 2) {
        failedSpan = { offset, length, envelopes: inside.length };
        throw new IoError('io', `${name}: the read of a span failed here`);
      }
      if (failedSpan && inside.length === 1 && offset >= failedSpan.offset && offset + length <= failedSpan.offset + failedSpan.length) alone.push({ offset, length });
    }
    return inner.getRange(name, offset, length);
  };
  const r = await restore(once, rk, { target: join(dir, 'out') });
  const span = failedSpan as { offset: number; length: number; envelopes: number } | null;
  assert.ok(span, 'a span of two envelopes or more was read');
  assert.equal(r.failures.length, 0);
  assert.ok(readFileSync(join(dir, 'out', 'big.bin')).equals(big), 'restored whole after the failed read');
  assert.ok(reads > 4, `${reads} reads`);
  assert.equal(alone.length, span.envelopes, `each of the failed span's ${span.envelopes} envelopes read alone (${alone.length})`);

  // Every read that takes in the middle of one of big.bin's envelopes fails (a damaged
  // store): the span holding it, and then that envelope, so only its file fails.
  const middle = envelopes[1].data + Math.floor(envelopes[1].size / 2);
  const damaged = Object.create(inner) as Storage;
  damaged.getRange = async (name, offset, length) => {
    if (name.startsWith('volumes/') && offset <= middle && middle < offset + length) throw new IoError('io', `${name}: bytes at ${middle} cannot be read here`);
    return inner.getRange(name, offset, length);
  };
  const out = join(dir, 'out2');
  const r2 = await restore(damaged, rk, { target: out });
  assert.deepEqual(r2.failures.map((f) => f.path), ['big.bin']);
  assert.match(r2.failures[0].message, /cannot be read here/);
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
