/**
 * mapAtOnce (engine/storage/storage.ts): the repository's small objects are read several
 * at a time. Results keep the items' order, no more than the limit run at once, and the
 * first failure is thrown only once the steps under way have ended, with none started
 * after it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { mapAtOnce } from '../engine/storage/storage.js';

test('results come back in the items\' order, with at most the limit under way at once', async () => {
  let running = 0, most = 0;
  const items = Array.from({ length: 40 }, (_, i) => i);
  const out = await mapAtOnce(items, 6, async (i) => {
    running++; most = Math.max(most, running);
    await sleep((i * 7) % 5); // later items often finish first
    running--;
    return i * i;
  });
  assert.deepEqual(out, items.map((i) => i * i));
  assert.equal(most, 6);
  assert.deepEqual(await mapAtOnce([], 6, async () => 1), []);
  assert.deepEqual(await mapAtOnce([5], 6, async (x) => x + 1), [6]);
});

test('the first failure is thrown after the steps under way end, and no step starts after it', async () => {
  const log: string[] = [];
  const items = Array.from({ length: 20 }, (_, i) => i);
  // Lanes of 4: 0 to 3, then 4 to 7 start together; 5 fails after 10 ms while 6 runs 30.
  await assert.rejects(mapAtOnce(items, 4, async (i) => {
    log.push(`start ${i}`);
    await sleep(i === 5 ? 10 : i === 6 ? 30 : 1);
    if (i === 5) { log.push('fail 5'); throw new Error('step 5 failed'); }
    log.push(`end ${i}`);
    return i;
  }).finally(() => log.push('thrown')), /step 5 failed/);
  const at = (e: string) => log.indexOf(e);
  assert.ok(at('start 6') >= 0 && at('start 6') < at('fail 5'), 'step 6 was under way when 5 failed');
  assert.ok(at('end 6') < at('thrown'), 'the error is thrown once step 6 has ended');
  assert.ok(!log.slice(at('fail 5')).some((e) => e.startsWith('start')), 'no step started after the failure');
});
