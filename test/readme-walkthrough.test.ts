/**
 * README's walk-through is true: its commands, taken from README.md (the block after the
 * `walk-through:` marker; a line `#   TEXT` under a command is its output), run in a scratch home against a small Documents tree, each
 * exits 0, and every output line README shows under a command is printed by it, in
 * order. Numbers (sizes with their units, counts, dates, times), the repository and sources ids and `...` may differ;
 * the words and the shape may not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI, tempDir } from './helpers.js';

const README = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');

interface Step { command: string; shown: string[] }

/** The walk-through's commands and the output lines shown under each. */
function steps(): Step[] {
  const at = README.indexOf('<!-- walk-through:');
  assert.ok(at >= 0, 'README has the walk-through marker');
  const start = README.indexOf('```sh\n', at) + 6;
  const block = README.slice(start, README.indexOf('\n```', start)).split('\n');
  const out: Step[] = [];
  for (let i = 0; i < block.length; i++) {
    const line = block[i];
    if (/^# {3}\S/.test(line) && out.length) { out[out.length - 1].shown.push(line.slice(4)); continue; }
    if (line.startsWith('#') || line.trim() === '') continue;
    let command = line;
    while (command.endsWith('\\')) command = command.slice(0, -1) + block[++i].trim();
    out.push({ command, shown: [] });
  }
  return out;
}

/** A shown line as a pattern: numbers, the repository id and `...` may differ. */
function pattern(shown: string, home: string): RegExp {
  const paths = [['/home/you', ''], ['/mnt/usb/backups', '/usb/backups'], ['/tmp/restored', '/restored'], ['/tmp/old', '/old']];
  for (const [readme, here] of paths) shown = shown.replaceAll(readme, `\u0000HOME\u0000${here}`);
  const parts = shown.split(/(\.\.\.|[0-9a-f]{32}|\bsources [0-9a-f]{8}$|\d+(?:\.\d+)? (?:B|KiB|MiB|GiB|TiB)\b|\d+(?:\.\d+)?| +|\u0000HOME\u0000)/);
  const re = parts.map((p) => {
    if (p === '...') return '.*';
    if (/^\d.* [KMGT]?i?B$/.test(p)) return '\\d+(?:\\.\\d+)? (?:B|KiB|MiB|GiB|TiB)';
    if (/^[0-9a-f]{32}$/.test(p)) return '[0-9a-f]{32}';
    if (/^sources [0-9a-f]{8}$/.test(p)) return 'sources [0-9a-f]{8}';
    if (/^\d/.test(p)) return '\\d+(?:\\.\\d+)?';
    if (/^ +$/.test(p)) return ' +';
    if (p === '\u0000HOME\u0000') return home.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    return p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }).join('');
  return new RegExp(`^${re}$`);
}

test("README's walk-through runs as written and prints what it shows", () => {
  const home = tempDir('walk-through');
  const docs = join(home, 'Documents');
  mkdirSync(join(docs, 'projects', 'sub'), { recursive: true });
  writeFileSync(join(docs, 'todo.txt'), 'buy milk\n');
  writeFileSync(join(docs, 'notes.md'), '# notes\n'.repeat(100));
  writeFileSync(join(docs, 'projects', 'plan.txt'), 'the plan\n'.repeat(200));
  writeFileSync(join(docs, 'projects', 'sub', 'x.txt'), 'x\n');
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, IEBS_CLI: CLI, IEBS_CONFIG_DIR: join(home, '.config', 'iebs'), IEBS_CACHE_DIR: join(home, '.cache', 'iebs') };
  for (const k of ['IEBS_REPO', 'IEBS_KEY', 'IEBS_PASSPHRASE', 'IEBS_PASSPHRASE_FILE', 'IEBS_DEBUG']) delete env[k];
  const all = steps();
  assert.ok(all.length >= 9, `the walk-through has its commands (${all.length})`);
  let full: string | null = null;
  for (const s of all) {
    let command = s.command
      .replaceAll('npx iebs', `"${process.execPath}" "$IEBS_CLI"`)
      .replaceAll('/mnt/usb/backups', '"$HOME/usb/backups"')
      .replaceAll('/tmp/restored', '"$HOME/restored"')
      .replaceAll('/tmp/old', '"$HOME/old"');
    if (full) command = command.replace(/\blaptop_\d{4}-\d\d-\d\d_full\b/g, full);
    const r = spawnSync('bash', ['-c', command], { env, encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, `${s.command}\nexit ${r.status}\n${r.stdout}${r.stderr}`);
    const lines = r.stdout.split('\n');
    let from = 0;
    for (const shown of s.shown) {
      const re = pattern(shown, home);
      const at = lines.findIndex((l, i) => i >= from && re.test(l));
      assert.ok(at >= 0, `${s.command}\nREADME shows:  ${shown}\nit printed:\n${r.stdout}`);
      from = at + 1;
    }
    full ??= /snapshot (laptop_\S+_full) \(full\)/.exec(r.stdout)?.[1] ?? null;
  }
  assert.ok(full, 'the first backup made a full named after --name');
});
