#!/usr/bin/env node
/**
 * The `iebs` command: finds the verb, parses its flags (cli/verb.ts), runs it, and maps
 * errors, signals and a closed stdout to exit codes.
 *
 * How a verb is declared:
 *   1. A file cli/<verb>.ts exports `verb: Verb` (cli/verb.ts): a one-line `summary`,
 *      `args` as the synopsis shows them ('SOURCE...', '[SNAPSHOT]'), `about` (the prose
 *      of its help), `flags` (each `{ name, value?, many?, required?, env?, help }`; the
 *      shared ones, REPO, keyFlag(), PASSPHRASE_FILE, JSON_FLAG, REPO_COMMON, are in
 *      cli/common.ts) and `run(a: Args): Promise<number>`, which reads `a.str('repo')`,
 *      `a.bool('json')`, `a.list('include')`, `a.positionals`, `a.quiet`, `a.signal`, and
 *      returns an exit code (cli/errors.ts EXIT). Throw a UsageError for bad input: the
 *      message is printed as `iebs VERB: message`.
 *   2. One line in VERBS below. `thread: true` runs it on a thread of its own with a
 *      capped heap (its work grows with the repository); `abort: true` when its run
 *      stops cleanly on `a.signal` (else SIGINT and SIGTERM end the process at once);
 *      `job: true` publishes its runs for `iebs status` and `iebs serve` (cli/job.ts).
 * Help, `iebs help VERB`, the config file and the bash and zsh completion follow from
 * the declaration; README's table of commands must show the same synopsis (a test checks).
 * A job's final state is written when its run ends, including a clean stop on a signal
 * (exit 130/143); when a signal ends the process at once instead, onSignals below records
 * the job as interrupted first.
 */
import { isMainThread, parentPort, Worker } from 'node:worker_threads';
import type { Verb } from './verb.js';
import type { ThreadMessage } from './prompt.js';
import { EXIT, report } from './errors.js';
import { beforeEngineThread, engineHeap, onEngineThread } from './heap.js';
import { UsageError } from '../formats/errors.js';

/**
 * A registered verb: how to load it (on demand: the thread that hands a verb to its own
 * thread never loads the engine). `manifests`: it decrypts manifests (with these flags),
 * and starts the thread that decrypts a large one before it loads (engine/crypto/pgp-thread.ts).
 */
interface Entry { load: () => Promise<{ verb: Verb }>; thread?: boolean; abort?: boolean; job?: boolean; manifests?: (flags: string[]) => boolean }

/** For `manifests`: always. */
const ALWAYS = () => true;

const VERBS: Record<string, Entry> = {
  keygen: { load: () => import('./keygen.js') },
  init: { load: () => import('./init.js') },
  backup: { load: () => import('./backup.js'), thread: true, abort: true, job: true },
  snapshots: { load: () => import('./snapshots.js') },
  ls: { load: () => import('./ls.js'), manifests: ALWAYS },
  // Listings stay on this thread: a closed stdout (| head) stops them at once, and dump's
  // output keeps its backpressure. stats reads every manifest: its work grows with the repository.
  find: { load: () => import('./find.js'), manifests: ALWAYS },
  diff: { load: () => import('./diff.js'), manifests: ALWAYS },
  dump: { load: () => import('./dump.js'), manifests: ALWAYS },
  stats: { load: () => import('./stats.js'), thread: true, manifests: ALWAYS },
  restore: { load: () => import('./restore.js'), thread: true, abort: true, job: true, manifests: ALWAYS },
  verify: { load: () => import('./verify.js'), thread: true, job: true, manifests: (f) => f.includes('--read-data') },
  salvage: { load: () => import('./salvage.js'), thread: true, job: true },
  unlock: { load: () => import('./unlock.js') },
  // A signal ends them at once (no abort): a forget is committed or not, and a prune left half done is finished by the next one.
  forget: { load: () => import('./forget.js'), job: true },
  prune: { load: () => import('./prune.js'), job: true },
  key: { load: () => import('./key.js') },
  // Its work grows with the repository (every volume hashed, par2 over each disc); par2 and xorriso run as child processes.
  disc: { load: () => import('./disc.js'), thread: true, job: true },
  // Both stop on a.signal: status --follow only stops watching, serve closes its listener.
  status: { load: () => import('./status.js'), abort: true },
  serve: { load: () => import('./serve.js'), abort: true },
};

