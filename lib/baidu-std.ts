// A small client for brpc's baidu_std protocol (docs/braft-compatibility.md §1), enough to call
// braft's CliService from TypeScript: the PRPC frame, RpcMeta, and a minimal proto2
// codec. Written from the protocol notes, not from brpc; any braft-compatible server
// answers it. Calls follow brpc's client rules that braft_cli relies on: one deadline
// for the whole call including retries (-1 = none), a 200 ms connect timeout, and retries
// only for the errors brpc's default policy retries.
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { gunzipSync, inflateSync } from 'node:zlib';
import { RaftError, type RaftErrorCode } from './errors.js';

// ---------------------------------------------------------------------------------------
// proto2 wire format: only what RpcMeta and braft's messages need.

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_BYTES = 2;
const WIRE_START_GROUP = 3;
const WIRE_END_GROUP = 4;
const WIRE_FIXED32 = 5;

/** Builds one protobuf message; fields are written in the order they are added. */
export class ProtoWriter {
  readonly #parts: Buffer[] = [];

  #varint(value: bigint): void {
    // Negative int32/int64 values are sign-extended to ten bytes, as protobuf does.
    let v = BigInt.asUintN(64, value);
    const bytes: number[] = [];
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v !== 0n) byte |= 0x80;
      bytes.push(byte);
    } while (v !== 0n);
    this.#parts.push(Buffer.from(bytes));
  }

  #tag(field: number, wire: number): void {
    this.#varint(BigInt(field * 8 + wire));
  }

  /** int32, int64, uint32, uint64, bool and enum fields. */
  int(field: number, value: number | bigint | boolean): this {
    this.#tag(field, WIRE_VARINT);
    this.#varint(typeof value === 'boolean' ? (value ? 1n : 0n) : BigInt(value));
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.#tag(field, WIRE_BYTES);
    this.#varint(BigInt(value.byteLength));
    this.#parts.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, Buffer.from(value, 'utf8'));
  }

  strings(field: number, values: Iterable<string>): this {
    for (const v of values) this.string(field, v);
    return this;
  }

  message(field: number, inner: ProtoWriter): this {
    return this.bytes(field, inner.finish());
  }

  finish(): Buffer {
    return Buffer.concat(this.#parts);
  }
}

/** One decoded field: varints as bigint (unsigned 64-bit), length-delimited as bytes. */
export type ProtoField =
  | { field: number; wire: 0 | 1 | 5; value: bigint }
  | { field: number; wire: 2; value: Buffer };

/** Thrown for bytes that are not a protobuf message; callers turn it into a RaftError. */
export class ProtoError extends Error {}

/** Splits a message into its fields; groups (never used by braft) are skipped. */
export function decodeFields(buf: Buffer): ProtoField[] {
  const fields: ProtoField[] = [];
  let at = 0;
  const varint = (): bigint => {
    let result = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (at >= buf.length) throw new ProtoError('truncated varint');
      const byte = buf[at++] as number;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return BigInt.asUintN(64, result);
    }
    throw new ProtoError('varint longer than 10 bytes');
  };
  const skip = (n: number): Buffer => {
    if (n > buf.length - at) throw new ProtoError('field runs past the end of the message');
    const out = buf.subarray(at, at + n);
    at += n;
    return out;
  };
  const groups: number[] = [];
  while (at < buf.length) {
    const key = varint();
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (field === 0 || key >> 3n > 0x1fffffffn) throw new ProtoError(`bad field number ${key >> 3n}`);
    let decoded: ProtoField;
    switch (wire) {
      case WIRE_VARINT: decoded = { field, wire: 0, value: varint() }; break;
      case WIRE_FIXED64: decoded = { field, wire: 1, value: skip(8).readBigUInt64LE(0) }; break;
      case WIRE_FIXED32: decoded = { field, wire: 5, value: BigInt(skip(4).readUInt32LE(0)) }; break;
      case WIRE_BYTES: {
        const n = varint();
        if (n > BigInt(buf.length - at)) throw new ProtoError('length-delimited field runs past the end');
        decoded = { field, wire: 2, value: skip(Number(n)) };
        break;
      }
      case WIRE_START_GROUP: groups.push(field); continue;
      case WIRE_END_GROUP:
        if (groups.pop() !== field) throw new ProtoError('unmatched end of group');
        continue;
      default: throw new ProtoError(`bad wire type ${wire}`);
    }
    if (groups.length === 0) fields.push(decoded); // fields inside a group are skipped
  }
  if (groups.length > 0) throw new ProtoError('unterminated group');
  return fields;
}

