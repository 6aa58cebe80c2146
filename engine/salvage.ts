/**
 * Salvage (SPEC.md "Volume format": restoring from one volume alone): everything that
 * can be recovered from the given volume files, with no manifest, no repository and no
 * other volume. Each volume is scanned entry by entry (a damaged tar header is skipped by
 * resynchronising on the next valid one); its header gives the data key (unsealed with
 * the restore key), its catalogue pieces give names and the place of every block in its
 * file. Files whose blocks all came through are restored under their names; files with
 * parts missing (in other volumes, or damaged) are written with those ranges as zeros
 * under `<name>.incomplete` and listed.
 */
import { open, rename, rm, chmod, utimes, symlink } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import type * as openpgp from 'openpgp';
import { FormatError, IebsError, KeyError } from '../formats/errors.js';
import { blockContext } from '../formats/envelope.js';
import { DocParser, LineSplitter, MAX_BLOCK, type CatalogHeader, type FileRecord } from '../formats/manifest.js';
import { decodeTarHeader, TAR_BLOCK } from '../formats/tar.js';
import { CATALOG_ENTRY_PREFIX, VOLUME_HEADER_ENTRY, decodeVolumeHeader, decodeVolumeKey } from '../formats/volume.js';
import { openEnvelope, pgpOpenBytes } from './crypto.js';
import { decompressBlock } from './codec.js';
import type { RestoreKey } from './keys.js';
import { LocalStorage } from './storage/local.js';
import { SafeTarget, removeNonDir } from './restore.js';

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
}

interface Source { storage: LocalStorage; object: string; volumeId: Uint8Array; key: Uint8Array; entries: Map<string, { dataOffset: number; size: number }> }
interface Version { record: FileRecord; time: bigint; blocks: Map<number, { source: Source; ref: FileRecord['blocks'][number] }> }

const MAX_CATALOG = 64 * 1024 * 1024;

/** Salvages `paths` into `target`. */
export async function salvage(paths: string[], key: RestoreKey, verifiers: openpgp.PublicKey[], target: string): Promise<SalvageResult> {
  if (verifiers.length === 0) throw new KeyError('no-verifier', 'salvage needs the host signing public key: use an iebs restore.key or pass --public recipient.asc');
  const res: SalvageResult = { volumes: [], files: 0, incomplete: [], dirs: 0, symlinks: 0, bytes: 0, unnamedBlocks: 0 };
  const versions = new Map<string, Version>();
  const others = new Map<string, { record: FileRecord; time: bigint }>();
  const sources: Source[] = [];
  for (const p of paths) {
    const info = { path: p, entries: 0, damaged: 0 } as SalvageResult['volumes'][number];
    res.volumes.push(info);
    const storage = new LocalStorage(dirname(p));
    const object = basename(p);
    try {
      const size = await storage.stat(object);
      if (size === null) throw new IebsError('missing', `${p}: no such volume file`);
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

  // The newest version of each path.
  const newest = new Map<string, Version>();
  for (const v of versions.values()) {
    const k = Buffer.from(v.record.path).toString('latin1');
    const cur = newest.get(k);
    if (!cur || cur.time < v.time) newest.set(k, v);
  }
  const safe = new SafeTarget(Buffer.from(target.replace(/\/+$/, '') || '/'));
  await (await import('node:fs/promises')).mkdir(target, { recursive: true });
  for (const { record: r } of [...others.values()].filter((o) => o.record.kind === 'dir')) { await safe.dir(r.path); res.dirs++; }
  for (const v of [...newest.values()].sort((a, b) => Buffer.compare(Buffer.from(a.record.path), Buffer.from(b.record.path)))) {
    await salvageFile(safe, v, res);
  }
  for (const { record: r } of others.values()) {
    if (r.kind !== 'symlink') continue;
    const p = await safe.leaf(r.path);
    await removeNonDir(p);
    await symlink(Buffer.from(r.target!), p);
    res.symlinks++;
  }
  for (const { record: r } of [...others.values()].filter((o) => o.record.kind === 'dir').sort((a, b) => b.record.path.length - a.record.path.length)) {
    const p = await safe.dir(r.path);
    await chmod(p, r.mode);
    const t = Number(r.mtimeNs) / 1e9;
    await utimes(p, t, t);
  }
  for (const s of sources) await s.storage.close();
  return res;
}

async function salvageFile(safe: SafeTarget, v: Version, res: SalvageResult): Promise<void> {
  const r = v.record;
  const final = await safe.leaf(r.path);
  const tmp = Buffer.concat([final.subarray(0, final.lastIndexOf(0x2f) + 1), Buffer.from(`.iebs-salvage-${randomBytes(6).toString('hex')}`)]);
  const fh = await open(tmp, 'wx', 0o600);
  let covered = 0, missing = 0, ok = false;
  try {
    let expectOffset = 0;
    const indexes = [...v.blocks.keys()].sort((a, b) => a - b);
    for (const i of indexes) {
      const { source, ref } = v.blocks.get(i)!;
      try {
        const env = await source.storage.getRange(source.object, ref.dataOffset, ref.length);
        const opened = openEnvelope(source.key, env, blockContext(source.volumeId, ref.entry), MAX_BLOCK, `${source.object}:${ref.entry}`);
        if (opened.plainLength !== ref.size) throw new FormatError('bad-size', 'size differs');
        const data = await decompressBlock(opened.codec, opened.payload, ref.size);
        if (!createHash('sha384').update(data).digest().equals(ref.sha384)) throw new FormatError('bad-hash', 'hash differs');
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
    const complete = covered === r.size && missing === 0 && expectOffset === r.size;
    await chmod(tmp, r.mode);
    const t = Number(r.mtimeNs) / 1e9;
    await utimes(tmp, t, t);
    const dest = complete ? final : Buffer.concat([final, Buffer.from('.incomplete')]);
    await removeNonDir(dest);
    await rename(tmp, dest);
    ok = true;
    if (complete) { res.files++; res.bytes += r.size; }
    else res.incomplete.push({ path: Buffer.from(r.path).toString('utf8') + '.incomplete', missing: r.size - covered, size: r.size });
  } finally {
    if (!ok) { await fh.close().catch(() => {}); await rm(tmp, { force: true }).catch(() => {}); }
  }
}
