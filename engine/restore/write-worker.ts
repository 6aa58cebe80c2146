/**
 * A writer thread of restore, started by engine/writers.ts. It takes batches of small
 * files whose content the main thread has read, and for each checks it against its
 * digest, writes it (under its final name in a directory the restore made, else as a
 * temporary file beside the final name that is renamed into place once it has its owner,
 * mode and time); and blocks of larger files, which it checks and writes at their
 * offsets; and, once every file is written, directories' owners, modes and times, deepest
 * first, in the order they come (the steps: write-steps.ts). It uses synchronous calls:
 * this thread has nothing else to do meanwhile, and the main thread goes on reading while
 * the file system works.
 */
import { parentPort } from 'node:worker_threads';
import { spend } from '../threads.js';
import { doItem, failureOf } from './write-steps.js';
import type { FromWriter, WriterItem } from './write-protocol.js';

const port = parentPort!;

port.on('message', (m: { id: number; items: WriterItem[] }) => {
  const results: FromWriter['results'] = m.items.map((item) => {
    try {
      doItem(item);
      return null;
    } catch (e) {
      return failureOf(e);
    }
  });
  // What moved here with the batch is read no more (once all of it is done: two items
  // may share a buffer): freed now, not when this thread collects.
  for (const item of m.items) {
    if (item.t === 'file') spend(item.file.data);
    else if (item.t === 'block') spend(item.block.data);
  }
  port.postMessage({ id: m.id, results } satisfies FromWriter);
});
