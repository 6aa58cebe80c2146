/**
 * Replacing a lost or stolen backup key (SPEC.md "Changing keys", replacing the host
 * key). The owner, with restore.key, mints a new backup.key (a new host signing key, a
 * new dedup secret, the repository's recipients) and recipient.asc in a folder of their
 * own, then writes to the repository the owner-signed statement `keys/host.N.asc`
 * (old key, new key, how far the old key's records stay trusted per system), and then
 * the next public keys generation with the new host key last.
 *
 * Order: key files (written exclusively, flushed), statement, generation. A crash
 * leaves a prefix of that; a rerun with the same folder finds which and finishes: key
 * files there whose signing key no statement names yet are used (not minted again); a
 * statement whose new key is that backup.key's gets its generation written.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { IebsError, KeyError, UsageError } from '../../formats/errors.js';
import { encodeKeyFile, KEY_NAME_RE } from '../../formats/keyfile.js';
import { encodeHostKey, type HostKeyStatement, type HostTrustPoint } from '../../formats/host-key.js';
import { SNAPSHOT_RE, SYSTEM_RE } from '../../formats/names.js';
import { formatTime } from '../../formats/text.js';
import { PGP_CONFIG, random } from '../crypto/crypto.js';
import { flushDir, writeNew } from '../crypto/key-admin.js';
import { loadBackupKey, type OwnerKey } from '../crypto/keys.js';
import { currentPublicKeys, listSnapshots, readConfig, repoPublicKeys, writePublicKeys, type Snapshot } from './repo.js';
import { hostTrust, writeStatement } from './host-keys.js';
import { acquireLock } from './lock.js';
import type { Storage } from '../storage/storage.js';

/** Options of a host key replacement. */
export interface ReplaceHostOptions {
  owner: OwnerKey;
  /** The folder for the new backup.key and recipient.asc. */
  out: string;
  /** The old key may have been stolen: trust its records only up to `lastGood`. */
  compromised: boolean;
  /** Per system, the last record to trust (a snapshot name), or `SYSTEM:none`. */
  lastGood: string[];
  now?: bigint;
}

/** What a replacement did. */
export interface ReplaceHostResult {
  backupKey: string;
  recipient: string;
  oldKey: string;
  newKey: string;
  trust: HostKeyStatement['trust'];
  /** Objects written to the repository, in order. */
  written: string[];
  /** True when a rerun finished an interrupted replacement. */
  finished: boolean;
}

/** The systems' records the old key signed, as the refusal lists them for the owner to pick. */
function listing(mine: Map<string, Snapshot[]>): string {
  return [...mine].map(([system, list]) => `${system}: ${list.map((s) => `${s.record.name} (${formatTime(s.record.time).slice(0, 19)}Z)`).join(', ')}`).join('; ');
}

