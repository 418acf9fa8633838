// KvStore: an etcd-style key-value store whose state lives on disk in LMDB (lmdb-js), written
// only by applying the log in order. Every change gets a cluster-wide revision; the changes
// are kept by revision (watch reads them, and reads at a past revision) until compacted.
// "The store is the state": a batch of entries is one LMDB write transaction that also
// records the applied index, so a restart resumes from the store without replay, and a
// snapshot is a consistent copy of it. docs/kv-store.md has the layout and the arguments.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { copyDurably, fsyncPath, renameDurably, writeDurably } from '../durable-files.js';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { deserialize, serialize } from 'node:v8';
import type { Database, RootDatabase } from 'lmdb';
import { ReplicaFacade, catchUpOnOpen, type ReplicaEvents } from '../replica-facade.js';
import { KvError, RaftError } from '../errors.js';
import { RaftNode, type Entry, type RaftNodeOptions, type SnapshotReader, type SnapshotWriter, type StateMachine } from '../raft-node.js';
import {
  EVENT_DELETE, EVENT_PUT, MAX_KEY_BYTES, STATE_FORMAT, decodeEvent, decodeRecord, encodeEvent, encodeRecord, histKey,
  histKeyPrefix, histLowerBound, leaseKey, leasePrefix, prefixEnd, revKey, revOf,
  type KeyMeta, type KvState, type StoredEvent,
} from './layout.js';

export type KvKey = string | Uint8Array;
export type KvValue = string | Uint8Array;
/** How keys and values come back: strings (UTF-8) or Buffers. */
export type KvEncoding = 'utf8' | 'buffer';
type Data<E extends KvEncoding> = E extends 'buffer' ? Buffer : string;
/** A lease's id, as `grantLease` returns it (a plain number would not type-check). */
export type LeaseId = number & { readonly __lease: unique symbol };

export interface KeyValue<E extends KvEncoding = 'utf8'> {
  key: Data<E>;
  value: Data<E>;
  /** The revision that created the key (since it last did not exist). */
  createRevision: number;
  /** The revision of the key's last change. */
  modRevision: number;
  /** Changes since it was created: 1 after the first put. */
  version: number;
  /** The lease the key is attached to, 0 if none. */
  lease: LeaseId | 0;
}

/** One key; every key starting with `prefix`; or the keys in [from, to) (to the end if no `to`). */
export type RangeSelector = KvKey | { prefix: KvKey } | { from: KvKey; to?: KvKey };

/** 'linearizable' (default): after a read barrier through the leader; 'lease': the leader's
 * lease when valid; 'local': this replica's state as applied so far, at once. */
export type KvConsistency = 'linearizable' | 'lease' | 'local';

export interface KvReadOptions {
  consistency?: KvConsistency;
  /** Read the state as it was at this revision (≥ the compact revision). */
  revision?: number;
  signal?: AbortSignal;
  timeoutMs?: number;
}
export interface KvRangeOptions extends KvReadOptions {
  /** At most this many keys (in key order); `more` says whether there were more. */
  limit?: number;
  /** Values come back empty. */
  keysOnly?: boolean;
}
export interface RangeResult<E extends KvEncoding = 'utf8'> {
  kvs: KeyValue<E>[];
  more: boolean;
  /** The store's revision the read saw (its latest, or the one asked for). */
  revision: number;
}
export interface KvWriteOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}
export interface PutOptions extends KvWriteOptions {
  lease?: LeaseId;
}

export type CompareOp = '==' | '!=' | '<' | '>';
/** A condition of a transaction, on one key (a missing key has version, revisions and lease
 * 0; a comparison of its value is false). */
export type Compare =
  | { key: KvKey; target: 'value'; op: CompareOp; value: KvValue }
  | { key: KvKey; target: 'version' | 'createRevision' | 'modRevision' | 'lease'; op: CompareOp; value: number };

export type TxnOp =
  | { put: [key: KvKey, value: KvValue] | [key: KvKey, value: KvValue, options: { lease?: LeaseId }] }
  | { get: KvKey }
  | { range: RangeSelector | [selector: RangeSelector, options: { limit?: number; keysOnly?: boolean }] }
  | { delete: RangeSelector };
export type TxnOpResult<E extends KvEncoding = 'utf8'> =
  | { revision: number }
  | KeyValue<E>
  | undefined
  | RangeResult<E>
  | { deleted: number };
export interface Txn {
  compare?: readonly Compare[];
  success?: readonly TxnOp[];
  failure?: readonly TxnOp[];
}
export interface TxnResult<E extends KvEncoding = 'utf8'> {
  succeeded: boolean;
  /** The store's revision after the transaction (its own if it changed anything). */
  revision: number;
  /** One per op of the branch that ran, in order. */
  results: TxnOpResult<E>[];
}

export interface KvEvent<E extends KvEncoding = 'utf8'> {
  type: 'put' | 'delete';
  /** After the change; for a delete, the key with modRevision the deletion's and the rest 0. */
  kv: KeyValue<E>;
}

export interface WatchOptions {
  /** The first revision to deliver (default: the next one). Resume with the last revision
   * seen + 1: every change is delivered once, in revision order, across restarts. */
  fromRevision?: number;
  signal?: AbortSignal;
}

export interface LeaseInfo {
  id: LeaseId;
  ttlMs: number;
  /** Leader time (ms since the epoch) after which the lease expires unless kept alive. */
  expiresAt: number;
}

export interface KvStoreOptions<E extends KvEncoding = 'utf8'> extends Omit<RaftNodeOptions, 'stateMachine'> {
  encoding?: E;
  /** As Store's: `open` resolves once this replica applied what its group had committed. */
  catchUpOnOpen?: boolean;
  openTimeoutMs?: number;
  /** Largest value, default 1 MiB. */
  maxValueBytes?: number;
  /** Most ops in one transaction (each branch), default 1024. */
  maxTxnOps?: number;
  /** Largest request (an entry in the log), default 8 MiB. */
  maxRequestBytes?: number;
}

export interface KvSnapshotEvent {
  /** The last entry the copy holds (at or after the index the engine asked for). */
  index: number;
  durationMs: number;
  bytes: number;
}

export interface KvStoreStats {
  entriesApplied: number;
  /** Entries the store already held when they came (a restart, a snapshot's copy): not run. */
  entriesSkipped: number;
  snapshotsTaken: number;
  snapshotsInstalled: number;
  lastSnapshot: KvSnapshotEvent | null;
  lastInstall: KvSnapshotEvent | null;
  /** Leases this replica saw expire (the same on every replica). */
  leasesExpired: number;
  /** Watches open now. */
  watchers: number;
  /** This open found the store possibly torn by a machine crash and rebuilt it from the
   * replica's snapshot and log. */
  discardedAfterMachineCrash: boolean;
}

