#!/usr/bin/env node
// `npm run bench:node`: raftstore as a Node application uses it, against what Node users
// pick today and against raftstore's own C++ counter, in one run on one machine.
//
//   raftstore  three replica processes (bench/node-replica.mjs: a RaftNode with a JavaScript
//              counter state machine); C closed-loop proposers run inside the leader's
//              process (the app embeds its replica), each awaiting node.propose(+1) before
//              issuing the next.
//   etcd       three etcd members (Debian's etcd-server) on loopback; C closed-loop writers
//              in this Node process through the etcd3 npm client, each awaiting one put of
//              its own key before the next.
//   cpp        bench/counter.mjs's cluster: raftstore-counter-server x3 and
//              raftstore-counter-client with C threads (braft's counter example, all C++).
//
// Each at concurrency 1, 8, 32 and 128 for 20 s, reporting writes/s and p50/p99/p999, and
// the ratios raftstore/cpp (target >= 0.8) and raftstore/etcd (target >= 2.0). Then the
// failover a Node client sees at election timeouts of 1000 ms and 100 ms: 8 concurrent
// writers (for raftstore in a follower's process, so they survive), the leader's process
// killed with SIGKILL after 2 s; the outage is the longest gap between successive successful
// completions (any writer) that ends after the kill; 3 runs each, median reported.
//
// etcd runs with its default fsync, heartbeat 100 ms / election timeout 1000 ms (throughput
// and the 1000 ms failover) and heartbeat 10 ms / election timeout 100 ms (the 100 ms
// failover); the etcd3 client with its defaults plus a 5 s deadline per call, the same as
// the proposals' timeoutMs. Besides the outage, each failover run reports when a survivor
// led (raftstore) or named a new leader (etcd), polled every 10 ms.
//
// Then the cost of observability and TLS for raftstore, at 32 proposers (and the levels in
// --cost-levels): the same cluster without and with every replica's /metrics scraped once a
// second (as Prometheus would), and a second cluster on mutual TLS, run in turns (plain,
// scraped, TLS; the order turning each trial) --cost-trials times. Each trial's cost is
// 1 - (its writes/s) / (the same trial's plain writes/s), so drift over the run cancels; the
// median over trials is reported. Targets: metrics < 3% and TLS < 15% of writes/s at 32.
//
// Options: --seconds S (per level, default 20), --levels 1,8,32,128, --only
// raftstore|etcd|cpp (or a comma-separated list), --no-failover, --trials N (failover runs
// per system and timeout, default 3), --timeouts 1000,100, --no-cost, --cost-seconds S
// (default 10), --cost-trials N (default 5), --cost-levels 32.
// Ports: raftstore and C++ replicas in 14000-14999, etcd in 15000-15999.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CounterCluster, ReplicaCluster, buildPackage, buildRelease, cleanup, counterClient, counterServer, live, numericOption,
  portAllocator, root, sleep,
} from './lib.mjs';
import { closedLoop, now, outageAround } from './load.mjs';
import { EtcdCluster, etcdBin, etcdPortAllocator, loadEtcd } from './etcd.mjs';

// ---------------------------------------------------------------------------------------
// Options

const option = (name, fallback) => numericOption('node', name, fallback);
const seconds = Number(option('seconds', '20'));
const levels = option('levels', '1,8,32,128').split(',').map(Number);
const trials = Number(option('trials', '3'));
const timeouts = option('timeouts', '1000,100').split(',').map(Number);
const failover = !process.argv.includes('--no-failover');
const cost = !process.argv.includes('--no-cost');
const costSeconds = Number(option('cost-seconds', '10'));
const costTrials = Number(option('cost-trials', '5'));
const costLevels = option('cost-levels', '32').split(',').map(Number);
const allSystems = ['raftstore', 'cpp', 'etcd'];
let systems = allSystems;
{
  const i = process.argv.indexOf('--only');
  if (i >= 0) {
    const v = (process.argv[i + 1] ?? '').split(',');
    if (v.some((s) => !allSystems.includes(s))) {
      console.error(`bench:node: --only needs raftstore, etcd or cpp (or a comma-separated list), got "${process.argv[i + 1] ?? ''}"`);
      process.exit(2);
    }
    systems = allSystems.filter((s) => v.includes(s));
  }
}
if (seconds < 1 || levels.some((n) => n < 1) || trials < 1) {
  console.error('bench:node: --seconds, --levels and --trials must be positive');
  process.exit(2);
}
const FAILOVER_CONCURRENCY = 8;
const KILL_AFTER_MS = 2000;
const OP_TIMEOUT_MS = 5000; // per propose / per put, for every Node client

