/**
 * The on-disk scratch structures that keep memory flat (engine/sorter.ts): external sort
 * against an in-memory stable sort, with arenas small enough that every path spills;
 * sorted tables against a Map; the Bloom filter has no false negatives.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { ExternalSorter, SortedTable, IdBloom, Bitset } from '../engine/scratch/sorter.js';
import { tempDir } from './helpers.js';

/** Pairs with many repeated keys (so stability shows) and values of every length. */
function pairs(n: number, keyBytes: number): [Buffer, Buffer][] {
  const keys = Array.from({ length: Math.ceil(n / 3) }, () => randomBytes(1 + (keyBytes ? keyBytes - 1 : Math.floor(Math.random() * 40))));
  return Array.from({ length: n }, (_, i) => [keys[Math.floor(Math.random() * keys.length)], Buffer.from(`${i}:${'v'.repeat(i % 300)}`)]);
}

const stableSorted = (ps: [Buffer, Buffer][]) => ps.map((p, i) => ({ p, i })).sort((a, b) => Buffer.compare(a.p[0], b.p[0]) || a.i - b.i).map((x) => x.p);

for (const arena of [1 << 20, 4096, 700]) {
  test(`external sort equals a stable in-memory sort (arena ${arena} bytes)`, () => {
    const dir = tempDir('sort');
    const input = pairs(5000, 0);
    const s = new ExternalSorter(dir, 't', arena);
    for (const [k, v] of input) s.add(k, v);
    const want = stableSorted(input);
    for (let pass = 0; pass < 2; pass++) {
      const got = [...s.sorted()].map(([k, v]) => [Buffer.from(k), Buffer.from(v)]);
      assert.equal(got.length, want.length);
      for (let i = 0; i < got.length; i++) {
        assert.ok(got[i][0].equals(want[i][0]) && got[i][1].equals(want[i][1]), `entry ${i} differs (pass ${pass})`);
      }
    }
    assert.equal(readdirSync(dir).length > 0, arena < 1 << 20, 'spilled runs exist exactly when the arena is small');
    s.close();
    assert.deepEqual(readdirSync(dir), []);
  });
}

test('keys that share a long prefix, end inside it or just after it, sort bytewise', () => {
  // The sorter compares six bytes after the shared prefix as a number first.
  const shared = Buffer.from('home\0user\0src\0');
  const tails = ['', '\0', 'a', 'a\0', 'ab', 'abcdef', 'abcdefg', 'abcdeg', '\xff', '\xff\xff\xff\xff\xff\xff\xff', 'b'];
  for (const arena of [1 << 20, 300]) {
    const input: [Buffer, Buffer][] = [];
    for (let i = 0; i < 3000; i++) {
      const tail = Math.random() < 0.5 ? tails[i % tails.length] : randomBytes(Math.floor(Math.random() * 9)).toString('latin1');
      input.push([Buffer.concat([shared, Buffer.from(tail, 'latin1')]), Buffer.from(String(i))]);
    }
    // And, once in a while, a key that is only part of the shared prefix.
    input.push([shared.subarray(0, 7), Buffer.from('short')]);
    const s = new ExternalSorter(tempDir('sort'), 'shared', arena);
    for (const [k, v] of input) s.add(k, v);
    const got = [...s.sorted()].map(([k, v]) => `${k.toString('hex')}:${v}`);
    assert.deepEqual(got, stableSorted(input).map(([k, v]) => `${k.toString('hex')}:${v}`), `arena ${arena}`);
    s.close();
  }
});

test('tree keys: folders within folders, runs that share long prefixes, zero bytes and repeats sort bytewise and stably', () => {
  // The sorter takes four bytes at a time, deeper only within runs whose bytes so far
  // are equal; a key that ends must sort before one that goes on with a zero byte.
  const words = ['', '\0', '\0\0', 'a', 'a\0', 'a\0b', 'ab', 'abc', 'abcd', 'abcd\0', 'abcde', '\xff\xff', 'src', 'src\0main'];
  const long = 'x'.repeat(3000);
  const input: [Buffer, Buffer][] = [];
  for (let i = 0; i < 6000; i++) {
    const depth = 1 + Math.floor(Math.random() * 4);
    const parts = Array.from({ length: depth }, () => words[Math.floor(Math.random() * words.length)]);
    if (i % 5 === 0) parts.unshift(long);
    if (i % 7 === 0) parts.push(randomBytes(Math.floor(Math.random() * 6)).toString('latin1'));
    input.push([Buffer.from(parts.join('\0'), 'latin1'), Buffer.from(String(i))]);
  }
  for (const arena of [1 << 22, 20000]) {
    const s = new ExternalSorter(tempDir('sort'), 'tree', arena);
    for (const [k, v] of input) s.add(k, v);
    const got = [...s.sorted()].map(([k, v]) => `${k.toString('hex')}:${v}`);
    assert.deepEqual(got, stableSorted(input).map(([k, v]) => `${k.toString('hex')}:${v}`), `arena ${arena}`);
    s.close();
  }
});

