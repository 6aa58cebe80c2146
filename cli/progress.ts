/**
 * Progress lines on a terminal: files, bytes, rate and ETA, redrawn at most five times
 * a second on stderr. Silent when stderr is not a TTY (cron, pipes) or with --json.
 */

import { isMainThread, workerData } from 'node:worker_threads';

/**
 * Whether stderr is a terminal. A verb run on its own thread (cli/main.ts) writes
 * through a pipe to the main thread, which tells it what its stderr is.
 */
export function stderrIsTerminal(): boolean {
  return isMainThread ? !!process.stderr.isTTY : !!(workerData as { tty?: boolean } | null)?.tty;
}

/** Formats bytes with binary units. */
export function human(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i === 0 ? Math.round(n) : n.toFixed(1)} ${u[i]}`;
}

function clock(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return `${h ? h + ':' : ''}${String(m).padStart(h ? 2 : 1, '0')}:${String(sec).padStart(2, '0')}`;
}

/** A progress reporter for one phase-labelled run. */
export class ProgressLine {
  private last = 0;
  private readonly start = Date.now();
  private shown = false;
  constructor(private readonly enabled: boolean) {}

  update(label: string, files: number, bytes: number, totalFiles?: number, totalBytes?: number): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.last < 200) return;
    this.last = now;
    const secs = (now - this.start) / 1000;
    const rate = bytes / Math.max(secs, 0.001);
    let line = `${label}: ${files}${totalFiles !== undefined ? '/' + totalFiles : ''} files, ${human(bytes)}${totalBytes !== undefined ? '/' + human(totalBytes) : ''}, ${human(rate)}/s`;
    if (totalBytes !== undefined && rate > 0) line += `, ETA ${clock((totalBytes - bytes) / rate)}`;
    process.stderr.write(`\r\x1b[K${line}`);
    this.shown = true;
  }

  done(): void {
    if (this.shown) process.stderr.write('\r\x1b[K');
    this.shown = false;
  }
}