/** The last value of a length-delimited field as text (proto2: last one wins). */
export function stringField(fields: readonly ProtoField[], field: number): string | undefined {
  let out: string | undefined;
  for (const f of fields) if (f.field === field && f.wire === WIRE_BYTES) out = f.value.toString('utf8');
  return out;
}

/** Every value of a repeated string field, in order. */
export function stringsField(fields: readonly ProtoField[], field: number): string[] {
  const out: string[] = [];
  for (const f of fields) if (f.field === field && f.wire === WIRE_BYTES) out.push(f.value.toString('utf8'));
  return out;
}

/** The last value of a varint field, unsigned 64-bit. */
export function intField(fields: readonly ProtoField[], field: number): bigint | undefined {
  let out: bigint | undefined;
  for (const f of fields) if (f.field === field && f.wire === WIRE_VARINT) out = f.value;
  return out;
}

function bytesField(fields: readonly ProtoField[], field: number): Buffer | undefined {
  let out: Buffer | undefined;
  for (const f of fields) if (f.field === field && f.wire === WIRE_BYTES) out = f.value;
  return out;
}

// ---------------------------------------------------------------------------------------
// Error codes (docs/braft-compatibility.md §1.4, §2.5) and how they map onto RaftError codes.

/** Numeric codes a baidu_std call can fail with: errno, brpc and braft values. */
export const RpcCode = {
  EPERM: 1, ENOENT: 2, EIO: 5, EAGAIN: 11, EACCES: 13, EBUSY: 16, EINVAL: 22, EPIPE: 32,
  ENODATA: 61, ENETUNREACH: 101, ECONNRESET: 104, ETIMEDOUT: 110, ECONNREFUSED: 111,
  EHOSTDOWN: 112, EHOSTUNREACH: 113, ECANCELED: 125,
  ENOSERVICE: 1001, ENOMETHOD: 1002, EREQUEST: 1003, ERPCTIMEDOUT: 1008, EFAILEDSOCKET: 1009,
  EOVERCROWDED: 1011, EEOF: 1014, EINTERNAL: 2001, ERESPONSE: 2002, ELOGOFF: 2003, ELIMIT: 2004,
  ECLOSE: 2005,
  ERAFTTIMEDOUT: 10001, ESTATEMACHINE: 10002, ECATCHUP: 10003, ELEADERREMOVED: 10004,
  ESETPEER: 10005, ENODESHUTDOWN: 10006, EHIGHERTERMREQUEST: 10007, EHIGHERTERMRESPONSE: 10008,
  EBADNODE: 10009, EVOTEFORCANDIDATE: 10010, ENEWLEADER: 10011, ELEADERCONFLICT: 10012,
  ETRANSFERLEADERSHIP: 10013, ELOGDELETED: 10014, ENOMOREUSERLOG: 10015, EREADONLY: 10016,
} as const;

// brpc's default retry policy: these are retried, everything else fails the call at once.
const RETRIED: ReadonlySet<number> = new Set([
  RpcCode.EFAILEDSOCKET, RpcCode.EEOF, RpcCode.EHOSTDOWN, RpcCode.ELOGOFF, RpcCode.ETIMEDOUT,
  RpcCode.ELIMIT, RpcCode.ENOENT, RpcCode.EPIPE, RpcCode.ECONNREFUSED, RpcCode.ECONNRESET,
  RpcCode.ENODATA, RpcCode.EOVERCROWDED,
]);

