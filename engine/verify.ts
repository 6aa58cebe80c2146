/**
 * Verify (SPEC.md "Snapshot record and chain", "Write order"): checks a repository with
 * public keys only. Every record's signature, the hash links between the records of
 * each system, and every object a record names (present, of its recorded size and
 * sha384). With the restore key and `readData`, also every block of every manifest:
 * decrypted, decompressed and hashed. Each problem names its object and the snapshots
 * it makes unrestorable (wholly or in part).
 */
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import type * as openpgp from 'openpgp';
import { IebsError, KeyError } from '../formats/errors.js';
import { currentPublicKeys, hashObject, listSnapshots, readConfig, repoHostKeys, repoPublicKeys, type Snapshot } from './repo/repo.js';
import { LAYOUT } from '../formats/names.js';
import { FORGETS } from '../formats/forget.js';
import { hashOfDigest, toHex } from '../formats/text.js';
import type { BlockRef } from '../formats/manifest.js';
import { forgottenByHash, listForgets } from './repo/forgets.js';
import type { HostTrust } from './repo/host-keys.js';
import { ownersOf } from './crypto/owner.js';
import { digestMatches } from './crypto/hashes.js';
import { suspects } from './retention/plan.js';
import type { RestoreKey } from './crypto/keys.js';
import { readManifest } from './repo/manifest-object.js';
import { absentNote, type Storage } from './storage/storage.js';
import { VolumeReader } from './repo/volumes.js';
import { ExternalSorter, scratchDir } from './scratch/sorter.js';
import { packRecord, unpackRecord } from './scratch/record-pack.js';

/** One thing found wrong. */
export interface Problem { object: string; message: string; affects: string[]; files?: number }

/** What verify found. */
export interface VerifyResult {
  snapshots: number;
  objects: number;
  bytes: number;
  blocks: number;
  problems: Problem[];
  /** Objects no signed record names: left by interrupted runs, or added. */
  unreferenced: string[];
  /** Valid owner-signed forgets, and the snapshots they name. */
  forgets: number;
  forgotten: number;
  /** Records and objects of forgotten snapshots still here: a prune not (yet) finished. Not a failure. */
  prunePending: string[];
  /** Records whose times are not trusted (SPEC.md "Forget record", suspect times). Not a failure. */
  warnings: string[];
  /** Volumes checked by size only (`volumes` option), not downloaded and hashed. */
  sizeOnly: number;
}

/** Options of verify. */
export interface VerifyOptions {
  restoreKey?: RestoreKey;
  readData?: boolean;
  onProgress?: (p: { objects: number; bytes: number; blocks: number }) => void;
  /** Every key of the user's own key file: keys/public.asc must hold each of them, packet for packet. */
  anchors?: openpgp.PublicKey[];
  /** The owner keys (recipients) a forget must be signed by; default: those of keys/public.asc. */
  owners?: openpgp.PublicKey[];
  /** The verifier's clock, for records whose time lies in the future. */
  now?: bigint;
  /**
   * Which volumes are downloaded and hashed (the rest are checked by size only):
   * all (the default), none (`quick`), or part `n` of `m` (by their names, so that
   * parts 1..m of m runs together cover every volume once). Manifests and indexes,
   * which are small, are always hashed.
   */
  volumes?: 'all' | 'none' | { n: number; m: number };
}

/** Whether volume object `name` is hashed under the option `volumes`. */
export function hashesVolume(name: string, which: VerifyOptions['volumes'] = 'all'): boolean {
  if (which === 'all') return true;
  if (which === 'none') return false;
  return createHash('sha256').update(name).digest().readUInt32BE(0) % which.m === which.n - 1;
}

/** The snapshot and every later one of its chain: what a damaged object of it affects. */
function affected(s: Snapshot, all: Snapshot[]): string[] {
  return all.filter((x) => x.record.chain === s.record.chain && x.record.sequence >= s.record.sequence).map((x) => x.record.name);
}

