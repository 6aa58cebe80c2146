/**
 * To whom a chain's data keys are sealed (SPEC.md "Changing keys"): the key ids of the
 * PKESK packets of the sealed key in a volume's header, public information read with one
 * header read and no key. A backup compares them with its recipients to see that the
 * recipients changed since the chain's full, and then makes a full of its own.
 */
import * as openpgp from 'openpgp';
import type { Storage } from '../storage/storage.js';
import { readVolumeHeader } from './volumes.js';
import type { Snapshot } from './repo.js';

/** The key ids (16 hex digits) the first volume of `chain` has its data key sealed to, or null when it has none or it cannot be read. */
export async function sealedTo(storage: Storage, chain: Snapshot[]): Promise<Set<string> | null> {
  const first = chain.find((s) => s.record.volumes.length > 0);
  if (!first) return null;
  try {
    const { header } = await readVolumeHeader(storage, first.record.volumes[0].name);
    const message = await openpgp.readMessage({ binaryMessage: header.sealed });
    return new Set(message.getEncryptionKeyIDs().map((id) => id.toHex()));
  } catch {
    // A damaged header is for verify and restore to report: here it decides nothing.
    return null;
  }
}

/** The key ids of the recipients' encryption keys, as a sealed key's PKESK packets name them. */
export async function recipientIds(recipients: openpgp.PublicKey[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (const r of recipients) out.add((await r.getEncryptionKey()).getKeyID().toHex());
  return out;
}
