#!/usr/bin/env node
// `npm run bench:store` (issue 5 §5): the Store (lib/store) as an application uses it, three
// replica processes on loopback (bench/store-replica.mjs, the compiled package in dist/).
//
//   1. throughput: C closed-loop workers inside the leader's process (the app embeds its
//      replica), each awaiting one store.transact() before issuing the next, at each level of
//      --levels for --seconds; ops `add` (create one Item) and `touch` (update one Item).
//   2. snapshot: a fresh cluster loaded with --objects Items through `bulk` transactions of
//      50,000; then 32 closed-loop `touch` workers in the leader's process for a baseline
//      window, and the same load for a window in which the leader runs store.snapshot()
//      back to back. Reported: the snapshot's time and size (the `snapshot` event), and
//      p99(ops overlapping a snapshot) / p99(baseline), target <= 2.
//   3. restart: a follower snapshots, takes a tail of `add`s, is SIGKILLed, misses more
//      `add`s, and is started again from its data directory: the time from its fork until
//      Store.open resolved, until the snapshot's objects were loaded, and until it holds as
//      many objects as the others and has applied the leader's last index (caught up).
//
// Options: --seconds S (per throughput level, default 20; per snapshot-phase window, default
// 10; given, it sets both), --levels 1,32,128, --objects N (default 1000000), --ops add,touch
// (which throughput ops), --no-throughput, --no-snapshot (skips phases 2 and 3).
// Ports: 16000-16999.
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { ReplicaCluster, buildPackage, cleanup, numericOption, portAllocator, root, sleep } from './lib.mjs';
import { now } from './load.mjs';

// ---------------------------------------------------------------------------------------
// Options

const option = (name, fallback) => numericOption('store', name, fallback);
const secondsGiven = process.argv.includes('--seconds');
const seconds = Number(option('seconds', '20'));
const snapSeconds = secondsGiven ? seconds : 10;
const levels = option('levels', '1,32,128').split(',').map(Number);
const objects = Number(option('objects', '1000000'));
const allOps = ['add', 'touch'];
let throughputOps = allOps;
{
  const i = process.argv.indexOf('--ops');
  if (i >= 0) {
    const v = (process.argv[i + 1] ?? '').split(',');
    if (v.some((s) => !allOps.includes(s))) {
      console.error(`bench:store: --ops needs add, touch or add,touch, got "${process.argv[i + 1] ?? ''}"`);
      process.exit(2);
    }
    throughputOps = allOps.filter((s) => v.includes(s));
  }
}
const doThroughput = !process.argv.includes('--no-throughput');
const doSnapshot = !process.argv.includes('--no-snapshot');
if (seconds < 1 || levels.some((n) => n < 1) || objects < 1) {
  console.error('bench:store: --seconds, --levels and --objects must be positive');
  process.exit(2);
}
const BULK_PER = 50_000; // objects per `bulk` transaction when loading
const SNAP_CONCURRENCY = 32;
const TAIL_SECONDS = 2; // `add` load before the kill (the replica's own log tail) and after it
const ELECTION_TIMEOUT_MS = 1000;


const ports = portAllocator(16000, 16999);

// ---------------------------------------------------------------------------------------
// Three replica processes, driven over IPC

const replicaFile = join(root, 'bench/store-replica.mjs');


