/**
 * A `DecompressionStream` that decompresses only as fast as its output is read.
 *
 * openpgp.js decompresses a message's compressed packet through the global
 * `DecompressionStream`. Node 20's takes its input as fast as it is offered: decrypting
 * the manifest of a 400,000-file snapshot (64 MB), the decryption thread held 66 MiB of
 * ciphertext while the records trickled out, so a restore's peak memory grew with the
 * number of files. This one is node:zlib behind a readable side that pulls: zlib stops
 * taking input while its output (256 KiB) is unread, so a write waits, and the stream
 * feeding it waits too. The thread that decrypts manifests installs it
 * (engine/pgp-worker.ts); the deflate side needs nothing of the kind (engine/crypto.ts
 * compresses with node:zlib itself).
 */
import { createGunzip, createInflate, createInflateRaw, type Gunzip, type Inflate, type InflateRaw } from 'node:zlib';

/** Output zlib produces at a time, and holds while it is unread. */
const OUTPUT_PIECE = 256 * 1024;

export class PulledDecompressionStream {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;

  /** `format` as for DecompressionStream: deflate, deflate-raw or gzip. */
  constructor(format: string) {
    const z: Inflate | InflateRaw | Gunzip =
      format === 'deflate' ? createInflate({ chunkSize: OUTPUT_PIECE })
      : format === 'deflate-raw' ? createInflateRaw({ chunkSize: OUTPUT_PIECE })
      : format === 'gzip' ? createGunzip({ chunkSize: OUTPUT_PIECE })
      : (() => { throw new TypeError(`unsupported compression format: ${format}`); })();
    let failure: Error | null = null;
    let ended = false;
    let wake: (() => void) | null = null;
    const poke = () => { const w = wake; wake = null; w?.(); };
    // The write under way. zlib does not answer a write it failed on, so a failure answers
    // it here; and after a failure writes are taken and dropped, as Node's own stream
    // does, so that what feeds this stream runs to its end instead of being cancelled
    // (openpgp.js then waits for ever on the message it was decrypting). The failure
    // reaches the reader of the readable side, and the close.
    let pending: (() => void) | null = null;
    const stop = (e: Error) => {
      failure ??= e;
      poke();
      const p = pending;
      pending = null;
      p?.();
    };
    z.on('readable', poke);
    z.on('end', () => { ended = true; poke(); });
    z.on('error', stop);
    z.on('close', () => { if (!ended) stop(new Error('decompression stopped before its end')); });

    this.readable = new ReadableStream<Uint8Array>({
      async pull(controller) {
        for (;;) {
          if (failure) throw failure;
          const out = z.read() as Buffer | null;
          if (out) { controller.enqueue(new Uint8Array(out.buffer, out.byteOffset, out.byteLength)); return; }
          if (ended) { controller.close(); return; }
          await new Promise<void>((r) => (wake = r));
        }
      },
      cancel() { z.destroy(); },
    }, { highWaterMark: 0 });

    this.writable = new WritableStream<Uint8Array>({
      write(chunk) {
        return new Promise<void>((resolve) => {
          if (failure) { resolve(); return; }
          pending = resolve;
          z.write(chunk, () => { pending = null; resolve(); });
        });
      },
      close() {
        return new Promise<void>((resolve, reject) => {
          if (failure) { reject(failure); return; }
          pending = () => reject(failure);
          z.end((e?: Error | null) => { pending = null; if (e || failure) reject(e ?? failure); else resolve(); });
        });
      },
      abort(reason) { z.destroy(reason instanceof Error ? reason : new Error(String(reason))); },
    });
  }
}

/** Makes `DecompressionStream` (as openpgp.js finds it) the pulled one, on this thread. */
export function installPulledDecompression(): void {
  Object.defineProperty(globalThis, 'DecompressionStream', { value: PulledDecompressionStream, configurable: true, writable: true, enumerable: false });
}