const raftPorts = portAllocator(14000, 14999);
const etcdPorts = etcdPortAllocator(15000, 15999);

// ---------------------------------------------------------------------------------------
// raftstore: three replica processes, driven over IPC

const replicaFile = join(root, 'bench/node-replica.mjs');

class RaftCluster extends ReplicaCluster {
  constructor(electionTimeoutMs, tlsDir = '') {
    super(replicaFile, 'bench-node-raft-', raftPorts(), electionTimeoutMs);
    this.tlsDir = tlsDir;
  }
  async startAll() {
    await Promise.all(this.ports.map((p) => this.start(p)));
  }
  async start(port) {
    await this.fork(port, this.tlsDir ? [this.tlsDir] : []).ready;
  }
}

// Every replica's /metrics once a second, as a Prometheus server scraping the cluster would;
// stop() returns how many scrapes succeeded and failed, and the bytes read.
function scrapeEverySecond(ports) {
  const stats = { ok: 0, failed: 0, bytes: 0 };
  const timer = setInterval(() => {
    for (const p of ports)
      fetch(`http://127.0.0.1:${p}/metrics`).then((r) => r.text()).then((t) => {
        stats.ok += 1;
        stats.bytes += t.length;
      }, () => {
        stats.failed += 1;
      });
  }, 1000);
  return { stop: () => (clearInterval(timer), stats) };
}

// Polls `elected()` every 10 ms after a kill at `killAt`; the time from the kill until it
// first answers true (a surviving replica leads / names a new leader), or null after limitMs.
async function electionTime(killAt, elected, limitMs) {
  while (now() - killAt < limitMs) {
    if (await elected().catch(() => false)) return now() - killAt;
    await sleep(10);
  }
  return null;
}

async function etcdLoad(client, concurrency, secs) {
  const counts = new Array(concurrency).fill(0);
  return closedLoop(concurrency, secs, (w) => client.put(`counter/${w}`).value(String(++counts[w])).exec());
}

// ---------------------------------------------------------------------------------------
// Output helpers

const f3 = (x) => (Number.isFinite(x) ? x.toFixed(3) : '-');
const fInt = (x) => (Number.isFinite(x) ? String(Math.round(x)) : '-');
const header = 'concurrency  writes/s   p50 ms   p99 ms  p999 ms  errors';
const line = (n, r) => `${String(n).padStart(11)} ${fInt(r.writesPerSec).padStart(9)} ${f3(r.p50).padStart(8)} ` +
  `${f3(r.p99).padStart(8)} ${f3(r.p999).padStart(8)} ${String(r.errors).padStart(7)}` +
  (r.note ? `  ${r.note}` : '');
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// ---------------------------------------------------------------------------------------
// The run

const results = { raftstore: {}, cpp: {}, etcd: {} };
const costs = {}; // level -> { plain: [], scraped: [], tls: [] } of load results
const outages = { raftstore: {}, etcd: {} };
const skipped = [];

let etcdVersion = null;
if (systems.includes('etcd')) {
  if (!etcdBin) {
    skipped.push('etcd (no etcd binary: `bash scripts/setup.sh` installs Debian\'s etcd-server)');
  } else {
    try {
      etcdVersion = await loadEtcd();
    } catch (e) {
      skipped.push(`etcd (${e.message}; \`npm ci\` installs the etcd3 client)`);
    }
  }
}
const runEtcd = systems.includes('etcd') && etcdVersion !== null;

console.log(`bench:node: 3 replicas per system on loopback, ${seconds} s per level, levels ${levels.join(', ')}; ` +
  `${cpus().length} cores, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}, node ${process.version}` +
  (runEtcd ? `, etcd ${etcdVersion}` : ''));
