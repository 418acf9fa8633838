// One replica of `npm run bench:sql`: an application process embedding an SqlStore (the
// compiled package, dist/), driven by bench/sql.mjs over IPC. It also holds the comparison:
// one local better-sqlite3 database (WAL, synchronous=FULL) running the same statements.
//   argv: group config port dir electionTimeoutMs [untilIndex]
//     untilIndex (a restart or a new peer): report {caughtUp} once this replica applied it
//   requests {id, op, ...}; replies {id, ok: true, result} | {id, ok: false, message};
//   first {ready: true, times} (absolute ms: loaded, open)
//   ops:
//     status                              role, applied index, snapshot stats, database bytes
//     load {kind, concurrency, seconds}   closed loop of insert | update | local-insert | local-update
//     fill {mb, rows}                     entries of `rows` 1 KiB rows until the database holds mb MiB
//     snapload {concurrency, seconds, snapshot, delayMs}
//                                         closed-loop updates; with `snapshot`, store.snapshot()
//                                         back to back from delayMs until the window ends
//     addPeer {peer}                      the leader adds a replica (which installs a snapshot)
import { randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { SqlStore } from '../dist/index.js';
import { closedLoop, snapshotLoad } from './load.mjs';

const abs = () => performance.timeOrigin + performance.now();
const loaded = abs();
const [group = 'bench', config = '', port = '0', dir = '', timeout = '1000', untilIndex] = process.argv.slice(2);

const schema = [
  'CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, grp TEXT NOT NULL, qty INTEGER NOT NULL)',
  'CREATE TABLE doc (id INTEGER PRIMARY KEY, body BLOB NOT NULL)',
];
const INSERT = 'INSERT INTO item (name, grp, qty) VALUES (?, ?, 0)';
const UPDATE = 'UPDATE item SET qty = qty + 1 WHERE id = ?';

const store = await SqlStore.open({
  group, config, port: Number(port), dir, electionTimeoutMs: Number(timeout), migrations: schema, snapshotIntervalS: 0,
});
const opened = abs();
process.on('disconnect', () => process.exit(0));
const reply = (m) => process.send?.(m);

// The ceiling: the same statements on one unreplicated database, each its own fsynced commit.
const Database = createRequire(import.meta.url)('better-sqlite3');
const local = new Database(join(dir, 'local.db'));
local.pragma('journal_mode = WAL');
local.pragma('synchronous = FULL');
for (const s of schema) local.exec(s.replace('CREATE TABLE', 'CREATE TABLE IF NOT EXISTS'));
const localInsert = local.prepare(INSERT);
const localUpdate = local.prepare(UPDATE);

const prefix = `${randomUUID().slice(0, 8)}-`;
let seq = 0;
const items = () => Number(store.query('SELECT max(id) AS n FROM item')[0].n ?? 0);
const localItems = () => Number(local.prepare('SELECT max(id) AS n FROM item').get().n ?? 0);
const ops = {
  insert: () => {
    const n = seq++;
    return store.exec(INSERT, [prefix + n, `g${n % 64}`], { timeoutMs: 5000 });
  },
  update: () => store.exec(UPDATE, [1 + Math.floor(Math.random() * Math.max(1, items()))], { timeoutMs: 5000 }),
  'local-insert': async () => {
    const n = seq++;
    return localInsert.run(prefix + n, `g${n % 64}`);
  },
  'local-update': async () => localUpdate.run(1 + Math.floor(Math.random() * Math.max(1, localItems()))),
};

const dbBytes = () => {
  let b = 0;
  for (const f of ['state.db', 'state.db-wal']) {
    try {
      b += statSync(join(dir, 'sqlite', f)).size;
    } catch { /* none */ }
  }
  return b;
};

// Entries that each insert `rows` rows of 1 KiB (randomblob: seeded by the entry, the same
// on every replica) until the database holds `mb` MiB.
async function fill({ mb = 1024, rows = 1000 }) {
  const t0 = performance.now();
  let entries = 0;
  while (dbBytes() < mb * 2 ** 20) {
    await store.exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
                      INSERT INTO doc (body) SELECT randomblob(1024) FROM n`, [rows], { timeoutMs: 120_000 });
    entries++;
  }
  return { ms: performance.now() - t0, entries, bytes: dbBytes(), applied: store.appliedIndex };
}

async function snapshotNow() {
  let info = null;
  const on = (e) => (info = e);
  store.on('snapshot', on);
  await store.snapshot().finally(() => store.off('snapshot', on));
  return info;
}

if (untilIndex !== undefined) {
  const want = Number(untilIndex);
  const check = () => {
    if (store.appliedIndex < want) return;
    store.off('applied', check);
    reply({ caughtUp: { at: abs(), applied: store.appliedIndex, stats: store.stats } });
  };
  store.on('applied', check);
  setImmediate(check);
}

process.on('message', (m) => {
  const ok = (result) => reply({ id: m.id, ok: true, result });
  const fail = (e) => reply({ id: m.id, ok: false, message: String(e?.stack ?? e) });
  switch (m.op) {
    case 'status':
      ok({ role: store.role, applied: store.appliedIndex, stats: store.stats, bytes: dbBytes() });
      break;
    case 'load':
      if (!ops[m.kind]) fail(new Error(`unknown load kind ${m.kind}`));
      else closedLoop(m.concurrency ?? 1, m.seconds ?? 1, ops[m.kind]).then(ok, fail);
      break;
    case 'fill':
      fill(m).then(ok, fail);
      break;
    case 'snapload':
      snapshotLoad(m, ops.update, snapshotNow).then(ok, fail);
      break;
    case 'addPeer':
      store.node.addPeer(m.peer, { timeoutMs: 600_000 }).then(ok, fail);
      break;
    default:
      fail(new Error(`unknown op ${m.op}`));
  }
});
reply({ ready: true, times: { loaded, open: opened } });
