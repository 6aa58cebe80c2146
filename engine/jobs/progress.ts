/**
 * The one place progress figures are computed: from the counts a run reports (engine
 * onProgress callbacks), the rate and ETA that the terminal line (cli/progress.ts), the
 * published job file (engine/jobs/jobs.ts), `iebs status --follow` and the web page all
 * show; and the one text of a progress state.
 */

/** The counts a run reports. Files are entries other than directories (files, symlinks); verify counts objects as files. */
export interface ProgressCounts {
  /** What the run is doing: scanning, backup, restore, verify, ... */
  phase: string;
  files: number;
  dirs?: number;
  bytes: number;
  totalFiles?: number;
  totalDirs?: number;
  totalBytes?: number;
  /** verify --read-data: blocks decrypted and checked. */
  blocks?: number;
  /** The entry being worked on, relative to its source. */
  path?: string;
}

/** Progress of a run as everyone shows it. Times are in seconds. */
export interface ProgressState extends ProgressCounts {
  /** Bytes per second since this phase began. */
  rate: number;
  /** Seconds left at that rate: only once it means something (etaSeconds). */
  eta?: number;
  /** Seconds since the run began. */
  elapsed: number;
}

/** When an ETA is given: after this many seconds of the phase and this share of the bytes. */
const ETA_AFTER_S = 5;
const ETA_AFTER_SHARE = 0.01;

/** Seconds left for `total` bytes after `done` in `elapsedS` seconds; undefined while it would mean little. */
export function etaSeconds(elapsedS: number, done: number, total: number | undefined): number | undefined {
  if (total === undefined || total <= 0 || done <= 0 || elapsedS < ETA_AFTER_S || done / total < ETA_AFTER_SHARE) return undefined;
  return Math.max(0, (total - done) / (done / elapsedS));
}

/** Turns a run's counts into a ProgressState, with rate and ETA brought up to the time asked. */
export class ProgressMeter {
  private readonly start: number;
  private phaseStart: number;
  private counts: ProgressCounts = { phase: '', files: 0, bytes: 0 };

  constructor(private readonly now: () => number = Date.now) {
    this.start = this.phaseStart = now();
  }

  /** The phase of the latest counts. */
  get phase(): string {
    return this.counts.phase;
  }

  /** The state after new counts; a new phase starts its rate afresh. */
  update(c: ProgressCounts): ProgressState {
    this.note({ ...c });
    return this.current();
  }

  /** Takes new counts without working out the state (the caller must not change `c` after). */
  note(c: ProgressCounts): void {
    if (c.phase !== this.counts.phase) this.phaseStart = this.now();
    this.counts = c;
  }

  /** The state of the latest counts now: a run that stalls shows its rate falling and its time moving. */
  current(): ProgressState {
    const t = this.now();
    const phaseSecs = Math.max((t - this.phaseStart) / 1000, 0.001);
    const s: ProgressState = { ...this.counts, rate: this.counts.bytes / phaseSecs, elapsed: (t - this.start) / 1000 };
    const eta = etaSeconds(phaseSecs, this.counts.bytes, this.counts.totalBytes);
    if (eta !== undefined) s.eta = eta;
    return s;
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

/** `n` and the noun, singular or plural: "1 file", "2 files". */
export function count(n: number, one: string, many = `${one}s`): string {
  return `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;
}

/** `n` or `n/total`. */
function of(n: number, total: number | undefined): string {
  return `${n.toLocaleString('en-US')}${total !== undefined ? '/' + total.toLocaleString('en-US') : ''}`;
}

/** The text of a progress state (the terminal line, `iebs status`), without its width cut. */
export function progressText(s: ProgressState): string {
  const time = `[${clock(s.elapsed)}${s.eta !== undefined ? `, ETA ${clock(s.eta)}` : ''}]`;
  const rate = `${human(s.rate)}/s`;
  const bytes = `${human(s.bytes)}${s.totalBytes !== undefined ? '/' + human(s.totalBytes) : ''}`;
  switch (s.phase) {
    case 'scanning':
      return `scanning the sources for what to read: ${count(s.files, 'file')}, ${count(s.dirs ?? 0, 'directory', 'directories')}, ${human(s.bytes)} to read ${time}`;
    case 'backup':
      return `backup: ${of(s.files, s.totalFiles)} files, ${of(s.dirs ?? 0, s.totalDirs)} dirs, ${bytes} read, ${rate} ${time}`;
    case 'verify':
      return `verify: ${count(s.files, 'object')}, ${human(s.bytes)} hashed${s.blocks ? `; reading data: ${count(s.blocks, 'block')} decrypted and checked` : ''} ${time}`;
    default:
      return `${s.phase}: ${of(s.files, s.totalFiles)} files, ${bytes}, ${rate} ${time}`;
  }
}
