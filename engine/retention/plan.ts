/**
 * The forget plan (SPEC.md "Forget record", "Keep rules"): which snapshots of one system
 * the keep rules keep, and why each other one goes. A pure function of the records and
 * the owner's clock, so every decision can be tested without a repository.
 *
 * Rules as restic users know them, in UTC: keep-last N (the newest N), keep-hourly,
 * -daily, -weekly (ISO weeks), -monthly and -yearly N (the newest snapshot of each of the
 * last N hours, days, ... that have one), keep-within D (every snapshot made within D
 * before the owner's clock; restic counts from the newest snapshot, which a forged
 * record could move). Then, because an increment needs its whole chain, a chain goes
 * only when none of its snapshots is kept.
 *
 * A compromised backup host can sign records with any time. A record whose time is in
 * the future (beyond SKEW of the owner's clock), not after the newest trustworthy record
 * before it, or less than a minute after it (a flood) is *suspect*: it never counts
 * toward a rule (never fills a bucket, never counts for keep-last, never moves a window),
 * and it is kept, with its chain, unless the owner asks to forget suspect snapshots. The head of each system (what the
 * next backup follows) and its newest trustworthy snapshot are always kept.
 */

/** How far in the future a record's time may lie before it is suspect: host clocks drift. */
export const SKEW_NS = 10n * 60n * 1_000_000_000n;
/** A record made sooner than this after the trustworthy one before it came too fast to count (a flood). */
export const FLOOD_INTERVAL_NS = 60n * 1_000_000_000n;

/** A span of calendar time: keep-within's argument, `1y2m3w4d5h`. */
export interface Duration { years: number; months: number; weeks: number; days: number; hours: number; text: string }

/** The keep rules of a forget. */
export interface Policy {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
  within?: Duration;
  /** Suspect snapshots go too, when no kept snapshot shares their chain. */
  forgetSuspect?: boolean;
}

/** A snapshot as the plan sees it. */
export interface PlanInput { name: string; system: string; type: 'full' | 'increment'; time: bigint; sequence: number; chain: string; stored: number }

/** The plan for one snapshot. */
export interface PlanEntry extends PlanInput {
  keep: boolean;
  /** Why it is kept: the rules that keep it, or `chain of NAME`, `suspect`, `head`, `newest`. */
  reasons: string[];
  /** Why its time is not trusted, when it is not. */
  suspect?: string;
  /** Why it goes, when it goes. */
  why?: string;
}

/** The plan for one system. */
export interface SystemPlan {
  system: string;
  entries: PlanEntry[];
  /** Snapshots that go, in sequence order. */
  removed: string[];
  /** Bytes of volumes that go. */
  freed: number;
  /** Snapshots kept only because a kept snapshot shares their chain, and their volume bytes. */
  chainOnly: { count: number; bytes: number };
}

