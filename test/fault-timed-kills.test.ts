/**
 * Fault injection, crashes: backups killed with SIGKILL after fixed delays, spread over
 * start-up, scanning, volumes, manifest and commit: two at 20 and 300 ms after the
 * process starts, the rest at fixed fractions (0% to 70%) of the time the same kind of
 * run worked before, counted from when it takes the lock (so the spread holds on a fast
 * or a loaded machine; the log shows each delay in milliseconds and what the run had
 * written); fulls and increments of chains
 * (--max-increments 3), a ~30 MiB tree with 8 MiB volumes. After every kill: verify
 * with public keys exits 0, the next backup succeeds and cleans up, the latest snapshot
 * restores equal to the source; at the end every snapshot is checked again
 * (test/fault-helpers.ts runKillScenario).
 *
 * test/fault-kill-stages.test.ts kills at stages seen in the repository instead.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { makeKeys, tempDir, type Keys } from './helpers.js';
import { runKillScenario, type KillPlan } from './fault-helpers.js';

let keys: Keys;
let survived = 0;
before(() => { keys = makeKeys(); });
after(() => { console.log(`fault-timed-kills: ${survived} kill points survived`); });

const fromStart = (ms: number): KillPlan => ({ label: `${ms} ms after start`, when: (_o, t) => t >= ms });
/**
 * A fraction of the expected work time, counted from when the run takes the lock: the
 * shortest lock-to-end time of earlier runs of the same type (full or increment), so the
 * kills spread over the work however fast this machine is today.
 */
const fraction = (f: number): KillPlan => ({
  label: `${Math.round(f * 100)}% into the work`,
  when: (_o, t, c) => c.lockMs !== null && t - c.lockMs >= f * c.expected.workMs,
});

test('backups killed after fixed delays: nothing lost, the next backup recovers', async (t) => {
  // Types: full, increment, increment, increment, full, ...
  // The late phases (manifest, index, record) are hit by fault-kill-stages; fractions
  // stay below 75% so that a run faster than any before is still caught.
  const plans = [
    fromStart(20), fraction(0), fraction(0.15), fraction(0.3),
    fraction(0.45), fromStart(300), fraction(0.55), fraction(0.65),
    fraction(0.7), fraction(0.25), fraction(0.6),
  ];
  const r = await runKillScenario({ keys, dir: tempDir('timed-kills'), plans, args: ['--volume-size', '8MiB', '--max-increments', '3'], log: (l) => t.diagnostic(l) });
  survived = r.survived;
  assert.deepEqual(r.problems, [], r.problems.join('\n'));
  assert.ok(r.survived >= 9, `only ${r.survived} of ${plans.length} kill points were hit`);
});
