/**
 * Forget objects (SPEC.md "Forget record"): listing and checking them against the owner
 * keys, and writing a new one. A forget that does not verify, or that the host key
 * signed, is returned in `bad` and covers nothing.
 */
import type * as openpgp from 'openpgp';
import { FormatError, IebsError } from '../../formats/errors.js';
import { decodeForget, encodeForget, forgetBaseName, forgetObject, FORGET_RE, FORGETS, MAX_FORGET, type ForgetRecord, type Forgotten } from '../../formats/forget.js';
import { formatTime, toHex } from '../../formats/text.js';
import { listAll, type Storage } from '../storage/storage.js';
import { ownerSign, ownerVerify } from '../crypto/owner.js';

/** A forget that verified. */
export interface Forget { object: string; forget: ForgetRecord }
/** A forget that did not: it covers nothing. */
export interface BadForget { object: string; error: IebsError }

/** Lists and checks every forget object against the owner keys. */
export async function listForgets(storage: Storage, owners: openpgp.PublicKey[], hostKeys: openpgp.PublicKey[]): Promise<{ forgets: Forget[]; bad: BadForget[] }> {
  const forgets: Forget[] = [];
  const bad: BadForget[] = [];
  for (const object of await listAll(storage, `${FORGETS}/`)) {
    try {
      const m = /^forgets\/(.+)\.forget\.asc$/.exec(object);
      const named = m ? FORGET_RE.exec(m[1]) : null;
      if (!m || !named) throw new FormatError('bad-name', `${object}: not a forget object name`);
      const size = await storage.stat(object);
      if (size === null) continue;
      if (size > MAX_FORGET * 2) throw new FormatError('absurd-size', `${object}: larger than ${MAX_FORGET * 2} bytes`);
      const armored = Buffer.from(await storage.get(object)).toString('utf8');
      const text = await ownerVerify(armored, owners, hostKeys, object, 'forget');
      const forget = decodeForget(text, object);
      const base = named[4] ? m[1].slice(0, -named[4].length) : m[1];
      if (base !== forgetBaseName(forget.system, forget.time)) throw new FormatError('bad-name', `${object}: the forget inside is of ${forget.system} at ${formatTime(forget.time)} (renamed?)`);
      forgets.push({ object, forget });
    } catch (e) {
      if (!(e instanceof IebsError)) throw e;
      bad.push({ object, error: e });
    }
  }
  return { forgets, bad };
}

/** What valid forgets say was removed, by the record's sha384 (hex). */
export function forgottenByHash(forgets: Forget[]): Map<string, Forgotten & { by: string }> {
  const out = new Map<string, Forgotten & { by: string }>();
  for (const f of forgets) for (const r of f.forget.removed) if (!out.has(toHex(r.sha384))) out.set(toHex(r.sha384), { ...r, by: f.object });
  return out;
}

/**
 * The snapshot names every forget object mentions, read without checking signatures:
 * only for choosing a new snapshot's name, which must not be one a forget names (verify
 * tells snapshots apart by name within a chain). A forged forget can only make names taken.
 */
export async function forgottenNames(storage: Storage): Promise<Set<string>> {
  const out = new Set<string>();
  for (const object of await listAll(storage, `${FORGETS}/`)) {
    const size = await storage.stat(object);
    if (size === null || size > MAX_FORGET * 2) continue;
    const text = Buffer.from(await storage.get(object)).toString('utf8');
    for (const m of text.matchAll(/^forget (\S+) sha384\(/gm)) out.add(m[1]);
  }
  return out;
}

/** Signs and stores a forget under the first free name; never replaces one. Returns its object name. */
export async function writeForget(storage: Storage, f: ForgetRecord, owner: openpgp.PrivateKey): Promise<string> {
  const text = encodeForget(f);
  if (text.length > MAX_FORGET) throw new FormatError('absurd-size', `the forget of ${f.system} would be larger than 64 MiB: forget fewer snapshots at a time`);
  const armored = await ownerSign(text, owner);
  const base = forgetBaseName(f.system, f.time);
  for (let n = 1; n < 1000; n++) {
    const object = forgetObject(n === 1 ? base : `${base}-${n}`);
    if ((await storage.stat(object)) !== null) continue;
    try { await storage.put(object, armored); return object; } catch (e) {
      if (!(e instanceof IebsError) || e.code !== 'exists') throw e;
    }
  }
  throw new FormatError('absurd-size', `no free forget name for ${base}`);
}