const VERSION = 'iebs 0.1.0';
/** The exit code of a run stopped by a signal (cli/errors.ts EXIT). */
const SIGNAL_EXIT = { SIGINT: EXIT.SIGINT, SIGTERM: EXIT.SIGTERM } as const;

async function allVerbs(): Promise<[string, Verb][]> {
  return Promise.all(Object.entries(VERBS).map(async ([n, e]) => [n, (await e.load()).verb] as [string, Verb]));
}

/** Runs `iebs ARGV` on this thread; `abort` is aborted when the process is told to stop. */
async function run(argv: string[], abort: AbortController): Promise<number> {
  const debug = process.env.IEBS_DEBUG === '1' || argv.includes('--debug');
  const args = argv.filter((a) => a !== '--debug');
  const [name, ...rest] = args;
  if (name === '--version' || name === '-V') { process.stdout.write(`${VERSION}\n`); return 0; }
  const { generalHelp, parseVerb, bashCompletion, zshCompletion } = await import('./verb.js');
  if (!name || name === '--help' || name === '-h' || (name === 'help' && rest.length === 0)) {
    process.stdout.write(generalHelp(await allVerbs()));
    return 0;
  }
  if (name === 'help') return run([rest[0], '--help'], abort);
  if (name === 'completion') {
    const shell = rest[0];
    if (shell !== 'bash' && shell !== 'zsh') return report(new UsageError('bad-flag', 'name a shell: bash or zsh'), debug, 'completion');
    process.stdout.write((shell === 'bash' ? bashCompletion : zshCompletion)(await allVerbs()));
    return 0;
  }
  if (!Object.hasOwn(VERBS, name)) {
    process.stderr.write(`iebs: unknown command ${JSON.stringify(name)} (iebs help lists them)\n`);
    return 2;
  }
  try {
    if (VERBS[name].manifests?.(rest) && !rest.includes('--help') && !rest.includes('-h')) (await import('../engine/crypto/pgp-thread.js')).warmPgpThread();
    const { configFile } = await import('./config.js');
    const { verb } = await VERBS[name].load();
    const config = configFile(Object.keys(VERBS));
    const a = parseVerb(name, verb, rest, abort.signal, config);
    if (!a) return 0;
    if (a.str('repo') !== undefined) (await import('./common.js')).checkRepoPath(a.str('repo')!);
    const job = VERBS[name].job ? await import('./job.js') : undefined;
    const jobName = job?.jobName(name, a.positionals, a.bool('dry-run'));
    if (job && jobName) return await job.runAsJob(jobName, a.str('repo'), () => verb.run(a), (e) => failed(e, abort, debug, name));
    return await verb.run(a);
  } catch (e) {
    return failed(e, abort, debug, name);
  }
}

/** The exit code of a run that threw: 130/143 when it was told to stop, else the error's. */
function failed(e: unknown, abort: AbortController, debug: boolean, name: string): number {
  if (abort.signal.aborted) {
    const sig = abort.signal.reason as keyof typeof SIGNAL_EXIT;
    process.stderr.write(`iebs: interrupted (${sig})${name === 'backup' ? ': nothing was committed' : name === 'restore' ? ': the files restored so far are in place, no temporary file is left' : ''}\n`);
    return SIGNAL_EXIT[sig] ?? 130;
  }
  return report(e, debug, name);
}

/**
 * A closed stdout (`iebs ls | head -1`) ends the run quietly with exit 0, unless a verb is
 * running on its thread: that one finishes (a backup is not cut short by its reader).
 */
