/**
 * Forget and prune (SPEC.md "Forget record", "Write order"). A forget plans, per system,
 * which snapshots the keep rules keep (plan.ts), then, under the repository lock, commits
 * one owner-signed forget object per system that loses snapshots, naming each removed
 * record by name and sha384 and carrying its text. Nothing is deleted before that object
 * is committed. Prune then deletes, for every snapshot a valid forget names and whose
 * record is still here with that sha384: first the records, which turns the rest into
 * debris no record names, then its manifest, index and volumes, and last any debris left
 * by earlier runs. A prune killed at any point leaves a repository that verifies; the
 * next forget --prune (or iebs prune) finishes it from the forget objects.
 *
 * Signing a forget needs the owner's private key; pruning needs only the owner's public
 * keys, to check the forgets' signatures.
 */
import type * as openpgp from 'openpgp';
import { IebsError, NotFoundError, UsageError } from '../../formats/errors.js';
import { recordHash, type ForgetRecord } from '../../formats/forget.js';
import { encodeSnapshotRecord } from '../../formats/snapshot.js';
import { LAYOUT, recordObject } from '../../formats/names.js';
import { toHex } from '../../formats/text.js';
import { listSnapshots, readConfig, type Snapshot } from '../repo/repo.js';
import { cleanDebris, removeSnapshotObjects } from '../repo/debris.js';
import { forgottenByHash, listForgets, writeForget } from '../repo/forgets.js';
import { acquireLock } from '../repo/lock.js';
import type { Storage } from '../storage/storage.js';
import { hasRule, planSystem, policyText, type Policy, type SystemPlan } from './plan.js';

/** Options of a forget. */
export interface ForgetOptions {
  policy: Policy;
  /** The owner's private key: needed to sign a forget (not for a dry run or a prune alone). */
  owner?: openpgp.PrivateKey;
  /** The owner keys a forget's signature is checked against. */
  owners: openpgp.PublicKey[];
  /** The host signing keys records are checked against. */
  hostKeys: openpgp.PublicKey[];
  /** Only these systems (default: every system, each on its own). */
  systems?: string[];
  now?: bigint;
  dryRun?: boolean;
  prune?: boolean;
  /**
   * Also forget every untrusted record: one a replaced host key signed after the trust
   * point the owner's host key statement gave it (SPEC.md "Changing keys"). Keep rules
   * never count them; this removes them, whole chains or not (no trusted snapshot uses
   * their blocks).
   */
  untrusted?: boolean;
}

/** What a forget did (or, with dryRun, would do). */
export interface ForgetResult {
  plans: SystemPlan[];
  /** Forget objects written. */
  forgets: string[];
  /** Snapshots that valid forgets name and whose records were still here (a prune to do or done now). */
  pending: string[];
  /** Untrusted records forgotten by this run (or, with dryRun, that would be). */
  untrusted: string[];
  pruned: { snapshots: number; objects: number; bytes: number };
  /** Objects that could not be deleted (no delete permission): left, never read. */
  undeletable: string[];
  warnings: string[];
}

/** Makes a forget, and with `prune` deletes what forgets name. */
export async function forget(storage: Storage, o: ForgetOptions): Promise<ForgetResult> {
  const now = o.now ?? BigInt(Date.now()) * 1_000_000n;
  const ruled = hasRule(o.policy);
  if (!ruled && !o.prune && !o.untrusted) throw new UsageError('no-rule', 'no keep rule given: a forget without one would keep nothing (give --keep-last, --keep-daily, --keep-within, ...; or --prune alone to finish an earlier prune)');
  if ((ruled || o.untrusted) && !o.dryRun && !o.owner) throw new UsageError('missing-argument', 'a forget is signed by the owner: it needs the restore key');
  await readConfig(storage);
  const lock = o.dryRun ? null : await acquireLock(storage);
  try {
    const res: ForgetResult = { plans: [], forgets: [], pending: [], untrusted: [], pruned: { snapshots: 0, objects: 0, bytes: 0 }, undeletable: [], warnings: [] };
    const { snapshots, bad, verifiers } = await listSnapshots(storage, o.hostKeys, o.owners);
    const { forgets, bad: badForgets } = await listForgets(storage, o.owners, verifiers);
    for (const b of badForgets) res.warnings.push(`${b.error.message}: it covers nothing`);
    const covered = forgottenByHash(forgets);
    // Untrusted records (signed by a replaced host key after its trust point): forgotten
    // ones wait for a prune; the others go with --untrusted, else stay with a warning.
    const untrusted = bad.filter((b) => b.error.code === 'untrusted' && b.snapshot).map((b) => b.snapshot!);
    const untrustedPending = untrusted.filter((u) => covered.has(toHex(u.sha384)));
    const untrustedLeft = untrusted.filter((u) => !covered.has(toHex(u.sha384)));
    for (const b of bad) {
      if (b.snapshot && covered.has(toHex(b.snapshot.sha384))) continue;
      if (b.error.code === 'untrusted' && o.untrusted) continue;
      res.warnings.push(`${b.error.message} (kept: ${b.error.code === 'untrusted' ? 'forget --untrusted removes it' : 'a forget never removes a record it cannot check'})`);
    }
    const pending = snapshots.filter((s) => covered.has(toHex(s.sha384)));
    const present = snapshots.filter((s) => !covered.has(toHex(s.sha384)));
    const removed: Snapshot[] = [];

    if (ruled) {
      const all = [...new Set(present.map((s) => s.record.system))];
      for (const s of o.systems ?? []) if (!all.includes(s)) throw new NotFoundError('no-snapshot', `no snapshot of system ${s} to forget`);
      for (const system of o.systems ?? all) {
        const mine = present.filter((s) => s.record.system === system);
        const history = [...covered.values()].filter((c) => c.record.system === system).map((c) => ({ name: c.name, sequence: c.record.sequence, time: c.record.time }));
        const plan = planSystem(system, mine.map((s) => ({ ...s.record, stored: s.record.counts.stored })), history, o.policy, now);
        res.plans.push(plan);
      }
      if (!o.dryRun) {
        for (const plan of res.plans) {
          if (plan.removed.length === 0) continue;
          const gone = plan.removed.map((n) => present.find((s) => s.record.name === n)!);
          const f: ForgetRecord = { system: plan.system, time: now, rules: policyText(o.policy), removed: gone.map((s) => forgotten(s)) };
          await lock!.check();
          res.forgets.push(await writeForget(storage, f, o.owner!));
          removed.push(...gone);
        }
      }
    }
    const loose: Snapshot[] = [...untrustedPending];
    if (o.untrusted) {
      for (const system of [...new Set(untrustedLeft.map((u) => u.record.system))].sort()) {
        if (o.systems && !o.systems.includes(system)) continue;
        // A forget names records in increasing sequence: forks (two records at one place) take one forget each.
        const groups: Snapshot[][] = [];
        for (const u of untrustedLeft.filter((x) => x.record.system === system).sort((a, b) => a.record.sequence - b.record.sequence)) {
          const g = groups.find((x) => x[x.length - 1].record.sequence < u.record.sequence);
          if (g) g.push(u); else groups.push([u]);
        }
        for (const g of groups) {
          res.untrusted.push(...g.map((u) => u.record.name));
          if (o.dryRun) continue;
          await lock!.check();
          res.forgets.push(await writeForget(storage, { system, time: now, rules: ['forget-untrusted'], removed: g.map((u) => forgotten(u)) }, o.owner!));
          loose.push(...g);
        }
      }
    }
    res.pending = [...pending, ...removed, ...loose].map((s) => s.record.name);
    if (o.prune && !o.dryRun) await prune(storage, [...pending, ...removed], snapshots, res, loose);
    return res;
  } finally {
    await lock?.release();
  }
}

