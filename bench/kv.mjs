#!/usr/bin/env node
// `npm run bench:kv` (issue 13 §3): KvStore as an application uses it, three replica
// processes on loopback (bench/kv-replica.mjs, the compiled package in dist/), against etcd
// (three members of Debian's etcd-server, bench/etcd.mjs) through the etcd3 client, in the
// same run.
//
//   1. throughput at each of --levels: C closed-loop workers, each awaiting one op before the
//      next, for --seconds. KvStore: workers in the leader's process (an app embedding its
//      replica). etcd: one etcd3 client in this process. Ops: put (100-byte value, one of
//      10,000 keys), get-linearizable, get-local (etcd: serializable), range (a prefix of ten
//      keys, values included), txn (compare the worker's key's version, put it).
//   2. watch latency: a watcher on a follower, puts on the leader: from the put's
//      acknowledgement to the event's arrival (both clocks this machine's), p50/p99.
//   3. failover: 8 writers on one follower and a watcher on the other; the leader is killed
//      (SIGKILL) 2 s in: the longest gap between acknowledged puts, and between events the
//      watcher received, that ends after the kill. --trials runs (default 3).
//   4. --keys keys (default 10,000,000) loaded through the log into a fresh KvStore cluster in
//      transactions of 5,000 puts: load time, store size, RSS and heap of the leader's
//      process; a snapshot (time, size); a new peer added (installs it); a follower restarted.
//
// Targets (issue 13): KvStore writes/s (put, txn) at least 2x etcd's at every level, and a
// lower p99 for every op. Options: --seconds S (default 10), --levels 1,32,128, --keys N,
// --snapshot-entries N (section 4, default 200), --trials N, --no-throughput, --no-watch,
// --no-failover, --no-big, --no-etcd.
// Ports: KvStore 18000-18999, etcd 19000-19999.
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { ReplicaCluster, buildPackage, cleanup, numericOption, portAllocator, root, sleep } from './lib.mjs';
import { closedLoop, now, outageAround } from './load.mjs';
import { EtcdCluster, etcdBin, etcdPortAllocator, loadEtcd } from './etcd.mjs';

const option = (name, fallback) => numericOption('kv', name, fallback);
const seconds = Number(option('seconds', '10'));
const levels = option('levels', '1,32,128').split(',').map(Number);
const bigKeys = Number(option('keys', '10000000'));
const trials = Number(option('trials', '3'));
// Section 4's replicas snapshot every this many entries (0: only when the bench asks): the
// engine keeps the log since the last snapshot in memory, part of the RSS reported.
const snapshotEntries = Number(option('snapshot-entries', '200'));
const flag = (name) => !process.argv.includes(`--no-${name}`);
if (seconds < 1 || levels.some((n) => n < 1) || bigKeys < 1 || trials < 1) {
  console.error('bench:kv: --seconds, --levels, --keys and --trials must be positive');
  process.exit(2);
}
const ELECTION_TIMEOUT_MS = 1000;
const OP_TIMEOUT_MS = 5000;
const KINDS = ['put', 'get-linearizable', 'get-local', 'range', 'txn'];
const WRITES = new Set(['put', 'txn']);
const FAILOVER_WRITERS = 8;
const KILL_AFTER_MS = 2000;
const ports = portAllocator(18000, 18999, 4);
const etcdPorts = etcdPortAllocator(19000, 19999);
const replicaFile = join(root, 'bench/kv-replica.mjs');

class KvCluster extends ReplicaCluster {
  constructor() {
    const p = ports();
    super(replicaFile, 'bench-kv-', p.slice(0, 3), ELECTION_TIMEOUT_MS);
    this.spare = p[3];
  }
}

