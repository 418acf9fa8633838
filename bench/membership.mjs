#!/usr/bin/env node
// `npm run bench:membership` (issue 10): catch-up on clusters that have done real work.
//  1. add_peer after --entries (default 100,000) entries, through the raftstore CLI, of a
//     replica started with an empty configuration: once with the whole log to send, once
//     with the log compacted by a snapshot on every replica. Reported: the CLI's time, the
//     newcomer's bytes on disk once caught up, and how it got there. Target: it completes.
//     Then the same with a large snapshot: three Store replicas (bench/store-replica.mjs)
//     holding --objects (default 500,000) objects, every log compacted by a snapshot, and a
//     fourth Store replica opened with config '' and added by the CLI: the time until it
//     holds every object, and its snapshot's size (what was copied).
//  2. A follower SIGKILLed under load (8 client threads, a snapshot every second so the
//     leader compacts past it), restarted after 1-5 s: time from its restart until it has
//     applied what the leader had committed at that moment. Target: median of 5 <= 2 s.
// Three counter-server replicas (braft's counter example on raftstore) on loopback, plus the
// newcomer; election timeout 1000 ms.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ReplicaCluster, buildPackage, buildRelease, counterClient, counterServer, live, numericOption, portAllocator, root, run,
  sleep,
} from './lib.mjs';

const option = (name, fallback) => numericOption('membership', name, fallback);
const entries = Number(option('entries', '100000'));
const trials = Number(option('trials', '5'));
const objects = Number(option('objects', '500000'));

await buildRelease('membership');
buildPackage();
const { runCli } = await import(join(root, 'dist/cli.js'));
const ports = portAllocator(15000, 15999, 4);

class Cluster {
  constructor(snapshotIntervalS) {
    this.dir = mkdtempSync(join(tmpdir(), 'bench-membership-'));
    this.ports = ports();
    this.members = this.ports.slice(0, 3);
    this.snapshotIntervalS = snapshotIntervalS;
    this.children = new Map();
    live.add(this);
    for (const p of this.members) this.start(p, this.conf());
  }
  conf() {
    return this.members.map((p) => `127.0.0.1:${p}:0`).join(',');
  }
  start(port, conf) {
    const child = spawn(counterServer, [`-port=${port}`, `-conf=${conf}`, `-data_path=${join(this.dir, String(port))}`,
      '-election_timeout_ms=1000', `-snapshot_interval=${this.snapshotIntervalS}`], { stdio: 'ignore' });
    this.children.set(port, child);
  }
  kill(port) {
    this.children.get(port)?.kill('SIGKILL');
  }
  async stat(port) {
    try {
      return await (await fetch(`http://127.0.0.1:${port}/raft_stat`)).text();
    } catch {
      return '';
    }
  }
  async field(port, name) {
    return Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(await this.stat(port))?.[1] ?? -1);
  }
  async leader() {
    for (let i = 0; i < 400; i++) {
      for (const p of this.members) if ((await this.stat(p)).includes('state: leader')) return p;
      await sleep(25);
    }
    throw new Error('no leader within 10 s');
  }
  client(threads, secs) {
    return run(counterClient, [`-conf=${this.conf()}`, `-thread_num=${threads}`, `-seconds=${secs}`], { maxBuffer: 1 << 20 });
  }
  async cli(...args) {
    let err = '';
    const code = await runCli(args, { stdout: () => {}, stderr: (s) => (err += s) });
    if (code !== 0) throw new Error(`raftstore ${args.join(' ')}: ${err.trim()}`);
  }
  stop() {
    for (const c of this.children.values()) c.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }
}

function bytesUnder(dir) {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    total += e.isDirectory() ? bytesUnder(p) : statSync(p).size;
  }
  return total;
}

const mib = (b) => `${(b / 1048576).toFixed(1)} MiB`;
let allMet = true;

