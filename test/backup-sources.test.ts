/**
 * One system name, one set of sources (SPEC.md sections 4 and 10): a backup of another
 * set under the same system is refused with one line before anything is written, not
 * recorded as the deletion of the first set; the same folders named another way are the
 * same set; --new-sources and a system name of its own are the two ways on; each
 * record carries the keyed id of its set, as SPEC.md section 4 defines it.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { assertOneLineError, iebs, iebsOk, makeKeys, snapshots, tempDir, type Keys } from './helpers.js';
import { loadBackupKey } from '../engine/crypto/keys.js';
import { sourcesId } from '../engine/backup/walk.js';

let keys: Keys;
let dir: string;
let taxes: string;
let notes: string;

before(() => {
  keys = makeKeys();
  dir = tempDir('sources');
  taxes = join(dir, 'Documents', 'taxes');
  notes = join(dir, 'Documents', 'notes');
  mkdirSync(taxes, { recursive: true });
  mkdirSync(notes);
  for (let i = 0; i < 5; i++) writeFileSync(join(taxes, `2025-${i}.pdf`), `tax ${i}\n`);
  for (let i = 0; i < 3; i++) writeFileSync(join(notes, `note-${i}.md`), `note ${i}\n`);
});

test('the sources id is the keyed hash SPEC.md section 4 describes', async () => {
  const key = await loadBackupKey(keys.backup);
  const input = Buffer.concat([Buffer.from('iebs-sources'), Buffer.from([0]), Buffer.from(notes), Buffer.from([0]), Buffer.from(taxes)]);
  const want = createHmac('sha256', key.pathIdKey).update(input).digest().subarray(0, 16).toString('hex');
  assert.equal(sourcesId(key.pathIdKey, [taxes, notes]), want);
  assert.equal(sourcesId(key.pathIdKey, [`${notes}/`, join(taxes, '..', 'taxes'), taxes]), want, 'order, duplicates, trailing slash and .. do not matter');
  assert.notEqual(sourcesId(key.pathIdKey, [taxes]), want);
});

test('another set of sources under the same system: refused, nothing written; --new-sources or its own --name go on', async () => {
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', taxes, '--repo', repo, '--key', keys.backup, '--name', 'laptop']);
  const volumes = readdirSync(join(repo, 'volumes')).sort();
  const r = iebs(['backup', notes, '--repo', repo, '--key', keys.backup, '--name', 'laptop']);
  assert.equal(r.code, 2, r.stderr);
  assertOneLineError(r, /^iebs backup: the last snapshot of laptop \(laptop_\S+_full\) backed up another set of sources .*--name laptop-notes.*--new-sources/);
  assert.equal(snapshots(repo).length, 1, 'no snapshot that reads as deleting the first set');
  assert.deepEqual(readdirSync(join(repo, 'volumes')).sort(), volumes, 'nothing written');
  assert.equal(iebs(['backup', notes, '--repo', repo, '--key', keys.backup, '--name', 'laptop', '--dry-run']).code, 2, 'a dry run says so too');

  // The same folder named from elsewhere is the same set: an increment.
  const same = iebsOk(['backup', relative(join(dir, 'Documents'), taxes), '--repo', repo, '--key', keys.backup, '--name', 'laptop'], { cwd: join(dir, 'Documents') });
  assert.match(same.stdout, /\(increment\): 5 entries \(0 new, 0 changed, 5 unchanged, 0 deleted\)/);

  const own = iebsOk(['backup', notes, '--repo', repo, '--key', keys.backup, '--name', 'laptop-notes']);
  assert.match(own.stdout, /snapshot laptop-notes_\S+_full \(full\): 3 entries \(3 new/);
  const moved = iebsOk(['backup', notes, '--repo', repo, '--key', keys.backup, '--name', 'laptop', '--new-sources']);
  assert.match(moved.stdout, /\(increment\): 3 entries \(3 new, 0 changed, 0 unchanged, 5 deleted\)/);

  const key = await loadBackupKey(keys.backup);
  const list = snapshots(repo) as unknown as { name: string; system: string; sources: string }[];
  assert.deepEqual(list.map((s) => [s.system, s.sources]), [
    ['laptop', sourcesId(key.pathIdKey, [taxes])],
    ['laptop', sourcesId(key.pathIdKey, [taxes])],
    ['laptop', sourcesId(key.pathIdKey, [notes])],
    ['laptop-notes', sourcesId(key.pathIdKey, [notes])],
  ]);
  const text = iebsOk(['snapshots', '--repo', repo]).stdout;
  assert.match(text, new RegExp(`laptop-notes_\\S+_full .* sources ${sourcesId(key.pathIdKey, [notes]).slice(0, 8)}\\n`));
  iebsOk(['verify', '--repo', repo, '--key', keys.recipient]);
});
