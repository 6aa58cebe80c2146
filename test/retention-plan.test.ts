/**
 * The forget plan as a pure function (engine/retention/plan.ts): restic's keep rules in
 * UTC, whole chains, the head and newest always kept, and records with suspect times
 * (future, backwards, repeated) counting for no rule. Every case is built from records
 * with chosen times, no repository needed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { before, bucketOf, parseDuration, planSystem, suspects, SKEW_NS, type PlanInput, type Policy } from '../engine/retention/plan.js';

const NS = 1_000_000_000n;
const at = (iso: string) => BigInt(Date.parse(iso)) * 1_000_000n;
const NOW = at('2026-12-20T12:00:00Z');

/** Snapshots one a day at 02:00 from `first`, `perChain` a chain (a full, then increments). */
function daily(first: string, days: number, perChain: number): PlanInput[] {
  const out: PlanInput[] = [];
  let chain = '';
  for (let i = 0; i < days; i++) {
    const t = at(first) + BigInt(i) * 86_400n * NS;
    const full = i % perChain === 0;
    const name = `vm_${new Date(Number(t / 1_000_000n)).toISOString().slice(0, 10)}_${full ? 'full' : `increment_${new Date(Number(t / 1_000_000n)).toISOString().slice(0, 10)}-02-00`}`;
    if (full) chain = name;
    out.push({ name, system: 'vm', type: full ? 'full' : 'increment', time: t, sequence: i, chain, stored: 100 });
  }
  return out;
}
const kept = (p: ReturnType<typeof planSystem>) => p.entries.filter((e) => e.keep).map((e) => e.name);
const plan = (s: PlanInput[], p: Policy, now = NOW) => planSystem('vm', s, [], p, now);

test('keep-daily N: the newest snapshot of each of the last N days that have one; chains stay whole', () => {
  const s = daily('2026-12-01T02:00:00Z', 20, 1); // every snapshot a full: no chain keeps another
  const p = plan(s, { daily: 3 });
  assert.deepEqual(kept(p), s.slice(-3).map((x) => x.name));
  assert.equal(p.removed.length, 17);
  assert.ok(p.entries.filter((e) => !e.keep).every((e) => e.why === 'no rule keeps it or any snapshot of its chain'));
  // Chains of 5: the last 3 days are in the last chain, whose older members stay with it.
  const c = plan(daily('2026-12-01T02:00:00Z', 20, 5), { daily: 3 });
  assert.deepEqual(kept(c).length, 5);
  assert.equal(c.chainOnly.count, 2);
  assert.equal(c.chainOnly.bytes, 200);
  assert.ok(c.entries.find((e) => e.name === 'vm_2026-12-16_full')!.reasons[0].startsWith('chain of vm_2026-12-20'));
});

test('two snapshots a day: keep-daily keeps the later one; keep-hourly counts hours', () => {
  const s = daily('2026-12-10T02:00:00Z', 5, 1).flatMap((x, i) => [
    { ...x, sequence: 2 * i },
    { ...x, name: x.name + '-2', time: x.time + 3600n * NS, sequence: 2 * i + 1, chain: x.name + '-2' },
  ]);
  assert.deepEqual(kept(plan(s, { daily: 2 })), ['vm_2026-12-13_full-2', 'vm_2026-12-14_full-2']);
  assert.deepEqual(kept(plan(s, { hourly: 3 })), ['vm_2026-12-13_full-2', 'vm_2026-12-14_full', 'vm_2026-12-14_full-2']);
});

test('keep-weekly uses ISO weeks, keep-monthly and keep-yearly calendar months and years (UTC)', () => {
  assert.equal(bucketOf('weekly', at('2026-01-01T00:00:00Z')), '2026-W01');
  assert.equal(bucketOf('weekly', at('2027-01-01T00:00:00Z')), '2026-W53');
  assert.equal(bucketOf('weekly', at('2024-12-30T10:00:00Z')), '2025-W01');
  assert.equal(bucketOf('monthly', at('2026-02-28T23:59:59Z')), '2026-02');
  assert.equal(bucketOf('yearly', at('2026-02-28T23:59:59Z')), '2026');
  const s = daily('2026-10-01T02:00:00Z', 80, 1);
  const p = plan(s, { monthly: 2, weekly: 1 });
  assert.deepEqual(kept(p), ['vm_2026-11-30_full', 'vm_2026-12-19_full']);
});

test('keep-within counts back from the owner\'s clock, in calendar units; keep-last the newest N', () => {
  assert.deepEqual(parseDuration('1y2m3w4d5h'), { years: 1, months: 2, weeks: 3, days: 4, hours: 5, text: '1y2m3w4d5h' });
  for (const bad of ['', '5', 'd', '1d2y', '1.5d', '-1d', '1s']) assert.equal(parseDuration(bad), null, bad);
  assert.equal(before(at('2026-03-31T00:00:00Z'), parseDuration('1m')!), at('2026-03-03T00:00:00Z'));
  const s = daily('2026-12-01T02:00:00Z', 20, 1);
  assert.deepEqual(kept(plan(s, { within: parseDuration('3d')! })), s.slice(-3).map((x) => x.name));
  assert.deepEqual(kept(plan(s, { last: 4 })), s.slice(-4).map((x) => x.name));
  // Backups stopped long ago: the window is empty, but the newest snapshot stays.
  assert.deepEqual(kept(plan(s, { within: parseDuration('3d')! }, at('2027-06-01T00:00:00Z'))), [s[19].name]);
});

