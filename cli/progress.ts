/**
 * Progress lines on a terminal, redrawn in place on stderr at most five times a second
 * and at least once a second (the elapsed time moves while a long step runs). A line is
 * cut to the terminal's width, so a redraw never spills onto a new line. Files and
 * directories are counted apart; an ETA shows only once it means something (after 5 s
 * and 1% of the bytes). Silent when stderr is not a TTY (cron, pipes), with --json and
 * with --quiet. The figures (rate, ETA) and the text are engine/jobs/progress.ts's, the
 * same that go to the run's published job (cli/job.ts) in every case.
 */

import { isMainThread, workerData } from 'node:worker_threads';
import type { Progress } from '../engine/backup/options.js';
import { clock, etaSeconds, ProgressMeter, progressText, type ProgressCounts } from '../engine/jobs/progress.js';
import { currentJob } from './job.js';

export { clock, count, human } from '../engine/jobs/progress.js';

/**
 * Whether stderr is a terminal. A verb run on its own thread (cli/main.ts) writes
 * through a pipe to the main thread, which tells it what its stderr is.
 */
export function stderrIsTerminal(): boolean {
  return isMainThread ? !!process.stderr.isTTY : !!(workerData as { tty?: boolean } | null)?.tty;
}

/** The terminal's width in columns (80 when unknown). */
export function terminalColumns(): number {
  const c = isMainThread ? process.stderr.columns : (workerData as { columns?: number } | null)?.columns;
  return c && c > 0 ? c : 80;
}

/** Cuts `line` to `width` columns (one column is kept free: a full line wraps on some terminals). */
export function fit(line: string, width: number): string {
  const room = Math.max(1, width - 1);
  return line.length <= room ? line : `${line.slice(0, Math.max(0, room - 1))}…`;
}

/** The ETA part of a line, or '' while it would mean little (engine/jobs/progress.ts etaSeconds). */
export function eta(elapsedS: number, done: number, total: number | undefined): string {
  const s = etaSeconds(elapsedS, done, total);
  return s === undefined ? '' : `, ETA ${clock(s)}`;
}

function backupPhase(p: Progress): string {
  return p.phase === 'scan' ? 'scanning' : 'backup';
}

function backupCounts(p: Progress): ProgressCounts {
  return { phase: backupPhase(p), files: p.files, dirs: p.dirs, bytes: p.bytes, totalFiles: p.totalFiles, totalDirs: p.totalDirs, totalBytes: p.totalBytes, path: p.path };
}

/** A progress reporter for one run: the terminal line, and the published job. */
export class ProgressLine {
  private last = 0;
  private readonly meter = new ProgressMeter();
  private shown = false;
  private started = false;
  private timer: NodeJS.Timeout | null = null;
  /** A backup's live counts, newer than the meter's (see `backup`). */
  private live: Progress | null = null;
  constructor(private readonly enabled: boolean, private readonly width = terminalColumns()) {}

  /**
   * Takes new counts (a backup gives them for every entry): the state is worked out,
   * published and drawn only when the last time is 200 ms old; a timer redraws (and
   * publishes) each second.
   */
  private take(c: ProgressCounts): void {
    const job = currentJob();
    if (!this.enabled && !job) return;
    this.live = null;
    this.meter.note(c);
    this.started = true;
    if (!this.timer) {
      this.timer = setInterval(() => this.tick(), 1000);
      this.timer.unref();
    }
    const now = Date.now();
    if (now - this.last < 200) return;
    this.last = now;
    job?.progress(this.meter.current());
    if (this.enabled) this.draw();
  }

  private tick(): void {
    if (this.live) this.meter.note(backupCounts(this.live));
    this.live = null;
    currentJob()?.progress(this.meter.current());
    if (this.enabled) this.draw();
  }

  private draw(): void {
    this.last = Date.now();
    process.stderr.write(`\r\x1b[K${fit(progressText(this.meter.current()), this.width)}`);
    this.shown = true;
  }

  /** Backup: the scan, then the backup itself. */
  backup(p: Progress): void {
    // Called for every entry and block, with the run's own object, which it keeps
    // changing: between redraws only that object is kept, and read when a tick draws.
    if (this.started ? Date.now() - this.last < 200 && this.meter.phase === backupPhase(p) : !this.enabled && !currentJob()) { this.live = p; return; }
    this.take(backupCounts(p));
  }

  /** Restore: files and bytes written of the totals. */
  restore(p: { files: number; bytes: number; totalFiles: number; totalBytes: number }): void {
    this.take({ phase: 'restore', files: p.files, bytes: p.bytes, totalFiles: p.totalFiles, totalBytes: p.totalBytes });
  }

  /** Verify: objects checked, then (--read-data) blocks decrypted. */
  verify(p: { objects: number; bytes: number; blocks: number }): void {
    this.take({ phase: 'verify', files: p.objects, bytes: p.bytes, blocks: p.blocks });
  }

  /** Clears the line; the job gets the last counts. */
  done(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.live && this.started) this.meter.note(backupCounts(this.live));
    this.live = null;
    const job = currentJob();
    if (job && this.started) job.progress(this.meter.current());
    job?.flush();
    if (this.shown) process.stderr.write('\r\x1b[K');
    this.shown = false;
  }
}
