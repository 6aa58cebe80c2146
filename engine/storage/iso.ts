/**
 * A read-only repository on optical discs (SPEC.md "Disc sets"): `iso:PATH[,PATH...]`,
 * each PATH a disc image, a folder of images (`*.iso`) or the folder a disc is mounted
 * on. The discs are merged into one repository view, in any order; the disc labels
 * (`iebs-disc.txt`) say which set each disc belongs to and which volume is on which
 * disc, so an object that is on a disc not given is reported with that disc's number.
 *
 * Images are read directly, with no mount and no root: the ISO 9660 volume descriptors
 * and directory tree are parsed (formats/iso9660.ts; Rock Ridge names, else Joliet,
 * else plain ISO names; level 3 multi-extent files) once, when the first call needs
 * them, and each object's bytes are then read from its extents. An image is untrusted:
 * every extent must lie inside the file, directories and continuation areas are
 * bounded, a directory is entered once, and the tree's depth and size are limited.
 *
 * Writes are refused (`permission`): a disc is never written through the contract.
 */
import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { FormatError, IebsError, UsageError } from '../../formats/errors.js';
import {
  decodeDirRecords, decodeSusp, decodeVolumeDescriptor, FIRST_DESCRIPTOR, isoName, isRelocated, ISO_BLOCK, jolietName, rockRidgeName,
  suspSkip, type DirRecord, type SuspEntry, type VolumeDescriptor,
} from '../../formats/iso9660.js';
import { decodeDiscLabel, LABEL_FILE, LABEL_MAX, PAR2_BASE, type DiscLabel } from '../../formats/disc-label.js';
import { checkObjectName, storageError, type ObjectWriter, type Storage } from './storage.js';

/** Limits on what an image may make a reader do. */
const LIMITS = { descriptors: 64, dirBytes: 64 * 1024 * 1024, entries: 1_000_000, depth: 8, continuations: 16, suspBytes: 64 * 1024, extents: 4096 };

/** A file on a disc: its size and how to read a range of it. */
export interface DiscFile {
  size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
  /** In an image: where its bytes are (byte offset in the image and length of each extent, in order). */
  extents?: { at: number; size: number }[];
}

/** One disc: an image or a mounted disc's folder. */
export interface Disc {
  where: string;
  /** The ISO volume id (an image only). */
  volumeId: string | null;
  /** Every file, by its path on the disc (`/`-separated). */
  files: Map<string, DiscFile>;
  close(): Promise<void>;
}

interface Extent { at: number; size: number }

/** Opens a disc image and reads its directory tree (SPEC.md "Disc sets": how an image is read). */
export async function openImage(path: string): Promise<Disc> {
  let fh: FileHandle;
  try { fh = await open(path, 'r'); } catch (cause) {
    throw storageError((cause as NodeJS.ErrnoException).code === 'ENOENT' ? 'not-found' : 'permission', path, '', `cannot open disc image (${(cause as NodeJS.ErrnoException).code})`, cause);
  }
  try {
    const size = (await fh.stat()).size;
    const files = await readTree(fh, size, path);
    return { where: path, volumeId: files.volumeId, files: files.files, close: () => fh.close() };
  } catch (e) { await fh.close().catch(() => {}); throw e; }
}

async function readAt(fh: FileHandle, imageSize: number, at: number, length: number, where: string): Promise<Uint8Array> {
  if (at < 0 || length < 0 || at + length > imageSize) throw new FormatError('truncated', `${where}: ${length} bytes at byte ${at} lie past the image's end (${imageSize} bytes)`);
  const buf = Buffer.alloc(length);
  let off = 0;
  while (off < length) {
    const { bytesRead } = await fh.read(buf, off, length - off, at + off);
    if (bytesRead === 0) throw new FormatError('truncated', `${where}: image ends at byte ${at + off}`);
    off += bytesRead;
  }
  return buf;
}

