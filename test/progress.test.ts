/**
 * The progress line's pieces: cut to the terminal's width, an ETA only once it means
 * something, counts in words that agree with their number.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { count, eta, fit } from '../cli/progress.js';
import { makeKeys, onTerminal, tempDir } from './helpers.js';

test('a line is cut to one column less than the terminal', () => {
  const line = 'backup: 1,234/18,087 files, 56/3,114 dirs, 1.2 GiB/4.0 GiB read, 80.0 MiB/s [0:17, ETA 0:38]';
  for (const width of [20, 50, 80]) assert.ok(fit(line, width).length <= width - 1, `width ${width}`);
  assert.equal(fit('short', 50), 'short');
  assert.match(fit(line, 50), /…$/);
});

test('an ETA shows only after 5 s and 1% of the bytes', () => {
  assert.equal(eta(4.9, 50, 100), '');
  assert.equal(eta(10, 0.5, 100), '');
  assert.equal(eta(10, 10, undefined), '');
  assert.equal(eta(10, 50, 100), ', ETA 0:10');
});

test('counts say "1 file", "2 files", "1 directory"', () => {
  assert.equal(count(1, 'file'), '1 file');
  assert.equal(count(2, 'file'), '2 files');
  assert.equal(count(1, 'directory', 'directories'), '1 directory');
  assert.equal(count(12345, 'block'), '12,345 blocks');
});

test('on a real 50-column terminal, every redraw of a backup fits one line', () => {
  const d = tempDir('progress-pty');
  const src = join(d, 'src');
  mkdirSync(join(src, 'a-directory-with-a-long-name'), { recursive: true });
  for (let i = 0; i < 200; i++) writeFileSync(join(src, 'a-directory-with-a-long-name', `file-${i}`), `${i}\n`.repeat(1000));
  const keys = makeKeys();
  // A real terminal of 50 columns: what it showed.
  const t = onTerminal(['backup', '--init', src, '--repo', join(d, 'repo'), '--key', keys.backup, '--reread'], { ...process.env, IEBS_CONFIG_DIR: join(d, 'cfg'), IEBS_CACHE_DIR: join(d, 'cache') }, { columns: 50 });
  const r = { status: t.status, stdout: t.shown, stderr: t.stderr };
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const redraws = r.stdout.split('\r').map((s) => s.replace(/\x1b\[K/g, '').replace(/\n$/, '')).filter((s) => /^(scanning|backup)/.test(s));
  assert.ok(redraws.length > 0, `a progress line was shown: ${JSON.stringify(r.stdout)}`);
  for (const s of redraws) assert.ok(s.length <= 49 && !s.includes('\n'), `fits 49 columns: ${JSON.stringify(s)}`);
  assert.doesNotMatch(r.stdout, /\b1 files\b/);
});
