/**
 * Restore and listing (SPEC.md "Snapshot chain" and "Restore").
 *
 * Data flow: the snapshot's chain (its full, then each increment) is found from the
 * public records; each manifest is checked against its record, decrypted, its signature
 * verified, and parsed; records are composed by UUID (a later record replaces an earlier
 * one, a deletion removes it). Then directories are made, files are written block by
 * block into a temporary name beside their final one, each block checked against its
 * sha384 and the file against its size before the rename, symlinks are made last and
 * directory modes and times are set deepest first.
 *
 * The target is treated as hostile ground too: no write ever goes through a symlink or
 * outside `--target`, whatever a manifest says.
 */
import { lstat, mkdir, open, rename, rm, symlink, chmod, utimes, lutimes, lchown, unlink } from 'node:fs/promises';
import { randomBytes, createHash } from 'node:crypto';
import type * as openpgp from 'openpgp';
import { FormatError, IebsError, IoError, AuthError, KeyError } from '../formats/errors.js';
import { DocParser, LineSplitter, type FileRecord, type ManifestHeader } from '../formats/manifest.js';
import { pgpOpenStream } from './crypto.js';
import { chainOf, findSnapshot, LAYOUT, listSnapshots, readConfig, repoPublicKeys, type Snapshot } from './repo.js';
import type { RestoreKey } from './keys.js';
import type { Storage } from './storage.js';
import { VolumeReader } from './volumes.js';

/** Options of a restore. */
export interface RestoreOptions {
  target: string;
  snapshot?: string;
  include?: RegExp[];
  onProgress?: (p: { files: number; bytes: number; totalFiles: number; totalBytes: number }) => void;
}

/** A file that could not be restored, and why. */
export interface RestoreFailure { path: string; message: string }

/** What a restore did. */
export interface RestoreResult { snapshot: string; files: number; dirs: number; symlinks: number; bytes: number; failures: RestoreFailure[] }

/** Bytes read from storage at a time when streaming a manifest. */
const READ_PIECE = 1024 * 1024;

/** Files restored at once. */
const RESTORE_WORKERS = 8;

/** Largest manifest a reader accepts. */
const MAX_MANIFEST = 4 * 1024 * 1024 * 1024;

/** Verifying keys: the restore key's own, else the repository's copy of the public keys. */
export async function verifiersFor(storage: Storage, key: RestoreKey): Promise<openpgp.PublicKey[]> {
  return key.verifiers.length ? key.verifiers : repoPublicKeys(storage);
}

/** Decrypts and parses one manifest, checked against its record. */
export async function readManifest(storage: Storage, key: RestoreKey, verifiers: openpgp.PublicKey[], s: Snapshot, each: (r: FileRecord | { deleted: string }) => void): Promise<ManifestHeader> {
  const object = `${LAYOUT.manifests}/${s.record.manifest.name}`;
  const size = await storage.stat(object);
  if (size === null) throw new IoError('missing-manifest', `${object}: missing`);
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
  await pgpOpenStream(ciphertext(), key.decryptionKeys, verifiers, object, (chunk) => {
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
  if (!Buffer.from(digest.digest()).equals(s.record.manifest.sha384)) throw new AuthError('bad-hash', `${object}: does not match its snapshot record (damaged or replaced)`);
  if (parseError) throw parseError;
  split.end();
  parser.finish();
  const h = header!;
  if (h.snapshot !== s.record.name) throw new AuthError('replayed', `${object}: manifest of ${h.snapshot}, not ${s.record.name}`);
  if ((h.parent?.name ?? null) !== (s.record.parent?.name ?? null)) throw new AuthError('replayed', `${object}: parent differs from its record`);
  return h;
}

/** Composes the records of a snapshot through its chain, keyed by UUID. */
export async function composeSnapshot(storage: Storage, key: RestoreKey, id: string | undefined): Promise<{ snapshot: Snapshot; files: Map<string, FileRecord> }> {
  await readConfig(storage);
  const verifiers = await verifiersFor(storage, key);
  const { snapshots, bad } = await listSnapshots(storage, verifiers);
  if (snapshots.length === 0 && bad.some((b) => b.error.code === 'bad-signature')) {
    throw new KeyError('wrong-key', `no snapshot record of ${storage.where} is signed by the host key this restore key names (wrong key for this repository?)`);
  }
  const snapshot = findSnapshot(snapshots, id);
  const files = new Map<string, FileRecord>();
  for (const s of chainOf(snapshot, snapshots)) {
    await readManifest(storage, key, verifiers, s, (r) => {
      if ('deleted' in r) files.delete(r.deleted);
      else files.set(r.uuid, r);
    });
  }
  return { snapshot, files };
}

/** Lists the entries of a snapshot, sorted by path. */
export async function listSnapshotFiles(storage: Storage, key: RestoreKey, id: string | undefined): Promise<{ snapshot: string; files: FileRecord[] }> {
  const { snapshot, files } = await composeSnapshot(storage, key, id);
  return { snapshot: snapshot.record.name, files: [...files.values()].sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path))) };
}

