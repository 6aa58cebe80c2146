/**
 * The two standard tools a disc set is made with (SPEC.md "Disc sets"): par2
 * (par2cmdline) for the parity, xorriso for the ISO 9660 image. They are run as child
 * processes with arguments, never through a shell; their output is kept only in part
 * (the last 64 KiB) for messages.
 */
import { spawn } from 'node:child_process';
import { IebsError, IoError } from '../../formats/errors.js';

/** What a tool run gave. */
export interface ToolRun { code: number; out: string }

const KEEP = 64 * 1024;

/** Runs `cmd args` in `cwd`; a missing program is one line saying which package has it. */
export function runTool(cmd: 'par2' | 'xorriso', args: string[], cwd: string): Promise<ToolRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const take = (d: Buffer) => { out = (out + d.toString('utf8')).slice(-KEEP); };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', (e: NodeJS.ErrnoException) => {
      reject(e.code === 'ENOENT'
        ? new IebsError('missing-argument', `${cmd} is not installed (Debian: apt-get install ${cmd}); iebs disc needs it`, { cause: e })
        : new IoError('io', `${cmd}: ${e.message}`, { cause: e }));
    });
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), out }));
  });
}

/** Parameters of a disc's PAR2 set. */
export interface ParParams { blockSize: number; recovery: number; files: number }

/** Creates the PAR2 set `base.par2` in `dir` over `files` (paths relative to `dir`). */
export async function par2Create(dir: string, base: string, files: string[], p: ParParams): Promise<void> {
  const r = await runTool('par2', ['create', '-q', '-q', `-s${p.blockSize}`, `-c${p.recovery}`, `-n${p.files}`, '-u', `-B${dir}`, `${base}.par2`, '--', ...files], dir);
  if (r.code !== 0) throw new IoError('io', `par2 create failed (exit ${r.code}): ${lastLines(r.out)}`);
}

/** What par2 verify or repair found. */
export interface ParCheck {
  /** ok: all files correct; repairable; unrepairable; repaired. */
  state: 'ok' | 'repairable' | 'unrepairable' | 'repaired';
  /** Files par2 named damaged or missing, with its words. */
  damaged: { file: string; what: string }[];
  /** Recovery blocks there are, and how many more a repair would need (unrepairable). */
  available: number | null;
  needed: number | null;
  out: string;
}

/** Runs par2 verify (or repair) on the set `base.par2` in `dir`. */
export async function par2Check(dir: string, base: string, repair: boolean): Promise<ParCheck> {
  const r = await runTool('par2', [repair ? 'repair' : 'verify', `-B${dir}`, `${base}.par2`], dir);
  const damaged: ParCheck['damaged'] = [];
  for (const m of r.out.matchAll(/^Target: "(.+)" - (damaged|missing)\.(.*)$/gm)) damaged.push({ file: m[1], what: `${m[2]}${m[3]}` });
  const available = /You have (\d+) recovery blocks? available/.exec(r.out);
  const more = /You need (\d+) more recovery blocks?/.exec(r.out);
  // par2cmdline's exit codes: 0 all correct (or repaired), 1 repair possible, 2 not possible.
  let state: ParCheck['state'];
  if (r.code === 0) state = repair && damaged.length ? 'repaired' : 'ok';
  else if (r.code === 1) state = 'repairable';
  else if (r.code === 2) state = 'unrepairable';
  else throw new IoError('io', `par2 ${repair ? 'repair' : 'verify'} failed (exit ${r.code}): ${lastLines(r.out)}`);
  return { state, damaged, available: available ? Number(available[1]) : null, needed: more ? Number(more[1]) : null, out: r.out };
}

/** Writes an ISO 9660 image of `dir` (symlinks followed) to `out`: level 3, Joliet, Rock Ridge. */
export async function xorrisoImage(dir: string, out: string, volumeId: string): Promise<void> {
  const r = await runTool('xorriso', ['-as', 'mkisofs', '-quiet', '-f', '-iso-level', '3', '-J', '-joliet-long', '-r', '-V', volumeId, '-o', out, dir], dir);
  if (r.code !== 0) throw new IoError('io', `xorriso failed (exit ${r.code}): ${lastLines(r.out)}`);
}

function lastLines(s: string): string {
  return s.trim().split('\n').slice(-3).join(' / ');
}