console.log('an op is:');
if (systems.includes('raftstore'))
  console.log('  raftstore  one node.propose() of a 4-byte int32 increment on the RaftNode in the leader\'s process,\n' +
    '             done when that replica has applied it (committed by a quorum, fsynced) and returned the new value');
if (systems.includes('cpp'))
  console.log('  cpp        one braft counter fetch_add(1) RPC from raftstore-counter-client (C++, one caller per "thread")\n' +
    '             to the leader, answered once the leader has applied it');
if (runEtcd)
  console.log('  etcd       one etcd3 client.put(`counter/<writer>`).value(<its count, <= 8 bytes>) from this Node process\n' +
    '             to a member the client picks at random (followers forward), done when etcd has committed it');

try {
  // ---- raftstore throughput
  if (systems.includes('raftstore')) buildPackage();
  if (systems.includes('raftstore')) {
    console.log(`\nraftstore (RaftNode, JavaScript counter; proposers inside the leader's process; election timeout 1000 ms)`);
    const c = new RaftCluster(1000);
    try {
      await c.startAll();
      let leader = await c.leader();
      await c.call(leader, 'load', { concurrency: 8, seconds: 2 }); // warm-up
      console.log(header);
      for (const n of levels) {
        leader = await c.leader();
        const r = await c.call(leader, 'load', { concurrency: n, seconds });
        const after = await c.leader();
        if (after !== leader) r.note = `(leader moved ${leader} -> ${after} during the level)`;
        if (r.firstError) r.note = `${r.note ?? ''} first error: ${r.firstError}`.trim();
        results.raftstore[n] = r;
        console.log(line(n, r));
      }
    } finally {
      c.stop();
    }
  }

  // ---- the cost of metrics scraping and of TLS
  if (systems.includes('raftstore') && cost) {
    const certs = mkdtempSync(join(tmpdir(), 'bench-node-certs-'));
    const made = spawnSync('bash', [join(root, 'test/fixtures/make-certs.sh'), certs], { encoding: 'utf8' });
    if (made.status !== 0) throw new Error(`make-certs.sh failed: ${made.stderr}`);
    console.log(`
raftstore: the cost of metrics and TLS (${costSeconds} s per run; in turns: plain, plain with every ` +
      `replica's /metrics scraped each second, mutual TLS; ${costTrials} trials)`);
    const plain = new RaftCluster(1000);
    const tls = new RaftCluster(1000, certs);
    try {
      await plain.startAll();
      await tls.startAll();
      for (const c of [plain, tls]) await c.call(await c.leader(), 'load', { concurrency: 8, seconds: 2 }); // warm-up
      console.log(`${'mode'.padEnd(8)} ${header}`);
      for (let t = 0; t < costTrials; t++)
        for (const n of costLevels) {
          const row = (costs[n] ??= { plain: [], scraped: [], tls: [], scrapes: [] });
          const run = async (c) => c.call(await c.leader(), 'load', { concurrency: n, seconds: costSeconds });
          const modes = {
            plain: async () => {
              const r = await run(plain);
              row.plain.push(r);
              console.log(`${'plain'.padEnd(8)} ${line(n, r)}`);
            },
            scraped: async () => {
              const scraper = scrapeEverySecond(plain.ports);
              const r = await run(plain);
              const scraped = scraper.stop();
              row.scraped.push(r);
              row.scrapes.push(scraped);
              console.log(`${'scraped'.padEnd(8)} ${line(n, r)}  (${scraped.ok} scrapes, ${scraped.failed} failed, ` +
                `${Math.round(scraped.bytes / Math.max(1, scraped.ok))} bytes each)`);
            },
            tls: async () => {
              const r = await run(tls);
              row.tls.push(r);
              console.log(`${'tls'.padEnd(8)} ${line(n, r)}`);
            },
          };
          // The order turns each trial, so that drift over the run favours no mode.
          const order = ['plain', 'scraped', 'tls'];
          for (let k = 0; k < 3; k++) await modes[order[(k + t) % 3]]();
        }
    } finally {
      plain.stop();
      tls.stop();
      rmSync(certs, { recursive: true, force: true });
    }
  }

  // ---- C++ counter throughput
  if (systems.includes('cpp')) {
    if (!existsSync(counterServer) || !existsSync(counterClient)) {
      console.log('\nbuilding the release tree (node scripts/build.mjs --release-only)');
      await buildRelease('node');
    }
    console.log('\ncpp (raftstore-counter-server x3, raftstore-counter-client; election timeout 1000 ms)');
    const [base] = raftPorts();
    const c = new CounterCluster(1000, base);
    live.add(c);
    try {
      await c.leader();
      await c.client(8, 2); // warm-up
      console.log(header);
      for (const n of levels) {
        const r = await c.client(n, seconds);
        const row = { writesPerSec: r.qps, p50: Number(r.p50), p99: Number(r.p99), p999: Number(r.p999), errors: r.errors };
        results.cpp[n] = row;
        console.log(line(n, row));
      }
    } finally {
      c.stop();
      live.delete(c);
    }
  }

  // ---- etcd throughput
  if (runEtcd) {
    const c = new EtcdCluster(1000, etcdPorts(), OP_TIMEOUT_MS);
    console.log(`\netcd ${etcdVersion} (3 members, heartbeat ${c.heartbeat} ms, election timeout ${c.election} ms, ` +
      'default fsync; etcd3 client in this process)');
    try {
      await c.healthy();
      const client = c.client();
      try {
        await etcdLoad(client, 8, 2); // warm-up
        console.log(header);
        for (const n of levels) {
          const r = await etcdLoad(client, n, seconds);
          if (r.firstError) r.note = `first error: ${r.firstError}`;
          results.etcd[n] = r;
          console.log(line(n, r));
        }
      } finally {
        client.close();
      }
    } finally {
      c.stop();
    }
  }

  // ---- failover
  if (failover) {
    const loadSecs = (t) => Math.ceil(KILL_AFTER_MS / 1000) + Math.max(4, Math.ceil((5 * t) / 1000) + 2);
    if (systems.includes('raftstore')) {
      console.log(`\nraftstore failover: ${FAILOVER_CONCURRENCY} proposers in a follower's process, the leader's process ` +
        `SIGKILLed after ${KILL_AFTER_MS} ms`);
      for (const t of timeouts) {
        const c = new RaftCluster(t);
        const runs = [];
        try {
          await c.startAll();
          for (let k = 0; k < trials; k++) {
            const leader = await c.leader();
            const follower = c.ports.find((p) => p !== leader);
            const load = c.call(follower, 'load', { concurrency: FAILOVER_CONCURRENCY, seconds: loadSecs(t) });
            await sleep(KILL_AFTER_MS);
            const killAt = now();
            c.kill(leader);
            const survivors = c.ports.filter((p) => p !== leader);
            const elected = electionTime(killAt, async () => {
              const st = await Promise.all(survivors.map((p) => c.call(p, 'status').catch(() => null)));
              return st.some((x) => x?.role === 'leader');
            }, loadSecs(t) * 1000);
            const r = await load;
            const o = outageAround(r, killAt);
            o.elected = await elected;
            runs.push(o);
            console.log(`  election timeout ${t} ms, run ${k + 1}: killed ${leader}, proposers on ${follower}: ` +
              `outage ${fInt(o.ms)} ms${o.recovered ? '' : ' (no write completed after the kill before the run ended)'}` +
              `; a survivor led ${o.elected === null ? 'never' : `${fInt(o.elected)} ms`} after the kill` +
              (r.errors ? `, ${r.errors} errors (first: ${r.firstError})` : ''));
            await c.start(leader); // back as a follower for the next run
            await sleep(Math.max(500, 3 * t));
          }
        } finally {
          c.stop();
        }
        outages.raftstore[t] = runs;
      }
    }
    if (runEtcd) {
      console.log(`\netcd failover: ${FAILOVER_CONCURRENCY} writers through one etcd3 client in this process, ` +
        `the leader member SIGKILLed after ${KILL_AFTER_MS} ms`);
      for (const t of timeouts) {
        const c = new EtcdCluster(t, etcdPorts(), OP_TIMEOUT_MS);
        const runs = [];
        try {
          await c.healthy();
          for (let k = 0; k < trials; k++) {
            const leader = await c.leader();
            const client = c.client();
            try {
              await client.put('warm').value('up').exec();
              const load = etcdLoad(client, FAILOVER_CONCURRENCY, loadSecs(t));
              await sleep(KILL_AFTER_MS);
              const killAt = now();
              c.kill(leader);
              const old = c.leaderId;
              const elected = electionTime(killAt, async () => {
                const st = await c.status();
                return st.some((x, i) => i !== leader && x?.leader && x.leader !== '0' && x.leader !== old);
              }, loadSecs(t) * 1000);
              const r = await load;
              const o = outageAround(r, killAt);
              o.elected = await elected;
              runs.push(o);
              console.log(`  election timeout ${t} ms (heartbeat ${c.heartbeat} ms), run ${k + 1}: killed ${c.members[leader].name}: ` +
                `outage ${fInt(o.ms)} ms${o.recovered ? '' : ' (no write completed after the kill before the run ended)'}` +
                `; a survivor named a new leader ${o.elected === null ? 'never' : `${fInt(o.elected)} ms`} after the kill` +
                (r.errors ? `, ${r.errors} errors (first: ${r.firstError})` : ''));
            } finally {
              client.close();
            }
            c.start(leader); // back as a follower for the next run
            await c.healthy();
            await sleep(Math.max(500, 3 * t));
          }
        } finally {
          c.stop();
        }
        outages.etcd[t] = runs;
      }
    }
  }
} catch (e) {
  console.error(`\nbench:node: failed: ${e?.stack ?? e}`);
  cleanup();
  process.exit(1);
}

