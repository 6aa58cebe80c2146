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
import { parseArgs, parseSize } from './args.js';
import { need, printJson, LIMIT_FLAGS, LIMIT_HELP, rates } from './common.js';
import { human } from './progress.js';

export const help = `iebs disc plan|write|verify: disc sets (ISO 9660 images with PAR2 parity)
  iebs disc plan  --repo REPO --media MEDIA [SNAPSHOT | --chain NAME | --all] [--parity PCT] [--name SET] [--key KEY] [--json]
  iebs disc write --repo REPO --media MEDIA --out DIR [--disc N] [SNAPSHOT | --chain NAME | --all] [--parity PCT] [--name SET] [--key KEY]
  iebs disc verify IMAGE|DIR... [--repair [--out PATH]] [--scratch DIR] [--json]
  MEDIA is cd, dvd, bluray, bd-dl, bd-xl, bd-xx or a size (4.7GB, 20MiB). The selection
  is a snapshot and the chain it needs, every snapshot of a chain, or (the default) all.
  Every disc holds the config, public keys, every record, manifest and index of the
  selection, its volumes, README.txt, SPEC.md, a label (iebs-disc.txt) and PAR2 parity
  (--parity, default ${DEFAULT_PARITY}% of its blocks). plan says how many discs and what each
  holds; write makes the images (all, or disc N), one at a time, named
  SET-disc-N-of-T.iso in DIR; verify checks a disc image or a mounted disc with its
  parity, and --repair writes a repaired copy (IMAGE.repaired.iso, or --out). Needs par2
  and xorriso (Debian: apt install par2 xorriso). Read discs back with --repo iso:PATH.
${LIMIT_HELP}`;

export async function main(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'plan' || sub === 'write') return planOrWrite(sub, rest);
  if (sub === 'verify') return verify(rest);
  throw new UsageError('bad-flag', `iebs disc: ${sub === undefined ? 'a subcommand is required' : `unknown subcommand ${JSON.stringify(sub)}`}: plan, write or verify (see iebs disc --help)`);
}