class StoreCluster extends ReplicaCluster {
  constructor() {
    super(replicaFile, 'bench-store-', ports(), ELECTION_TIMEOUT_MS);
  }
  async startAll() {
    await Promise.all(this.ports.map((p) => this.start(p).ready));
  }
  // Forks the replica on `port`; `until` ({count, index}) makes it report its catch-up.
  // `r.ready` resolves with its start-up times, `r.caughtUp` with its catch-up.
  start(port, until) {
    const forkedAt = now();
    let caughtUp;
    const caught = new Promise((resolve, reject) => {
      caughtUp = { resolve, reject };
    });
    caught.catch(() => {});
    const r = this.fork(port, until ? [String(until.count), String(until.index)] : [],
      (m) => m.caughtUp && caughtUp.resolve(m.caughtUp), (e) => caughtUp.reject(e));
    return { ...r, forkedAt, caughtUp: caught, ready: r.ready.then((m) => m.times) };
  }
  // Waits until every running replica holds `count` Items.
  async converged(count, ms = 120_000) {
    const end = Date.now() + ms;
    for (;;) {
      const st = await Promise.all([...this.replicas.keys()].filter((p) => this.running(p))
        .map((p) => this.call(p, 'status').catch(() => null)));
      if (st.every((s) => s?.count === count)) return st;
      if (Date.now() > end) throw new Error(`replicas did not converge on ${count} objects: ${JSON.stringify(st)}`);
      await sleep(50);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Output helpers

const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '-');
const f3 = (x) => (Number.isFinite(x) ? x.toFixed(3) : '-');
const fInt = (x) => (Number.isFinite(x) ? String(Math.round(x)) : '-');
const mib = (b) => (Number.isFinite(b) ? (b / 2 ** 20).toFixed(1) : '-');
const thousands = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '-');
const header = 'op     concurrency     tx/s   p50 ms   p99 ms  p999 ms  errors';
const line = (op, n, r) => `${op.padEnd(6)} ${String(n).padStart(11)} ${fInt(r.writesPerSec).padStart(8)} ${f3(r.p50).padStart(8)} ` +
  `${f3(r.p99).padStart(8)} ${f3(r.p999).padStart(8)} ${String(r.errors).padStart(7)}` + (r.note ? `  ${r.note}` : '');

// ---------------------------------------------------------------------------------------
// The run

console.log(`bench:store: 3 replica processes on loopback (election timeout ${ELECTION_TIMEOUT_MS} ms); ` +
  `throughput ${seconds} s per level, levels ${levels.join(', ')}; snapshot phase ${thousands(objects)} objects, ` +
  `${snapSeconds} s windows; ${cpus().length} cores, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}, node ${process.version}`);
console.log('the app: class Item { name, group, value } (unique index on name, ordered index on value); an op is one\n' +
  'store.transact() awaited by a closed-loop worker inside the leader\'s process, done when that replica has applied\n' +
  'it (committed by a quorum, fsynced) and returned its result:\n' +
  '  add    transact(\'add\', {name, group}): creates one Item (value = ctx.random()), the object returned\n' +
  '  touch  transact(\'touch\', id): updates one random existing Item (value + 1), the object returned');

const throughput = {}; // op -> level -> result
let snap = null;
let restart = null;
try {
  buildPackage();

  // ---- 1. throughput
  if (doThroughput) {
    console.log(`\n1. throughput (3 replicas, workers in the leader's process)`);
    const c = new StoreCluster();
    try {
      await c.startAll();
      let leader = await c.leader();
      await c.call(leader, 'load', { kind: 'add', concurrency: 8, seconds: 2 }); // warm-up
      console.log(header);
      for (const op of throughputOps) {
        throughput[op] = {};
        for (const n of levels) {
          leader = await c.leader();
          const r = await c.call(leader, 'load', { kind: op, concurrency: n, seconds });
          const after = await c.leader();
          if (after !== leader) r.note = `(leader moved ${leader} -> ${after} during the level)`;
          if (r.firstError) r.note = `${r.note ?? ''} first error: ${r.firstError}`.trim();
          throughput[op][n] = r;
          console.log(line(op, n, r));
        }
      }
    } finally {
      c.stop();
    }
  }

  if (doSnapshot) {
    // ---- 2. snapshot of --objects objects while transactions run
    console.log(`\n2. snapshot: a fresh cluster loaded with ${thousands(objects)} Items (bulk transactions of ` +
      `${thousands(Math.min(BULK_PER, objects))}), then ${SNAP_CONCURRENCY} closed-loop touch workers in the leader's process`);
    const c = new StoreCluster();
    try {
      await c.startAll();
      const leader = await c.leader();
      const loaded = await c.call(leader, 'bulk', { objects, per: BULK_PER });
      await c.converged(loaded.count);
      console.log(`  loaded ${thousands(loaded.count)} objects in ${fInt(loaded.ms)} ms on the leader; every replica holds them`);
      await c.call(leader, 'load', { kind: 'touch', concurrency: 8, seconds: 1 }); // warm-up
      const base = await c.call(leader, 'snapload', { concurrency: SNAP_CONCURRENCY, seconds: snapSeconds, snapshot: false });
      console.log(`  baseline ${snapSeconds} s: ${fInt(base.txPerSec)} tx/s, p50 ${f3(base.p50)} ms, p99 ${f3(base.p99)} ms, ` +
        `p999 ${f3(base.p999)} ms; event loop delay p99 ${f1(base.loopDelayP99Ms)} ms, max ${f1(base.loopDelayMaxMs)} ms` +
        (base.errors ? `; ${base.errors} errors (first: ${base.firstError})` : ''));
      const during = await c.call(leader, 'snapload', { concurrency: SNAP_CONCURRENCY, seconds: snapSeconds, snapshot: true, delayMs: 500 });
      for (const [i, s] of during.snapshots.entries())
        console.log(`  snapshot ${i + 1}: index ${s.index}, ${thousands(s.objects)} objects, ${mib(s.bytes)} MiB, ` +
          `written in ${fInt(s.durationMs)} ms (snapshot event), store.snapshot() resolved after ${fInt(s.ms)} ms`);
      console.log(`  with snapshots: ${fInt(during.txPerSec)} tx/s over the window, p99 ${f3(during.p99)} ms; ` +
        `the ${thousands(during.duringOps)} ops that overlapped a snapshot: p50 ${f3(during.duringP50)} ms, ` +
        `p99 ${f3(during.duringP99)} ms; event loop delay p99 ${f1(during.loopDelayP99Ms)} ms, max ${f1(during.loopDelayMaxMs)} ms` +
        (during.errors ? `; ${during.errors} errors (first: ${during.firstError})` : ''));
      snap = { loaded, base, during };

      // ---- 3. restart of a follower from its own snapshot plus its log tail
      console.log(`\n3. restart: a follower snapshots, gets ${TAIL_SECONDS} s of adds, is SIGKILLed, misses ` +
        `${TAIL_SECONDS} s of adds, and is started again from its data directory`);
      const follower = c.ports.find((p) => p !== leader);
      const own = await c.call(follower, 'snapshot');
      console.log(`  follower ${follower} snapshot: index ${own.index}, ${thousands(own.objects)} objects, ${mib(own.bytes)} MiB, ` +
        `${fInt(own.durationMs)} ms`);
      const tail1 = await c.call(leader, 'load', { kind: 'add', concurrency: SNAP_CONCURRENCY, seconds: TAIL_SECONDS });
      await c.converged((await c.call(leader, 'status')).count);
      const beforeKill = await c.call(follower, 'status');
      c.kill(follower);
      await c.exited(follower);
      const tail2 = await c.call(leader, 'load', { kind: 'add', concurrency: SNAP_CONCURRENCY, seconds: TAIL_SECONDS });
      const target = await c.call(leader, 'status');
      await c.converged(target.count);
      console.log(`  ${thousands(tail1.ops)} adds before the kill (the follower had applied index ${beforeKill.applied}), ` +
        `${thousands(tail2.ops)} after; the leader holds ` +
        `${thousands(target.count)} objects at index ${target.applied}`);
      const r = c.start(follower, { count: target.count, index: target.applied });
      const times = await r.ready;
      let timer;
      const caught = await Promise.race([r.caughtUp, new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('the restarted replica did not catch up within 300 s')), 300_000);
      })]).finally(() => clearTimeout(timer));
      restart = {
        loaded: times.loaded - r.forkedAt, open: times.open - r.forkedAt,
        restoredCount: caught.restored?.count,
        restoredIndex: caught.restored?.index, snapshotObjects: own.objects,
        caughtUp: caught.at - r.forkedAt, count: caught.count, applied: caught.applied,
        snapshotIndex: own.index, killedAt: beforeKill.applied, target,
      };
      console.log(`  restarted ${follower}: package loaded ${fInt(restart.loaded)} ms, Store.open resolved ${fInt(restart.open)} ms ` +
        `holding index ${restart.restoredIndex} (${thousands(restart.restoredCount)} objects), caught up ` +
        `(${thousands(caught.count)} objects, index ${caught.applied}) ${fInt(restart.caughtUp)} ms after the fork`);
    } finally {
      c.stop();
    }
  }
} catch (e) {
  console.error(`\nbench:store: failed: ${e?.stack ?? e}`);
  cleanup();
  process.exit(1);
}

