// The iebs page: plain JavaScript, no build step. Everything it shows comes from the
// service's JSON API (/api/, docs/openapi.json); live progress from its Server-Sent
// Events. Text from the API is only ever set as text (never as HTML).
'use strict';

const $ = (sel) => document.querySelector(sel);

/** An element with attributes, properties (on*) and children (strings become text). */
function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

function human(n) {
  if (n === null || n === undefined) return '';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i === 0 ? Math.round(n) : n.toFixed(1)} ${u[i]}`;
}

function clock(s) {
  if (s === null || s === undefined || !Number.isFinite(s) || s < 0) return '';
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return `${h ? h + ':' : ''}${String(m).padStart(h ? 2 : 1, '0')}:${String(sec).padStart(2, '0')}`;
}

class Unauthorized extends Error {}

async function api(path, body) {
  const init = { credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    init.method = 'POST';
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(`/api${path}`, init);
  if (r.status === 401) { showLogin(); throw new Unauthorized('not logged in'); }
  const data = await r.json();
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}

function showLogin() {
  $('#login').hidden = false;
  for (const s of ['#jobs', '#repos', '#schedule', '#files', '#result']) $(s).hidden = true;
  $('#whoami').textContent = 'not logged in';
}

// ---- jobs ---------------------------------------------------------------------------

const jobs = new Map();          // id -> record
const streams = new Map();       // id -> EventSource
const mine = new Set();          // jobs started from this page: their result is shown when they end
const targets = new Map();       // restore job id -> the folder it restores into

function progressText(p) {
  if (!p) return '';
  let t = `${p.phase}: ${p.files}${p.totalFiles !== undefined ? '/' + p.totalFiles : ''} files`;
  if (p.dirs !== undefined) t += `, ${p.dirs}${p.totalDirs !== undefined ? '/' + p.totalDirs : ''} dirs`;
  t += `, ${human(p.bytes)}${p.totalBytes !== undefined ? '/' + human(p.totalBytes) : ''}`;
  if (p.rate) t += `, ${human(p.rate)}/s`;
  if (p.eta !== undefined) t += `, ETA ${clock(p.eta)}`;
  return t;
}

function jobRow(r) {
  const p = r.progress || {};
  const bar = el('progress', { 'aria-label': `progress of job ${r.id}` });
  if (r.state === 'running') {
    if (p.totalBytes) { bar.max = Math.max(p.totalBytes, 1); bar.value = Math.min(p.bytes, bar.max); }
    else if (p.totalFiles) { bar.max = Math.max(p.totalFiles, 1); bar.value = Math.min(p.files, bar.max); }
    else bar.removeAttribute('value');
  } else { bar.max = 1; bar.value = r.state === 'done' ? 1 : 0; }
  const text = r.state === 'running' ? progressText(p) : (r.summary || r.state);
  const stop = r.state === 'running' ? el('button', { type: 'button', onclick: () => stopJob(r.id), 'aria-label': `stop job ${r.id}` }, 'Stop') : null;
  const open = r.state !== 'running' ? el('button', { type: 'button', onclick: () => showResult(r.id), 'aria-label': `show result of job ${r.id}` }, 'Result') : null;
  return el('tr', { id: `job-${r.id}`, 'data-state': r.state, 'data-verb': r.verb },
    el('td', {}, el('strong', {}, r.verb), el('span', { class: 'ptext' }, `${r.id} · ${r.origin}`)),
    el('td', {}, r.repo || ''),
    el('td', { class: `state-${r.state}` }, r.state),
    el('td', {}, bar, el('span', { class: 'ptext' }, text), r.state === 'running' && p.path ? el('span', { class: 'path', title: p.path }, p.path) : null),
    el('td', {}, stop, open));
}

function renderJobs() {
  const body = $('#jobs-table tbody');
  const list = [...jobs.values()].sort((a, b) => (a.state === 'running') - (b.state === 'running') || (a.started < b.started ? -1 : 1)).reverse().slice(0, 25);
  $('#jobs-empty').hidden = list.length > 0;
  $('#jobs-table').hidden = list.length === 0;
  const focused = document.activeElement && document.activeElement.closest('tr')?.id;
  body.replaceChildren(...list.map(jobRow));
  if (focused) document.getElementById(focused)?.querySelector('button')?.focus();
}

function follow(id) {
  if (streams.has(id)) return;
  const es = new EventSource(`/api/jobs/${encodeURIComponent(id)}/events`);
  streams.set(id, es);
  es.addEventListener('progress', (ev) => { const r = JSON.parse(ev.data); jobs.set(r.id, r); renderJobs(); });
  es.addEventListener('end', (ev) => {
    const r = JSON.parse(ev.data);
    jobs.set(r.id, r); renderJobs();
    es.close(); streams.delete(id);
    if (mine.has(id)) { mine.delete(id); showResult(id); if (current) loadSnapshots(current); }
  });
  es.onerror = () => { es.close(); streams.delete(id); };
}

async function refreshJobs() {
  try {
    const list = await api('/jobs');
    for (const r of list) {
      jobs.set(r.id, r);
      if (r.state === 'running') follow(r.id);
      // A job of ours that ended without its stream telling us (a dropped connection).
      else if (mine.has(r.id)) { mine.delete(r.id); streams.get(r.id)?.close(); streams.delete(r.id); showResult(r.id); if (current) loadSnapshots(current); }
    }
    renderJobs();
  } catch (e) { if (!(e instanceof Unauthorized)) console.error(e); }
}

async function startJob(path, body) {
  try {
    const r = await api(path, body);
    mine.add(r.id);
    if (r.target) targets.set(r.id, r.target);
    jobs.set(r.id, { progress: { phase: 'starting', files: 0, bytes: 0 }, verb: '…', ...r });
    renderJobs();
    follow(r.id);
    return r;
  } catch (e) { if (!(e instanceof Unauthorized)) say(`could not start: ${e.message}`); }
}

async function stopJob(id) {
  try { await api(`/jobs/${id}/stop`, {}); } catch (e) { say(e.message); }
}

function say(text) { $('#whoami').textContent = text; }

// ---- results ------------------------------------------------------------------------

async function showResult(id) {
  const r = await api(`/jobs/${id}`);
  const out = r.output;
  const box = $('#result-body');
  const kids = [el('p', {}, el('strong', {}, `${r.verb} ${r.repo || ''}`), ` — `, el('span', { class: `state-${r.state}` }, r.state), r.summary ? ` — ${r.summary}` : '')];
  if (out && r.verb === 'backup --dry-run') {
    const c = out.counts;
    kids.push(el('p', { id: 'plan-summary' }, `${out.type} ${out.snapshot} would hold ${c.files} entries (${c.new} new, ${c.changed} changed, ${c.unchanged} unchanged, ${c.deleted} deleted), ${human(c.bytes)}; up to ${human(out.estimate.bytes)} to store before compression and dedup, about ${out.estimate.volumes} volume(s).`));
    const plan = out.plan || [];
    kids.push(el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'What'), el('th', {}, 'Path'), el('th', { class: 'num' }, 'Size'))),
      el('tbody', {}, ...plan.slice(0, 300).map((p) => el('tr', {}, el('td', {}, p.status), el('td', {}, p.path), el('td', { class: 'num' }, p.status === 'deleted' ? '' : human(p.size)))))));
    if (plan.length > 300) kids.push(el('p', {}, `… and ${plan.length - 300} more`));
  } else if (out && r.verb === 'backup') {
    const c = out.counts;
    kids.push(el('p', {}, `snapshot ${out.snapshot} (${out.type}): ${c.files} entries (${c.new} new, ${c.changed} changed, ${c.unchanged} unchanged, ${c.deleted} deleted), ${human(c.bytes)}; stored ${human(c.stored)} in ${out.volumes.length} volume(s)`));
    for (const w of out.warnings || []) kids.push(el('p', { class: 'problem' }, `${w.path}: ${w.message}`));
  } else if (out && r.verb === 'verify') {
    kids.push(el('p', { id: 'verify-summary', class: out.ok ? 'ok' : 'state-failed' }, `${out.ok ? 'ok' : 'FAILED'}: ${out.snapshots} snapshots, ${out.objects} objects (${human(out.bytes)}) checked; ${out.problems.length} problem(s)`));
    for (const p of out.problems) kids.push(el('div', { class: 'problem' }, el('strong', {}, p.object), `: ${p.message}`, p.affects.length ? el('div', {}, `affects: ${p.affects.join(', ')}`) : el('div', {}, 'affects no snapshot')));
    for (const u of out.unreferenced || []) kids.push(el('p', {}, `note: ${u} is not part of any signed snapshot`));
  } else if (out && r.verb === 'restore') {
    kids.push(el('p', { id: 'restore-summary' }, `restored ${out.snapshot}: ${out.files} files (${human(out.bytes)}), ${out.dirs} directories, ${out.symlinks} symlinks`));
    for (const f of out.failures) kids.push(el('p', { class: 'problem' }, `not restored: ${f.path}: ${f.message}`));
  }
  if (targets.has(id)) kids.push(el('p', { id: 'restore-target' }, `into ${targets.get(id)}`));
  if (r.error) kids.push(el('p', { class: 'problem' }, r.error));
  for (const m of r.state === 'done' ? [] : r.messages || []) kids.push(el('p', { class: 'ptext' }, m));
  box.replaceChildren(...kids);
  $('#result').hidden = false;
  $('#result').dataset.job = id;
}

// ---- repositories, snapshots, charts --------------------------------------------------

let repos = [];
let current = null;
let charts = [];

function selectRepo(name, focus = false) {
  current = repos.find((r) => r.name === name) || null;
  for (const b of document.querySelectorAll('#repo-tabs button')) {
    const on = b.dataset.name === name;
    b.setAttribute('aria-selected', on ? 'true' : 'false');
    b.tabIndex = on ? 0 : -1;
    if (on && focus) b.focus();
  }
  $('#repo-panel').hidden = !current;
  $('#files').hidden = true;
  if (!current) return;
  $('#repo-where').textContent = `${current.repo}${current.sources.length ? ' ← ' + current.sources.join(', ') : ''}`;
  $('#act-backup').disabled = $('#act-plan').disabled = !current.canBackup;
  $('#act-verify-data').disabled = !current.canRestore;
  loadSnapshots(current);
}

async function loadRepos() {
  repos = await api('/repositories');
  $('#repos').hidden = false;
  $('#repos-empty').hidden = repos.length > 0;
  const tabs = $('#repo-tabs');
  tabs.replaceChildren(...repos.map((r) => el('button', { type: 'button', role: 'tab', 'data-name': r.name, 'aria-selected': 'false', onclick: () => selectRepo(r.name) }, r.name)));
  tabs.addEventListener('keydown', (ev) => {
    if (ev.key !== 'ArrowRight' && ev.key !== 'ArrowLeft') return;
    const i = repos.findIndex((r) => r === current);
    const next = repos[(i + (ev.key === 'ArrowRight' ? 1 : repos.length - 1)) % repos.length];
    if (next) selectRepo(next.name, true);
  });
  if (repos.length) selectRepo(repos[0].name);
}

async function loadSnapshots(repo) {
  $('#snap-status').textContent = 'loading snapshots…';
  let data;
  try { data = await api(`/repositories/${encodeURIComponent(repo.name)}/snapshots`); } catch (e) {
    $('#snap-status').textContent = e.message;
    return;
  }
  if (current !== repo) return;
  const snaps = data.snapshots;
  $('#snap-status').textContent = `${snaps.length} snapshot(s)${data.warnings.length ? '; ' + data.warnings.join('; ') : ''}`;
  $('#snap-table tbody').replaceChildren(...snaps.slice().reverse().map((s) => el('tr', { 'data-snapshot': s.name },
    el('td', {}, s.name), el('td', {}, s.type), el('td', {}, s.time.slice(0, 19).replace('T', ' ')),
    el('td', { class: 'num' }, s.files), el('td', { class: 'num' }, human(s.bytes)), el('td', { class: 'num' }, human(s.stored)),
    el('td', { class: 'num' }, `${s.new} new, ${s.changed} changed, ${s.deleted} deleted`), el('td', { class: 'num' }, s.duration === null ? '' : clock(s.duration)),
    el('td', {}, repo.canRestore ? el('button', { type: 'button', onclick: () => openFiles(repo, s.name), 'aria-label': `files of ${s.name}` }, 'Files') : null))));
  drawCharts(snaps);
}

function drawCharts(snaps) {
  for (const c of charts) c.destroy();
  charts = [];
  if (typeof uPlot === 'undefined' || snaps.length === 0) return;
  const xs = snaps.map((s) => Date.parse(s.time) / 1000);
  const make = (id, label, ys, fmt, stroke) => {
    const box = document.getElementById(id);
    box.replaceChildren();
    charts.push(new uPlot({
      width: Math.max(300, box.clientWidth - 4), height: 200,
      // One snapshot gets a day either side; sizes and durations start at zero.
      scales: { x: { time: true, range: (u, min, max) => (min === max ? [min - 86400, max + 86400] : [min, max]) }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] } },
      series: [{}, { label, stroke, fill: stroke + '22', width: 2, points: { show: true, size: 7 }, spanGaps: true, value: (u, v) => (v === null ? '—' : fmt(v)) }],
      axes: [{}, { values: (u, vals) => vals.map(fmt), size: 70 }],
    }, [xs, ys], box));
  };
  make('chart-stored', 'stored', snaps.map((s) => s.stored), human, '#1f6feb');
  make('chart-duration', 'took', snaps.map((s) => s.duration), (v) => clock(v), '#1a7f37');
}

// ---- a snapshot's files, restore --------------------------------------------------------

let files = [];

async function openFiles(repo, snapshot) {
  $('#files').hidden = false;
  $('#files-snap').textContent = snapshot;
  $('#files-status').textContent = 'listing files…';
  $('#files-table tbody').replaceChildren();
  try {
    const data = await api(`/repositories/${encodeURIComponent(repo.name)}/snapshots/${encodeURIComponent(snapshot)}/files`);
    files = data.files;
  } catch (e) { $('#files-status').textContent = e.message; return; }
  $('#files').dataset.snapshot = snapshot;
  renderFiles();
  $('#files-filter').focus();
}

function renderFiles() {
  const q = $('#files-filter').value.toLowerCase();
  const snapshot = $('#files').dataset.snapshot;
  const hits = files.filter((f) => f.path.toLowerCase().includes(q));
  $('#files-status').textContent = `${hits.length} of ${files.length} entries${hits.length > 500 ? ' (first 500 shown)' : ''}`;
  $('#files-table tbody').replaceChildren(...hits.slice(0, 500).map((f) => el('tr', { 'data-path': f.path },
    el('td', {}, f.path + (f.target ? ` → ${f.target}` : '')), el('td', {}, f.kind), el('td', { class: 'num' }, f.kind === 'file' ? human(f.size) : ''),
    el('td', {}, f.mtime.slice(0, 19).replace('T', ' ')),
    el('td', {}, el('button', { type: 'button', onclick: () => restore(snapshot, f.path), 'aria-label': `restore ${f.path}` }, 'Restore')))));
}

async function restore(snapshot, path) {
  await startJob(`/repositories/${encodeURIComponent(current.name)}/restore`, { snapshot, path });
}

// ---- schedule -----------------------------------------------------------------------------

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

async function loadSchedule() {
  const list = await api('/schedule');
  $('#schedule').hidden = list.length === 0;
  $('#schedule-table tbody').replaceChildren(...list.map((s) => el('tr', {},
    el('td', {}, s.name), el('td', {}, `${s.run} ${s.repository}`), el('td', {}, s.at), el('td', {}, s.days.length === 7 ? 'daily' : s.days.map((d) => DAYS[d]).join(', ')),
    el('td', {}, s.lastRun ? new Date(s.lastRun).toLocaleString() : '—'), el('td', {}, new Date(s.next).toLocaleString()))));
}

// ---- start ----------------------------------------------------------------------------------

async function start() {
  $('#act-backup').addEventListener('click', () => startJob(`/repositories/${encodeURIComponent(current.name)}/backup`, {}));
  $('#act-plan').addEventListener('click', () => startJob(`/repositories/${encodeURIComponent(current.name)}/plan`, {}));
  $('#act-verify').addEventListener('click', () => startJob(`/repositories/${encodeURIComponent(current.name)}/verify`, {}));
  $('#act-verify-data').addEventListener('click', () => startJob(`/repositories/${encodeURIComponent(current.name)}/verify`, { readData: true }));
  $('#files-filter').addEventListener('input', renderFiles);
  try {
    await loadRepos();
  } catch (e) { if (!(e instanceof Unauthorized)) say(e.message); return; }
  $('#jobs').hidden = false;
  say('connected');
  await refreshJobs();
  setInterval(refreshJobs, 2000);
  loadSchedule().catch(() => {});
}

start();
