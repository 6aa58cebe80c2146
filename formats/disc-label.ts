/**
 * The disc label `iebs-disc.txt` and the finder's `README.txt` of a disc set (SPEC.md
 * "Disc sets"). The label says which set a disc belongs to, its number and the total,
 * and which volume is on which disc of the set, so that any one disc tells which others
 * hold what it lacks. ASCII lines with LF ends, in a fixed order.
 */
import { FormatError } from './errors.js';
import { checkName, VOLUME_RE } from './names.js';
import { formatTime, parseTime, parseUint } from './text.js';

/** The label file's name at the root of every disc. */
export const LABEL_FILE = 'iebs-disc.txt';
/** The finder's README at the root of every disc. */
export const README_FILE = 'README.txt';
/** The base name of the disc's PAR2 set (`iebs-disc.par2`, `iebs-disc.vol…par2`). */
export const PAR2_BASE = 'iebs-disc';
/** A set's name: what people call it (`--name`), also in image file names. */
export const SET_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const MAGIC = 'IEBS-DISC 1';
/** Labels larger than this are refused before they are read whole. */
export const LABEL_MAX = 16 * 1024 * 1024;

/** A volume of the set and the disc it is on. */
export interface DiscVolume { disc: number; name: string; size: number }

/** A disc label. */
export interface DiscLabel {
  /** 16 lower-case hex digits naming the set (a hash of its plan). */
  set: string;
  name: string;
  disc: number;
  total: number;
  /** The repository's id (its config). */
  repository: string;
  /** The medium's capacity in bytes. */
  media: number;
  /** PAR2 redundancy in percent of the disc's source blocks, and the block size in bytes. */
  parity: { percent: number; blockSize: number };
  created: bigint;
  /** Every volume of the set, in disc order. */
  volumes: DiscVolume[];
}

/** Encodes a label. */
export function encodeDiscLabel(l: DiscLabel): string {
  let s = `${MAGIC}\nset ${l.set}\nname ${l.name}\ndisc ${l.disc} of ${l.total}\nrepository ${l.repository}\nmedia ${l.media}\n`;
  s += `parity par2 ${l.parity.percent} ${l.parity.blockSize}\ncreated ${formatTime(l.created)}\n`;
  for (const v of l.volumes) s += `volume ${v.disc} ${v.name} ${v.size}\n`;
  return s;
}

/** Decodes a label; fields must come in the order `encodeDiscLabel` writes. */
export function decodeDiscLabel(text: string, where: string): DiscLabel {
  if (text.length > LABEL_MAX) throw new FormatError('absurd-size', `${where}: disc label larger than 16 MiB`);
  if (!text.endsWith('\n')) throw new FormatError('truncated', `${where}: disc label does not end with a newline`);
  const lines = text.slice(0, -1).split('\n');
  if (lines[0] !== MAGIC) throw new FormatError(lines[0]?.startsWith('IEBS-DISC ') ? 'unknown-version' : 'bad-magic', `${where}: not an iebs disc label of a known version`);
  let i = 1;
  const field = (key: string, re: RegExp): RegExpExecArray => {
    const m = re.exec(lines[i] ?? '');
    if (!m || !lines[i].startsWith(`${key} `)) throw new FormatError('bad-line', `${where} line ${i + 1}: expected "${key}"`);
    i++;
    return m;
  };
  const set = field('set', /^set ([0-9a-f]{16})$/)[1];
  const name = field('name', /^name (\S+)$/)[1];
  if (!SET_NAME_RE.test(name)) throw new FormatError('bad-name', `${where} line 3: bad set name`);
  const d = field('disc', /^disc (\d+) of (\d+)$/);
  const disc = parseUint(d[1], where), total = parseUint(d[2], where);
  if (disc < 1 || disc > total || total > 99_999) throw new FormatError('bad-number', `${where} line 4: disc ${disc} of ${total}`);
  const repository = field('repository', /^repository ([0-9a-f]{32})$/)[1];
  const media = parseUint(field('media', /^media (\d+)$/)[1], where);
  const p = field('parity', /^parity par2 (\d+) (\d+)$/);
  const parity = { percent: parseUint(p[1], where), blockSize: parseUint(p[2], where) };
  if (parity.percent < 1 || parity.percent > 100 || parity.blockSize === 0 || parity.blockSize % 4 !== 0) throw new FormatError('bad-number', `${where} line 7: bad parity line`);
  const created = parseTime(field('created', /^created (\S+)$/)[1], where);
  const volumes: DiscVolume[] = [];
  for (; i < lines.length; i++) {
    const m = /^volume (\d+) (\S+) (\d+)$/.exec(lines[i]);
    if (!m) throw new FormatError('bad-line', `${where} line ${i + 1}: expected "volume DISC NAME SIZE"`);
    const v = { disc: parseUint(m[1], where), name: checkName(VOLUME_RE, m[2], 'volume name', `${where} line ${i + 1}`), size: parseUint(m[3], where) };
    if (v.disc < 1 || v.disc > total || (volumes.length && v.disc < volumes[volumes.length - 1].disc)) throw new FormatError('bad-number', `${where} line ${i + 1}: volume on disc ${v.disc} out of order or range`);
    volumes.push(v);
  }
  return { set, name, disc, total, repository, media, parity, created, volumes };
}