const f3 = (x) => (Number.isFinite(x) ? x.toFixed(3) : '-');
const fInt = (x) => (Number.isFinite(x) ? String(Math.round(x)) : '-');
const mib = (b) => (Number.isFinite(b) ? (b / 2 ** 20).toFixed(0) : '-');
const pct = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const within = (p, ms) => {
  let timer;
  return Promise.race([p, new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not within ${ms / 1000} s`)), ms);
  })]).finally(() => clearTimeout(timer));
};
// The longest gap between successive arrival times that ends after `killAt`.
const arrivalOutage = (times, killAt) => {
  const t = [...times].sort((a, b) => a - b);
  let ms = 0;
  for (let i = 1; i < t.length; i++) if (t[i] >= killAt) ms = Math.max(ms, t[i] - t[i - 1]);
  return t.length > 0 && t[t.length - 1] >= killAt ? { ms, recovered: true } : { ms: NaN, recovered: false };
};
// Watch latency from acks [[revision, ackTime]] and arrivals {revision: time}.
const watchLatency = (acks, arrivals) => {
  const lat = acks.filter(([rev]) => arrivals[rev] !== undefined).map(([rev, t]) => arrivals[rev] - t);
  return { n: lat.length, missing: acks.length - lat.length, p50: pct(lat, 0.5), p99: pct(lat, 0.99) };
};

let etcdVersion = null;
const skipped = [];
if (flag('etcd')) {
  if (!etcdBin) skipped.push('etcd (no etcd binary: `bash scripts/setup.sh` installs Debian\'s etcd-server)');
  else {
    try {
      etcdVersion = await loadEtcd();
    } catch (e) {
      skipped.push(`etcd (${e.message}; \`npm ci\` installs the etcd3 client)`);
    }
  }
}

// The same ops through etcd3.
function etcdOps(client) {
  const VALUE = 'v'.repeat(100);
  const key = () => `k/${Math.floor(Math.random() * 10_000)}`;
  const last = new Map();
  return {
    put: () => client.put(key()).value(VALUE).exec(),
    'get-linearizable': () => client.get(key()).string(),
    'get-local': () => client.get(key()).serializable(true).string(),
    range: () => client.getAll().prefix(`r/${Math.floor(Math.random() * 100)}/`).strings(),
    txn: async (w) => {
      const k = `t/${w}`;
      const v = last.get(k) ?? 0;
      const r = await client.if(k, 'Version', '==', v).then(client.put(k).value(String(v + 1))).else(client.get(k)).commit();
      if (!r.succeeded) throw new Error(`txn on ${k} failed its compare`);
      last.set(k, v + 1);
    },
  };
}
async function etcdPrefill(client) {
  const VALUE = 'v'.repeat(100);
  const keys = [];
  for (let i = 0; i < 10_000; i++) keys.push(`k/${i}`);
  for (let g = 0; g < 100; g++) for (let i = 0; i < 10; i++) keys.push(`r/${g}/${i}`);
  // etcd's default --max-txn-ops is 128.
  for (let i = 0; i < keys.length; i += 128)
    await client.if('none', 'Version', '==', 0).then(...keys.slice(i, i + 128).map((k) => client.put(k).value(VALUE))).commit();
}

console.log(`bench:kv: 3 replicas per system on loopback (election timeout ${ELECTION_TIMEOUT_MS} ms), ${seconds} s per level, ` +
  `levels ${levels.join(', ')}; ${cpus().length} cores, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}, ` +
  `node ${process.version}${etcdVersion ? `, etcd ${etcdVersion}` : ''}`);
for (const s of skipped) console.log(`skipped: ${s}`);

