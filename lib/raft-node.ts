// RaftNode: one replica of a Raft group, embedded in this process. Elections, heartbeats,
// replication and disk I/O run in the native engine on its own threads; this class hands
// proposals to it and feeds committed entries, in batches, to the application's state
// machine on the event loop. A blocked event loop delays applying, never consensus.
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LOG_LEVELS, resolveLogLevel, stderrLogger } from './observability.js';
import type { LogEvent, LogLevel, Logger, MetricFamily } from './observability.js';
import { RaftError, fromNative } from './errors.js';
import { parseConfiguration, parsePeerId } from './peer.js';
import { binding, type ConfChange, type NativeHost, type NativeNode, type NativeStatus, type TlsFiles } from './native.js';

export type { ConfChange } from './native.js';

/** A committed entry as the state machine sees it. */
export interface Entry {
  readonly index: number;
  readonly term: number;
  readonly data: Buffer;
  /** The leader's wall clock (ms since the epoch) when it appended the entry: the same on
   * every replica. Leaders' clocks may differ, so it can go backwards across a failover. */
  readonly time: number;
}

/** Where a snapshot's files go: plain names inside one directory. */
export class SnapshotWriter {
  constructor(readonly dir: string) {}
  path(name: string): string {
    return join(this.dir, checkName(name));
  }
  writeFile(name: string, data: string | Uint8Array): Promise<void> {
    return writeFile(this.path(name), data);
  }
}

/** A snapshot to restore from (its files' checksums were verified). */
export class SnapshotReader {
  constructor(readonly dir: string, readonly index: number) {}
  path(name: string): string {
    return join(this.dir, checkName(name));
  }
  readFile(name: string): Promise<Buffer> {
    return readFile(this.path(name));
  }
}

function checkName(name: string): string {
  if (!/^[^/\\]+$/.test(name) || name === '.' || name === '..' || name === '__raft_snapshot_meta')
    throw new RaftError('ERR_RAFT_BAD_ARGUMENT', `snapshot file name must be a plain file name, got ${JSON.stringify(name)}`);
  return name;
}

export interface SnapshotEvent {
  /** The last entry the snapshot covers. */
  index: number;
  /** From the capture to the last file written. */
  durationMs: number;
}

/** A group's membership: voters, the previous voters while a joint change is under way,
 *  and learners; peer ids as `ip:port:idx:role`. */
export type Configuration = NativeStatus['configuration'];

/** The application's replicated state. Every method runs on the event loop. */
export interface StateMachine<R = unknown> {
  /** Committed entries, in log order; synchronous; one result per entry. */
  apply(entries: readonly Entry[]): R[];
  /**
   * Captures the state synchronously (before returning or awaiting anything) and writes it
   * into `writer`, possibly asynchronously while applies continue. Optional, with restore.
   */
  snapshot?(writer: SnapshotWriter): void | Promise<void>;
  /** Replaces the whole state with a snapshot's; nothing is applied until it finishes. */
  restore?(reader: SnapshotReader): void | Promise<void>;
  onLeaderStart?(term: number): void;
  onLeaderStop?(): void;
  /** A configuration committed at `index` (or came with a snapshot), in order with applies. */
  onConfigurationCommitted?(conf: Configuration, index: number): void;
  /** The replica stopped because of `err` (e.g. apply threw: ERR_RAFT_STATE_MACHINE). */
  onError?(err: RaftError): void;
}

