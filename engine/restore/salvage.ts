/**
 * Salvage (SPEC.md "Volume format": restoring from one volume alone): everything that
 * can be recovered from the given volume files, with no manifest, no repository and no
 * other volume. Each volume is scanned entry by entry (a damaged tar header is skipped by
 * resynchronising on the next valid one); its header gives the data key (unsealed with
 * the restore key), its catalogue pieces give names and the place of every block in its
 * file. Files whose blocks all came through are restored under their names; files with
 * parts missing (in other volumes, or damaged) are written with those ranges as zeros
 * under `<name>.incomplete` and listed. The target is written as a restore writes it
 * (engine/target.ts): of the records of one path the newest wins whatever its kind, and
 * a path that cannot be written is listed, not fatal.
 */
import { open, rename, rm, chmod, utimes, lutimes, symlink, type FileHandle } from 'node:fs/promises';
import type * as openpgp from 'openpgp';
import { FormatError, IebsError, IoError, KeyError, NotFoundError } from '../../formats/errors.js';
import { blockContext } from '../../formats/envelope.js';
import { DocParser, LineSplitter, MAX_BLOCK, type BlockRef, type CatalogHeader, type FileRecord } from '../../formats/manifest.js';
import { decodeTarHeader, TAR_BLOCK } from '../../formats/tar.js';
import { CATALOG_ENTRY_PREFIX, VOLUME_HEADER_ENTRY, decodeVolumeHeader, decodeVolumeKey } from '../../formats/volume.js';
import { openEnvelope, pgpOpenBytes } from '../crypto/crypto.js';
import { digestMatches } from '../crypto/hashes.js';
import { decompressBlock } from '../codec.js';
import { PackCache } from '../repo/volumes.js';
import type { RestoreKey } from '../crypto/keys.js';
import type { Storage } from '../storage/storage.js';
import { SafeTarget, fileMode, makeRoom, targetError, tempBeside, timeArg, SETID_BITS } from './target.js';

/** What salvage recovered. */
export interface SalvageResult {
  volumes: { path: string; entries: number; damaged: number; error?: string }[];
  files: number;
  incomplete: { path: string; missing: number; size: number }[];
  dirs: number;
  symlinks: number;
  bytes: number;
  /** Blocks no surviving catalogue piece describes. */
  unnamedBlocks: number;
  /** Paths that could not be written in the target, and why. */
  failures: { path: string; message: string }[];
  /** Files written without the setuid or setgid bits they were recorded with. */
  setidDropped: number;
}

interface Source { storage: Storage; object: string; volumeId: Uint8Array; key: Uint8Array; entries: Map<string, { dataOffset: number; size: number }> }
interface Version { record: FileRecord; time: bigint; blocks: Map<number, { source: Source; ref: FileRecord['blocks'][number] }> }

const MAX_CATALOG = 64 * 1024 * 1024;

/** Options of a salvage. */
export interface SalvageOptions {
  /** Give regular files their setuid and setgid bits (SPEC.md "Restore": off unless asked). */
  keepSetid?: boolean;
}

/**
 * A volume to salvage: object `object` of `storage` (a file beside others in a folder, or
 * an object of a repository on any destination), shown to the user as `label`.
 */
export interface SalvageVolume { storage: Storage; object: string; label: string }

