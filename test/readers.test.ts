/**
 * Backups read files on reader threads (engine/readers.ts) and take their events back in
 * walk order. However many readers there are, a chain must store the same blocks and
 * restore the same trees; blocks the chain holds already are left uncompressed by the
 * readers and then found by the main thread, so a copy and an insertion store almost
 * nothing.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, lstatSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { backup } from '../engine/backup/backup.js';
import { restore } from '../engine/restore/restore.js';
import type { BackupKey, RestoreKey } from '../engine/crypto/keys.js';
import { openStorage } from '../engine/storage/open.js';
import { ReaderPool } from '../engine/backup/readers.js';
import { chunkParams } from '../engine/chunker.js';
import { DEFAULT_CODEC } from '../engine/codec.js';
import { IdBloom } from '../engine/scratch/sorter.js';
import type { ReadEvent } from '../engine/backup/read-protocol.js';
import { IebsError } from '../formats/errors.js';
import { copyTree, diffTrees, loadKeys, readTree, seededBytes, tempDir, writeSeeded, MiB } from './helpers.js';

let bk: BackupKey;
let rk: RestoreKey;
before(async () => {
  ({ bk, rk } = await loadKeys());
});

/** Small files of every kind a batch meets, and files of several blocks. */
function makeTree(src: string): void {
  for (let d = 0; d < 6; d++) {
    mkdirSync(join(src, `d${d}`), { recursive: true });
    for (let f = 0; f < 60; f++) {
      const name = join(src, `d${d}`, f % 7 === 0 ? `f${f}.zip` : `f${f}.txt`);
      if (f % 11 === 0) writeFileSync(name, '');
      else if (f % 2) writeFileSync(name, `text ${d}/${f}\n`.repeat(1 + f * 13));
      else writeFileSync(name, seededBytes(`small-${d}-${f}`, 100 + f * 97));
    }
  }
  writeSeeded(join(src, 'random.bin'), 'readers-random', 6 * MiB);
  writeFileSync(join(src, 'text.log'), Buffer.from('a line of a log that compresses well\n'.repeat(100_000)));
  writeSeeded(join(src, 'd3', 'middle.bin'), 'readers-middle', 700 * 1024);
}

/** A log of `lines` lines in `dir` (about 60 bytes each) that compresses well; its path. */
function writeLog(dir: string, lines: number): string {
  const file = join(dir, 'text.log');
  const text: string[] = [];
  for (let i = 0; i < lines; i++) text.push(`line ${i} of a log that compresses well, ${(i * 7919) % 10007} and ${i % 97}\n`);
  writeFileSync(file, text.join(''));
  return file;
}

/** Copies a large file and inserts bytes near the start of another. */
function change(src: string): void {
  copyFileSync(join(src, 'random.bin'), join(src, 'random-copy.bin'));
  const old = readFileSync(join(src, 'text.log'));
  writeFileSync(join(src, 'text.log'), Buffer.concat([Buffer.from('inserted near the start\n'), old]));
  writeFileSync(join(src, 'd1', 'f1.txt'), 'changed\n');
}

async function chain(dir: string, src: string, readers: number) {
  const storage = openStorage(join(dir, `repo-${readers}`));
  const full = await backup(storage, bk, { create: true, sources: [src], volumeSize: 8 * MiB, system: 'readers', readers });
  return { storage, full };
}

