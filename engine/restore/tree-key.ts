/**
 * Paths in tree order (a directory, then what is inside it; names compared bytewise with
 * `/` first): the sort key of a path and back. Kept apart from composing, so that a thread
 * that only parses manifests loads nothing else.
 */

/** Sort key of a path in tree order: `/` (never inside a name) becomes 0x00 so it sorts first. */
export function treeKey(path: Uint8Array): Buffer {
  const k = Buffer.from(path);
  for (let i = k.indexOf(0x2f); i >= 0; i = k.indexOf(0x2f, i + 1)) k[i] = 0;
  return k;
}

export function fromTreeKey(k: Buffer): Buffer {
  const p = Buffer.from(k);
  for (let i = p.indexOf(0); i >= 0; i = p.indexOf(0, i + 1)) p[i] = 0x2f;
  return p;
}
