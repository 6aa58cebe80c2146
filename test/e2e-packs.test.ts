/**
 * Packs (SPEC.md "Packs"): small files share an envelope. Through the real CLI: a tree of
 * thousands of small files takes far fewer tar entries than files, restores byte for
 * byte, verifies with every block read, and each volume salvaged alone gives back, with
 * names, every file whose content it holds (a pack's files are catalogued in the pack's
 * own volume even when volumes roll over); an increment refers to packed blocks for
 * copies instead of storing them again; a damaged pack is reported for every file in it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, openSync, readSync, readdirSync, writeSync, closeSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { MiB, diffTrees, iebs, iebsOk, listFiles, makeKeys, readTree, seededBytes, snapshots, tempDir, writeSeeded } from './helpers.js';

/** A tree of `n` small incompressible files (1 to 6,000 bytes), some with equal contents, one empty, one large. */
function smallTree(src: string, n: number): void {
  for (let d = 0; d < Math.ceil(n / 500); d++) mkdirSync(join(src, `d${d}`), { recursive: true });
  for (let i = 0; i < n; i++) {
    const size = 1 + ((i * 2654435761) % 6000);
    // Every 97th file repeats the content of the one before it: one start in the pack.
    const seed = i % 97 === 1 ? `small-${i - 1}` : `small-${i}`;
    writeFileSync(join(src, `d${Math.floor(i / 500)}`, `f${i}.bin`), seededBytes(seed, i % 97 === 1 ? 1 + (((i - 1) * 2654435761) % 6000) : size));
  }
  writeFileSync(join(src, 'empty'), '');
  writeSeeded(join(src, 'large.bin'), 'packs-large', 3 * MiB);
}