test('one reader and three readers store the same chain, and both restore every snapshot', async () => {
  const dir = tempDir('readers');
  const src = join(dir, 'src');
  makeTree(src);
  const one = await chain(dir, src, 1);
  const three = await chain(dir, src, 3);
  const before = join(dir, 'before');
  copyTree(src, before);
  change(src);
  const incOne = await backup(one.storage, bk, { create: true, sources: [src], volumeSize: 8 * MiB, system: 'readers', readers: 1 });
  const incThree = await backup(three.storage, bk, { create: true, sources: [src], volumeSize: 8 * MiB, system: 'readers', readers: 3 });

  assert.equal(one.full.counts.files, three.full.counts.files);
  // Same blocks, same codecs: only the sealed volume keys differ in size by a few bytes.
  assert.ok(Math.abs(one.full.counts.stored - three.full.counts.stored) < 4096, `${one.full.counts.stored} vs ${three.full.counts.stored}`);
  assert.ok(Math.abs(incOne.counts.stored - incThree.counts.stored) < 4096, `${incOne.counts.stored} vs ${incThree.counts.stored}`);
  // A 6 MiB copy and an insertion into a 3.6 MiB log: only the blocks around the insertion are new.
  assert.ok(incThree.counts.stored < 512 * 1024, `the increment stored ${incThree.counts.stored} bytes`);
  // The text compresses: far less stored than read in the full.
  assert.ok(three.full.counts.stored < three.full.read - 3 * MiB, `full stored ${three.full.counts.stored} of ${three.full.read}`);

  for (const [n, r] of [[1, one], [3, three]] as const) {
    for (const [i, [snapshot, tree]] of ([[r.full.snapshot, before], [n === 1 ? incOne.snapshot : incThree.snapshot, src]] as const).entries()) {
      const out = join(dir, `out-${n}-${i}`);
      const got = await restore(openStorage(join(dir, `repo-${n}`)), rk, { target: out, snapshot });
      assert.deepEqual(got.failures, []);
      assert.deepEqual(diffTrees(readTree(tree), readTree(out)), [], `readers ${n}, snapshot ${i}`);
    }
  }
});

test('a small file before a large one in the same folder: jobs reach one reader in walk order', { timeout: 60_000 }, async () => {
  // The small file waits in a batch while the large one is read; had the large file's
  // job gone to the reader first, the reader would stop at its credit, holding the
  // small file's job behind it, while the main thread waits for the small file.
  const dir = tempDir('readers-order');
  const src = join(dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'a-small.txt'), 'small\n');
  writeSeeded(join(src, 'b-large.bin'), 'readers-order', 3 * MiB);
  writeFileSync(join(src, 'c-small.txt'), 'small too\n');
  const storage = openStorage(join(dir, 'repo'));
  const r = await backup(storage, bk, { create: true, sources: [src], volumeSize: 8 * MiB, system: 'order', readers: 1, limits: { readerCredit: 64 * 1024 } });
  assert.equal(r.counts.files, 3);
  const out = join(dir, 'out');
  const got = await restore(openStorage(join(dir, 'repo')), rk, { target: out });
  assert.deepEqual(got.failures, []);
  assert.deepEqual(diffTrees(readTree(src), readTree(out)), []);
});

test('a reader thread starts with the first files submitted: a pool given none starts none, and closes', { timeout: 60_000 }, async () => {
  const key = new Uint8Array(32).fill(3);
  const init = { blockIdKey: key, blockHash: 'sha384' as const, params: chunkParams(key), codec: DEFAULT_CODEC, bloom: new IdBloom(0).words };
  const idle = new ReaderPool(1, init);
  assert.equal(idle.running, false);
  await idle.close();
  assert.equal(idle.running, false, 'closing starts nothing');
  const dir = tempDir('readers-lazy');
  writeFileSync(join(dir, 'a.txt'), 'read once asked\n');
  const pool = new ReaderPool(1, init);
  try {
    assert.equal(pool.running, false);
    const job = pool.submit([{ abs: Buffer.from(join(dir, 'a.txt')).toString('latin1'), skip: false }], 16);
    assert.equal(pool.running, true);
    let ev;
    do ev = await job.next(); while (ev.t !== 'end' && ev.t !== 'fail');
    assert.equal(ev.t, 'end');
  } finally { await pool.close(); }
});