/** The RaftError code for a numeric baidu_std/braft error code. */
export function raftCodeOf(code: number): RaftErrorCode {
  switch (code) {
    case RpcCode.EPERM: return 'ERR_RAFT_NOT_LEADER'; // braft: "Not leader"
    case RpcCode.EAGAIN: return 'ERR_RAFT_NOT_LEADER'; // CliService: "Unknown leader"
    case RpcCode.ENOENT: // no such group or peer on that server
    case RpcCode.EINVAL:
    case RpcCode.EACCES: // node started with disable_cli
    case RpcCode.ENOSERVICE: // not a braft server
    case RpcCode.ENOMETHOD:
    case RpcCode.EREQUEST:
      return 'ERR_RAFT_BAD_ARGUMENT';
    case RpcCode.EBUSY: case RpcCode.EOVERCROWDED: case RpcCode.ELIMIT: return 'ERR_RAFT_BUSY';
    case RpcCode.ETIMEDOUT: case RpcCode.ERPCTIMEDOUT: case RpcCode.ERAFTTIMEDOUT: return 'ERR_RAFT_TIMEOUT';
    case RpcCode.ECATCHUP: return 'ERR_RAFT_CATCHUP_FAILED';
    case RpcCode.ESTATEMACHINE: return 'ERR_RAFT_STATE_MACHINE';
    case RpcCode.ELEADERREMOVED: case RpcCode.ESETPEER: case RpcCode.EHIGHERTERMREQUEST:
    case RpcCode.EHIGHERTERMRESPONSE: case RpcCode.ENEWLEADER: case RpcCode.ELEADERCONFLICT:
    case RpcCode.ETRANSFERLEADERSHIP:
      return 'ERR_RAFT_LEADER_CHANGED';
    case RpcCode.ENODESHUTDOWN: case RpcCode.ELOGOFF: case RpcCode.ECLOSE: case RpcCode.ECANCELED:
      return 'ERR_RAFT_SHUTDOWN';
    case RpcCode.EIO: case RpcCode.EPIPE: case RpcCode.ENODATA: case RpcCode.ENETUNREACH:
    case RpcCode.ECONNRESET: case RpcCode.ECONNREFUSED: case RpcCode.EHOSTDOWN:
    case RpcCode.EHOSTUNREACH: case RpcCode.EFAILEDSOCKET: case RpcCode.EEOF: case RpcCode.ERESPONSE:
      return 'ERR_RAFT_IO';
    default: return 'ERR_RAFT_INTERNAL';
  }
}

/**
 * A failed call: `rpcCode` is the numeric code of the last attempt (errno, brpc or braft),
 * `code` its RaftError code; the message is brpc-style `[E<code>]text`, once per distinct
 * failure, with how many attempts ended so (`(3 attempts)`) rather than brpc's repetition.
 */
export class RpcError extends RaftError {
  readonly rpcCode: number;
  /** The server answered with this error (rather than the call failing on the way). */
  readonly fromServer: boolean;
  constructor(rpcCode: number, message: string, options: { cause?: unknown; fromServer?: boolean } = {}) {
    super(raftCodeOf(rpcCode), message, options.cause === undefined ? {} : { cause: options.cause });
    this.name = 'RpcError';
    this.rpcCode = rpcCode;
    this.fromServer = options.fromServer ?? false;
  }
}

// ---------------------------------------------------------------------------------------
// Frames and the connection.

const MAGIC = Buffer.from('PRPC', 'latin1');
const HEADER = 12;
/** brpc's default max_body_size. */
export const DEFAULT_MAX_BODY = 64 * 1024 * 1024;

export interface Endpoint {
  host: string;
  port: number;
}

export interface CallOptions {
  /** Deadline for the whole call, retries included; -1 or absent: none (brpc's -1). */
  timeoutMs?: number;
  /** Attempts after the first, for the errors brpc retries; default 3. */
  maxRetry?: number;
  /** Per connection attempt; default 200 ms (brpc's ChannelOptions). */
  connectTimeoutMs?: number;
  logId?: bigint;
  /** Aborts the call (fails with ECANCELED); the client stays usable. */
  signal?: AbortSignal;
}

interface Waiter {
  resolve(payload: Buffer): void;
  reject(err: RpcError): void;
}

/** The error of one attempt, before it is folded into the call's RpcError. */
class AttemptError extends Error {
  constructor(readonly rpcCode: number, readonly text: string, readonly fromServer = false) {
    super(text);
  }
}

const SOCKET_ERRNO: Readonly<Record<string, number>> = {
  ECONNREFUSED: RpcCode.ECONNREFUSED, ECONNRESET: RpcCode.ECONNRESET, EPIPE: RpcCode.EPIPE,
  EHOSTUNREACH: RpcCode.EHOSTUNREACH, ENETUNREACH: RpcCode.ENETUNREACH, ETIMEDOUT: RpcCode.ETIMEDOUT,
  EHOSTDOWN: RpcCode.EHOSTDOWN,
};

// strerror's words, as brpc prints them, rather than Node's "connect ECONNREFUSED ip:port".
const SOCKET_TEXT: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'Connection refused', ECONNRESET: 'Connection reset by peer', EPIPE: 'Broken pipe',
  EHOSTUNREACH: 'No route to host', ENETUNREACH: 'Network is unreachable', ETIMEDOUT: 'Connection timed out',
  EHOSTDOWN: 'Host is down',
};

