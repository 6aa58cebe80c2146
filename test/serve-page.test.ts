/**
 * The page of `iebs serve` in real headless Chromium (Debian's chromium, driven by
 * playwright-core; issue 21, item 4): it logs in with the one-time link, starts a backup
 * and watches its progress bar reach done, draws the charts, opens the snapshot's files,
 * restores one file and the test checks its bytes on disk. Screenshots go to the test's
 * temporary folder (kept with KEEP_TEMP=1), never into the repository.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { iebsOk, makeKeys, tempDir, writeSeeded, seededBytes, MiB } from './helpers.js';
import { startServe, type Served } from './serve-helpers.js';

const CHROMIUM = '/usr/bin/chromium';

const keys = makeKeys();
const root = tempDir('page');
const src = join(root, 'src');
mkdirSync(join(src, 'notes'), { recursive: true });
writeSeeded(join(src, 'notes', 'plan.bin'), 'plan', 200_000);
writeFileSync(join(src, 'readme.txt'), 'restore me\n');
writeSeeded(join(src, 'video.bin'), 'video', 3 * MiB);
const repo = join(root, 'repo');
iebsOk(['init', repo, '--key', keys.backup]);
const restored = join(root, 'restored');
const shots = join(root, 'screenshots');
mkdirSync(shots);

let s: Served | undefined;
let browser: BrowserContext | undefined;
after(async () => { await browser?.close(); await s?.stop(); });

test('the page: log in, back up with a live progress bar to done, charts, a snapshot\'s files, restore one file', async () => {
  s = await startServe({ repositories: { laptop: { repo, key: keys.backup, restoreKey: keys.restore, sources: [src], restoreTarget: restored, limitUpload: '2M' } } });
  // A fresh profile (the --user-data-dir playwright passes), and nothing that reaches the network.
  browser = await chromium.launchPersistentContext(tempDir('chromium-profile'), {
    executablePath: CHROMIUM, headless: true, viewport: { width: 1280, height: 1000 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = browser.pages()[0] ?? await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  const base = `http://127.0.0.1:${s.port}`;

  // Without the login: the page says how to log in, and shows no data.
  await page.goto(base + '/');
  await page.locator('#login').waitFor({ state: 'visible' });
  await page.screenshot({ path: join(shots, '1-login.png') });

  errors.length = 0; // the 401 of the page's first call, before the login, is expected
  await page.goto(base + s.login);
  assert.equal(new URL(page.url()).pathname, '/');
  await page.getByRole('tab', { name: 'laptop' }).waitFor();
  assert.equal(await page.locator('#login').isHidden(), true);

  // A backup from the keyboard: Tab to the button, Enter.
  await page.locator('#act-backup').focus();
  await page.keyboard.press('Enter');
  const row = page.locator('#jobs-table tbody tr[data-verb="backup"]').first();
  await row.waitFor();
  // The bar moves: running with some bytes of a known total, then done at full.
  const seen = new Set<string>();
  let moving = false;
  for (let i = 0; i < 600; i++) {
    const state = await row.getAttribute('data-state');
    if (state) seen.add(state);
    const bar = await row.locator('progress').evaluate((p: HTMLProgressElement) => ({ value: p.value, max: p.max, position: p.position }));
    // Running, with a known total and some of it done (the bytes read can reach the total
    // while the last volume still uploads, so the bar may be full before the job is done).
    if (state === 'running' && bar.max > 1 && bar.value > 0) {
      moving = true;
      if (!seen.has('shot')) { seen.add('shot'); await page.screenshot({ path: join(shots, '2-backup-running.png') }); }
    }
    if (state === 'done') break;
    await page.waitForTimeout(50);
  }
  assert.ok(seen.has('running'), `the job was seen running: ${[...seen]}`);
  assert.ok(moving, 'the progress bar was seen moving while the job ran');
  assert.equal(await row.getAttribute('data-state'), 'done');
  assert.deepEqual(await row.locator('progress').evaluate((p: HTMLProgressElement) => [p.value, p.max]), [1, 1]);

  // The result and the snapshot, with its charts.
  await page.locator('#result-body').getByText(/^snapshot .* \(full\): 4 entries/).waitFor();
  const snapRow = page.locator('#snap-table tbody tr').first();
  await snapRow.waitFor();
  const snapshot = (await snapRow.getAttribute('data-snapshot'))!;
  assert.match(snapshot, /_full$/);
  assert.equal(await page.locator('#chart-stored canvas').count(), 1);
  assert.equal(await page.locator('#chart-duration canvas').count(), 1);
  await page.screenshot({ path: join(shots, '3-snapshot-charts.png'), fullPage: true });

  // The snapshot's files, filtered; restore one file.
  await page.getByRole('button', { name: `files of ${snapshot}` }).click();
  await page.locator('#files-table tbody tr[data-path="notes/plan.bin"]').waitFor();
  await page.locator('#files-filter').fill('plan');
  assert.equal(await page.locator('#files-table tbody tr').count(), 1);
  await page.screenshot({ path: join(shots, '4-files.png'), fullPage: true });
  await page.getByRole('button', { name: 'restore notes/plan.bin' }).click();
  const summary = page.locator('#restore-summary');
  await summary.waitFor({ timeout: 60_000 });
  assert.match(await summary.innerText(), /^restored .*: 1 files/);
  const target = (await page.locator('#restore-target').innerText()).replace(/^into /, '');
  assert.ok(target.startsWith(restored + '/'), target);
  assert.deepEqual(readFileSync(join(target, 'notes', 'plan.bin')), seededBytes('plan', 200_000));
  await page.screenshot({ path: join(shots, '5-restored.png'), fullPage: true });

  // The planner and verify, with their results.
  await page.locator('#act-plan').click();
  await page.locator('#plan-summary').waitFor({ timeout: 60_000 });
  assert.match(await page.locator('#plan-summary').innerText(), /would hold 4 entries \(0 new, 0 changed, 4 unchanged, 0 deleted\)/);
  await page.locator('#act-verify').click();
  await page.locator('#verify-summary').waitFor({ timeout: 60_000 }).catch(async (e) => {
    await page.screenshot({ path: join(shots, 'failed-verify.png'), fullPage: true });
    throw e;
  });
  assert.match(await page.locator('#verify-summary').innerText(), /^ok: 1 snapshots, .*; 0 problem\(s\)$/);
  await page.screenshot({ path: join(shots, '6-verify.png'), fullPage: true });
  assert.deepEqual(errors, [], 'no script errors in the page');
});
