/**
 * The service's jobs (service/runner.ts) run with glibc's malloc held to two arenas,
 * unless the environment already says how many.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { jobEnv, Runner } from '../service/runner.js';
import { tempDir } from './helpers.js';

test('jobEnv: adds two malloc arenas to GLIBC_TUNABLES, after the tunables given, and keeps a count given', { skip: process.platform !== 'linux' && 'glibc tunables are read on Linux only' }, () => {
  assert.equal(jobEnv({ PATH: '/bin' }).GLIBC_TUNABLES, 'glibc.malloc.arena_max=2');
  assert.equal(jobEnv({ GLIBC_TUNABLES: 'glibc.malloc.tcache_count=0' }).GLIBC_TUNABLES, 'glibc.malloc.tcache_count=0:glibc.malloc.arena_max=2');
  assert.equal(jobEnv({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=8' }).GLIBC_TUNABLES, 'glibc.malloc.arena_max=8');
  assert.equal(jobEnv({ GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=1:glibc.malloc.arena_max=1' }).GLIBC_TUNABLES, 'glibc.malloc.mmap_threshold=1:glibc.malloc.arena_max=1');
  const env = { PATH: '/bin' };
  jobEnv(env);
  assert.deepEqual(env, { PATH: '/bin' }, 'the environment given is not changed');
});

test('a job the service starts runs with that environment', { skip: process.platform !== 'linux' && 'glibc tunables are read on Linux only' }, async () => {
  const dir = tempDir('runner');
  // A stand-in for the CLI: prints what it was started with as its --json result.
  const cli = join(dir, 'cli.mjs');
  writeFileSync(cli, 'process.stdout.write(JSON.stringify({ argv: process.argv.slice(2), tunables: process.env.GLIBC_TUNABLES ?? null, job: process.env.IEBS_JOB_ID }));\n');
  const runner = new Runner(join(dir, 'jobs'), cli, { PATH: process.env.PATH });
  const id = runner.start('backup', ['/src']);
  let out: unknown;
  for (let i = 0; i < 200 && out === undefined; i++) {
    await new Promise((r) => setTimeout(r, 50));
    out = runner.output(id);
  }
  assert.deepEqual(out, { argv: ['backup', '--json', '/src'], tunables: 'glibc.malloc.arena_max=2', job: id });
});
