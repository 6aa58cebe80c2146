/**
 * Progress lines on a terminal: files, bytes, rate and ETA, redrawn at most five times
 * a second on stderr. Silent when stderr is not a TTY (cron, pipes) or with --json. The
 * same figures (engine/jobs/progress.ts) go to the run's published job in every case.
 */

import { isMainThread, workerData } from 'node:worker_threads';
import { ProgressMeter, progressText, type ProgressState } from '../engine/jobs/progress.js';
import { currentJob } from './job.js';

/**
 * Whether stderr is a terminal. A verb run on its own thread (cli/main.ts) writes
 * through a pipe to the main thread, which tells it what its stderr is.
 */
export function stderrIsTerminal(): boolean {
  return isMainThread ? !!process.stderr.isTTY : !!(workerData as { tty?: boolean } | null)?.tty;
}

export { human } from '../engine/jobs/progress.js';

/**
 * A progress reporter for one run: the terminal line, and the published job (cli/job.ts).
 * Counts that arrive within 200 ms of the last shown ones are shown when that time is up,
 * so a run that stalls (an upload under a rate limit) still shows its latest counts.
 */
export class ProgressLine {
  private last = 0;
  private readonly meter = new ProgressMeter();
  private shown = false;
  private pending: Parameters<ProgressMeter['update']> | null = null;
  private timer: NodeJS.Timeout | null = null;
  constructor(private readonly enabled: boolean) {}

  update(label: string, files: number, bytes: number, totalFiles?: number, totalBytes?: number, path?: string): void {
    if (!this.enabled && !currentJob()) return;
    const wait = 200 - (Date.now() - this.last);
    if (wait > 0) {
      this.pending = [label, files, bytes, totalFiles, totalBytes, path];
      this.timer ??= setTimeout(() => { this.timer = null; this.showPending(); }, wait).unref();
      return;
    }
    this.show(this.meter.update(label, files, bytes, totalFiles, totalBytes, path));
  }

  private showPending(): void {
    if (this.pending) this.show(this.meter.update(...this.pending));
  }

  private show(s: ProgressState): void {
    this.last = Date.now();
    this.pending = null;
    currentJob()?.progress(s);
    if (!this.enabled) return;
    process.stderr.write(`\r\x1b[K${progressText(s)}`);
    this.shown = true;
  }

  /** Ends the line; the job gets the last counts. */
  done(): void {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    const job = currentJob();
    if (job && this.pending) job.progress(this.meter.update(...this.pending));
    this.pending = null;
    job?.flush();
    if (this.shown) process.stderr.write('\r\x1b[K');
    this.shown = false;
  }
}