async function readTree(fh: FileHandle, imageSize: number, where: string): Promise<{ volumeId: string; files: Map<string, DiscFile> }> {
  let primary: VolumeDescriptor | null = null, joliet: VolumeDescriptor | null = null;
  for (let lba = FIRST_DESCRIPTOR; ; lba++) {
    if (lba >= FIRST_DESCRIPTOR + LIMITS.descriptors) throw new FormatError('bad-entry', `${where}: no volume descriptor set terminator in ${LIMITS.descriptors} sectors`);
    const d = decodeVolumeDescriptor(await readAt(fh, imageSize, lba * ISO_BLOCK, ISO_BLOCK, where), lba, where);
    if (!d) continue;
    if (d.type === 255) break;
    const vd = d as VolumeDescriptor;
    if (vd.type === 1 && !primary) primary = vd;
    if (vd.joliet && !joliet) joliet = vd;
  }
  if (!primary?.root) throw new FormatError('bad-entry', `${where}: no primary volume descriptor`);
  const dirBytes = async (r: DirRecord) => {
    if (r.size > LIMITS.dirBytes) throw new FormatError('absurd-size', `${where}: directory of ${r.size} bytes at byte ${r.at} (limit ${LIMITS.dirBytes})`);
    return readAt(fh, imageSize, r.extent * ISO_BLOCK, r.size, where);
  };
  // Rock Ridge if the root's "." record starts with an SP entry; else Joliet; else plain names.
  const rootRecords = decodeDirRecords(await dirBytes(primary.root), primary.root.extent * ISO_BLOCK, where);
  const skip = rootRecords[0] ? suspSkip(rootRecords[0].systemUse) : null;
  const mode: 'rr' | 'joliet' | 'iso' = skip !== null ? 'rr' : joliet?.root ? 'joliet' : 'iso';
  const top = mode === 'joliet' ? joliet!.root! : primary.root;

  const suspEntries = async (r: DirRecord): Promise<SuspEntry[]> => {
    let { entries, next } = decodeSusp(r.systemUse, r.at, where);
    let hops = 0, bytes = r.systemUse.length;
    while (next) {
      if (++hops > LIMITS.continuations) throw new FormatError('bad-entry', `${where}: more than ${LIMITS.continuations} SUSP continuation areas for the record at byte ${r.at}`);
      if (next.offset + next.length > ISO_BLOCK || (bytes += next.length) > LIMITS.suspBytes) throw new FormatError('bad-entry', `${where}: SUSP continuation area out of bounds for the record at byte ${r.at}`);
      const at = next.extent * ISO_BLOCK + next.offset;
      const more = decodeSusp(await readAt(fh, imageSize, at, next.length, where), at, where);
      entries = entries.concat(more.entries);
      next = more.next;
    }
    return entries;
  };

  const files = new Map<string, DiscFile>();
  const seenDirs = new Set<number>([top.extent]);
  let count = 0;
  const walk = async (dir: DirRecord, prefix: string, depth: number): Promise<void> => {
    const records = decodeDirRecords(await dirBytes(dir), dir.extent * ISO_BLOCK, where, mode === 'rr' ? skip! : 0);
    let pending: { name: string; extents: Extent[] } | null = null;
    for (const r of records) {
      if (r.id.length === 1 && r.id[0] <= 1) continue;
      if (++count > LIMITS.entries) throw new FormatError('absurd-size', `${where}: more than ${LIMITS.entries} directory entries`);
      let name: string;
      if (mode === 'rr') {
        const entries = await suspEntries(r);
        if (isRelocated(entries)) continue;
        name = rockRidgeName(entries, `${where} byte ${r.at}`) ?? isoName(r.id);
      } else name = mode === 'joliet' ? jolietName(r.id, `${where} byte ${r.at}`) : isoName(r.id);
      if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0') || Buffer.byteLength(name) > 255) {
        throw new FormatError('bad-name', `${where}: bad file name ${JSON.stringify(name)} at byte ${r.at}`);
      }
      const path = prefix ? `${prefix}/${name}` : name;
      if (pending && (pending.name !== path || r.dir)) throw new FormatError('bad-entry', `${where}: multi-extent file ${JSON.stringify(pending.name)} is cut short at byte ${r.at}`);
      if (r.dir) {
        if (depth >= LIMITS.depth) throw new FormatError('bad-entry', `${where}: directories nested deeper than ${LIMITS.depth} at byte ${r.at}`);
        if (seenDirs.has(r.extent)) throw new FormatError('bad-entry', `${where}: directory ${JSON.stringify(path)} at byte ${r.at} is entered twice (a loop)`);
        seenDirs.add(r.extent);
        await walk(r, path, depth + 1);
        continue;
      }
      const at = r.extent * ISO_BLOCK;
      if (at + r.size > imageSize) throw new FormatError('truncated', `${where}: file ${JSON.stringify(path)} (record at byte ${r.at}) lies past the image's end`);
      pending ??= { name: path, extents: [] };
      if (pending.extents.length >= LIMITS.extents) throw new FormatError('bad-entry', `${where}: file ${JSON.stringify(path)} has more than ${LIMITS.extents} extents`);
      // Every extent but the last of a multi-extent file is a whole number of sectors.
      if (r.more && r.size % ISO_BLOCK !== 0) throw new FormatError('bad-entry', `${where}: extent of ${r.size} bytes (not whole sectors) before the last of ${JSON.stringify(path)} at byte ${r.at}`);
      pending.extents.push({ at, size: r.size });
      if (r.more) continue;
      if (files.has(path)) throw new FormatError('bad-entry', `${where}: file ${JSON.stringify(path)} is listed twice (byte ${r.at})`);
      files.set(path, extentFile(fh, pending.extents, where, path));
      pending = null;
    }
    if (pending) throw new FormatError('bad-entry', `${where}: multi-extent file ${JSON.stringify(pending.name)} has no last extent`);
  };
  await walk(top, '', 0);
  return { volumeId: primary.volumeId, files };
}

