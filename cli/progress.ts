/**
 * Progress lines on a terminal, redrawn in place on stderr at most five times a second
 * and at least once a second (the elapsed time moves while a long step runs). A line is
 * cut to the terminal's width, so a redraw never spills onto a new line. Files and
 * directories are counted apart; an ETA shows only once it means something (after 5 s
 * and 1% of the bytes). Silent when stderr is not a TTY (cron, pipes), with --json and
 * with --quiet.
 */

import { isMainThread, workerData } from 'node:worker_threads';
import type { Progress } from '../engine/backup/options.js';

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

/** Formats bytes with binary units. */
export function human(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i === 0 ? Math.round(n) : n.toFixed(1)} ${u[i]}`;
}

/** `n` and the noun, singular or plural: "1 file", "2 files". */
export function count(n: number, one: string, many = `${one}s`): string {
  return `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;
}

/** Seconds as m:ss or h:mm:ss. */
export function clock(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return `${h ? h + ':' : ''}${String(m).padStart(h ? 2 : 1, '0')}:${String(sec).padStart(2, '0')}`;
}

/** Cuts `line` to `width` columns (one column is kept free: a full line wraps on some terminals). */
export function fit(line: string, width: number): string {
  const room = Math.max(1, width - 1);
  return line.length <= room ? line : `${line.slice(0, Math.max(0, room - 1))}…`;
}

/** When an ETA is shown: after this many seconds and this share of the bytes. */
const ETA_AFTER_S = 5;
const ETA_AFTER_SHARE = 0.01;

/** The ETA part of a line, or '' while it would mean little. */
export function eta(elapsedS: number, done: number, total: number | undefined): string {
  if (total === undefined || total <= 0 || done <= 0 || elapsedS < ETA_AFTER_S || done / total < ETA_AFTER_SHARE) return '';
  return `, ETA ${clock((total - done) / (done / elapsedS))}`;
}

/** A progress reporter for one run. */
export class ProgressLine {
  private last = 0;
  private readonly start = Date.now();
  private shown = false;
  private text: (() => string) | null = null;
  private timer: NodeJS.Timeout | null = null;
  constructor(private readonly enabled: boolean, private readonly width = terminalColumns()) {}

  private elapsed(): number { return (Date.now() - this.start) / 1000; }

  /** Shows `text()` now if the last redraw is 200 ms old; a timer redraws it each second. */
  private show(text: () => string): void {
    if (!this.enabled) return;
    this.text = text;
    if (!this.timer) {
      this.timer = setInterval(() => this.draw(), 1000);
      this.timer.unref();
    }
    if (Date.now() - this.last >= 200) this.draw();
  }

  private draw(): void {
    if (!this.text) return;
    this.last = Date.now();
    process.stderr.write(`\r\x1b[K${fit(this.text(), this.width)}`);
    this.shown = true;
  }

  /** Backup: the scan, then the backup itself. */
  backup(p: Progress): void {
    const q = { ...p };
    this.show(() => {
      const secs = this.elapsed();
      if (q.phase === 'scan') return `scanning the sources for what to read: ${count(q.files, 'file')}, ${count(q.dirs ?? 0, 'directory', 'directories')}, ${human(q.bytes)} to read [${clock(secs)}]`;
      const files = `${q.files.toLocaleString('en-US')}${q.totalFiles !== undefined ? '/' + q.totalFiles.toLocaleString('en-US') : ''} files`;
      const dirs = `${(q.dirs ?? 0).toLocaleString('en-US')}${q.totalDirs !== undefined ? '/' + q.totalDirs.toLocaleString('en-US') : ''} dirs`;
      const bytes = `${human(q.bytes)}${q.totalBytes !== undefined ? '/' + human(q.totalBytes) : ''} read`;
      return `backup: ${files}, ${dirs}, ${bytes}, ${human(q.bytes / Math.max(secs, 0.001))}/s [${clock(secs)}${eta(secs, q.bytes, q.totalBytes)}]`;
    });
  }

  /** Restore: files and bytes written of the totals. */
  restore(p: { files: number; bytes: number; totalFiles: number; totalBytes: number }): void {
    const q = { ...p };
    this.show(() => {
      const secs = this.elapsed();
      return `restore: ${q.files.toLocaleString('en-US')}/${q.totalFiles.toLocaleString('en-US')} files, ${human(q.bytes)}/${human(q.totalBytes)}, ${human(q.bytes / Math.max(secs, 0.001))}/s [${clock(secs)}${eta(secs, q.bytes, q.totalBytes)}]`;
    });
  }

  /** Verify: objects checked, then (--read-data) blocks decrypted. */
  verify(p: { objects: number; bytes: number; blocks: number }): void {
    const q = { ...p };
    this.show(() => {
      const secs = this.elapsed();
      const objects = `verify: ${count(q.objects, 'object')}, ${human(q.bytes)} hashed`;
      return `${objects}${q.blocks ? `; reading data: ${count(q.blocks, 'block')} decrypted and checked` : ''} [${clock(secs)}]`;
    });
  }

  /** Clears the line. */
  done(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.shown) process.stderr.write('\r\x1b[K');
    this.shown = false;
  }
}
