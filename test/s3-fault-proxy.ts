/**
 * A loopback HTTP proxy in front of the tests' S3 server that breaks chosen requests the
 * way networks and stores do: an S3 error answer (500 InternalError, 503 SlowDown, 403,
 * 400 EntityTooLarge), a connection cut while the request body is sent or while the
 * answer comes back, or no answer at all. Everything else passes through unchanged
 * (headers included, so signatures still match). It also counts what passes.
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** What to do to a request. */
export type FaultAction =
  | { kind: 'error'; status: number; code: string }
  | { kind: 'cut-request'; afterBytes: number }
  | { kind: 'cut-response'; afterBytes: number }
  | { kind: 'hang' };

/** A fault for the next `times` requests that match. */
export interface Fault {
  method?: string;
  /** Tested against the path and query, e.g. /partNumber=2/. */
  url?: RegExp;
  times: number;
  action: FaultAction;
}

/** A running proxy. */
export interface FaultProxy {
  endpoint: string;
  /** Queues a fault. */
  fail(f: Fault): void;
  /** How many queued faults have not struck yet. */
  pending(): number;
  /** Drops the faults not yet used. */
  clear(): void;
  /** Requests seen, by method, since the last reset. */
  seen(reset?: boolean): Record<string, number>;
  close(): Promise<void>;
}

/** Starts a proxy on 127.0.0.1 that forwards to `target` (http://host:port). */
export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const up = new URL(target);
  const faults: Fault[] = [];
  const seen: Record<string, number> = {};
  const sockets = new Set<Socket>();

  const take = (req: IncomingMessage): FaultAction | null => {
    const f = faults.find((x) => x.times > 0 && (!x.method || x.method === req.method) && (!x.url || x.url.test(req.url ?? '')));
    if (!f) return null;
    f.times--;
    return f.action;
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    seen[req.method ?? '?'] = (seen[req.method ?? '?'] ?? 0) + 1;
    const action = take(req);
    if (action?.kind === 'hang') { req.resume(); return; }
    if (action?.kind === 'error') {
      req.resume();
      req.on('end', () => {
        res.writeHead(action.status, { 'content-type': 'application/xml' });
        res.end(req.method === 'HEAD' ? undefined : `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${action.code}</Code><Message>injected by the test proxy</Message></Error>`);
      });
      return;
    }
    const out = request({ host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      let sent = 0;
      answer.on('data', (chunk: Buffer) => {
        if (action?.kind === 'cut-response' && sent + chunk.length > action.afterBytes) {
          res.write(chunk.subarray(0, Math.max(0, action.afterBytes - sent)));
          res.socket?.destroy();
          answer.destroy();
          return;
        }
        sent += chunk.length;
        res.write(chunk);
      });
      answer.on('end', () => res.end());
    });
    out.on('error', () => res.socket?.destroy());
    let got = 0;
    req.on('data', (chunk: Buffer) => {
      if (action?.kind === 'cut-request' && got + chunk.length > action.afterBytes) {
        req.socket.destroy();
        out.destroy();
        return;
      }
      got += chunk.length;
      out.write(chunk);
    });
    req.on('end', () => out.end());
  });
  server.on('connection', (s: Socket) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    fail: (f) => { faults.push({ ...f }); },
    clear: () => { faults.length = 0; },
    pending: () => faults.reduce((n, f) => n + f.times, 0),
    seen: (reset = false) => { const copy = { ...seen }; if (reset) for (const k of Object.keys(seen)) delete seen[k]; return copy; },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
