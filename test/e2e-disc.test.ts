/**
 * Disc sets end to end (issue 22), through the real CLI, real xorriso and real par2, on
 * tiny media (20 MiB discs, 8 MiB volumes) so parity takes seconds: a plan; images that
 * xorriso and iebs's own reader both read back with every file; a restore from the
 * images given in shuffled order (and from a folder of them, and from a disc's files
 * as a mounted disc's folder would show them); a damaged volume repaired by the disc's
 * parity, the repaired image identical to the original; damage beyond the parity that
 * still restores everything else and names what is lost; a missing disc named by
 * number; the backup dry run's count of discs; bad arguments.
 *
 * A loop mount of an image (`mount -o loop,ro`) is not part of it: this machine's
 * kernel has no iso9660 module ("unknown filesystem type 'iso9660'").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { openImage } from '../engine/storage/iso.js';
import { assertOneLineError, diffTrees, iebs, iebsOk, makeKeys, MiB, readTree, tempDir, writeSeeded } from './helpers.js';

const keys = makeKeys();
const dir = tempDir('disc');
const src = join(dir, 'src');
const repo = join(dir, 'repo');
const out = join(dir, 'images');
mkdirSync(join(src, 'sub'), { recursive: true });
// Incompressible, so the volumes are as large as the files: 3 volumes of about 7 MiB.
writeSeeded(join(src, 'a.bin'), 'disc-a', 12 * MiB);
writeSeeded(join(src, 'sub', 'b.bin'), 'disc-b', 9 * MiB);
writeSeeded(join(src, 'c.txt'), 'disc-c', 1000);
iebsOk(['init', repo, '--key', keys.backup]);
iebsOk(['backup', src, '--repo', repo, '--key', keys.backup, '--volume-size', '8MiB']);
writeSeeded(join(src, 'd.txt'), 'disc-d', 2000);
iebsOk(['backup', src, '--repo', repo, '--key', keys.backup, '--volume-size', '8MiB']);

const plan = JSON.parse(iebsOk(['disc', 'plan', '--repo', repo, '--media', '20MiB', '--json']).stdout);
const written = iebsOk(['disc', 'write', '--repo', repo, '--media', '20MiB', '--out', out]);
const images = readdirSync(out).filter((n) => n.endsWith('.iso')).sort().map((n) => join(out, n));
const volumesOf = (d: number) => (plan.plan[d - 1].volumes as { name: string }[]).map((v) => v.name);

test('disc plan: every volume on one disc, in order, each disc within the medium', () => {
  assert.equal(plan.discs, 2, JSON.stringify(plan));
  assert.equal(plan.snapshots.length, 2);
  const all = readdirSync(join(repo, 'volumes')).map((n) => `volumes/${n}`).sort();
  assert.deepEqual([...volumesOf(1), ...volumesOf(2)].sort(), all, 'each volume once');
  for (const d of plan.plan) assert.ok(d.imageBytes <= 20 * MiB && d.free >= 0, JSON.stringify(d));
  const text = iebsOk(['disc', 'plan', '--repo', repo, '--media', '20MiB']).stdout;
  assert.match(text, /2 disc\(s\) of 20\.0 MiB, 10% parity/);
});

test('disc write: one image per disc, named by set and number, no debris; xorriso and iebs read every file back', async () => {
  assert.deepEqual(readdirSync(out).sort(), images.map((p) => p.slice(out.length + 1)), 'nothing but the images in --out');
  assert.equal(images.length, 2);
  assert.match(written.stdout, /disc 1 of 2/);
  for (const [i, img] of images.entries()) {
    const x = spawnSync('xorriso', ['-indev', img, '-find', '/', '-type', 'f'], { encoding: 'utf8' });
    assert.equal(x.status, 0, x.stderr);
    const listed = new Set([...x.stdout.matchAll(/^'\/(.+)'$/gm)].map((m) => m[1]));
    const d = await openImage(img);
    try {
      assert.deepEqual(new Set(d.files.keys()), listed, 'iebs reads the same files as xorriso');
      for (const need of ['README.txt', 'SPEC.md', 'iebs-disc.txt', 'iebs-disc.par2', 'config', 'keys/public.asc', ...volumesOf(i + 1)]) assert.ok(listed.has(need), `${img} holds ${need}`);
      for (const v of volumesOf(3 - (i + 1))) assert.ok(!listed.has(v), `${img} does not hold the other disc's ${v}`);
      assert.equal(plan.snapshots.filter((s: string) => listed.has(`manifests/${s}.manifest.pgp`) && listed.has(`snapshots/${s}.snapshot.asc`)).length, 2, 'every record and manifest on every disc');
      for (const v of volumesOf(i + 1)) {
        const f = d.files.get(v)!;
        assert.ok(Buffer.from(await f.read(0, f.size)).equals(readFileSync(join(repo, v))), `${v} byte for byte`);
      }
      const label = Buffer.from(await d.files.get('iebs-disc.txt')!.read(0, d.files.get('iebs-disc.txt')!.size)).toString();
      assert.match(label, new RegExp(`^IEBS-DISC 1\nset ${plan.set}\nname ${plan.name}\ndisc ${i + 1} of 2\n`));
      const readme = Buffer.from(await d.files.get('README.txt')!.read(0, d.files.get('README.txt')!.size)).toString();
      assert.match(readme, new RegExp(`disc ${i + 1} of 2`));
      assert.match(readme, /restore\.key/);
    } finally { await d.close(); }
    // Each disc's parity checks with the standard tool alone, on the files xorriso extracts.
    const ex = join(dir, `extract-${i}`);
    assert.equal(spawnSync('xorriso', ['-osirrox', 'on', '-indev', img, '-extract', '/', ex]).status, 0);
    const p = spawnSync('par2', ['verify', 'iebs-disc.par2'], { cwd: ex, encoding: 'utf8' });
    assert.equal(p.status, 0, p.stdout);
  }
  const again = iebs(['disc', 'write', '--repo', repo, '--media', '20MiB', '--out', out, '--disc', '1']);
  assert.equal(again.code, 1);
  assertOneLineError(again, /already exists/);
});

test('restore from the images in shuffled order, from a folder of images, and from a disc folder', () => {
  const want = readTree(src);
  const t1 = join(dir, 'r-shuffled');
  iebsOk(['restore', '--repo', `iso:${[...images].reverse().join(',')}`, '--key', keys.restore, '--target', t1]);
  assert.deepEqual(diffTrees(want, readTree(t1)), []);
  const t2 = join(dir, 'r-folder');
  iebsOk(['restore', '--repo', `iso:${out}`, '--key', keys.restore, '--target', t2]);
  assert.deepEqual(diffTrees(want, readTree(t2)), []);
  // What a mounted disc shows: the image's files in a folder (xorriso extracts them as the kernel would).
  const mounted = [0, 1].map((i) => join(dir, `extract-${i}`));
  const t3 = join(dir, 'r-mounted');
  iebsOk(['restore', '--repo', `iso:${mounted[1]},${images[0]}`, '--key', keys.restore, '--target', t3]);
  assert.deepEqual(diffTrees(want, readTree(t3)), []);
  const snaps = iebsOk(['snapshots', '--repo', `iso:${images[1]}`]).stdout;
  assert.equal(snaps.trim().split('\n').length, 2, 'one disc lists every snapshot');
  const v = iebsOk(['verify', '--repo', `iso:${images.join(',')}`, '--key', keys.recipient]);
  assert.match(v.stdout, /^ok: 2 snapshots/m);
});

/** Overwrites `length` bytes at `offset` of `file` with bytes that differ from what was there. */
function damage(file: string, offset: number, length: number): void {
  const fd = openSync(file, 'r+');
  try { writeSync(fd, Buffer.alloc(length, 0x5a), 0, length, offset); } finally { closeSync(fd); }
}

