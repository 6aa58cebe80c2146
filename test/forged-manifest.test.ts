/**
 * Manifests that only the holder of the host key could make (they are signed), as a
 * backup host that was taken over could write them:
 * - SPEC.md "Restore": two entries with one path make a snapshot invalid; a restore must
 *   refuse it before it writes anything, rather than let one entry silently replace the
 *   other. A later record of a UUID replaces the earlier one, in one manifest as across
 *   a chain, and the path the earlier one named is then free.
 * - A block whose sha384 is not the one its record names: the file is reported and not
 *   written, whether it is one block (checked on the main thread) or several (checked on
 *   a writer thread).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { backup } from '../engine/backup/backup.js';
import { restore } from '../engine/restore/restore.js';
import type { BackupKey, RestoreKey } from '../engine/crypto/keys.js';
import { openStorage } from '../engine/storage/open.js';
import type { Storage } from '../engine/storage/storage.js';
import { listSnapshots, writeRecord } from '../engine/repo/repo.js';
import { LAYOUT, recordObject } from '../formats/names.js';
import { pgpOpenBytes, pgpSealBytes, sha384 } from '../engine/crypto/crypto.js';
import { decodeDoc, encodeDocEnd, encodeManifestHeader, encodeRecord, type FileRecord, type ManifestHeader } from '../formats/manifest.js';
import { FormatError } from '../formats/errors.js';
import { loadKeys, tempDir, MiB } from './helpers.js';

/** Replaces the only snapshot's manifest with one whose records `change` gave, signed anew. */
async function reseal(storage: Storage, bk: BackupKey, rk: RestoreKey, change: (records: FileRecord[]) => FileRecord[]): Promise<void> {
  const verifiers = [bk.signer.toPublic()];
  const [s] = (await listSnapshots(storage, verifiers)).snapshots;
  const object = `${LAYOUT.manifests}/${s.record.manifest.name}`;
  const items = decodeDoc('manifest', await pgpOpenBytes(await storage.get(object), rk.decryptionKeys, verifiers, object), object);
  const header = items.find((i) => i.type === 'header')!.header as ManifestHeader;
  let text = encodeManifestHeader(header);
  for (const r of change(items.flatMap((i) => (i.type === 'record' ? [i.record] : [])))) text += encodeRecord(r);
  text += encodeDocEnd('manifest', sha384(text));
  const sealed = await pgpSealBytes(Buffer.from(text, 'latin1'), bk.recipients, bk.signer);
  await storage.delete(object);
  await storage.put(object, sealed);
  await storage.delete(recordObject(s.record.name));
  await writeRecord(storage, { ...s.record, manifest: { name: s.record.manifest.name, size: sealed.length, digest: sha384(sealed) } }, bk.signer);
}

/** A repository in a new temporary folder with one full backup of a.txt ("first") and sub/b.txt ("second"). */
async function twoFiles(name: string): Promise<{ bk: BackupKey; rk: RestoreKey; dir: string; storage: Storage }> {
  const { bk, rk } = await loadKeys();
  const dir = tempDir(name);
  const src = join(dir, 'src');
  mkdirSync(join(src, 'sub'), { recursive: true });
  writeFileSync(join(src, 'a.txt'), 'first\n');
  writeFileSync(join(src, 'sub', 'b.txt'), 'second\n');
  const storage = openStorage(join(dir, 'repo'));
  await backup(storage, bk, { create: true, sources: [src], volumeSize: 8 * MiB, system: name.replace(/[^a-z]/g, '') });
  return { bk, rk, dir, storage };
}

