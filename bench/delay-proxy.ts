/**
 * A loopback TCP proxy that holds every piece of data `ms` milliseconds in each direction
 * before passing it on, in order: a request and its answer each arrive that much later,
 * as over a network with a round trip of 2 × `ms` (bench/e2e.ts `--s3-delay-ms`). The
 * bandwidth is not limited.
 */
import net from 'node:net';

export interface DelayProxy {
  /** `http://127.0.0.1:PORT` */
  endpoint: string;
  close(): Promise<void>;
}

/** Starts a proxy in front of `target` (`http://HOST:PORT`). */
export async function startDelayProxy(target: string, ms: number): Promise<DelayProxy> {
  const to = new URL(target);
  const open = new Set<net.Socket>();
  const later = (f: () => void) => setTimeout(f, ms);
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(to.port), to.hostname);
    for (const s of [client, upstream]) { open.add(s); s.on('close', () => open.delete(s)); }
    // Timers of one length fire in the order they were set: the bytes keep their order.
    client.on('data', (d) => later(() => upstream.write(d)));
    upstream.on('data', (d) => later(() => client.write(d)));
    client.on('end', () => later(() => upstream.end()));
    upstream.on('end', () => later(() => client.end()));
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const s of open) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