const BUCKETS = ['hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;

/** Whether a policy has any rule (a forget without one would keep nothing). */
export function hasRule(p: Policy): boolean {
  return p.last !== undefined || p.within !== undefined || BUCKETS.some((b) => p[b] !== undefined);
}

/** The rules of a policy as text, for the forget record. */
export function policyText(p: Policy): string[] {
  const out: string[] = [];
  if (p.last !== undefined) out.push(`keep-last ${p.last}`);
  for (const b of BUCKETS) if (p[b] !== undefined) out.push(`keep-${b} ${p[b]}`);
  if (p.within) out.push(`keep-within ${p.within.text}`);
  if (p.forgetSuspect) out.push('forget-suspect');
  return out;
}

/** Parses `1y2m3w4d5h` (each part optional, at least one; m is months). Null when it is not one. */
export function parseDuration(text: string): Duration | null {
  const m = /^(?:(\d{1,4})y)?(?:(\d{1,5})m)?(?:(\d{1,5})w)?(?:(\d{1,6})d)?(?:(\d{1,7})h)?$/.exec(text);
  if (!m || text === '') return null;
  const n = (i: number) => Number(m[i] ?? 0);
  return { years: n(1), months: n(2), weeks: n(3), days: n(4), hours: n(5), text };
}

/** `now` minus a duration, in calendar arithmetic (UTC). */
export function before(now: bigint, d: Duration): bigint {
  const ms = Number(now / 1_000_000n);
  const t = new Date(ms);
  const back = Date.UTC(t.getUTCFullYear() - d.years, t.getUTCMonth() - d.months, t.getUTCDate() - d.days - 7 * d.weeks, t.getUTCHours() - d.hours, t.getUTCMinutes(), t.getUTCSeconds(), t.getUTCMilliseconds());
  return now - BigInt(ms - back) * 1_000_000n;
}

/** The bucket of a time for a rule (UTC): `2026-11-22T10`, `2026-11-22`, `2026-W47`, `2026-11`, `2026`. */
export function bucketOf(rule: (typeof BUCKETS)[number], ns: bigint): string {
  const d = new Date(Number(ns / 1_000_000n));
  const iso = d.toISOString();
  switch (rule) {
    case 'hourly': return iso.slice(0, 13);
    case 'daily': return iso.slice(0, 10);
    case 'monthly': return iso.slice(0, 7);
    case 'yearly': return iso.slice(0, 4);
    case 'weekly': {
      // ISO 8601 week: the week with the year's first Thursday is week 1.
      const day = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
      const dow = (d.getUTCDay() + 6) % 7;
      const thursday = new Date(day + (3 - dow) * 86_400_000);
      const year = thursday.getUTCFullYear();
      const week = Math.floor((thursday.getTime() - Date.UTC(year, 0, 1)) / (7 * 86_400_000)) + 1;
      return `${year}-W${String(week).padStart(2, '0')}`;
    }
  }
}

/** A record's place and time, for the suspect check. */
export interface Dated { name: string; sequence: number; time: bigint }

/** Why a record's time is not trusted: in the future, not after the one before it, or too soon after it. */
export interface Suspect { kind: 'future' | 'backwards' | 'fast'; why: string }

/**
 * The suspect records of one system, with why. In sequence order, a record is suspect
 * whose time is after `now` + SKEW_NS (`future`), not after the time of the newest
 * trustworthy record before it (`backwards`: earlier or the same), or less than
 * FLOOD_INTERVAL_NS after it (`fast`: no backup runs that often; a flood does). Each is
 * compared with trustworthy records only, so a forged record with a future time makes
 * only itself suspect, not the real records that follow it with real times.
 */
export function suspects(history: Dated[], now: bigint): Map<string, Suspect> {
  const out = new Map<string, Suspect>();
  let good: Dated | undefined;
  for (const r of [...history].sort((a, b) => a.sequence - b.sequence)) {
    if (r.time > now + SKEW_NS) out.set(r.name, { kind: 'future', why: 'its time is in the future' });
    else if (good && r.time <= good.time) out.set(r.name, { kind: 'backwards', why: `its time is not after that of ${good.name}, made before it` });
    else if (good && r.time - good.time < FLOOD_INTERVAL_NS) out.set(r.name, { kind: 'fast', why: `made ${Number((r.time - good.time) / 1_000_000n) / 1000} s after ${good.name}: faster than one a minute` });
    else good = r;
  }
  return out;
}

/**
 * Plans a forget for one system. `snapshots` are its present records (not already
 * forgotten); `history` the records forgotten earlier, which count for the suspect check.
 */
export function planSystem(system: string, snapshots: PlanInput[], history: Dated[], p: Policy, now: bigint): SystemPlan {
  const bySeq = [...snapshots].sort((a, b) => a.sequence - b.sequence);
  const susp = suspects([...history, ...bySeq], now);
  const reasons = new Map<string, string[]>(bySeq.map((s) => [s.name, []]));
  const add = (name: string, why: string) => reasons.get(name)!.push(why);
  // Newest first: the order every rule walks.
  const trusted = bySeq.filter((s) => !susp.has(s.name)).sort((a, b) => (a.time === b.time ? b.sequence - a.sequence : a.time < b.time ? 1 : -1));
  if (p.last !== undefined) trusted.slice(0, p.last).forEach((s, i) => add(s.name, `keep-last (${i + 1} of ${p.last})`));
  for (const rule of BUCKETS) {
    const n = p[rule];
    if (n === undefined) continue;
    let last: string | undefined;
    let count = 0;
    for (const s of trusted) {
      if (count >= n) break;
      const b = bucketOf(rule, s.time);
      if (b === last) continue;
      add(s.name, `keep-${rule} ${b}`);
      last = b;
      count++;
    }
  }
  if (p.within) {
    const cutoff = before(now, p.within);
    for (const s of trusted) if (s.time >= cutoff) add(s.name, `keep-within ${p.within.text}`);
  }
  if (trusted.length) add(trusted[0].name, 'newest');
  const head = bySeq[bySeq.length - 1];
  if (head) add(head.name, 'head: the next backup follows it');
  if (!p.forgetSuspect) for (const s of bySeq) if (susp.has(s.name)) add(s.name, 'suspect: counts for no rule, kept for you to look at');

  // Whole chains: a chain stays when any of its snapshots is kept.
  const keeper = new Map<string, string>();
  for (const s of bySeq) if (reasons.get(s.name)!.length) keeper.set(s.chain, s.name);
  const entries: PlanEntry[] = [];
  const plan: SystemPlan = { system, entries, removed: [], freed: 0, chainOnly: { count: 0, bytes: 0 } };
  for (const s of bySeq) {
    const r = reasons.get(s.name)!;
    const e: PlanEntry = { ...s, keep: true, reasons: r };
    if (susp.has(s.name)) e.suspect = susp.get(s.name)!.why;
    if (r.length === 0) {
      const k = keeper.get(s.chain);
      if (k) {
        r.push(`chain of ${k}`);
        plan.chainOnly.count++;
        plan.chainOnly.bytes += s.stored;
      } else {
        e.keep = false;
        e.why = e.suspect ? 'suspect, and --forget-suspect given; no kept snapshot shares its chain' : 'no rule keeps it or any snapshot of its chain';
        plan.removed.push(s.name);
        plan.freed += s.stored;
      }
    }
    entries.push(e);
  }
  return plan;
}