/** Restores a snapshot into `o.target`. */
export async function restore(storage: Storage, key: RestoreKey, o: RestoreOptions): Promise<RestoreResult> {
  const { snapshot, files } = await composeSnapshot(storage, key, o.snapshot);
  const verifiers = await verifiersFor(storage, key);
  const matches = (r: FileRecord) => !o.include?.length || o.include.some((re) => { re.lastIndex = 0; return re.test(Buffer.from(r.path).toString('utf8')); });
  const chosen = [...files.values()].filter(matches);
  // The directories above what --include chose come along, with their own metadata.
  const above = new Set<string>();
  for (const r of chosen) {
    const p = Buffer.from(r.path);
    for (let i = p.indexOf(0x2f); i >= 0; i = p.indexOf(0x2f, i + 1)) above.add(p.subarray(0, i).toString('latin1'));
  }
  const picked = new Set(chosen);
  for (const r of files.values()) if (r.kind === 'dir' && !picked.has(r) && above.has(Buffer.from(r.path).toString('latin1'))) chosen.push(r);
  const all = chosen.sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
  checkNoDuplicatePaths(all);
  const result: RestoreResult = { snapshot: snapshot.record.name, files: 0, dirs: 0, symlinks: 0, bytes: 0, failures: [] };
  const root = Buffer.from(o.target.replace(/\/+$/, '') || '/');
  await mkdir(root, { recursive: true });
  const safe = new SafeTarget(root);
  const reader = new VolumeReader(storage, key.decryptionKeys, verifiers);
  const totalFiles = all.length, totalBytes = all.reduce((a, r) => a + r.size, 0);
  const progress = { files: 0, bytes: 0, totalFiles, totalBytes };
  const asRoot = process.getuid?.() === 0;

  for (const r of all) if (r.kind === 'dir') {
    const p = await safe.dir(r.path);
    result.dirs++;
    void p;
  }
  // Files are independent: several are restored at once, so reading, decrypting,
  // decompressing and writing of different files overlap.
  const regular = all.filter((r) => r.kind === 'file');
  let next = 0;
  const worker = async () => {
    while (next < regular.length) {
      const r = regular[next++];
      try {
        await restoreFile(safe, reader, r, asRoot, (n) => { progress.bytes += n; o.onProgress?.(progress); });
        result.files++; result.bytes += r.size;
      } catch (e) {
        if (!(e instanceof IebsError)) throw e;
        if (e instanceof IoError && (e.code === 'disk-full' || e.code === 'permission')) throw e;
        result.failures.push({ path: Buffer.from(r.path).toString('utf8'), message: e.message });
      }
      progress.files++;
      o.onProgress?.(progress);
    }
  };
  await Promise.all(Array.from({ length: RESTORE_WORKERS }, worker));
  result.failures.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (const r of all) if (r.kind === 'symlink') {
    try {
      const p = await safe.leaf(r.path);
      await removeNonDir(p);
      await symlink(Buffer.from(r.target!), p);
      if (asRoot) await lchown(p, r.uid, r.gid).catch(() => {});
      const t = Number(r.mtimeNs) / 1e9;
      await lutimes(p, t, t).catch(() => {});
      result.symlinks++;
    } catch (e) {
      if (!(e instanceof IebsError) && !(e as NodeJS.ErrnoException).code) throw e;
      result.failures.push({ path: Buffer.from(r.path).toString('utf8'), message: (e as Error).message });
    }
  }
  const dirs = all.filter((r) => r.kind === 'dir').sort((a, b) => b.path.length - a.path.length);
  for (const r of dirs) {
    const p = await safe.dir(r.path);
    if (asRoot) await lchown(p, r.uid, r.gid).catch(() => {});
    await chmod(p, r.mode);
    const t = Number(r.mtimeNs) / 1e9;
    await utimes(p, t, t);
  }
  await storage.close();
  return result;
}