// ---------------------------------------------------------------------------------------
// Summary: markdown tables, and the target

const missed = [];
if (doThroughput) {
  console.log(`\nthroughput: 3 replica processes, closed-loop workers in the leader's process, ${seconds} s per level\n`);
  console.log('| op | concurrency | transactions/s | p50 ms | p99 ms | p999 ms | errors |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const op of throughputOps)
    for (const n of levels) {
      const r = throughput[op][n];
      console.log(`| ${op} | ${n} | ${fInt(r.writesPerSec)} | ${f3(r.p50)} | ${f3(r.p99)} | ${f3(r.p999)} | ${r.errors} |`);
    }
}
if (snap) {
  const { base, during } = snap;
  const ratio = during.duringP99 / base.p99;
  const s = during.snapshots;
  const first = s[0];
  console.log(`\nsnapshot of ${thousands(snap.loaded.count)} objects on the leader while ${SNAP_CONCURRENCY} touch workers run ` +
    `(${snapSeconds} s windows)\n`);
  console.log('| snapshots | written in ms (event) | store.snapshot() ms | size MiB | p99 baseline ms | p99 during a snapshot ms | ' +
    'ratio (target <= 2) | tx/s baseline / with snapshots |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|---:|');
  // Every snapshot's time when there are a few, else the median (min-max).
  const list = (k) => {
    const xs = s.map((x) => x[k]);
    if (xs.length <= 4) return xs.map(fInt).join(', ');
    const sorted = [...xs].sort((a, b) => a - b);
    return `${fInt(sorted[Math.floor(sorted.length / 2)])} (${fInt(sorted[0])}-${fInt(sorted[sorted.length - 1])})`;
  };
  console.log(`| ${s.length} | ${list('durationMs')} | ${list('ms')} | ${first ? mib(first.bytes) : '-'} | ${f3(base.p99)} | ` +
    `${f3(during.duringP99)} | ${Number.isFinite(ratio) ? ratio.toFixed(2) : '-'} | ${fInt(base.txPerSec)} / ${fInt(during.txPerSec)} |`);
  if (!s.length) missed.push('no snapshot was taken during the window');
  else if (!(ratio <= 2)) missed.push(`p99 during a snapshot / baseline p99 = ${Number.isFinite(ratio) ? ratio.toFixed(2) : '-'} > 2`);
  if (base.errors || during.errors) missed.push(`${base.errors + during.errors} failed transactions in the snapshot phase`);
}
if (restart) {
  console.log(`\nrestart of a follower from its own snapshot of ${thousands(restart.snapshotObjects)} objects (index ` +
    `${restart.snapshotIndex}), SIGKILLed at index ${restart.killedAt}; ms after the fork\n`);
  console.log('| package loaded | Store.open resolved | index held at open | caught up | objects | index |');
  console.log('|---:|---:|---:|---:|---:|---:|');
  console.log(`| ${fInt(restart.loaded)} | ${fInt(restart.open)} | ${restart.restoredIndex} | ${fInt(restart.caughtUp)} | ` +
    `${thousands(restart.count)} | ${restart.applied} |`);
  console.log('(Store.open resolves once the replica\'s own snapshot is restored; entries that arrived meanwhile (its log ' +
    'tail, then what it missed) are applied before the code after it runs, hence "index held at open"; "caught up": the ' +
    'replica holds as many objects as the others and has applied the leader\'s last index)');
}
for (const op of Object.keys(throughput))
  for (const n of levels) if (throughput[op][n]?.errors) missed.push(`${throughput[op][n].errors} failed ${op} transactions at ${n}`);

cleanup();
if (missed.length) console.log(`\nbench:store: SOME TARGETS MISSED: ${missed.join('; ')}`);
else if (!snap) console.log('\nbench:store: no target checked (the snapshot phase did not run)');
else console.log('\nbench:store: every target met');
