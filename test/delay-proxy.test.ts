/**
 * The bench's delaying proxy (bench/delay-proxy.ts, `npm run bench -- --s3-delay-ms N`):
 * what goes through it arrives whole and in order, both ways, on several connections at
 * once, and an answer comes no sooner than the two delays (less the few ms by which a
 * timer's clock may lag).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startDelayProxy } from '../bench/delay-proxy.js';

test('the delaying proxy passes bodies whole and in order both ways, and holds each way', async () => {
  // An echo server that answers with the sha256 of what it got, then the body itself.
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      res.end(Buffer.concat([createHash('sha256').update(body).digest(), body]));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const ms = 30;
  const proxy = await startDelayProxy(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, ms);
  try {
    const send = (body: Buffer) => new Promise<{ answer: Buffer; took: number }>((resolve, reject) => {
      const t = performance.now();
      const req = request(`${proxy.endpoint}/echo`, { method: 'PUT', agent: false }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => resolve({ answer: Buffer.concat(parts), took: performance.now() - t }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
    const bodies = [randomBytes(3 * 1024 * 1024 + 17), randomBytes(1000), randomBytes(700 * 1024)];
    const answers = await Promise.all(bodies.map(send));
    answers.forEach(({ answer, took }, i) => {
      assert.ok(answer.subarray(0, 32).equals(createHash('sha256').update(bodies[i]).digest()), `body ${i} reached the server whole`);
      assert.ok(answer.subarray(32).equals(bodies[i]), `body ${i} came back whole`);
      // Timers count from the event loop's clock, which may lag the real one by a few ms.
      assert.ok(took >= 2 * ms - 10, `an answer after ${took.toFixed(1)} ms, with ${ms} ms each way`);
    });
  } finally {
    await proxy.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
