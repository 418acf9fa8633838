// KvStore's on-disk layout: how keys, revisions and records are laid out as LMDB keys and
// values. Every byte format of the store is defined here and nowhere else.
//
// Sub-databases of the one LMDB environment (<dir>/kv/state.mdb):
//   state   'state' -> KvState (msgpack): applied index, revision, compaction, leader time
//   keys    key bytes -> record: the live keys at the current revision
//   revs    revKey(main, sub) -> event: every change, in revision order (watch reads this)
//   hist    histKey(key, main, sub) -> '' : per key, the revisions that changed it (reads at a
//           past revision find the last one at or before it, then read `revs`)
//   leases  lease id -> { ttlMs, expiresAt }
//   leased  leaseKey(id, key) -> '' : the keys attached to a lease

/** A key's bytes limit: `hist` keys escape it (up to twice as long) under LMDB's 1978. */
export const MAX_KEY_BYTES = 960;

export interface KeyMeta {
  createRevision: number;
  modRevision: number;
  version: number;
  lease: number;
}

export const EVENT_PUT = 1;
export const EVENT_DELETE = 2;

export interface StoredEvent extends KeyMeta {
  type: typeof EVENT_PUT | typeof EVENT_DELETE;
  key: Buffer;
  value: Buffer;
}

const META_BYTES = 32; // four float64: revisions and lease ids stay below 2^53

function writeMeta(b: Buffer, at: number, m: KeyMeta): void {
  b.writeDoubleLE(m.createRevision, at);
  b.writeDoubleLE(m.modRevision, at + 8);
  b.writeDoubleLE(m.version, at + 16);
  b.writeDoubleLE(m.lease, at + 24);
}

function readMeta(b: Buffer, at: number): KeyMeta {
  return {
    createRevision: b.readDoubleLE(at), modRevision: b.readDoubleLE(at + 8), version: b.readDoubleLE(at + 16), lease: b.readDoubleLE(at + 24),
  };
}

/** A live key's record in `keys`: its metadata, then its value. */
export function encodeRecord(meta: KeyMeta, value: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(META_BYTES + value.byteLength);
  writeMeta(b, 0, meta);
  b.set(value, META_BYTES);
  return b;
}

export function decodeRecord(b: Buffer): { meta: KeyMeta; value: Buffer } {
  return { meta: readMeta(b, 0), value: b.subarray(META_BYTES) };
}

/** A change in `revs`: type, key length, metadata, key, value (empty for a delete). */
export function encodeEvent(type: StoredEvent['type'], key: Uint8Array, meta: KeyMeta, value: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(5 + META_BYTES + key.byteLength + value.byteLength);
  b[0] = type;
  b.writeUInt32LE(key.byteLength, 1);
  writeMeta(b, 5, meta);
  b.set(key, 5 + META_BYTES);
  b.set(value, 5 + META_BYTES + key.byteLength);
  return b;
}

export function decodeEvent(b: Buffer): StoredEvent {
  const length = b.readUInt32LE(1);
  const key = b.subarray(5 + META_BYTES, 5 + META_BYTES + length);
  return { type: b[0] as StoredEvent['type'], key, value: b.subarray(5 + META_BYTES + length), ...readMeta(b, 5) };
}

/** A revision as a big-endian key: byte order is revision order. */
export function revKey(main: number, sub: number): Buffer {
  const b = Buffer.allocUnsafe(12);
  b.writeUInt32BE(Math.floor(main / 2 ** 32), 0);
  b.writeUInt32BE(main % 2 ** 32, 4);
  b.writeUInt32BE(sub, 8);
  return b;
}

export function revOf(b: Buffer, at = 0): { main: number; sub: number } {
  return { main: b.readUInt32BE(at) * 2 ** 32 + b.readUInt32BE(at + 4), sub: b.readUInt32BE(at + 8) };
}

// A key escaped so that the escaped keys sort as the keys do and none is a prefix of
// another: 0x00 becomes 0x00 0x01, and 0x00 0x00 ends it. The revision follows.
function escapeBody(key: Uint8Array, extra: number): { b: Buffer; at: number } {
  let zeros = 0;
  for (const c of key) if (c === 0) zeros++;
  const b = Buffer.allocUnsafe(key.byteLength + zeros + extra);
  let at = 0;
  for (const c of key) {
    b[at++] = c;
    if (c === 0) b[at++] = 1;
  }
  return { b, at };
}

/** `hist` key of one change of `key`. */
export function histKey(key: Uint8Array, main: number, sub: number): Buffer {
  const { b, at } = escapeBody(key, 14);
  b[at] = 0;
  b[at + 1] = 0;
  revKey(main, sub).copy(b, at + 2);
  return b;
}

/** The `hist` keys of `key` all start with this. */
export function histKeyPrefix(key: Uint8Array): Buffer {
  const { b, at } = escapeBody(key, 2);
  b[at] = 0;
  b[at + 1] = 0;
  return b;
}

/** The `hist` keys of every key at or after `key` (in key order) start at this. */
export function histLowerBound(key: Uint8Array): Buffer {
  return escapeBody(key, 0).b;
}

/** `leased` key: the lease id, big-endian, then the key. */
export function leaseKey(lease: number, key: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(8 + key.byteLength);
  b.writeUInt32BE(Math.floor(lease / 2 ** 32), 0);
  b.writeUInt32BE(lease % 2 ** 32, 4);
  b.set(key, 8);
  return b;
}

export function leasePrefix(lease: number): Buffer {
  return leaseKey(lease, Buffer.alloc(0));
}

/** The least byte string greater than every string starting with `prefix`; undefined if
 * none is (the prefix is empty or all 0xff): no upper bound. */
export function prefixEnd(prefix: Uint8Array): Buffer | undefined {
  const b = Buffer.from(prefix);
  for (let i = b.length - 1; i >= 0; i--) {
    if (b[i]! < 0xff) {
      b[i]!++;
      return b.subarray(0, i + 1);
    }
  }
  return undefined;
}

/** What the `state` entry holds. */
export interface KvState {
  format: number;
  /** The last log entry applied. */
  applied: number;
  /** The current revision (the last change's). */
  revision: number;
  /** Reads below this revision are refused; watchers behind it are cancelled. */
  compacted: number;
  /** `revs` entries below this revision were already removed by compaction. */
  cleaned: number;
  /** The latest leader time applied (entries' times are clamped never to go back). */
  now: number;
}

export const STATE_FORMAT = 1;