/** Salvages `volumes` into `target`. The caller closes their storages. */
export async function salvage(volumes: SalvageVolume[], key: RestoreKey, verifiers: openpgp.PublicKey[], target: string, o: SalvageOptions = {}): Promise<SalvageResult> {
  if (verifiers.length === 0) throw new KeyError('no-verifier', 'salvage needs the host signing public key: use an iebs restore.key or pass --public recipient.asc');
  const res: SalvageResult = { volumes: [], files: 0, incomplete: [], dirs: 0, symlinks: 0, bytes: 0, unnamedBlocks: 0, failures: [], setidDropped: 0 };
  const versions = new Map<string, Version>();
  const others = new Map<string, { record: FileRecord; time: bigint }>();
  const sources: Source[] = [];
  for (const { storage, object, label: p } of volumes) {
    const info = { path: p, entries: 0, damaged: 0 } as SalvageResult['volumes'][number];
    res.volumes.push(info);
    try {
      const size = await storage.stat(object);
      if (size === null) throw new NotFoundError('not-found', `${p}: no such volume file`);
      const entries = new Map<string, { dataOffset: number; size: number }>();
      let off = 0;
      while (off + TAR_BLOCK <= size) {
        let h;
        try { h = decodeTarHeader(await storage.getRange(object, off, TAR_BLOCK), off); } catch { info.damaged++; off += TAR_BLOCK; continue; }
        if (!h) break;
        const span = TAR_BLOCK + Math.ceil(h.size / TAR_BLOCK) * TAR_BLOCK;
        if (off + TAR_BLOCK + h.size > size) { info.damaged++; break; }
        entries.set(h.name, { dataOffset: off + TAR_BLOCK, size: h.size });
        info.entries++;
        off += span;
      }
      const head = entries.get(VOLUME_HEADER_ENTRY);
      if (!head || head.size > 128 * 1024) throw new FormatError('bad-volume', `${p}: no iebs volume header (not an iebs volume, or its start is damaged)`);
      const vh = decodeVolumeHeader(await storage.getRange(object, head.dataOffset, head.size), p);
      const plain = await pgpOpenBytes(vh.sealed, key.decryptionKeys, verifiers, `${p} sealed key`);
      const src: Source = { storage, object, volumeId: vh.volumeId, key: decodeVolumeKey(plain, vh.volumeId, p), entries };
      sources.push(src);
      const described = new Set<string>();
      for (const [name, e] of entries) {
        if (!name.startsWith(CATALOG_ENTRY_PREFIX)) continue;
        try {
          const env = await storage.getRange(object, e.dataOffset, e.size);
          const opened = openEnvelope(src.key, env, blockContext(src.volumeId, name), MAX_CATALOG, `${p}:${name}`);
          const text = await decompressBlock(opened.codec, opened.payload, opened.plainLength);
          const parser = new DocParser('catalog', `${p}:${name}`);
          const split = new LineSplitter(`${p}:${name}`);
          let header: CatalogHeader | null = null;
          for (const line of split.push(text)) {
            const it = parser.line(line);
            if (it?.type === 'header') header = it.header as CatalogHeader;
            else if (it?.type === 'record') {
              const r = it.record;
              const time = header!.time;
              if (r.kind !== 'file') {
                const k = Buffer.from(r.path).toString('latin1');
                const cur = others.get(k);
                if (!cur || cur.time < time) others.set(k, { record: r, time });
                continue;
              }
              const vk = `${header!.snapshot}/${r.uuid}`;
              let v = versions.get(vk);
              if (!v) versions.set(vk, (v = { record: r, time, blocks: new Map() }));
              for (const b of r.blocks) {
                const at = entries.get(b.entry);
                if (!at || at.dataOffset !== b.dataOffset) continue;
                v.blocks.set(b.index, { source: src, ref: b });
                described.add(b.entry);
              }
            }
          }
          split.end(); parser.finish();
        } catch (e) {
          if (!(e instanceof IebsError)) throw e;
          info.damaged++;
        }
      }
      for (const name of entries.keys()) if (name !== VOLUME_HEADER_ENTRY && !name.startsWith(CATALOG_ENTRY_PREFIX) && !described.has(name)) res.unnamedBlocks++;
    } catch (e) {
      if (!(e instanceof IebsError)) throw e;
      info.error = e.message;
    }
  }
  const wrong = res.volumes.filter((v) => v.error?.includes('not to this restore key'));
  if (wrong.length && wrong.length === res.volumes.length) throw new KeyError('wrong-key', `no volume given is sealed to this restore key (${wrong.length} tried): wrong key?`);

  // The newest version of each path, whatever its kind: a path that was a file and then
  // a directory (or the other way) is restored as it was last.
  const newest = new Map<string, Version>();
  for (const v of versions.values()) {
    const k = Buffer.from(v.record.path).toString('latin1');
    const cur = newest.get(k);
    if (!cur || cur.time < v.time) newest.set(k, v);
  }
  for (const [k, v] of newest) {
    const other = others.get(k);
    if (!other) continue;
    if (other.time < v.time) others.delete(k); else newest.delete(k);
  }
  // What lay under a path that later became a file or symlink belongs to the older
  // directory: the newer kind wins, as it does for the path itself.
  const nonDirTime = new Map<string, bigint>();
  for (const [k, v] of newest) nonDirTime.set(k, v.time);
  for (const [k, o] of others) if (o.record.kind !== 'dir') nonDirTime.set(k, o.time);
  const shadowed = (k: string, time: bigint) => {
    for (let i = k.indexOf('/'); i >= 0; i = k.indexOf('/', i + 1)) {
      const t = nonDirTime.get(k.slice(0, i));
      if (t !== undefined && t > time) return true;
    }
    return false;
  };
  for (const [k, v] of newest) if (shadowed(k, v.time)) newest.delete(k);
  for (const [k, o] of others) if (shadowed(k, o.time)) others.delete(k);
  const recordedDirs = new Set<string>();
  for (const [k, { record: r }] of others) if (r.kind === 'dir') recordedDirs.add(k);
  // Directories no record describes (their catalogue is lost, or they were never listed)
  // get what `mkdir -p` would give them.
  const unrecorded: Buffer[] = [];
  const safe = await SafeTarget.open(target, (rel) => { if (!recordedDirs.has(rel.toString('latin1'))) unrecorded.push(Buffer.from(rel)); });
  const failed = (r: FileRecord, e: unknown) => {
    if (!(e instanceof IebsError) || (e instanceof IoError && e.code === 'no-space')) throw e;
    res.failures.push({ path: Buffer.from(r.path).toString('utf8'), message: e.message });
  };
  const dirs = [...others.values()].map((o) => o.record).filter((r) => r.kind === 'dir');
  for (const r of dirs) {
    try { await safe.dir(r.path); res.dirs++; } catch (e) { failed(r, e); }
  }
  const packs = new PackCache();
  for (const v of [...newest.values()].sort((a, b) => Buffer.compare(Buffer.from(a.record.path), Buffer.from(b.record.path)))) {
    try { await salvageFile(safe, v, res, o.keepSetid ?? false, packs); } catch (e) { failed(v.record, e); }
  }
  for (const { record: r } of others.values()) {
    if (r.kind !== 'symlink') continue;
    try {
      const p = await safe.leaf(r.path);
      try {
        await makeRoom(p);
        await symlink(Buffer.from(r.target!), p);
        const t = timeArg(r.mtimeNs);
        await lutimes(p, t, t).catch(() => {});
      } catch (e) { throw targetError(e, p); }
      res.symlinks++;
    } catch (e) { failed(r, e); }
  }
  const normal = 0o777 & ~process.umask();
  for (const rel of unrecorded) await chmod(Buffer.concat([safe.root, Buffer.from('/'), rel]), normal).catch(() => {});
  for (const r of dirs.sort((a, b) => b.path.length - a.path.length)) {
    try {
      const p = await safe.dir(r.path);
      try {
        await chmod(p, r.mode);
        const t = timeArg(r.mtimeNs);
        await utimes(p, t, t);
      } catch (e) { throw targetError(e, p); }
    } catch (e) { failed(r, e); }
  }
  res.failures.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return res;
}

