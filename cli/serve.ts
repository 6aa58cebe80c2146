/** `iebs serve`: the status service, its JSON API, web page and scheduler (service/). */
import { chmodSync, realpathSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { jobsDir } from '../engine/jobs/jobs.js';
import { UsageError } from '../formats/errors.js';
import { isLoopback, loadToken } from '../service/auth.js';
import { loadConfig } from '../service/config.js';
import { Service } from '../service/server.js';
import { configDir } from './common.js';
import type { Args, Verb } from './verb.js';

export const verb: Verb = {
  summary: 'the status service: JSON API, web page and scheduled jobs',
  about: `Runs the status service: a JSON API under /api/ (docs/openapi.json), the web page, and the scheduled jobs of serve.json in the config directory. Listens on 127.0.0.1:8750 by default. Every API request needs the token kept in serve.token in the config directory (made on the first start, mode 0600) as "Authorization: Bearer TOKEN"; the page logs in with the one-time link printed at start. Jobs it starts run as iebs processes of their own and go on if the service stops; iebs status sees them too. --login-link asks the service running at --listen for a new one-time login link. A listen address other than loopback is plain HTTP: reach the page over an SSH tunnel instead (README). SIGINT or SIGTERM stops the service (exit 0).`,
  flags: [
    { name: 'listen', value: 'HOST:PORT', help: 'the address to listen on (default 127.0.0.1:8750; [v6]:PORT)' },
    { name: 'socket', value: 'PATH', path: true, help: 'listen on a Unix socket (mode 0600) instead' },
    { name: 'login-link', config: false, help: 'ask the service running at --listen for a new one-time login link' },
  ],
  run,
};

/** Parses HOST:PORT (HOST may be [v6]). */
function listenAddress(text: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new UsageError('bad-flag', `--listen ${JSON.stringify(text)}: give HOST:PORT, e.g. 127.0.0.1:8750`);
  const host = m[1].replace(/^\[(.*)\]$/, '$1');
  if (host === '0.0.0.0' || host === '::') throw new UsageError('bad-flag', `--listen ${text}: name one address, not all of them (the Host check needs it); better, keep loopback and use an SSH tunnel`);
  return { host, port };
}

async function run(a: Args): Promise<number> {
  if (a.positionals.length) throw new UsageError('bad-flag', `unexpected argument ${JSON.stringify(a.positionals[0])}`);
  if (a.str('listen') !== undefined && a.str('socket') !== undefined) throw new UsageError('bad-flag', '--listen or --socket, not both');
  const dir = configDir();
  const token = loadToken(join(dir, 'serve.token'), dir);
  const addr = listenAddress(a.str('listen') ?? '127.0.0.1:8750');
  const hostText = addr.host.includes(':') ? `[${addr.host}]` : addr.host;
  if (a.bool('login-link')) {
    const res = await fetch(`http://${hostText}:${addr.port}/api/login-links`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: '{}' })
      .catch((cause) => { throw new UsageError('bad-flag', `no service answers at ${hostText}:${addr.port} (${(cause as Error).message})`, { cause }); });
    if (!res.ok) throw new UsageError('bad-flag', `the service at ${hostText}:${addr.port} refused (${res.status})`);
    process.stdout.write(`http://${hostText}:${addr.port}${((await res.json()) as { path: string }).path}\n`);
    return 0;
  }
  const config = loadConfig(join(dir, 'serve.json'));
  const socket = a.str('socket');
  // The jobs run the very program that runs this service (node dist/cli/main.js).
  const log = (line: string) => process.stderr.write(`iebs serve: ${line}\n`);
  const service = new Service({ config, token, jobs: jobsDir(), cli: realpathSync(process.argv[1]), stateFile: join(dir, 'serve-state.json'), listenHost: socket ? undefined : addr.host, log });
  const server = service.server();
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new UsageError('bad-flag', `cannot listen on ${socket ?? `${hostText}:${addr.port}`} (${e.code ?? e.message})`, { cause: e })));
    if (socket) { rmSync(socket, { force: true }); server.listen(socket, () => resolve()); } else server.listen(addr.port, addr.host, () => resolve());
  });
  if (socket) {
    chmodSync(socket, 0o600);
    log(`listening on ${socket} (mode 0600)`);
  } else {
    const port = (server.address() as { port: number }).port;
    const base = `http://${hostText}:${port}`;
    if (!isLoopback(addr.host)) log(`warning: ${addr.host} is not loopback: the API and the page go over plain HTTP there`);
    log(`listening on ${base}/ (${config.repositories.size} repositories, ${config.schedule.length} scheduled jobs)`);
    log(`open the page with this one-time link (valid 10 minutes): ${base}/login?once=${service.sessions.code()}`);
  }
  service.startScheduler();
  await new Promise<void>((resolve) => {
    const bye = () => { service.stopScheduler(); server.close(() => resolve()); server.closeAllConnections(); };
    // SIGINT and SIGTERM abort a.signal (cli/main.ts, abort: true).
    if (a.signal.aborted) bye(); else a.signal.addEventListener('abort', bye, { once: true });
  });
  log('stopped (jobs it started go on; iebs status shows them)');
  return 0;
}