/** The README.txt of a disc: what a finder needs to know, with nothing but this disc and the restore key. */
export function discReadme(l: DiscLabel, snapshots: string[]): string {
  const mine = l.volumes.filter((v) => v.disc === l.disc);
  return `This is disc ${l.disc} of ${l.total} of the backup set "${l.name}" (set ${l.set}),
made by iebs, an encrypted backup program, from repository ${l.repository}.

WHAT IS ON IT

Encrypted backups. Without the owner's restore key (a file named restore.key,
kept offline) nobody can read the files inside: not the names, not the contents.
The folders are an iebs repository:

  config, keys/public.asc    what the repository is, its public keys
  snapshots/                 one signed record per snapshot (plain text)
  manifests/                 the encrypted list of each snapshot's files
  indexes/                   what the next backup needs (not needed to restore)
  volumes/                   tar files holding the encrypted file contents

This disc holds ${mine.length} volume(s) of the set's ${l.volumes.length}; every disc holds
every snapshot record, manifest and index of the set, so each disc restores on
its own whatever its volumes hold. ${LABEL_FILE} says which volume is on which disc.
Snapshots of the set: ${snapshots.join(', ') || '(none)'}.

SPEC.md describes every byte, for a reader written decades from now without iebs.

TO RESTORE (with iebs, https://www.npmjs.com/package/iebs, on Node.js 20 or later)

  iebs restore --repo iso:/path/to/disc-images-or-mounted-discs --key restore.key --target OUT

Give every disc you have, in any order, separated by commas: disc images (.iso),
folders of images, or the folders where discs are mounted. A single disc's
folder is itself a repository: --repo /media/cdrom. Missing discs are named by
number; what the given discs hold is restored. To list the snapshots, which
needs no key: iebs snapshots --repo iso:PATH. Without a repository at all,
iebs salvage volumes/*.tar --key restore.key --target OUT restores what the
volumes hold, with names.

WITHOUT IEBS

Manifests are OpenPGP messages: gpg --import restore.key, then
gpg --decrypt manifests/NAME.manifest.pgp prints the list of files and where
their blocks are; SPEC.md sections 7 and 8 say how a block is opened.

DAMAGE: PARITY

The ${PAR2_BASE}.par2 files are PAR2 recovery data (par2cmdline, "apt install
par2") over every other file of this disc: ${l.parity.percent}% of its blocks of ${l.parity.blockSize} bytes
can be rebuilt, wherever they are. To check the disc:

  par2 verify /media/cdrom/${PAR2_BASE}.par2

To repair, copy the disc to a writable folder first (for unreadable sectors,
GNU ddrescue or "dd conv=noerror,sync" keeps the readable parts in place), then:

  cd COPY && par2 repair ${PAR2_BASE}.par2

or, with iebs: iebs disc verify IMAGE --repair.
`;
}