test('an entry larger than the arena is sorted with the rest', () => {
  const s = new ExternalSorter(tempDir('sort'), 'big', 256);
  s.add(Buffer.from('m'), Buffer.alloc(10000, 1));
  s.add(Buffer.from('a'), Buffer.from('x'));
  s.add(Buffer.from('z'), Buffer.alloc(300, 2));
  assert.deepEqual([...s.sorted()].map(([k, v]) => `${k}${v.length}`), ['a1', 'm10000', 'z300']);
  s.close();
});

test('a sorted table finds every key with its ordinal, and no other', () => {
  const dir = tempDir('table');
  const keys = Array.from({ length: 20000 }, () => randomBytes(32)).sort(Buffer.compare);
  const t = new SortedTable(`${dir}/t`, 32);
  keys.forEach((k, i) => t.append(k, Buffer.alloc(i % 200, i & 0xff)));
  t.finish();
  keys.forEach((k, i) => {
    const got = t.get(k);
    assert.ok(got, `key ${i} found`);
    assert.equal(got.ordinal, i);
    assert.ok(got.value.equals(Buffer.alloc(i % 200, i & 0xff)));
  });
  for (let i = 0; i < 2000; i++) assert.equal(t.get(randomBytes(32)), undefined);
  assert.equal(t.get(Buffer.alloc(32, 0)), undefined, 'before the first key');
  assert.equal(t.get(Buffer.alloc(32, 0xff)), undefined, 'after the last key');
  let n = 0;
  for (const [k, v, ordinal] of t.entries()) {
    assert.ok(k.equals(keys[n]) && ordinal === n && v.length === n % 200);
    n++;
  }
  assert.equal(n, keys.length);
  t.close();
  assert.deepEqual(readdirSync(dir), []);
});

test('a sorted table refuses keys out of order or of the wrong length', () => {
  const t = new SortedTable(`${tempDir('table')}/t`, 4);
  t.append(Buffer.from('bbbb'), Buffer.alloc(0));
  assert.throws(() => t.append(Buffer.from('aaaa'), Buffer.alloc(0)), /out of order/);
  assert.throws(() => t.append(Buffer.from('bbbb'), Buffer.alloc(0)), /out of order/);
  assert.throws(() => t.append(Buffer.from('ccc'), Buffer.alloc(0)), /key of 3 bytes/);
  t.finish().close();
});

test('an empty table finds nothing', () => {
  const t = new SortedTable(`${tempDir('table')}/t`, 32).finish();
  assert.equal(t.get(randomBytes(32)), undefined);
  assert.deepEqual([...t.entries()], []);
  t.close();
});

test('the id Bloom filter has no false negatives and few false positives', () => {
  const ids = Array.from({ length: 10000 }, () => randomBytes(32));
  const b = new IdBloom(ids.length);
  for (const id of ids) b.add(id);
  for (const id of ids) assert.ok(b.has(id));
  let false_ = 0;
  for (let i = 0; i < 10000; i++) if (b.has(randomBytes(32))) false_++;
  assert.ok(false_ < 300, `${false_} false positives in 10000`);
});

test("the id Bloom filter's bits are an id's first seven big-endian words, and each one counts", () => {
  const b = new IdBloom(1000);
  const bits = b.words.length * 32;
  for (let n = 0; n < 200; n++) {
    const id = randomBytes(32);
    const dv = new DataView(id.buffer, id.byteOffset, id.byteLength);
    const want = new Set(Array.from({ length: 7 }, (_, i) => dv.getUint32(i * 4) % bits));
    const one = new IdBloom(0, new Uint32Array(b.words.length));
    one.add(id);
    const set = [];
    for (let bit = 0; bit < bits; bit++) if (one.words[bit >>> 5] & (1 << (bit & 31))) set.push(bit);
    assert.deepEqual(set, [...want].sort((x, y) => x - y));
    // Clearing any one of its bits makes the filter say no.
    for (const bit of want) {
      const w = new Uint32Array(one.words);
      w[bit >>> 5] &= ~(1 << (bit & 31));
      assert.equal(IdBloom.of(w).has(id), false);
    }
  }
});

test('a bitset remembers exactly what was set', () => {
  const s = new Bitset(1000);
  for (let i = 0; i < 1000; i += 7) s.set(i);
  for (let i = 0; i < 1000; i++) assert.equal(s.has(i), i % 7 === 0);
});
