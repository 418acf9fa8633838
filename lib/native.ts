// The compiled addon (native/addon/addon.cpp), found by node-gyp-build: a prebuild, or
// build/Release/raftstore.node from `npm install` / scripts/build.mjs --addon-only.
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { RaftError } from './errors.js';
import type { LogEvent, LogLevel, MetricFamily } from './observability.js';

export interface NativeNodeOptions {
  group: string;
  self: string;
  config: string;
  dir: string;
  electionTimeoutMs: number;
  maxElectionDelayMs: number;
  leaderLease: boolean;
  maxUncommittedEntries: number;
  snapshotIntervalS: number;
  snapshotLogThreshold: number;
  stuckApplyTimeoutMs: number;
  /** The state machine takes and restores snapshots ('save' and 'load' callbacks). */
  snapshots: boolean;
  /** Log records at this level and above come through the callback as ('log', level, message, fields). */
  logLevel: LogLevel;
}

export interface NativeStatus {
  role: 'follower' | 'candidate' | 'leader' | 'learner';
  term: number;
  leaderId: string | null;
  firstIndex: number;
  lastIndex: number;
  commitIndex: number;
  nativeAppliedIndex: number;
  appliedIndex: number;
  snapshotIndex: number;
  configuration: { peers: string[]; oldPeers: string[]; learners: string[] };
  peers: { id: string; matchIndex: number; nextIndex: number; lastContactMs: number; state: string }[];
}

/** ('apply', packed, count, lastIndex), ('refused', seq, error), ('role', role, term,
 *  leaderId), ('save', dir, token), ('load', dir, index, conf) or ('log', level, message,
 *  fields). */
export type NativeCallback = (kind: string, a: unknown, b: unknown, c: unknown) => void;

/** PEM files: the CA that signs every replica's and client's certificate, this one's certificate and its key. */
export interface TlsFiles {
  ca: string;
  cert: string;
  key: string;
}

export interface NativeHost {
  close(): void;
  metrics(): MetricFamily[];
}
export interface ConfChange {
  oldPeers: string[];
  newPeers: string[];
}
export interface NativeNode {
  /** Refusals come back through the callback as ('refused', seq, error). */
  propose(data: Buffer, seq: number): void;
  ref(): void;
  unref(): void;
  changeMembership(method: 'add_peer' | 'remove_peer' | 'change_peers', peers: string[]): Promise<ConfChange>;
  transferLeader(peer: string): Promise<number>;
  resetPeers(peers: string[]): Promise<number>;
  readIndex(lease: boolean): Promise<number>;
  snapshot(): Promise<number>;
  snapshotDone(token: number, error?: string): void;
  status(): NativeStatus | null;
  setApplied(index: number): void;
  metrics(): MetricFamily[];
  events(): LogEvent[];
  close(): void;
}

interface Binding {
  Host: new (ip: string, port: number, adminAllow: string[], tls: TlsFiles | undefined) => NativeHost;
  Node: new (host: NativeHost, options: NativeNodeOptions, callback: NativeCallback) => NativeNode;
}

const require = createRequire(import.meta.url);

/** This machine as prebuilds are named (linux-x64, linux-arm64), with its glibc version or the lack of one. */
function platformName(): string {
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  const libc = process.platform !== 'linux' ? '' : header?.glibcVersionRuntime ? ` (glibc ${header.glibcVersionRuntime})` : ' (musl or another libc, not glibc)';
  return `${process.platform}-${process.arch}${libc}`;
}

/**
 * The addon in `dir` (the package root): a prebuild from prebuilds/, or build/Release from a
 * source build. When neither loads, an ERR_RAFT_ADDON_LOAD RaftError says what is missing
 * and the two ways out, instead of node-gyp-build's bare "No native build was found".
 */
export function loadBinding(dir: string): Binding {
  try {
    const load = require('node-gyp-build') as (dir: string) => unknown;
    return load(dir) as Binding;
  } catch (err) {
    let shipped: string[] = [];
    try {
      shipped = readdirSync(join(dir, 'prebuilds'));
    } catch {
      // No prebuilds directory at all: a source checkout or a trimmed install.
    }
    const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new RaftError('ERR_RAFT_ADDON_LOAD', [
      `raftstore's native addon could not be loaded on ${platformName()}: ${reason}`,
      `Prebuilds in this package: ${shipped.length > 0 ? `${shipped.join(', ')} (glibc 2.28 or newer; none for musl)` : 'none'}.`,
      'Anywhere else, build it from source: a C++20 compiler (g++ 12), cmake 3.25, ninja, protobuf',
      '(compiler and headers) and asio, plus `npm install cmake-js node-addon-api`; then',
      '`npm rebuild raftstore`. docs/prebuilds.md in the package says more.',
    ].join('\n'), { cause: err });
  }
}

export const binding = loadBinding(fileURLToPath(new URL('..', import.meta.url)));
