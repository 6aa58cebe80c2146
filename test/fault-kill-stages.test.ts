/**
 * Fault injection, crashes: backups killed with SIGKILL at chosen stages of their write
 * order (SPEC.md "Write order"), fulls and increments of chains (--max-increments 3, so
 * the runs go full, increment, increment, increment, full, ...), on a ~30 MiB tree with 8 MiB
 * volumes. The stage is seen in the repository directory (the lock, a `.tmp-` volume, the
 * Nth committed volume, the manifest, the index, the record being written) and the kill
 * follows at once. After every kill: verify with public keys exits 0, the next backup
 * succeeds and cleans up, the latest snapshot restores equal to the source; at the end
 * every snapshot is checked again (test/fault-helpers.ts runKillScenario).
 *
 * test/fault-timed-kills.test.ts does the same with kills at fixed delays.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { MiB, makeKeys, tempDir, type Keys } from './helpers.js';
import { runKillScenario, type KillPlan, type Observed } from './fault-helpers.js';

let keys: Keys;
let survived = 0;
before(() => { keys = makeKeys(); });
after(() => { console.log(`fault-kill-stages: ${survived} kill points survived`); });

const stage = (label: string, when: (o: Observed) => boolean, delay?: number): KillPlan => ({ label, when, delay });
const walking = stage('scanning: lock taken, walking the source', (o) => o.lock, 30);
const firstVolume = stage('first volume header being written', (o) => o.tmpVolumes.length > 0 && o.newVolumes === 0);
const midVolume = (n: number) => stage(`mid-volume ${n}`, (o) => o.newVolumes === n - 1 && o.tmpVolumes.some((v) => v.size >= MiB));
const between = (n: number) => stage(`between volumes ${n} and ${n + 1}`, (o) => o.newVolumes >= n);
const midManifest = stage('mid-manifest', (o) => o.manifestTmp);
const manifestDone = stage('manifest committed, before the index', (o) => o.newManifest);
const index = stage('index being written or just written', (o) => o.index);
const record = stage('record being written: just before the commit', (o) => o.recordTmp);

test('backups killed at each stage of the write order: nothing lost, the next backup recovers', async (t) => {
  // Types: full, increment, increment, increment, full, ... (a kill after the record is
  // committed shifts this by one). Fulls store 4-5 volumes, increments 2.
  const plans = [
    walking, firstVolume, midVolume(1), between(1),
    between(3), midVolume(2), midManifest, manifestDone,
    record, index, record, between(1),
  ];
  const r = await runKillScenario({ keys, dir: tempDir('kill-stages'), plans, args: ['--volume-size', '8MiB', '--max-increments', '3'], log: (l) => t.diagnostic(l) });
  survived = r.survived;
  assert.deepEqual(r.problems, [], r.problems.join('\n'));
  assert.ok(r.survived >= 11, `only ${r.survived} of ${plans.length} kill points were hit`);
});
