/**
 * Fuzzing of the parsers with mutations of REAL repository bytes (a backup made by the
 * engine in this test): the decrypted manifest and a catalogue piece, the volume header,
 * block envelopes and the decrypted index. Each mutant must either decode or fail with an
 * IebsError (FormatError, AuthError, …): never another exception, a hang or unbounded
 * allocation. Bounded by time: about 1 s per structure, 15 s with SLOW=1.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { IebsError } from '../formats/errors.js';
import { DocParser, LineSplitter, MAX_BLOCK } from '../formats/manifest.js';
import { decodeVolumeHeader } from '../formats/volume.js';
import { decodeIndex } from '../formats/blockindex.js';
import { decodeTarHeader } from '../formats/tar.js';
import { blockContext, indexContext } from '../formats/envelope.js';
import { keygen, loadBackupKey, loadRestoreKey } from '../engine/crypto/keys.js';
import { backup } from '../engine/backup/backup.js';
import { openStorage } from '../engine/storage/open.js';
import { listSnapshots } from '../engine/repo/repo.js';
import { openEnvelope, pgpOpenBytes } from '../engine/crypto/crypto.js';
import { decompressBlock } from '../engine/codec.js';
import { decodeVolumeKey } from '../formats/volume.js';
import { tempDir, writeSeeded, MiB } from './helpers.js';

const BUDGET_MS = process.env.SLOW === '1' ? 15000 : 1000;

/** A deterministic PRNG (xorshift32) so a failure can be replayed from its seed. */
function rng(seed: number) {
  let x = seed || 1;
  return () => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return (x >>> 0) / 4294967296; };
}

/** One random mutation: flip a bit, set a byte, truncate, insert, duplicate or drop a span. */
function mutate(bytes: Uint8Array, r: () => number): Uint8Array {
  const b = Buffer.from(bytes);
  const at = Math.floor(r() * Math.max(1, b.length));
  switch (Math.floor(r() * 6)) {
    case 0: if (b.length) b[at] ^= 1 << Math.floor(r() * 8); return b;
    case 1: if (b.length) b[at] = Math.floor(r() * 256); return b;
    case 2: return b.subarray(0, at);
    case 3: return Buffer.concat([b.subarray(0, at), Buffer.from([Math.floor(r() * 256)]), b.subarray(at)]);
    case 4: { const n = Math.floor(r() * 64); return Buffer.concat([b.subarray(0, at + n), b.subarray(at)]); }
    default: { const n = Math.floor(r() * 64); return Buffer.concat([b.subarray(0, at), b.subarray(at + n)]); }
  }
}