const results = { kv: {}, etcd: {} };
const watch = { kv: {}, etcd: {} };
const failover = { kv: [], etcd: [] };
let big = null;
try {
  buildPackage();
  if (flag('throughput') || flag('watch') || flag('failover')) {
    const c = new KvCluster();
    try {
      await c.startAll();
      let leader = await c.leader();
      await c.call(leader, 'prefill');
      if (flag('throughput')) {
        console.log('\n1. throughput, KvStore (workers in the leader\'s process)');
        await c.call(leader, 'load', { kind: 'put', concurrency: 8, seconds: 1 }); // warm-up
        for (const kind of KINDS) {
          results.kv[kind] = {};
          for (const n of levels) {
            leader = await c.leader();
            const r = await c.call(leader, 'load', { kind, concurrency: n, seconds });
            results.kv[kind][n] = r;
            console.log(`  ${kind.padEnd(17)} ${String(n).padStart(4)}: ${fInt(r.writesPerSec).padStart(7)} ops/s, ` +
              `p50 ${f3(r.p50)} ms, p99 ${f3(r.p99)} ms${r.errors ? `, ${r.errors} errors (first: ${r.firstError})` : ''}`);
          }
        }
      }
      if (flag('watch')) {
        console.log('\n2. watch latency, KvStore: puts on the leader, the watcher on a follower');
        leader = await c.leader();
        const follower = c.ports.find((p) => p !== leader);
        for (const n of [1, 32]) {
          await c.call(follower, 'watchStart');
          const w = await c.call(leader, 'writeW', { concurrency: n, seconds: Math.min(seconds, 5) });
          await sleep(500);
          const arrivals = await c.call(follower, 'watchStop');
          watch.kv[n] = watchLatency(w.acks, arrivals);
          console.log(`  ${String(n).padStart(3)} writers: ${watch.kv[n].n} events, p50 ${f3(watch.kv[n].p50)} ms, p99 ${f3(watch.kv[n].p99)} ms` +
            (watch.kv[n].missing ? `, ${watch.kv[n].missing} never arrived` : ''));
        }
      }
      if (flag('failover')) {
        console.log(`\n3. failover, KvStore: ${FAILOVER_WRITERS} writers on one follower, a watcher on the other, the leader killed`);
        for (let t = 0; t < trials; t++) {
          leader = await c.leader();
          const [writer, watcher] = c.ports.filter((p) => p !== leader);
          await c.call(watcher, 'watchStart');
          const load = c.call(writer, 'writeW', { concurrency: FAILOVER_WRITERS, seconds: 6 });
          await sleep(KILL_AFTER_MS);
          const killAt = now();
          c.kill(leader);
          const r = await load;
          await sleep(300);
          const arrivals = await c.call(watcher, 'watchStop');
          const run = { writer: outageAround(r, killAt), watcher: arrivalOutage(Object.values(arrivals), killAt) };
          failover.kv.push(run);
          console.log(`  run ${t + 1}: writer outage ${fInt(run.writer.ms)} ms, watcher outage ${fInt(run.watcher.ms)} ms`);
          await c.exited(leader);
          await c.start(leader).ready;
        }
      }
    } finally {
      c.stop();
    }

    if (etcdVersion) {
      const e = new EtcdCluster(ELECTION_TIMEOUT_MS, etcdPorts(), OP_TIMEOUT_MS);
      try {
        await e.healthy();
        const client = e.client();
        await etcdPrefill(client);
        const ops = etcdOps(client);
        if (flag('throughput')) {
          console.log(`\n1. throughput, etcd ${etcdVersion} (etcd3 client in this process, default fsync)`);
          await closedLoop(8, 1, ops.put); // warm-up
          for (const kind of KINDS) {
            results.etcd[kind] = {};
            for (const n of levels) {
              const r = await closedLoop(n, seconds, ops[kind]);
              results.etcd[kind][n] = r;
              console.log(`  ${kind.padEnd(17)} ${String(n).padStart(4)}: ${fInt(r.writesPerSec).padStart(7)} ops/s, ` +
                `p50 ${f3(r.p50)} ms, p99 ${f3(r.p99)} ms${r.errors ? `, ${r.errors} errors (first: ${r.firstError})` : ''}`);
            }
          }
        }
        const leaderIdx = await e.leader();
        const others = [0, 1, 2].filter((i) => i !== leaderIdx);
        if (flag('watch')) {
          console.log('\n2. watch latency, etcd: puts through the leader, the watcher on a follower');
          const wc = e.client([others[0]]);
          const pc = e.client([leaderIdx]);
          const VALUE = 'v'.repeat(100);
          for (const n of [1, 32]) {
            const arrivals = {};
            const watcher = await wc.watch().prefix('w/').create();
            watcher.on('put', (kv) => {
              arrivals[Number(kv.mod_revision)] ??= now();
            });
            const acks = [];
            await closedLoop(n, Math.min(seconds, 5), async (w) => {
              const r = await pc.put(`w/${w}`).value(VALUE).exec();
              acks.push([Number(r.header.revision), now()]);
            });
            await sleep(500);
            await watcher.cancel();
            watch.etcd[n] = watchLatency(acks, arrivals);
            console.log(`  ${String(n).padStart(3)} writers: ${watch.etcd[n].n} events, p50 ${f3(watch.etcd[n].p50)} ms, ` +
              `p99 ${f3(watch.etcd[n].p99)} ms${watch.etcd[n].missing ? `, ${watch.etcd[n].missing} never arrived` : ''}`);
          }
          wc.close();
          pc.close();
        }
        client.close();
        if (flag('failover')) {
          console.log(`\n3. failover, etcd: ${FAILOVER_WRITERS} writers (etcd3, every member), a watcher on a follower, the leader killed`);
          for (let t = 0; t < trials; t++) {
            await e.healthy();
            const li = await e.leader();
            const wi = [0, 1, 2].find((i) => i !== li);
            const writerClient = e.client();
            const watchClient = e.client([wi]);
            const times = [];
            const watcher = await watchClient.watch().prefix('w/').create();
            watcher.on('put', () => times.push(now()));
            const load = closedLoop(FAILOVER_WRITERS, 6, (w) => writerClient.put(`w/${w}`).value('x').exec());
            await sleep(KILL_AFTER_MS);
            const killAt = now();
            e.kill(li);
            const r = await load;
            await sleep(300);
            await watcher.cancel();
            writerClient.close();
            watchClient.close();
            const run = { writer: outageAround(r, killAt), watcher: arrivalOutage(times, killAt) };
            failover.etcd.push(run);
            console.log(`  run ${t + 1}: writer outage ${fInt(run.writer.ms)} ms, watcher outage ${fInt(run.watcher.ms)} ms`);
            e.start(li);
          }
        }
      } finally {
        e.stop();
      }
    }
  }

  if (flag('big')) {
    console.log(`\n4. ${bigKeys.toLocaleString('en')} keys through the log (transactions of 5,000 puts, 16-byte keys, 64-byte values; ` +
      `snapshots every ${snapshotEntries || 'no'} entries)`);
    process.env['BENCH_KV_SNAPSHOT_ENTRIES'] = String(snapshotEntries);
    const c = new KvCluster();
    try {
      await c.startAll();
      const leader = await c.leader();
      const filled = await c.call(leader, 'fill', { keys: bigKeys, batch: 5000, concurrency: 4 });
      const st = await c.converged(filled.applied, 1_800_000);
      const ls = await c.call(leader, 'status');
      console.log(`  loaded in ${fInt(filled.ms / 1000)} s (${fInt(bigKeys / (filled.ms / 1000))} keys/s), revision ${filled.revision}; ` +
        `store ${mib(ls.bytes)} MiB; leader process RSS ${mib(ls.memory.rss)} MiB (anonymous ${mib(ls.memory.rssAnon)}, ` +
        `file-backed ${mib(ls.memory.rssFile)}), heap used ${mib(ls.memory.heapUsed)} MiB (of ${mib(ls.memory.heapTotal)} MiB); ` +
        `followers RSS ${st.filter((s) => s.role !== 'leader').map((s) => mib(s.memory.rss)).join(', ')} MiB`);
      const snap = await c.call(leader, 'snapshot');
      console.log(`  snapshot: ${mib(snap.bytes)} MiB, copied in ${fInt(snap.durationMs)} ms, store.snapshot() resolved after ${fInt(snap.ms)} ms`);
      const target = (await c.call(leader, 'status')).applied;
      const peer = c.start(c.spare, target, '');
      await peer.ready;
      const addAt = now();
      await c.call(leader, 'addPeer', { peer: `127.0.0.1:${c.spare}:0` });
      const joined = await within(peer.caughtUp, 1_800_000);
      console.log(`  a new peer caught up ${fInt(joined.at - addAt)} ms after add_peer` + (joined.stats.lastInstall
        ? `; the install (copy, fsync, swap) took ${fInt(joined.stats.lastInstall.durationMs)} ms` : '') +
        `; its RSS ${mib(joined.memory.rss)} MiB, heap used ${mib(joined.memory.heapUsed)} MiB`);
      const follower = c.ports.find((p) => p !== leader);
      c.kill(follower);
      await c.exited(follower);
      const r = c.start(follower, target);
      const t = await r.ready;
      const caught = await within(r.caughtUp, 600_000);
      console.log(`  a follower restarted: KvStore.open resolved ${fInt(t.open - r.forkedAt)} ms after the fork, ` +
        `entries run again: ${caught.stats.entriesApplied}`);
      big = {
        filled, leader: ls, snap, newPeer: joined.at - addAt, install: joined.stats.lastInstall?.durationMs, restart: t.open - r.forkedAt,
        peerMemory: joined.memory,
      };
    } finally {
      c.stop();
    }
  }
} catch (e) {
  console.error(`\nbench:kv: failed: ${e?.stack ?? e}`);
  cleanup();
  process.exit(1);
}