/** The forget entry of a snapshot: its record text, which must hash to what its successor's parent line carries. */
function forgotten(s: Snapshot) {
  const text = encodeSnapshotRecord(s.record);
  const sha384 = recordHash(text);
  if (!Buffer.from(sha384).equals(s.sha384)) throw new IebsError('internal', `${s.object}: its record does not encode back to the text that was signed`);
  return { name: s.record.name, sha384, text, record: s.record };
}

/**
 * Deletes the forgotten snapshots: records first (so a kill leaves the rest as debris no
 * record names), then each one's objects, then any debris of earlier runs. A snapshot is
 * kept, with a warning, when a snapshot of its chain is not forgotten (an increment
 * needs its whole chain).
 */
async function prune(storage: Storage, gone: Snapshot[], all: Snapshot[], res: ForgetResult, untrusted: Snapshot[] = []): Promise<void> {
  const s = testKillHook(storage);
  const names = new Set(gone.map((g) => g.record.name));
  const stays = new Set(all.filter((x) => !names.has(x.record.name)).map((x) => x.record.chain));
  const doomed = [...gone.filter((g) => {
    if (!stays.has(g.record.chain)) return true;
    res.warnings.push(`${g.record.name} is forgotten but a snapshot of its chain ${g.record.chain} is not: kept (an increment needs its whole chain)`);
    return false;
  }), ...untrusted];
  const undeletable = (obj: string, e: unknown) => {
    if (!(e instanceof IebsError) || e.code !== 'permission') throw e;
    res.undeletable.push(obj);
  };
  for (const g of [...doomed].sort((a, b) => b.record.sequence - a.record.sequence)) {
    try {
      await s.delete(recordObject(g.record.name));
      res.pruned.snapshots++;
      res.pruned.objects++;
    } catch (e) { undeletable(recordObject(g.record.name), e); }
  }
  for (const g of doomed) {
    const r = g.record;
    const objects = [`${LAYOUT.manifests}/${r.manifest.name}`, `${LAYOUT.indexes}/${r.index.name}`, ...r.volumes.map((v) => `${LAYOUT.volumes}/${v.name}`)];
    for (const obj of objects) {
      const size = await s.stat(obj);
      if (size === null) continue;
      try {
        await s.delete(obj);
        res.pruned.objects++;
        res.pruned.bytes += size;
      } catch (e) { undeletable(obj, e); }
    }
    await removeSnapshotObjects(s, r.name).catch((e) => undeletable(`${r.name}.*`, e));
  }
  const kept = all.filter((x) => !doomed.includes(x));
  res.undeletable.push(...(await cleanDebris(s, kept)).undeletable);
}

/**
 * For the crash tests only: with IEBS_TEST_KILL_AFTER_DELETES=K, the process kills itself
 * with SIGKILL after its K-th delete of a prune (K = 0: once the forget is committed,
 * before any delete), so a test can stop a prune at each of its steps exactly.
 */
function testKillHook(storage: Storage): Storage {
  const k = process.env.IEBS_TEST_KILL_AFTER_DELETES;
  if (k === undefined || !/^\d+$/.test(k)) return storage;
  const limit = Number(k);
  let deletes = 0;
  if (limit === 0) process.kill(process.pid, 'SIGKILL');
  return new Proxy(storage, {
    get(target, prop) {
      if (prop === 'delete') {
        return async (name: string) => {
          await target.delete(name);
          if (++deletes === limit) process.kill(process.pid, 'SIGKILL');
        };
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}
