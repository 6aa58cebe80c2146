#!/usr/bin/env node
/** The `iebs` command: dispatches to one file per verb and maps errors to exit codes. */
import { isMainThread, Worker } from 'node:worker_threads';
import { report } from './errors.js';
import { ENGINE_HEAP } from './heap.js';
import * as keygen from './keygen.js';
import * as init from './init.js';
import * as backup from './backup.js';
import * as snapshots from './snapshots.js';
import * as ls from './ls.js';
import * as restore from './restore.js';
import * as unlock from './unlock.js';
import * as verify from './verify.js';
import * as salvage from './salvage.js';

const VERBS: Record<string, { help: string; main(argv: string[]): Promise<number> }> = { keygen, init, backup, snapshots, ls, restore, verify, salvage, unlock };

const USAGE = `iebs: encrypted, incremental, block-level backups

usage: iebs <command> [options]   (iebs <command> --help for details)

${Object.values(VERBS).map((v) => v.help.split('\n')[0]).join('\n')}

Exit codes: 0 done, 1 error, 2 bad arguments, 3 done with problems (files not backed
up or not restored), 11 repository locked.
`;

async function run(argv: string[]): Promise<number> {
  const debug = process.env.IEBS_DEBUG === '1' || argv.includes('--debug');
  const args = argv.filter((a) => a !== '--debug');
  const [verb, ...rest] = args;
  if (!verb || verb === '--help' || verb === '-h' || verb === 'help') { process.stdout.write(USAGE); return 0; }
  if (verb === '--version') { process.stdout.write('iebs 0.1.0\n'); return 0; }
  const v = VERBS[verb];
  if (!v) { process.stderr.write(`iebs: unknown command ${JSON.stringify(verb)}\n${USAGE}`); return 2; }
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
