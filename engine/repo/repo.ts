/**
 * The repository as a whole (SPEC.md "Repository layout", "Snapshot record and chain"):
 * its config, the public keys it carries, and the signed snapshot records and their
 * chains. Everything here works with public keys only. The lock is in lock.ts.
 */
import { createHash, randomBytes } from 'node:crypto';
import type * as openpgp from 'openpgp';
import { FormatError, NotFoundError, AuthError, IebsError } from '../../formats/errors.js';
import { decodeSnapshotRecord, encodeSnapshotRecord, type SnapshotRecord } from '../../formats/snapshot.js';
import { hashOfDigest, toHex, type BlockHash } from '../../formats/text.js';
import { LAYOUT, publicKeysGeneration, publicKeysObject, recordObject, SNAPSHOT_RE } from '../../formats/names.js';
import { decodeConfig, encodeConfig, type RepoConfig } from '../../formats/config.js';
import { listAll, mapAtOnce, type Storage } from '../storage/storage.js';
import { pgpClearSign, pgpClearVerifySigner, sha384 } from '../crypto/crypto.js';
import { hostTrust, type HostTrust } from './host-keys.js';
import { forgottenByHash, listForgets } from './forgets.js';
import { parsePublicKeys } from '../crypto/keys.js';
import { spend } from '../threads.js';

/** Reads the config; NotFoundError when the destination holds no repository. */
export async function readConfig(storage: Storage): Promise<RepoConfig> {
  if ((await storage.stat(LAYOUT.config)) === null) throw new NotFoundError('no-repository', `${storage.where}: no iebs repository here (run iebs init, or iebs backup to create one)`);
  return decodeConfig(Buffer.from(await storage.get(LAYOUT.config)).toString('latin1'), `${storage.where}/config`);
}

/** Creates a repository; refuses (code `exists`) a destination that already holds one. */
export async function initRepo(storage: Storage, publicArmored: string, now: bigint): Promise<RepoConfig> {
  if ((await storage.stat(LAYOUT.config)) !== null) throw new IebsError('exists', `${storage.where}: already an iebs repository`);
  const config = { id: toHex(new Uint8Array(randomBytes(16))), created: now };
  try { await storage.put(LAYOUT.publicKeys, publicArmored); } catch (e) {
    if (!(e instanceof IebsError) || e.code !== 'exists') throw e;
    // Another run creates it at this moment: go on only if it uses the same keys.
    if (Buffer.from(await storage.get(LAYOUT.publicKeys)).toString('utf8') !== publicArmored) throw new IebsError('exists', `${storage.where}: already an iebs repository (being created with other keys)`);
  }
  // Puts never replace: of two runs creating the repository at once, one config wins.
  await storage.put(LAYOUT.config, encodeConfig(config));
  return config;
}

/** The current generation of the repository's public keys: the highest (formats/names.ts `publicKeysObject`). */
export async function currentPublicKeys(storage: Storage): Promise<{ object: string; generation: number }> {
  let generation = 1;
  for (const name of await listAll(storage, 'keys/')) generation = Math.max(generation, publicKeysGeneration(name) ?? 1);
  return { object: publicKeysObject(generation), generation };
}

/** The public keys stored in the repository, its current generation (trusted only as far as the repository is). */
export async function repoPublicKeys(storage: Storage): Promise<openpgp.PublicKey[]> {
  const { object } = await currentPublicKeys(storage);
  return parsePublicKeys(Buffer.from(await storage.get(object)).toString('utf8'), `${storage.where}/${object}`);
}

/**
 * Stores `armored` (recipients, then the host signing key) as the next generation of the
 * repository's public keys, unless the current one is that text already; never replaces
 * an object (SPEC.md I1). Returns the object written, or null.
 */
export async function writePublicKeys(storage: Storage, armored: string): Promise<string | null> {
  await readConfig(storage);
  const { object, generation } = await currentPublicKeys(storage);
  if (Buffer.from(await storage.get(object)).toString('utf8') === armored) return null;
  const next = publicKeysObject(generation + 1);
  try { await storage.put(next, armored); } catch (e) {
    if (e instanceof IebsError && e.code === 'exists') throw new IebsError('exists', `${storage.where}/${next} was written by another run at the same moment; run the command again`, { cause: e });
    throw e;
  }
  return next;
}

/** The repository's host signing key: the last key of keys/public.asc (SPEC.md "Which key is which"). */
export async function repoHostKeys(storage: Storage): Promise<openpgp.PublicKey[]> {
  return (await repoPublicKeys(storage)).slice(-1);
}

