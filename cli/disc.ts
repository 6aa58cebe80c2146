/** `iebs disc plan|write|verify`: disc sets of a repository, with PAR2 parity (README "Discs"). */
import { resolve } from 'node:path';
import { repoHostKeys } from '../engine/repo/repo.js';
import { loadVerifyKeys } from '../engine/crypto/keys.js';
import { localPathOf, openStorage } from '../engine/storage/open.js';
import { openDiscs } from '../engine/storage/iso.js';
import { DEFAULT_PARITY, MEDIA, planDiscs, type DiscPlan, type Selection } from '../engine/disc/plan.js';
import { extraBytes, imageName, writeDisc } from '../engine/disc/write.js';
import { checkDisc, type DiscCheck } from '../engine/disc/verify.js';
import { UsageError } from '../formats/errors.js';
import { parseSize } from './args.js';
import { JSON_FLAG, keyFlag, printJson, rates, REPO, REPO_COMMON } from './common.js';
import { publishResult } from './job.js';
import { human } from './progress.js';
import type { Args, Verb } from './verb.js';

const SUBCOMMANDS = ['plan', 'write', 'verify'] as const;
type Sub = (typeof SUBCOMMANDS)[number];
/** The flags only some subcommands take (given on the command line to another: an error). */
const ONLY: Record<string, Sub[]> = {
  repo: ['plan', 'write'], key: ['plan', 'write'], media: ['plan', 'write'], chain: ['plan', 'write'], all: ['plan', 'write'],
  parity: ['plan', 'write'], name: ['plan', 'write'], disc: ['write'], out: ['write', 'verify'], repair: ['verify'], scratch: ['verify'],
  'limit-upload': ['plan', 'write'], 'limit-download': ['plan', 'write'],
};

export const verb: Verb = {
  summary: 'disc sets: ISO 9660 images with PAR2 parity (plan, write, verify)',
  args: `${SUBCOMMANDS.join('|')} [SNAPSHOT|IMAGE|DIR...]`,
  about: `Disc sets of a repository. iebs disc plan --repo REPO --media MEDIA [SNAPSHOT | --chain NAME | --all] [--parity PCT] [--name SET] [--key KEY] [--json] says how many discs a selection takes and what each holds; iebs disc write (the same, and --out DIR [--disc N]) makes the images (all, or disc N), one at a time, named SET-disc-N-of-T.iso in DIR; iebs disc verify IMAGE|DIR... [--repair [--out PATH]] [--scratch DIR] [--json] checks disc images or mounted discs with their parity, and --repair writes a repaired copy (IMAGE.repaired.iso, or --out). MEDIA is cd, dvd, bluray, bd-dl, bd-xl, bd-xx or a size (4.7GB, 20MiB). The selection is a snapshot and the chain it needs, every snapshot of a chain, or (the default) all. Every disc holds the config, public keys, every record, manifest and index of the selection, its volumes, README.txt, SPEC.md, a label (iebs-disc.txt) and PAR2 parity (--parity, default ${DEFAULT_PARITY}% of its blocks). Needs par2 and xorriso (Debian: apt install par2 xorriso). Read discs back with --repo iso:PATH.`,
  flags: [
    { ...REPO, required: false, help: 'plan, write: the repository to put on discs' },
    keyFlag('KEY', 'plan, write: check the records against the public keys in this key file (default: the repository\'s copy)'),
    { name: 'media', value: 'MEDIA', help: 'plan, write: cd, dvd, bluray, bd-dl, bd-xl, bd-xx or a size (4.7GB, 20MiB)' },
    { name: 'chain', value: 'NAME', help: 'plan, write: every snapshot of this chain' },
    { name: 'all', help: 'plan, write: every snapshot (the default)' },
    { name: 'parity', value: 'PCT', help: `plan, write: recovery blocks as a percent of each disc's blocks (default ${DEFAULT_PARITY})` },
    { name: 'name', value: 'SET', config: false, help: 'plan, write: the set\'s name (default iebs-<repository id>-<date of the newest snapshot>)' },
    { name: 'out', value: 'DIR', path: true, config: false, help: 'write: the folder the images go to; verify --repair: the repaired copy' },
    { name: 'disc', value: 'N', help: 'write: only disc N' },
    { name: 'repair', help: 'verify: write a repaired copy of a damaged disc' },
    { name: 'scratch', value: 'DIR', path: true, help: 'verify: where an image\'s files are copied for par2 (default: the temporary folder)' },
    JSON_FLAG, ...REPO_COMMON,
  ],
  async run(a) {
    const [sub, ...rest] = a.positionals;
    if (!(SUBCOMMANDS as readonly string[]).includes(sub)) throw new UsageError('bad-flag', `unknown subcommand ${JSON.stringify(sub)}: plan, write or verify (see iebs help disc)`);
    for (const [flag, subs] of Object.entries(ONLY)) {
      if (a.source(flag) === 'flag' && !subs.includes(sub as Sub)) throw new UsageError('bad-flag', `${sub} takes no --${flag}`);
    }
    if (sub === 'verify') return verify(a, rest);
    return planOrWrite(a, sub as 'plan' | 'write', rest);
  },
};

