/**
 * The one place progress figures are computed: from the counts a run reports (engine
 * onProgress callbacks), the rate and ETA that the terminal line, the published job file
 * (engine/jobs/jobs.ts), `iebs status --follow` and the web page all show.
 */

/** Progress of a run as everyone shows it. Times are in seconds. */
export interface ProgressState {
  /** What the run is doing: scan, backup, restore, verify, ... */
  phase: string;
  files: number;
  bytes: number;
  totalFiles?: number;
  totalBytes?: number;
  /** Bytes per second since this phase began. */
  rate: number;
  /** Seconds left at that rate, when the total is known. */
  eta?: number;
  /** Seconds since the run began. */
  elapsed: number;
  /** The entry being worked on, relative to its source. */
  path?: string;
}

/** Turns a run's counts into a ProgressState, with rate and ETA. */
export class ProgressMeter {
  private readonly start: number;
  private phaseStart: number;
  private phase = '';
  private last: ProgressState;

  constructor(private readonly now: () => number = Date.now) {
    this.start = this.phaseStart = now();
    this.last = { phase: '', files: 0, bytes: 0, rate: 0, elapsed: 0 };
  }

  /** The state after new counts; a new phase starts its rate afresh. */
  update(phase: string, files: number, bytes: number, totalFiles?: number, totalBytes?: number, path?: string): ProgressState {
    const t = this.now();
    if (phase !== this.phase) { this.phase = phase; this.phaseStart = t; }
    const secs = Math.max((t - this.phaseStart) / 1000, 0.001);
    const rate = bytes / secs;
    const s: ProgressState = { phase, files, bytes, rate, elapsed: (t - this.start) / 1000 };
    if (totalFiles !== undefined) s.totalFiles = totalFiles;
    if (totalBytes !== undefined) {
      s.totalBytes = totalBytes;
      if (rate > 0) s.eta = Math.max(0, (totalBytes - bytes) / rate);
    }
    if (path !== undefined) s.path = path;
    this.last = s;
    return s;
  }

  /** The latest state, with the elapsed time brought up to now. */
  current(): ProgressState {
    return { ...this.last, elapsed: (this.now() - this.start) / 1000 };
  }
}

/** Formats bytes with binary units. */
export function human(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i === 0 ? Math.round(n) : n.toFixed(1)} ${u[i]}`;
}

/** Formats seconds as h:mm:ss or m:ss. */
export function clock(s: number | undefined): string {
  if (s === undefined || !Number.isFinite(s) || s < 0) return '?';
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return `${h ? h + ':' : ''}${String(m).padStart(h ? 2 : 1, '0')}:${String(sec).padStart(2, '0')}`;
}

/** The one-line text of a progress state (the terminal line and `iebs status`). */
export function progressText(s: ProgressState): string {
  let line = `${s.phase}: ${s.files}${s.totalFiles !== undefined ? '/' + s.totalFiles : ''} files, ${human(s.bytes)}${s.totalBytes !== undefined ? '/' + human(s.totalBytes) : ''}, ${human(s.rate)}/s`;
  if (s.eta !== undefined) line += `, ETA ${clock(s.eta)}`;
  return line;
}
