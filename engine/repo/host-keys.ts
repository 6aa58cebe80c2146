/**
 * Host key statements (SPEC.md "Changing keys", replacing the host key): reading and
 * checking `keys/host.N.asc` against the owner keys, the trust they give (which host
 * keys sign valid records, and how far each replaced key's records are trusted), and
 * writing a new one. A statement the host key signed, or whose text or keys fail, is
 * returned in `bad` and gives no trust.
 */
import * as openpgp from 'openpgp';
import { FormatError, IebsError } from '../../formats/errors.js';
import { decodeHostKey, hostKeyNumber, hostKeyObject, MAX_HOST_KEY, type HostKeyStatement, type HostTrustPoint } from '../../formats/host-key.js';
import { listAll, type Storage } from '../storage/storage.js';
import { ownerSign, ownerVerify } from '../crypto/owner.js';

/** A statement that verified, with its two keys parsed. */
export interface HostStatement { object: string; n: number; statement: HostKeyStatement; oldKey: openpgp.PublicKey; newKey: openpgp.PublicKey }
/** A statement that did not: it gives no trust. */
export interface BadStatement { object: string; error: IebsError }

/** Which host keys sign valid records, and how far (SPEC.md "Changing keys"). */
export interface HostTrust {
  /** Every host key whose signature may make a record valid: the given ones and those of the statements. */
  keys: openpgp.PublicKey[];
  /** For a replaced key (by fingerprint): its trust point per system, and the statement that set it. */
  limits: Map<string, { object: string; systems: Map<string, HostTrustPoint> }>;
  statements: HostStatement[];
  bad: BadStatement[];
}

/** The `keys/` objects that are host key statements, by number. */
export async function statementObjects(storage: Storage): Promise<{ object: string; n: number }[]> {
  const out: { object: string; n: number }[] = [];
  for (const object of await listAll(storage, 'keys/')) {
    const n = hostKeyNumber(object);
    if (n !== null) out.push({ object, n });
  }
  return out.sort((a, b) => a.n - b.n);
}

async function readBinaryKey(bytes: Uint8Array, fingerprint: string, where: string, what: string): Promise<openpgp.PublicKey> {
  let key: openpgp.PublicKey;
  try {
    key = (await openpgp.readKey({ binaryKey: bytes })).toPublic();
    await key.verifyPrimaryKey();
  } catch (cause) {
    throw new FormatError('bad-key', `${where}: the ${what} key does not parse or verify (${(cause as Error).message.split('\n')[0]})`, { cause });
  }
  if (key.getFingerprint() !== fingerprint) throw new FormatError('bad-key', `${where}: the ${what} key is ${key.getFingerprint()}, the statement names ${fingerprint} (fingerprint mismatch)`);
  return key;
}

/**
 * Checks one stored statement: signed by one of `owners` (one signed by a host key is
 * refused as unauthorized: `hostKeys`, and the keys the statement itself carries), its
 * text decodes, and each key it carries has the fingerprint it names.
 */
export async function checkStatement(armored: string, owners: openpgp.PublicKey[], hostKeys: openpgp.PublicKey[], where: string): Promise<Omit<HostStatement, 'object' | 'n'>> {
  // The keys inside name the host keys a forger would sign with: so a statement the
  // (old or new) host key signed is called unauthorized, not merely a bad signature.
  let carried: openpgp.PublicKey[] = [];
  try {
    const unsigned = decodeHostKey((await openpgp.readCleartextMessage({ cleartextMessage: armored })).getText().replace(/\r\n/g, '\n').replace(/\n?$/, '\n'), where);
    for (const b of [unsigned.oldKey, unsigned.newKey]) carried.push((await openpgp.readKey({ binaryKey: b })).toPublic());
  } catch { carried = []; }
  const text = await ownerVerify(armored, owners, [...hostKeys, ...carried], where, 'host key statement');
  const statement = decodeHostKey(text, where);
  const oldKey = await readBinaryKey(statement.oldKey, statement.old, where, 'old');
  const newKey = await readBinaryKey(statement.newKey, statement.new, where, 'new');
  if (owners.some((o) => o.getFingerprint() === statement.new)) throw new FormatError('bad-key', `${where}: the new host key is an owner key (a recipient)`);
  return { statement, oldKey, newKey };
}

/**
 * Reads every statement and the trust they give on top of `hostKeys` (the host keys of
 * the user's key file, or the repository's). Statements are taken in number order; a
 * valid one must replace the key the valid one before it brought in (a chain A, B, C).
 */
export async function hostTrust(storage: Storage, hostKeys: openpgp.PublicKey[], owners: () => Promise<openpgp.PublicKey[]>): Promise<HostTrust> {
  const trust: HostTrust = { keys: [...hostKeys], limits: new Map(), statements: [], bad: [] };
  const objects = await statementObjects(storage);
  if (objects.length === 0) return trust;
  const ownerKeys = await owners();
  let head: string | undefined;
  for (const { object, n } of objects) {
    try {
      const size = await storage.stat(object);
      if (size === null) continue;
      if (size > MAX_HOST_KEY * 2) throw new FormatError('absurd-size', `${object}: larger than ${MAX_HOST_KEY * 2} bytes`);
      const armored = Buffer.from(await storage.get(object)).toString('utf8');
      const s = await checkStatement(armored, ownerKeys, trust.keys, object);
      if (head !== undefined && s.statement.old !== head) throw new FormatError('bad-key', `${object}: replaces host key ${s.statement.old.slice(-16)}, but the host key is ${head.slice(-16)} since an earlier statement`);
      head = s.statement.new;
      trust.statements.push({ object, n, ...s });
    } catch (e) {
      if (!(e instanceof IebsError)) throw e;
      trust.bad.push({ object, error: e });
    }
  }
  for (const s of trust.statements) {
    for (const k of [s.oldKey, s.newKey]) if (!trust.keys.some((x) => x.getFingerprint() === k.getFingerprint())) trust.keys.push(k);
    trust.limits.set(s.statement.old, { object: s.object, systems: new Map(s.statement.trust.map((t) => [t.system, t.point])) });
  }
  return trust;
}

/** Signs and stores statement number `n`; never replaces one (a taken number is an error). */
export async function writeStatement(storage: Storage, n: number, text: string, owner: openpgp.PrivateKey): Promise<string> {
  const object = hostKeyObject(n);
  const armored = await ownerSign(text, owner);
  try { await storage.put(object, armored); } catch (e) {
    if (e instanceof IebsError && e.code === 'exists') throw new IebsError('exists', `${storage.where}/${object} was written by another run at the same moment; run the command again`, { cause: e });
    throw e;
  }
  return object;
}