test('a snapshot whose manifest names one path twice is refused before anything is written', async () => {
  const { bk, rk, dir, storage } = await twoFiles('duplicate-path');

  // Re-sign the snapshot with a manifest that has a second record for sub/b.txt, whose
  // content is a.txt's.
  await reseal(storage, bk, rk, (records) => {
    const a = records.find((r) => Buffer.from(r.path).toString() === 'a.txt')!;
    return [...records, { ...a, uuid: randomUUID(), path: Buffer.from('sub/b.txt') }];
  });

  const out = join(dir, 'out');
  await assert.rejects(restore(openStorage(join(dir, 'repo')), rk, { target: out }), (e: unknown) => {
    assert.ok(e instanceof FormatError);
    assert.equal(e.code, 'duplicate-path');
    assert.match(e.message, /sub\/b\.txt twice/);
    return true;
  });
  assert.ok(!existsSync(out) || readdirSync(out).length === 0, 'nothing was written into the target');
  rmSync(dir, { recursive: true, force: true });
});

test('a later record replaces the one of the same UUID in one manifest too, and a path the replaced record named may be named again', async () => {
  const { bk, rk, dir, storage } = await twoFiles('uuid-replaced');

  // a.txt's UUID comes again as moved.txt (SPEC.md "Restore chain": the later record
  // replaces it), and a new UUID names a.txt again, with sub/b.txt's content.
  await reseal(storage, bk, rk, (records) => {
    const a = records.find((r) => Buffer.from(r.path).toString() === 'a.txt')!;
    const b = records.find((r) => Buffer.from(r.path).toString() === 'sub/b.txt')!;
    return [...records, { ...a, path: Buffer.from('moved.txt') }, { ...b, uuid: randomUUID(), path: Buffer.from('a.txt') }];
  });

  const out = join(dir, 'out');
  const result = await restore(openStorage(join(dir, 'repo')), rk, { target: out });
  assert.deepEqual(result.failures, []);
  assert.equal(result.files, 3);
  assert.equal(readFileSync(join(out, 'a.txt'), 'utf8'), 'second\n');
  assert.equal(readFileSync(join(out, 'moved.txt'), 'utf8'), 'first\n');
  assert.equal(readFileSync(join(out, 'sub', 'b.txt'), 'utf8'), 'second\n');
  assert.deepEqual(readdirSync(out).sort(), ['a.txt', 'moved.txt', 'sub']);
  rmSync(dir, { recursive: true, force: true });
});

for (const [where, checkHereAbove] of [['the writer threads', Infinity], ['the main thread', 0]] as const) test(`a block that does not hash to what its record says is reported, and its file is not written (checked on ${where})`, async () => {
  const { bk, rk } = await loadKeys();
  const dir = tempDir('forged-hash');
  const src = join(dir, 'src');
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, 'big.bin'), randomBytes(6 * MiB));
  writeFileSync(join(src, 'small.txt'), 'one block\n');
  writeFileSync(join(src, 'untouched.txt'), 'restored as usual\n');
  const storage = openStorage(join(dir, 'repo'));
  await backup(storage, bk, { create: true, sources: [src], volumeSize: 64 * MiB, system: 'hash' });

  await reseal(storage, bk, rk, (records) => records.map((r) => {
    const name = Buffer.from(r.path).toString();
    if (name !== 'big.bin' && name !== 'small.txt') return r;
    assert.ok(name === 'small.txt' ? r.blocks.length === 1 : r.blocks.length > 2, `${name} has ${r.blocks.length} blocks`);
    const i = name === 'small.txt' ? 0 : 1;
    return { ...r, blocks: r.blocks.map((b, j) => (j === i ? { ...b, digest: Buffer.from(b.digest).fill(7, 0, 4) } : b)) };
  }));

  const out = join(dir, 'out');
  const result = await restore(openStorage(join(dir, 'repo')), rk, { target: out, checkHereAbove });
  assert.deepEqual(result.failures.map((f) => f.path), ['big.bin', 'small.txt']);
  for (const f of result.failures) assert.match(f.message, /block content does not match its sha256/);
  assert.deepEqual(readdirSync(out), ['untouched.txt'], 'no file or temporary file of the two is left');
  assert.equal(readFileSync(join(out, 'untouched.txt'), 'utf8'), 'restored as usual\n');
  rmSync(dir, { recursive: true, force: true });
});
