// One replica of `npm run bench:kv`: an application process embedding a KvStore (the compiled
// package, dist/), driven by bench/kv.mjs over IPC.
//   argv: group config port dir electionTimeoutMs [untilIndex]
//     untilIndex (a restart or a new peer): report {caughtUp} once this replica applied it
//   requests {id, op, ...}; replies {id, ok: true, result} | {id, ok: false, message};
//   first {ready: true, times} (absolute ms: loaded, open)
//   ops:
//     status                            role, applied index, revision, stats, store bytes, memory
//     prefill                           the keys the read and range loads read
//     load {kind, concurrency, seconds} closed loop of put | get-linearizable | get-local | range | txn
//     watchStart / watchStop            a watch of w/ here: stop returns each revision's arrival
//     writeW {concurrency, seconds}     closed-loop puts of w/<worker>: each ack's revision and time
//     fill {keys, batch, concurrency}   transactions of `batch` puts until `keys` keys exist
//     snapshot                          store.snapshot(): its info and how long it took
//     addPeer {peer}                    the leader adds a replica (which installs a snapshot)
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { KvStore } from '../dist/index.js';
import { closedLoop } from './load.mjs';

const abs = () => performance.timeOrigin + performance.now();
const loaded = abs();
const [group = 'bench', config = '', port = '0', dir = '', timeout = '1000', untilIndex] = process.argv.slice(2);

// Snapshots only when asked, or every BENCH_KV_SNAPSHOT_ENTRIES entries (bench:kv's --snapshot-entries).
const store = await KvStore.open({
  group, config, port: Number(port), dir, electionTimeoutMs: Number(timeout), snapshotIntervalS: 0, maxTxnOps: 10_000,
  snapshotLogThreshold: Number(process.env['BENCH_KV_SNAPSHOT_ENTRIES'] ?? 0),
});
const opened = abs();
process.on('disconnect', () => process.exit(0));
const reply = (m) => process.send?.(m);

const READ_KEYS = 10_000;
const VALUE = 'v'.repeat(100);
const opts = { timeoutMs: 5000 };
const randomKey = () => `k/${Math.floor(Math.random() * READ_KEYS)}`;
const txnLast = new Map();
const ops = {
  put: () => store.put(randomKey(), VALUE, opts),
  'get-linearizable': () => store.get(randomKey(), opts),
  'get-local': () => store.get(randomKey(), { consistency: 'local' }),
  // Ten keys, values included.
  range: () => store.range({ prefix: `r/${Math.floor(Math.random() * 100)}/` }, opts),
  // Compare-and-set of the worker's own key (it always holds).
  txn: async (w) => {
    const key = `t/${w}`;
    const next = String((Number(txnLast.get(key) ?? 0)) + 1);
    const r = await store.txn({
      compare: [{ key, target: 'version', op: '==', value: Number(txnLast.get(key) ?? 0) }],
      success: [{ put: [key, next] }], failure: [{ get: key }],
    }, opts);
    if (!r.succeeded) throw new Error(`txn on ${key} failed its compare`);
    txnLast.set(key, next);
  },
};

async function prefill() {
  const puts = [];
  for (let i = 0; i < READ_KEYS; i++) puts.push({ put: [`k/${i}`, VALUE] });
  for (let g = 0; g < 100; g++) for (let i = 0; i < 10; i++) puts.push({ put: [`r/${g}/${i}`, VALUE] });
  for (let i = 0; i < puts.length; i += 5000) await store.txn({ success: puts.slice(i, i + 5000) }, { timeoutMs: 60_000 });
  return { applied: store.appliedIndex };
}

// process.memoryUsage() with the resident set split (Linux): anonymous (heap, native
// allocations) and file-backed (mostly LMDB's map of the store: page cache, reclaimable).
function memory() {
  const m = process.memoryUsage();
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    return { ...m, rssAnon: kb('RssAnon'), rssFile: kb('RssFile') };
  } catch {
    return m;
  }
}

