/**
 * `find`: which snapshots hold a path matching a pattern, with its size and time.
 *
 * Cost. A snapshot's entries are its chain's manifests composed in order, so finding
 * a path in every snapshot one by one would read a chain of n snapshots n(n+1)/2 times.
 * Instead each chain is read once, full first, up to the last snapshot asked about: every
 * record and deletion becomes an event (UUID, position in the chain), and the events of
 * a matching record carry the record. Sorted by UUID on scratch disk, the events of one
 * UUID give the positions from which to which each of its records was live (until the
 * next record of that UUID replaced it or a deletion removed it); each such interval
 * answers for every snapshot in it. The answers go through a second sort, by snapshot
 * and then path, and are handed out in that order. Memory stays flat: both sorts spill
 * to disk, and only the matches are ever unpacked.
 */
import type { FileRecord } from '../../formats/manifest.js';
import { IebsError } from '../../formats/errors.js';
import type { RestoreKey } from '../crypto/keys.js';
import type { Storage } from '../storage/storage.js';
import { chainOf, findSnapshot, type Snapshot } from '../repo/repo.js';
import { readManifest } from '../repo/manifest-object.js';
import { ExternalSorter, removeScratchDir, scratchDir } from '../scratch/sorter.js';
import { packRecord, unpackRecord } from '../scratch/record-pack.js';
import { readableSnapshots, treeKey } from '../restore/compose.js';
import { globMatcher } from './select.js';

/** What to look for, and where. */
export interface FindOptions {
  /** Glob patterns (engine/query/select.ts `globMatcher`); an entry matching any is found. */
  patterns: string[];
  /** Only snapshots of this system. */
  system?: string;
  /** Only this snapshot (a name, a unique prefix, or `latest`). */
  snapshot?: string;
  /** Memory of each scratch sorter (tests make it small to spill). */
  arena?: number;
}

/** One entry found in one snapshot (its record without blocks). */
export interface FindMatch { snapshot: Snapshot; record: FileRecord }

/** What a search read and found. */
export interface FindResult {
  /** Snapshots searched. */
  snapshots: number;
  /** Manifests read (each at most once). */
  manifests: number;
  matches: number;
  /** Chains that could not be read, and why: their snapshots were not searched. */
  failed: { chain: string; message: string }[];
}

const MATCH = 1, GONE = 0;

/**
 * Searches the chosen snapshots (all, those of `o.system`, or `o.snapshot`) and calls
 * `each` for every match, chain by chain (systems in name order), then by snapshot,
 * then by path in tree order.
 */
export async function find(storage: Storage, key: RestoreKey, o: FindOptions, each: (m: FindMatch) => void | Promise<void>): Promise<FindResult> {
  const matchers = o.patterns.map(globMatcher);
  const matches = (p: Uint8Array) => { const t = Buffer.from(p).toString('utf8'); return matchers.some((m) => m(t)); };
  const { snapshots, bad, verifiers } = await readableSnapshots(storage, key);
  let chosen: Snapshot[];
  if (o.snapshot) chosen = [findSnapshot(snapshots, o.snapshot, o.system, bad)];
  else {
    // findSnapshot explains an empty pool (no such system, unreadable records).
    findSnapshot(snapshots, 'latest', o.system, bad);
    chosen = o.system ? snapshots.filter((s) => s.record.system === o.system) : snapshots;
  }
  const chains = new Map<string, Snapshot[]>();
  for (const s of chosen) chains.set(`${s.record.system}\0${s.record.chain}`, [...(chains.get(`${s.record.system}\0${s.record.chain}`) ?? []), s]);
  const result: FindResult = { snapshots: chosen.length, manifests: 0, matches: 0, failed: [] };
  const dir = scratchDir('find');
  try {
    for (const group of chains.values()) {
      const last = group.reduce((a, b) => (b.record.sequence > a.record.sequence ? b : a));
      try {
        await searchChain(storage, key, verifiers, chainOf(last, snapshots), new Set(group), matches, dir, o.arena, result, each);
      } catch (e) {
        if (!(e instanceof IebsError) || e.code === 'wrong-key' || e.code === 'wrong-passphrase') throw e;
        result.failed.push({ chain: last.record.chain, message: e.message });
      }
    }
  } finally {
    removeScratchDir(dir);
  }
  return result;
}

async function searchChain(
  storage: Storage, key: RestoreKey, verifiers: Parameters<typeof readManifest>[2], chain: Snapshot[], wanted: Set<Snapshot>,
  matches: (p: Uint8Array) => boolean, dir: string, arena: number | undefined, result: FindResult, each: (m: FindMatch) => void | Promise<void>,
): Promise<void> {
  const events = new ExternalSorter(dir, 'events', arena);
  const found = new ExternalSorter(dir, 'found', arena);
  try {
    const gone = Buffer.from([GONE]);
    const event = (uuid: string, at: number) => {
      const k = Buffer.alloc(40);
      k.write(uuid, 0, 36, 'latin1');
      k.writeUInt32BE(at, 36);
      return k;
    };
    for (let i = 0; i < chain.length; i++) {
      await readManifest(storage, key, verifiers, chain[i], (r) => {
        if ('deleted' in r) events.add(event(r.deleted, i), gone);
        // A record that does not match still ends the life of an earlier one of its UUID.
        else if (!matches(r.path)) events.add(event(r.uuid, i), gone);
        else events.add(event(r.uuid, i), Buffer.concat([Buffer.from([MATCH]), packRecord({ ...r, blocks: [] })]));
      });
      result.manifests++;
    }
    // The record live from position `from` up to (not including) `to` answers for the wanted snapshots in between.
    const live = (rec: Buffer | null, from: number, to: number) => {
      if (!rec) return;
      let k: Buffer | null = null;
      for (let i = from; i < to; i++) {
        if (!wanted.has(chain[i])) continue;
        k ??= Buffer.concat([Buffer.alloc(4), treeKey(unpackRecord(rec).path)]);
        const at = Buffer.from(k);
        at.writeUInt32BE(i, 0);
        found.add(at, rec);
      }
    };
    let uuid: Buffer | null = null, rec: Buffer | null = null, from = 0;
    for (const [k, v] of events.sorted()) {
      const at = k.readUInt32BE(36);
      const same = uuid !== null && k.subarray(0, 36).equals(uuid);
      live(rec, from, same ? at : chain.length);
      if (!same) uuid = Buffer.from(k.subarray(0, 36));
      rec = v[0] === MATCH ? Buffer.from(v.subarray(1)) : null;
      from = at;
    }
    live(rec, from, chain.length);
    events.close();
    for (const [k, v] of found.sorted()) {
      result.matches++;
      await each({ snapshot: chain[k.readUInt32BE(0)], record: unpackRecord(v) });
    }
  } finally {
    events.close(); found.close();
  }
}