/** A verified snapshot record with the sha384 of its text, and the fingerprint of the host key that signed it. */
export interface Snapshot { record: SnapshotRecord; sha384: Uint8Array; object: string; signer?: string }

/**
 * Signs and stores a snapshot record: the commit point of a backup. A record of that name
 * already there is an `exists` error of the put, which never replaces an object (no
 * request of its own to ask first: a round trip on a remote store).
 */
export async function writeRecord(storage: Storage, record: SnapshotRecord, signer: openpgp.PrivateKey): Promise<Snapshot> {
  const text = encodeSnapshotRecord(record);
  const object = recordObject(record.name);
  await storage.put(object, await pgpClearSign(text, signer));
  return { record, sha384: sha384(text), object, signer: signer.getFingerprint() };
}

/**
 * A record that failed to load, for verify to report. An untrusted one (code
 * `untrusted`: signed by a replaced host key after its trust point) carries the record,
 * which only a forget may use (to remove it).
 */
export interface BadRecord { object: string; error: IebsError; snapshot?: Snapshot }

/** Snapshot records read and checked at once by `listSnapshots`. */
const RECORDS_AT_ONCE = 16;

/** Manifests hashed at once by the chain check: each reads up to four 2 MiB pieces at a time. */
const MANIFESTS_AT_ONCE = 4;

/** The largest snapshot record read, and the size above which records are read one at a time (they are about 1 KiB). */
const MAX_RECORD = 4 * 1024 * 1024;
export const LARGE_RECORD = 64 * 1024;

/** What listSnapshots found. */
export interface Listing {
  snapshots: Snapshot[];
  bad: BadRecord[];
  /** The host keys that may have signed a record, manifest or sealed key: those given, and those of valid host key statements. */
  verifiers: openpgp.PublicKey[];
  trust: HostTrust;
}

/**
 * Lists and verifies every snapshot record against `verifiers` (host keys) and the host
 * keys that valid host key statements bring in (SPEC.md "Changing keys"), checked
 * against `owners` (default: the owner keys of the repository's public keys). Records
 * that do not verify, and records a replaced host key signed after its trust point, are
 * returned in `bad` (verify reports them; other commands refuse to use them).
 */
export async function listSnapshots(storage: Storage, verifiers: openpgp.PublicKey[], owners?: openpgp.PublicKey[]): Promise<Listing> {
  // Listed while the host key statements are read (a round trip or more each on a remote store).
  const objects = listAll(storage, `${LAYOUT.snapshots}/`);
  objects.catch(() => {});
  const trust = await hostTrust(storage, verifiers, async () => owners ?? (await repoPublicKeys(storage).then((k) => k.slice(0, -1), () => [])));
  const snapshots: Snapshot[] = [];
  const bad: BadRecord[] = [];
  // Read and checked RECORDS_AT_ONCE at a time: one after another, each waited for its
  // requests and for its signature check on libuv's pool (2.5 ms a record here, on a
  // local disk; a round trip or two each on a remote store).
  // A record larger than LARGE_RECORD (one made to be, in a repository someone else
  // controls) waits for the one before it: what is held at once stays bounded as before.
  let large: Promise<unknown> = Promise.resolve();
  const read = await mapAtOnce(await objects, RECORDS_AT_ONCE, async (object): Promise<Snapshot | BadRecord | null> => {
    try {
      const m = /^snapshots\/(.+)\.snapshot\.asc$/.exec(object);
      if (!m || !SNAPSHOT_RE.test(m[1])) throw new FormatError('bad-name', `${object}: not a snapshot record name`);
      const size = await storage.stat(object);
      if (size === null) return null;
      if (size > MAX_RECORD) throw new FormatError('absurd-size', `${object}: larger than 4 MiB`);
      const check = async (): Promise<Snapshot> => {
        const armored = Buffer.from(await storage.get(object)).toString('utf8');
        const { text, signer } = await pgpClearVerifySigner(armored, trust.keys, object);
        const record = decodeSnapshotRecord(text, object);
        if (record.name !== m[1]) throw new AuthError('renamed', `${object}: record says it is ${record.name} (renamed or replayed)`);
        return { record, sha384: sha384(text), object, signer: signer.getFingerprint() };
      };
      if (size <= LARGE_RECORD) return await check();
      const turn = large.then(check);
      large = turn.catch(() => {});
      return await turn;
    } catch (e) {
      if (!(e instanceof IebsError)) throw e;
      return { object, error: e };
    }
  });
  for (const r of read) {
    if (!r) continue;
    if ('error' in r) bad.push(r); else snapshots.push(r);
  }
  const trusted = trust.limits.size ? await applyTrust(storage, snapshots, trust, owners, bad) : snapshots;
  trusted.sort((a, b) => (a.record.system < b.record.system ? -1 : a.record.system > b.record.system ? 1 : a.record.sequence - b.record.sequence));
  return { snapshots: trusted, bad, verifiers: trust.keys, trust };
}