export interface KvStoreEvents extends ReplicaEvents {
  applied: [index: number, revision: number];
  snapshot: [info: KvSnapshotEvent];
  installed: [info: KvSnapshotEvent];
  /** Leases revoked because they expired, at `revision` (on every replica alike). */
  expired: [leases: LeaseId[], revision: number];
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

// A selector as the log carries it: [from, end (exclusive; null: to the end), single key].
type Sel = [from: Buffer, end: Buffer | null, single: boolean];
type RawKv = { key: Buffer; value: Buffer } & KeyMeta;
type RawRange = { kvs: RawKv[]; more: boolean; revision: number };
type RawOp = ['put', Buffer, Buffer, number] | ['get', Buffer] | ['range', Sel, number, boolean] | ['delete', Sel];
type RawCompare = [key: Buffer, target: Compare['target'], op: CompareOp, value: Buffer | number];

const ENTRY_FORMAT = 1;
const KIND_PUT = 1;
const KIND_DELETE = 2;
const KIND_TXN = 3;
const KIND_GRANT = 4;
const KIND_KEEPALIVE = 5;
const KIND_REVOKE = 6;
const KIND_EXPIRE = 7;
const KIND_PROMOTE = 8;
const KIND_COMPACT = 9;
const DB_FILE = 'state.mdb';
const SNAPSHOT_FILE = 'state.mdb';
const EMPTY = Buffer.alloc(0);
// A watch yields whole revisions, at least one, until this many events.
const WATCH_CHUNK = 1000;
// Revisions compaction removes per apply batch: cleaning never holds the loop for long.
const CLEAN_BUDGET = 2000;
const EXPIRY_CHECK_MS = 50;
const MAP_SIZE = 2 ** 40;

type Lmdb = typeof import('lmdb');
let lmdb: Lmdb | undefined;
function loadLmdb(): Lmdb {
  if (lmdb) return lmdb;
  try {
    lmdb = createRequire(import.meta.url)('lmdb') as Lmdb;
    return lmdb;
  } catch (cause) {
    throw new KvError('ERR_KV_DEPENDENCY', `KvStore needs lmdb version 3 (npm install lmdb@3): ${String(cause)}`, { cause });
  }
}

function toBytes(v: unknown, what: string): Buffer {
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  throw new KvError('ERR_KV_BAD_ARGUMENT', `${what} must be a string or a Uint8Array, got ${v === null ? 'null' : typeof v}`);
}

function keyBytes(k: unknown, what = 'key'): Buffer {
  const b = toBytes(k, what);
  if (b.length === 0) throw new KvError('ERR_KV_BAD_ARGUMENT', `${what} must not be empty`);
  if (b.length > MAX_KEY_BYTES)
    throw new KvError('ERR_KV_TOO_LARGE', `${what} is ${b.length} bytes; keys are at most ${MAX_KEY_BYTES}`, { limit: MAX_KEY_BYTES });
  return b;
}

function selector(s: unknown, what: string): Sel {
  if (typeof s === 'string' || s instanceof Uint8Array) return [keyBytes(s, what), null, true];
  if (typeof s === 'object' && s !== null) {
    if ('prefix' in s) {
      const p = toBytes((s as { prefix: unknown }).prefix, `${what}.prefix`);
      if (p.length > MAX_KEY_BYTES) throw new KvError('ERR_KV_TOO_LARGE', `${what}.prefix is over ${MAX_KEY_BYTES} bytes`, { limit: MAX_KEY_BYTES });
      return [p, prefixEnd(p) ?? null, false];
    }
    if ('from' in s) {
      const { from, to } = s as { from: unknown; to?: unknown };
      const f = toBytes(from, `${what}.from`);
      const t = to === undefined ? null : toBytes(to, `${what}.to`);
      if (f.length > MAX_KEY_BYTES || (t && t.length > MAX_KEY_BYTES + 1))
        throw new KvError('ERR_KV_TOO_LARGE', `${what}: range bounds are at most ${MAX_KEY_BYTES} bytes`, { limit: MAX_KEY_BYTES });
      return [f, t, false];
    }
  }
  throw new KvError('ERR_KV_BAD_ARGUMENT', `${what} must be a key, { prefix } or { from, to? }`);
}

function inSel(key: Buffer, s: Sel): boolean {
  if (s[2]) return key.equals(s[0]);
  return Buffer.compare(key, s[0]) >= 0 && (s[1] === null || Buffer.compare(key, s[1]) < 0);
}

function positiveInt(v: unknown, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isSafeInteger(v) || (v as number) < 1 || (v as number) > max)
    throw new KvError('ERR_KV_BAD_ARGUMENT', `${what} must be an integer from 1 to ${max}, got ${String(v)}`);
  return v as number;
}

function leaseArg(v: unknown): number {
  if (v === undefined || v === 0) return 0;
  return positiveInt(v, 'lease');
}

function compareNumbers(a: number, op: CompareOp, b: number): boolean {
  return op === '==' ? a === b : op === '!=' ? a !== b : op === '<' ? a < b : a > b;
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

// This boot of the machine, or null where the kernel does not say (not Linux).
function bootId(): string | null {
  const forTests = process.env['RAFTSTORE_TEST_BOOT_ID'];
  if (forTests) return forTests; // test/kv-store.test.ts plays a machine crash with it
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
  } catch {
    return null;
  }
}



interface Dbs {
  env: RootDatabase;
  state: Database<KvState, string>;
  keys: Database<Buffer, Buffer>;
  revs: Database<Buffer, Buffer>;
  hist: Database<Buffer, Buffer>;
  leases: Database<{ ttlMs: number; expiresAt: number }, number>;
  leased: Database<Buffer, Buffer>;
}

// One entry's writes: they share the revision `main`, each change the next `sub`.
interface WriteCtx {
  state: KvState;
  main: number;
  sub: number;
  now: number;
  leaseChanges: Map<number, { ttlMs: number; expiresAt: number } | null>;
  expired: { leases: number[]; revision: number }[];
  // The term of a PROMOTE entry this batch applied (-1: none).
  promoted: number;
}

