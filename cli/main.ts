#!/usr/bin/env node
/** The `iebs` command: dispatches to one file per verb and maps errors to exit codes. */
import { isMainThread, Worker } from 'node:worker_threads';
import { report } from './errors.js';
import { ENGINE_HEAP } from './heap.js';
/** A verb: its help text and its entry point. */
interface Verb { help: string; main(argv: string[]): Promise<number> }

// Loaded on demand: the thread that hands a verb to its own thread (below) never loads
// the engine and openpgp.js (about 30 MiB of RSS).
const VERBS: Record<string, () => Promise<Verb>> = {
  keygen: () => import('./keygen.js'),
  init: () => import('./init.js'),
  backup: () => import('./backup.js'),
  snapshots: () => import('./snapshots.js'),
  ls: () => import('./ls.js'),
  restore: () => import('./restore.js'),
  verify: () => import('./verify.js'),
  salvage: () => import('./salvage.js'),
  unlock: () => import('./unlock.js'),
  forget: () => import('./forget.js'),
  prune: () => import('./prune.js'),
};

async function usage(): Promise<string> {
  const verbs = await Promise.all(Object.values(VERBS).map((load) => load()));
  return `iebs: encrypted, incremental, block-level backups

usage: iebs <command> [options]   (iebs <command> --help for details)

${verbs.map((v) => v.help.split('\n')[0]).join('\n')}

Exit codes: 0 done, 1 error, 2 bad arguments, 3 done with problems (files not backed
up or not restored), 11 repository locked.
`;
}

async function run(argv: string[]): Promise<number> {
  const debug = process.env.IEBS_DEBUG === '1' || argv.includes('--debug');
  const args = argv.filter((a) => a !== '--debug');
  const [verb, ...rest] = args;
  if (!verb || verb === '--help' || verb === '-h' || verb === 'help') { process.stdout.write(await usage()); return 0; }
  if (verb === '--version') { process.stdout.write('iebs 0.1.0\n'); return 0; }
  if (!Object.hasOwn(VERBS, verb)) { process.stderr.write(`iebs: unknown command ${JSON.stringify(verb)}\n${await usage()}`); return 2; }
  const v = await VERBS[verb]();
  if (rest.includes('--help') || rest.includes('-h')) { process.stdout.write(v.help + '\n'); return 0; }
  try {
    return await v.main(rest);
  } catch (e) {
    return report(e, debug);
  }
}

/** Verbs whose work grows with the repository: run on a thread with a capped heap (cli/heap.ts). */
const ON_THREAD = new Set(['backup', 'restore', 'verify', 'salvage']);

if (isMainThread && ON_THREAD.has(process.argv[2]) && process.env.IEBS_NO_THREAD !== '1') {
  // The thread's stdio passes through this one; it is told whether stderr is a terminal.
  const w = new Worker(new URL(import.meta.url), { argv: process.argv.slice(2), workerData: { tty: !!process.stderr.isTTY }, resourceLimits: ENGINE_HEAP });
  w.on('error', (e) => {
    process.stderr.write(`iebs: ${(e as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY' ? 'out of memory' : e.message}\n`);
    process.exitCode = 1;
  });
  w.on('exit', (code) => { process.exitCode ||= code; });
} else {
  run(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