async function planOrWrite(a: Args, sub: 'plan' | 'write', positionals: string[]): Promise<number> {
  const repo = a.need('repo');
  const media = parseSize(a.need('media'), MEDIA);
  const chain = a.str('chain');
  const picks = [positionals.length > 0, chain !== undefined, a.bool('all')].filter(Boolean).length;
  if (picks > 1 || positionals.length > 1) throw new UsageError('bad-flag', `${sub}: give one of SNAPSHOT, --chain NAME or --all`);
  const select: Selection = positionals[0] ? { snapshot: positionals[0] } : chain ? { chain } : { all: true };
  const parityText = a.str('parity');
  const parity = parityText === undefined ? DEFAULT_PARITY : Number(parityText);
  if (!Number.isInteger(parity) || parity < 1 || parity > 100) throw new UsageError('bad-flag', `${sub}: --parity ${JSON.stringify(parityText)}: a whole percent from 1 to 100`);
  const out = sub === 'write' ? a.need('out') : '';
  const discText = a.str('disc');
  const only = discText === undefined ? undefined : Number(discText);
  if (only !== undefined && !(Number.isInteger(only) && only >= 1)) throw new UsageError('bad-flag', `${sub}: --disc ${JSON.stringify(discText)}: a disc number from 1`);
  const json = a.bool('json');
  const name = a.str('name');
  const keyPath = a.str('key');
  const storage = openStorage(repo, rates(a));
  try {
    const verifiers = keyPath ? await loadVerifyKeys(keyPath) : await repoHostKeys(storage);
    // The writer's own files are counted from the largest selection's numbers: a bound, never an underestimate.
    const probe = await planDiscs(storage, verifiers, { media, parity, select, name, extraBytes: 0 });
    const extra = await extraBytes({ snapshots: probe.snapshots.length, volumes: probe.discs.reduce((n, d) => n + d.volumes.length, 0) });
    const plan = await planDiscs(storage, verifiers, { media, parity, select, name, extraBytes: extra });
    if (sub === 'plan') {
      if (json) printJson(planJson(plan));
      else printPlan(plan);
      return 0;
    }
    if (only !== undefined && only > plan.discs.length) throw new UsageError('bad-flag', `${sub}: --disc ${only}: the set has ${plan.discs.length} disc(s)`);
    const local = localPathOf(repo);
    const numbers = only !== undefined ? [only] : plan.discs.map((d) => d.number);
    for (const n of numbers) {
      const w = await writeDisc(storage, plan, n, {
        out, localRoot: local ? resolve(local) : undefined, now: BigInt(Date.now()) * 1_000_000n,
        onStep: json || a.quiet ? undefined : (d, s) => process.stderr.write(`disc ${d}/${plan.discs.length}: ${s}\n`),
      });
      if (json) printJson({ set: plan.set, name: plan.name, disc: w.number, of: plan.discs.length, path: w.path, bytes: w.bytes, volumes: w.volumes, parity: w.parity });
      else process.stdout.write(`wrote ${w.path}: disc ${w.number} of ${plan.discs.length} of set ${plan.name}, ${human(w.bytes)}, ${w.volumes} volume(s), parity ${w.parity.recovery} of ${w.parity.sourceBlocks} blocks of ${w.parity.blockSize} bytes\n`);
    }
    publishResult({ set: plan.name, discs: numbers.length, of: plan.discs.length });
    return 0;
  } finally { await storage.close(); }
}