/** A socket error in strerror's words (`Connection refused`), else Node's message. */
export function socketErrorText(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  return (code !== undefined && Object.hasOwn(SOCKET_TEXT, code) ? SOCKET_TEXT[code] : undefined) ?? err.message;
}

/** How a client's connections are made. */
export interface LinkOptions {
  localAddress?: string;
  tls?: { ca: Buffer; cert: Buffer; key: Buffer };
}

class Connection {
  readonly #socket: Socket;
  readonly #name: string;
  readonly #maxBody: number;
  readonly #waiters = new Map<bigint, Waiter>();
  #chunks: Buffer[] = [];
  #buffered = 0;
  #failure: AttemptError | undefined;
  #connected = false;
  /** Resolves once connected; rejects with the AttemptError that ended the connection. */
  readonly ready: Promise<void>;

  constructor(ep: Endpoint, connectTimeoutMs: number, maxBody: number, link: LinkOptions, onDead: () => void) {
    this.#name = `${ep.host}:${ep.port}`;
    this.#maxBody = maxBody;
    const where = { host: ep.host, port: ep.port, ...(link.localAddress ? { localAddress: link.localAddress } : {}) };
    // Replicas are named by address and trusted by their CA: no host name check.
    this.#socket = link.tls
      ? tlsConnect({ ...where, ...link.tls, checkServerIdentity: () => undefined, minVersion: 'TLSv1.2' })
      : connect(where);
    this.#socket.setNoDelay(true);
    this.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#fail(new AttemptError(RpcCode.ETIMEDOUT, `Fail to connect ${this.#name}: Connection timed out`));
      }, connectTimeoutMs);
      this.#socket.once(link.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        this.#connected = true;
        resolve();
      });
      this.#socket.once('close', () => {
        clearTimeout(timer);
        onDead();
        this.#fail(new AttemptError(RpcCode.EEOF, `Got EOF of ${this.#name}`));
        reject(this.#failure);
      });
    });
    this.ready.catch(() => {}); // observed by each attempt; never an unhandled rejection
    this.#socket.on('error', (err: NodeJS.ErrnoException) => {
      const code = (err.code !== undefined && Object.hasOwn(SOCKET_ERRNO, err.code) ? SOCKET_ERRNO[err.code] : undefined)
        ?? RpcCode.EFAILEDSOCKET;
      const what = this.#connected ? `Fail to talk to ${this.#name}` : `Fail to connect ${this.#name}`;
      this.#fail(new AttemptError(code, `${what}: ${socketErrorText(err)}`));
    });
    this.#socket.on('data', (chunk: Buffer) => this.#onData(chunk));
  }

  get dead(): boolean {
    return this.#failure !== undefined;
  }

  send(frame: Buffer, id: bigint, waiter: Waiter): void {
    if (this.#failure) return waiter.reject(rpcErrorOf(this.#failure));
    this.#waiters.set(id, waiter);
    this.#socket.write(frame);
  }

  forget(id: bigint): void {
    this.#waiters.delete(id);
  }

  close(): void {
    this.#fail(new AttemptError(RpcCode.ECANCELED, `Channel to ${this.#name} closed`));
  }

  // Fails every call waiting here and drops the connection; the next attempt reconnects.
  #fail(err: AttemptError): void {
    if (!this.#failure) this.#failure = err;
    this.#socket.destroy();
    const waiters = [...this.#waiters.values()];
    this.#waiters.clear();
    for (const w of waiters) w.reject(rpcErrorOf(this.#failure));
  }

  #onData(chunk: Buffer): void {
    if (this.#failure) return;
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    try {
      while (this.#buffered >= HEADER) {
        // Frames are small here; joining the chunks once a frame is complete keeps a big one
        // from being copied again for every chunk that arrives.
        const head = this.#chunks.length === 1 ? (this.#chunks[0] as Buffer) : this.#join();
        if (!head.subarray(0, 4).equals(MAGIC))
          throw new ProtoError(`bad magic ${JSON.stringify(head.subarray(0, 4).toString('latin1'))}`);
        const body = head.readUInt32BE(4);
        const metaSize = head.readUInt32BE(8);
        if (body > this.#maxBody) throw new ProtoError(`body of ${body} bytes exceeds the limit of ${this.#maxBody}`);
        if (metaSize > body) throw new ProtoError(`meta size ${metaSize} exceeds body size ${body}`);
        if (this.#buffered < HEADER + body) return;
        const all = this.#join();
        const frame = all.subarray(HEADER, HEADER + body);
        const rest = all.subarray(HEADER + body);
        this.#chunks = rest.length > 0 ? [rest] : [];
        this.#buffered = rest.length;
        this.#onFrame(frame.subarray(0, metaSize), frame.subarray(metaSize));
      }
    } catch (e) {
      const text = e instanceof ProtoError ? e.message : String(e);
      this.#fail(new AttemptError(RpcCode.ERESPONSE, `Fail to parse response from ${this.#name}: ${text}`));
    }
  }

  #join(): Buffer {
    const all = Buffer.concat(this.#chunks, this.#buffered);
    this.#chunks = [all];
    return all;
  }

  #onFrame(metaBytes: Buffer, rest: Buffer): void {
    const meta = decodeFields(metaBytes);
    const response = bytesField(meta, 2);
    if (response === undefined || bytesField(meta, 1) !== undefined)
      throw new ProtoError('RpcMeta of a response must have response and no request');
    const id = intField(meta, 4);
    if (id === undefined) throw new ProtoError('RpcMeta without correlation_id');
    const attachment = Number(BigInt.asIntN(32, intField(meta, 5) ?? 0n));
    if (attachment < 0 || attachment > rest.length) throw new ProtoError(`attachment size ${attachment} exceeds the frame`);
    const waiter = this.#waiters.get(id);
    if (!waiter) return; // a late answer to an attempt that already timed out or was retried
    this.#waiters.delete(id);
    const r = decodeFields(response);
    const errorCode = Number(BigInt.asIntN(32, intField(r, 1) ?? 0n));
    if (errorCode !== 0) {
      return waiter.reject(rpcErrorOf(new AttemptError(errorCode, stringField(r, 2) ?? '', true)));
    }
    let payload = rest.subarray(0, rest.length - attachment);
    const compress = Number(intField(meta, 3) ?? 0n);
    try {
      if (compress === 2) payload = gunzipSync(payload, { maxOutputLength: this.#maxBody });
      else if (compress === 3) payload = inflateSync(payload, { maxOutputLength: this.#maxBody });
      else if (compress !== 0) throw new Error(`unsupported compress_type ${compress}`);
    } catch (e) {
      return waiter.reject(rpcErrorOf(new AttemptError(RpcCode.ERESPONSE,
        `Fail to decompress response from ${this.#name}: ${(e as Error).message}`)));
    }
    waiter.resolve(Buffer.from(payload));
  }
}

// An attempt's failure travels through the connection as an RpcError and is unwrapped by
// the call, which knows the attempt number.
function rpcErrorOf(e: AttemptError): RpcError {
  return new RpcError(e.rpcCode, e.text, { cause: e, fromServer: e.fromServer });
}

/**
 * One connection per endpoint ("single" connection type, as brpc's baidu_std client), many
 * calls in flight on it, answers matched by correlation_id. `close()` when done.
 */
export class BaiduStdClient {
  readonly #connections = new Map<string, Connection>();
  readonly #maxBody: number;
  readonly #link: LinkOptions;
  #nextId = 1n;
  #closed = false;

  /**
   * `localAddress`: the source address of its connections (the kernel picks one by default).
   * `tls`: mutual TLS with these PEM contents (a raftstore port started with `tls`).
   */
  constructor(options: { maxBodySize?: number } & LinkOptions = {}) {
    this.#maxBody = options.maxBodySize ?? DEFAULT_MAX_BODY;
    this.#link = { ...(options.localAddress ? { localAddress: options.localAddress } : {}), ...(options.tls ? { tls: options.tls } : {}) };
  }

  /**
   * Calls `service.method` (full service name, e.g. `braft.CliService`) with an encoded
   * request; resolves with the encoded response. Rejects with RpcError.
   */
  async call(ep: Endpoint, service: string, method: string, request: Uint8Array,
    options: CallOptions = {}): Promise<Buffer> {
    const timeoutMs = options.timeoutMs ?? -1;
    const maxRetry = options.maxRetry ?? 3;
    const connectTimeoutMs = options.connectTimeoutMs ?? 200;
    const deadline = timeoutMs >= 0 ? Date.now() + timeoutMs : Infinity;
    const failures: { text: string; times: number }[] = [];
    const signal = options.signal;
    for (let attempt = 0; ; attempt++) {
      if (this.#closed) throw new RpcError(RpcCode.ECANCELED, 'client closed');
      let failure: AttemptError;
      try {
        return await this.#attempt(ep, service, method, request, deadline, timeoutMs, connectTimeoutMs, options);
      } catch (e) {
        if (signal?.aborted) throw signal.reason; // as RaftNode's calls: the abort's reason
        failure = e instanceof RpcError && e.cause instanceof AttemptError ? e.cause
          : new AttemptError(RpcCode.EINTERNAL, String(e));
      }
      // brpc repeats each attempt's error; the same one again is counted instead.
      const now = `[E${failure.rpcCode}]${failure.text}`;
      const last = failures.at(-1);
      if (last?.text === now) last.times++;
      else failures.push({ text: now, times: 1 });
      const retry = RETRIED.has(failure.rpcCode) && attempt < maxRetry && Date.now() < deadline;
      if (!retry) {
        const text = failures.map((f) => (f.times > 1 ? `${f.text} (${f.times} attempts)` : f.text)).join(' then ');
        throw new RpcError(failure.rpcCode, text, { cause: failure, fromServer: failure.fromServer });
      }
    }
  }

  async #attempt(ep: Endpoint, service: string, method: string, request: Uint8Array,
    deadline: number, timeoutMs: number, connectTimeoutMs: number, options: CallOptions): Promise<Buffer> {
    const id = this.#nextId++;
    const reqMeta = new ProtoWriter().string(1, service).string(2, method);
    if (options.logId !== undefined) reqMeta.int(3, options.logId);
    // The fields current brpc sends (§1.2 [seen]), so a strict peer sees nothing unusual.
    const meta = new ProtoWriter().message(1, reqMeta).int(3, 0).int(4, id).int(10, 0).int(11, 0)
      .bytes(12, Buffer.alloc(0)).finish();
    const head = Buffer.alloc(HEADER);
    MAGIC.copy(head, 0);
    head.writeUInt32BE(meta.length + request.byteLength, 4);
    head.writeUInt32BE(meta.length, 8);
    const frame = Buffer.concat([head, meta, request]);

    return new Promise<Buffer>((resolve, reject) => {
      let conn: Connection | undefined;
      let timer: NodeJS.Timeout | undefined;
      const signal = options.signal;
      let settled = false;
      const finish = (): void => {
        settled = true;
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        conn?.forget(id);
      };
      const fail = (code: number, text: string): void => {
        finish();
        reject(rpcErrorOf(new AttemptError(code, text)));
      };
      const onAbort = (): void => fail(RpcCode.ECANCELED, 'Call canceled'); // call() rethrows the reason
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      if (deadline !== Infinity) {
        const left = Math.max(0, deadline - Date.now());
        timer = setTimeout(() => fail(RpcCode.ERPCTIMEDOUT, `Reached timeout=${timeoutMs}ms @${ep.host}:${ep.port}`), left);
      }
      const waiter: Waiter = {
        resolve: (p) => { finish(); resolve(p); },
        reject: (e) => { finish(); reject(e); },
      };
      let c: Connection;
      try {
        c = this.#connection(ep, Math.min(connectTimeoutMs, Math.max(1, deadline - Date.now())));
      } catch (e) {
        return fail(RpcCode.EFAILEDSOCKET, `Fail to connect ${ep.host}:${ep.port}: ${String(e)}`);
      }
      conn = c;
      c.ready.then(() => {
        if (!settled) c.send(frame, id, waiter);
      }, (e: unknown) => {
        if (!settled) waiter.reject(rpcErrorOf(e instanceof AttemptError ? e
          : new AttemptError(RpcCode.EFAILEDSOCKET, String(e))));
      });
    });
  }

  #connection(ep: Endpoint, connectTimeoutMs: number): Connection {
    const key = `${ep.host}:${ep.port}`;
    const existing = this.#connections.get(key);
    if (existing && !existing.dead) return existing;
    const conn: Connection = new Connection(ep, connectTimeoutMs, this.#maxBody, this.#link, () => {
      if (this.#connections.get(key) === conn) this.#connections.delete(key);
    });
    this.#connections.set(key, conn);
    return conn;
  }

  /** Closes every connection; calls in flight fail with ECANCELED. */
  close(): void {
    this.#closed = true;
    for (const c of this.#connections.values()) c.close();
    this.#connections.clear();
  }
}