async function extentOf(img: string, name: string): Promise<number> {
  const d = await openImage(img);
  try { return d.files.get(name)!.extents![0].at; } finally { await d.close(); }
}

test('a damaged region inside a volume is found and repaired by the disc\'s parity; the repaired image is the original', async () => {
  const bad = join(dir, 'damaged.iso');
  copyFileSync(images[0], bad);
  const vol = volumesOf(1)[1];
  damage(bad, (await extentOf(bad, vol)) + 1_000_000, 300_000);
  const v = iebs(['disc', 'verify', bad]);
  assert.equal(v.code, 1, v.stdout + v.stderr);
  assert.match(v.stdout, new RegExp(`DAMAGED: .*disc 1 of 2.*repairable[^]*${vol.replace(/\./g, '\\.')}`));
  const r = iebsOk(['disc', 'verify', bad, '--repair']);
  const repaired = join(dir, 'damaged.repaired.iso');
  assert.match(r.stdout, /repaired copy/);
  assert.ok(readFileSync(repaired).equals(readFileSync(images[0])), 'the repaired image is the one written');
  assert.ok(!readFileSync(bad).equals(readFileSync(images[0])), 'the damaged original is left as it was');
  iebsOk(['disc', 'verify', repaired]);
  const t = join(dir, 'r-repaired');
  iebsOk(['restore', '--repo', `iso:${images[1]},${repaired}`, '--key', keys.restore, '--target', t]);
  assert.deepEqual(diffTrees(readTree(src), readTree(t)), []);
  assert.equal(readdirSync(dir).filter((n) => n.startsWith('.iebs-disc')).length, 0, 'no scratch left');
});