const dbBytes = () => {
  try {
    return statSync(join(dir, 'kv', 'state.mdb')).size;
  } catch {
    return 0;
  }
};

let watch = null;
function watchStart() {
  const arrivals = {};
  const ac = new AbortController();
  const done = (async () => {
    try {
      for await (const events of store.watch({ prefix: 'w/' }, { signal: ac.signal })) {
        const t = abs();
        for (const e of events) arrivals[e.kv.modRevision] ??= t;
      }
    } catch (e) {
      if (!ac.signal.aborted) throw e;
    }
  })();
  watch = { arrivals, ac, done };
  return null;
}
async function watchStop() {
  watch.ac.abort();
  await watch.done;
  const { arrivals } = watch;
  watch = null;
  return arrivals;
}

async function writeW({ concurrency = 1, seconds = 5 }) {
  const acks = [];
  const r = await closedLoop(concurrency, seconds, async (w) => {
    const { revision } = await store.put(`w/${w}`, VALUE, opts);
    acks.push([revision, abs()]);
  });
  return { ...r, acks };
}

// Transactions of `batch` puts of 16-byte keys and 64-byte values, `concurrency` at a time.
async function fill({ keys, batch = 5000, concurrency = 4 }) {
  const t0 = performance.now();
  let next = 0;
  const value = 'x'.repeat(64);
  const worker = async () => {
    while (next < keys) {
      const from = next;
      next = Math.min(keys, next + batch);
      const success = [];
      for (let i = from; i < next; i++) success.push({ put: [`big/${String(i).padStart(10, '0')}`, value] });
      await store.txn({ success }, { timeoutMs: 600_000 });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { ms: performance.now() - t0, applied: store.appliedIndex, revision: store.revision, bytes: dbBytes() };
}

// store.snapshot(), once a write makes the log move past the last snapshot (one the log
// threshold just took would make it a no-op): the copy's info and the time to publish it.
async function snapshotNow() {
  await store.put('snapshot/marker', String(Date.now()), { timeoutMs: 60_000 });
  let info = null;
  const on = (e) => (info = e);
  const t0 = performance.now();
  store.on('snapshot', on);
  await store.snapshot().finally(() => store.off('snapshot', on));
  return { ...info, ms: performance.now() - t0 };
}

if (untilIndex !== undefined) {
  const want = Number(untilIndex);
  // Polled: an install or a configuration entry reaches the index without an 'applied' event.
  const timer = setInterval(() => {
    if (store.appliedIndex < want) return;
    clearInterval(timer);
    reply({ caughtUp: { at: abs(), applied: store.appliedIndex, stats: store.stats, memory: memory() } });
  }, 10);
}

process.on('message', (m) => {
  const ok = (result) => reply({ id: m.id, ok: true, result });
  const fail = (e) => reply({ id: m.id, ok: false, message: String(e?.stack ?? e) });
  switch (m.op) {
    case 'status':
      if (m.gc && globalThis.gc) globalThis.gc();
      ok({
        role: store.role, applied: store.appliedIndex, revision: store.revision, stats: store.stats, bytes: dbBytes(),
        memory: memory(),
      });
      break;
    case 'prefill':
      prefill().then(ok, fail);
      break;
    case 'load':
      if (!ops[m.kind]) fail(new Error(`unknown load kind ${m.kind}`));
      else closedLoop(m.concurrency ?? 1, m.seconds ?? 1, ops[m.kind]).then(ok, fail);
      break;
    case 'watchStart':
      ok(watchStart());
      break;
    case 'watchStop':
      watchStop().then(ok, fail);
      break;
    case 'writeW':
      writeW(m).then(ok, fail);
      break;
    case 'fill':
      fill(m).then(ok, fail);
      break;
    case 'snapshot':
      snapshotNow().then(ok, fail);
      break;
    case 'addPeer':
      store.node.addPeer(m.peer, { timeoutMs: 1_800_000 }).then(ok, fail);
      break;
    default:
      fail(new Error(`unknown op ${m.op}`));
  }
});
reply({ ready: true, times: { loaded, open: opened } });
