/**
 * cli/common.ts `gatheredStdout`, what ls, find and diff print through: many lines go out
 * in few writes, in order and whole; a line that is not followed by more still goes out
 * without `flush`, once its wait is over. Each case runs in a child process, whose stdout
 * the test reads (the test runner's own stdout is not to be touched).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

const COMMON = new URL('../cli/common.js', import.meta.url).href;

/** Runs `body` in a child with `gatheredStdout` imported and each write to stdout counted (and timed) on stderr. */
function child(body: string): { stdout: string; writes: { at: number; bytes: number }[] } {
  const script = `
    import { gatheredStdout } from ${JSON.stringify(COMMON)};
    const writes = [];
    const t0 = Date.now();
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = (chunk, ...rest) => { writes.push({ at: Date.now() - t0, bytes: Buffer.byteLength(chunk) }); return write(chunk, ...rest); };
    process.on('exit', () => process.stderr.write(JSON.stringify(writes)));
    ${body}
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  assert.equal(r.status, 0, r.stderr);
  return { stdout: r.stdout, writes: JSON.parse(r.stderr) };
}

test('twenty thousand lines go out whole and in order, in pieces of about 64 KiB, not a write each', () => {
  const { stdout, writes } = child(`
    const out = gatheredStdout();
    for (let i = 0; i < 20000; i++) out.write('line ' + i + '\\n');
    out.flush();
  `);
  const want = Array.from({ length: 20000 }, (_, i) => `line ${i}\n`).join('');
  assert.equal(stdout, want);
  // About 229 KiB: four or five writes, the first ones before the flush.
  assert.ok(writes.length >= 3 && writes.length <= 6, `${writes.length} writes`);
  for (const w of writes.slice(0, -1)) assert.ok(w.bytes >= 64 * 1024 && w.bytes < 65 * 1024, `a piece of ${w.bytes} bytes`);
});

test('a line with nothing after it goes out once its wait is over, without a flush; a flush with nothing waiting writes nothing', () => {
  const { stdout, writes } = child(`
    const out = gatheredStdout();
    out.flush();
    out.write('only\\n');
    if (writes.length !== 0) throw new Error('written at once');
    setTimeout(() => {}, 1500);
  `);
  assert.equal(stdout, 'only\n');
  assert.equal(writes.length, 1);
  // Not before the wait of 100 ms (a timer never fires early).
  assert.ok(writes[0].at >= 100, `written after ${writes[0].at} ms`);
});