async function planOrWrite(sub: 'plan' | 'write', argv: string[]): Promise<number> {
  const verb = `disc ${sub}`;
  const { flags, positionals } = parseArgs(verb, argv, {
    ...LIMIT_FLAGS, repo: 'string', media: 'string', chain: 'string', all: 'boolean', parity: 'string', name: 'string', key: 'string', json: 'boolean',
    ...(sub === 'write' ? { out: 'string', disc: 'string' } : {}),
  });
  const repo = need(flags.repo as string | undefined, verb, '--repo REPO');
  const media = parseSize(need(flags.media as string | undefined, verb, '--media MEDIA'), MEDIA);
  const picks = [positionals.length > 0, flags.chain !== undefined, !!flags.all].filter(Boolean).length;
  if (picks > 1 || positionals.length > 1) throw new UsageError('bad-flag', `iebs ${verb}: give one of SNAPSHOT, --chain NAME or --all`);
  const select: Selection = positionals[0] ? { snapshot: positionals[0] } : flags.chain ? { chain: flags.chain as string } : { all: true };
  const parity = flags.parity === undefined ? DEFAULT_PARITY : Number(flags.parity);
  if (!Number.isInteger(parity) || parity < 1 || parity > 100) throw new UsageError('bad-flag', `iebs ${verb}: --parity ${JSON.stringify(flags.parity)}: a whole percent from 1 to 100`);
  const out = sub === 'write' ? need(flags.out as string | undefined, verb, '--out DIR') : '';
  const only = flags.disc === undefined ? undefined : Number(flags.disc);
  if (only !== undefined && !(Number.isInteger(only) && only >= 1)) throw new UsageError('bad-flag', `iebs ${verb}: --disc ${JSON.stringify(flags.disc)}: a disc number from 1`);
  const storage = openStorage(repo, rates(flags));
  try {
    const verifiers = flags.key ? await loadVerifyKeys(flags.key as string) : await repoHostKeys(storage);
    // The writer's own files are counted from the largest selection's numbers: a bound, never an underestimate.
    const probe = await planDiscs(storage, verifiers, { media, parity, select, name: flags.name as string | undefined, extraBytes: 0 });
    const extra = await extraBytes({ snapshots: probe.snapshots.length, volumes: probe.discs.reduce((a, d) => a + d.volumes.length, 0) });
    const plan = await planDiscs(storage, verifiers, { media, parity, select, name: flags.name as string | undefined, extraBytes: extra });
    if (sub === 'plan') {
      if (flags.json) printJson(planJson(plan));
      else printPlan(plan);
      return 0;
    }
    if (only !== undefined && only > plan.discs.length) throw new UsageError('bad-flag', `iebs ${verb}: --disc ${only}: the set has ${plan.discs.length} disc(s)`);
    const local = localPathOf(repo);
    const numbers = only !== undefined ? [only] : plan.discs.map((d) => d.number);
    for (const n of numbers) {
      const w = await writeDisc(storage, plan, n, {
        out, localRoot: local ? resolve(local) : undefined, now: BigInt(Date.now()) * 1_000_000n,
        onStep: flags.json ? undefined : (d, s) => process.stderr.write(`disc ${d}/${plan.discs.length}: ${s}\n`),
      });
      if (flags.json) printJson({ set: plan.set, name: plan.name, disc: w.number, of: plan.discs.length, path: w.path, bytes: w.bytes, volumes: w.volumes, parity: w.parity });
      else process.stdout.write(`wrote ${w.path}: disc ${w.number} of ${plan.discs.length} of set ${plan.name}, ${human(w.bytes)}, ${w.volumes} volume(s), parity ${w.parity.recovery} of ${w.parity.sourceBlocks} blocks of ${w.parity.blockSize} bytes\n`);
    }
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

async function verify(argv: string[]): Promise<number> {
  const { flags, positionals } = parseArgs('disc verify', argv, { repair: 'boolean', out: 'string', scratch: 'string', json: 'boolean' });
  if (positionals.length === 0) throw new UsageError('missing-argument', 'iebs disc verify: IMAGE or DIR is required (see iebs disc --help)');
  if (flags.out !== undefined && (!flags.repair || positionals.length !== 1)) throw new UsageError('bad-flag', 'iebs disc verify: --out goes with --repair and one IMAGE or DIR');
  // A folder of images is each of its images; a disc image or a disc's folder is itself.
  const targets: string[] = [];
  for (const p of positionals) {
    const discs = await openDiscs(p);
    await Promise.all(discs.map((d) => d.close()));
    targets.push(...(discs.length === 1 && discs[0].where === p ? [p] : discs.map((d) => d.where)));
  }
  if (flags.out !== undefined && targets.length !== 1) throw new UsageError('bad-flag', 'iebs disc verify: --out goes with one disc');
  const results: DiscCheck[] = [];
  let worst = 0;
  for (const t of targets) {
    const r = await checkDisc(t, { repair: !!flags.repair, out: flags.out as string | undefined, scratch: flags.scratch as string | undefined });
    results.push(r);
    const c = r.check;
    const which = r.label ? `disc ${r.label.disc} of ${r.label.total} of set ${r.label.name}` : 'disc';
    const code = c.state === 'ok' || c.state === 'repaired' ? 0 : 1;
    worst = Math.max(worst, code);
    if (flags.json) continue;
    const damaged = c.damaged.map((d) => `  ${d.file}: ${d.what.trim()}`).join('\n');
    if (r.unreadable) process.stdout.write(`${t}: ${r.unreadable} bytes could not be read\n`);
    if (c.state === 'ok') process.stdout.write(`ok: ${t}: ${which}: every file matches its parity\n`);
    else if (c.state === 'repaired') process.stdout.write(`repaired: ${t}: ${which}:\n${damaged}\n  repaired copy: ${r.repaired}\n`);
    else if (c.state === 'repairable') process.stdout.write(`DAMAGED: ${t}: ${which}, repairable with its parity (iebs disc verify --repair):\n${damaged}\n`);
    else process.stdout.write(`DAMAGED: ${t}: ${which}, beyond its parity${c.needed !== null ? ` (${c.needed} more recovery blocks needed, ${c.available ?? 0} there)` : ''}:\n${damaged}\n  what the other files hold still restores: iebs restore --repo iso:${t} ...\n`);
  }
  if (flags.json) printJson(results.map((r) => ({ where: r.where, set: r.label?.set ?? null, disc: r.label?.disc ?? null, of: r.label?.total ?? null, state: r.check.state, damaged: r.check.damaged, available: r.check.available, needed: r.check.needed, unreadable: r.unreadable, repaired: r.repaired ?? null })));
  return worst;
}
