/**
 * All cryptography of iebs behind one module (SPEC.md "Keys" and "Block envelope").
 *
 * - Envelopes: AES-256-GCM from node:crypto (OpenSSL, AES-NI: ~2.8 GB/s per core here,
 *   several times libsodium-wrappers' XChaCha20-Poly1305 in WebAssembly).
 * - Keyed ids: HMAC-SHA256 under keys derived by HKDF-SHA256 from the dedup secret.
 * - Public-key sealing and signing: OpenPGP (openpgp.js) with v4 keys on the legacy
 *   curve and SEIPD v1, the subset GnuPG 2.2 reads.
 *
 * Any authentication failure is one `AuthError`; no partial plaintext ever escapes.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import * as openpgp from 'openpgp';
import { AuthError, FormatError, KeyError, IebsError } from '../../formats/errors.js';
import { Readable } from 'node:stream';
import { deflatePieces } from './deflate.js';
import { decodeEnvelopeHeader, encodeEnvelopeHeader, concatBytes, ENVELOPE_HEADER, TAG_LENGTH } from '../../formats/envelope.js';

/** OpenPGP settings that keep every message readable by GnuPG 2.2. */
export const PGP_CONFIG: Partial<openpgp.Config> = {
  v6Keys: false,
  aeadProtect: false,
  preferredCompressionAlgorithm: openpgp.enums.compression.zlib,
  preferredSymmetricAlgorithm: openpgp.enums.symmetric.aes256,
  preferredHashAlgorithm: openpgp.enums.hash.sha512,
};

/** Random bytes (the only randomness the engine uses). */
export function random(n: number): Uint8Array {
  return new Uint8Array(randomBytes(n));
}

/** HKDF-SHA256 of the dedup secret for one purpose: "block-id", "path-id", "index", "gear". */
export function deriveKey(secret: Uint8Array, purpose: string): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', secret, 'iebs-v1', purpose, 32));
}

// Kept apart so that reader threads load them without openpgp.
export { hmac, sha384 } from './hashes.js';

/**
 * Seals `payload` (already compressed by `codec`) into an envelope under `key`, binding
 * `context`. `plainLength` is the length before compression.
 */
export function sealEnvelope(key: Uint8Array | KeyObject, nonce: Uint8Array, codec: number, plainLength: number, payload: Uint8Array, context: Uint8Array): Uint8Array {
  return concatBytes(...sealEnvelopeParts(key, nonce, codec, plainLength, payload, context));
}

/**
 * `sealEnvelope` as its pieces in order (header, ciphertext, tag), for a writer that
 * appends them one after another: joining them would copy every stored byte once more.
 */
export function sealEnvelopeParts(key: Uint8Array | KeyObject, nonce: Uint8Array, codec: number, plainLength: number, payload: Uint8Array, context: Uint8Array): Uint8Array[] {
  const header = encodeEnvelopeHeader({ codec, plainLength, nonce });
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(concatBytes(header, context));
  const parts: Uint8Array[] = [header, c.update(payload)];
  const fin = c.final();
  if (fin.length) parts.push(fin);
  parts.push(c.getAuthTag());
  return parts;
}

/**
 * Opens an envelope; returns the codec, the recorded plain length and the compressed
 * payload. Throws AuthError if it does not authenticate under `key` and `context`.
 */
export function openEnvelope(key: Uint8Array | KeyObject, env: Uint8Array, context: Uint8Array, maxPlain: number, where: string): { codec: number; plainLength: number; payload: Uint8Array } {
  const h = decodeEnvelopeHeader(env, maxPlain, where);
  const d = createDecipheriv('aes-256-gcm', key, h.nonce);
  d.setAAD(concatBytes(env.subarray(0, ENVELOPE_HEADER), context));
  d.setAuthTag(env.subarray(env.length - TAG_LENGTH));
  let payload: Buffer;
  try {
    payload = d.update(env.subarray(ENVELOPE_HEADER, env.length - TAG_LENGTH));
    // GCM gives all of its output from update; final only checks the tag (no copy to join).
    const rest = d.final();
    if (rest.length) payload = Buffer.concat([payload, rest]);
  } catch (cause) {
    throw new AuthError('auth-failed', `${where}: data does not authenticate (damaged, moved or wrong key)`, { cause });
  }
  return { codec: h.codec, plainLength: h.plainLength, payload: new Uint8Array(payload.buffer, payload.byteOffset, payload.length) };
}