export interface RaftNodeOptions<R = unknown> {
  /** The Raft group's name (braft's group id). */
  group: string;
  /**
   * The initial configuration, braft's text form: `ip:port:idx,ip:port:idx,...`; or `''` for a
   * new replica of a running group, which waits (never campaigning) until the leader adds it
   * with `addPeer`/`changePeers` or `raftstore add_peer`. Once the data directory holds a
   * configuration, that one is used.
   */
  config: string;
  /** This replica's port; it must be in `config` with `ip`. */
  port: number;
  ip?: string;
  /** Index of this replica on ip:port (braft's idx), default 0. */
  idx?: number;
  /** The data directory (log, term/vote, snapshots); locked while the node runs. */
  dir: string;
  stateMachine: StateMachine<R>;
  electionTimeoutMs?: number;
  maxElectionDelayMs?: number;
  leaderLease?: boolean;
  /** Proposals refused with ERR_RAFT_BUSY while this many entries are uncommitted. */
  maxUncommittedEntries?: number;
  /**
   * At most this many proposals of this replica in flight (made, not yet settled); more are
   * refused at once with ERR_RAFT_BUSY, so a caller that does not await cannot queue without
   * bound. Default 100000.
   */
  maxPendingProposals?: number;
  snapshotIntervalS?: number;
  snapshotLogThreshold?: number;
  /**
   * A leader whose state machine makes no progress for this long while committed entries
   * wait (its event loop is blocked, say) hands leadership to an up-to-date follower, so
   * clients are served elsewhere. Default 30000; 0 turns the guard off.
   */
  stuckApplyTimeoutMs?: number;
  /**
   * Where the engine's log records go (elections, leader changes, membership, snapshots,
   * slow fsyncs, errors): a pino logger fits, called as `logger.info({ group, peer, ...fields },
   * message)`. Default: one line per record on stderr.
   */
  logger?: Logger;
  /** The lowest level logged: 'debug' | 'info' | 'warn' | 'error'. Default: RAFTSTORE_LOG, else 'info'. */
  logLevel?: LogLevel;
  /**
   * Who may call this port's administrative services (membership changes, reset_peer,
   * transfer_leader, snapshot) and its forwarding service; others get EPERM. Rules:
   * 'loopback', 'peers' (any peer of any group on this port), 'any', or an IPv4 address or
   * network ('10.1.0.0/16'). Default ['loopback', 'peers']. Every group on one port must
   * name the same list.
   */
  adminAllow?: string[];
  /**
   * Mutual TLS for this port and everything its replicas send: PEM file paths of the CA, this
   * replica's certificate (signed by the CA) and its key. Peers and clients without a
   * certificate the CA signed are refused. Replaced files take effect for new connections
   * within a second, without a restart. Default: plain TCP (what braft_cli speaks). Every group
   * on one port must name the same files.
   */
  tls?: TlsFiles;
}

export interface ProposeOptions {
  signal?: AbortSignal;
  /** Reject with ERR_RAFT_TIMEOUT after this long (the entry may still be applied later). */
  timeoutMs?: number;
}

export interface ReadBarrierOptions {
  /** 'linearizable' (default): ReadIndex through the leader. 'lease': the leader's lease
   *  when leaderLease is on and valid (assumes bounded clock drift), else as linearizable. */
  consistency?: 'linearizable' | 'lease';
  signal?: AbortSignal;
  timeoutMs?: number;
}

export type Role = NativeStatus['role'];
export type RaftStatus = NativeStatus & {
  /** In the latest configuration this replica knows (as voter, learner or old voter). */
  member: boolean;
};

export interface RaftNodeEvents {
  role: [role: Role, term: number];
  leader: [leaderId: string | null, term: number];
  error: [err: RaftError];
  snapshot: [info: SnapshotEvent];
  configuration: [conf: Configuration, index: number];
  /**
   * This replica was a member and the group's configuration no longer includes it (a
   * `removePeer` or `changePeers` elsewhere): it will not hear from a leader again. Close
   * it, or wait to be added back. `status().member` says the same.
   */
  removed: [conf: Configuration];
}

// Every proposal carries a small header: 8 bytes the leader overwrites with its clock when
// it appends the entry (the engine's stamp_leader_time), then version, origin and sequence,
// so that the replica that proposed it recognises it when it is applied.
const HEADER = 25;
const VERSION = 2;
// Entry types as the engine sends them (core::EntryType).
const ENTRY_DATA = 2;
const ENTRY_CONFIGURATION = 3;

interface Pending<R> {
  resolve(result: R): void;
  reject(err: unknown): void;
  /** The engine did not apply it (may send it again). */
  refused(err: RaftError): void;
}

// One native host per ip:port in this process, shared by the groups on that port.
const hosts = new Map<string, { host: NativeHost; users: number; adminAllow: string; tls: string }>();

function acquireHost(ip: string, port: number, adminAllow: string[], tls: TlsFiles | undefined): NativeHost {
  const key = `${ip}:${port}`;
  const tlsKey = tls ? `${tls.ca}|${tls.cert}|${tls.key}` : 'plain';
  let entry = hosts.get(key);
  if (!entry) {
    try {
      entry = { host: new binding.Host(ip, port, adminAllow, tls), users: 0, adminAllow: adminAllow.join(','), tls: tlsKey };
    } catch (err) {
      throw fromNative(err);
    }
    hosts.set(key, entry);
  } else if (entry.adminAllow !== adminAllow.join(',')) {
    bad(`adminAllow [${adminAllow.join(', ')}] differs from [${entry.adminAllow}] of the other groups on ${key}`);
  } else if (entry.tls !== tlsKey) {
    bad(`tls differs from the other groups' on ${key}: one port is either TLS with one set of files, or plain`);
  }
  entry.users += 1;
  return entry.host;
}

