/** `iebs forget`: removes snapshots by keep rules, authorized by the owner's key; --prune deletes them. */
import { loadOwnerKey } from '../engine/crypto/keys.js';
import { repoHostKeys } from '../engine/repo/repo.js';
import { forget, type ForgetResult } from '../engine/retention/forget.js';
import { parseDuration, type Policy } from '../engine/retention/plan.js';
import { openStorage } from '../engine/storage/open.js';
import { UsageError } from '../formats/errors.js';
import { formatTime } from '../formats/text.js';
import { parseArgs } from './args.js';
import { EXIT } from './errors.js';
import { need, passphrase, printJson, LIMIT_FLAGS, LIMIT_HELP, rates } from './common.js';
import { human } from './progress.js';

export const help = `iebs forget --repo REPO --key restore.key [--keep-last N] [--keep-hourly N] [--keep-daily N] [--keep-weekly N] [--keep-monthly N] [--keep-yearly N] [--keep-within DURATION] [--system S]... [--forget-suspect] [--dry-run] [--prune] [--json]
  Removes the snapshots no keep rule keeps, per system (each separately; --system to
  restrict), as restic's forget: --keep-last N the newest N; --keep-hourly, -daily,
  -weekly, -monthly, -yearly N the newest snapshot of each of the last N hours, days,
  ISO weeks, months, years (UTC) that have one; --keep-within DURATION (1y2m3w4d5h; m
  is months) every snapshot made within DURATION before now. A chain goes only when none
  of its snapshots is kept (an increment needs its chain). The head of each system and
  its newest snapshot always stay.
  The removal is a record signed with the owner's key (restore.key; IEBS_PASSPHRASE or
  --passphrase-file when it is protected): a backup key cannot forget. It is written
  first; --prune then deletes the snapshots' records, manifests, indexes and volumes
  (and finishes any earlier prune: --prune alone does only that).
  Records whose time is in the future, runs backwards, or comes less than a minute after
  the one before (forged by a stolen backup key, a flood, or a clock gone wrong) are
  "suspect": they count for no rule and are kept, unless --forget-suspect.
  --dry-run prints every snapshot with the rule that keeps it or why it goes, and
  changes nothing.
${LIMIT_HELP}`;

const COUNTS = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;

export async function main(argv: string[]): Promise<number> {
  const spec = {
    ...LIMIT_FLAGS, repo: 'string', key: 'string', 'passphrase-file': 'string', system: 'list', 'keep-within': 'string',
    'forget-suspect': 'boolean', 'dry-run': 'boolean', prune: 'boolean', json: 'boolean',
    ...Object.fromEntries(COUNTS.map((c) => [`keep-${c}`, 'string'])),
  } as const;
  const { flags, positionals } = parseArgs('forget', argv, spec as Record<string, 'string' | 'boolean' | 'list'>);
  if (positionals.length) throw new UsageError('bad-flag', `iebs forget: unexpected argument ${JSON.stringify(positionals[0])} (see iebs forget --help)`);
  const policy: Policy = { forgetSuspect: !!flags['forget-suspect'] };
  for (const c of COUNTS) {
    const v = flags[`keep-${c}`] as string | undefined;
    if (v === undefined) continue;
    if (!/^[1-9]\d{0,5}$/.test(v)) throw new UsageError('bad-flag', `--keep-${c} ${JSON.stringify(v)}: a count from 1 to 999999`);
    policy[c] = Number(v);
  }
  const within = flags['keep-within'] as string | undefined;
  if (within !== undefined) {
    const d = parseDuration(within);
    if (!d) throw new UsageError('bad-flag', `--keep-within ${JSON.stringify(within)}: a duration such as 30d, 12h, 1y2m (y years, m months, w weeks, d days, h hours)`);
    policy.within = d;
  }
  const storage = openStorage(need(flags.repo as string | undefined, 'forget', '--repo REPO'), rates(flags));
  const owner = await loadOwnerKey(need(flags.key as string | undefined, 'forget', '--key restore.key'), await passphrase(flags['passphrase-file'] as string | undefined));
  const hostKeys = owner.hostKeys.length ? owner.hostKeys : await repoHostKeys(storage);
  const r = await forget(storage, {
    policy, owner: owner.signer, owners: owner.owners, hostKeys, systems: flags.system as string[] | undefined,
    dryRun: !!flags['dry-run'], prune: !!flags.prune,
  });
  await storage.close();
  return report(r, !!flags.json, !!flags['dry-run']);
}

/** Prints what a forget or prune did; the exit code (3 when something was left undone). */
export function report(r: ForgetResult, json: boolean, dryRun: boolean): number {
  const code = r.warnings.length || r.undeletable.length ? EXIT.partial : EXIT.ok;
  if (json) {
    printJson({
      ...r, dryRun,
      plans: r.plans.map((p) => ({ ...p, entries: p.entries.map((e) => ({ ...e, time: formatTime(e.time) })) })),
    });
    return code;
  }
  const out = (s: string) => process.stdout.write(s + '\n');
  for (const p of r.plans) {
    const kept = p.entries.filter((e) => e.keep).length;
    out(`system ${p.system}: ${p.entries.length} snapshot(s), ${kept} kept, ${p.removed.length} ${dryRun ? 'would go' : 'go'} (${human(p.freed)} of volumes)`);
    for (const e of p.entries) {
      const what = e.keep ? e.reasons.join('; ') : e.why!;
      out(`  ${e.keep ? 'keep' : 'go  '}  ${e.name}  ${formatTime(e.time).slice(0, 19)}Z  ${e.suspect ? `SUSPECT (${e.suspect}); ` : ''}${what}`);
    }
    if (p.chainOnly.count) out(`  ${p.chainOnly.count} snapshot(s) (${human(p.chainOnly.bytes)} of volumes) stay only because a kept snapshot shares their chain: a smaller --max-increments on backup (a new full more often) lets forget free more`);
  }
  for (const w of r.warnings) process.stderr.write(`iebs: warning: ${w}\n`);
  if (r.undeletable.length) process.stderr.write(`iebs: warning: ${r.undeletable.length} object(s) could not be deleted (no delete permission here), first: ${r.undeletable[0]}\n`);
  if (dryRun) { out('dry run: nothing was changed'); return code; }
  for (const f of r.forgets) out(`forget committed: ${f}`);
  if (r.pruned.objects || r.pruned.snapshots) out(`pruned: ${r.pruned.snapshots} snapshot record(s), ${r.pruned.objects} object(s), ${human(r.pruned.bytes)} freed`);
  else if (r.pending.length) out(`${r.pending.length} forgotten snapshot(s) are still stored: iebs prune (or forget --prune) deletes them`);
  else if (!r.forgets.length) out('nothing to forget');
  return code;
}
