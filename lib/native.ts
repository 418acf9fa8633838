// The compiled addon (native/addon/addon.cpp), found by node-gyp-build: a prebuild, or
// build/Release/raftstore.node from `npm install` / scripts/build.mjs --addon-only.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

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
 *  leaderId), ('save', dir, token) or ('load', dir, index, conf). */
export type NativeCallback = (kind: string, a: unknown, b: unknown, c: unknown) => void;

export interface NativeHost {
  close(): void;
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
  close(): void;
}

interface Binding {
  Host: new (ip: string, port: number) => NativeHost;
  Node: new (host: NativeHost, options: NativeNodeOptions, callback: NativeCallback) => NativeNode;
}

const require = createRequire(import.meta.url);
const load = require('node-gyp-build') as (dir: string) => unknown;
export const binding = load(fileURLToPath(new URL('..', import.meta.url))) as Binding;