const missed = [];
if (flag('throughput') && etcdVersion) {
  console.log(`\nthroughput: ${seconds} s per level; KvStore: 3 replica processes, workers in the leader's process; etcd ${etcdVersion}: ` +
    'etcd3 in the bench process\n');
  console.log('| op | concurrency | KvStore ops/s | p50 ms | p99 ms | etcd ops/s | p50 ms | p99 ms | KvStore / etcd |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const kind of KINDS)
    for (const n of levels) {
      const k = results.kv[kind][n];
      const e = results.etcd[kind][n];
      const ratio = k.writesPerSec / e.writesPerSec;
      console.log(`| ${kind} | ${n} | ${fInt(k.writesPerSec)} | ${f3(k.p50)} | ${f3(k.p99)} | ${fInt(e.writesPerSec)} | ${f3(e.p50)} | ` +
        `${f3(e.p99)} | ${ratio.toFixed(2)} |`);
      if (WRITES.has(kind) && !(ratio >= 2)) missed.push(`${kind} at ${n}: ${ratio.toFixed(2)}x etcd's writes/s (target 2x)`);
      if (!(k.p99 < e.p99)) missed.push(`${kind} at ${n}: p99 ${f3(k.p99)} ms, etcd's ${f3(e.p99)} ms`);
      if (k.errors || e.errors) missed.push(`${kind} at ${n}: errors (KvStore ${k.errors}, etcd ${e.errors})`);
    }
}
if (flag('watch')) {
  console.log('\n| watch latency | KvStore p50 / p99 ms | etcd p50 / p99 ms |');
  console.log('|---|---:|---:|');
  for (const n of [1, 32])
    console.log(`| ${n} writer(s) | ${f3(watch.kv[n]?.p50)} / ${f3(watch.kv[n]?.p99)} | ${f3(watch.etcd[n]?.p50)} / ${f3(watch.etcd[n]?.p99)} |`);
}
if (flag('failover')) {
  const show = (runs, side) => runs.map((r) => (r[side].recovered ? fInt(r[side].ms) : 'not recovered')).join(', ');
  console.log('\n| failover (leader killed) | KvStore outage ms (runs) | etcd outage ms (runs) |');
  console.log('|---|---|---|');
  console.log(`| writer | ${show(failover.kv, 'writer')} | ${show(failover.etcd, 'writer')} |`);
  console.log(`| watcher | ${show(failover.kv, 'watcher')} | ${show(failover.etcd, 'watcher')} |`);
  for (const r of failover.kv) if (!r.writer.recovered || !r.watcher.recovered) missed.push('a KvStore failover did not recover');
}
if (big) {
  console.log(`\n| ${bigKeys.toLocaleString('en')} keys | |`);
  console.log('|---|---|');
  console.log(`| load through the log | ${fInt(big.filled.ms / 1000)} s |`);
  console.log(`| store file | ${mib(big.leader.bytes)} MiB |`);
  console.log(`| leader process RSS (anonymous + file-backed) / heap used | ${mib(big.leader.memory.rss)} ` +
    `(${mib(big.leader.memory.rssAnon)} + ${mib(big.leader.memory.rssFile)}) / ${mib(big.leader.memory.heapUsed)} MiB |`);
  console.log(`| snapshot size / copy / resolved | ${mib(big.snap.bytes)} MiB / ${fInt(big.snap.durationMs)} ms / ${fInt(big.snap.ms)} ms |`);
  console.log(`| new peer caught up after add_peer (install) | ${fInt(big.newPeer)} ms (${fInt(big.install)} ms) |`);
  console.log(`| new peer RSS (anonymous + file-backed) / heap used | ${mib(big.peerMemory.rss)} ` +
    `(${mib(big.peerMemory.rssAnon)} + ${mib(big.peerMemory.rssFile)}) / ${mib(big.peerMemory.heapUsed)} MiB |`);
  console.log(`| follower restart (open) | ${fInt(big.restart)} ms |`);
}
if (!etcdVersion) console.log('\nbench:kv: etcd did not run: no target checked');
else if (missed.length === 0) console.log('\nbench:kv: every target met');
else console.log(`\nbench:kv: targets missed:\n  ${missed.join('\n  ')}`);
cleanup();
