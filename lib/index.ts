export { RaftError } from './errors.js';
export type { RaftErrorCode, RaftErrorOptions } from './errors.js';
export { PeerId, parsePeerId, parseConfiguration, formatConfiguration } from './peer.js';
export type { PeerRole } from './peer.js';
export { RaftNode, SnapshotWriter, SnapshotReader } from './raft-node.js';
export type {
  Entry, StateMachine, RaftNodeOptions, ProposeOptions, RaftStatus, Role, RaftNodeEvents,
  ReadBarrierOptions, SnapshotEvent, ConfChange, Configuration,
} from './raft-node.js';
export { registerMetrics, stderrLogger } from './observability.js';
export type { TlsFiles } from './native.js';
export type { Logger, LogLevel, LogFields, LogEvent, MetricFamily, MetricSample, MetricsSource, PromRegistry, PromMetric } from './observability.js';
export { StoreError } from './errors.js';
export type { StoreErrorCode } from './errors.js';
export { Store } from './store/store.js';
export type { StoreOptions, StoreEvents, StoreSnapshotEvent, TxContext, TransactionFn } from './store/store.js';
export { View, Transaction } from './store/objects.js';
export type { StoreClass, AnyStoreClass, Stored, Fields, IndexSpec, IndexKey, RangeQuery } from './store/objects.js';
export { SqlError } from './errors.js';
export type { SqlErrorCode, SqlErrorOptions } from './errors.js';
export { SqlStore } from './sql/sql-store.js';
export type {
  SqlStoreOptions, SqlStoreEvents, SqlSnapshotEvent, SqlStoreStats, SqlTx, SqlTransactionFn, SqlValue, SqlParams, Row, RunResult,
  SqlStatement, SqlQueryOptions, SqlWriteOptions,
} from './sql/sql-store.js';
export type { ReplicaEvents } from './replica-facade.js';
export { KvError } from './errors.js';
export type { KvErrorCode, KvErrorOptions } from './errors.js';
export { KvStore } from './kv/kv-store.js';
export type {
  KvStoreOptions, KvStoreEvents, KvStoreStats, KvSnapshotEvent, KvKey, KvValue, KvEncoding, KeyValue, LeaseId, LeaseInfo,
  RangeSelector, KvConsistency, KvReadOptions, KvRangeOptions, RangeResult, KvWriteOptions, PutOptions, Compare, CompareOp,
  Txn, TxnOp, TxnOpResult, TxnResult, KvEvent, WatchOptions,
} from './kv/kv-store.js';