test('suspect times: in the future, backwards or repeated; each makes only itself suspect', () => {
  const r = (name: string, sequence: number, iso: string) => ({ name, sequence, time: at(iso) });
  const m = suspects([
    r('a', 0, '2026-12-01T00:00:00Z'), r('future', 1, '2027-01-01T00:00:00Z'), r('b', 2, '2026-12-02T00:00:00Z'),
    r('past', 3, '2001-01-01T00:00:00Z'), r('dup', 4, '2026-12-02T00:00:00Z'), r('c', 5, '2026-12-03T00:00:00Z'),
  ], NOW);
  assert.deepEqual([...m.keys()], ['future', 'past', 'dup']);
  assert.equal(m.get('future')!.kind, 'future');
  assert.equal(m.get('past')!.kind, 'backwards');
  assert.match(m.get('dup')!.why, /not after that of b/);
  // Less than a minute after the last trustworthy record: fast. A minute later counts again.
  const f = suspects([r('a', 0, '2026-12-01T00:00:00Z'), r('f1', 1, '2026-12-01T00:00:30Z'), r('f2', 2, '2026-12-01T00:00:59Z'), r('b', 3, '2026-12-01T00:01:00Z')], NOW);
  assert.deepEqual([...f.keys()], ['f1', 'f2']);
  assert.equal(f.get('f2')!.kind, 'fast');
  assert.match(f.get('f2')!.why, /made 59 s after a: faster than one a minute/);
  // Within the skew is not the future.
  assert.equal(suspects([{ name: 'x', sequence: 0, time: NOW + SKEW_NS }], NOW).size, 0);
  assert.equal(suspects([{ name: 'x', sequence: 0, time: NOW + SKEW_NS + 1n }], NOW).size, 1);
});

test('suspect records count for no rule and stay; real snapshots are kept exactly as without them', () => {
  const real = daily('2026-12-01T02:00:00Z', 19, 1);
  const forged: PlanInput[] = [
    { name: 'vm_2027-06-01_full', system: 'vm', type: 'full', time: at('2027-06-01T00:00:00Z'), sequence: 19, chain: 'vm_2027-06-01_full', stored: 1 },
    { name: 'vm_2001-01-01_full', system: 'vm', type: 'full', time: at('2001-01-01T00:00:00Z'), sequence: 20, chain: 'vm_2001-01-01_full', stored: 1 },
    { name: 'vm_2026-12-19_full-2', system: 'vm', type: 'full', time: real[18].time, sequence: 21, chain: 'vm_2026-12-19_full-2', stored: 1 },
  ];
  for (const policy of [{ daily: 3 }, { last: 2 }, { within: parseDuration('5d')! }, { weekly: 2, daily: 1 }, { yearly: 3 }] as Policy[]) {
    const without = plan(real, policy);
    const withForged = plan([...real, ...forged], policy);
    const realKept = (p: ReturnType<typeof planSystem>) => kept(p).filter((n) => real.some((x) => x.name === n));
    assert.deepEqual(realKept(withForged), realKept(without), JSON.stringify(policy));
    for (const f of forged) {
      const e = withForged.entries.find((x) => x.name === f.name)!;
      assert.ok(e.suspect, `${f.name} is suspect`);
      assert.ok(e.keep && e.reasons.some((x) => x.startsWith('suspect')), `${f.name} is kept as suspect`);
      assert.ok(!e.reasons.some((x) => x.startsWith('keep-')), `${f.name} counts for no rule`);
    }
    const gone = plan([...real, ...forged], { ...policy, forgetSuspect: true });
    assert.ok(forged.slice(0, 2).every((f) => gone.removed.includes(f.name)), 'with --forget-suspect they go');
    assert.ok(gone.entries.find((e) => e.name === forged[2].name)!.reasons.some((r) => r.startsWith('head')), 'but the head stays');
  }
});

test('the head (what the next backup follows) always stays, with its chain', () => {
  const s = daily('2026-12-01T02:00:00Z', 6, 3);
  const head = { ...s[5], name: 'vm_2026-12-01_increment_2026-12-20-11-00', time: at('2027-03-01T00:00:00Z'), sequence: 6 }; // suspect, last
  const p = plan([...s, head], { last: 1, forgetSuspect: true });
  assert.ok(p.entries.find((e) => e.name === head.name)!.reasons.some((r) => r.startsWith('head')));
  assert.deepEqual(p.removed, s.slice(0, 3).map((x) => x.name));
});

test('a flood (snapshots faster than one a minute) counts for no rule: keep-last and the buckets keep the real snapshots they kept without it', () => {
  const s = daily('2026-12-01T02:00:00Z', 6, 1);
  const flood = Array.from({ length: 50 }, (_, i) => ({ ...s[0], name: `vm_2026-12-06_full-${i + 2}`, chain: `vm_2026-12-06_full-${i + 2}`, time: s[5].time + BigInt(i + 1) * NS, sequence: 6 + i }));
  for (const policy of [{ last: 3 }, { daily: 4 }, { hourly: 2 }, { last: 1, weekly: 1 }] as Policy[]) {
    const without = plan(s, policy);
    const withFlood = plan([...s, ...flood], policy);
    assert.deepEqual(kept(withFlood).filter((n) => s.some((x) => x.name === n)), kept(without), JSON.stringify(policy));
    assert.deepEqual(withFlood.removed, without.removed, `${JSON.stringify(policy)}: the flood makes no real snapshot go`);
    assert.ok(flood.every((f) => withFlood.entries.find((e) => e.name === f.name)!.suspect?.includes('faster than one a minute')));
  }
});
