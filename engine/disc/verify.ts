/**
 * Checking and repairing a disc with its PAR2 set (SPEC.md "Disc sets": parity).
 *
 * A mounted disc's folder (or a copy of a disc) is checked where it is by par2 verify.
 * An image is read with iebs's own ISO 9660 reader (no mount, no root) and its files
 * copied into a scratch folder first, where par2 verify runs. A repair runs par2 repair
 * on such a copy: for a folder, the copy is the result (a folder `iso:` reads); for an
 * image, the repaired files are written into a copy of the image at the places the
 * damaged ones have, so the repaired image is the original, sector for sector, but for
 * the repaired bytes; it gets a new name and never replaces the original. A file that
 * cannot be read from a disc (an unreadable sector) is copied with zeros in its place,
 * 2048 bytes at a time, so the parity can rebuild it.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, link, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { IoError } from '../../formats/errors.js';
import { decodeDiscLabel, LABEL_FILE, PAR2_BASE, type DiscLabel } from '../../formats/disc-label.js';
import { openDiscFolder, openImage, type Disc } from '../storage/iso.js';
import { par2Check, type ParCheck } from './tools.js';

/** What checking one disc found. */
export interface DiscCheck {
  where: string;
  label: DiscLabel | null;
  check: ParCheck;
  /** Bytes that could not be read from the disc (zeros in the copy). */
  unreadable: number;
  /** Where the repaired image or folder was written, after a repair. */
  repaired?: string;
}

/** Options of a check. */
export interface CheckOptions {
  repair?: boolean;
  /** The repaired image or folder; default: the original's name with `.repaired`. */
  out?: string;
  /** A folder for the copy of an image's files (default: beside the output, or the OS's temporary folder). */
  scratch?: string;
}

const PIECE = 1024 * 1024;

/** Checks (and with `repair`, repairs a copy of) the disc image or disc folder at `path`. */
export async function checkDisc(path: string, o: CheckOptions): Promise<DiscCheck> {
  path = resolve(path);
  o = { ...o, out: o.out === undefined ? undefined : resolve(o.out) };
  const isImage = (await stat(path)).isFile();
  const out = o.out ?? (isImage ? path.replace(/(\.iso)?$/i, '.repaired.iso') : `${path.replace(/\/+$/, '')}.repaired`);
  if (o.repair && (await stat(out).then(() => true, () => false))) throw new IoError('exists', `${out} already exists; not replaced`);
  const disc = isImage ? await openImage(path) : await openDiscFolder(path);
  const tag = randomBytes(6).toString('hex');
  const scratch = resolve(o.scratch ?? (o.repair ? dirname(out) : (await import('node:os')).tmpdir()), `.iebs-disc-check-${tag}`);
  try {
    const labelFile = disc.files.get(LABEL_FILE);
    const label = labelFile ? decodeDiscLabel(Buffer.from(await labelFile.read(0, labelFile.size)).toString('latin1'), `${path}: ${LABEL_FILE}`) : null;
    if (!disc.files.has(`${PAR2_BASE}.par2`)) throw new IoError('io', `${path}: no ${PAR2_BASE}.par2 on this disc (not written by iebs disc write, or its parity is unreadable)`);
    // A folder that reads whole is checked where it is; an image, or a repair, needs a copy.
    let dir = path, unreadable = 0;
    if (isImage || o.repair) {
      await mkdir(scratch, { recursive: true });
      unreadable = await copyOut(disc, scratch);
      dir = scratch;
    }
    const check = await par2Check(dir, PAR2_BASE, !!o.repair && !!(await par2Check(dir, PAR2_BASE, false)).damaged.length);
    const res: DiscCheck = { where: path, label, check, unreadable };
    if (o.repair && check.state === 'repaired') {
      if (isImage) res.repaired = await patchImage(path, disc, scratch, check, out);
      else {
        // par2 keeps each damaged file as NAME.1 beside the rebuilt one: not part of the disc.
        for (const d of check.damaged) await rm(join(scratch, ...`${d.file}.1`.split('/')), { force: true });
        await rename(scratch, out);
        res.repaired = out;
      }
    }
    return res;
  } finally {
    await disc.close();
    await rm(scratch, { recursive: true, force: true }).catch(() => {});
  }
}

/** Copies every file of a disc into `dir`; returns the bytes that could not be read (zeros in the copy). */
async function copyOut(disc: Disc, dir: string): Promise<number> {
  let unreadable = 0;
  for (const [name, f] of disc.files) {
    const path = join(dir, ...name.split('/'));
    await mkdir(dirname(path), { recursive: true });
    const fh = await open(path, 'wx');
    try {
      for (let off = 0; off < f.size; off += PIECE) {
        const n = Math.min(PIECE, f.size - off);
        let piece: Uint8Array;
        try { piece = await f.read(off, n); } catch {
          // Sector by sector: what reads is kept, what does not is zeros for the parity to rebuild.
          const parts: Uint8Array[] = [];
          for (let s = 0; s < n; s += 2048) {
            const m = Math.min(2048, n - s);
            try { parts.push(await f.read(off + s, m)); } catch { parts.push(new Uint8Array(m)); unreadable += m; }
          }
          piece = Buffer.concat(parts);
        }
        await fh.write(piece, 0, piece.length, off);
      }
    } finally { await fh.close(); }
  }
  return unreadable;
}

/** Writes a copy of the image with the files par2 rebuilt put back at their extents; returns its path. */
async function patchImage(image: string, disc: Disc, dir: string, check: ParCheck, out: string): Promise<string> {
  const tmp = `${out}.tmp-${randomBytes(6).toString('hex')}`;
  try {
    await copyFile(image, tmp);
    const fh = await open(tmp, 'r+');
    try {
      for (const d of check.damaged) {
        const f = disc.files.get(d.file);
        if (!f?.extents) throw new IoError('io', `${image}: ${d.file} was rebuilt but has no place in the image (its directory entry is damaged); write the disc anew from the repaired files`);
        const src = await open(join(dir, ...d.file.split('/')), 'r');
        try {
          let base = 0;
          for (const e of f.extents) {
            for (let off = 0; off < e.size; off += PIECE) {
              const n = Math.min(PIECE, e.size - off);
              const buf = Buffer.alloc(n);
              const { bytesRead } = await src.read(buf, 0, n, base + off);
              if (bytesRead !== n) throw new IoError('io', `${d.file}: the rebuilt file is shorter than its place in the image`);
              await fh.write(buf, 0, n, e.at + off);
            }
            base += e.size;
          }
        } finally { await src.close(); }
      }
      await fh.sync();
    } finally { await fh.close(); }
    await link(tmp, out);
    return out;
  } finally { await rm(tmp, { force: true }).catch(() => {}); }
}