// ---------------------------------------------------------------------------------------
// Summary: markdown tables for docs/benchmarks.md, and the targets

const missed = [];
const unchecked = new Set();
const cell = (r) => (r ? `${fInt(r.writesPerSec)} | ${f3(r.p50)} / ${f3(r.p99)} / ${f3(r.p999)}` : '- | -');
const ratio = (a, b) => (a && b && b.writesPerSec > 0 ? a.writesPerSec / b.writesPerSec : NaN);
console.log(`\nthroughput (${seconds} s per level; latencies p50 / p99 / p999 in ms)\n`);
console.log('| concurrency | raftstore (Node) writes/s | p50 / p99 / p999 | C++ counter writes/s | p50 / p99 / p999 | ' +
  'etcd via etcd3 writes/s | p50 / p99 / p999 | raftstore / C++ | raftstore / etcd |');
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const n of levels) {
  const rs = results.raftstore[n];
  const cpp = results.cpp[n];
  const et = results.etcd[n];
  const toCpp = ratio(rs, cpp);
  const toEtcd = ratio(rs, et);
  if (Number.isFinite(toCpp)) {
    if (toCpp < 0.8) missed.push(`raftstore/C++ at ${n}: ${toCpp.toFixed(2)} < 0.8`);
  } else unchecked.add('raftstore/C++ >= 0.8');
  if (Number.isFinite(toEtcd)) {
    if (toEtcd < 2) missed.push(`raftstore/etcd at ${n}: ${toEtcd.toFixed(2)} < 2.0`);
  } else unchecked.add('raftstore/etcd >= 2.0');
  console.log(`| ${n} | ${cell(rs)} | ${cell(cpp)} | ${cell(et)} | ` +
    `${Number.isFinite(toCpp) ? toCpp.toFixed(2) : '-'} | ${Number.isFinite(toEtcd) ? toEtcd.toFixed(2) : '-'} |`);
}