function releaseHost(ip: string, port: number): void {
  const key = `${ip}:${port}`;
  const entry = hosts.get(key);
  if (!entry) return;
  entry.users -= 1;
  if (entry.users === 0) {
    hosts.delete(key);
    entry.host.close();
  }
}

function bad(what: string): never {
  throw new RaftError('ERR_RAFT_BAD_CONFIG', what);
}

// A bad option's value as the user should see it: '9150' (a string) is not 9150.
function shown(value: unknown): string {
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  return typeof value === 'object' && value !== null ? `an ${Array.isArray(value) ? 'array' : 'object'}` : String(value);
}

function isMember(conf: Configuration, self: string): boolean {
  const me = parsePeerId(self).toString();
  return [...conf.peers, ...conf.oldPeers, ...conf.learners].some((p) => parsePeerId(p).toString() === me);
}

function integer(name: string, value: unknown, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    bad(`${name} must be an integer from ${min} to ${max}, got ${shown(value)}`);
  return value;
}

interface Validated {
  ip: string;
  self: string;
  maxPendingProposals: number;
  logger: Logger;
  adminAllow: string[];
  tls: TlsFiles | undefined;
  native: ConstructorParameters<typeof binding.Node>[1];
}

function validate<R>(o: RaftNodeOptions<R>): Validated {
  if (typeof o !== 'object' || o === null) bad('options must be an object');
  if (typeof o.group !== 'string' || !/^[A-Za-z0-9_.-]{1,128}$/.test(o.group))
    bad(`group must be 1-128 characters of A-Z a-z 0-9 _ . -, got ${JSON.stringify(o.group)}`);
  if (typeof o.config !== 'string') bad('config must be a string such as "127.0.0.1:8100:0,127.0.0.1:8101:0"');
  // '' is a replica that joins an existing group: it waits, never campaigning, until the
  // leader adds it (addPeer or braft_cli add_peer); a data directory's own configuration wins.
  const peers = o.config === '' ? [] : parseConfiguration(o.config);
  const ip = o.ip ?? '127.0.0.1';
  // Port 0 only for a group of one (a standalone store): nobody needs to reach it, and the
  // host listens on any free port.
  const port = integer('port', o.port, peers.length === 1 ? 0 : 1, 65535, NaN);
  const idx = integer('idx', o.idx, 0, 2147483647, 0);
  const self = parsePeerId(`${ip}:${port}:${idx}`);
  if (peers.length > 0 && !peers.some((p) => p.equals(self)))
    bad(`this replica (${self.toString()}) is not in config "${o.config}"; list it, or start it with config '' and add it with addPeer`);
  if (typeof o.dir !== 'string' || o.dir === '') bad('dir must be a non-empty path');
  const sm = o.stateMachine as Partial<StateMachine<R>> | undefined;
  if (typeof sm !== 'object' || sm === null || typeof sm.apply !== 'function')
    bad('stateMachine must be an object with an apply(entries) method');
  const snapshots = typeof sm.snapshot === 'function';
  if (snapshots !== (typeof sm.restore === 'function'))
    bad('stateMachine must have both snapshot(writer) and restore(reader), or neither');
  const electionTimeoutMs = integer('electionTimeoutMs', o.electionTimeoutMs, 10, 600_000, 1000);
  const maxElectionDelayMs = integer('maxElectionDelayMs', o.maxElectionDelayMs, 0, 600_000,
    Math.min(electionTimeoutMs, 1000));
  if (o.leaderLease !== undefined && typeof o.leaderLease !== 'boolean')
    bad(`leaderLease must be a boolean, got ${shown(o.leaderLease)}`);
  const logger = o.logger ?? stderrLogger;
  if (typeof logger !== 'object' || logger === null || LOG_LEVELS.some((l) => typeof (logger as Partial<Logger>)[l] !== 'function'))
    bad('logger must have debug, info, warn and error methods (a pino logger does)');
  const adminAllow = o.adminAllow ?? ['loopback', 'peers'];
  if (!Array.isArray(adminAllow) || adminAllow.some((r) => typeof r !== 'string'))
    bad(`adminAllow must be an array of strings such as ['loopback', 'peers', '10.0.0.0/8'], got ${shown(adminAllow)}`);
  const tls = o.tls;
  if (tls !== undefined && (typeof tls !== 'object' || tls === null || (['ca', 'cert', 'key'] as const).some((k) => typeof tls[k] !== 'string' || tls[k] === '')))
    bad('tls must be { ca, cert, key }: the paths of PEM files (the CA, this replica\'s certificate and its key)');
  return {
    ip,
    self: self.toString(),
    maxPendingProposals: integer('maxPendingProposals', o.maxPendingProposals, 1, 1e8, 100_000),
    logger,
    adminAllow,
    tls,
    native: {
      group: o.group,
      self: self.toString(),
      config: o.config,
      dir: o.dir,
      electionTimeoutMs,
      maxElectionDelayMs,
      leaderLease: o.leaderLease ?? false,
      maxUncommittedEntries: integer('maxUncommittedEntries', o.maxUncommittedEntries, 0, 1e9, 100_000),
      snapshotIntervalS: integer('snapshotIntervalS', o.snapshotIntervalS, 0, 1e7, 0),
      snapshotLogThreshold: integer('snapshotLogThreshold', o.snapshotLogThreshold, 0, 1e12, 0),
      stuckApplyTimeoutMs: integer('stuckApplyTimeoutMs', o.stuckApplyTimeoutMs, 0, 2 ** 31, 30_000),
      snapshots,
      logLevel: resolveLogLevel(o.logLevel),
    },
  };
}

