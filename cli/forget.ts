/** `iebs forget`: removes snapshots by keep rules, authorized by the owner's key; --prune deletes them. */
import { loadOwnerKey } from '../engine/crypto/keys.js';
import { repoHostKeys } from '../engine/repo/repo.js';
import { forget, type ForgetResult } from '../engine/retention/forget.js';
import { parseDuration, type Policy } from '../engine/retention/plan.js';
import { openStorage } from '../engine/storage/open.js';
import { UsageError } from '../formats/errors.js';
import { formatTime } from '../formats/text.js';
import { EXIT } from './errors.js';
import { JSON_FLAG, keyFlag, PASSPHRASE_FILE, printJson, rates, REPO, REPO_COMMON, restoreKey } from './common.js';
import { publishResult } from './job.js';
import { human } from './progress.js';
import type { Verb } from './verb.js';

const COUNTS = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;
const PERIOD = { last: 'the newest N snapshots', hourly: 'the newest snapshot of each of the last N hours that have one', daily: 'the same for days', weekly: 'the same for ISO weeks', monthly: 'the same for months', yearly: 'the same for years' } as const;

export const verb: Verb = {
  summary: "removes the snapshots no keep rule keeps, signed by the owner's key",
  about: `Removes the snapshots no keep rule keeps, per system (each separately; --system to restrict), as restic's forget: --keep-last N the newest N; --keep-hourly, -daily, -weekly, -monthly, -yearly N the newest snapshot of each of the last N hours, days, ISO weeks, months, years (UTC) that have one; --keep-within DURATION (1y2m3w4d5h; m is months) every snapshot made within DURATION before now. A chain goes only when none of its snapshots is kept (an increment needs its chain). The head of each system and its newest snapshot always stay. The removal is a record signed with the owner's key (restore.key; a passphrase as for restore): a backup key cannot forget. It is written first; --prune then deletes the snapshots' records, manifests, indexes and volumes (and finishes any earlier prune: iebs prune does only that). Records whose time is in the future, runs backwards, or comes less than a minute after the one before (forged by a stolen backup key, a flood, or a clock gone wrong) are "suspect": they count for no rule and are kept, unless --forget-suspect. --dry-run prints every snapshot with the rule that keeps it or why it goes, and changes nothing. --untrusted also forgets the records a replaced backup key signed after the trust point the owner gave it (iebs key replace-host --compromised), which verify reports as untrusted. Exit 3 when something was left undone (an object that could not be deleted).`,
  flags: [
    REPO,
    keyFlag('restore.key', "the owner's restore key, which signs the forget", true),
    ...COUNTS.map((c) => ({ name: `keep-${c}`, value: 'N', help: `keep ${PERIOD[c]}` })),
    { name: 'keep-within', value: 'DURATION', help: 'keep every snapshot made within DURATION before now (30d, 12h, 1y2m)' },
    { name: 'system', value: 'S', many: true, help: 'forget only among the snapshots of system S (default: every system)' },
    { name: 'forget-suspect', help: 'let the rules remove suspect snapshots too (else kept)' },
    { name: 'untrusted', help: 'also forget every untrusted record: signed by a replaced backup key after the last record iebs key replace-host trusted (no keep rule needed)' },
    { name: 'dry-run', help: 'print what each rule keeps and what would go; change nothing' },
    { name: 'prune', help: 'then delete what the forget removed' },
    JSON_FLAG, PASSPHRASE_FILE, ...REPO_COMMON,
  ],
  async run(a) {
    const policy: Policy = { forgetSuspect: a.bool('forget-suspect') };
    for (const c of COUNTS) {
      const v = a.str(`keep-${c}`);
      if (v === undefined) continue;
      if (!/^[1-9]\d{0,5}$/.test(v)) throw new UsageError('bad-flag', `--keep-${c} ${JSON.stringify(v)}: a count from 1 to 999999`);
      policy[c] = Number(v);
    }
    const within = a.str('keep-within');
    if (within !== undefined) {
      const d = parseDuration(within);
      if (!d) throw new UsageError('bad-flag', `--keep-within ${JSON.stringify(within)}: a duration such as 30d, 12h, 1y2m (y years, m months, w weeks, d days, h hours)`);
      policy.within = d;
    }
    const storage = openStorage(a.need('repo'), rates(a));
    const owner = await restoreKey(loadOwnerKey, a.need('key'), a);
    const hostKeys = owner.hostKeys.length ? owner.hostKeys : await repoHostKeys(storage);
    const systems = a.list('system');
    const dryRun = a.bool('dry-run');
    const r = await forget(storage, {
      policy, owner: owner.signer, owners: owner.owners, hostKeys, systems: systems.length ? systems : undefined,
      dryRun, prune: a.bool('prune'), untrusted: a.bool('untrusted'),
    });
    await storage.close();
    return report(r, a.bool('json'), dryRun, a.quiet);
  },
};

/** Prints what a forget or prune did; the exit code (3 when something was left undone). */
export function report(r: ForgetResult, json: boolean, dryRun: boolean, quiet: boolean): number {
  const code = r.warnings.length || r.undeletable.length ? EXIT.partial : EXIT.ok;
  publishResult({ forgets: r.forgets.length, removed: r.plans.reduce((n, p) => n + p.removed.length, 0), pruned: r.pruned.snapshots, freed: r.pruned.bytes, dryRun }, r.warnings.length + r.undeletable.length);
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
    if (p.chainOnly.count && !quiet) out(`  ${p.chainOnly.count} snapshot(s) (${human(p.chainOnly.bytes)} of volumes) stay only because a kept snapshot shares their chain: a smaller --max-increments on backup (a new full more often) lets forget free more`);
  }
  for (const u of r.untrusted) out(`untrusted  ${u}  ${dryRun ? 'would go' : 'goes'} (forget --untrusted)`);
  for (const w of r.warnings) process.stderr.write(`iebs: warning: ${w}\n`);
  if (r.undeletable.length) process.stderr.write(`iebs: warning: ${r.undeletable.length} object(s) could not be deleted (no delete permission here), first: ${r.undeletable[0]}\n`);
  if (quiet) return code;
  if (dryRun) { out('dry run: nothing was changed'); return code; }
  for (const f of r.forgets) out(`forget committed: ${f}`);
  if (r.pruned.objects || r.pruned.snapshots) out(`pruned: ${r.pruned.snapshots} snapshot record(s), ${r.pruned.objects} object(s), ${human(r.pruned.bytes)} freed`);
  else if (r.pending.length) out(`${r.pending.length} forgotten snapshot(s) are still stored: iebs prune (or forget --prune) deletes them`);
  else if (!r.forgets.length) out('nothing to forget');
  return code;
}
