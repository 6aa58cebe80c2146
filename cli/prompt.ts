/**
 * A hidden prompt on the terminal, for a restore key's passphrase. Only when stdin is a
 * terminal; a verb on its own thread (cli/main.ts) asks the main thread, which owns the
 * terminal, and waits for the answer.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { KeyError } from '../formats/errors.js';

/** A message between a verb's thread and the main thread. */
export type ThreadMessage =
  | { t: 'abort'; signal: 'SIGINT' | 'SIGTERM' }
  | { t: 'prompt'; prompt: string }
  | { t: 'answer'; value: string | null }
  // cli/job.ts: a job's thread asks the main thread to write out what it holds of the
  // thread's stdout and stderr, and waits for 'written' before it records the job's end.
  | { t: 'write-out' }
  | { t: 'written' };

/** Whether a prompt is possible: the process's stdin is a terminal. */
export function canPrompt(): boolean {
  return isMainThread ? !!process.stdin.isTTY : !!(workerData as { stdinTty?: boolean } | null)?.stdinTty;
}

/** Asks for a line on the terminal without echoing it; null if the user typed Ctrl-D on an empty line. */
export async function askHidden(prompt: string): Promise<string> {
  let value: string | null;
  if (isMainThread) value = await readHidden(prompt);
  else {
    const port = parentPort!;
    port.ref();
    value = await new Promise<string | null>((resolve) => {
      const on = (m: ThreadMessage) => { if (m.t === 'answer') { port.off('message', on); resolve(m.value); } };
      port.on('message', on);
      port.postMessage({ t: 'prompt', prompt } satisfies ThreadMessage);
    });
    port.unref();
  }
  if (value === null) throw new KeyError('passphrase-needed', 'no passphrase given');
  return value;
}

/**
 * Reads a line from the terminal on stdin in raw mode, so nothing typed is echoed. The
 * prompt goes to stderr. Ctrl-C ends the process as SIGINT would (exit 130).
 */
export function readHidden(prompt: string): Promise<string | null> {
  const stdin = process.stdin;
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  stdin.resume();
  let typed = '';
  return new Promise((resolve) => {
    const done = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    const onData = (s: string) => {
      for (const ch of s) {
        if (ch === '\r' || ch === '\n') { done(); resolve(typed); return; }
        if (ch === '\u0003') { done(); process.exit(130); }
        if (ch === '\u0004') { if (typed === '') { done(); resolve(null); return; } continue; }
        if (ch === '\u007f' || ch === '\b') typed = typed.slice(0, -1);
        else if (ch >= ' ') typed += ch;
      }
    };
    stdin.on('data', onData);
  });
}
