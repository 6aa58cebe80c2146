/**
 * Writing the images of a disc set (SPEC.md "Disc sets"), one disc at a time.
 *
 * For each disc: a staging folder beside the output gets the disc's tree: the
 * repository's objects (symbolic links to them when the repository is a local folder,
 * else copies read through the storage contract), each volume, manifest and index
 * checked against the digest its signed record gives, then README.txt, SPEC.md and the
 * label; par2 makes the PAR2 set over all of them; xorriso makes the image under a
 * temporary name; the image is read back with iebs's own reader (every file there at its
 * size, the label byte for byte) and checked against the medium's capacity, then synced
 * and linked to its final name, which it never replaces. The staging folder goes at the
 * end, whatever happened.
 */
import { createHash, randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IebsError, IoError } from '../../formats/errors.js';
import { discReadme, encodeDiscLabel, LABEL_FILE, PAR2_BASE, README_FILE, type DiscLabel } from '../../formats/disc-label.js';
import { formatDigest, hashOfDigest } from '../../formats/text.js';
import { LAYOUT } from '../../formats/names.js';
import { openImage } from '../storage/iso.js';
import type { Storage } from '../storage/storage.js';
import { parBlockSize, recoveryBlocks, recoveryFiles, sourceBlocks, type DiscPlan, type DiscObject } from './plan.js';
import { par2Create, xorrisoImage } from './tools.js';

/** Where SPEC.md is: shipped with the package, beside dist/. */
export function specPath(): string {
  return join(dirname(fileURLToPath(import.meta.url)), ...['..', '..', '..', 'SPEC.md']);
}

/** Upper bound of the bytes a writer adds to a disc beyond the repository's objects (plan's `extraBytes`). */
export async function extraBytes(plan: { snapshots: number; volumes: number }): Promise<number> {
  const spec = (await stat(specPath())).size;
  return spec + 8192 + plan.snapshots * 200 + plan.volumes * 300;
}

/** The image file name of disc `n` of a set. */
export function imageName(plan: DiscPlan, n: number): string {
  const w = String(plan.discs.length).length;
  return `${plan.name}-disc-${String(n).padStart(w, '0')}-of-${plan.discs.length}.iso`;
}

/** Options of a disc write. */
export interface WriteOptions {
  out: string;
  /** The repository's folder when it is local: objects are linked, not copied. */
  localRoot?: string;
  now: bigint;
  onStep?: (disc: number, step: string) => void;
}

/** What writing one disc gave. */
export interface WrittenDisc { number: number; path: string; bytes: number; volumes: number; parity: { blockSize: number; recovery: number; sourceBlocks: number } }

const READ = 8 * 1024 * 1024;

