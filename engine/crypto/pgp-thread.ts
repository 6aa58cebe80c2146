/**
 * Decrypting a long OpenPGP message on a thread of its own (engine/pgp-worker.ts), with
 * the contract of `pgpOpenStream`: plaintext chunks reach `onData` in order as they come,
 * and the promise settles only once the integrity check and the signature hold. The
 * main thread meanwhile parses what it was handed, and openpgp.js's garbage stays in a
 * heap of bounded size (a manifest of a million files otherwise raised the peak RSS of a
 * restore by about 100 MiB).
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type * as openpgp from 'openpgp';
import { AuthError, FormatError, IebsError, KeyError, type ErrorCode } from '../../formats/errors.js';
import type { FromPgp, PgpInit, ToPgp } from './pgp-protocol.js';

/** Plaintext the thread may post before the main thread has taken it. */
const CREDIT = 4 * 1024 * 1024;
/** Taken plaintext is acknowledged in amounts of this size. */
const ACK = 1024 * 1024;
/** The thread's heap: enough for openpgp.js and its stream chain, small enough to keep it collected. */
const LIMITS = { maxOldGenerationSizeMb: 96, maxYoungGenerationSizeMb: 16 };

const KINDS: Record<string, new (code: ErrorCode, message: string) => IebsError> = { AuthError, FormatError, KeyError };

/** A buffer of its own, so that moving it to another thread moves nothing else. */
function own(b: Uint8Array): Uint8Array {
  return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer ? b : new Uint8Array(b);
}

/** A thread started ahead (`warmPgpThread`), idle until a message is opened on it. */
let spare: Worker | null = null;
/** Threads started so far. */
let started = 0;

/** How many decryption threads this process has started (for tests). */
export function pgpThreadsStarted(): number {
  return started;
}

function startThread(): Worker {
  started++;
  return new Worker(new URL('./pgp-worker.js', import.meta.url), { resourceLimits: LIMITS });
}

/**
 * Starts a decryption thread ahead of the first large manifest, so that loading
 * openpgp.js there (about 0.1 to 0.25 s) overlaps what comes before instead of holding
 * up the manifest: the commands that read manifests call it as they start (cli/main.ts).
 * Only where there is a second core. The thread holds nothing until it is used, and
 * does not keep the process alive.
 */
export function warmPgpThread(): void {
  if (spare || availableParallelism() < 2) return;
  const w = startThread();
  w.unref();
  const gone = () => { if (spare === w) spare = null; };
  w.once('error', gone);
  w.once('exit', gone);
  spare = w;
}

/** `pgpOpenStream` run on a thread of its own (the one warmed ahead, if there is one). */
export async function pgpOpenStreamThreaded(source: AsyncIterable<Uint8Array>, decryptionKeys: openpgp.PrivateKey[], verifiers: openpgp.PublicKey[], where: string, onData: (chunk: Uint8Array) => void): Promise<void> {
  const init: PgpInit = { keys: decryptionKeys.map((k) => k.armor()), verifiers: verifiers.map((k) => k.armor()), where, credit: CREDIT };
  const worker = spare ?? startThread();
  spare = null;
  worker.ref();
  worker.postMessage({ t: 'open', init } satisfies ToPgp);
  const it = source[Symbol.asyncIterator]();
  await new Promise<void>((resolve, reject) => {
    let settled = false;
    let owed = 0;
    const finish = (e?: unknown) => {
      if (settled) return;
      settled = true;
      void worker.terminate();
      void it.return?.();
      if (e) reject(e); else resolve();
    };
    const more = async () => {
      try {
        const { value, done } = await it.next();
        if (settled) return;
        if (done) worker.postMessage({ t: 'end' } satisfies ToPgp);
        else {
          const chunk = own(value);
          worker.postMessage({ t: 'data', chunk } satisfies ToPgp, [chunk.buffer as ArrayBuffer]);
        }
      } catch (e) { finish(e); }
    };
    worker.on('message', (m: FromPgp) => {
      if (settled) return;
      switch (m.t) {
        case 'more': void more(); break;
        case 'plain':
          try { onData(m.chunk); } catch (e) { finish(e); return; }
          owed += m.chunk.length;
          if (owed >= ACK) { worker.postMessage({ t: 'ack', bytes: owed } satisfies ToPgp); owed = 0; }
          break;
        case 'done': finish(); break;
        case 'error': {
          const Kind = KINDS[m.kind] ?? IebsError;
          finish(new Kind(m.code, m.message));
          break;
        }
      }
    });
    worker.on('error', (e) => finish(new IebsError('pgp-thread', `${where}: the decryption thread failed (${e.message})`)));
    worker.on('exit', (code) => finish(new IebsError('pgp-thread', `${where}: the decryption thread stopped (exit code ${code})`)));
  });
}