function quietOnClosedPipe(stopNow: boolean): void {
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    if (stopNow) process.exit(0);
    // What is written from now on is dropped, its callback called (cli/job.ts waits for one).
    process.stdout.write = ((_chunk: unknown, a?: unknown, b?: unknown) => {
      const cb = typeof a === 'function' ? a : typeof b === 'function' ? b : undefined;
      if (cb) queueMicrotask(() => (cb as () => void)());
      return true;
    }) as typeof process.stdout.write;
  });
}

/**
 * Aborts `abort` on the first SIGINT or SIGTERM; a second one ends the process at once.
 * A published job (cli/job.ts) is recorded as interrupted before the process ends at once.
 */
function onSignals(stop: (sig: 'SIGINT' | 'SIGTERM') => void): void {
  let first: 'SIGINT' | 'SIGTERM' | null = null;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (first) { process.stderr.write(`iebs: interrupted again (${sig}): stopping now\n`); exitNow(sig); }
      first = sig;
      stop(sig);
    });
  }
}

/** Ends the process on `sig` now, recording its job (if any) as interrupted. */
function exitNow(sig: 'SIGINT' | 'SIGTERM'): never {
  jobModule?.interruptJob(sig, SIGNAL_EXIT[sig]);
  process.exit(SIGNAL_EXIT[sig]);
}

const verbName = process.argv[2];
const entry = verbName !== undefined && Object.hasOwn(VERBS, verbName) ? VERBS[verbName] : undefined;
// A job's id is set on the main thread, before the verb's own thread starts (it inherits it).
const jobModule = isMainThread && entry?.job && !process.argv.includes('--help') && !process.argv.includes('-h') ? await import('./job.js') : undefined;
jobModule?.prepareJob();
if (isMainThread && entry?.thread && process.env.IEBS_NO_THREAD !== '1') {
  quietOnClosedPipe(false);
  beforeEngineThread(verbName, process.argv.slice(3));
  // The thread's stdio passes through this one; it is told whether stderr and stdin are terminals.
  const w = new Worker(new URL(import.meta.url), { argv: process.argv.slice(2), workerData: { tty: !!process.stderr.isTTY, stdinTty: !!process.stdin.isTTY, columns: process.stderr.columns }, resourceLimits: engineHeap(verbName) });
  onSignals((sig) => {
    if (!entry.abort) exitNow(sig);
    w.postMessage({ t: 'abort', signal: sig } satisfies ThreadMessage);
  });
  w.on('message', (m: ThreadMessage) => {
    if (m.t === 'write-out') jobModule?.answerWriteOut((r) => w.postMessage(r));
    if (m.t !== 'prompt') return;
    void import('./prompt.js').then(({ readHidden }) => readHidden(m.prompt)).then((value) => w.postMessage({ t: 'answer', value } satisfies ThreadMessage));
  });
  w.on('error', (e) => {
    process.stderr.write(`iebs: ${(e as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY' ? 'out of memory' : e.message}\n`);
    process.exitCode = 1;
  });
  w.on('exit', (code) => { process.exitCode ||= code; });
} else {
  const abort = new AbortController();
  if (isMainThread) {
    quietOnClosedPipe(!entry?.thread);
    if (entry?.abort) onSignals((sig) => abort.abort(sig));
    // A job whose verb cannot stop cleanly is still recorded as interrupted.
    else if (jobModule) onSignals((sig) => exitNow(sig));
  } else {
    // The floor the main thread set was for this thread's heap only (cli/heap.ts). Set
    // back synchronously: no dynamic import runs here before the verb's own.
    onEngineThread();
    parentPort!.on('message', (m: ThreadMessage) => { if (m.t === 'abort') abort.abort(m.signal); });
    parentPort!.unref();
  }
  run(process.argv.slice(2), abort).then((code) => { process.exitCode = code; });
}