/** Replaces the repository's host signing key (see the module). */
export async function replaceHost(storage: Storage, o: ReplaceHostOptions): Promise<ReplaceHostResult> {
  const now = o.now ?? BigInt(Date.now()) * 1_000_000n;
  if (!o.compromised && o.lastGood.length) throw new UsageError('bad-flag', '--last-good is for a compromised key: pass --compromised too');
  await readConfig(storage);
  const paths = { backup: join(o.out, 'backup.key'), recipient: join(o.out, 'recipient.asc') };
  const lock = await acquireLock(storage);
  try {
    const publicKeys = await repoPublicKeys(storage);
    const { object: generation } = await currentPublicKeys(storage);
    const recipients = publicKeys.slice(0, -1);
    const current = publicKeys[publicKeys.length - 1];
    const ownerFprs = new Set(o.owner.owners.map((k) => k.getFingerprint()));
    if (!recipients.some((r) => ownerFprs.has(r.getFingerprint()))) {
      throw new KeyError('wrong-key', `${storage.where}: your restore key is not a recipient of this repository (${generation}): only its owner can replace its backup key`);
    }
    const anchors = o.owner.hostKeys.length ? o.owner.hostKeys : [current];
    const trust = await hostTrust(storage, anchors, async () => o.owner.owners);
    const last = trust.statements[trust.statements.length - 1];
    // The host key the owner's own key and statements lead to: what is being replaced.
    const head = last ? last.statement.new : anchors[0].getFingerprint();
    const taken = new Set(trust.keys.map((k) => k.getFingerprint()));

    // Key files already in the folder: an interrupted run's, or a mistake.
    let minted: { signer: openpgp.PrivateKey; text: string; publicArmored: string } | undefined;
    let finished = false;
    if (existsSync(paths.backup)) {
      const k = await loadBackupKey(paths.backup);
      const fp = k.signer.getFingerprint();
      const same = k.recipients.map((r) => r.getFingerprint()).join() === recipients.map((r) => r.getFingerprint()).join();
      if (fp === head && fp !== current.getFingerprint()) {
        // The statement is written, the generation not: finish.
        const object = await writePublicKeys(storage, k.publicArmored);
        return { backupKey: paths.backup, recipient: paths.recipient, oldKey: last!.statement.old, newKey: fp, trust: last!.statement.trust, written: object ? [object] : [], finished: true };
      }
      if (taken.has(fp) || !same) throw new KeyError('key-exists', `${paths.backup} already exists (${taken.has(fp) ? 'its signing key is already one of this repository\'s' : 'for other recipients'}); give another --out folder: a key file is never overwritten`);
      minted = { signer: k.signer, text: '', publicArmored: k.publicArmored };
      finished = true;
    } else if (existsSync(paths.recipient)) throw new KeyError('key-exists', `${paths.recipient} already exists; give another --out folder: a key file is never overwritten`);
    if (head !== current.getFingerprint()) {
      throw new KeyError('wrong-key', `${storage.where}: ${generation} names host key ${current.getFingerprint().slice(-16)}, but your restore key${last ? ` and ${last.object}` : ''} lead to ${head.slice(-16)}: the public keys were changed by someone else, or an earlier replacement was interrupted and its backup.key is not in ${o.out}`);
    }

    // How far the old key's records stay trusted, per system.
    const { snapshots, bad } = await listSnapshots(storage, anchors, o.owner.owners);
    const systems = new Set([...snapshots.map((s) => s.record.system), ...bad.flatMap((b) => (b.snapshot ? [b.snapshot.record.system] : []))]);
    const byOld = new Map<string, Snapshot[]>();
    for (const s of snapshots) if (s.signer === head) byOld.set(s.record.system, [...(byOld.get(s.record.system) ?? []), s]);
    const points = new Map<string, HostTrustPoint>();
    if (!o.compromised) for (const s of systems) points.set(s, { kind: 'all' });
    else {
      if (o.lastGood.length === 0) {
        throw new UsageError('missing-argument', `--compromised: name the last record to trust of each system with --last-good SNAPSHOT (or --last-good SYSTEM:none); the records the old key signed: ${listing(byOld) || 'none'}`);
      }
      for (const g of o.lastGood) {
        const none = /^(.+):none$/.exec(g);
        if (none) {
          if (!SYSTEM_RE.test(none[1]) || !systems.has(none[1])) throw new UsageError('bad-flag', `--last-good ${g}: no system ${none[1]} in this repository`);
          if (points.has(none[1])) throw new UsageError('bad-flag', `--last-good: system ${none[1]} named twice`);
          points.set(none[1], { kind: 'none' });
          continue;
        }
        if (!SNAPSHOT_RE.test(g)) throw new UsageError('bad-flag', `--last-good ${JSON.stringify(g)}: a snapshot name, or SYSTEM:none`);
        const s = snapshots.find((x) => x.record.name === g);
        if (!s) throw new UsageError('bad-flag', `--last-good ${g}: no trusted snapshot of that name (${bad.some((b) => b.object.endsWith(`/${g}.snapshot.asc`)) ? 'its record is not trusted' : 'see iebs snapshots'})`);
        if (points.has(s.record.system)) throw new UsageError('bad-flag', `--last-good: system ${s.record.system} named twice`);
        points.set(s.record.system, { kind: 'upto', snapshot: s.record.name, sha384: s.sha384 });
      }
      for (const s of systems) {
        if (points.has(s)) continue;
        // Nothing the old key signed there: nothing to trust.
        if (!byOld.has(s)) { points.set(s, { kind: 'none' }); continue; }
        throw new UsageError('missing-argument', `--compromised: system ${s} needs a --last-good too (${listing(new Map([[s, byOld.get(s)!]]))}; or --last-good ${s}:none)`);
      }
    }
    const trustLines = [...points].sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b))).map(([system, point]) => ({ system, point }));

    if (!minted) {
      const name = o.owner.name && KEY_NAME_RE.test(o.owner.name) ? o.owner.name : 'iebs';
      const host = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: `iebs ${name}`, comment: 'backup host signing key' }], format: 'object', config: PGP_CONFIG });
      const text = encodeKeyFile({ kind: 'backup', name, created: now, dedup: random(32), blocks: [{ type: 'PRIVATE', text: host.privateKey.armor() }, ...recipients.map((r) => ({ type: 'PUBLIC' as const, text: r.armor() }))] });
      minted = { signer: host.privateKey, text, publicArmored: [...recipients, host.publicKey].map((k) => k.armor()).join('') };
      mkdirSync(o.out, { recursive: true, mode: 0o700 });
      writeNew(paths.backup, text, 0o600);
      writeNew(paths.recipient, minted.publicArmored, 0o644);
      flushDir(o.out);
      // Read back as a backup will, before the repository names it.
      if ((await loadBackupKey(paths.backup)).signer.getFingerprint() !== minted.signer.getFingerprint()) throw new IebsError('internal', `${paths.backup} does not read back`);
    } else if (!existsSync(paths.recipient)) {
      writeNew(paths.recipient, minted.publicArmored, 0o644);
      flushDir(o.out);
    }
    const statement: HostKeyStatement = { time: now, old: head, new: minted.signer.getFingerprint(), trust: trustLines, oldKey: current.write(), newKey: minted.signer.toPublic().write() };
    const n = Math.max(0, ...trust.statements.map((s) => s.n), ...trust.bad.map((b) => Number(/host\.(\d+)\.asc$/.exec(b.object)?.[1] ?? 0))) + 1;
    await lock.check();
    const written = [await writeStatement(storage, n, encodeHostKey(statement), o.owner.signer)];
    const object = await writePublicKeys(storage, minted.publicArmored);
    if (object) written.push(object);
    return { backupKey: paths.backup, recipient: paths.recipient, oldKey: head, newKey: statement.new, trust: trustLines, written, finished };
  } finally {
    await lock.release();
  }
}