test('a reader pool stopped while a job is awaited rejects the wait instead of hanging', { timeout: 60_000 }, async () => {
  const dir = tempDir('readers-stop');
  const file = join(dir, 'large.bin');
  writeSeeded(file, 'readers-stop', 4 * MiB);
  const key = new Uint8Array(32).fill(7);
  const pool = new ReaderPool(1, { blockIdKey: key, blockHash: 'sha384', params: chunkParams(key), codec: DEFAULT_CODEC, bloom: new IdBloom(0).words }, 64 * 1024);
  const job = pool.submit([{ abs: Buffer.from(file).toString('latin1'), skip: false }], 4 * MiB);
  // Blocks are never marked taken, so the reader stops at its credit and the job cannot end.
  const first = await job.next();
  assert.equal(first.t, 'block');
  const rest = (async () => { for (;;) if ((await job.next()).t === 'end') return 'ended'; })();
  await pool.close();
  await assert.rejects(rest, (e: unknown) => e instanceof IebsError && /^reader-/.test(e.code));
});

test('a file deleted after the read-ahead opened it, before it was read, is reported as vanished; a file renamed over is read as it is now', { timeout: 60_000 }, async () => {
  const dir = tempDir('readers-vanish');
  const large = join(dir, 'large.bin');
  writeSeeded(large, 'readers-vanish', 24 * MiB);
  const gone = join(dir, 'gone.txt');
  const replaced = join(dir, 'replaced.txt');
  writeFileSync(gone, 'here when the job was queued\n');
  writeFileSync(replaced, 'the old content\n');
  const key = new Uint8Array(32).fill(5);
  const pool = new ReaderPool(1, { blockIdKey: key, blockHash: 'sha384', params: chunkParams(key), codec: DEFAULT_CODEC, bloom: new IdBloom(0).words }, 64 * 1024);
  try {
    const latin1 = (p: string) => Buffer.from(p).toString('latin1');
    const job = pool.submit([large, gone, replaced].map((p) => ({ abs: latin1(p), skip: false })), 24 * MiB);
    // The reader read ahead (and opened) the two small files before it began the large
    // one, and waits at its credit until the first block is taken.
    const first = await job.next();
    assert.equal(first.f, 0);
    rmSync(gone);
    writeFileSync(`${replaced}.new`, 'the new content\n');
    renameSync(`${replaced}.new`, replaced);
    const got: string[] = [];
    let data = '';
    for (let ev = first; ; ev = await job.next()) {
      job.taken(ev);
      if (ev.f === 2 && ev.t === 'block') data += Buffer.from(ev.bytes).toString();
      if (ev.f > 0 && ev.t !== 'block') got.push(`${ev.f} ${ev.t}${ev.t === 'fail' ? (ev.vanished ? ' vanished' : ' failed') : ''}`);
      if (ev.f === 2 && ev.t === 'end') break;
    }
    assert.deepEqual(got, ['1 fail vanished', '2 end']);
    assert.equal(data, 'the new content\n');
  } finally {
    await pool.close();
  }
});

test('blocks cut while the main thread waits for them come uncompressed (codec -1); blocks it did not wait for come compressed', { timeout: 60_000 }, async () => {
  const file = writeLog(tempDir('readers-hungry'), 200_000);
  const key = new Uint8Array(32).fill(9);
  const pool = new ReaderPool(1, { blockIdKey: key, blockHash: 'sha384', params: chunkParams(key), codec: DEFAULT_CODEC, bloom: new IdBloom(0).words });
  try {
    const codecs = async (wait: boolean): Promise<number[]> => {
      const job = pool.submit([{ abs: Buffer.from(file).toString('latin1'), skip: false }], 9 * MiB);
      const seen: number[] = [];
      for (;;) {
        // next() says the main thread waits; poll() alone never does.
        let ev = job.poll();
        while (!ev) ev = wait ? await job.next() : (await new Promise((r) => setTimeout(r, 5)), job.poll());
        job.taken(ev);
        if (ev.t === 'block') seen.push(ev.codec);
        if (ev.t === 'end') return seen;
      }
    };
    const waited = await codecs(true);
    assert.ok(waited.length >= 4, `${waited.length} blocks`);
    assert.ok(waited.includes(-1), `codecs when the main thread waited: ${waited}`);
    const polled = await codecs(false);
    assert.deepEqual(polled, polled.map(() => 1), `codecs when it never waited: ${polled}`);
  } finally {
    await pool.close();
  }
});

