/** `iebs unlock`: removes a lock left by a process that is gone. */
import { breakLock } from '../engine/repo/lock.js';
import { openStorage } from '../engine/storage/open.js';
import { parseArgs } from './args.js';
import { need, LIMIT_FLAGS, LIMIT_HELP, rates } from './common.js';

export const help = `iebs unlock --repo REPO
  Removes the repository lock. Use it only when the process that held it is gone (a
  lock left by a dead process on the same host is removed automatically; a lock whose
  holder still runs on this host is never removed).
${LIMIT_HELP}`;

export async function main(argv: string[]): Promise<number> {
  const { flags } = parseArgs('unlock', argv, { ...LIMIT_FLAGS, repo: 'string' });
  const storage = openStorage(need(flags.repo as string | undefined, 'unlock', '--repo REPO'), rates(flags));
  const r = await breakLock(storage);
  const who = r.holder ? ` (held by pid ${r.holder.pid} on ${r.holder.host} since ${r.holder.time})` : '';
  process.stdout.write(r.removed ? `lock removed${who}\n` : 'no lock\n');
  return 0;
}