/** Verifies a repository against `verifiers` (the trusted host signing keys). */
export async function verify(storage: Storage, verifiers: openpgp.PublicKey[], o: VerifyOptions = {}): Promise<VerifyResult> {
  const res: VerifyResult = { snapshots: 0, objects: 0, bytes: 0, blocks: 0, problems: [], unreferenced: [], sizeOnly: 0, forgets: 0, forgotten: 0, prunePending: [], warnings: [] };
  const progress = () => o.onProgress?.({ objects: res.objects, bytes: res.bytes, blocks: res.blocks });
  const owners = o.owners ?? (await repoPublicKeys(storage).then(ownersOf, () => []));
  const { snapshots, bad, verifiers: hostKeys, trust } = await listSnapshots(storage, verifiers, owners);
  // A host key the owner replaced is no longer in the current public keys, rightly.
  await checkRepoObjects(storage, o.anchors?.filter((k) => !trust.limits.has(k.getFingerprint())), res);
  for (const b of trust.bad) res.problems.push({ object: b.object, message: `${b.error.message}; it gives no trust`, affects: [] });
  const last = trust.statements[trust.statements.length - 1];
  if (last) {
    const current = await repoHostKeys(storage).catch(() => []);
    if (current.length && current[0].getFingerprint() !== last.statement.new) res.problems.push({ object: last.object, message: `${last.object} names host key ${last.statement.new.slice(-16)}, the current public keys ${current[0].getFingerprint().slice(-16)}: a replacement not finished (run iebs key replace-host again with the same --out) or public keys changed by someone else`, affects: [] });
  }
  res.snapshots = snapshots.length;
  if (snapshots.length === 0 && bad.length > 0 && bad.every((b) => b.error.code === 'bad-signature')) {
    throw new KeyError('wrong-key', `none of the ${bad.length} snapshot records of ${storage.where} is signed by a key in the given key file (wrong key for this repository, or every record replaced)`);
  }

  // Forgets: only the owner's signature makes one valid; one that fails covers nothing.
  const { forgets, bad: badForgets } = await listForgets(storage, owners, hostKeys);
  res.forgets = forgets.length;
  for (const b of badForgets) res.problems.push({ object: b.object, message: `${b.error.message}${b.error.code === 'unauthorized' ? '' : ' (unauthorized forget)'}; it covers nothing`, affects: [] });
  const covered = forgottenByHash(forgets);
  res.forgotten = covered.size;
  for (const b of bad) {
    // An untrusted record (a replaced host key's, after its trust point) that the owner forgot: a prune not yet finished.
    const by = b.snapshot && covered.get(toHex(b.snapshot.sha384));
    if (by) { res.prunePending.push(`${b.object} (untrusted, forgotten by ${by.by})`); continue; }
    res.problems.push({ object: b.object, message: b.error.message, affects: [b.object.replace(/^snapshots\//, '').replace(/\.snapshot\.asc$/, '')] });
  }
  const isCovered = (s: Snapshot) => covered.has(toHex(s.sha384));
  // A forgotten record that is gone stands in for itself in the chain checks, from its text in the forget.
  const presentHashes = new Set(snapshots.map((s) => toHex(s.sha384)));
  const standIns = offTrustedLine(snapshots, [...covered.values()]
    .filter((c) => !presentHashes.has(toHex(c.sha384)))
    .map((c) => ({ record: c.record, sha384: c.sha384, object: c.by, standIn: true as const })), trust);
  for (const s of snapshots) if (isCovered(s)) res.prunePending.push(`${s.object} (forgotten by ${covered.get(toHex(s.sha384))!.by})`);
  const live = snapshots.filter((s) => !isCovered(s));

  // The chain of records of each system, forgotten ones included.
  const systems = new Map<string, (Snapshot & { standIn?: true })[]>();
  for (const s of [...snapshots, ...standIns]) systems.set(s.record.system, [...(systems.get(s.record.system) ?? []), s]);
  const now = o.now ?? BigInt(Date.now()) * 1_000_000n;
  for (const [system, list] of systems) {
    list.sort((a, b) => a.record.sequence - b.record.sequence);
    for (const [name, x] of suspects(list.map((s) => s.record), now)) {
      // A time in the future or running backwards is what a forger (or a broken clock) makes; speed alone is not worth a warning.
      if (x.kind !== 'fast') res.warnings.push(`${name}: suspect time (${x.why}); forget counts it for no keep rule`);
    }
    for (let i = 0; i < list.length; i++) {
      const s = list[i], r = s.record;
      const prev = list[i - 1];
      if (prev && prev.record.sequence === r.sequence) {
        res.problems.push({ object: s.object, message: `${r.name} and ${prev.record.name} both claim place ${r.sequence} of ${system} (a replayed or forked record)`, affects: [r.name, prev.record.name] });
        continue;
      }
      const expected = prev ? prev.record.sequence + 1 : 0;
      if (r.sequence !== expected) {
        res.problems.push({ object: s.object, message: `${system}: snapshots ${expected}..${r.sequence - 1} before ${r.name} are missing (deleted, and no forget signed by the owner names them)`, affects: affected(s, live) });
      }
      if (r.parent && prev && prev.record.sequence === r.sequence - 1) {
        if (r.parent.name !== prev.record.name || !Buffer.from(r.parent.sha384).equals(prev.sha384)) {
          res.problems.push({ object: s.object, message: `${r.name}: its parent link does not match ${prev.record.name} (replaced, reordered or replayed record)`, affects: affected(s, live) });
        }
      }
      if (r.type === 'increment' && prev && prev.record.chain !== r.chain && prev.record.sequence === r.sequence - 1) {
        res.problems.push({ object: s.object, message: `${r.name}: increment of chain ${r.chain} follows ${prev.record.name} of chain ${prev.record.chain}`, affects: affected(s, live) });
      }
    }
    // Whole chains only: a chain with a forgotten snapshot must be forgotten whole.
    const forgottenChains = new Set(list.filter((s) => s.standIn || isCovered(s)).map((s) => s.record.chain));
    for (const s of list) {
      if (s.standIn || isCovered(s) || !forgottenChains.has(s.record.chain)) continue;
      const f = list.find((x) => x.record.chain === s.record.chain && (x.standIn || isCovered(x)))!;
      res.problems.push({ object: s.object, message: `${s.record.name} is kept but ${f.record.name} of its chain ${s.record.chain} is forgotten: a chain goes whole or not at all`, affects: affected(s, live) });
    }
  }

  // Every object each record names.
  const referenced = new Set<string>([...snapshots.map((s) => s.object), ...forgets.map((f) => f.object)]);
  // A forgotten snapshot's objects may be half deleted (prune killed): noted, never a failure.
  const forgottenNames = new Set([...covered.values()].map((c) => c.name));
  // An untrusted record's objects are its own (reported with it), not debris of a run.
  for (const s of [...snapshots.filter(isCovered), ...bad.flatMap((b) => (b.snapshot ? [b.snapshot] : []))]) {
    for (const obj of [`${LAYOUT.manifests}/${s.record.manifest.name}`, `${LAYOUT.indexes}/${s.record.index.name}`, ...s.record.volumes.map((v) => `${LAYOUT.volumes}/${v.name}`)]) referenced.add(obj);
  }
  for (const s of live) {
    const objs = [
      { name: `${LAYOUT.manifests}/${s.record.manifest.name}`, ref: s.record.manifest, what: 'manifest' },
      { name: `${LAYOUT.indexes}/${s.record.index.name}`, ref: s.record.index, what: 'index' },
      ...s.record.volumes.map((v) => ({ name: `${LAYOUT.volumes}/${v.name}`, ref: v, what: 'volume' })),
    ];
    for (const obj of objs) {
      referenced.add(obj.name);
      res.objects++;
      const hurt = obj.what === 'index' ? [] : affected(s, live);
      const consequence = obj.what === 'index' ? ' (restores are not affected; the next backup of this chain will fail, make a --full)' : '';
      try {
        const size = await storage.stat(obj.name);
        if (size === null) { res.problems.push({ object: obj.name, message: `${obj.what} ${obj.name} is missing${await absentNote(storage, obj.name)}${consequence}`, affects: hurt }); continue; }
        if (size !== obj.ref.size) { res.problems.push({ object: obj.name, message: `${obj.what} ${obj.name} is ${size} bytes, its record says ${obj.ref.size} (truncated or replaced)${consequence}`, affects: hurt }); continue; }
        if (obj.what === 'volume' && !hashesVolume(obj.name, o.volumes)) { res.sizeOnly++; continue; }
        const hash = hashOfDigest(obj.ref.digest);
        const digest = await hashObject(storage, obj.name, size, hash, (n) => { res.bytes += n; progress(); });
        if (!Buffer.from(digest).equals(obj.ref.digest)) res.problems.push({ object: obj.name, message: `${obj.what} ${obj.name} does not match its ${hash} (damaged or replaced)${consequence}`, affects: hurt });
      } catch (e) {
        if (!(e instanceof IebsError)) throw e;
        res.problems.push({ object: obj.name, message: e.message, affects: hurt });
      }
      progress();
    }
  }

  const ownerOf = (obj: string) => obj.replace(/^[^/]+\//, '').replace(/(\.files\.\d{4}\.tar|\.manifest\.pgp|\.index)$/, '');
  for (const folder of [LAYOUT.snapshots, LAYOUT.manifests, LAYOUT.indexes, LAYOUT.volumes]) {
    for await (const name of storage.list(`${folder}/`)) {
      if (referenced.has(name) || bad.some((b) => b.object === name)) continue;
      if (forgottenNames.has(ownerOf(name))) res.prunePending.push(name);
      else res.unreferenced.push(name);
    }
  }
  for await (const name of storage.list(`${FORGETS}/`)) if (!referenced.has(name) && !badForgets.some((b) => b.object === name)) res.unreferenced.push(name);

  if (o.readData && o.restoreKey) await readAllData(storage, o.restoreKey, hostKeys, live, res, progress);
  await storage.close();
  return res;
}

/**
 * The forgotten records that take their place in the chain checks (SPEC.md "Verify"):
 * all of them, but where a replaced host key is trusted only up to a record of a system:
 * there a forgotten record after that point that no trusted record descends from was
 * the untrusted branch (forged with the old key) the owner removed, not history.
 */
function offTrustedLine<T extends Snapshot>(present: Snapshot[], standIns: T[], trust: HostTrust): T[] {
  const point = new Map<string, number>();
  const all = [...present, ...standIns];
  const byHash = new Map(all.map((s) => [toHex(s.sha384), s]));
  for (const l of trust.limits.values()) {
    for (const [system, p] of l.systems) {
      if (p.kind === 'all') continue;
      const seq = p.kind === 'upto' ? byHash.get(toHex(p.sha384))?.record.sequence ?? -1 : -1;
      point.set(system, Math.min(point.get(system) ?? seq, seq));
    }
  }
  if (point.size === 0) return standIns;
  const reached = new Set<string>();
  for (const s of present) {
    for (let h: string | undefined = toHex(s.sha384); h && !reached.has(h);) {
      reached.add(h);
      const r: Snapshot['record'] | undefined = byHash.get(h)?.record;
      h = r?.parent ? toHex(r.parent.sha384) : undefined;
    }
  }
  return standIns.filter((s) => {
    const p = point.get(s.record.system);
    return p === undefined || s.record.sequence <= p || reached.has(toHex(s.sha384));
  });
}

/**
 * Checks the two unsigned conveniences (SPEC.md "Verify"): the config must decode, and
 * keys/public.asc must parse, every key in it must carry valid self-signatures, and with
 * the user's own keys (`anchors`) each of those must be in it, packet for packet.
 */
async function checkRepoObjects(storage: Storage, anchors: openpgp.PublicKey[] | undefined, res: VerifyResult): Promise<void> {
  try { await readConfig(storage); } catch (e) {
    if (!(e instanceof IebsError)) throw e;
    res.problems.push({ object: LAYOUT.config, message: `${e.message} (no snapshot depends on it; backups need it to recognise the repository)`, affects: [] });
  }
  let object: string = LAYOUT.publicKeys;
  let keys: openpgp.PublicKey[];
  try { object = (await currentPublicKeys(storage)).object; keys = await repoPublicKeys(storage); } catch (e) {
    if (!(e instanceof IebsError)) throw e;
    res.problems.push({ object, message: `${e.message} (damaged or replaced; verify with --key recipient.asc)`, affects: [] });
    return;
  }
  for (const k of keys) {
    try { await k.verifyPrimaryKey(); } catch (e) {
      res.problems.push({ object, message: `${object}: key ${k.getFingerprint().slice(-16)} does not verify (${(e as Error).message}): damaged or tampered with`, affects: [] });
    }
  }
  if (!anchors) return;
  const stored = new Map(keys.map((k) => [k.getFingerprint(), k]));
  for (const v of anchors) {
    const k = stored.get(v.getFingerprint());
    if (!k) res.problems.push({ object, message: `${object} lacks key ${v.getFingerprint().slice(-16)} of your key file (replaced?)`, affects: [] });
    else if (!Buffer.from(k.write()).equals(Buffer.from(v.write()))) res.problems.push({ object, message: `${object}: key ${v.getFingerprint().slice(-16)} differs from your copy (damaged or tampered with)`, affects: [] });
  }
}

/** Where a block lies: its envelope's volume and offset, and its start in a pack. */
function blockPlace(b: BlockRef): string {
  return `${b.volume}@${b.dataOffset}${b.start === undefined ? '' : '+' + b.start}`;
}

/** Places known good that verify remembers, so a block named again is not read again. */
const GOOD_PLACES = 1 << 19;

/**
 * Decrypts and hashes every block each manifest names (each place once, as long as
 * memory allows). A manifest's files wait in a scratch sorter until the manifest has
 * checked out, so memory does not grow with their number.
 */
async function readAllData(storage: Storage, key: RestoreKey, verifiers: openpgp.PublicKey[], snapshots: Snapshot[], res: VerifyResult, progress: () => void): Promise<void> {
  const reader = new VolumeReader(storage, key.decryptionKeys, verifiers);
  const good = new Set<string>();
  const bad = new Map<string, string>();
  const dir = scratchDir('verify');
  try {
    for (const s of snapshots) {
      const badFiles: string[] = [];
      const files = new ExternalSorter(dir, 'files');
      try {
        const none = Buffer.alloc(0);
        await readManifest(storage, key, verifiers, s, (r) => { if (!('deleted' in r) && r.kind === 'file') files.add(none, packRecord(r)); });
        for (const [, v] of files.sorted()) {
          const r = unpackRecord(v);
          const f = { path: Buffer.from(r.path).toString('utf8'), blocks: r.blocks };
          let firstError: string | null = null;
          const places = f.blocks.map(blockPlace);
          // The blocks to read that lie one after another are read a span at a time.
          const toRead = f.blocks.filter((_, i) => !good.has(places[i]) && !bad.has(places[i]));
          reader.expect(toRead);
          for (const [i, b] of f.blocks.entries()) {
            const k = places[i];
            let err = good.has(k) ? null : bad.get(k);
            if (err === undefined) {
              try {
                await reader.readBlock(b, (d) => digestMatches(d, b.digest));
                err = null;
                if (good.size >= GOOD_PLACES) good.clear();
                good.add(k);
              } catch (e) {
                if (!(e instanceof IebsError)) throw e;
                err = e.message;
                bad.set(k, err);
              }
              res.blocks++;
              progress();
            }
            if (err && !firstError) firstError = err;
          }
          reader.done(toRead);
          if (firstError) badFiles.push(`${f.path}: ${firstError}`);
        }
      } catch (e) {
        if (!(e instanceof IebsError) || e.code === 'wrong-key') throw e;
        res.problems.push({ object: `${LAYOUT.manifests}/${s.record.manifest.name}`, message: e.message, affects: affected(s, snapshots) });
        continue;
      } finally {
        files.close();
      }
      if (badFiles.length) {
        res.problems.push({ object: s.record.name, message: `${badFiles.length} file(s) of ${s.record.name} have unreadable blocks, first: ${badFiles[0]}`, affects: affected(s, snapshots), files: badFiles.length });
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
