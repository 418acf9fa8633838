// One replica of `npm run bench:store`: an application process embedding a Store (the
// compiled package, dist/, as an application gets it from npm; not lib/ through tsx, whose
// per-closure helpers cost a third of the throughput). It runs the benchmark's transactions
// itself, as an application would, and is driven by bench/store.mjs over IPC.
//   argv: group config port dir electionTimeoutMs [untilCount untilIndex]
//     untilCount/untilIndex (a restart): report {caughtUp} once this replica holds that many
//     Items and has applied that index
//   requests {id, op, ...}; replies {id, ok: true, result} | {id, ok: false, message};
//   first {ready: true, times}, where times are absolute ms (performance.timeOrigin + now):
//   loaded (the package imported), open (Store.open resolved)
//   ops:
//     status                               role, leader, applied index, Item count
//     load {kind, concurrency, seconds}    closed-loop transact(kind) (bench/load.mjs)
//     bulk {objects, per}                  creates `objects` Items with `bulk` transactions of `per`
//     snapload {concurrency, seconds, snapshot, delayMs}
//                                          closed-loop touch; with `snapshot`, store.snapshot()
//                                          back to back from delayMs until the window ends
//     snapshot                             store.snapshot(); the `snapshot` event's info
import { randomUUID } from 'node:crypto';
import { Store } from '../dist/index.js';
import { closedLoop, snapshotLoad } from './load.mjs';

const abs = () => performance.timeOrigin + performance.now();
const loaded = abs();
const [group = 'bench', config = '', port = '0', dir = '', timeout = '1000', untilCount, untilIndex] = process.argv.slice(2);

// The app: one small class, a unique index on name and an ordered index on value.
class Item {
  static indices = {
    name: { kind: 'unique', key: (o) => o.name },
    value: { kind: 'ordered', key: (o) => o.value },
  };
}

// A well-mixed 32-bit value from an integer (deterministic: the same on every replica).
const mix = (i) => {
  let h = Math.imul(i ^ (i >>> 16), 0x45d9f3b);
  h = Math.imul(h ^ (h >>> 16), 0x45d9f3b);
  return (h ^ (h >>> 16)) >>> 0;
};

const transactions = {
  // One new Item (the benchmark's `add` op): a unique name, a random value.
  add(tx, a, ctx) {
    return tx.create(Item, { name: a.name, group: a.group, value: Math.floor(ctx.random() * 2 ** 32) });
  },
  // n new Items named prefix+from..prefix+from+n-1 (for loading).
  bulk(tx, a) {
    for (let i = a.from; i < a.from + a.n; i++) tx.create(Item, { name: `${a.prefix}${i}`, group: `g${i % 64}`, value: mix(i) });
    return a.n;
  },
  // The benchmark's `touch` op: one Item's value + 1 (its ordered-index entry moves).
  touch(tx, id) {
    return tx.update(Item, id, (o) => ({ value: o.value + 1 }));
  },
};

const store = await Store.open({
  group, config, port: Number(port), dir, transactions, classes: [Item],
  electionTimeoutMs: Number(timeout), snapshotIntervalS: 0,
});
const opened = abs();
// The benchmark owns this process: when it goes away (or kills us), so do we.
process.on('disconnect', () => process.exit(0));

const count = () => store.read((v) => v.count(Item));
const reply = (m) => {
  process.send?.(m);
};

// A restart: Store.open resolves once the replica's own snapshot is restored, so what it
// holds then is the snapshot; then watch for the catch-up (the log it missed).
let restartWatch = null;
if (untilCount !== undefined) {
  const wantCount = Number(untilCount);
  const wantIndex = Number(untilIndex ?? 0);
  const restored = { at: opened, index: store.appliedIndex, count: count() };
  let done = false;
  const check = () => {
    if (done) return;
    const c = count();
    if (c >= wantCount && store.appliedIndex >= wantIndex) {
      done = true;
      clearInterval(timer);
      store.off('applied', check);
      reply({ caughtUp: { at: abs(), count: c, applied: store.appliedIndex, restored } });
    }
  };
  const timer = setInterval(check, 2);
  store.on('applied', check);
  restartWatch = check;
}

// Names unique across the cluster and across restarts of this process.
const prefix = `${randomUUID().slice(0, 8)}-`;
let seq = 0;
const ops = {
  add: () => {
    const n = seq++;
    return store.transact('add', { name: prefix + n, group: `g${n % 64}` }, { timeoutMs: 5000 });
  },
  // Ids run from 1 to the count: the benchmark never deletes, and a failed create gives its
  // id back.
  touch: () => store.transact('touch', 1 + Math.floor(Math.random() * count()), { timeoutMs: 5000 }),
};

async function bulk({ objects, per }) {
  const t0 = performance.now();
  const p = `b${randomUUID().slice(0, 8)}-`;
  for (let from = 0; from < objects; from += per)
    await store.transact('bulk', { prefix: p, from, n: Math.min(per, objects - from) }, { timeoutMs: 120_000 });
  return { ms: performance.now() - t0, count: count() };
}

async function snapshotNow() {
  let info = null;
  const on = (e) => {
    info = e;
  };
  store.on('snapshot', on);
  try {
    await store.snapshot();
  } finally {
    store.off('snapshot', on);
  }
  return info;
}

process.on('message', (m) => {
  const ok = (result) => reply({ id: m.id, ok: true, result });
  const fail = (e) => reply({ id: m.id, ok: false, message: String(e?.stack ?? e) });
  switch (m.op) {
    case 'status':
      ok({ role: store.role, leaderId: store.leaderId, applied: store.appliedIndex, count: count() });
      break;
    case 'load':
      if (!ops[m.kind]) fail(new Error(`unknown load kind ${m.kind}`));
      else closedLoop(m.concurrency ?? 1, m.seconds ?? 1, ops[m.kind]).then(ok, fail);
      break;
    case 'bulk':
      bulk(m).then(ok, fail);
      break;
    case 'snapload':
      snapshotLoad(m, ops.touch, snapshotNow).then(ok, fail);
      break;
    case 'snapshot':
      (async () => { const s = performance.now(); const info = await snapshotNow(); return { ms: performance.now() - s, ...info }; })().then(ok, fail);
      break;
    default:
      fail(new Error(`unknown op ${m.op}`));
  }
});
reply({ ready: true, times: { loaded, open: opened } });
restartWatch?.();