test('damage beyond the parity: verify says so and names the file; restore brings back everything else and names what is lost', async () => {
  const bad = join(dir, 'ruined.iso');
  copyFileSync(images[0], bad);
  // The second volume of the full holds the end of a.bin and all of sub/b.bin (in walk order).
  const vol = volumesOf(1)[1];
  damage(bad, (await extentOf(bad, vol)) + 100_000, 4 * MiB);
  const v = iebs(['disc', 'verify', bad, '--repair']);
  assert.equal(v.code, 1);
  assert.match(v.stdout, /beyond its parity/);
  assert.ok(v.stdout.includes(vol), v.stdout);
  assert.ok(!existsSync(join(dir, 'ruined.repaired.iso')), 'no repaired image when nothing could be repaired');
  const t = join(dir, 'r-ruined');
  const r = iebs(['restore', '--repo', `iso:${bad},${images[1]}`, '--key', keys.restore, '--target', t]);
  assert.equal(r.code, 3, r.stderr);
  const lost = [...r.stderr.matchAll(/not restored: (\S+):/g)].map((m) => m[1]);
  assert.ok(lost.length >= 1, r.stderr);
  const got = readTree(t);
  assert.deepEqual(diffTrees(readTree(src), got, { only: (p) => !lost.includes(p) }), [], 'all else restored, as it was');
  for (const l of lost) assert.ok(!got.has(l), `${l} is not written under its name`);
  assert.ok(lost.length < 4, 'not everything is lost');
});

test('a missing disc: restore gives what the others hold and names the disc that holds the rest', () => {
  const t = join(dir, 'r-missing');
  const r = iebs(['restore', '--repo', `iso:${images[1]}`, '--key', keys.restore, '--target', t]);
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, new RegExp(`on disc 1 of 2 of set ${plan.name}, which is not among the discs given`));
  assert.ok(existsSync(join(t, 'd.txt')), 'the increment\'s new file, on disc 2, is restored');
  const v = iebs(['verify', '--repo', `iso:${images[1]}`]);
  assert.equal(v.code, 1);
  assert.match(v.stdout, /is missing \(on disc 1 of 2 of set/);
});

test('backup --dry-run --volume-size MEDIA says how many discs; named media leave room for parity', () => {
  const r = iebsOk(['backup', src, '--repo', repo, '--key', keys.backup, '--volume-size', 'cd', '--dry-run', '--full']);
  assert.match(r.stdout, /volume\(s\) of 587\.5 MiB, about 1 cd disc\(s\) with parity/);
  const j = JSON.parse(iebsOk(['backup', src, '--repo', repo, '--key', keys.backup, '--volume-size', 'dvd', '--dry-run', '--full', '--json']).stdout);
  assert.equal(j.estimate.discs, 1);
});

test('bad arguments: one line, exit 2; a volume larger than the medium is refused before anything is written', () => {
  for (const args of [['disc'], ['disc', 'burn'], ['disc', 'plan', '--repo', repo], ['disc', 'plan', '--repo', repo, '--media', '20MiB', '--parity', '0'],
    ['disc', 'write', '--repo', repo, '--media', '20MiB'], ['disc', 'plan', '--repo', repo, '--media', '20MiB', '--all', '--chain', 'x'], ['disc', 'verify']]) {
    const r = iebs(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assertOneLineError(r);
  }
  const small = join(dir, 'small-out');
  const r = iebs(['disc', 'write', '--repo', repo, '--media', '5MiB', '--out', small]);
  assert.equal(r.code, 2, r.stderr);
  assertOneLineError(r, /does not fit a disc of 5242880 bytes/);
  assert.ok(!existsSync(small), 'nothing written');
  const none = iebs(['restore', '--repo', `iso:${join(dir, 'nothing-here.iso')}`, '--key', keys.restore, '--target', join(dir, 'r-none')]);
  assert.equal(none.code, 1);
  assertOneLineError(none, /no such disc image/);
});

test('the plan is stable: disc N written alone belongs to the same set', () => {
  const solo = join(dir, 'solo');
  iebsOk(['disc', 'write', '--repo', repo, '--media', '20MiB', '--out', solo, '--disc', '2']);
  const files = readdirSync(solo);
  assert.deepEqual(files, [images[1].slice(out.length + 1)]);
  const t = join(dir, 'r-solo');
  iebsOk(['restore', '--repo', `iso:${images[0]},${join(solo, files[0])}`, '--key', keys.restore, '--target', t]);
  assert.deepEqual(diffTrees(readTree(src), readTree(t)), []);
});
