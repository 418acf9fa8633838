// The messages between demo.ts (the parent) and each replica.ts process, over Node's IPC
// channel (fork). A real app would serve HTTP instead; the store calls are the same.

/** A todo as it crosses the channel (plain fields). */
export interface TodoData {
  id: number;
  title: string;
  ref: string | null;
  done: boolean;
  createdAt: number;
  doneAt: number | null;
}

export interface ReplicaStatus {
  role: 'follower' | 'candidate' | 'leader' | 'learner';
  term: number;
  /** The leader this replica follows, as `ip:port:idx:role`, or null while none is known. */
  leaderId: string | null;
  appliedIndex: number;
  /** How many todos this replica holds now (a local read, no barrier). */
  todos: number;
}

export type Request =
  | { id: number; op: 'add'; title: string; ref?: string }
  | { id: number; op: 'complete'; todo: number }
  | { id: number; op: 'list' }
  | { id: number; op: 'status' }
  | { id: number; op: 'close' };

export type Reply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; code: string; message: string };

/** The first message of a replica: it joined the group, or could not. */
export type Ready = { ready: true } | { ready: false; code: string; message: string };