/**
 * Moves the records a replaced host key signed beyond its trust point into `bad`
 * (SPEC.md "Changing keys"): for a system it trusts up to a record, the trusted ones are
 * that record and its ancestors by parent links (through forgotten records too, from
 * valid forgets' text); a system it names with none, or does not name, trusts none.
 */
async function applyTrust(storage: Storage, snapshots: Snapshot[], trust: HostTrust, owners: openpgp.PublicKey[] | undefined, bad: BadRecord[]): Promise<Snapshot[]> {
  let links: Map<string, { system: string; parent?: string }> | undefined;
  const linkMap = async () => {
    if (links) return links;
    links = new Map();
    const ownerKeys = owners ?? (await repoPublicKeys(storage).then((k) => k.slice(0, -1), () => []));
    const { forgets } = await listForgets(storage, ownerKeys, trust.keys);
    for (const c of forgottenByHash(forgets).values()) links.set(toHex(c.sha384), { system: c.record.system, parent: c.record.parent ? toHex(c.record.parent.sha384) : undefined });
    for (const s of snapshots) links.set(toHex(s.sha384), { system: s.record.system, parent: s.record.parent ? toHex(s.record.parent.sha384) : undefined });
    return links;
  };
  const reach = new Map<string, Set<string>>();
  const out: Snapshot[] = [];
  for (const s of snapshots) {
    const limit = s.signer ? trust.limits.get(s.signer) : undefined;
    if (!limit) { out.push(s); continue; }
    const point = limit.systems.get(s.record.system) ?? { kind: 'none' as const };
    let ok: boolean;
    if (point.kind === 'all') ok = true;
    else if (point.kind === 'none') ok = false;
    else {
      const key = toHex(point.sha384);
      let set = reach.get(key);
      if (!set) {
        set = new Set();
        const map = await linkMap();
        for (let h: string | undefined = key; h && !set.has(h);) {
          set.add(h);
          const l = map.get(h);
          h = l && l.system === s.record.system ? l.parent : undefined;
        }
        reach.set(key, set);
      }
      ok = set.has(toHex(s.sha384));
    }
    if (ok) { out.push(s); continue; }
    const after = point.kind === 'upto' ? `after its last trusted record ${point.snapshot}` : `for system ${s.record.system}, whose records it signed are not trusted`;
    bad.push({ object: s.object, snapshot: s, error: new AuthError('untrusted', `${s.object}: untrusted: signed by the replaced host key ${s.signer!.slice(-16)} ${after} (${limit.object}): forged with a stolen key, or made by a host that still had it`) });
  }
  return out;
}

/**
 * The restore chain of a snapshot: its full, then each increment up to it, following
 * parent links and checking each link's hash.
 */
export function chainOf(target: Snapshot, all: Snapshot[]): Snapshot[] {
  const byName = new Map(all.map((s) => [s.record.name, s]));
  const chain: Snapshot[] = [target];
  let cur = target;
  while (cur.record.type === 'increment') {
    const p = cur.record.parent;
    const parent = p && byName.get(p.name);
    if (!p || !parent) throw new NotFoundError('broken-chain', `${cur.record.name}: its parent ${p?.name ?? '(none)'} is missing`);
    if (!Buffer.from(parent.sha384).equals(p.sha384)) throw new AuthError('broken-chain', `${cur.record.name}: its parent ${p.name} is not the one it was made after (hash differs)`);
    if (parent.record.chain !== target.record.chain) throw new FormatError('broken-chain', `${cur.record.name}: parent ${p.name} belongs to another chain`);
    chain.unshift(parent);
    cur = parent;
  }
  return chain;
}

const READ = 2 * 1024 * 1024;
/** Pieces asked for at once. */
const READS_AT_ONCE = 4;

