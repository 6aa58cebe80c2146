/**
 * The disc backend (engine/storage/iso.ts) and its ISO 9660 reader (formats/iso9660.ts):
 * the storage contract's read-only suite over an image xorriso makes, with Rock Ridge
 * names and with Joliet names only; and the reader against damaged and hostile images:
 * each refused with a FormatError naming the byte offset, never read outside the file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { FormatError } from '../formats/errors.js';
import { IsoStorage, openImage } from '../engine/storage/iso.js';
import { tempDir } from './helpers.js';
import { storageConformanceReadOnly } from './storage-conformance.js';

/** Writes `objects` into a folder and makes an image of it with xorriso and `flags`. */
function image(objects: Map<string, Uint8Array>, flags: string[]): string {
  const dir = tempDir('iso');
  const tree = join(dir, 'tree');
  for (const [n, d] of objects) {
    const p = join(tree, ...n.split('/'));
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, d);
  }
  const img = join(dir, 'disc.iso');
  const r = spawnSync('xorriso', ['-as', 'mkisofs', '-quiet', ...flags, '-o', img, tree], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return img;
}

storageConformanceReadOnly({ label: 'iso (Rock Ridge, level 3)', make: async (o) => new IsoStorage([image(o, ['-iso-level', '3', '-J', '-joliet-long', '-r'])]) });
storageConformanceReadOnly({ label: 'iso (Joliet names only)', make: async (o) => new IsoStorage([image(o, ['-iso-level', '3', '-J', '-joliet-long'])]) });

const sample = () => image(new Map([['volumes/v.tar', Buffer.alloc(10_000, 7)], ['config', Buffer.from('c\n')]]), ['-iso-level', '3', '-J', '-r']);

async function refused(bytes: Buffer, re: RegExp): Promise<void> {
  const p = join(tempDir('iso-bad'), 'bad.iso');
  writeFileSync(p, bytes);
  await assert.rejects(async () => { const d = await openImage(p); await d.close(); }, (e: unknown) => {
    assert.ok(e instanceof FormatError, `a FormatError: ${String(e)}`);
    assert.match((e as Error).message, re);
    assert.match((e as Error).message, /bad\.iso/);
    return true;
  });
}

const u32both = (b: Buffer, at: number, v: number) => { b.writeUInt32LE(v, at); b.writeUInt32BE(v, at + 4); };

/** The byte offset of the directory record of `name` (its plain ISO identifier) in the image. */
function recordOf(b: Buffer, name: string): number {
  // The first directory record (not a path table entry) whose identifier starts with the name.
  for (let at = b.indexOf(Buffer.from(name)); at >= 0; at = b.indexOf(Buffer.from(name), at + 1)) {
    const len = b[at - 1];
    if (at > 33 && len >= name.length && len <= name.length + 2 && b[at - 33] >= 33 + len) return at - 33;
  }
  assert.fail(`no directory record of ${name}`);
}

test('iso reader: a file that is not an image, a truncated image, and an unknown block size are refused', async () => {
  const good = readFileSync(sample());
  await refused(Buffer.alloc(40_000, 1), /no ISO 9660 volume descriptor at byte 32769/);
  await refused(good.subarray(0, 16 * 2048 + 100), /image ends inside the volume descriptor|past the image's end/);
  const bs = Buffer.from(good);
  bs.writeUInt16LE(512, 16 * 2048 + 128);
  await refused(bs, /logical block size 512 at byte 32896/);
});

test('iso reader: a file extent past the image\'s end, a directory record too short, a loop, an absurd directory', async () => {
  const good = readFileSync(sample());
  const rec = recordOf(good, 'V.TAR');
  const past = Buffer.from(good);
  u32both(past, rec + 2, 0x7fffff00);
  await refused(past, /lies past the image's end/);
  const short = Buffer.from(good);
  short[rec] = 20;
  await refused(short, new RegExp(`directory record of 20 bytes at byte ${rec}`));
  // The folder "volumes" made to point at the root: a loop.
  const loop = Buffer.from(good);
  const vrec = recordOf(loop, 'VOLUMES');
  const rootExtent = loop.readUInt32LE(16 * 2048 + 156 + 2);
  u32both(loop, vrec + 2, rootExtent);
  await refused(loop, /entered twice|a loop|listed twice/);
  const huge = Buffer.from(good);
  u32both(huge, vrec + 10, 0x7ffff800);
  await refused(huge, /directory of \d+ bytes at byte \d+ \(limit|past the image's end/);
});

test('iso reader: Rock Ridge names win, the data reads back, and a multi-extent chain cut short is refused', async () => {
  const img = sample();
  const d = await openImage(img);
  try {
    assert.deepEqual([...d.files.keys()].sort(), ['config', 'volumes/v.tar']);
    const f = d.files.get('volumes/v.tar')!;
    assert.ok(Buffer.from(await f.read(0, f.size)).equals(Buffer.alloc(10_000, 7)));
  } finally { await d.close(); }
  // Flag the file's only extent as "more follow": no last extent.
  const cut = Buffer.from(readFileSync(img));
  const rec = recordOf(cut, 'V.TAR');
  cut[rec + 25] |= 0x80;
  await refused(cut, /extent of 10000 bytes \(not whole sectors\)|no last extent|cut short/);
});
