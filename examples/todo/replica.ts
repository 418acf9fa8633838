// One replica of the todo app, in its own process: it opens the Store (joining the Raft
// group 'todos') and serves its parent (demo.ts) over IPC.
//
//   node --import tsx examples/todo/replica.ts --port 8100 --peers 8100,8101,8102 \
//     --dir ./data/8100 [--election-timeout-ms 1000]      (started by demo.ts with fork)
//
// Any replica takes writes: a follower's Store forwards them to the leader and resolves once
// it has applied them itself, so the caller reads its own writes here.
import { parseArgs } from 'node:util';
import { RaftError, Store, StoreError } from '../../lib/index.js';
import { classes, Todo, transactions } from './app.js';
import type { Ready, Reply, ReplicaStatus, Request, TodoData } from './ipc.js';

const send = process.send?.bind(process);
if (!send) {
  console.error('replica.ts talks to its parent over IPC; run `npm run demo` instead');
  process.exit(2);
}

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    peers: { type: 'string' },
    dir: { type: 'string' },
    'election-timeout-ms': { type: 'string', default: '1000' },
  },
});
const port = Number(values.port);
const peers = (values.peers ?? '').split(',').map(Number);
const ip = '127.0.0.1';

// Ctrl-C in a terminal reaches the whole process group; the demo stops its replicas itself.
process.on('SIGINT', () => {});

const errorOf = (e: unknown): { code: string; message: string } => ({
  code: e instanceof RaftError || e instanceof StoreError ? e.code : 'ERR',
  message: e instanceof Error ? e.message : String(e),
});

const store = await Store.open({
  group: 'todos',
  // braft's configuration text: every voter as ip:port:idx.
  config: peers.map((p) => `${ip}:${p}:0`).join(','),
  ip,
  port,
  dir: values.dir ?? '',
  electionTimeoutMs: Number(values['election-timeout-ms']),
  transactions,
  classes,
}).catch((e: unknown) => {
  // A port in use, a data directory locked by another process, a bad option: say so, end.
  const ready: Ready = { ready: false, ...errorOf(e) };
  send(ready, () => process.exit(1));
  return new Promise<never>(() => {});
});

const plain = (t: Todo): TodoData =>
  ({ id: t.id, title: t.title, ref: t.ref, done: t.done, createdAt: t.createdAt, doneAt: t.doneAt });

async function handle(m: Request): Promise<unknown> {
  switch (m.op) {
    case 'add':
      return plain(await store.transact('addTodo', m.ref === undefined ? { title: m.title } : { title: m.title, ref: m.ref },
        { timeoutMs: 5000 }));
    case 'complete':
      return plain(await store.transact('complete', m.todo, { timeoutMs: 5000 }));
    case 'list':
      // A linearizable read: first catch up with everything committed when it was asked,
      // so the list holds every todo acknowledged to anyone before.
      return store.read((v) => v.range(Todo, 'created').map(plain), { consistency: 'linearizable', timeoutMs: 5000 });
    case 'status': {
      const s = store.status();
      const status: ReplicaStatus = {
        role: s.role, term: s.term, leaderId: s.leaderId, appliedIndex: s.appliedIndex,
        todos: store.read((v) => v.count(Todo)),
      };
      return status;
    }
    case 'close':
      await store.close();
      return null;
  }
}

process.on('message', (raw) => {
  const m = raw as Request;
  handle(m).then(
    (result) => {
      const reply: Reply = { id: m.id, ok: true, result };
      send(reply);
      // After close the store holds nothing open: dropping the channel lets the process end.
      if (m.op === 'close') process.disconnect();
    },
    (e: unknown) => {
      const reply: Reply = { id: m.id, ok: false, ...errorOf(e) };
      send(reply);
    },
  );
});

// The parent went away (it ended, or was killed): leave the group and end.
process.on('disconnect', () => {
  store.close().then(() => process.exit(0), () => process.exit(1));
});

const ready: Ready = { ready: true };
send(ready);