/** Encrypts `data` to the recipients and signs it with `signer`; binary OpenPGP message. */
export async function pgpSealBytes(data: Uint8Array, recipients: openpgp.PublicKey[], signer: openpgp.PrivateKey): Promise<Uint8Array> {
  const message = await openpgp.createMessage({ binary: data, format: 'binary' });
  return (await openpgp.encrypt({ message, encryptionKeys: recipients, signingKeys: signer, format: 'binary', config: PGP_CONFIG })) as Uint8Array;
}

/**
 * Decrypts a binary OpenPGP message and checks that it carries a valid signature by
 * one of `verifiers`. Wrong key, damage or a missing signature is an AuthError.
 */
export async function pgpOpenBytes(bytes: Uint8Array, decryptionKeys: openpgp.PrivateKey[], verifiers: openpgp.PublicKey[], where: string): Promise<Uint8Array> {
  let message: openpgp.Message<Uint8Array>;
  try {
    message = await openpgp.readMessage({ binaryMessage: bytes });
  } catch (cause) {
    throw new FormatError('bad-pgp', `${where}: not an OpenPGP message (${(cause as Error).message})`, { cause });
  }
  checkSealedTo(message, decryptionKeys, where);
  try {
    const { data, signatures } = await openpgp.decrypt({ message, decryptionKeys, verificationKeys: verifiers, expectSigned: true, format: 'binary', config: PGP_CONFIG });
    await signatures[0].verified;
    return data as Uint8Array;
  } catch (cause) {
    throw new AuthError('auth-failed', `${where}: cannot decrypt or verify (${firstLine((cause as Error).message)})`, { cause });
  }
}

/**
 * Decrypts a binary OpenPGP message as a stream and hands each plaintext chunk to
 * `onData` as it comes. The signature (by one of `verifiers`) and the integrity check
 * are only known at the end: the caller MUST NOT act on what it was handed until this
 * resolves (it may parse and collect; it discards on error). Memory stays bounded by the
 * chunk size, not the message size. An `onData` that returns a promise holds the stream
 * until it settles.
 */
export async function pgpOpenStream(source: AsyncIterable<Uint8Array>, decryptionKeys: openpgp.PrivateKey[], verifiers: openpgp.PublicKey[], where: string, onData: (chunk: Uint8Array) => void | Promise<void>): Promise<void> {
  const input = pullStream(source);
  let message: openpgp.Message<ReadableStream<Uint8Array>>;
  try {
    message = await openpgp.readMessage({ binaryMessage: input });
  } catch (cause) {
    throw new FormatError('bad-pgp', `${where}: not an OpenPGP message (${firstLine((cause as Error).message)})`, { cause });
  }
  checkSealedTo(message, decryptionKeys, where);
  try {
    const config = { ...PGP_CONFIG, allowUnauthenticatedStream: true };
    const { data, signatures } = await openpgp.decrypt({ message, decryptionKeys, verificationKeys: verifiers, expectSigned: true, format: 'binary', config });
    for await (const chunk of Readable.fromWeb(data as never)) await onData(chunk as Uint8Array);
    await signatures[0].verified;
  } catch (cause) {
    if (cause instanceof IebsError) throw cause;
    throw new AuthError('auth-failed', `${where}: cannot decrypt or verify (${firstLine((cause as Error).message)})`, { cause });
  }
}

/**
 * Signs (one-pass), ZLIB-compresses and encrypts `source` as one binary OpenPGP message,
 * as a stream, in bounded memory. openpgp.js would compress through Node's
 * CompressionStream, which takes its whole input before it yields much output (a
 * manifest of a million files was held whole); so the compressed packet's body is made
 * here, in pieces compressed side by side on libuv's pool (deflate.ts), and openpgp.js
 * only encrypts it. A piece's output (about 300 KiB of a manifest's 1 MiB) becomes the
 * message's partial packets: with node:zlib's 16 KiB chunks, a reader's chain of streams
 * took the 6.9 MB manifest of the bench corpus in 700 pieces, and decrypted it about a
 * fifth slower.
 */