function extentFile(fh: FileHandle, extents: Extent[], where: string, path: string): DiscFile {
  const size = extents.reduce((a, e) => a + e.size, 0);
  return {
    size,
    extents,
    read: async (offset, length) => {
      if (offset < 0 || length < 0 || offset + length > size) throw new FormatError('truncated', `${where}: ${path}: range past its end`);
      const out = Buffer.alloc(length);
      let done = 0, base = 0;
      for (const e of extents) {
        if (done === length) break;
        const from = offset + done;
        if (from < base + e.size) {
          const n = Math.min(length - done, base + e.size - from);
          let got = 0;
          while (got < n) {
            const { bytesRead } = await fh.read(out, done + got, n - got, e.at + (from - base) + got);
            if (bytesRead === 0) throw new FormatError('truncated', `${where}: ${path}: image ends inside the file`);
            got += bytesRead;
          }
          done += n;
        }
        base += e.size;
      }
      return out;
    },
  };
}

/** Opens the folder a disc is mounted on (or a copy of a disc) as a Disc. */
export async function openDiscFolder(root: string): Promise<Disc> {
  const files = new Map<string, DiscFile>();
  const handles: FileHandle[] = [];
  const walk = async (dir: string, prefix: string, depth: number): Promise<void> => {
    if (depth > LIMITS.depth) return;
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const path = prefix ? `${prefix}/${e.name}` : e.name;
      const full = join(dir, e.name);
      if (e.isDirectory()) await walk(full, path, depth + 1);
      else if (e.isFile()) {
        const size = (await stat(full)).size;
        let fh: Promise<FileHandle> | null = null;
        files.set(path, {
          size,
          read: async (offset, length) => {
            fh ??= open(full, 'r').then((h) => { handles.push(h); return h; });
            const buf = Buffer.alloc(length);
            const h = await fh;
            let got = 0;
            while (got < length) {
              const { bytesRead } = await h.read(buf, got, length - got, offset + got);
              if (bytesRead === 0) throw storageError('short-read', root, path, 'file ends early (unreadable disc?)');
              got += bytesRead;
            }
            return buf;
          },
        });
      }
    }
  };
  await walk(root, '', 0);
  return { where: root, volumeId: null, files, close: async () => { await Promise.all(handles.map((h) => h.close().catch(() => {}))); } };
}

/** Opens every disc a PATH names: an image, a mounted disc's folder (it has a label), or a folder of `*.iso` images. */
export async function openDiscs(path: string): Promise<Disc[]> {
  let st;
  try { st = await stat(path); } catch (cause) {
    throw storageError('not-found', `iso:${path}`, '', 'no such disc image or folder', cause);
  }
  if (st.isFile()) return [await openImage(path)];
  if (!st.isDirectory()) throw new UsageError('bad-repo', `iso:${path}: neither a disc image nor a folder`);
  const names = await readdir(path);
  if (names.includes(LABEL_FILE) || names.includes('config')) return [await openDiscFolder(path)];
  const images = names.filter((n) => /\.iso$/i.test(n)).sort();
  if (images.length === 0) throw storageError('not-found', `iso:${path}`, '', `no disc here: neither ${LABEL_FILE} nor *.iso images`);
  const out: Disc[] = [];
  try { for (const n of images) out.push(await openImage(join(path, n))); } catch (e) { await Promise.all(out.map((d) => d.close())); throw e; }
  return out;
}

/** Reads and decodes a disc's label, or null when it has none. */
export async function discLabel(d: Disc): Promise<DiscLabel | null> {
  const f = d.files.get(LABEL_FILE);
  if (!f) return null;
  if (f.size > LABEL_MAX) throw new FormatError('absurd-size', `${d.where}: ${LABEL_FILE} is larger than 16 MiB`);
  return decodeDiscLabel(Buffer.from(await f.read(0, f.size)).toString('latin1'), `${d.where}: ${LABEL_FILE}`);
}

/** The files of the disc itself, not of the repository: the merged view leaves them out. */
const DISC_OWN = new RegExp(`^(README\\.txt|SPEC\\.md|${LABEL_FILE.replace('.', '\\.')}|${PAR2_BASE}(\\.vol\\d+\\+\\d+)?\\.par2)$`);

/** A set of discs as the storage sees it. */
interface View {
  objects: Map<string, DiscFile>;
  sorted: string[];
  /** Where each volume of a labelled set is: disc number, total, set name; only volumes not given. */
  absent: Map<string, { disc: number; total: number; set: string }>;
  missing: { set: string; name: string; total: number; discs: number[] }[];
  discs: Disc[];
}