export class RaftNode<R = unknown> extends EventEmitter<RaftNodeEvents> {
  readonly group: string;
  /** This replica's peer id, `ip:port:idx:role`. */
  readonly id: string;
  readonly #options: Validated;
  readonly #port: number;
  readonly #sm: StateMachine<R>;
  // How long a proposal without timeoutMs waits for a leader: two elections' worth.
  readonly #leaderWaitMs: number;
  readonly #origin = randomBytes(8);
  #seq = 0;
  readonly #pending = new Map<number, Pending<R>>();
  #node: NativeNode | undefined;
  #host: NativeHost | undefined;
  #state: 'new' | 'running' | 'closed' = 'new';
  #role: Role = 'follower';
  #term = 0;
  #leaderId: string | null = null;
  #member: boolean | undefined; // once known: in the configuration (for the 'removed' event)
  #applied = 0;
  readonly #leaderWaiters = new Set<() => void>();
  #appliedWaiters: { index: number; resolve: () => void; reject: (e: unknown) => void }[] = [];
  // While a restore runs, what the engine sends next waits here (it comes after it).
  #restoring = false;
  #backlog: [kind: 'apply' | 'load', a: unknown, b: unknown, c: unknown][] = [];

  constructor(options: RaftNodeOptions<R>) {
    super();
    this.#options = validate(options);
    this.group = options.group;
    this.id = this.#options.self;
    this.#port = options.port;
    this.#sm = options.stateMachine;
    const n = this.#options.native;
    this.#leaderWaitMs = 2 * (n.electionTimeoutMs + n.maxElectionDelayMs);
  }