test('a file that changed between the walk and its reading (what the walk saw is stale) is read as it is now, without a warning, packed or alone', { timeout: 60_000 }, async () => {
  const dir = tempDir('readers-stale');
  const same = join(dir, 'same.txt');
  const grew = join(dir, 'grew.txt');
  const shrank = join(dir, 'shrank.txt');
  writeFileSync(same, 'unchanged since the walk\n');
  writeFileSync(grew, 'small when walked\n');
  writeFileSync(shrank, seededBytes('readers-shrank', 300 * 1024));
  const seenOf = (p: string) => { const st = lstatSync(p, { bigint: true }); return { size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs }; };
  const walked = [same, grew, shrank].map(seenOf);
  // After the walk: one file grows past a small file's size, another becomes small.
  writeFileSync(grew, seededBytes('readers-grew', 200 * 1024));
  writeFileSync(shrank, 'small now\n');
  const key = new Uint8Array(32).fill(7);
  const params = chunkParams(key);
  const pool = new ReaderPool(1, { blockIdKey: key, blockHash: 'sha384', params, codec: DEFAULT_CODEC, bloom: new IdBloom(0).words });
  try {
    const latin1 = (p: string) => Buffer.from(p).toString('latin1');
    // The stale file comes first in its job: a file the read-ahead opened is checked by its own fstat.
    for (const pack of [false, true]) for (const order of [[grew, same], [shrank, same]]) {
      const files = order.map((p) => ({ abs: latin1(p), skip: true, seen: walked[[same, grew, shrank].indexOf(p)] }));
      const job = pool.submit(files, 600 * 1024, pack);
      const data: Buffer[][] = [[], []];
      let packBytes: Buffer | null = null;
      const ends: { f: number; size: bigint; ctimeNs: bigint }[] = [];
      const warned: string[] = [];
      while (ends.length < 2) {
        const ev = await job.next();
        job.taken(ev);
        if (ev.t === 'block') data[ev.f].push(Buffer.from(ev.bytes));
        else if (ev.t === 'pack') { assert.equal(ev.codec, 0, 'skip: stored as read'); packBytes = Buffer.from(ev.bytes); }
        else if (ev.t === 'member') data[ev.f].push(packBytes!.subarray(ev.start, ev.start + ev.size));
        else if (ev.t === 'end') ends.push({ f: ev.f, size: ev.meta.size, ctimeNs: ev.meta.ctimeNs });
        // A pass taken back: its blocks are void (the main thread drops them).
        else if (ev.t === 'torn' && !ev.last) data[ev.f] = [];
        else warned.push(`${ev.f} ${ev.t}`);
      }
      const label = `pack ${pack}, ${order.map((p) => p.slice(dir.length + 1)).join(' ')}`;
      assert.deepEqual(warned, [], label);
      order.forEach((p, f) => {
        const now = lstatSync(p, { bigint: true });
        assert.deepEqual(ends[f], { f, size: now.size, ctimeNs: now.ctimeNs }, `${label}: file ${f}`);
        assert.ok(Buffer.concat(data[f]).equals(readFileSync(p)), `${label}: file ${f}, the bytes as they are now`);
      });
    }
  } finally {
    await pool.close();
  }
});

/**
 * Every event that has arrived from job `job` and is not taken, by poll() only (next()
 * would tell the reader that the main thread waits, and it would compress nothing):
 * waits until none has come for a while (a reader that ignored its credit would go on
 * posting meanwhile).
 */
