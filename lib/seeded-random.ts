// Randomness that is the same on every replica: generators seeded by an entry's log index,
// for Store's ctx.random() and SqlStore's random() and randomblob().
import { createCipheriv } from 'node:crypto';

/** splitmix64 seeded by `seed`: each call gives the next 64-bit value. */
export function splitmix64(seed: number | bigint): () => bigint {
  let s = BigInt.asUintN(64, BigInt(seed) * 0x9e3779b97f4a7c15n);
  return () => {
    s = BigInt.asUintN(64, s + 0x9e3779b97f4a7c15n);
    let z = s;
    z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
    z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn);
    return z ^ (z >> 31n);
  };
}

/** Uniform numbers in [0, 1) from splitmix64 seeded by `seed`. */
export function seededRandom(seed: number): () => number {
  const next = splitmix64(seed);
  return () => Number(next() >> 11n) / 2 ** 53;
}

/** `length` bytes of AES-128-CTR keystream keyed by two 64-bit values (fast for large blobs). */
export function seededBytes(a: bigint, b: bigint, length: number): Buffer {
  const key = Buffer.alloc(16);
  key.writeBigUInt64LE(BigInt.asUintN(64, a), 0);
  key.writeBigUInt64LE(BigInt.asUintN(64, b), 8);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(length));
}
