/**
 * The thread that decrypts one OpenPGP message stream for engine/pgp-thread.ts. It may be
 * started before the message is known (loading openpgp.js takes it about 0.1 to 0.25 s),
 * and waits for `open`, which gives the keys. Then it asks
 * the main thread for ciphertext a piece at a time, decrypts and verifies with
 * openpgp.js, and posts the plaintext back, holding back while too much of it is not yet
 * taken. Its heap is capped by the caller, so the garbage openpgp.js's stream chain
 * leaves is collected within that cap instead of piling up for the length of the message,
 * and the compressed packet inside is inflated only as fast as its output is taken
 * (engine/inflate.ts).
 */
import { parentPort } from 'node:worker_threads';
import * as openpgp from 'openpgp';
import { IebsError } from '../../formats/errors.js';
import { pgpOpenStream } from './crypto.js';
import { installPulledDecompression } from './inflate.js';
import type { FromPgp, PgpInit, ToPgp } from './pgp-protocol.js';

installPulledDecompression();
const port = parentPort!;

/** Bytes of plaintext posted to the main thread at a time. */
const PLAIN_BATCH = 256 * 1024;

let opened = false;
let nextPiece: ((m: ToPgp) => void) | null = null;
let unacked = 0;
let acked: (() => void) | null = null;

port.on('message', (m: ToPgp) => {
  if (m.t === 'open') {
    // One message a thread.
    if (!opened) { opened = true; void main(m.init); }
    return;
  }
  if (m.t === 'ack') {
    unacked -= m.bytes;
    const a = acked;
    acked = null;
    a?.();
    return;
  }
  const n = nextPiece;
  nextPiece = null;
  n?.(m);
});

function post(m: FromPgp, transfer: ArrayBuffer[] = []): void {
  port.postMessage(m, transfer);
}

async function* ciphertext(): AsyncGenerator<Uint8Array> {
  for (;;) {
    const m = await new Promise<ToPgp>((r) => { nextPiece = r; post({ t: 'more' }); });
    if (m.t !== 'data') return;
    yield m.chunk;
  }
}

async function main(init: PgpInit): Promise<void> {
  try {
    const keys = await Promise.all(init.keys.map((armoredKey) => openpgp.readPrivateKey({ armoredKey })));
    const verifiers = await Promise.all(init.verifiers.map((armoredKey) => openpgp.readKey({ armoredKey })));
    // Plaintext is copied into batches of PLAIN_BATCH bytes (the stream's chunks are a few
    // KiB, and a message each cost both threads more than the data), and each batch is
    // moved to the main thread whole.
    let batch = new Uint8Array(PLAIN_BATCH);
    let used = 0;
    const send = async () => {
      if (used === 0) return;
      const own = used === batch.length ? batch : batch.slice(0, used);
      batch = new Uint8Array(PLAIN_BATCH);
      used = 0;
      unacked += own.length;
      post({ t: 'plain', chunk: own }, [own.buffer as ArrayBuffer]);
      while (unacked > init.credit) await new Promise<void>((r) => (acked = r));
    };
    await pgpOpenStream(ciphertext(), keys, verifiers, init.where, async (chunk) => {
      for (let off = 0; off < chunk.length;) {
        const n = Math.min(chunk.length - off, batch.length - used);
        batch.set(chunk.subarray(off, off + n), used);
        used += n; off += n;
        if (used === batch.length) await send();
      }
    });
    await send();
    post({ t: 'done' });
  } catch (e) {
    if (e instanceof IebsError) post({ t: 'error', kind: e.name, code: e.code, message: e.message });
    else post({ t: 'error', kind: 'Error', code: 'pgp-thread', message: e instanceof Error ? e.message : String(e) });
  }
}
