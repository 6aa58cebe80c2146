/**
 * A run through npx, as a cron job or a systemd timer starts iebs, prints nothing on
 * stderr: npm's warnings (an unknown project config in .npmrc, say) would be mailed every
 * night. Run in the project, as README's first command runs it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

test('npx iebs --version prints the version and nothing on stderr', () => {
  const r = spawnSync('npx', ['--no-install', 'iebs', '--version'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^iebs \d+\.\d+\.\d+\n$/);
  assert.equal(r.stderr, '');
});