/**
 * The digest (by `hash`) of an object of `size` bytes, read in pieces of 2 MiB, the next
 * READS_AT_ONCE asked for while one is hashed: one after the other, a cold read of a
 * volume and its hashing (about 1 GiB/s here) added up, and on a remote store each piece
 * is a round trip. (With 20 ms between iebs and the store, `verify` of the bench corpus
 * took 4.7 to 5.2 s against 5.4 to 5.6 with one 8 MiB piece read ahead, at the same peak;
 * pieces of 4 MiB, or 8 at once, were faster still but peaked 20 to 50 MiB higher.)
 */
export async function hashObject(storage: Storage, name: string, size: number, hash: BlockHash, onBytes: (n: number) => void = () => {}): Promise<Uint8Array> {
  const h = createHash(hash);
  const asked: Promise<Uint8Array>[] = [];
  let next = 0;
  const ask = () => {
    while (asked.length < READS_AT_ONCE && next < size) {
      const p = storage.getRange(name, next, Math.min(READ, size - next));
      // Its failure is taken where it is awaited; none goes unhandled if the loop stops first.
      p.catch(() => {});
      asked.push(p);
      next += READ;
    }
  };
  ask();
  for (let off = 0; off < size; off += READ) {
    const piece = await asked.shift()!;
    ask();
    h.update(piece);
    onBytes(piece.length);
    // Read no more (a range read is the caller's own): freed now, not at a collection.
    spend(piece);
  }
  return new Uint8Array(h.digest());
}

/**
 * What is wrong with the objects a restore of the chain's next increment would need, or
 * null (SPEC.md "Write order"): every manifest and volume present at its recorded size,
 * and every manifest of its recorded hash. Volumes are not hashed (that is reading the
 * whole chain: verify does it). Indexes are not needed to restore; one is checked when a
 * backup reads it.
 */
export async function chainDamage(storage: Storage, chain: Snapshot[]): Promise<string | null> {
  const objects = chain.flatMap((s) => [
    { name: `${LAYOUT.manifests}/${s.record.manifest.name}`, ref: s.record.manifest, hash: true },
    ...s.record.volumes.map((v) => ({ name: `${LAYOUT.volumes}/${v.name}`, ref: v, hash: false })),
  ]);
  // Every size at once (on a remote store each is a round trip: a chain of 30 increments
  // made 60 or more one after another), then the manifests' hashes, a few at once.
  const sizes = await mapAtOnce(objects, RECORDS_AT_ONCE, (o) => storage.stat(o.name));
  for (const [i, o] of objects.entries()) {
    if (sizes[i] === null) return `${o.name} is missing`;
    if (sizes[i] !== o.ref.size) return `${o.name} is ${sizes[i]} bytes, its record says ${o.ref.size}`;
  }
  const manifests = objects.filter((o) => o.hash);
  const sound = await mapAtOnce(manifests, MANIFESTS_AT_ONCE, async (o) => Buffer.from(await hashObject(storage, o.name, o.ref.size, hashOfDigest(o.ref.digest))).equals(o.ref.digest));
  const bad = manifests.find((_, i) => !sound[i]);
  return bad ? `${bad.name} does not match its ${hashOfDigest(bad.ref.digest)} (damaged or replaced)` : null;
}

/**
 * Finds a snapshot by name, `latest` (of an optional system) or a unique prefix. `bad`,
 * the records that did not load, makes a failure say why rather than that there is none.
 */
export function findSnapshot(all: Snapshot[], id: string | undefined, system?: string, bad: BadRecord[] = []): Snapshot {
  const pool = system ? all.filter((s) => s.record.system === system) : all;
  const named = id && id !== 'latest' ? bad.find((b) => b.object === recordObject(id)) : undefined;
  if (named) throw new NotFoundError('bad-snapshot', `snapshot ${id} cannot be used: ${named.error.message}`);
  if (pool.length === 0 && bad.length > 0) {
    throw new NotFoundError('no-snapshot', `no snapshot record${system ? ` of system ${system}` : ''} could be read: ${bad.length} failed, the first: ${bad[0].error.message}`);
  }
  if (pool.length === 0) throw new NotFoundError('no-snapshot', system ? `no snapshot of system ${system}` : 'the repository holds no snapshot');
  if (!id || id === 'latest') return pool.reduce((a, b) => (b.record.time > a.record.time ? b : a));
  const exact = pool.find((s) => s.record.name === id);
  if (exact) return exact;
  const pre = pool.filter((s) => s.record.name.startsWith(id));
  if (pre.length === 1) return pre[0];
  throw new NotFoundError('no-snapshot', pre.length ? `${id} names ${pre.length} snapshots; give more of the name` : `no snapshot named ${id}`);
}
