/**
 * What the retention tests share: a history of real backups made by the engine with a
 * chosen clock (so that snapshots lie days apart, as a nightly schedule makes them), and
 * records forged as a stolen backup.key would: signed with the backup key, any time,
 * appended to a system's chain, their objects copied from the head so that verify finds
 * them whole.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { backup } from '../engine/backup/backup.js';
import { loadBackupKey } from '../engine/crypto/keys.js';
import { listSnapshots, writeRecord } from '../engine/repo/repo.js';
import { LocalStorage } from '../engine/storage/local.js';
import { LAYOUT, snapshotName, volumeName } from '../formats/names.js';
import type { SnapshotRecord } from '../formats/snapshot.js';
import { copyTree, MiB, readTree, tempDir, writeSeeded, type Keys, type Tree } from './helpers.js';

export const NS = 1_000_000_000n;
export const DAY = 86_400n * NS;
/** Now, in nanoseconds. */
export const nowNs = () => BigInt(Date.now()) * 1_000_000n;

/** A repository of real backups and the source tree each snapshot holds. */
export interface History { dir: string; repo: string; src: string; names: string[]; trees: Map<string, Tree> }

/**
 * Makes one backup of system `vm` at each of `times` (chains of `perChain` snapshots),
 * changing the source tree a little before each, and keeps a copy of the tree each holds.
 */
export async function makeHistory(keys: Keys, label: string, times: bigint[], perChain: number): Promise<History> {
  const dir = tempDir(label);
  const src = join(dir, 'src');
  mkdirSync(join(src, 'sub'), { recursive: true });
  writeSeeded(join(src, 'big'), 'big', 300_000);
  const repo = join(dir, 'repo');
  const key = await loadBackupKey(keys.backup);
  const trees = new Map<string, Tree>();
  for (let i = 0; i < times.length; i++) {
    writeFileSync(join(src, 'sub', `f${i}`), `file ${i}\n`);
    if (i % 2) rmSync(join(src, 'sub', `f${i - 1}`));
    writeSeeded(join(src, 'changing'), `c${i}`, 5000 + i);
    const storage = new LocalStorage(repo);
    const r = await backup(storage, key, { sources: [src], system: 'vm', volumeSize: 8 * MiB, maxIncrements: perChain - 1, now: () => times[i], create: true, readers: 1 });
    await storage.close();
    const copy = join(dir, `tree-${i}`);
    copyTree(src, copy);
    trees.set(r.snapshot, readTree(copy));
  }
  return { dir, repo, src, names: [...trees.keys()], trees };
}

/** `n` times a day apart, the last `lastAgo` before now. */
export function daily(n: number, lastAgo = DAY): bigint[] {
  const last = nowNs() - lastAgo;
  return Array.from({ length: n }, (_, i) => last - BigInt(n - 1 - i) * DAY);
}

/**
 * Appends to system `vm` a record forged with the backup key: a full made at `time`,
 * following the system's head, whose objects are copies of the head's (same bytes, so
 * verify finds them whole). Returns its name.
 */
export async function forgeRecord(repo: string, backupKey: string, time: bigint): Promise<string> {
  const storage = new LocalStorage(repo);
  const key = await loadBackupKey(backupKey);
  const { snapshots } = await listSnapshots(storage, [key.signer.toPublic()]);
  const head = snapshots.filter((s) => s.record.system === 'vm').at(-1)!;
  const taken = new Set(snapshots.map((s) => s.record.name));
  const name = snapshotName('vm', 'full', time, time, (n) => taken.has(n));
  const h = head.record;
  const copy = async (from: string, to: string) => storage.put(to, await storage.get(from));
  await copy(`${LAYOUT.manifests}/${h.manifest.name}`, `${LAYOUT.manifests}/${name}.manifest.pgp`);
  await copy(`${LAYOUT.indexes}/${h.index.name}`, `${LAYOUT.indexes}/${name}.index`);
  const volumes = [];
  for (let i = 0; i < h.volumes.length; i++) {
    const v = { ...h.volumes[i], name: volumeName(name, i + 1) };
    await copy(`${LAYOUT.volumes}/${h.volumes[i].name}`, `${LAYOUT.volumes}/${v.name}`);
    volumes.push(v);
  }
  const record: SnapshotRecord = {
    ...h, name, type: 'full', time, sequence: h.sequence + 1, chain: name, parent: { name: h.name, sha384: head.sha384 },
    manifest: { ...h.manifest, name: `${name}.manifest.pgp` }, index: { ...h.index, name: `${name}.index` }, volumes,
  };
  await writeRecord(storage, record, key.signer);
  await storage.close();
  return name;
}