async function arrivedUntaken(job: ReturnType<ReaderPool['submit']>): Promise<ReadEvent[]> {
  const got: ReadEvent[] = [];
  for (let quiet = 0; got.length === 0 || quiet < 6;) {
    await new Promise((r) => setTimeout(r, 50));
    let ev = job.poll();
    if (!ev) { quiet++; continue; }
    for (; ev; ev = job.poll()) got.push(ev);
    quiet = 0;
  }
  return got;
}

test('a reader posts no more than its credit of blocks not taken, also when its blocks were compressed (their plain bytes spent)', { timeout: 60_000 }, async () => {
  const file = writeLog(tempDir('readers-credit'), 600_000);
  const key = new Uint8Array(32).fill(11);
  const credit = 64 * 1024;
  const pool = new ReaderPool(1, { blockIdKey: key, blockHash: 'sha256', params: chunkParams(key), codec: DEFAULT_CODEC, bloom: new IdBloom(0).words }, credit);
  try {
    const job = pool.submit([{ abs: Buffer.from(file).toString('latin1'), skip: false }], lstatSync(file).size);
    const got = await arrivedUntaken(job);
    const blocks = got.filter((e) => e.t === 'block');
    // Each block is about 1 MiB of text, compressed to far less: the first post is
    // allowed past the credit, the next waits for it.
    assert.ok(blocks.length > 0 && blocks.every((e) => e.t === 'block' && e.codec === 1), `codecs ${blocks.map((e) => e.t === 'block' && e.codec)}`);
    assert.ok(!got.some((e) => e.t === 'end'), `the whole file arrived untaken (${blocks.length} blocks): the reader passed its credit`);
    const posted = blocks.reduce((n, e) => n + (e.t === 'block' ? e.bytes.byteLength : 0), 0);
    assert.ok(blocks.length <= 8, `${blocks.length} blocks (${posted} bytes) posted against a credit of ${credit}`);
  } finally {
    await pool.close();
  }
});

test('a reader counts the packs it posts against its credit, as the main thread gives their credit back', { timeout: 60_000 }, async () => {
  const dir = tempDir('readers-pack-credit');
  // 160 small files of random bytes: packs of up to 4 MiB, stored as they are.
  const small: string[] = [];
  for (let i = 0; i < 160; i++) {
    const p = join(dir, `s${String(i).padStart(3, '0')}.bin`);
    writeSeeded(p, `pack-credit-${i}`, 100 * 1024);
    small.push(p);
  }
  const large = join(dir, 'large.bin');
  writeSeeded(large, 'pack-credit-large', 48 * MiB);
  const key = new Uint8Array(32).fill(13);
  const credit = MiB;
  const pool = new ReaderPool(1, { blockIdKey: key, blockHash: 'sha256', params: chunkParams(key), codec: DEFAULT_CODEC, bloom: new IdBloom(0).words }, credit);
  const latin1 = (p: string) => Buffer.from(p).toString('latin1');
  try {
    const packed = pool.submit(small.map((p) => ({ abs: latin1(p), skip: false })), 16 * MiB, true);
    let packs = 0;
    for (;;) {
      const ev = await packed.next();
      packed.taken(ev);
      if (ev.t === 'pack') packs++;
      if (ev.t === 'end' && ev.f === small.length - 1) break;
    }
    assert.ok(packs >= 4, `${packs} packs`);
    // 16 MiB of packs taken, each of them charged when posted and given back when taken
    // (each is over the 1 MiB a give-back waits for, so none is outstanding now: before
    // the fix packs were given back but never charged, and the credit went below zero,
    // so the large file's blocks below all came at once). Then nothing of the large file
    // is taken.
    const job = pool.submit([{ abs: latin1(large), skip: false }], 48 * MiB);
    const got = await arrivedUntaken(job);
    const posted = got.reduce((n, e) => n + (e.t === 'block' ? e.bytes.byteLength : 0), 0);
    // At most one post past the credit: a few blocks of at most 4 MiB.
    assert.ok(posted <= credit + 8 * MiB, `${posted} bytes of blocks posted against a credit of ${credit}`);
  } finally {
    await pool.close();
  }
});