/** Two records with one path would make the result depend on order: refuse. */
function checkNoDuplicatePaths(sorted: FileRecord[]): void {
  for (let i = 1; i < sorted.length; i++) {
    if (Buffer.compare(Buffer.from(sorted[i].path), Buffer.from(sorted[i - 1].path)) === 0) {
      throw new FormatError('duplicate-path', `snapshot names ${Buffer.from(sorted[i].path).toString('utf8')} twice`);
    }
  }
}

/** Removes what is at `p` unless it is a directory (an error then). */
export async function removeNonDir(p: Buffer): Promise<void> {
  try {
    const st = await lstat(p);
    if (st.isDirectory()) throw new IoError('exists', `${p.toString()}: a directory is in the way`);
    await unlink(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

async function restoreFile(safe: SafeTarget, reader: VolumeReader, r: FileRecord, asRoot: boolean, onBytes: (n: number) => void): Promise<void> {
  const final = await safe.leaf(r.path);
  const dirEnd = final.lastIndexOf(0x2f);
  const tmp = Buffer.concat([final.subarray(0, dirEnd + 1), Buffer.from(`.iebs-restore-${randomBytes(6).toString('hex')}`)]);
  const fh = await open(tmp, 'wx', 0o600);
  let ok = false;
  try {
    let written = 0;
    for (const b of r.blocks) {
      const data = await reader.readBlock(b, (d) => createHash('sha384').update(d).digest().equals(b.sha384));
      await fh.write(data, 0, data.length, b.offset);
      written += data.length;
      onBytes(data.length);
    }
    if (written !== r.size) throw new FormatError('bad-size', `${Buffer.from(r.path).toString('utf8')}: restored ${written} bytes, expected ${r.size}`);
    await fh.truncate(r.size);
    await fh.close();
    if (asRoot) await lchown(tmp, r.uid, r.gid).catch(() => {});
    await chmod(tmp, r.mode);
    const t = Number(r.mtimeNs) / 1e9;
    await utimes(tmp, t, t);
    await removeNonDir(final);
    await rename(tmp, final);
    ok = true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC') throw new IoError('disk-full', `${safe.rootText}: target is full`, { cause: e });
    if (!(e instanceof IebsError) && typeof code === 'string') throw new IoError('io', `${final.toString()}: ${code}`, { cause: e });
    throw e;
  } finally {
    if (!ok) { await fh.close().catch(() => {}); await rm(tmp, { force: true }).catch(() => {}); }
  }
}

/**
 * Resolves paths under the restore target, making parent directories as needed and
 * refusing to pass through anything that is not a real directory (a symlink planted by
 * an earlier entry or already in the target).
 */
export class SafeTarget {
  private readonly known = new Set<string>();
  constructor(readonly root: Buffer) {}
  get rootText(): string { return this.root.toString(); }

  private async ensureDir(p: Buffer): Promise<void> {
    const k = p.toString('latin1');
    if (this.known.has(k)) return;
    try {
      const st = await lstat(p);
      if (!st.isDirectory()) throw new IoError('unsafe-path', `${p.toString()}: not a directory (refusing to write through it)`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      try {
        await mkdir(p, { mode: 0o700 });
      } catch (m) {
        // Another file's restore made it first: fine if it is a real directory.
        if ((m as NodeJS.ErrnoException).code !== 'EEXIST' || !(await lstat(p)).isDirectory()) throw m;
      }
    }
    this.known.add(k);
  }

  /** Makes sure every parent of `rel` is a real directory; returns the full path. */
  async leaf(rel: Uint8Array): Promise<Buffer> {
    let end = 0;
    const path = Buffer.from(rel);
    for (;;) {
      const slash = path.indexOf(0x2f, end);
      if (slash < 0) break;
      await this.ensureDir(Buffer.concat([this.root, Buffer.from('/'), path.subarray(0, slash)]));
      end = slash + 1;
    }
    return Buffer.concat([this.root, Buffer.from('/'), path]);
  }

  /** Makes `rel` itself a directory (and its parents). */
  async dir(rel: Uint8Array): Promise<Buffer> {
    const p = await this.leaf(rel);
    await this.ensureDir(p);
    return p;
  }
}
