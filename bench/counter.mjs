#!/usr/bin/env node
// `npm run bench:counter`: braft's counter example, run on raftstore as braft's own
// benchmark runs it. A 3-replica counter-server cluster on loopback, the counter client at
// 1, 8, 32 and 128 threads (20 s each), then the failover a client sees: the leader is
// killed with SIGKILL under 8 threads, and the client reports the write outage (first
// failure to the first success after it), at election timeouts of 1000 ms and 100 ms.
//
// braft itself cannot be installed here, so the ratios are against braft's counter
// measured on this kind of machine (2 cores, loopback), as given in issue 3.
//
// Options: --seconds S (per level, default 20), --levels 1,8,32,128, --trials N (kills per
// election timeout, default 3), --timeouts 1000,100.
import { CounterCluster as Cluster, buildRelease, numericOption, sleep } from './lib.mjs';

const braft = { 1: 1600, 8: 8000, 32: 18500, 128: 29500 }; // writes/s
const braftOutageMs = 3000; // at a 1000 ms election timeout
const outageTargetMs = { 1000: 1000, 100: 300 };

const option = (name, fallback) => numericOption('counter', name, fallback);
const seconds = Number(option('seconds', '20'));
const levels = option('levels', '1,8,32,128').split(',').map(Number);
const trials = Number(option('trials', '3'));
const timeouts = option('timeouts', '1000,100').split(',').map(Number);

await buildRelease('counter');

const rows = [];
let allMet = true;
console.log(`bench:counter: 3 replicas on loopback, ${seconds} s per level\n`);
const throughput = new Cluster(1000);
try {
  await throughput.leader();
  await throughput.client(8, 2); // warm-up
  console.log('threads  writes/s   p50 ms   p99 ms  p999 ms  errors   braft  ratio');
  for (const n of levels) {
    const r = await throughput.client(n, seconds);
    const ref = braft[n];
    const ratio = ref ? r.qps / ref : NaN;
    if (ref && ratio < 1) allMet = false;
    rows.push({ n, ...r, ref, ratio });
    console.log(`${String(n).padStart(7)} ${String(r.qps).padStart(9)} ${r.p50.padStart(8)} ${r.p99.padStart(8)} ` +
      `${r.p999.padStart(8)} ${String(r.errors).padStart(7)} ${String(ref ?? '-').padStart(7)} ` +
      `${ref ? ratio.toFixed(2) : '-'}`.padStart(6));
  }
} finally {
  throughput.stop();
}

console.log('\nfailover under 8 threads: write outage seen by the client (first failure -> next success)');
for (const t of timeouts) {
  const cluster = new Cluster(t);
  const outages = [];
  try {
    for (let k = 0; k < trials; k++) {
      const leader = await cluster.leader();
      const secs = Math.max(3, Math.ceil((4 * t) / 1000) + 2);
      const load = cluster.client(8, secs);
      await sleep(1000);
      cluster.children.get(leader).kill('SIGKILL');
      const r = await load;
      outages.push(r.outage);
      cluster.start(leader); // back as a follower for the next trial
      await sleep(Math.max(500, 3 * t));
    }
  } finally {
    cluster.stop();
  }
  outages.sort((a, b) => a - b);
  const median = outages[Math.floor(outages.length / 2)];
  const target = outageTargetMs[t];
  if (target && median >= target) allMet = false;
  console.log(`  election timeout ${String(t).padStart(4)} ms: outage median ${median} ms (runs: ${outages.join(', ')} ms)` +
    (target ? `, target < ${target} ms` : '') + (t === 1000 ? `, braft ~${braftOutageMs} ms (ratio ${(median / braftOutageMs).toFixed(2)})` : ''));
}
console.log(`\nbench:counter: ${allMet ? 'every target met' : 'SOME TARGETS MISSED'}`);
