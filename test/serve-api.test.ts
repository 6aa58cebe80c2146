/**
 * `iebs serve` over real HTTP (issue 21, items 2 and 4): the token (file mode, 401), the
 * Host and Origin checks (403), the one-time login link and its cookie, path traversal in
 * API paths and bodies, jobs started through the API as iebs processes that `iebs status`
 * sees too, their Server-Sent Events, stop, restore of one file, a scheduled run missed
 * while the service was down, and the OpenAPI file against the routes the server answers.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI, iebs, iebsOk, makeKeys, tempDir, writeSeeded, seededBytes, MiB } from './helpers.js';
import { api, events, http, startServe, type Served } from './serve-helpers.js';
import { readJob } from '../engine/jobs/jobs.js';
import { Service } from '../service/server.js';
import { parseConfig } from '../service/config.js';

const keys = makeKeys();
const PASS = 'never-show-this-passphrase-4411';
const root = tempDir('api');
const src = join(root, 'src');
mkdirSync(join(src, 'docs'), { recursive: true });
writeSeeded(join(src, 'docs', 'report.bin'), 'report', 300_000);
writeFileSync(join(src, 'hello.txt'), 'hello from the api test\n');
writeSeeded(join(src, 'big.bin'), 'big', 4 * MiB);
const repo = join(root, 'repo');
iebsOk(['init', repo, '--key', keys.backup]);
writeFileSync(join(root, 'pass'), PASS + '\n');
const restored = join(root, 'restored');
const config = {
  repositories: {
    main: { repo, key: keys.backup, verifyKey: keys.recipient, restoreKey: keys.restore, sources: [src], restoreTarget: restored },
    slow: { repo, key: keys.backup, sources: [src], limitUpload: '1M', passphraseFile: join(root, 'pass') },
  },
};
let s: Served;
const started = startServe(config).then((x) => { s = x; });
after(async () => { await s?.stop(); });

test('the token file is made 0600 with 64 hex digits, and a token file others can read is refused', async () => {
  await started;
  const file = join(s.config, 'serve.token');
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.match(s.token, /^[0-9a-f]{64}$/);
  assert.ok(!s.log().includes(s.token), 'the token is never printed');
  const d = tempDir('loose');
  writeFileSync(join(d, 'serve.token'), 'a'.repeat(64) + '\n', { mode: 0o644 });
  chmodSync(join(d, 'serve.token'), 0o644);
  const r = iebs(['serve', '--listen', '127.0.0.1:0'], { env: { IEBS_CONFIG_DIR: d }, timeoutMs: 20_000 });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^iebs serve: .*serve\.token: the token file is readable by others \(mode 0644\)/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
});

test('no token, a wrong token, or a malformed header gives 401 on every API route; the right one 200', async () => {
  await started;
  for (const path of ['/api/jobs', '/api/repositories', '/api/repositories/main/snapshots', '/api/history', '/api/nothing']) {
    assert.equal((await http(s, 'GET', path)).status, 401, path);
    assert.equal((await http(s, 'GET', path, { headers: { Authorization: `Bearer ${'0'.repeat(64)}` } })).status, 401, path);
    assert.equal((await http(s, 'GET', path, { headers: { Authorization: `Basic ${s.token}` } })).status, 401, path);
    assert.equal((await http(s, 'GET', path, { headers: { Authorization: `Bearer ${s.token.slice(0, -1)}` } })).status, 401, path);
    assert.equal((await http(s, 'GET', path, { headers: { Cookie: 'iebs_session=forged' } })).status, 401, path);
  }
  const post = await http(s, 'POST', '/api/repositories/main/backup', { headers: { 'Content-Type': 'application/json' }, body: '{}' });
  assert.equal(post.status, 401);
  assert.equal(post.headers['www-authenticate'], 'Bearer realm="iebs"');
  assert.equal((await api(s, 'GET', '/api/jobs')).status, 200);
});

test('a foreign Origin and a Host that is not this service are refused with 403, even with the token', async () => {
  await started;
  const auth = { Authorization: `Bearer ${s.token}` };
  const cases: Record<string, string>[] = [
    { Origin: 'http://evil.example' },
    { Origin: `http://127.0.0.1:${s.port + 1}` },
    { Origin: 'null' },
    { Host: `evil.example:${s.port}` },
    { Host: `evil.example:${s.port}`, Origin: `http://evil.example:${s.port}` },
    { Host: `127.0.0.1.evil.example:${s.port}` },
    { 'Sec-Fetch-Site': 'cross-site' },
  ];
  for (const h of cases) {
    const r = await http(s, 'GET', '/api/jobs', { headers: { ...auth, ...h } });
    assert.equal(r.status, 403, JSON.stringify(h));
    assert.ok(!r.text.includes('"v": 1'), 'no job data');
  }
  const post = await http(s, 'POST', '/api/repositories/main/backup', { headers: { ...auth, Origin: 'https://evil.example', 'Content-Type': 'application/json' }, body: '{}' });
  assert.equal(post.status, 403);
  assert.equal((await http(s, 'GET', '/', { headers: { Host: `rebind.example:${s.port}` } })).status, 403);
  // This service under a loopback name (an SSH tunnel may use another local port), from its own page.
  assert.equal((await http(s, 'GET', '/api/jobs', { headers: { ...auth, Host: 'localhost:9999', Origin: 'http://localhost:9999' } })).status, 200);
  assert.equal((await http(s, 'GET', '/api/jobs', { headers: { ...auth, Origin: `http://127.0.0.1:${s.port}` } })).status, 200);
});

test('the one-time login link gives an HttpOnly SameSite=Strict cookie that opens the API, once', async () => {
  await started;
  const r = await http(s, 'GET', s.login);
  assert.equal(r.status, 303);
  const set = String(r.headers['set-cookie']);
  assert.match(set, /^iebs_session=[A-Za-z0-9_-]{40,}; HttpOnly; SameSite=Strict; Path=\/$/);
  const cookie = set.split(';')[0];
  assert.equal((await http(s, 'GET', '/api/jobs', { headers: { Cookie: cookie } })).status, 200);
  assert.equal((await http(s, 'GET', s.login)).status, 403, 'a used link opens nothing');
  assert.equal((await http(s, 'GET', '/login?once=guess')).status, 403);
  const link = await api(s, 'POST', '/api/login-links');
  assert.equal(link.status, 201);
  assert.equal((await http(s, 'GET', link.json().path)).status, 303);
  // The CLI asks the running service for a link with the token.
  const cli = iebsOk(['serve', '--listen', `127.0.0.1:${s.port}`, '--login-link'], { env: s.env });
  assert.match(cli.stdout, new RegExp(`^http://127\\.0\\.0\\.1:${s.port}/login\\?once=[A-Za-z0-9_-]+\\n$`));
});

test('path traversal in API paths and bodies is refused; nothing outside the page is served', async () => {
  await started;
  const paths = [
    '/api/repositories/..%2F..%2Fetc/snapshots', '/api/repositories/../../etc/snapshots', '/api/repositories/%2e%2e/snapshots',
    '/api/jobs/..%2F..%2Fetc%2Fpasswd', '/api/jobs/../../../etc/passwd', '/api/jobs/%2e%2e%2fserve.token',
    '/api/repositories/main/snapshots/..%2F..%2Fx/files', '/api/repositories/main/snapshots/%2e%2e/files',
    '/../package.json', '/%2e%2e/package.json', '/vendor/../../package.json', '/vendor/..%2F..%2Fpackage.json', '/app.js/../../serve.token', '/web/index.html',
  ];
  for (const p of paths) {
    const r = await api(s, 'GET', p);
    assert.ok(r.status === 404 || r.status === 400, `${p}: ${r.status}`);
    assert.ok(!r.text.includes('"name": "iebs"') && !r.text.includes(s.token), `${p} leaked a file`);
  }
  for (const path of ['../../etc/passwd', '/etc/passwd', 'docs/../../x', 'docs/./report.bin', '', 'a//b', 'x\u0000y']) {
    const r = await api(s, 'POST', '/api/repositories/main/restore', { snapshot: 'any', path });
    assert.equal(r.status, 400, JSON.stringify(path));
  }
  for (const snapshot of ['../x', '/etc', 'a/b', '']) {
    assert.equal((await api(s, 'POST', '/api/repositories/main/restore', { snapshot })).status, 400, snapshot);
  }
  assert.equal((await api(s, 'GET', '/api/repositories/none/snapshots')).status, 404);
  assert.equal((await api(s, 'GET', '/api/jobs/20990101-000000-abcdef')).status, 404);
  // A POST that a plain HTML form could make (no JSON) is refused.
  assert.equal((await http(s, 'POST', '/api/repositories/main/backup', { headers: { Authorization: `Bearer ${s.token}`, 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'a=b' })).status, 415);
  assert.equal((await api(s, 'DELETE', '/api/jobs')).status, 405);
});

test('the API never sends a key path, key or passphrase', async () => {
  await started;
  const r = await api(s, 'GET', '/api/repositories');
  assert.equal(r.status, 200);
  assert.deepEqual(r.json().map((x: { name: string }) => x.name), ['main', 'slow']);
  assert.equal(r.json()[0].canRestore, true);
  assert.equal(r.json()[1].canRestore, false);
  for (const secret of [keys.restore, keys.backup, join(root, 'pass'), PASS, 'BEGIN PGP']) assert.ok(!r.text.includes(secret), secret);
});

test('a backup through the API runs as an iebs job: SSE to its end, output, iebs status sees it; then a file restored by path', async () => {
  await started;
  const start = await api(s, 'POST', '/api/repositories/main/backup');
  assert.equal(start.status, 202);
  const id = start.json().id as string;
  const evs = await events(s, id);
  assert.equal(evs[evs.length - 1].event, 'end');
  assert.equal(evs[evs.length - 1].data.state, 'done');
  assert.ok(evs.filter((e) => e.event === 'progress').length >= 1);
  const job = (await api(s, 'GET', `/api/jobs/${id}`)).json();
  assert.equal(job.origin, 'service');
  assert.equal(job.exitCode, 0);
  // Files and directories are counted apart (docs/ is the one directory under the source).
  assert.equal(job.progress.totalFiles, 3, 'the service asks for a scan: totals are known');
  assert.equal(job.progress.totalDirs, 1);
  const snapshot = job.output.snapshot as string;
  assert.equal(job.result.snapshot, snapshot);
  const st = JSON.parse(iebsOk(['status', '--json'], { env: s.env }).stdout);
  assert.ok(st.some((r: { id: string; origin: string }) => r.id === id && r.origin === 'service'));

  const snaps = (await api(s, 'GET', '/api/repositories/main/snapshots')).json();
  assert.deepEqual(snaps.snapshots.map((x: { name: string }) => x.name), [snapshot]);
  assert.equal(typeof snaps.snapshots[0].duration, 'number');
  const files = (await api(s, 'GET', `/api/repositories/main/snapshots/${snapshot}/files`)).json();
  assert.deepEqual(files.files.map((f: { path: string }) => f.path).sort(), ['big.bin', 'docs', 'docs/report.bin', 'hello.txt']);

  const rs = await api(s, 'POST', '/api/repositories/main/restore', { snapshot, path: 'docs/report.bin' });
  assert.equal(rs.status, 202);
  const target = rs.json().target as string;
  assert.ok(target.startsWith(restored + '/'));
  const end = (await events(s, rs.json().id)).pop()!;
  assert.equal(end.data.state, 'done', JSON.stringify(end.data));
  assert.deepEqual(readFileSync(join(target, 'docs', 'report.bin')), seededBytes('report', 300_000));
  assert.throws(() => statSync(join(target, 'hello.txt')), 'only the path asked for is restored');

  const plan = await api(s, 'POST', '/api/repositories/main/plan');
  await events(s, plan.json().id);
  const planned = (await api(s, 'GET', `/api/jobs/${plan.json().id}`)).json();
  assert.equal(planned.verb, 'backup --dry-run');
  assert.equal(planned.output.dryRun, true);
  assert.equal(planned.output.counts.unchanged, 4);

  const v = await api(s, 'POST', '/api/repositories/main/verify');
  await events(s, v.json().id);
  const verified = (await api(s, 'GET', `/api/jobs/${v.json().id}`)).json();
  assert.equal(verified.output.ok, true);
  assert.deepEqual(verified.output.problems, []);
});

test('stop sends SIGTERM: the job ends as interrupted', async () => {
  await started;
  const start = await api(s, 'POST', '/api/repositories/slow/backup', { full: true });
  const id = start.json().id as string;
  for (;;) {
    const r = readJob(s.jobs, id);
    if (r && r.progress.phase === 'backup' && r.progress.bytes > 0) break;
    if (r && r.state !== 'running') assert.fail(`ended before it could be stopped: ${JSON.stringify(r)}`);
    await new Promise((res) => setTimeout(res, 50));
  }
  assert.equal((await api(s, 'POST', `/api/jobs/${id}/stop`)).status, 202);
  const end = (await events(s, id)).pop()!;
  assert.equal(end.data.state, 'interrupted');
  assert.equal((await api(s, 'POST', `/api/jobs/${id}/stop`)).status, 409);
  iebsOk(['unlock', '--repo', repo]);
  const all = readFileSync(join(s.jobs, `${id}.json`), 'utf8') + readFileSync(join(s.jobs, `${id}.err`), 'utf8');
  assert.ok(!all.includes(PASS));
});

test('a scheduled run missed while the service was down is made when it starts', async () => {
  const twoDaysAgo = new Date(Date.now() - 2 * 86400_000).toISOString();
  const t = await startServe({ repositories: { main: config.repositories.main }, schedule: [{ name: 'nightly', repository: 'main', run: 'verify', at: '00:00', days: 'daily' }] },
    { state: { v: 1, schedule: { nightly: { lastRun: twoDaysAgo } } } });
  try {
    let job;
    for (let i = 0; i < 400 && !job; i++) {
      job = (await api(t, 'GET', '/api/jobs')).json().find((r: { origin: string }) => r.origin === 'schedule:nightly');
      if (!job) await new Promise((res) => setTimeout(res, 50));
    }
    assert.ok(job, 'the missed run was started');
    assert.equal(job.verb, 'verify');
    const sched = (await api(t, 'GET', '/api/schedule')).json();
    assert.equal(sched[0].lastJob, job.id);
    assert.ok(Date.parse(sched[0].lastRun) > Date.parse(twoDaysAgo));
    const state = JSON.parse(readFileSync(join(t.config, 'serve-state.json'), 'utf8'));
    assert.equal(state.schedule.nightly.lastJob, job.id);
    await events(t, job.id);
  } finally { await t.stop(); }
});

test('a bad serve.json is one line naming the file, exit 2', () => {
  const d = tempDir('badcfg');
  writeFileSync(join(d, 'serve.json'), JSON.stringify({ repositories: { main: { repo: '/r' } }, schedule: [{ name: 'n', repository: 'other', run: 'backup', at: '02:00' }] }));
  const r = iebs(['serve', '--listen', '127.0.0.1:0'], { env: { IEBS_CONFIG_DIR: d }, timeoutMs: 20_000 });
  assert.equal(r.code, 2);
  assert.equal(r.stderr, `iebs serve: ${join(d, 'serve.json')}: schedule[0].repository: no repository "other"\n`);
});

test('docs/openapi.json lists exactly the routes the server has, and the server answers every path in it', async () => {
  await started;
  const doc = JSON.parse(readFileSync(fileURLToPath(new URL('../../docs/openapi.json', import.meta.url)), 'utf8'));
  const documented = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)).sort();
  const service = new Service({ config: parseConfig({}, 'x'), token: 'x', jobs: tempDir('oa'), cli: CLI, stateFile: join(tempDir('oa'), 's') });
  const served = service.routes.map((r) => `${r.method} ${r.path}`).sort();
  assert.deepEqual(documented, served);
  // Each documented path and method reaches a handler (not "no such route" nor 405).
  const jobId = (await api(s, 'GET', '/api/jobs')).json()[0].id;
  const snapshot = (await api(s, 'GET', '/api/repositories/main/snapshots')).json().snapshots[0].name;
  for (const entry of documented) {
    const [method, p] = entry.split(' ');
    const path = p.replace('{name}', 'main').replace('{id}', jobId).replace('{snapshot}', snapshot);
    const body = path.endsWith('/restore') ? { snapshot, path: 'hello.txt' } : {};
    const r = await api(s, method, path, body);
    assert.ok(r.status !== 404 && r.status !== 405, `${entry}: ${r.status} ${r.text.slice(0, 100)}`);
    assert.ok(String(Object.keys(doc.paths[p][method.toLowerCase()].responses)).includes(String(r.status)), `${entry}: ${r.status} is not documented`);
    if (/^(backup|plan|verify|restore)$/.test(path.split('/').pop()!)) await events(s, r.json().id);
  }
});