if (Object.keys(costs).length) {
  console.log(`\nthe cost of metrics and TLS (raftstore; ${costSeconds} s runs in turns; medians of ${costTrials} trials; ` +
    'cost: 1 - writes/s over the same trial\'s plain writes/s, median; in brackets the range)\n');
  console.log('| proposers | plain writes/s | p99 ms | scraped writes/s | p99 ms | metrics cost | TLS writes/s | p99 ms | TLS cost |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const [n, row] of Object.entries(costs)) {
    const w = (rs) => median(rs.map((r) => r.writesPerSec));
    const p99 = (rs) => median(rs.map((r) => r.p99));
    const base = w(row.plain);
    const paired = (rs) => rs.map((r, t) => 1 - r.writesPerSec / row.plain[t].writesPerSec);
    const metricsCosts = paired(row.scraped);
    const tlsCosts = paired(row.tls);
    const metricsCost = median(metricsCosts);
    const tlsCost = median(tlsCosts);
    const pct = (x) => `${(100 * x).toFixed(1)}%`;
    const range = (xs) => `[${pct(Math.min(...xs))}, ${pct(Math.max(...xs))}]`;
    console.log(`| ${n} | ${fInt(base)} | ${f3(p99(row.plain))} | ${fInt(w(row.scraped))} | ${f3(p99(row.scraped))} | ` +
      `${pct(metricsCost)} ${range(metricsCosts)} | ${fInt(w(row.tls))} | ${f3(p99(row.tls))} | ${pct(tlsCost)} ${range(tlsCosts)} |`);
    if (Number(n) === 32) {
      if (!(metricsCost < 0.03)) missed.push(`metrics cost at 32: ${pct(metricsCost)} >= 3%`);
      if (!(tlsCost < 0.15)) missed.push(`TLS cost at 32: ${pct(tlsCost)} >= 15%`);
    }
  }
  if (!costs[32]) unchecked.add('metrics < 3% and TLS < 15% at 32');
}