export async function pgpSealStream(source: AsyncIterable<Uint8Array>, recipients: openpgp.PublicKey[], signer: openpgp.PrivateKey): Promise<ReadableStream<Uint8Array>> {
  const message = await openpgp.createMessage({ binary: pullStream(source), format: 'binary' });
  // The typings of Message.sign lag its code, which takes recipient keys second.
  const sign = message.sign as unknown as (keys: openpgp.PrivateKey[], recipientKeys: openpgp.PublicKey[], signature: null, keyIDs: [], date: Date, userIDs: [], recipientUserIDs: [], notations: [], config: Partial<openpgp.Config>) => Promise<openpgp.Message<ReadableStream<Uint8Array>>>;
  const signed = await sign.call(message, [signer], [], null, [], new Date(), [], [], [], { ...openpgp.config, ...PGP_CONFIG });
  const compressed = new openpgp.CompressedDataPacket() as unknown as { algorithm: number; compressed: unknown };
  compressed.algorithm = openpgp.enums.compression.zlib;
  compressed.compressed = pullStream(deflatePieces(Readable.fromWeb(signed.packets.write() as never)));
  const list = new openpgp.PacketList();
  list.push(compressed as unknown as openpgp.CompressedDataPacket);
  const uncompressed = { ...PGP_CONFIG, preferredCompressionAlgorithm: openpgp.enums.compression.uncompressed };
  return (await openpgp.encrypt({ message: new openpgp.Message(list) as openpgp.Message<ReadableStream<Uint8Array>>, encryptionKeys: recipients, format: 'binary', config: uncompressed })) as unknown as ReadableStream<Uint8Array>;
}

/**
 * A web stream that takes the next chunk of `source` only when its reader asks for it.
 * openpgp.js reads its input as fast as it is given: a stream that fills itself ahead
 * (as `Readable.toWeb` does here) made it hold a whole manifest in memory.
 */
export function pullStream(source: AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> {
  const it = source[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await it.next();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel() { await it.return?.(); },
  }, { highWaterMark: 1 });
}

/** Says "wrong key" plainly when a message is sealed to none of the keys we hold. */
function checkSealedTo(message: openpgp.Message<unknown>, decryptionKeys: openpgp.PrivateKey[], where: string): void {
  const sealedTo = message.getEncryptionKeyIDs().map((id) => id.toHex());
  const held = new Set(decryptionKeys.flatMap((k) => [k.getKeyID(), ...k.getSubkeys().map((s) => s.getKeyID())]).map((id) => id.toHex()));
  if (sealedTo.length > 0 && !sealedTo.some((id) => held.has(id) || /^0+$/.test(id))) {
    throw new KeyError('wrong-key', `${where}: encrypted to key ${sealedTo.join(', ')}, not to this restore key (wrong key for this repository?)`);
  }
}

/** Signs `text` as an OpenPGP cleartext message. */
export async function pgpClearSign(text: string, signer: openpgp.PrivateKey): Promise<string> {
  const message = await openpgp.createCleartextMessage({ text });
  return openpgp.sign({ message, signingKeys: signer, config: PGP_CONFIG });
}

/**
 * Verifies an OpenPGP cleartext-signed message and returns the signed text. The text
 * must be signed by one of `verifiers`.
 */
export async function pgpClearVerify(armored: string, verifiers: openpgp.PublicKey[], where: string): Promise<string> {
  let message: openpgp.CleartextMessage;
  try {
    message = await openpgp.readCleartextMessage({ cleartextMessage: armored });
  } catch (cause) {
    throw new FormatError('bad-pgp', `${where}: not an OpenPGP signed text (${firstLine((cause as Error).message)})`, { cause });
  }
  try {
    const { data, signatures } = await openpgp.verify({ message, verificationKeys: verifiers, expectSigned: true, config: PGP_CONFIG });
    await signatures[0].verified;
    return data.endsWith('\n') ? data : data + '\n';
  } catch (cause) {
    throw new AuthError('bad-signature', `${where}: signature does not verify (${firstLine((cause as Error).message)})`, { cause });
  }
}

/**
 * As pgpClearVerify, and says which of `verifiers` made the signature: a host key
 * replaced by the owner (SPEC.md "Changing keys") is trusted only up to a point.
 */
export async function pgpClearVerifySigner(armored: string, verifiers: openpgp.PublicKey[], where: string): Promise<{ text: string; signer: openpgp.PublicKey }> {
  const text = await pgpClearVerify(armored, verifiers, where);
  const message = await openpgp.readCleartextMessage({ cleartextMessage: armored });
  for (const id of message.getSigningKeyIDs()) {
    const signer = verifiers.find((v) => v.getKeys(id).length > 0);
    if (signer) return { text, signer };
  }
  throw new AuthError('bad-signature', `${where}: signature does not verify (no signing key id)`);
}

function firstLine(s: string): string {
  return s.split('\n')[0].slice(0, 200);
}