/** The read-only storage of `iso:PATH[,PATH...]`. */
export class IsoStorage implements Storage {
  private view: Promise<View> | null = null;
  constructor(private readonly paths: string[]) {
    if (paths.length === 0 || paths.some((p) => p === '')) throw new UsageError('bad-repo', 'iso: needs one or more PATHs, separated by commas');
  }
  get where(): string { return `iso:${this.paths.join(',')}`; }

  private open(): Promise<View> {
    this.view ??= this.load();
    return this.view;
  }

  private async load(): Promise<View> {
    const discs: Disc[] = [];
    try {
      for (const p of this.paths) discs.push(...await openDiscs(p));
      const objects = new Map<string, DiscFile>();
      const sets = new Map<string, { label: DiscLabel; present: Set<number> }>();
      let repository: string | null = null;
      for (const d of discs) {
        const label = await discLabel(d);
        if (label) {
          if (repository !== null && repository !== label.repository) throw new UsageError('bad-repo', `${d.where}: a disc of repository ${label.repository}, not ${repository} as the others`);
          repository = label.repository;
          const s = sets.get(label.set) ?? { label, present: new Set<number>() };
          s.present.add(label.disc);
          sets.set(label.set, s);
        }
        for (const [name, f] of d.files) if (!DISC_OWN.test(name) && !objects.has(name)) objects.set(name, f);
      }
      const absent = new Map<string, { disc: number; total: number; set: string }>();
      const missing: View['missing'] = [];
      for (const [set, { label, present }] of sets) {
        const gone = Array.from({ length: label.total }, (_, i) => i + 1).filter((n) => !present.has(n));
        if (gone.length) missing.push({ set, name: label.name, total: label.total, discs: gone });
        for (const v of label.volumes) if (!present.has(v.disc) && !objects.has(`volumes/${v.name}`)) absent.set(`volumes/${v.name}`, { disc: v.disc, total: label.total, set: label.name });
      }
      const sorted = [...objects.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      return { objects, sorted, absent, missing, discs };
    } catch (e) {
      await Promise.all(discs.map((d) => d.close().catch(() => {})));
      throw e;
    }
  }

  /** The discs of each labelled set that were not given, by number (empty when all are here). */
  async missingDiscs(): Promise<View['missing']> {
    return (await this.open()).missing;
  }

  private notFound(v: View, name: string) {
    return storageError('not-found', this.where, name, reason(v, name) ?? 'not found');
  }

  async absentReason(name: string): Promise<string | null> {
    return reason(await this.open(), name);
  }

  private readOnly(name: string): IebsError {
    return storageError('permission', this.where, name, 'a disc set is read-only (copy its files to a directory to write)');
  }

  async create(name: string): Promise<ObjectWriter> { throw this.readOnly(name); }
  async put(name: string): Promise<void> { throw this.readOnly(name); }
  async delete(name: string): Promise<void> { throw this.readOnly(name); }
  async removeDebris(): Promise<number> { return 0; }

  async get(name: string): Promise<Uint8Array> {
    checkObjectName(name);
    const v = await this.open();
    const f = v.objects.get(name);
    if (!f) throw this.notFound(v, name);
    return this.read(f, name, 0, f.size);
  }

  async getRange(name: string, offset: number, length: number): Promise<Uint8Array> {
    checkObjectName(name);
    const v = await this.open();
    const f = v.objects.get(name);
    if (!f) throw this.notFound(v, name);
    if (offset < 0 || length < 0 || offset + length > f.size) throw storageError('short-read', this.where, name, `object ends before byte ${offset + length} (truncated?)`);
    return this.read(f, name, offset, length);
  }

  private async read(f: DiscFile, name: string, offset: number, length: number): Promise<Uint8Array> {
    try { return await f.read(offset, length); } catch (e) {
      if (e instanceof IebsError && e.code === 'short-read') throw e;
      throw storageError('permanent', this.where, name, `unreadable: ${(e as Error).message}`, e);
    }
  }

  async stat(name: string): Promise<number | null> {
    checkObjectName(name);
    return (await this.open()).objects.get(name)?.size ?? null;
  }

  async *list(prefix: string): AsyncIterable<string> {
    const v = await this.open();
    for (const n of v.sorted) if (n.startsWith(prefix)) yield n;
  }

  async close(): Promise<void> {
    const v = this.view;
    this.view = null;
    if (v) await v.then((x) => Promise.all(x.discs.map((d) => d.close())), () => {});
  }
}

function reason(v: View, name: string): string | null {
  const a = v.absent.get(name);
  return a ? `on disc ${a.disc} of ${a.total} of set ${a.set}, which is not among the discs given` : null;
}

/** Parses the PATH list of `iso:PATH[,PATH...]`. */
export function parseIsoPaths(spec: string): string[] {
  return spec.split(',').map((p) => p.trim());
}
