export { RaftError } from './errors.js';
export type { RaftErrorCode, RaftErrorOptions } from './errors.js';
export { PeerId, parsePeerId, parseConfiguration, formatConfiguration } from './peer.js';
export type { PeerRole } from './peer.js';
export { RaftNode, SnapshotWriter, SnapshotReader } from './raft-node.js';
export type {
  Entry, StateMachine, RaftNodeOptions, ProposeOptions, RaftStatus, Role, RaftNodeEvents,
  ReadBarrierOptions, SnapshotEvent, ConfChange, Configuration,
} from './raft-node.js';
