/** `iebs unlock`: removes a lock left by a process that is gone. */
import { breakLock } from '../engine/repo/lock.js';
import { openStorage } from '../engine/storage/open.js';
import { rates, REPO, REPO_COMMON } from './common.js';
import type { Verb } from './verb.js';

export const verb: Verb = {
  summary: 'removes a lock left by a process that is gone',
  about: 'Removes the repository lock. Use it only when the process that held it is gone (a lock left by a dead process on the same host is removed automatically; a lock whose holder still runs on this host is never removed).',
  flags: [REPO, ...REPO_COMMON],
  async run(a) {
    const storage = openStorage(a.need('repo'), rates(a));
    const r = await breakLock(storage);
    const who = r.holder ? ` (held by pid ${r.holder.pid} on ${r.holder.host} since ${r.holder.time})` : '';
    if (!a.quiet) process.stdout.write(r.removed ? `lock removed${who}\n` : 'no lock\n');
    return 0;
  },
};
