/**
 * Cleaning up after interrupted runs (engine/repo/debris.ts `cleanDebris`): what it
 * removes and keeps, and that its listings and the backend's debris removals run at once
 * (on a remote store each is a round trip or more: one after another they cost an
 * unchanged increment over S3 with 20 ms round trips 0.7 s).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStorage } from '../engine/storage/memory.js';
import { cleanDebris } from '../engine/repo/debris.js';
import { listAll } from '../engine/storage/storage.js';
import { IoError } from '../formats/errors.js';

/** The prefixes a cleanup hands to `removeDebris`. */
const PREFIXES = ['volumes/', 'manifests/', 'indexes/', 'snapshots/', 'forgets/', 'keys/', 'locks/', 'config'];

/**
 * A memory store whose listings and debris removals each wait a turn of the event loop
 * before they answer, counting how many are under way at once; `failOn` makes a prefix's
 * removal fail.
 */
class Counting extends MemoryStorage {
  removing = 0;
  mostRemoving = 0;
  listing = 0;
  mostListing = 0;
  readonly cleaned: string[] = [];
  readonly failOn = new Map<string, Error>();

  override async removeDebris(prefix: string): Promise<number> {
    this.mostRemoving = Math.max(this.mostRemoving, ++this.removing);
    try {
      await new Promise((r) => setImmediate(r));
      const e = this.failOn.get(prefix);
      if (e) throw e;
      this.cleaned.push(prefix);
      return await super.removeDebris(prefix);
    } finally { this.removing--; }
  }

  override async *list(prefix: string): AsyncIterable<string> {
    this.mostListing = Math.max(this.mostListing, ++this.listing);
    try {
      await new Promise((r) => setImmediate(r));
      yield* super.list(prefix);
    } finally { this.listing--; }
  }
}

/** A store with an interrupted write under each prefix, a volume no record names, and a volume whose record is there. */
async function withDebris(): Promise<Counting> {
  const s = new Counting();
  for (const p of PREFIXES) await (await s.create(`${p}${p.endsWith('/') ? '' : '/'}left`)).write(Buffer.from('partial'));
  await s.put('volumes/a_2026-01-01_full.files.0001.tar', 'no record names it');
  await s.put('snapshots/b_2026-01-01_full.snapshot.asc', 'a record this run could not verify');
  await s.put('volumes/b_2026-01-01_full.files.0001.tar', 'kept: its record is there');
  return s;
}

test('a cleanup lists the folders and removes each prefix\'s debris all at once, and removes what no record names', async () => {
  const s = await withDebris();
  const r = await cleanDebris(s, []);
  assert.deepEqual(r.undeletable, []);
  assert.deepEqual([...s.cleaned].sort(), [...PREFIXES].sort());
  assert.equal(s.mostRemoving, PREFIXES.length, 'every prefix\'s debris is looked for at once');
  assert.equal(s.mostListing, 4, 'the records and the three folders are listed at once');
  for (const p of PREFIXES) assert.equal(await s.removeDebris(p), 0, `${p}: the interrupted write is gone`);
  assert.deepEqual(await listAll(s, 'volumes/'), ['volumes/b_2026-01-01_full.files.0001.tar']);
});

test('a prefix whose debris cannot be removed fails the cleanup only once the others are clean; one refused for permission is reported', async () => {
  const s = await withDebris();
  const broken = new IoError('transient', 'memory: keys/: listing failed');
  s.failOn.set('keys/', broken);
  await assert.rejects(cleanDebris(s, []), (e) => e === broken);
  assert.deepEqual([...s.cleaned].sort(), PREFIXES.filter((p) => p !== 'keys/').sort());

  const t = await withDebris();
  t.failOn.set('locks/', new IoError('permission', 'memory: locks/: no delete permission'));
  const r = await cleanDebris(t, []);
  assert.deepEqual(r.undeletable, ['locks/*.tmp-*']);
  assert.equal(t.cleaned.length, PREFIXES.length - 1);
  assert.deepEqual(await listAll(t, 'volumes/'), ['volumes/b_2026-01-01_full.files.0001.tar'], 'the rest of the cleanup went on');
});
