/**
 * A run through npx, as a cron job or a systemd timer starts iebs, prints nothing on
 * stderr: npm's warnings (an unknown project config in .npmrc, say) would be mailed every
 * night. Run in the project, as README's first command runs it.
 *
 * The first `npx iebs` for a project folder (per npm cache) installs the folder into
 * npx's cache as a link and runs its `prepare` script, `tsc`. A full build rewrote every
 * file under dist/ in place; an iebs starting meanwhile (another test's, or a backup from
 * the same clone) read a module cut short and failed to start ("does not provide an
 * export named ..."). The build is incremental, so over an up-to-date dist/ it writes
 * nothing. This test runs npx with an npm cache of its own, so it takes that first-run
 * path every time, and checks that no file under dist/ was rewritten.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The modification time of every .js file under dist/, by path. */
function builtTimes(): Map<string, bigint> {
  const out = new Map<string, bigint>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.js')) out.set(p, statSync(p, { bigint: true }).mtimeNs);
    }
  };
  walk(join(ROOT, 'dist'));
  return out;
}

test('npx iebs --version prints the version and nothing on stderr, and its first run in a fresh npm cache rewrites nothing under dist/', () => {
  const before = builtTimes();
  assert.ok(before.size > 100, `dist/ holds the build (${before.size} files)`);
  const env = { ...process.env, npm_config_cache: tempDir('npm-cache') };
  const r = spawnSync('npx', ['--no-install', 'iebs', '--version'], { cwd: ROOT, env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^iebs \d+\.\d+\.\d+\n$/);
  assert.equal(r.stderr, '');
  const after = builtTimes();
  const rewritten = [...before].filter(([p, t]) => after.get(p) !== t).map(([p]) => p);
  assert.deepEqual(rewritten.slice(0, 5), [], `${rewritten.length} built files were rewritten while iebs could be loading them`);
});
