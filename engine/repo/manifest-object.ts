/**
 * The manifest object (SPEC.md "Manifest grammar", "Repository layout"): written as one
 * OpenPGP message streamed from a snapshot's header and records, read back in one pass
 * that hashes the ciphertext against the record while it decrypts and parses. Neither
 * side ever holds the document whole.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type * as openpgp from 'openpgp';
import { AuthError, FormatError, NotFoundError } from '../../formats/errors.js';
import { DocParser, LineSplitter, encodeDocEnd, type FileRecord, type ManifestHeader } from '../../formats/manifest.js';
import { LAYOUT } from '../../formats/names.js';
import { manifestObject, type ObjectRef } from '../../formats/snapshot.js';
import { pgpOpenStream, pgpSealStream } from '../crypto/crypto.js';
import { installPulledDecompression } from '../crypto/inflate.js';
import { pgpOpenStreamThreaded } from '../crypto/pgp-thread.js';
import type { BackupKey, RestoreKey } from '../crypto/keys.js';
import type { Storage } from '../storage/storage.js';
import { repoHostKeys, type Snapshot } from './repo.js';
import { hostTrust } from './host-keys.js';

/** Bytes read from storage at a time when streaming a manifest. */
const READ_PIECE = 1024 * 1024;

/** Largest manifest a reader accepts. */
const MAX_MANIFEST = 4 * 1024 * 1024 * 1024;

/**
 * Manifests up to this size are decrypted on the calling thread, larger ones on a thread
 * of their own (engine/pgp-thread.ts), which decrypts while this one parses. A thread
 * costs about 0.1 s of CPU to start (openpgp.js is loaded and compiled for each) and
 * some 20 MiB: restoring the last of 33 small increments of a copy of /usr started 34
 * of them one after another. One MiB of ciphertext decrypts here in a few tens of ms.
 */
const INLINE_MANIFEST = 1024 * 1024;

/** Streams header, records and closing line into one signed, encrypted, compressed OpenPGP message: the manifest object of snapshot `name`. */
export async function writeManifest(storage: Storage, key: BackupKey, name: string, header: string, records: AsyncIterable<Uint8Array>): Promise<ObjectRef> {
  const object = `${LAYOUT.manifests}/${manifestObject(name)}`;
  async function* text(): AsyncGenerator<Uint8Array> {
    const running = createHash('sha384');
    const first = Buffer.from(header, 'latin1');
    running.update(first);
    yield first;
    for await (const chunk of records) { running.update(chunk); yield chunk; }
    yield Buffer.from(encodeDocEnd('manifest', running.digest()), 'latin1');
  }
  const out = await pgpSealStream(text(), key.recipients, key.signer);
  const w = await storage.create(object);
  const h = createHash('sha384');
  let size = 0;
  try {
    for await (const chunk of Readable.fromWeb(out as never)) {
      const b = chunk as Uint8Array;
      h.update(b); size += b.length;
      await w.write(b);
    }
    await w.commit();
  } catch (e) { await w.abort(); throw e; }
  return { name: manifestObject(name), size, digest: new Uint8Array(h.digest()) };
}

/**
 * Verifying keys: the restore key's own host key, else the repository's, and the host
 * keys that valid host key statements signed by the restore key's owner bring in
 * (SPEC.md "Changing keys"; which records of each count is listSnapshots' to say).
 */
export async function verifiersFor(storage: Storage, key: RestoreKey): Promise<openpgp.PublicKey[]> {
  const base = key.verifiers.length ? key.verifiers : await repoHostKeys(storage);
  return (await hostTrust(storage, base, async () => key.decryptionKeys.map((k) => k.toPublic()))).keys;
}

/**
 * Decrypts and parses one manifest, checked against its record; on this thread when it is
 * at most `inlineUpTo` bytes (INLINE_MANIFEST unless a test says otherwise).
 */
export async function readManifest(storage: Storage, key: RestoreKey, verifiers: openpgp.PublicKey[], s: Snapshot, each: (r: FileRecord | { deleted: string }) => void, inlineUpTo = INLINE_MANIFEST): Promise<ManifestHeader> {
  const object = `${LAYOUT.manifests}/${s.record.manifest.name}`;
  const size = await storage.stat(object);
  if (size === null) throw new NotFoundError('not-found', `${object}: missing`);
  if (size !== s.record.manifest.size || size > MAX_MANIFEST) throw new FormatError('bad-size', `${object}: ${size} bytes, its record says ${s.record.manifest.size}`);
  // One pass: the ciphertext is hashed (against the record) while it is decrypted and
  // parsed; what was parsed counts only once both the hash and the signature hold.
  const digest = createHash('sha384');
  async function* ciphertext(): AsyncGenerator<Uint8Array> {
    for (let off = 0; off < size!; off += READ_PIECE) {
      const piece = await storage.getRange(object, off, Math.min(READ_PIECE, size! - off));
      digest.update(piece);
      yield piece;
    }
  }
  const parser = new DocParser('manifest', object);
  const split = new LineSplitter(object);
  let header: ManifestHeader | null = null;
  let parseError: unknown = null;
  // Here as on the thread, the compressed packet is inflated only as its output is taken
  // (engine/inflate.ts): a small object may still inflate to much more.
  const inline = size <= inlineUpTo;
  if (inline) installPulledDecompression();
  const open = inline ? pgpOpenStream : pgpOpenStreamThreaded;
  await open(ciphertext(), key.decryptionKeys, verifiers, object, (chunk) => {
    if (parseError) return;
    try {
      for (const line of split.push(chunk)) {
        const it = parser.line(line);
        if (!it) continue;
        if (it.type === 'header') header = it.header as ManifestHeader;
        else if (it.type === 'record') each(it.record);
        else if (it.type === 'deleted') each({ deleted: it.uuid });
      }
    } catch (e) { parseError = e; }
  });
  // A damaged or replaced object is reported as such, before any parse error it caused.
  if (!Buffer.from(digest.digest()).equals(s.record.manifest.digest)) throw new AuthError('bad-hash', `${object}: does not match its snapshot record (damaged or replaced)`);
  if (parseError) throw parseError;
  split.end();
  parser.finish();
  const h = header!;
  if (h.snapshot !== s.record.name) throw new AuthError('replayed', `${object}: manifest of ${h.snapshot}, not ${s.record.name}`);
  if ((h.parent?.name ?? null) !== (s.record.parent?.name ?? null)) throw new AuthError('replayed', `${object}: parent differs from its record`);
  return h;
}