/**
 * The plaintext of `ref`'s envelope in `source`, authenticated and decompressed: the
 * block alone, or a pack (kept in `packs`, by place, for its other blocks).
 */
async function envelopePlain(source: Source, ref: BlockRef, packs: PackCache): Promise<Uint8Array> {
  const open = async () => {
    const env = await source.storage.getRange(source.object, ref.dataOffset, ref.length);
    const opened = openEnvelope(source.key, env, blockContext(source.volumeId, ref.entry), MAX_BLOCK, `${source.object}:${ref.entry}`);
    if (ref.start === undefined && opened.plainLength !== ref.size) throw new FormatError('bad-size', 'size differs');
    return decompressBlock(opened.codec, opened.payload, opened.plainLength);
  };
  if (ref.start === undefined) return open();
  return packs.block(`${source.object}@${ref.dataOffset}`, { ...ref, start: ref.start }, open);
}

async function salvageFile(safe: SafeTarget, v: Version, res: SalvageResult, keepSetid: boolean, packs: PackCache): Promise<void> {
  const r = v.record;
  const final = await safe.leaf(r.path);
  const tmp = tempBeside(final);
  let fh: FileHandle | null = null;
  let covered = 0, missing = 0, ok = false;
  try {
    fh = await open(tmp, 'wx', 0o600);
    let expectOffset = 0;
    const indexes = [...v.blocks.keys()].sort((a, b) => a - b);
    for (const i of indexes) {
      const { source, ref } = v.blocks.get(i)!;
      try {
        const data = await envelopePlain(source, ref, packs);
        if (!digestMatches(data, ref.digest)) throw new FormatError('bad-hash', 'hash differs');
        await fh.write(data, 0, data.length, ref.offset);
        if (ref.offset === expectOffset) expectOffset += ref.size;
        covered += ref.size;
      } catch (e) {
        if (!(e instanceof IebsError)) throw e;
        missing++;
      }
    }
    await fh.truncate(r.size);
    await fh.close();
    fh = null;
    const complete = covered === r.size && missing === 0 && expectOffset === r.size;
    await chmod(tmp, fileMode(r.mode, keepSetid));
    const t = timeArg(r.mtimeNs);
    await utimes(tmp, t, t);
    const dest = complete ? final : Buffer.concat([final, Buffer.from('.incomplete')]);
    await makeRoom(dest);
    await rename(tmp, dest);
    ok = true;
    if (!keepSetid && r.mode & SETID_BITS) res.setidDropped++;
    if (complete) { res.files++; res.bytes += r.size; }
    else res.incomplete.push({ path: Buffer.from(r.path).toString('utf8') + '.incomplete', missing: r.size - covered, size: r.size });
  } catch (e) {
    throw targetError(e, final);
  } finally {
    if (!ok) { await fh?.close().catch(() => {}); await rm(tmp, { force: true }).catch(() => {}); }
  }
}
