export { RaftError } from './errors.js';
export type { RaftErrorCode, RaftErrorOptions } from './errors.js';
export { PeerId, parsePeerId, parseConfiguration, formatConfiguration } from './peer.js';
export type { PeerRole } from './peer.js';
export { RaftNode } from './raft-node.js';
export type {
  Entry, StateMachine, RaftNodeOptions, ProposeOptions, RaftStatus, Role, RaftNodeEvents,
} from './raft-node.js';