if (failover && (Object.keys(outages.raftstore).length || Object.keys(outages.etcd).length)) {
  const desc = (runs) => (runs && runs.length
    ? `${fInt(median(runs.map((o) => o.ms)))} (${runs.map((o) => `${fInt(o.ms)}${o.recovered ? '' : '+'}`).join(', ')})`
    : '-');
  console.log(`\nfailover: write outage seen by a Node client, ${FAILOVER_CONCURRENCY} writers, leader SIGKILLed; ` +
    `median ms (runs)\n`);
  const elected = (runs) => {
    const xs = (runs ?? []).map((o) => o.elected).filter((x) => x !== null && x !== undefined);
    return xs.length ? fInt(median(xs)) : '-';
  };
  console.log('| election timeout | raftstore outage (proposers in a follower) | raftstore new leader after | ' +
    'etcd via etcd3 outage | etcd new leader after | etcd settings | raftstore / etcd outage |');
  console.log('|---:|---:|---:|---:|---:|---|---:|');
  for (const t of timeouts) {
    const rs = outages.raftstore[t];
    const et = outages.etcd[t];
    const s = etcdSettings(t);
    const r = rs?.length && et?.length ? median(rs.map((o) => o.ms)) / median(et.map((o) => o.ms)) : NaN;
    console.log(`| ${t} ms | ${desc(rs)} | ${elected(rs)} | ${desc(et)} | ${elected(et)} | ` +
      `heartbeat ${s.heartbeat} ms, election ${s.election} ms | ${Number.isFinite(r) ? r.toFixed(2) : '-'} |`);
  }
  console.log('("new leader after": median time from the kill until a surviving replica led (raftstore) or named a new ' +
    'leader (etcd), polled every 10 ms.\n raftstore followers campaign as soon as their connection from the leader ' +
    'closes, as it does when the leader\'s process dies (docs/braft-compatibility.md §8, "Fast failover"); a leader cut off without its sockets ' +
    'closing is\n detected by the election timeout, which this benchmark does not measure.)');
  console.log('(a "+" marks a run where no write completed after the kill before the run ended)');
}

for (const s of skipped) console.log(`\nskipped: ${s}`);
cleanup();
const notChecked = unchecked.size ? ` (not checked: ${[...unchecked].join(', ')})` : '';
if (missed.length) console.log(`\nbench:node: SOME TARGETS MISSED: ${missed.join('; ')}${notChecked}`);
else if (unchecked.size === 3) console.log(`\nbench:node: no target checked${notChecked}`);
else if (unchecked.size) console.log(`\nbench:node: every target checked was met${notChecked}`);
else console.log('\nbench:node: every target met');
