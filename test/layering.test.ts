/**
 * The house's rules, read from the imports of every source file (STYLE.md "The house";
 * issue 17): dependencies run cli → engine → formats; formats/ does no I/O; inside
 * engine/ the stages import only their own stage or lower ones (storage, scratch,
 * crypto and the codecs; then repo/; then backup/, restore/ and verify); no import
 * loop; and only the files listed below touch the file system through node:fs, each
 * for a stated reason, so repository objects are reached through the storage contract
 * alone; and the backup's helper threads, as compiled, load neither openpgp nor the AWS SDK.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Every .ts file under the given folders, relative to the project root. */
function sources(...folders: string[]): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(join(ROOT, d))) {
      const p = join(d, n);
      if (statSync(join(ROOT, p)).isDirectory()) walk(p);
      else if (n.endsWith('.ts') && !n.endsWith('.d.ts')) out.push(p);
    }
  };
  for (const f of folders) walk(f);
  return out.sort();
}

/**
 * The modules a file imports: project files (relative to the root, .ts) and bare specifiers
 * as written. A `new URL('./x.js', import.meta.url)` is a module too (a worker's); a URL of a
 * folder or a data file (the page's files) is not. `text` is the file's source unless given
 * (its compiled JavaScript, where imports of types only are gone).
 */
function importsOf(file: string, text = readFileSync(join(ROOT, file), 'utf8')): { local: string[]; external: string[] } {
  const local: string[] = [];
  const external: string[] = [];
  const re = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|(?:^|\n)\s*import\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|new URL\(\s*['"](\.[^'"]+\.js)['"],\s*import\.meta\.url\)/g;
  for (let m; (m = re.exec(text));) {
    const spec = m[1] ?? m[2] ?? m[3] ?? m[4];
    if (spec.startsWith('.')) local.push(normalize(join(dirname(file), spec)).replace(/\.js$/, '.ts'));
    else external.push(spec);
  }
  return { local, external };
}

const FILES = sources('formats', 'engine', 'service', 'cli');
const GRAPH = new Map(FILES.map((f) => [f, importsOf(f)]));

/** The stage of an engine file: a higher stage may import a lower one, never the reverse. */
function stage(file: string): number {
  if (file.startsWith('formats/')) return 0;
  if (file.startsWith('cli/')) return 5;
  if (file.startsWith('service/')) return 4;
  if (/^engine\/(storage|scratch|crypto)\//.test(file) || /^engine\/(chunker|codec|threads)\.ts$/.test(file)) return 1;
  if (file.startsWith('engine/repo/')) return 2;
  if (/^engine\/(backup|restore|query|disc|jobs|retention)\//.test(file) || file === 'engine/verify.ts') return 3;
  throw new Error(`${file}: in no stage of the house; add it to layering.test.ts`);
}

/** The files allowed to use node:fs, and why; anything new must say why here. */
const FS_ALLOWED: Record<string, string> = {
  'engine/storage/local.ts': 'the directory backend of the storage contract',
  'engine/restore/target.ts': 'the restore target: writes the restored tree',
  'engine/restore/compose.ts': 'its scratch folder',
  'engine/restore/restore.ts': 'the restore target: makes directories and symlinks, sets times',
  'engine/restore/write-steps.ts': 'the restore target: writes file contents, in a writer thread',
  'engine/restore/salvage.ts': 'the salvage target (volumes themselves are read through the storage contract)',
  'engine/repo/replace-host.ts': 'writes the new backup.key and recipient.asc of a host key replacement (key files, not repository objects)',
  'engine/backup/backup.ts': 'reads symlink targets of the source, and makes its scratch folder',
  'engine/backup/walk.ts': 'walks the source tree',
  'engine/backup/pipeline.ts': 'spools manifest and index text to the scratch folder',
  'engine/backup/read-worker.ts': 'reads source files in a thread',
  'engine/backup/prefetch.ts': 'reads source files ahead',
  'engine/backup/cache.ts': 'the local cache of chain states (not repository content)',
  'engine/backup/resume.ts': 'the resume journal of an interrupted backup (not repository content)',
  'engine/scratch/sorter.ts': 'scratch files of external sorts',
  'engine/verify.ts': 'its scratch folder',
  'engine/crypto/keys.ts': 'key files',
  'engine/crypto/key-admin.ts': 'rewrites key files (write, fsync, rename)',
  'engine/repo/lock.ts': 'reads /proc to tell a live lock holder from a reused pid',
  'engine/storage/iso.ts': 'the disc backend: reads disc images and mounted discs (read-only)',
  'engine/disc/write.ts': 'stages a disc\'s tree and writes its image beside the output',
  'engine/disc/verify.ts': 'copies a disc\'s files out for par2, writes the repaired copy',
  'engine/jobs/jobs.ts': 'the published job records and their history (not repository content)',
};

test('every source file has a stage, and imports only files that exist', () => {
  for (const [f, { local }] of GRAPH) {
    stage(f);
    for (const t of local) assert.ok(GRAPH.has(t), `${f} imports ${t}, which is not a source file`);
  }
});

test('cli → engine → formats: formats imports only formats, engine never imports cli', () => {
  const wrong: string[] = [];
  for (const [f, { local }] of GRAPH) {
    for (const t of local) {
      if (f.startsWith('formats/') && !t.startsWith('formats/')) wrong.push(`${f} → ${t}`);
      if (f.startsWith('engine/') && (t.startsWith('cli/') || t.startsWith('service/'))) wrong.push(`${f} → ${t}`);
      if (f.startsWith('service/') && t.startsWith('cli/')) wrong.push(`${f} → ${t}`);
    }
  }
  assert.deepEqual(wrong, []);
});

test('formats/ does no I/O: its only outside import is node:crypto, for hashing', () => {
  const wrong: string[] = [];
  for (const [f, { external }] of GRAPH) if (f.startsWith('formats/')) for (const x of external) if (x !== 'node:crypto') wrong.push(`${f} imports ${x}`);
  assert.deepEqual(wrong, []);
});

test('no arrow runs back up: a stage imports only its own stage or lower ones, and backup and restore do not import each other', () => {
  const wrong: string[] = [];
  for (const [f, { local }] of GRAPH) {
    for (const t of local) {
      if (stage(t) > stage(f)) wrong.push(`${f} (stage ${stage(f)}) → ${t} (stage ${stage(t)})`);
      const room = (x: string) => /^engine\/(backup|restore|retention)\//.exec(x)?.[1];
      if (room(f) && room(t) && room(f) !== room(t)) wrong.push(`${f} → ${t}`);
    }
  }
  assert.deepEqual(wrong, []);
});

test('no import loop', () => {
  const state = new Map<string, 'open' | 'done'>();
  const loops: string[] = [];
  const visit = (f: string, path: string[]) => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'open') { loops.push([...path.slice(path.indexOf(f)), f].join(' → ')); return; }
    state.set(f, 'open');
    for (const t of GRAPH.get(f)?.local ?? []) visit(t, [...path, f]);
    state.set(f, 'done');
  };
  for (const f of GRAPH.keys()) visit(f, []);
  assert.deepEqual(loops, []);
});