console.log(`bench:membership: add_peer after ${entries.toLocaleString('en-US')} entries (3 replicas + a newcomer started with -conf="")`);
for (const compacted of [false, true]) {
  const c = new Cluster(0);
  try {
    let leader = await c.leader();
    while ((await c.field(leader, 'last_index')) < entries) {
      await c.client(32, 2);
      leader = await c.leader();
    }
    if (compacted) for (const p of c.members) await c.cli('snapshot', '--group=Counter', `--peer=127.0.0.1:${p}:0`);
    const last = await c.field(leader, 'last_index');
    const firstIndex = await c.field(leader, 'first_index');
    const newcomer = c.ports[3];
    c.start(newcomer, '');
    while (!(await c.stat(newcomer))) await sleep(20);
    const t0 = performance.now();
    let ok = true;
    let why = '';
    try {
      await c.cli('add_peer', '--group=Counter', `--conf=${c.conf()}`, `--peer=127.0.0.1:${newcomer}:0`, '--timeout_ms=60000');
    } catch (e) {
      ok = false;
      why = e.message;
    }
    const ms = performance.now() - t0;
    const applied = await c.field(newcomer, 'applied_index');
    const installed = await c.field(newcomer, 'snapshots_installed');
    const bytes = bytesUnder(join(c.dir, String(newcomer)));
    if (!ok || applied < last) allMet = false;
    console.log(`  ${compacted ? 'log compacted (first index ' + firstIndex + ')' : 'whole log'}: ` +
      (ok ? `add_peer completed in ${ms.toFixed(0)} ms` : `add_peer FAILED after ${ms.toFixed(0)} ms: ${why}`) +
      `; newcomer applied ${applied} of ${last}, ${mib(bytes)} on disk, snapshots installed: ${installed}`);
  } finally {
    c.stop();
  }
}

{
  const [a, b, c3, d] = ports();
  const c = new ReplicaCluster(join(root, 'bench/store-replica.mjs'), 'bench-membership-store-', [a, b, c3], 1000);
  try {
    await Promise.all(c.ports.map((p) => c.fork(p).ready));
    const leader = await c.leader();
    await c.call(leader, 'bulk', { objects, per: 5000 });
    for (const p of c.ports) await c.call(p, 'snapshot');
    const { applied, count } = await c.call(leader, 'status');
    let caughtUp;
    const joined = new Promise((resolve) => {
      caughtUp = resolve;
    });
    const newcomer = c.fork(d, [String(count), String(applied)], (m) => m.caughtUp && caughtUp(m.caughtUp), () => {}, '');
    await newcomer.ready;
    const t0 = performance.now();
    let cli = 0;
    let why = '';
    let err = '';
    const code = await runCli(['add_peer', '--group=bench', `--conf=${c.conf}`, `--peer=127.0.0.1:${d}:0`, '--timeout_ms=120000'],
      { stdout: () => {}, stderr: (s) => (err += s) });
    cli = performance.now() - t0;
    if (code !== 0) why = err.trim();
    const done = code === 0 ? await Promise.race([joined, sleep(120_000).then(() => null)]) : null;
    const ms = done ? done.at - (performance.timeOrigin + t0) : NaN;
    const snapDir = join(c.dir, String(d), 'snapshot');
    const snapBytes = readdirSync(snapDir).filter((n) => n.startsWith('snapshot_'))
      .reduce((sum, n) => sum + bytesUnder(join(snapDir, n)), 0);
    if (!done) allMet = false;
    console.log(`  Store, ${count.toLocaleString('en-US')} objects, logs compacted: ` +
      (code === 0 ? `add_peer completed in ${cli.toFixed(0)} ms` : `add_peer FAILED: ${why}`) +
      (done ? `; the newcomer held every object ${ms.toFixed(0)} ms after the call began (applied ${done.applied}),` +
        ` its snapshot ${mib(snapBytes)}` : '; the newcomer did not catch up'));
  } finally {
    c.stop();
  }
}

console.log(`\nfollower SIGKILLed under 8 client threads (snapshot every 1 s), restarted after 1-${trials} s`);
{
  const c = new Cluster(1);
  const times = [];
  try {
    await c.leader();
    const load = c.client(8, trials * 9 + 10);
    await sleep(2000);
    for (let k = 1; k <= trials; k++) {
      const leader = await c.leader();
      const follower = c.members.find((p) => p !== leader);
      c.kill(follower);
      await sleep(k * 1000);
      c.start(follower, c.conf());
      const t0 = performance.now();
      const target = await c.field(leader, 'committed_index');
      while ((await c.field(follower, 'applied_index')) < target) await sleep(10);
      const ms = performance.now() - t0;
      times.push(ms);
      console.log(`  down ${k} s: caught up ${ms.toFixed(0)} ms after its restart (target index ${target}, ` +
        `snapshots installed: ${await c.field(follower, 'snapshots_installed')})`);
      await sleep(2000);
    }
    await load;
  } finally {
    c.stop();
  }
  const sorted = [...times].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  if (!(median <= 2000)) allMet = false;
  console.log(`  median ${median.toFixed(0)} ms (target <= 2000 ms)`);
}
console.log(`\nbench:membership: ${allMet ? 'every target met' : 'SOME TARGETS MISSED'}`);
