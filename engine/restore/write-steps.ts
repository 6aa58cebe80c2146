/**
 * What a writer thread of restore does with each item (write-worker.ts runs them there),
 * with synchronous calls: check a small file against its digest and write it (under its
 * final name in a directory the restore made, else as a temporary file beside the final
 * name that is renamed into place once it has its owner, mode and time); check a block of
 * a larger file and write it at its offset; set a directory's owner, mode and time.
 */
import { chmodSync, closeSync, fchmodSync, fchownSync, futimesSync, lchownSync, lstatSync, openSync, renameSync, rmdirSync, rmSync, utimesSync, writeSync } from 'node:fs';
import { digestMatches } from '../crypto/hashes.js';
import { hashOfDigest } from '../../formats/text.js';
import type { BlockWrite, DirMeta, SmallFile, WriterFailure, WriterItem } from './write-protocol.js';

/** Does `item`; throws what `failureOf` reports. */
export function doItem(item: WriterItem): void {
  if (item.t === 'file') write(item.file);
  else if (item.t === 'block') writeBlock(item.block);
  else setDir(item.dir);
}

/** How an error `doItem` threw is reported. */
export function failureOf(e: unknown): WriterFailure {
  if (e instanceof Refusal) return e.failure;
  const code = (e as NodeJS.ErrnoException).code;
  return { why: 'errno', code: typeof code === 'string' ? code : 'EIO', message: e instanceof Error ? e.message : String(e) };
}

/** What a writer refuses to do, as it is reported. */
class Refusal extends Error {
  constructor(readonly failure: WriterFailure) { super(failure.message); }
}

/** Refuses (bad-hash) unless `data` hashes to `digest`. */
function check(data: Uint8Array, digest: Uint8Array): void {
  if (!digestMatches(data, digest)) throw new Refusal({ why: 'bad-hash', message: `block content does not match its ${hashOfDigest(digest)}` });
}

function writeBlock(b: BlockWrite): void {
  if (b.digest) check(b.data, b.digest);
  for (let off = 0; off < b.data.length;) off += writeSync(b.fd, b.data, off, b.data.length - off, b.offset + off);
}

function write(f: SmallFile): void {
  if (f.digest) check(f.data, f.digest);
  const final = Buffer.from(f.final, 'latin1');
  // In a directory this restore made, nothing is there to keep safe from a half-written
  // file: the file is made under its own name (the rename was a third of this thread's
  // time on small files). Anything else, or a name taken meanwhile, goes through a
  // temporary file and a rename.
  if (f.direct) {
    let fd = -1;
    try { fd = openSync(final, 'wx', 0o600); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e; }
    if (fd >= 0) {
      try { fill(fd, f); } catch (e) { rmSync(final, { force: true }); throw e; }
      return;
    }
  }
  const tmp = Buffer.from(f.tmp, 'latin1');
  let ok = false;
  try {
    fill(openSync(tmp, 'wx', 0o600), f);
    // rename replaces a file or symlink in the way, and fails on a directory (EISDIR): an
    // empty one is removed (a path that changed kind), one with anything in it is refused
    // by name. A look before each rename cost 6% of this thread's time.
    try { renameSync(tmp, final); } catch (e) {
      if (!lstatSync(final, { throwIfNoEntry: false })?.isDirectory()) throw e;
      try { rmdirSync(final); } catch { throw new Refusal({ why: 'in-the-way', message: 'a directory is in the way' }); }
      renameSync(tmp, final);
    }
    ok = true;
  } finally {
    if (!ok) rmSync(tmp, { force: true });
  }
}

function setDir(d: DirMeta): void {
  const p = Buffer.from(d.path, 'latin1');
  if (d.owner) { try { lchownSync(p, d.owner.uid, d.owner.gid); } catch { /* kept as the restoring user */ } }
  chmodSync(p, d.mode);
  utimesSync(p, d.mtime, d.mtime);
}

/** Writes `f`'s content into the new file `fd`, gives it its owner, mode and mtime, and closes it (also when that fails). */
function fill(fd: number, f: SmallFile): void {
  try {
    for (let off = 0; off < f.data.length;) off += writeSync(fd, f.data, off, f.data.length - off);
    if (f.owner) { try { fchownSync(fd, f.owner.uid, f.owner.gid); } catch { /* kept as the restoring user */ } }
    fchmodSync(fd, f.mode);
    futimesSync(fd, f.mtime, f.mtime);
  } finally {
    closeSync(fd);
  }
}