/** The tar entries of a volume, each with the block number of its header (`tar -R`). */
function entries(volume: string): { name: string; size: number; dataOffset: number }[] {
  const r = spawnSync('tar', ['-tvRf', volume], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const out: { name: string; size: number; dataOffset: number }[] = [];
  for (const line of r.stdout.split('\n')) {
    const m = /^block (\d+): \S+ \S+\s+(\d+) \S+ \S+ (.+)$/.exec(line);
    if (m) out.push({ name: m[3], size: Number(m[2]), dataOffset: (Number(m[1]) + 1) * 512 });
  }
  return out;
}

const isBlock = (name: string) => name !== 'iebs.volume' && !name.startsWith('iebs.catalog.');

test('small files share packs: few tar entries, byte-for-byte restore, every block verified, each volume salvaged alone with names', () => {
  const keys = makeKeys();
  const dir = tempDir('packs');
  const src = join(dir, 'src');
  const files = 4000;
  smallTree(src, files);
  const repo = join(dir, 'repo');
  // About 12 MiB of files in 8 MiB volumes: packs meet volume boundaries.
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--volume-size', '8MiB']);
  const volumes = readdirSync(join(repo, 'volumes')).sort().map((v) => join(repo, 'volumes', v));
  assert.ok(volumes.length >= 2, `${volumes.length} volume(s)`);
  const blockEntries = volumes.flatMap((v) => entries(v).filter((e) => isBlock(e.name)));
  // 4,000 small files and a 3 MiB one: a few dozen packs and the large file's blocks.
  assert.ok(blockEntries.length < files / 20, `${blockEntries.length} block entries for ${files} small files`);

  const out = join(dir, 'out');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', out]);
  assert.deepEqual(diffTrees(readTree(src), readTree(out)), []);
  const v = iebsOk(['verify', '--repo', repo, '--key', keys.restore, '--read-data']);
  // Each block of each pack is checked on its own: one per distinct content.
  const distinct = files - Math.floor((files - 2) / 97) - 1;
  const checked = Number(/(\d+) blocks decrypted and hashed/.exec(v.stdout)?.[1]);
  assert.ok(checked >= distinct, `${checked} blocks checked, ${distinct} distinct small contents`);

  // Every volume alone: complete files only (a small file is one block), and together
  // each small file exactly once.
  const seen = new Map<string, number>();
  const want = readTree(src);
  for (const [i, vol] of volumes.entries()) {
    const target = join(dir, `alone-${i}`);
    const r = iebs(['salvage', vol, '--key', keys.restore, '--target', target]);
    assert.ok(r.code === 0 || r.code === 3, r.stdout + r.stderr);
    const got = readTree(target);
    for (const [p, e] of got) {
      if (e.kind !== 'file' || p.endsWith('.incomplete') || p === 'large.bin' || p === 'empty') continue;
      seen.set(p, (seen.get(p) ?? 0) + 1);
      assert.equal(e.sha256, want.get(p)?.sha256, `${p} from volume ${i + 1}`);
    }
  }
  const small = listFiles(src).filter((p) => p.startsWith('d'));
  assert.equal(small.length, files);
  for (const p of small) assert.equal(seen.get(p), 1, `${p} salvaged from ${seen.get(p) ?? 0} volumes`);
});

test('an increment refers to packed blocks for copies, and packs what is new', () => {
  const keys = makeKeys();
  const dir = tempDir('packs-incr');
  const src = join(dir, 'src');
  smallTree(src, 1000);
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
  // 1,000 copies (about 3 MiB of incompressible bytes the chain holds) and 20 new files.
  mkdirSync(join(src, 'copies'));
  for (let i = 0; i < 1000; i++) copyFileSync(join(src, `d${Math.floor(i / 500)}`, `f${i}.bin`), join(src, 'copies', `c${i}.bin`));
  for (let i = 0; i < 20; i++) writeSeeded(join(src, 'copies', `new${i}.bin`), `packs-new-${i}`, 1000);
  iebsOk(['backup', src, '--repo', repo, '--key', keys.backup]);
  const [, incr] = snapshots(repo);
  // 20 KB of new content and 1,020 catalogue records; the copies' 3 MiB are not stored again.
  assert.ok(incr.stored < 600 * 1024, `increment stored ${incr.stored} bytes`);
  const out = join(dir, 'out');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', out]);
  assert.deepEqual(diffTrees(readTree(src), readTree(out)), []);
  iebsOk(['verify', '--repo', repo, '--key', keys.restore, '--read-data']);
});

test('a damaged pack is reported by verify for every file it holds, and restore writes none of them', () => {
  const keys = makeKeys();
  const dir = tempDir('packs-damage');
  const src = join(dir, 'src');
  smallTree(src, 600);
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
  const [volume] = readdirSync(join(repo, 'volumes')).map((v) => join(repo, 'volumes', v));
  // large.bin's blocks are at least 256 KiB; a block entry between 64 and 256 KiB is a
  // pack (no small file is over 6,000 bytes).
  const packs = entries(volume).filter((e) => isBlock(e.name) && e.size < 256 * 1024 && e.size > 64 * 1024);
  assert.ok(packs.length >= 1, 'a pack entry of more than 64 KiB');
  const fd = openSync(volume, 'r+');
  const at = packs[0].dataOffset + Math.floor(packs[0].size / 2);
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, at);
  b[0] ^= 0x40;
  writeSync(fd, b, 0, 1, at);
  closeSync(fd);
  const r = iebs(['verify', '--repo', repo, '--key', keys.restore, '--read-data']);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  const n = Number(/(\d+) file\(s\) of \S+ have unreadable blocks/.exec(r.stdout + r.stderr)?.[1]);
  // A pack of more than 64 KiB of files of at most 6,000 bytes holds more than ten of them.
  assert.ok(n > 10, `${n} files reported: ${r.stdout}${r.stderr}`);
  const out = join(dir, 'out');
  const rr = iebs(['restore', '--repo', repo, '--key', keys.restore, '--target', out]);
  assert.notEqual(rr.code, 0);
  const restored = new Set(listFiles(out));
  const missing = listFiles(src).filter((p) => !restored.has(p));
  assert.equal(missing.length, n, `restore left out ${missing.length} files, verify reported ${n}`);
});