test('only the listed files touch the file system through node:fs, and every listed one does', () => {
  const users = [...GRAPH].filter(([, { external }]) => external.some((x) => x === 'node:fs' || x === 'node:fs/promises' || x === 'fs' || x === 'fs/promises')).map(([f]) => f);
  const unlisted = users.filter((f) => f.startsWith('engine/') && !(f in FS_ALLOWED));
  assert.deepEqual(unlisted, [], 'a new file reaches the file system: repository objects go through engine/storage/; anything else must say why in FS_ALLOWED');
  const stale = Object.keys(FS_ALLOWED).filter((f) => !users.includes(f));
  assert.deepEqual(stale, [], 'listed but no longer using node:fs: take it off the list');
});

/**
 * Modules a helper thread must not load: each is loaded again on every thread that
 * imports it. The backup's walk and readers and the restore's writers only hash
 * (engine/crypto/hashes.ts); openpgp, through engine/crypto/crypto.ts, cost a thread 17
 * MiB of resident memory and 36 ms, and the AWS SDK (engine/storage/s3.ts) more.
 */
const HELPER_THREADS = ['engine/backup/walk-worker.ts', 'engine/backup/read-worker.ts', 'engine/restore/write-worker.ts'];
const NOT_ON_HELPERS = ['engine/crypto/crypto.ts', 'engine/storage/s3.ts'];

test('the helper threads of backup and restore load neither openpgp nor the AWS SDK', () => {
  for (const entry of HELPER_THREADS) {
    const seen = new Set<string>([entry]);
    const todo = [entry];
    const external = new Set<string>();
    while (todo.length) {
      const f = todo.pop()!;
      const g = importsOf(f, readFileSync(join(ROOT, 'dist', f.replace(/\.ts$/, '.js')), 'utf8'));
      for (const e of g.external) external.add(e);
      for (const l of g.local) if (!seen.has(l)) { seen.add(l); todo.push(l); }
    }
    for (const bad of NOT_ON_HELPERS) assert.ok(!seen.has(bad), `${entry} reaches ${bad}`);
    assert.deepEqual([...external].filter((e) => e === 'openpgp' || e.startsWith('@aws-sdk/')), [], `${entry} imports them directly`);
  }
});
