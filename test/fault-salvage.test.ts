/**
 * Fault injection, salvage: restoring from volume files alone (no repository, no
 * manifest), for when everything but some volumes is lost.
 * - One volume of a multi-volume full: files wholly in it come back byte-identical (with
 *   their modes and times); files with blocks in other volumes come back as
 *   NAME.incomplete, listed, with the missing ranges as zeros and every other byte right;
 *   files with nothing in it are absent; exit 3.
 * - Every volume of the full: the whole tree comes back, exit 0.
 * - Every volume, one with a damaged block: the file owning that block is incomplete and
 *   listed, every other file comes back whole; exit 3.
 * Which file has blocks in which volume comes from the tar layout of the volumes
 * (test/fault-helpers.ts), not from iebs.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MiB, diffTrees, iebs, iebsOk, makeKeys, pathKey, readTree, snapshots, tempDir, writeSeeded, type Keys, type Run, type Tree } from './helpers.js';
import { flipBit, lsSnapshot, needs, volumesOf, type Need } from './fault-helpers.js';

let keys: Keys;
let dir: string;
let src: string;
let repo: string;
let tree: Tree;
let vols: string[];
let need: Map<string, Need[]>;

before(() => {
  keys = makeKeys();
  dir = tempDir('salvage');
  src = join(dir, 'src');
  mkdirSync(join(src, 'sub', 'emptydir'), { recursive: true });
  writeSeeded(join(src, 'a.bin'), 'salvage-a', 9 * MiB);
  writeSeeded(join(src, 'b.bin'), 'salvage-b', 6 * MiB, 0o600);
  writeSeeded(join(src, 'sub', 'c.bin'), 'salvage-c', 2 * MiB);
  writeSeeded(join(src, 'sub', 'd.bin'), 'salvage-d', 3 * MiB);
  writeFileSync(join(src, 'sub', 'note.txt'), 'a note\n');
  writeFileSync(join(src, 'zz-last.txt'), 'the last file\n');
  writeFileSync(join(src, 'empty'), '');
  symlinkSync('sub/note.txt', join(src, 'link'));
  repo = join(dir, 'repo');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--volume-size', '8MiB']);
  tree = readTree(src);
  const [full] = snapshots(repo);
  vols = volumesOf(repo, full.name);
  assert.ok(vols.length >= 3, `expected at least 3 volumes, got ${vols.join(', ')}`);
  need = needs(repo, [full.name], lsSnapshot(repo, keys, full.name));
});

/** Paths listed as `incomplete: PATH (...)` by salvage. */
const incompleteListed = (r: Run) => [...r.stdout.matchAll(/^incomplete: (.+?) \(/gm)].map((m) => m[1]).sort();

/** Checks an incomplete copy: the source's size, every byte the source's or zero, some zeros (what was missing). */
function incompleteProblems(path: string, got: Buffer, want: Buffer): string[] {
  if (got.length !== want.length) return [`${path}.incomplete: ${got.length} bytes, the file has ${want.length}`];
  let zeros = 0, wrong = 0;
  for (let i = 0; i < got.length; i++) {
    if (got[i] === want[i]) continue;
    if (got[i] === 0) zeros++; else wrong++;
  }
  const out: string[] = [];
  if (wrong) out.push(`${path}.incomplete: ${wrong} bytes neither the source's nor zero`);
  if (!zeros) out.push(`${path}.incomplete: identical to the source, though listed as incomplete`);
  return out;
}

test('one volume alone: files wholly in it are identical, files spanning volumes are NAME.incomplete and listed, exit 3', () => {
  // The volume with the most kinds of file: some wholly inside, some spanning.
  const inside = (v: string) => [...need].filter(([, n]) => n.length && n.every((x) => x.volume === v)).map(([p]) => p);
  const spanning = (v: string) => [...need].filter(([, n]) => n.some((x) => x.volume === v) && n.some((x) => x.volume !== v)).map(([p]) => p);
  const v = vols.find((x) => inside(x).length > 0 && spanning(x).length > 0);
  assert.ok(v, `no volume holds both whole and spanning files: ${vols.map((x) => `${x}: ${inside(x).join(' ')} / ${spanning(x).join(' ')}`).join('; ')}`);
  const target = join(dir, 'one');
  const r = iebs(['salvage', join(repo, 'volumes', v), '--key', keys.restore, '--target', target]);
  const problems: string[] = [];
  if (r.code !== 3) problems.push(`exit ${r.code}, expected 3: ${r.stderr}`);
  const listed = incompleteListed(r);
  const expectedListed = spanning(v).map((p) => `${p}.incomplete`).sort();
  if (JSON.stringify(listed) !== JSON.stringify(expectedListed)) problems.push(`listed ${JSON.stringify(listed)}, expected ${JSON.stringify(expectedListed)}`);
  const got = readTree(target);
  const d = diffTrees(tree, got, { only: (p) => inside(v).includes(p) }).filter((x) => !x.endsWith(': extra'));
  if (d.length) problems.push(`files wholly in ${v}: ${d.join('; ')}`);
  for (const p of spanning(v)) {
    if (got.has(pathKey(p))) problems.push(`${p} written under its own name though parts of it are in other volumes`);
    const inc = join(target, `${p}.incomplete`);
    if (!existsSync(inc)) { problems.push(`${p}.incomplete not written`); continue; }
    problems.push(...incompleteProblems(p, readFileSync(inc), readFileSync(join(src, p))));
  }
  for (const [k, e] of got) {
    const p = Buffer.from(k, 'latin1').toString();
    if (e.kind !== 'file') continue;
    // An empty file has no block: whichever volume's catalogue met it may restore it.
    const empty = tree.get(k)?.size === 0;
    if (empty && diffTrees(tree, got, { only: (x) => x === p }).some((x) => !x.endsWith(': extra'))) problems.push(`${p}: the empty file is not restored as it was`);
    if (!empty && !inside(v).includes(p) && !expectedListed.includes(p)) problems.push(`${p}: written, but it has no data in ${v}`);
  }
  assert.deepEqual(problems, [], problems.join('\n'));
});

test('every volume of the full: the whole tree comes back, exit 0', () => {
  const target = join(dir, 'all');
  const r = iebs(['salvage', ...vols.map((v) => join(repo, 'volumes', v)), '--key', keys.restore, '--target', target]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(incompleteListed(r), []);
  assert.deepEqual(diffTrees(tree, readTree(target)), []);
});

test('every volume, one with a damaged block: that file is NAME.incomplete and listed, the others whole, exit 3', () => {
  const copies = join(dir, 'damaged-volumes');
  mkdirSync(copies);
  for (const v of vols) copyFileSync(join(repo, 'volumes', v), join(copies, v));
  // A block of the second volume; its owner may span volumes, which must not matter.
  const [owner, hit] = [...need].flatMap(([p, n]) => n.filter((x) => x.volume === vols[1]).map((x) => [p, x] as const))[0];
  flipBit(join(copies, hit.volume), hit.entry.data + 20 + Math.floor((hit.entry.size - 36) / 2), 5);
  const target = join(dir, 'damaged');
  const r = iebs(['salvage', ...vols.map((v) => join(copies, v)), '--key', keys.restore, '--target', target]);
  const problems: string[] = [];
  if (r.code !== 3) problems.push(`exit ${r.code}, expected 3: ${r.stderr}`);
  if (JSON.stringify(incompleteListed(r)) !== JSON.stringify([`${owner}.incomplete`])) problems.push(`listed ${JSON.stringify(incompleteListed(r))}, expected ${owner}.incomplete`);
  const got = readTree(target);
  const d = diffTrees(tree, got).filter((x) => x !== `${JSON.stringify(owner)}: missing` && x !== `${JSON.stringify(`${owner}.incomplete`)}: extra`);
  if (d.length) problems.push(`other files: ${d.join('; ')}`);
  if (got.has(pathKey(owner))) problems.push(`${owner} written under its own name with a damaged block`);
  const inc = join(target, `${owner}.incomplete`);
  if (existsSync(inc)) problems.push(...incompleteProblems(owner, readFileSync(inc), readFileSync(join(src, owner))));
  else problems.push(`${owner}.incomplete not written`);
  assert.deepEqual(problems, [], problems.join('\n'));
});