  /**
   * Opens the data directory and joins the group; resolves once the state machine has
   * restored the newest snapshot on disk, if any (the log after it is applied as the
   * replica learns what is committed).
   */
  async start(): Promise<void> {
    if (this.#state !== 'new') throw new RaftError('ERR_RAFT_SHUTDOWN', `node ${this.id} was already started`);
    const host = acquireHost(this.#options.ip, this.#port, this.#options.adminAllow, this.#options.tls);
    this.#host = host;
    try {
      this.#node = new binding.Node(host, this.#options.native, (kind, a, b, c) => this.#onNative(kind, a, b, c));
    } catch (err) {
      releaseHost(this.#options.ip, this.#port);
      this.#host = undefined;
      this.#state = 'closed';
      throw fromNative(err);
    }
    this.#state = 'running';
    const restoring = this.#node.status()?.snapshotIndex ?? 0;
    if (restoring > this.#applied) {
      const node = this.#node;
      node.ref(); // the restore request is on its way: nothing else may keep the process up
      try {
        await new Promise<void>((resolve, reject) => this.#appliedWaiters.push({ index: restoring, resolve, reject }));
      } finally {
        if (this.#node === node) node.unref();
      }
    }
  }

  get role(): Role {
    return this.#role;
  }
  get term(): number {
    return this.#term;
  }
  get leaderId(): string | null {
    return this.#leaderId;
  }
  get isLeader(): boolean {
    return this.#role === 'leader';
  }
  /** The last index applied to the state machine here. */
  get appliedIndex(): number {
    return this.#applied;
  }

  /**
   * Replicates `data` and resolves with the state machine's result for it, computed on this
   * replica once it applied the entry. Works on any replica (a follower forwards it to the
   * leader). While no leader is known it waits for one, up to timeoutMs (default: two
   * election timeouts), then rejects with ERR_RAFT_NOT_LEADER; also ERR_RAFT_BUSY under
   * backpressure, ERR_RAFT_TIMEOUT, ERR_RAFT_LEADER_CHANGED (outcome unknown), ERR_RAFT_SHUTDOWN.
   */
  propose(data: Uint8Array, options: ProposeOptions = {}): Promise<R> {
    const node = this.#node;
    if (this.#state !== 'running' || !node)
      return Promise.reject(new RaftError('ERR_RAFT_SHUTDOWN', `node ${this.id} is not running`));
    const { signal, timeoutMs } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (timeoutMs !== undefined && (!Number.isFinite(timeoutMs) || timeoutMs <= 0))
      return Promise.reject(new RaftError('ERR_RAFT_BAD_ARGUMENT', `timeoutMs must be a positive number, got ${timeoutMs}`));
    if (this.#pending.size >= this.#options.maxPendingProposals)
      return Promise.reject(new RaftError('ERR_RAFT_BUSY',
        `${this.#pending.size} proposals are in flight (maxPendingProposals); await some before proposing more`));
    const seq = ++this.#seq;
    const entry = Buffer.allocUnsafe(HEADER + data.byteLength);
    entry.fill(0, 0, 8); // the leader's time goes here
    entry[8] = VERSION;
    this.#origin.copy(entry, 9);
    entry.writeUInt32LE(seq % 2 ** 32, 17);
    entry.writeUInt32LE(Math.floor(seq / 2 ** 32), 21);
    entry.set(data, HEADER);
    // ERR_RAFT_NOT_LEADER means the entry was placed nowhere (no leader known here, or the
    // one asked had stepped down), so it is sent again once a leader is known: an election
    // costs callers a delay, not an error. Other refusals are final.
    const deadline = performance.now() + (timeoutMs ?? this.#leaderWaitMs);
    const submit = (): void => {
      if (this.#pending.has(seq)) this.#node?.propose(entry, seq);
    };
    return new Promise<R>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => finish(() => reject(signal?.reason));
      const finish = (settle: () => void): void => {
        if (!this.#pending.delete(seq)) return;
        if (this.#pending.size === 0) this.#node?.unref();
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        settle();
      };
      if (this.#pending.size === 0) node.ref(); // in flight: keep the process alive
      this.#pending.set(seq, {
        resolve: (r) => finish(() => resolve(r)),
        reject: (e) => finish(() => reject(e)),
        refused: (e) => {
          if (e.code === 'ERR_RAFT_NOT_LEADER' && performance.now() < deadline) void this.#leaderNews().then(submit);
          else finish(() => reject(e));
        },
      });
      if (timeoutMs !== undefined)
        timer = setTimeout(() => finish(() => reject(new RaftError('ERR_RAFT_TIMEOUT',
          `proposal not applied within ${timeoutMs} ms (it may still be)`))), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      // Success is reported by apply (with the result); the engine reports only refusals.
      submit();
    });
  }

  // The next leader change, or a short pause (the leader asked may simply not know yet).
  #leaderNews(): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#leaderWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, 50);
      this.#leaderWaiters.add(done);
    });
  }

  /**
   * Resolves once this replica has applied everything committed when the barrier was
   * asked for: a read of local state after it sees every write acknowledged before.
   */
  async readBarrier(options: ReadBarrierOptions = {}): Promise<number> {
    const { consistency = 'linearizable', signal, timeoutMs } = options;
    if (consistency !== 'linearizable' && consistency !== 'lease')
      throw new RaftError('ERR_RAFT_BAD_ARGUMENT', `consistency must be 'linearizable' or 'lease', got ${String(consistency)}`);
    // Like propose: while no leader is known, wait for one (up to timeoutMs, default two
    // election timeouts) rather than fail; a read barrier is always safe to ask again.
    const deadline = performance.now() + (timeoutMs ?? this.#leaderWaitMs);
    return this.#bounded(async () => {
      let index: number;
      for (;;) {
        try {
          index = await this.#native().readIndex(consistency === 'lease');
          break;
        } catch (e: unknown) {
          const err = fromNative(e);
          if (err.code !== 'ERR_RAFT_NOT_LEADER' || performance.now() >= deadline) throw err;
        }
        await this.#leaderNews();
      }
      if (this.#applied < index)
        await new Promise<void>((resolve, reject) => this.#appliedWaiters.push({ index, resolve, reject }));
      return index;
    }, signal, timeoutMs);
  }

  /** Adds a voter (it catches up first); resolves when the new configuration commits. */
  async addPeer(peer: string, options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<ConfChange> {
    return this.#membership('add_peer', [parsePeerId(peer).toString()], options);
  }
  async removePeer(peer: string, options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<ConfChange> {
    return this.#membership('remove_peer', [parsePeerId(peer).toString()], options);
  }
  /** Replaces the configuration (joint consensus when two or more peers change). */
  async changePeers(config: string, options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<ConfChange> {
    return this.#membership('change_peers', parseConfiguration(config).map(String), options);
  }
  /** Forces this replica's configuration, for quorum loss only: unsafe by design (braft). */
  async resetPeers(config: string): Promise<void> {
    const peers = parseConfiguration(config).map(String);
    await this.#native().resetPeers(peers).catch((e: unknown) => { throw fromNative(e); });
  }
  /** Hands leadership to `peer` (or, without one, to the most up-to-date follower). */
  async transferLeader(peer?: string): Promise<void> {
    const target = peer === undefined ? '' : parsePeerId(peer).toString();
    await this.#native().transferLeader(target).catch((e: unknown) => { throw fromNative(e); });
  }

  #native(): NativeNode {
    if (this.#state !== 'running' || !this.#node)
      throw new RaftError('ERR_RAFT_SHUTDOWN', `node ${this.id} is not running`);
    return this.#node;
  }

  // A change refused with ERR_RAFT_BUSY is retried: another change is in flight, or this
  // leader has not yet committed its first entry (it may not change membership before that,
  // Raft §4.1), and either clears by itself. The caller bounds the wait with signal/timeoutMs.
  #membership(method: 'add_peer' | 'remove_peer' | 'change_peers', peers: string[],
    options: { signal?: AbortSignal; timeoutMs?: number }): Promise<ConfChange> {
    let gaveUp = false;
    const attempt = async (): Promise<ConfChange> => {
      for (let delayMs = 5; ; delayMs = Math.min(delayMs * 2, 100)) {
        try {
          return await this.#native().changeMembership(method, peers);
        } catch (e: unknown) {
          const err = fromNative(e);
          if (err.code !== 'ERR_RAFT_BUSY') throw err;
        }
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        if (gaveUp) throw new RaftError('ERR_RAFT_BUSY', 'gave up waiting for the previous configuration change');
      }
    };
    const bounded = this.#bounded(attempt, options.signal, options.timeoutMs);
    bounded.catch(() => { gaveUp = true; });
    return bounded;
  }

  // Runs `work`, rejecting early on abort or after timeoutMs (the work itself goes on).
  #bounded<T>(work: () => Promise<T>, signal?: AbortSignal, timeoutMs?: number): Promise<T> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (timeoutMs !== undefined && (!Number.isFinite(timeoutMs) || timeoutMs <= 0))
      return Promise.reject(new RaftError('ERR_RAFT_BAD_ARGUMENT', `timeoutMs must be a positive number, got ${timeoutMs}`));
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => done(() => reject(signal?.reason));
      let settled = false;
      const done = (f: () => void): void => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        f();
      };
      if (timeoutMs !== undefined)
        timer = setTimeout(() => done(() => reject(new RaftError('ERR_RAFT_TIMEOUT', `not done within ${timeoutMs} ms`))), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      let started: Promise<T>;
      try {
        started = work();
      } catch (e) {
        return done(() => reject(e));
      }
      started.then((v) => done(() => resolve(v)), (e: unknown) => done(() => reject(e)));
    });
  }

  status(): RaftStatus {
    const s = this.#node?.status();
    if (!s) throw new RaftError('ERR_RAFT_SHUTDOWN', `node ${this.id} is not running`);
    return { ...s, appliedIndex: this.#applied, member: isMember(s.configuration, this.id) };
  }

  /** Leaves the group: pending proposals reject with ERR_RAFT_SHUTDOWN, the directory is released. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    const wasRunning = this.#state === 'running';
    this.#state = 'closed';
    this.#node?.close();
    this.#node = undefined;
    this.#host = undefined;
    if (wasRunning) releaseHost(this.#options.ip, this.#port);
    this.#rejectAll(new RaftError('ERR_RAFT_SHUTDOWN', `node ${this.id} closed`));
    if (this.#role === 'leader') this.#sm.onLeaderStop?.();
    this.#role = 'follower';
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #rejectAll(err: RaftError): void {
    for (const p of [...this.#pending.values()]) p.reject(err);
    const waiters = this.#appliedWaiters;
    this.#appliedWaiters = [];
    for (const w of waiters) w.reject(err);
  }

  #onNative(kind: string, a: unknown, b: unknown, c: unknown): void {
    // A record of the close itself arrives after it: logged all the same.
    if (kind === 'log') return this.#log(a as LogLevel, b as string, c as Record<string, string>);
    if (this.#state !== 'running') return;
    if ((kind === 'apply' || kind === 'load') && this.#restoring) this.#backlog.push([kind, a, b, c]);
    else if (kind === 'apply') this.#apply(a as Buffer, b as number, c as number);
    else if (kind === 'refused') this.#pending.get(a as number)?.refused(fromNative(b));
    else if (kind === 'role') this.#onRole(a as Role, b as number, c as string);
    else if (kind === 'save') this.#save(a as string, b as number);
    else if (kind === 'load') this.#restore(a as string, b as number, c as string);
  }

  #log(level: LogLevel, message: string, fields: Record<string, string>): void {
    try {
      this.#options.logger[level]({ group: this.group, peer: this.id, ...fields }, message);
    } catch {
      // A logger that throws must not stop the replica's callbacks.
    }
  }

  /**
   * The engine's figures for this replica and its port, as Prometheus metric families
   * (docs/operations.md lists them); empty once closed. registerMetrics() puts them in a
   * prom-client registry.
   */
  metrics(): MetricFamily[] {
    if (!this.#node || !this.#host) return [];
    return [...this.#node.metrics(), ...this.#host.metrics()];
  }

  /** The recent info-and-above log records, oldest first (the status page's events). */
  events(): LogEvent[] {
    return this.#node?.events() ?? [];
  }

  #apply(packed: Buffer, count: number, lastIndex: number): void {
    let entries: Entry[] = [];
    let origins: (number | undefined)[] = [];
    // Data entries go to apply() in runs; a configuration entry is reported between them,
    // in log order. False once the state machine failed (the replica stopped).
    const flush = (): boolean => {
      if (entries.length === 0) return true;
      let results: R[];
      try {
        results = this.#sm.apply(entries);
        if (!Array.isArray(results) || results.length !== entries.length)
          throw new TypeError(`apply returned ${Array.isArray(results) ? results.length : typeof results} results for ${entries.length} entries`);
      } catch (cause) {
        // Never diverge: a replica whose state machine failed stops (braft's on_error).
        this.#fail(new RaftError('ERR_RAFT_STATE_MACHINE',
          `state machine apply failed at index ${entries[0]?.index}: ${String(cause)}`, { cause }));
        return false;
      }
      for (let i = 0; i < entries.length; i++) {
        const seq = origins[i];
        if (seq !== undefined) this.#pending.get(seq)?.resolve(results[i] as R);
      }
      entries = [];
      origins = [];
      return true;
    };
    let at = 0;
    for (let i = 0; i < count; i++) {
      const index = Number(packed.readBigUInt64LE(at));
      const term = Number(packed.readBigUInt64LE(at + 8));
      const type = packed.readUInt8(at + 16);
      const length = packed.readUInt32LE(at + 17);
      const data = packed.subarray(at + 21, at + 21 + length);
      at += 21 + length;
      if (type === ENTRY_CONFIGURATION) {
        if (!flush() || !this.#configurationCommitted(data.toString(), index)) return;
      }
      if (type !== ENTRY_DATA) continue; // no-op entries are the engine's own
      if (length < HEADER || data[8] !== VERSION) {
        if (flush())
          this.#fail(new RaftError('ERR_RAFT_BAD_ENTRY', `entry ${index} is not in entry format ${VERSION} (written by another version?)`));
        return;
      }
      const mine = data.compare(this.#origin, 0, 8, 9, 17) === 0;
      origins.push(mine ? data.readUInt32LE(17) + data.readUInt32LE(21) * 2 ** 32 : undefined);
      const time = data.readUInt32LE(0) + data.readUInt32LE(4) * 2 ** 32;
      entries.push({ index, term, time, data: data.subarray(HEADER) });
    }
    if (!flush()) return;
    this.#appliedUpTo(lastIndex);
  }

  // `text`: the addon's conf_text (peers, old peers, learners: one braft list per line).
  #configurationCommitted(text: string, index: number): boolean {
    const [peers = '', oldPeers = '', learners = ''] = text.split('\n');
    const list = (l: string): string[] => (l === '' ? [] : l.split(','));
    const conf: Configuration = { peers: list(peers), oldPeers: list(oldPeers), learners: list(learners) };
    try {
      this.#sm.onConfigurationCommitted?.(conf, index);
    } catch (cause) {
      this.#fail(new RaftError('ERR_RAFT_STATE_MACHINE',
        `onConfigurationCommitted failed at index ${index}: ${String(cause)}`, { cause }));
      return false;
    }
    this.emit('configuration', conf, index);
    this.#checkMembership(conf);
    return true;
  }

  // A removed replica learns the configuration without it (the leader sends it that and its
  // commit before letting it go), or at least sees no leader any more: say so once.
  #checkMembership(conf: Configuration | undefined = this.#node?.status()?.configuration): void {
    if (!conf || conf.peers.length + conf.oldPeers.length + conf.learners.length === 0) return;
    const member = isMember(conf, this.id);
    const was = this.#member;
    this.#member = member;
    if (was === true && !member) this.emit('removed', conf);
  }

  #appliedUpTo(index: number): void {
    this.#applied = Math.max(this.#applied, index);
    this.#node?.setApplied(this.#applied);
    if (this.#appliedWaiters.length > 0) {
      const ready = this.#appliedWaiters.filter((w) => w.index <= this.#applied);
      this.#appliedWaiters = this.#appliedWaiters.filter((w) => w.index > this.#applied);
      for (const w of ready) w.resolve();
    }
  }

  /** Takes a snapshot now; resolves once it is durable (and the log below it may go). */
  async snapshot(): Promise<void> {
    if (!this.#options.native.snapshots)
      throw new RaftError('ERR_RAFT_BAD_ARGUMENT', 'the state machine has no snapshot() and restore()');
    await this.#native().snapshot().catch((e: unknown) => { throw fromNative(e); });
  }

  #save(dir: string, token: number): void {
    const node = this.#node;
    const sm = this.#sm;
    if (!node || !sm.snapshot) return;
    const index = this.#applied;
    const started = performance.now();
    const fail = (e: unknown): void => node.snapshotDone(token, String(e));
    try {
      Promise.resolve(sm.snapshot(new SnapshotWriter(dir))).then(() => {
        node.snapshotDone(token);
        this.emit('snapshot', { index, durationMs: performance.now() - started });
      }, fail);
    } catch (e) {
      fail(e);
    }
  }

  #restore(dir: string, index: number, conf: string): void {
    const sm = this.#sm;
    if (!sm.restore) return;
    const done = (): void => {
      this.#restoring = false;
      if (!this.#configurationCommitted(conf, index)) return;
      this.#appliedUpTo(index);
      // In order, until one of them is another restore (the rest then waits for it).
      while (this.#backlog.length > 0 && !this.#restoring && this.#state === 'running') {
        const [kind, a, b, c] = this.#backlog.shift()!;
        this.#onNative(kind, a, b, c);
      }
    };
    const failed = (cause: unknown): void =>
      this.#fail(new RaftError('ERR_RAFT_STATE_MACHINE', `restore from ${dir} failed: ${String(cause)}`, { cause }));
    this.#restoring = true;
    try {
      const r = sm.restore(new SnapshotReader(dir, index));
      if (r instanceof Promise) r.then(done, failed);
      else done();
    } catch (e) {
      failed(e);
    }
  }

  #onRole(role: Role, term: number, leader: string): void {
    const leaderId = leader === '' ? null : leader;
    const wasLeader = this.#role === 'leader';
    const roleChanged = role !== this.#role;
    const leaderChanged = leaderId !== this.#leaderId || term !== this.#term;
    this.#role = role;
    this.#term = term;
    this.#leaderId = leaderId;
    if (wasLeader && role !== 'leader') this.#sm.onLeaderStop?.();
    if (!wasLeader && role === 'leader') this.#sm.onLeaderStart?.(term);
    if (roleChanged) this.emit('role', role, term);
    if (leaderChanged) {
      for (const wake of [...this.#leaderWaiters]) wake();
      this.emit('leader', leaderId, term);
    }
    this.#checkMembership();
  }

  #fail(err: RaftError): void {
    this.#rejectAll(err);
    void this.close();
    this.#sm.onError?.(err);
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}