export class KvStore<E extends KvEncoding = 'utf8'> extends ReplicaFacade<KvStoreEvents, Outcome> {
  readonly node: RaftNode<Outcome>;
  readonly #lmdb: Lmdb;
  readonly #path: string;
  readonly #encoding: KvEncoding;
  readonly #maxValue: number;
  readonly #maxTxnOps: number;
  readonly #maxRequest: number;
  #db!: Dbs;
  #state!: KvState;
  // Every lease's expiry (leader time), for the leader's expiry check; the store has them too.
  #leases = new Map<number, { ttlMs: number; expiresAt: number }>();
  // The term whose leader this replica is and whose PROMOTE entry it applied: only then
  // does it expire leases (a new leader first extends them all, so failover expires none).
  #expiryTerm = -1;
  #expiring = new Set<number>();
  #expiryTimer: NodeJS.Timeout | undefined;
  #changed = deferred();
  #swap: Promise<void> | null = null; // an install replacing the store: reads wait for it
  #copying: Promise<unknown> = Promise.resolve();
  #installing: Promise<unknown> = Promise.resolve();
  #closing = false;
  #closed = false;
  #noSync = false;
  readonly #stats: KvStoreStats = {
    entriesApplied: 0, entriesSkipped: 0, snapshotsTaken: 0, snapshotsInstalled: 0,
    lastSnapshot: null, lastInstall: null, leasesExpired: 0, watchers: 0, discardedAfterMachineCrash: false,
  };

  private constructor(options: KvStoreOptions<E>) {
    super();
    if (typeof options !== 'object' || options === null) throw new RaftError('ERR_RAFT_BAD_CONFIG', 'options must be an object');
    const {
      encoding = 'utf8', catchUpOnOpen: _c, openTimeoutMs: _o, maxValueBytes = 1 << 20, maxTxnOps = 1024,
      maxRequestBytes = 8 << 20, ...rest
    } = options;
    if (encoding !== 'utf8' && encoding !== 'buffer')
      throw new RaftError('ERR_RAFT_BAD_CONFIG', `encoding must be 'utf8' or 'buffer', got ${String(encoding)}`);
    if (typeof rest.dir !== 'string' || rest.dir === '') throw new RaftError('ERR_RAFT_BAD_CONFIG', 'dir is required');
    const limit = (v: number, name: string, max: number): number => {
      if (!Number.isSafeInteger(v) || v < 1 || v > max) throw new RaftError('ERR_RAFT_BAD_CONFIG', `${name} must be an integer from 1 to ${max}`);
      return v;
    };
    // The RPC layer carries frames up to 64 MiB: a request must fit in one with room to spare.
    this.#maxRequest = limit(maxRequestBytes, 'maxRequestBytes', 60 << 20);
    this.#maxValue = limit(maxValueBytes, 'maxValueBytes', this.#maxRequest);
    this.#maxTxnOps = limit(maxTxnOps, 'maxTxnOps', 1 << 20);
    this.#encoding = encoding;
    this.#lmdb = loadLmdb();
    this.#path = join(rest.dir, 'kv', DB_FILE);
    this.node = new RaftNode<Outcome>({ ...rest, stateMachine: this.#stateMachine() });
    this.passOnEvents(this.node);
  }

  /** Opens this replica's store (resuming from the index it holds), joins the group, catches up. */
  static async open<E extends KvEncoding = 'utf8'>(options: KvStoreOptions<E>): Promise<KvStore<E>> {
    const store = new KvStore<E>(options);
    try {
      store.#openDatabase();
      await store.node.start();
      if (options.catchUpOnOpen ?? true) await catchUpOnOpen(store.node, options.openTimeoutMs ?? 30_000);
      store.#expiryTimer = setInterval(() => store.#checkExpiry(), EXPIRY_CHECK_MS).unref();
    } catch (e) {
      await store.close();
      throw e;
    }
    return store;
  }

  // --- writes --------------------------------------------------------------------------

  /** Sets `key` to `value` (on every replica, from any replica); resolves with its revision. */
  async put(key: KvKey, value: KvValue, options: PutOptions = {}): Promise<{ revision: number }> {
    const k = keyBytes(key);
    const v = this.#value(value);
    return (await this.#propose([KIND_PUT, k, v, leaseArg(options.lease)], options)) as { revision: number };
  }

  /** Deletes a key or a range; `revision` is the store's after it (unchanged if none was). */
  async delete(sel: RangeSelector, options: KvWriteOptions = {}): Promise<{ deleted: number; revision: number }> {
    return (await this.#propose([KIND_DELETE, selector(sel, 'delete')], options)) as { deleted: number; revision: number };
  }

  /** If every compare holds, runs `success`, else `failure`: atomically, at one revision. */
  async txn(t: Txn, options: KvWriteOptions = {}): Promise<TxnResult<E>> {
    if (typeof t !== 'object' || t === null) throw new KvError('ERR_KV_BAD_ARGUMENT', 'txn takes { compare, success, failure }');
    const compares = (t.compare ?? []).map((c, i) => this.#compare(c, i));
    const success = this.#ops(t.success ?? [], 'success');
    const failure = this.#ops(t.failure ?? [], 'failure');
    const raw = (await this.#propose([KIND_TXN, compares, success, failure], options)) as {
      succeeded: boolean; revision: number; results: unknown[];
    };
    const ops = raw.succeeded ? success : failure;
    return {
      succeeded: raw.succeeded,
      revision: raw.revision,
      results: raw.results.map((r, i) => {
        const kind = ops[i]![0];
        if (kind === 'get') return r === undefined ? undefined : this.#kv(r as RawKv, false);
        if (kind === 'range') return this.#range(r as RawRange, (ops[i] as RawOp & { 3: boolean })[3]);
        return r as TxnOpResult<E>;
      }),
    };
  }

  /** Grants a lease of `ttlMs`; keys put with it are deleted when it expires or is revoked. */
  async grantLease(ttlMs: number, options: KvWriteOptions = {}): Promise<LeaseId> {
    positiveInt(ttlMs, 'ttlMs', 2 ** 31);
    return (await this.#propose([KIND_GRANT, ttlMs], options)) as LeaseId;
  }

  /** Extends the lease to a full TTL from now (leader time); ERR_KV_LEASE_NOT_FOUND if gone. */
  async keepAlive(lease: LeaseId, options: KvWriteOptions = {}): Promise<LeaseInfo> {
    return (await this.#propose([KIND_KEEPALIVE, positiveInt(lease, 'lease')], options)) as LeaseInfo;
  }

  /** Revokes the lease and deletes its keys (one revision). */
  async revokeLease(lease: LeaseId, options: KvWriteOptions = {}): Promise<{ deleted: number; revision: number }> {
    return (await this.#propose([KIND_REVOKE, positiveInt(lease, 'lease')], options)) as { deleted: number; revision: number };
  }

  /** Forgets the changes before `revision` (each key's state at it stays readable). */
  async compact(revision: number, options: KvWriteOptions = {}): Promise<void> {
    await this.#propose([KIND_COMPACT, positiveInt(revision, 'revision')], options);
  }

  // --- reads ---------------------------------------------------------------------------

  async get(key: KvKey, options: KvReadOptions = {}): Promise<KeyValue<E> | undefined> {
    const k = keyBytes(key);
    await this.#barrier(options);
    const raw = this.#readRange([k, null, true], options.revision, 1, false);
    return raw.kvs.length === 0 ? undefined : this.#kv(raw.kvs[0]!, false);
  }

  async range(sel: RangeSelector, options: KvRangeOptions = {}): Promise<RangeResult<E>> {
    const s = selector(sel, 'range');
    const limit = options.limit === undefined ? Infinity : positiveInt(options.limit, 'limit');
    await this.#barrier(options);
    return this.#range(this.#readRange(s, options.revision, limit, options.keysOnly ?? false), options.keysOnly ?? false);
  }

  /** A lease's TTL and expiry as this replica applied them; undefined if it is gone. */
  lease(id: LeaseId): LeaseInfo | undefined {
    const l = this.#leases.get(id);
    return l === undefined ? undefined : { id, ...l };
  }

  /** The revision of the last change this replica applied. */
  get revision(): number {
    return this.#state.revision;
  }
  /** Reads and watches below this revision are refused (ERR_KV_COMPACTED). */
  get compactRevision(): number {
    return this.#state.compacted;
  }
  get appliedIndex(): number {
    return this.#state.applied;
  }
  get stats(): KvStoreStats {
    return { ...this.#stats };
  }

  /**
   * The changes to the keys `sel` selects, in revision order, each once: every iteration
   * yields all the events of one or more whole revisions. Reads the store's change history,
   * so a consumer that falls behind holds no memory: it reads on from the disk, until its
   * next revision is compacted (then ERR_KV_COMPACTED). Works on any replica.
   */
  watch(sel: RangeSelector, options: WatchOptions = {}): AsyncGenerator<KvEvent<E>[], void, undefined> {
    const s = selector(sel, 'watch');
    const from = options.fromRevision === undefined ? undefined : positiveInt(options.fromRevision, 'fromRevision');
    return this.#watch(s, from, options.signal);
  }

  /** A SHA-256 of the live keys, their values and metadata, the leases and the revision. */
  checksum(): string {
    const hash = createHash('sha256');
    hash.update(`${this.#state.revision};${this.#state.compacted};`);
    for (const { key, value } of this.#db.keys.getRange({})) {
      hash.update(`${key.length}:`).update(key).update(`${value.length}:`).update(value);
    }
    for (const { key, value } of this.#db.leases.getRange({})) hash.update(`l${key}:${value.ttlMs}:${value.expiresAt};`);
    return hash.digest('hex');
  }

  /** Takes a snapshot now (a copy of the store; the `snapshot` event reports it). */
  snapshot(): Promise<void> {
    return this.node.snapshot();
  }

  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    clearInterval(this.#expiryTimer);
    await this.node.close();
    await this.#copying.catch(() => undefined);
    await this.#installing.catch(() => undefined);
    this.#closed = true;
    this.#wake();
    if (!this.#db) return;
    // Flushed, then marked closed cleanly: the next start trusts it whatever happens between.
    try {
      if (this.#noSync) {
        await this.#flush();
        writeDurably(join(dirname(this.#path), 'closed_cleanly'), '');
      }
    } finally {
      await this.#db.env.close();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // --- arguments -------------------------------------------------------------------------

  #value(v: unknown): Buffer {
    const b = toBytes(v, 'value');
    if (b.length > this.#maxValue)
      throw new KvError('ERR_KV_TOO_LARGE', `value is ${b.length} bytes; maxValueBytes is ${this.#maxValue}`, { limit: this.#maxValue });
    return b;
  }

  #compare(c: Compare, i: number): RawCompare {
    const where = `compare[${i}]`;
    if (typeof c !== 'object' || c === null) throw new KvError('ERR_KV_BAD_ARGUMENT', `${where} must be { key, target, op, value }`);
    if (!['==', '!=', '<', '>'].includes(c.op)) throw new KvError('ERR_KV_BAD_ARGUMENT', `${where}.op must be ==, !=, < or >`);
    const key = keyBytes(c.key, `${where}.key`);
    if (c.target === 'value') return [key, 'value', c.op, this.#value(c.value)];
    if (!['version', 'createRevision', 'modRevision', 'lease'].includes(c.target))
      throw new KvError('ERR_KV_BAD_ARGUMENT', `${where}.target must be value, version, createRevision, modRevision or lease`);
    if (!Number.isSafeInteger(c.value)) throw new KvError('ERR_KV_BAD_ARGUMENT', `${where}.value must be an integer`);
    return [key, c.target, c.op, c.value];
  }

  #ops(ops: readonly TxnOp[], where: string): RawOp[] {
    if (!Array.isArray(ops)) throw new KvError('ERR_KV_BAD_ARGUMENT', `${where} must be an array of ops`);
    if (ops.length > this.#maxTxnOps)
      throw new KvError('ERR_KV_TOO_LARGE', `${where} has ${ops.length} ops; maxTxnOps is ${this.#maxTxnOps}`, { limit: this.#maxTxnOps });
    return ops.map((op, i): RawOp => {
      const w = `${where}[${i}]`;
      if (typeof op === 'object' && op !== null) {
        if ('put' in op && Array.isArray(op.put)) {
          const [k, v, o] = op.put;
          return ['put', keyBytes(k, `${w}.put key`), this.#value(v), leaseArg(o?.lease)];
        }
        if ('get' in op) return ['get', keyBytes(op.get, `${w}.get`)];
        if ('range' in op) {
          const [sel, o = {}] = Array.isArray(op.range) ? op.range : [op.range];
          return ['range', selector(sel, `${w}.range`), o.limit === undefined ? Infinity : positiveInt(o.limit, `${w}.limit`), o.keysOnly ?? false];
        }
        if ('delete' in op) return ['delete', selector(op.delete, `${w}.delete`)];
      }
      throw new KvError('ERR_KV_BAD_ARGUMENT', `${w} must be { put: [key, value, options?] }, { get }, { range } or { delete }`);
    });
  }

  async #propose(entry: unknown[], options: KvWriteOptions): Promise<unknown> {
    const data = serialize([ENTRY_FORMAT, ...entry]);
    if (data.length > this.#maxRequest)
      throw new KvError('ERR_KV_TOO_LARGE', `the request is ${data.length} bytes; maxRequestBytes is ${this.#maxRequest}`, { limit: this.#maxRequest });
    const outcome = await this.node.propose(data, options);
    if (!outcome.ok) throw outcome.error;
    return outcome.value;
  }

  async #barrier(options: KvReadOptions): Promise<void> {
    const consistency = options.consistency ?? 'linearizable';
    if (consistency === 'linearizable' || consistency === 'lease') {
      const o: { consistency: 'linearizable' | 'lease'; signal?: AbortSignal; timeoutMs?: number } = { consistency };
      if (options.signal) o.signal = options.signal;
      if (options.timeoutMs !== undefined) o.timeoutMs = options.timeoutMs;
      await this.node.readBarrier(o);
    } else if (consistency !== 'local') {
      throw new KvError('ERR_KV_BAD_ARGUMENT', `consistency must be 'linearizable', 'lease' or 'local', got ${String(consistency)}`);
    }
    if (this.#swap) await this.#swap;
    if (this.#closed) throw new RaftError('ERR_RAFT_SHUTDOWN', 'the store is closed');
  }

  #data(b: Buffer): Data<E> {
    return (this.#encoding === 'buffer' ? Buffer.from(b) : b.toString('utf8')) as Data<E>;
  }

  #kv(r: RawKv, keysOnly: boolean): KeyValue<E> {
    return {
      key: this.#data(r.key), value: keysOnly ? this.#data(EMPTY) : this.#data(r.value),
      createRevision: r.createRevision, modRevision: r.modRevision, version: r.version, lease: r.lease as LeaseId | 0,
    };
  }

  #range(r: RawRange, keysOnly: boolean): RangeResult<E> {
    return { kvs: r.kvs.map((kv) => this.#kv(kv, keysOnly)), more: r.more, revision: r.revision };
  }

  // --- reading the store -----------------------------------------------------------------

  #readRange(s: Sel, revision: number | undefined, limit: number, keysOnly: boolean): RawRange {
    const state = this.#state;
    if (revision !== undefined) {
      positiveInt(revision, 'revision');
      if (revision < state.compacted)
        throw new KvError('ERR_KV_COMPACTED', `revision ${revision} was compacted (the compact revision is ${state.compacted})`,
          { compactRevision: state.compacted });
      if (revision > state.revision)
        throw new KvError('ERR_KV_FUTURE_REVISION', `revision ${revision} is ahead of this replica's ${state.revision}`);
      if (revision < state.revision) return { ...this.#readAt(s, revision, limit), revision };
    }
    return { ...this.#readLatest(s, limit, keysOnly), revision: state.revision };
  }

  #readLatest(s: Sel, limit: number, keysOnly: boolean): { kvs: RawKv[]; more: boolean } {
    const { keys } = this.#db;
    if (s[2]) {
      const b = keys.getBinary(s[0]);
      return { kvs: b === undefined ? [] : [this.#raw(s[0], b)], more: false };
    }
    const kvs: RawKv[] = [];
    const range = keys.getRange({ start: s[0], ...(s[1] ? { end: s[1] } : {}), ...(Number.isFinite(limit) ? { limit: limit + 1 } : {}) });
    for (const { key, value } of range) {
      if (kvs.length === limit) return { kvs, more: true };
      kvs.push(keysOnly ? { key: Buffer.from(key), value: EMPTY, ...decodeRecord(value).meta } : this.#raw(key, value));
    }
    return { kvs, more: false };
  }

  #raw(key: Buffer, record: Buffer): RawKv {
    const { meta, value } = decodeRecord(record);
    return { key: Buffer.from(key), value: Buffer.from(value), ...meta };
  }

  // Each key's last change at or before `revision`, from the per-key history.
  #readAt(s: Sel, revision: number, limit: number): { kvs: RawKv[]; more: boolean } {
    const { hist, revs } = this.#db;
    const kvs: RawKv[] = [];
    const last = revKey(revision, 0xffffffff);
    const resolve = (h: Buffer): void => {
      const { main, sub } = revOf(h, h.length - 12);
      const b = revs.getBinary(revKey(main, sub));
      if (b === undefined) return;
      const ev = decodeEvent(b);
      if (ev.type === EVENT_PUT) kvs.push({ ...ev, key: Buffer.from(ev.key), value: Buffer.from(ev.value) });
    };
    if (s[2]) {
      const prefix = histKeyPrefix(s[0]);
      for (const h of hist.getKeys({ start: Buffer.concat([prefix, last]), end: prefix, reverse: true, limit: 1 })) resolve(h);
      return { kvs, more: false };
    }
    let current: Buffer | null = null; // the escaped key (with its terminator) being read
    let candidate: Buffer | null = null;
    const end = s[1] ? histLowerBound(s[1]) : undefined;
    for (const h of hist.getKeys({ start: histLowerBound(s[0]), ...(end ? { end } : {}) })) {
      const escaped = h.subarray(0, h.length - 12);
      if (current === null || !escaped.equals(current)) {
        if (candidate) resolve(candidate);
        if (kvs.length > limit) break;
        current = Buffer.from(escaped);
        candidate = null;
      }
      if (Buffer.compare(h.subarray(h.length - 12), last) <= 0) candidate = Buffer.from(h);
    }
    if (candidate && kvs.length <= limit) resolve(candidate);
    return kvs.length > limit ? { kvs: kvs.slice(0, limit), more: true } : { kvs, more: false };
  }

  async *#watch(s: Sel, fromRevision: number | undefined, signal: AbortSignal | undefined): AsyncGenerator<KvEvent<E>[], void, undefined> {
    if (this.#closed) throw new KvError('ERR_KV_WATCH_CANCELLED', 'the store is closed');
    let next = fromRevision ?? this.#state.revision + 1;
    this.#stats.watchers++;
    try {
      for (;;) {
        signal?.throwIfAborted();
        if (this.#swap) await this.#swap;
        if (this.#closed) throw new KvError('ERR_KV_WATCH_CANCELLED', 'the store closed');
        if (next < this.#state.compacted)
          throw new KvError('ERR_KV_COMPACTED',
            `the watch needs revision ${next}, which was compacted (the compact revision is ${this.#state.compacted}); ` +
            'read the current state and watch from its revision + 1', { compactRevision: this.#state.compacted });
        if (next <= this.#state.revision) {
          const { events, upTo } = this.#readEvents(s, next);
          next = upTo + 1;
          if (events.length > 0) yield events;
          continue;
        }
        await this.#nextChange(signal);
      }
    } finally {
      this.#stats.watchers--;
    }
  }

  // The events from revision `from` on that `s` selects: whole revisions, until WATCH_CHUNK
  // events were read; `upTo` is the last revision read.
  #readEvents(s: Sel, from: number): { events: KvEvent<E>[]; upTo: number } {
    const events: KvEvent<E>[] = [];
    let upTo = from - 1;
    let read = 0;
    for (const { key, value } of this.#db.revs.getRange({ start: revKey(from, 0) })) {
      const { main } = revOf(key);
      if (main !== upTo && read >= WATCH_CHUNK) return { events, upTo };
      upTo = main;
      read++;
      const ev = decodeEvent(value);
      if (!inSel(ev.key, s)) continue;
      events.push({ type: ev.type === EVENT_PUT ? 'put' : 'delete', kv: this.#kv({ ...ev }, false) });
    }
    return { events, upTo: Math.max(upTo, this.#state.revision) };
  }

  #nextChange(signal: AbortSignal | undefined): Promise<void> {
    const change = this.#changed.promise;
    if (!signal) return change;
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      void change.then(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }

  #wake(): void {
    const { resolve } = this.#changed;
    this.#changed = deferred();
    resolve();
  }

  // --- the store on disk -----------------------------------------------------------------

  // Commits are not fsynced (LMDB's noSync): the store is derived state, and the log,
  // fsynced on a majority before anything is applied, vouches for every acknowledged write.
  // A process crash loses nothing (the page cache has every commit); a machine crash may
  // leave the file torn, so a store that was open, not cleanly closed, when the machine went
  // down (another boot id) is discarded, and the replica rebuilds it from its own snapshot
  // (fsynced by the engine) and its log. Where no boot id is known, each commit is flushed
  // (overlappingSync), keeping the file consistent. docs/kv-store.md has the argument.
  #openDatabase(): void {
    const dir = dirname(this.#path);
    mkdirSync(dir, { recursive: true });
    rmSync(`${this.#path}.install`, { force: true }); // an install cut short by a crash
    rmSync(`${this.#path}.install-lock`, { force: true });
    const boot = bootId();
    this.#noSync = boot !== null;
    if (boot !== null) {
      const bootFile = join(dir, 'boot_id');
      const cleanFile = join(dir, 'closed_cleanly');
      const last = existsSync(bootFile) ? readFileSync(bootFile, 'utf8') : null;
      if (last !== null && last !== boot && !existsSync(cleanFile) && existsSync(this.#path)) {
        rmSync(this.#path, { force: true });
        rmSync(`${this.#path}-lock`, { force: true });
        this.#stats.discardedAfterMachineCrash = true;
      }
      if (last !== boot) writeDurably(bootFile, boot);
      if (existsSync(cleanFile)) {
        rmSync(cleanFile);
        fsyncPath(dir);
      }
    }
    // A fixed map of 1 TiB (address space, not disk: the file grows as pages are written):
    // lmdb-js would otherwise remap a growing store, and a snapshot's copy reading the old
    // map on its thread meanwhile crashes the process (SIGSEGV in mdb_env_copy2, seen in
    // test/kv-crash.test.ts).
    const env = this.#lmdb.open({
      path: this.#path, maxDbs: 12, mapSize: MAP_SIZE,
      ...(this.#noSync ? { noSync: true, overlappingSync: false } : { overlappingSync: true }),
    });
    const bin = { keyEncoding: 'binary', encoding: 'binary' } as const;
    const db: Dbs = {
      env,
      state: env.openDB<KvState, string>({ name: 'state' }),
      keys: env.openDB<Buffer, Buffer>({ name: 'keys', ...bin }),
      revs: env.openDB<Buffer, Buffer>({ name: 'revs', ...bin }),
      hist: env.openDB<Buffer, Buffer>({ name: 'hist', ...bin }),
      leases: env.openDB<{ ttlMs: number; expiresAt: number }, number>({ name: 'leases' }),
      leased: env.openDB<Buffer, Buffer>({ name: 'leased', ...bin }),
    };
    let state = db.state.get('state');
    if (state === undefined) {
      state = { format: STATE_FORMAT, applied: 0, revision: 0, compacted: 0, cleaned: 0, now: 0 };
      const initial = state;
      db.state.transactionSync(() => db.state.putSync('state', initial));
    }
    if (state.format !== STATE_FORMAT) {
      void env.close();
      throw new KvError('ERR_KV_BAD_SNAPSHOT', `${this.#path} has format ${state.format}; this version reads ${STATE_FORMAT}`);
    }
    this.#db = db;
    this.#state = { ...state };
    this.#leases = new Map();
    for (const { key, value } of db.leases.getRange({})) this.#leases.set(key, { ...value });
  }

  // Everything committed so far on the disk.
  #flush(): Promise<void> {
    const env = this.#db.env;
    if (!this.#noSync) return Promise.resolve(env.flushed).then(() => undefined);
    const syncable = env as unknown as { sync(done: (e?: Error) => void): void }; // lmdb-js has it, its types do not
    return new Promise((resolve, reject) => syncable.sync((e) => (e ? reject(e) : resolve())));
  }

  // --- applying --------------------------------------------------------------------------

  #stateMachine(): StateMachine<Outcome> {
    return {
      apply: (entries) => this.#applyBatch(entries),
      snapshot: (writer) => this.#save(writer),
      restore: (reader) => this.#restore(reader),
      onLeaderStart: (term) => {
        // First extend every lease (through the log, so every replica agrees), then expire.
        this.#expiryTerm = -1;
        this.#propose([KIND_PROMOTE, term], {}).catch(() => undefined);
      },
      onLeaderStop: () => {
        this.#expiryTerm = -1;
      },
    };
  }

  // One LMDB write transaction per batch; the applied index and revision are written in it.
  #applyBatch(entries: readonly Entry[]): Outcome[] {
    if (entries.length > 0 && entries[entries.length - 1]!.index <= this.#state.applied) {
      this.#stats.entriesSkipped += entries.length;
      return entries.map((e) => this.#skipped(e));
    }
    const db = this.#db;
    const w: WriteCtx = { state: { ...this.#state }, main: 0, sub: 0, now: this.#state.now, leaseChanges: new Map(), expired: [], promoted: -1 };
    const out: Outcome[] = [];
    let skipped = 0;
    db.env.transactionSync(() => {
      for (const e of entries) {
        if (e.index <= w.state.applied) {
          out.push(this.#skipped(e));
          skipped++;
          continue;
        }
        w.now = Math.max(w.now, e.time); // leaders' clocks differ: time never goes back
        w.main = w.state.revision + 1;
        w.sub = 0;
        const outcome = this.#applyEntry(e, w);
        if (w.sub > 0) w.state.revision = w.main;
        out.push(outcome);
        w.state.applied = e.index;
      }
      w.state.now = w.now;
      this.#clean(w.state);
      db.state.putSync('state', w.state);
    });
    this.#state = w.state;
    for (const [id, l] of w.leaseChanges) {
      if (l === null) this.#leases.delete(id);
      else this.#leases.set(id, l);
    }
    if (w.promoted >= 0 && this.node.isLeader && this.node.term === w.promoted) this.#expiryTerm = w.promoted;
    this.#stats.entriesSkipped += skipped;
    this.#stats.entriesApplied += entries.length - skipped;
    this.#wake();
    if (entries.length > skipped) this.emit('applied', w.state.applied, w.state.revision);
    for (const x of w.expired) {
      this.#stats.leasesExpired += x.leases.length;
      this.emit('expired', x.leases as LeaseId[], x.revision);
    }
    return out;
  }

  #skipped(e: Entry): Outcome {
    return { ok: false, error: new RaftError('ERR_RAFT_RESULT_UNKNOWN', `entry ${e.index} reached this replica inside a snapshot`) };
  }

  #applyEntry(e: Entry, w: WriteCtx): Outcome {
    let d: unknown[];
    try {
      d = deserialize(e.data) as unknown[];
    } catch (cause) {
      throw new KvError('ERR_KV_BAD_ENTRY', `entry ${e.index} is not a KvStore entry: ${String(cause)}`);
    }
    if (!Array.isArray(d) || d[0] !== ENTRY_FORMAT)
      throw new KvError('ERR_KV_BAD_ENTRY', `entry ${e.index} is not a KvStore entry of format ${ENTRY_FORMAT}`);
    const buf = (x: unknown): Buffer => Buffer.from((x as Uint8Array).buffer, (x as Uint8Array).byteOffset, (x as Uint8Array).byteLength);
    const sel = (x: unknown): Sel => {
      const [f, t, single] = x as [Uint8Array, Uint8Array | null, boolean];
      return [buf(f), t === null ? null : buf(t), single];
    };
    try {
      switch (d[1]) {
        case KIND_PUT: {
          this.#checkLease(d[4] as number, w);
          this.#putKey(buf(d[2]), buf(d[3]), d[4] as number, w);
          return { ok: true, value: { revision: w.main } };
        }
        case KIND_DELETE: {
          const deleted = this.#deleteRange(sel(d[2]), w);
          return { ok: true, value: { deleted, revision: deleted > 0 ? w.main : w.state.revision } };
        }
        case KIND_TXN: return { ok: true, value: this.#applyTxn(d, buf, sel, w) };
        case KIND_GRANT: {
          const id = e.index;
          this.#setLease(id, { ttlMs: d[2] as number, expiresAt: w.now + (d[2] as number) }, w);
          return { ok: true, value: id };
        }
        case KIND_KEEPALIVE: {
          const id = d[2] as number;
          const l = this.#checkLease(id, w)!;
          const next = { ttlMs: l.ttlMs, expiresAt: Math.max(l.expiresAt, w.now + l.ttlMs) };
          this.#setLease(id, next, w);
          return { ok: true, value: { id, ...next } };
        }
        case KIND_REVOKE: {
          const id = d[2] as number;
          this.#checkLease(id, w);
          const deleted = this.#revoke(id, w);
          return { ok: true, value: { deleted, revision: deleted > 0 ? w.main : w.state.revision } };
        }
        case KIND_EXPIRE: {
          // Expire only what is still due at this entry's (leader) time: a keepAlive that
          // came first wins, and a lease expires once.
          const gone: number[] = [];
          for (const id of d[2] as number[]) {
            const l = this.#getLease(id, w);
            if (l === undefined || l.expiresAt > w.now) continue;
            this.#revoke(id, w);
            gone.push(id);
          }
          if (gone.length > 0) w.expired.push({ leases: gone, revision: w.sub > 0 ? w.main : w.state.revision });
          return { ok: true, value: gone.length };
        }
        case KIND_PROMOTE: {
          for (const { key, value } of [...this.#db.leases.getRange({})]) { // read all first: the loop writes
            const l = w.leaseChanges.has(key) ? w.leaseChanges.get(key) : value;
            if (!l) continue;
            this.#setLease(key, { ttlMs: l.ttlMs, expiresAt: Math.max(l.expiresAt, w.now + l.ttlMs) }, w);
          }
          w.promoted = d[2] as number;
          return { ok: true, value: undefined };
        }
        case KIND_COMPACT: {
          const rev = d[2] as number;
          if (rev > w.state.revision)
            throw new KvError('ERR_KV_FUTURE_REVISION', `cannot compact at ${rev}: the revision is ${w.state.revision}`);
          if (rev <= w.state.compacted)
            throw new KvError('ERR_KV_COMPACTED', `revision ${rev} was compacted already (at ${w.state.compacted})`, { compactRevision: w.state.compacted });
          w.state.compacted = rev;
          return { ok: true, value: undefined };
        }
        default:
          throw new KvError('ERR_KV_BAD_ENTRY', `entry ${e.index} has unknown kind ${String(d[1])}`);
      }
    } catch (error) {
      // Rule failures are decided before anything is written, alike on every replica;
      // anything else (the disk) stops the replica rather than diverge.
      if (error instanceof KvError && error.code !== 'ERR_KV_BAD_ENTRY') return { ok: false, error };
      throw error;
    }
  }

  #applyTxn(d: unknown[], buf: (x: unknown) => Buffer, sel: (x: unknown) => Sel, w: WriteCtx): unknown {
    const compares = (d[2] as [Uint8Array, Compare['target'], CompareOp, Uint8Array | number][]).map(
      ([k, t, op, v]): RawCompare => [buf(k), t, op, typeof v === 'number' ? v : buf(v)]);
    const succeeded = compares.every(([key, target, op, v]) => {
      const b = this.#db.keys.getBinary(key);
      if (target === 'value') {
        if (b === undefined) return false;
        const c = Buffer.compare(decodeRecord(b).value, v as Buffer);
        return op === '==' ? c === 0 : op === '!=' ? c !== 0 : op === '<' ? c < 0 : c > 0;
      }
      const meta = b === undefined ? { createRevision: 0, modRevision: 0, version: 0, lease: 0 } : decodeRecord(b).meta;
      return compareNumbers(meta[target], op, v as number);
    });
    const ops = (succeeded ? d[3] : d[4]) as unknown[][];
    // Every lease a put names must exist before anything is written: all or nothing.
    for (const op of ops) if (op[0] === 'put') this.#checkLease(op[3] as number, w);
    const results = ops.map((op) => {
      switch (op[0]) {
        case 'put':
          this.#putKey(buf(op[1]), buf(op[2]), op[3] as number, w);
          return { revision: w.main };
        case 'get': {
          const k = buf(op[1]);
          const b = this.#db.keys.getBinary(k);
          return b === undefined ? undefined : this.#raw(k, b);
        }
        case 'range': {
          const r = this.#readLatest(sel(op[1]), op[2] as number, op[3] as boolean);
          return { ...r, revision: w.sub > 0 ? w.main : w.state.revision };
        }
        case 'delete':
          return { deleted: this.#deleteRange(sel(op[1]), w) };
        default:
          throw new KvError('ERR_KV_BAD_ENTRY', `unknown txn op ${String(op[0])}`);
      }
    });
    return { succeeded, revision: w.sub > 0 ? w.main : w.state.revision, results };
  }

  #getLease(id: number, w: WriteCtx): { ttlMs: number; expiresAt: number } | undefined {
    if (w.leaseChanges.has(id)) return w.leaseChanges.get(id) ?? undefined;
    return this.#db.leases.get(id);
  }

  #checkLease(id: number, w: WriteCtx): { ttlMs: number; expiresAt: number } | undefined {
    if (id === 0) return undefined;
    const l = this.#getLease(id, w);
    if (l === undefined) throw new KvError('ERR_KV_LEASE_NOT_FOUND', `lease ${id} does not exist (it expired or was revoked)`);
    return l;
  }

  #setLease(id: number, l: { ttlMs: number; expiresAt: number } | null, w: WriteCtx): void {
    if (l === null) this.#db.leases.removeSync(id);
    else this.#db.leases.putSync(id, l);
    w.leaseChanges.set(id, l);
  }

  #revoke(id: number, w: WriteCtx): number {
    const { leased } = this.#db;
    let deleted = 0;
    const attached = [...leased.getKeys({ start: leasePrefix(id), end: leasePrefix(id + 1) })].map((k) => Buffer.from(k));
    for (const lk of attached) {
      const key = lk.subarray(8);
      const b = this.#db.keys.getBinary(key);
      if (b !== undefined) {
        this.#deleteKey(key, decodeRecord(b).meta, w);
        deleted++;
      }
      leased.removeSync(lk);
    }
    this.#setLease(id, null, w);
    return deleted;
  }

  #record(type: StoredEvent['type'], key: Buffer, meta: KeyMeta, value: Buffer, w: WriteCtx): void {
    const sub = w.sub++;
    this.#db.revs.putSync(revKey(w.main, sub), encodeEvent(type, key, meta, value));
    this.#db.hist.putSync(histKey(key, w.main, sub), EMPTY);
  }

  #putKey(key: Buffer, value: Buffer, lease: number, w: WriteCtx): void {
    const { keys, leased } = this.#db;
    const old = keys.getBinary(key);
    const prev = old === undefined ? undefined : decodeRecord(old).meta;
    const meta: KeyMeta = {
      createRevision: prev ? prev.createRevision : w.main, modRevision: w.main, version: prev ? prev.version + 1 : 1, lease,
    };
    if (prev && prev.lease !== lease && prev.lease !== 0) leased.removeSync(leaseKey(prev.lease, key));
    if (lease !== 0 && prev?.lease !== lease) leased.putSync(leaseKey(lease, key), EMPTY);
    keys.putSync(key, encodeRecord(meta, value));
    this.#record(EVENT_PUT, key, meta, value, w);
  }

  #deleteKey(key: Buffer, prev: KeyMeta, w: WriteCtx): void {
    this.#db.keys.removeSync(key);
    if (prev.lease !== 0) this.#db.leased.removeSync(leaseKey(prev.lease, key));
    this.#record(EVENT_DELETE, key, { createRevision: 0, modRevision: w.main, version: 0, lease: 0 }, EMPTY, w);
  }

  #deleteRange(s: Sel, w: WriteCtx): number {
    const { keys } = this.#db;
    const found: [Buffer, KeyMeta][] = [];
    if (s[2]) {
      const b = keys.getBinary(s[0]);
      if (b !== undefined) found.push([s[0], decodeRecord(b).meta]);
    } else {
      for (const { key, value } of keys.getRange({ start: s[0], ...(s[1] ? { end: s[1] } : {}) }))
        found.push([Buffer.from(key), decodeRecord(value).meta]);
    }
    for (const [key, meta] of found) this.#deleteKey(key, meta, w);
    return found.length;
  }

  // Compaction removes, a bounded number at a time, the changes below the compact revision
  // that no read at or after it can see: those a later change of the same key (at or before
  // the compact revision) superseded, and deletions.
  #clean(state: KvState): void {
    if (state.cleaned >= state.compacted) return;
    const { revs, hist } = this.#db;
    let n = 0;
    let lastMain = state.cleaned;
    const doomed: Buffer[] = [];
    for (const { key, value } of revs.getRange({ start: revKey(state.cleaned, 0), end: revKey(state.compacted, 0) })) {
      const { main, sub } = revOf(key);
      if (main !== lastMain && n >= CLEAN_BUDGET) break;
      lastMain = main;
      n++;
      const ev = decodeEvent(value);
      const prefix = histKeyPrefix(ev.key);
      let superseded = false;
      for (const h of hist.getKeys({ start: histKey(ev.key, main, sub + 1), end: prefixEnd(prefix)!, limit: 1 }))
        superseded = revOf(h, h.length - 12).main <= state.compacted;
      if (superseded || ev.type === EVENT_DELETE) doomed.push(Buffer.from(key), histKey(ev.key, main, sub));
    }
    for (let i = 0; i < doomed.length; i += 2) {
      revs.removeSync(doomed[i]!);
      hist.removeSync(doomed[i + 1]!);
    }
    // Done with every revision below lastMain; all of lastMain too if the range ran out.
    state.cleaned = n < CLEAN_BUDGET ? state.compacted : lastMain;
  }

  // --- leases: the leader's clock decides --------------------------------------------------

  #checkExpiry(): void {
    if (this.#closing || this.#expiryTerm < 0 || !this.node.isLeader || this.node.term !== this.#expiryTerm) return;
    const now = Date.now();
    const due: number[] = [];
    for (const [id, l] of this.#leases) if (l.expiresAt <= now && !this.#expiring.has(id)) due.push(id);
    if (due.length === 0) return;
    for (const id of due) this.#expiring.add(id);
    this.#propose([KIND_EXPIRE, due], {}).catch(() => undefined).finally(() => {
      for (const id of due) this.#expiring.delete(id);
    });
  }

  // --- snapshots ---------------------------------------------------------------------------

  #save(writer: SnapshotWriter): Promise<void> {
    const started = performance.now();
    const target = writer.path(SNAPSHOT_FILE);
    // LMDB's own copy: one read transaction, a consistent cut, on a thread of its own, while
    // applies go on. The store is flushed first: the engine drops the log below the
    // snapshot once it is published, so the store must not fall back below it (and after a
    // machine crash it is rebuilt from this snapshot in any case).
    const copy = (async () => {
      // An install under way replaces the store (closing this environment): copy the new one
      // after it (the copy may hold later entries than asked, which the engine allows).
      await this.#installing;
      if (this.#closing) throw new KvError('ERR_KV_BAD_SNAPSHOT', 'the store closed before its snapshot was copied');
      await this.#flush();
      await this.#db.env.backup(target, true);
      const info = { index: await this.#indexOf(target), durationMs: performance.now() - started, bytes: statSync(target).size };
      this.#stats.snapshotsTaken++;
      this.#stats.lastSnapshot = info;
      this.emit('snapshot', info);
    })();
    this.#copying = copy.catch(() => undefined);
    return copy;
  }

  async #indexOf(file: string): Promise<number> {
    let env: RootDatabase | undefined;
    try {
      env = this.#lmdb.open({ path: file, readOnly: true, maxDbs: 12, mapSize: MAP_SIZE });
      const state = env.openDB<KvState, string>({ name: 'state' }).get('state');
      if (!state || state.format !== STATE_FORMAT) throw new KvError('ERR_KV_BAD_SNAPSHOT', `${file} is not a KvStore of format ${STATE_FORMAT}`);
      return state.applied;
    } catch (e) {
      throw e instanceof KvError ? e : new KvError('ERR_KV_BAD_SNAPSHOT', `${file}: ${String(e)}`, { cause: e });
    } finally {
      await env?.close();
      rmSync(`${file}-lock`, { force: true });
    }
  }

  #restore(reader: SnapshotReader): Promise<void> {
    if (reader.index <= this.#state.applied) return Promise.resolve(); // the store holds it (a restart)
    const install = this.#install(reader);
    this.#installing = install.catch(() => undefined);
    return install;
  }

  // The snapshot's copy is made and fsynced beside the store while reads go on, then swapped
  // in by one rename (a crash leaves the old or the new).
  async #install(reader: SnapshotReader): Promise<void> {
    const started = performance.now();
    await this.#copying;
    const install = `${this.#path}.install`;
    await copyDurably(reader.path(SNAPSHOT_FILE), install);
    const index = await this.#indexOf(install);
    if (index < reader.index)
      throw new KvError('ERR_KV_BAD_SNAPSHOT', `snapshot ${reader.dir} holds index ${index}, less than its ${reader.index}`);
    if (this.#closing) {
      rmSync(install, { force: true });
      return;
    }
    const { promise, resolve } = deferred();
    this.#swap = promise;
    try {
      await this.#db.env.close();
      renameDurably(install, this.#path);
      this.#openDatabase();
    } finally {
      this.#swap = null;
      resolve();
    }
    const info = { index, durationMs: performance.now() - started, bytes: statSync(this.#path).size };
    this.#stats.snapshotsInstalled++;
    this.#stats.lastInstall = info;
    this.#wake();
    this.emit('installed', info);
  }
}