function planJson(p: DiscPlan) {
  return {
    set: p.set, name: p.name, repository: p.repository, media: p.media, parity: p.parity, discs: p.discs.length,
    snapshots: p.snapshots.map((s) => s.record.name), meta: { objects: p.meta.length, bytes: p.meta.reduce((a, m) => a + m.size, 0) },
    plan: p.discs.map((d) => ({ disc: d.number, image: imageName(p, d.number), volumes: d.volumes, volumeBytes: d.volumeBytes, otherBytes: d.otherBytes, parityBytes: d.parityBytes, imageBytes: d.imageBytes, free: d.free })),
  };
}

function printPlan(p: DiscPlan): void {
  const metaBytes = p.meta.reduce((a, m) => a + m.size, 0);
  process.stdout.write(`set ${p.name} (${p.set}): ${p.discs.length} disc(s) of ${human(p.media)}, ${p.parity}% parity, ${p.snapshots.length} snapshot(s)\n`);
  process.stdout.write(`every disc: ${p.meta.length} metadata objects (config, keys, ${p.snapshots.length} records, manifests and indexes) ${human(metaBytes)}, README.txt, SPEC.md, label\n`);
  for (const d of p.discs) {
    process.stdout.write(`disc ${d.number}: ${d.volumes.length} volume(s) ${human(d.volumeBytes)}, parity about ${human(d.parityBytes)}, image about ${human(d.imageBytes)}, free ${human(d.free)}\n`);
    for (const v of d.volumes) process.stdout.write(`  ${v.name}  ${human(v.size)}\n`);
  }
}

async function verify(a: Args, positionals: string[]): Promise<number> {
  const out = a.str('out');
  const repair = a.bool('repair');
  const json = a.bool('json');
  if (positionals.length === 0) throw new UsageError('missing-argument', 'verify: IMAGE or DIR is required (see iebs help disc)');
  if (out !== undefined && (!repair || positionals.length !== 1)) throw new UsageError('bad-flag', 'verify: --out goes with --repair and one IMAGE or DIR');
  // A folder of images is each of its images; a disc image or a disc's folder is itself.
  const targets: string[] = [];
  for (const p of positionals) {
    const discs = await openDiscs(p);
    await Promise.all(discs.map((d) => d.close()));
    targets.push(...(discs.length === 1 && discs[0].where === p ? [p] : discs.map((d) => d.where)));
  }
  if (out !== undefined && targets.length !== 1) throw new UsageError('bad-flag', 'verify: --out goes with one disc');
  const results: DiscCheck[] = [];
  let worst = 0;
  for (const t of targets) {
    const r = await checkDisc(t, { repair, out, scratch: a.str('scratch') });
    results.push(r);
    const c = r.check;
    const which = r.label ? `disc ${r.label.disc} of ${r.label.total} of set ${r.label.name}` : 'disc';
    const code = c.state === 'ok' || c.state === 'repaired' ? 0 : 1;
    worst = Math.max(worst, code);
    if (json) continue;
    const damaged = c.damaged.map((d) => `  ${d.file}: ${d.what.trim()}`).join('\n');
    if (r.unreadable) process.stdout.write(`${t}: ${r.unreadable} bytes could not be read\n`);
    if (c.state === 'ok') process.stdout.write(`ok: ${t}: ${which}: every file matches its parity\n`);
    else if (c.state === 'repaired') process.stdout.write(`repaired: ${t}: ${which}:\n${damaged}\n  repaired copy: ${r.repaired}\n`);
    else if (c.state === 'repairable') process.stdout.write(`DAMAGED: ${t}: ${which}, repairable with its parity (iebs disc verify --repair):\n${damaged}\n`);
    else process.stdout.write(`DAMAGED: ${t}: ${which}, beyond its parity${c.needed !== null ? ` (${c.needed} more recovery blocks needed, ${c.available ?? 0} there)` : ''}:\n${damaged}\n  what the other files hold still restores: iebs restore --repo iso:${t} ...\n`);
  }
  if (json) printJson(results.map((r) => ({ where: r.where, set: r.label?.set ?? null, disc: r.label?.disc ?? null, of: r.label?.total ?? null, state: r.check.state, damaged: r.check.damaged, available: r.check.available, needed: r.check.needed, unreadable: r.unreadable, repaired: r.repaired ?? null })));
  return worst;
}
