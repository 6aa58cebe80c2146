/**
 * SPEC.md "Restore": two entries with one path make a snapshot invalid. Such a manifest
 * can only be made by the holder of the host key (it is signed), so a backup host that
 * was taken over could write one; a restore must refuse it before it writes anything,
 * rather than let one entry silently replace the other.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { backup } from '../engine/backup.js';
import { restore } from '../engine/restore.js';
import { loadBackupKey, loadRestoreKey } from '../engine/keys.js';
import { openStorage } from '../engine/storage.js';
import { LAYOUT, listSnapshots, recordObject, writeRecord } from '../engine/repo.js';
import { pgpOpenBytes, pgpSealBytes, sha384 } from '../engine/crypto.js';
import { decodeDoc, encodeDocEnd, encodeManifestHeader, encodeRecord, type FileRecord, type ManifestHeader } from '../formats/manifest.js';
import { FormatError } from '../formats/errors.js';
import { makeKeys, tempDir, MiB } from './helpers.js';

test('a snapshot whose manifest names one path twice is refused before anything is written', async () => {
  const k = makeKeys();
  const bk = await loadBackupKey(k.backup);
  const rk = await loadRestoreKey(k.restore, undefined);
  const dir = tempDir('duplicate-path');
  const src = join(dir, 'src');
  mkdirSync(join(src, 'sub'), { recursive: true });
  writeFileSync(join(src, 'a.txt'), 'first\n');
  writeFileSync(join(src, 'sub', 'b.txt'), 'second\n');
  const storage = openStorage(join(dir, 'repo'));
  await backup(storage, bk, { sources: [src], volumeSize: 8 * MiB, system: 'dup' });

  // Re-sign the snapshot with a manifest that has a second record for sub/b.txt, whose
  // content is a.txt's.
  const verifiers = [bk.signer.toPublic()];
  const [s] = (await listSnapshots(storage, verifiers)).snapshots;
  const object = `${LAYOUT.manifests}/${s.record.manifest.name}`;
  const items = decodeDoc('manifest', await pgpOpenBytes(await storage.get(object), rk.decryptionKeys, verifiers, object), object);
  const header = items.find((i) => i.type === 'header')!.header as ManifestHeader;
  const records = items.flatMap((i) => (i.type === 'record' ? [i.record] : []));
  const a = records.find((r) => Buffer.from(r.path).toString() === 'a.txt')!;
  const forged: FileRecord = { ...a, uuid: randomUUID(), path: Buffer.from('sub/b.txt') };
  let text = encodeManifestHeader(header);
  for (const r of [...records, forged]) text += encodeRecord(r);
  text += encodeDocEnd('manifest', sha384(text));
  const sealed = await pgpSealBytes(Buffer.from(text, 'latin1'), bk.recipients, bk.signer);
  await storage.delete(object);
  await storage.put(object, sealed);
  await storage.delete(recordObject(s.record.name));
  await writeRecord(storage, { ...s.record, manifest: { name: s.record.manifest.name, size: sealed.length, sha384: sha384(sealed) } }, bk.signer);

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