/** Writes disc `n` of `plan` into `o.out`. */
export async function writeDisc(storage: Storage, plan: DiscPlan, n: number, o: WriteOptions): Promise<WrittenDisc> {
  o = { ...o, out: resolve(o.out) };
  const disc = plan.discs[n - 1];
  if (!disc) throw new IebsError('missing-argument', `the set has ${plan.discs.length} disc(s); there is no disc ${n}`);
  const final = join(o.out, imageName(plan, n));
  if (await stat(final).then(() => true, () => false)) throw new IoError('exists', `${final} already exists; not replaced`);
  await mkdir(o.out, { recursive: true });
  const tag = randomBytes(6).toString('hex');
  const stage = resolve(o.out, `.iebs-disc-${tag}`);
  const tmp = join(o.out, `.${imageName(plan, n)}.tmp-${tag}`);
  const step = (s: string) => o.onStep?.(n, s);
  try {
    await mkdir(stage);
    const hashes = new Map<string, Uint8Array>();
    for (const s of plan.snapshots) {
      const r = s.record;
      hashes.set(`${LAYOUT.manifests}/${r.manifest.name}`, r.manifest.digest);
      hashes.set(`${LAYOUT.indexes}/${r.index.name}`, r.index.digest);
      for (const v of r.volumes) hashes.set(`${LAYOUT.volumes}/${v.name}`, v.digest);
    }
    step('staging and checking the repository objects');
    const objects: DiscObject[] = [...plan.meta, ...disc.volumes];
    for (const obj of objects) await stageObject(storage, obj, hashes.get(obj.name), stage, o.localRoot);

    const label: DiscLabel = {
      set: plan.set, name: plan.name, disc: n, total: plan.discs.length, repository: plan.repository, media: plan.media,
      parity: { percent: plan.parity, blockSize: 0 }, created: o.now,
      volumes: plan.discs.flatMap((d) => d.volumes.map((v) => ({ disc: d.number, name: v.name.slice(LAYOUT.volumes.length + 1), size: v.size }))),
    };
    const readme = discReadme(label, plan.snapshots.map((s) => s.record.name));
    await writeFile(join(stage, README_FILE), readme);
    const spec = await readFile(specPath());
    await writeFile(join(stage, 'SPEC.md'), spec);
    // The block size follows from every file but the label, which names it.
    const sizes = [...objects.map((x) => x.size), Buffer.byteLength(readme), spec.length];
    const blockSize = parBlockSize(sizes.reduce((a, s) => a + s, 0));
    label.parity.blockSize = blockSize;
    const labelText = encodeDiscLabel(label);
    await writeFile(join(stage, LABEL_FILE), labelText);
    const files = [...objects.map((x) => x.name), README_FILE, 'SPEC.md', LABEL_FILE];
    const blocks = sourceBlocks([...sizes, labelText.length], blockSize);
    const recovery = recoveryBlocks(blocks, plan.parity);
    step(`parity: par2, ${plan.parity}% (${recovery} recovery blocks of ${blockSize} bytes)`);
    await par2Create(stage, PAR2_BASE, files, { blockSize, recovery, files: recoveryFiles(recovery) });

    step('image: xorriso');
    await xorrisoImage(stage, tmp, volumeId(plan, n));
    step('reading the image back');
    const bytes = (await stat(tmp)).size;
    if (bytes > plan.media) throw new IoError('no-space', `disc ${n}: the image is ${bytes} bytes, more than the medium's ${plan.media} (the plan's estimate was ${disc.imageBytes}); choose a larger medium or a smaller --volume-size`);
    const img = await openImage(tmp);
    try {
      for (const f of files) {
        const want = f === README_FILE ? Buffer.byteLength(readme) : f === 'SPEC.md' ? spec.length : f === LABEL_FILE ? labelText.length : objects.find((x) => x.name === f)!.size;
        const got = img.files.get(f);
        if (!got || got.size !== want) throw new IoError('io', `disc ${n}: the image written by xorriso holds ${f} ${got ? `with ${got.size} bytes, not ${want}` : 'not at all'}`);
      }
      const l = img.files.get(LABEL_FILE)!;
      if (Buffer.from(await l.read(0, l.size)).toString('latin1') !== labelText) throw new IoError('io', `disc ${n}: the label read back differs from the one written`);
    } finally { await img.close(); }
    const fh = await open(tmp, 'r+');
    try { await fh.sync(); } finally { await fh.close(); }
    try { await link(tmp, final); } catch (cause) {
      throw new IoError((cause as NodeJS.ErrnoException).code === 'EEXIST' ? 'exists' : 'io', `${final}: cannot put the image in place (${(cause as NodeJS.ErrnoException).code})`, { cause });
    }
    const dir = await open(o.out, 'r');
    try { await dir.sync(); } finally { await dir.close(); }
    return { number: n, path: final, bytes, volumes: disc.volumes.length, parity: { blockSize, recovery, sourceBlocks: blocks } };
  } finally {
    await unlink(tmp).catch(() => {});
    await rm(stage, { recursive: true, force: true }).catch(() => {});
  }
}

/** The ISO volume id of disc `n`: `IEBS_<n>_OF_<total>_<set, 8 hex>`, at most 32 characters. */
export function volumeId(plan: DiscPlan, n: number): string {
  return `IEBS_${n}_OF_${plan.discs.length}_${plan.set.slice(0, 8).toUpperCase()}`.slice(0, 32);
}

async function stageObject(storage: Storage, obj: DiscObject, want: Uint8Array | undefined, stage: string, localRoot: string | undefined): Promise<void> {
  const path = join(stage, ...obj.name.split('/'));
  await mkdir(dirname(path), { recursive: true });
  const size = await storage.stat(obj.name);
  if (size !== obj.size) throw new IoError('io', `${storage.where}: ${obj.name} is ${size === null ? 'missing' : `${size} bytes`}, the plan says ${obj.size} (changed since? plan again)`);
  const h = createHash(want ? hashOfDigest(want) : 'sha384');
  if (localRoot) {
    for (let off = 0; off < size; off += READ) h.update(await storage.getRange(obj.name, off, Math.min(READ, size - off)));
    await symlink(join(localRoot, ...obj.name.split('/')), path);
  } else {
    const fh = await open(path, 'wx');
    try {
      for (let off = 0; off < size; off += READ) {
        const piece = await storage.getRange(obj.name, off, Math.min(READ, size - off));
        h.update(piece);
        await fh.write(piece);
      }
    } finally { await fh.close(); }
  }
  const got = h.digest();
  if (want && !got.equals(want)) throw new IoError('io', `${storage.where}: ${obj.name} does not match the ${hashOfDigest(want)} its record gives (${formatDigest(got).slice(0, 16)}…): damaged; not written to a disc (iebs verify says more)`);
}