/** Runs `parse` on mutants of `seedBytes` until the time budget is spent; returns the count. */
async function fuzz(label: string, seedBytes: Uint8Array, parse: (b: Uint8Array) => unknown | Promise<unknown>, seed: number): Promise<number> {
  const r = rng(seed);
  const end = Date.now() + BUDGET_MS;
  let n = 0;
  while (Date.now() < end) {
    let m = mutate(seedBytes, r);
    if (r() < 0.3) m = mutate(m, r);
    try { await parse(m); } catch (e) {
      if (!(e instanceof IebsError)) assert.fail(`${label}: mutant ${n} (seed ${seed}) threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    }
    n++;
  }
  console.log(`fuzz ${label}: ${n} mutants`);
  return n;
}

function parseDoc(kind: 'manifest' | 'catalog', bytes: Uint8Array): void {
  const p = new DocParser(kind, 'fuzz');
  const s = new LineSplitter('fuzz');
  for (const l of s.push(bytes)) p.line(l);
  s.end(); p.finish();
}

let repo: string;
let real: {
  manifest: Uint8Array; catalog: Uint8Array; volumeHeader: Uint8Array; envelope: Uint8Array; envelopeEntry: string;
  volumeId: Uint8Array; dataKey: Uint8Array; indexPlain: Uint8Array; indexEnv: Uint8Array; indexKey: Uint8Array; snapshot: string; tarHeader: Uint8Array;
};

before(async () => {
  const dir = tempDir('fuzz-real');
  const src = join(dir, 'src');
  mkdirSync(join(src, 'd'), { recursive: true });
  writeSeeded(join(src, 'big.bin'), 'fuzz-big', 3 * MiB);
  for (let i = 0; i < 20; i++) writeFileSync(join(src, 'd', `f ${i}'.txt`), `file ${i}\n`.repeat(i + 1));
  const k = await keygen({ out: join(dir, 'keys'), name: 'fuzz' });
  const bk = await loadBackupKey(k.backupKey);
  const rk = await loadRestoreKey(k.restoreKey!, undefined);
  repo = join(dir, 'repo');
  await backup(openStorage(repo), bk, { create: true, sources: [src], volumeSize: 64 * MiB, system: 'fuzz' });
  const storage = openStorage(repo);
  const { snapshots } = await listSnapshots(storage, rk.verifiers);
  const s = snapshots[0];
  const manifest = await pgpOpenBytes(await storage.get(`manifests/${s.record.manifest.name}`), rk.decryptionKeys, rk.verifiers, 'manifest');
  const vol = readFileSync(join(repo, 'volumes', s.record.volumes[0].name));
  const entries: { name: string; off: number; size: number }[] = [];
  for (let off = 0; off + 512 <= vol.length;) {
    const h = decodeTarHeader(vol.subarray(off, off + 512), off);
    if (!h) break;
    entries.push({ name: h.name, off: off + 512, size: h.size });
    off += 512 + Math.ceil(h.size / 512) * 512;
  }
  const at = (pred: (n: string) => boolean) => entries.find((e) => pred(e.name))!;
  const head = at((n) => n === 'iebs.volume');
  const vh = decodeVolumeHeader(vol.subarray(head.off, head.off + head.size), 'vol');
  const dataKey = decodeVolumeKey(await pgpOpenBytes(vh.sealed, rk.decryptionKeys, rk.verifiers, 'key'), vh.volumeId, 'vol');
  const block = at((n) => /\/\d{8}$/.test(n));
  const cat = at((n) => n.startsWith('iebs.catalog.'));
  const catEnv = openEnvelope(dataKey, vol.subarray(cat.off, cat.off + cat.size), blockContext(vh.volumeId, cat.name), MAX_BLOCK, 'cat');
  // A small index is one piece: its 4-byte length, then its envelope.
  const indexEnv = (await storage.get(`indexes/${s.record.index.name}`)).subarray(4);
  const opened = openEnvelope(bk.indexKey, indexEnv, indexContext(s.record.name, 0), 2 ** 31, 'index');
  real = {
    manifest, catalog: await decompressBlock(catEnv.codec, catEnv.payload, catEnv.plainLength),
    volumeHeader: vol.subarray(head.off, head.off + head.size), envelope: vol.subarray(block.off, block.off + block.size), envelopeEntry: block.name,
    volumeId: vh.volumeId, dataKey, indexPlain: await decompressBlock(opened.codec, opened.payload, opened.plainLength), indexEnv, indexKey: bk.indexKey,
    snapshot: s.record.name, tarHeader: vol.subarray(block.off - 512, block.off),
  };
  await storage.close();
});

test('mutated real manifests: decoded or a FormatError', async () => {
  parseDoc('manifest', real.manifest); // the original parses
  assert.ok(await fuzz('manifest', real.manifest, (b) => parseDoc('manifest', b), 11) > 0);
});

test('mutated real catalogue pieces: decoded or a FormatError', async () => {
  parseDoc('catalog', real.catalog);
  assert.ok(await fuzz('catalog', real.catalog, (b) => parseDoc('catalog', b), 12) > 0);
});

test('mutated real volume headers and tar headers: decoded or a FormatError', async () => {
  assert.ok(await fuzz('volume header', real.volumeHeader, (b) => decodeVolumeHeader(b, 'fuzz'), 13) > 0);
  assert.ok(await fuzz('tar header', real.tarHeader, (b) => b.length === 512 && decodeTarHeader(b, 0), 14) > 0);
});

test('mutated real block envelopes: never authenticate, always an IebsError', async () => {
  const ctx = blockContext(real.volumeId, real.envelopeEntry);
  openEnvelope(real.dataKey, real.envelope, ctx, MAX_BLOCK, 'ok');
  let opened = 0;
  const original = Buffer.from(real.envelope);
  await fuzz('block envelope', real.envelope, async (b) => {
    const e = openEnvelope(real.dataKey, b, ctx, MAX_BLOCK, 'fuzz');
    // Only a mutation that leaves the bytes as they were may authenticate (how many do
    // depends on how many mutants the time budget allows).
    if (!original.equals(b)) opened++;
    await decompressBlock(e.codec, e.payload, e.plainLength);
  }, 15);
  assert.equal(opened, 0, `${opened} changed envelopes authenticated`);
});

test('mutated real indexes: decoded or a FormatError, sealed ones never open', async () => {
  const text = Buffer.from(real.indexPlain).toString('latin1');
  decodeIndex(text, 'ok', () => {});
  assert.ok(await fuzz('index', real.indexPlain, (b) => decodeIndex(Buffer.from(b).toString('latin1'), 'fuzz', () => {}), 16) > 0);
  assert.ok(await fuzz('sealed index', real.indexEnv, (b) => openEnvelope(real.indexKey, b, indexContext(real.snapshot, 0), 2 ** 31, 'fuzz'), 17) > 0);
});
