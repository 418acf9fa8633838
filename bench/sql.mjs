#!/usr/bin/env node
// `npm run bench:sql` (issue 12 §3): SqlStore as an application uses it, three replica
// processes on loopback (bench/sql-replica.mjs, the compiled package in dist/).
//
//   1. throughput: C closed-loop workers inside the leader's process, each awaiting one
//      store.exec() before the next, at each level of --levels for --seconds: `insert` (a new
//      row) and `update` (one random row's counter + 1). In the same process and run, the
//      same statements on one local better-sqlite3 database (WAL, synchronous=FULL, each
//      statement its own fsynced commit): the ceiling of a single unreplicated node.
//   2. snapshot: a fresh cluster filled to --mb MiB through the log; 32 update workers for a
//      baseline window, then a window in which the leader takes snapshots back to back.
//      Reported: snapshot time and size, p99(updates overlapping a snapshot) / p99(baseline),
//      target <= 2.
//   3. a new peer: a fourth replica, started empty, added by the leader: it installs the
//      snapshot (a copy of the database) and catches up; the time from add_peer.
//   4. restart: a follower is SIGKILLed and started again: the time until SqlStore.open
//      resolved (it resumes from its database, its log after the stored index); then
//      SIGKILLed again, its database deleted (no stored index), and started again: the time
//      until it replayed its whole log.
//
// Options: --seconds S (per level, default 10; the snapshot windows, default 10), --levels
// 1,32,128, --mb N (default 1024), --no-throughput, --no-big (skips 2-4). Ports 17000-17999.
import { rmSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { ReplicaCluster, buildPackage, cleanup, numericOption, portAllocator, root } from './lib.mjs';
import { now } from './load.mjs';

const option = (name, fallback) => numericOption('sql', name, fallback);
const seconds = Number(option('seconds', '10'));
const levels = option('levels', '1,32,128').split(',').map(Number);
const mb = Number(option('mb', '1024'));
const doThroughput = !process.argv.includes('--no-throughput');
const doBig = !process.argv.includes('--no-big');
if (seconds < 1 || levels.some((n) => n < 1) || mb < 1) {
  console.error('bench:sql: --seconds, --levels and --mb must be positive');
  process.exit(2);
}
const ELECTION_TIMEOUT_MS = 1000;
const SNAP_CONCURRENCY = 32;
const ports = portAllocator(17000, 17999, 4);
const replicaFile = join(root, 'bench/sql-replica.mjs');

class SqlCluster extends ReplicaCluster {
  constructor() {
    const p = ports();
    super(replicaFile, 'bench-sql-', p.slice(0, 3), ELECTION_TIMEOUT_MS);
    this.spare = p[3];
  }
}

const f3 = (x) => (Number.isFinite(x) ? x.toFixed(3) : '-');
const fInt = (x) => (Number.isFinite(x) ? String(Math.round(x)) : '-');
const mib = (b) => (Number.isFinite(b) ? (b / 2 ** 20).toFixed(0) : '-');
const within = (p, ms) => {
  let timer;
  return Promise.race([p, new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not within ${ms / 1000} s`)), ms);
  })]).finally(() => clearTimeout(timer));
};

console.log(`bench:sql: 3 replica processes on loopback (election timeout ${ELECTION_TIMEOUT_MS} ms); ${seconds} s per level, ` +
  `levels ${levels.join(', ')}; ${mb} MiB database; ${cpus().length} cores, load average ` +
  `${loadavg().map((x) => x.toFixed(2)).join(' ')}, node ${process.version}`);
console.log('an op is one awaited store.exec() by a closed-loop worker in the leader\'s process (committed by a quorum,\n' +
  'fsynced in the log, applied in SQLite with synchronous=NORMAL); local-*: the same statement on a local\n' +
  'better-sqlite3 database (WAL, synchronous=FULL) in the same process, each its own commit');

const throughput = {};
let big = null;
const missed = [];
try {
  buildPackage();
  if (doThroughput) {
    console.log('\n1. throughput');
    const c = new SqlCluster();
    try {
      await c.startAll();
      let leader = await c.leader();
      await c.call(leader, 'load', { kind: 'insert', concurrency: 8, seconds: 1 }); // warm-up, rows to update
      await c.call(leader, 'load', { kind: 'local-insert', concurrency: 1, seconds: 1 });
      for (const kind of ['insert', 'update', 'local-insert', 'local-update']) {
        throughput[kind] = {};
        for (const n of levels) {
          leader = await c.leader();
          const r = await c.call(leader, 'load', { kind, concurrency: n, seconds });
          throughput[kind][n] = r;
          console.log(`  ${kind.padEnd(13)} ${String(n).padStart(4)}: ${fInt(r.writesPerSec).padStart(6)} writes/s, ` +
            `p50 ${f3(r.p50)} ms, p99 ${f3(r.p99)} ms${r.errors ? `, ${r.errors} errors (first: ${r.firstError})` : ''}`);
          if (r.errors) missed.push(`${r.errors} failed ${kind} at ${n}`);
        }
      }
    } finally {
      c.stop();
    }
  }

  if (doBig) {
    console.log(`\n2. snapshot of a ${mb} MiB database while ${SNAP_CONCURRENCY} update workers run`);
    const c = new SqlCluster();
    try {
      await c.startAll();
      const leader = await c.leader();
      await c.call(leader, 'load', { kind: 'insert', concurrency: 8, seconds: 1 });
      const filled = await c.call(leader, 'fill', { mb, rows: 1000 });
      console.log(`  filled: ${filled.entries} entries of 1000 rows of 1 KiB in ${fInt(filled.ms)} ms, ${mib(filled.bytes)} MiB`);
      await c.converged(filled.applied);
      const base = await c.call(leader, 'snapload', { concurrency: SNAP_CONCURRENCY, seconds, snapshot: false });
      console.log(`  baseline ${seconds} s: ${fInt(base.txPerSec)} writes/s, p50 ${f3(base.p50)} ms, p99 ${f3(base.p99)} ms`);
      const during = await c.call(leader, 'snapload', { concurrency: SNAP_CONCURRENCY, seconds, snapshot: true, delayMs: 500 });
      for (const [i, s] of during.snapshots.entries())
        console.log(`  snapshot ${i + 1}: index ${s.index}, ${mib(s.bytes)} MiB, copied in ${fInt(s.durationMs)} ms, ` +
          `store.snapshot() resolved after ${fInt(s.ms)} ms`);
      console.log(`  with snapshots: ${fInt(during.txPerSec)} writes/s; the ${during.duringOps} updates that overlapped a snapshot: ` +
        `p50 ${f3(during.duringP50)} ms, p99 ${f3(during.duringP99)} ms`);

      console.log('\n3. a new peer: started empty, added by the leader, installs the snapshot');
      const target = (await c.call(leader, 'status')).applied;
      const peer = c.start(c.spare, target, '');
      await peer.ready;
      const addAt = now();
      await c.call(leader, 'addPeer', { peer: `127.0.0.1:${c.spare}:0` });
      const joined = await within(peer.caughtUp, 600_000);
      const newPeer = { ms: joined.at - addAt, stats: joined.stats };
      console.log(`  caught up (index ${joined.applied}) ${fInt(newPeer.ms)} ms after add_peer; installed ` +
        `${joined.stats.snapshotsInstalled} snapshot(s)` + (joined.stats.lastInstall
        ? `: ${mib(joined.stats.lastInstall.bytes)} MiB, installed (copied, fsynced, swapped) in ${fInt(joined.stats.lastInstall.durationMs)} ms` : ''));

      console.log('\n4. restart of a follower, with its database and without it');
      const follower = c.ports.find((p) => p !== leader);
      const fdir = join(c.dir, String(follower));
      const top = (await c.call(leader, 'status')).applied;
      await c.converged(top);
      c.kill(follower);
      await c.exited(follower);
      const r1 = c.start(follower, top);
      const t1 = await r1.ready;
      const c1 = await within(r1.caughtUp, 600_000);
      const resume = { open: t1.open - r1.forkedAt, caught: c1.at - r1.forkedAt };
      console.log(`  with its database: SqlStore.open resolved ${fInt(resume.open)} ms after the fork, index ${top} applied ` +
        `${fInt(resume.caught)} ms after it`);
      c.kill(follower);
      await c.exited(follower);
      rmSync(join(fdir, 'sqlite'), { recursive: true, force: true });
      const r2 = c.start(follower, top);
      const t2 = await r2.ready;
      const c2 = await within(r2.caughtUp, 1_800_000);
      const replay = { open: t2.open - r2.forkedAt, caught: c2.at - r2.forkedAt };
      console.log(`  without it (its whole log replayed): SqlStore.open resolved ${fInt(replay.open)} ms after the fork, ` +
        `index ${top} applied ${fInt(replay.caught)} ms after it`);
      big = { filled, base, during, newPeer, resume, replay, top };
    } finally {
      c.stop();
    }
  }
} catch (e) {
  console.error(`\nbench:sql: failed: ${e?.stack ?? e}`);
  cleanup();
  process.exit(1);
}

if (doThroughput) {
  console.log(`\nthroughput: ${seconds} s per level; SqlStore: 3 replica processes, workers in the leader's process; ` +
    'local: one better-sqlite3 database, synchronous=FULL\n');
  console.log('| op | concurrency | SqlStore writes/s | p50 ms | p99 ms | local writes/s | p50 ms | p99 ms | SqlStore / local |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const op of ['insert', 'update'])
    for (const n of levels) {
      const r = throughput[op][n];
      const l = throughput[`local-${op}`][n];
      console.log(`| ${op} | ${n} | ${fInt(r.writesPerSec)} | ${f3(r.p50)} | ${f3(r.p99)} | ${fInt(l.writesPerSec)} | ${f3(l.p50)} | ` +
        `${f3(l.p99)} | ${(r.writesPerSec / l.writesPerSec).toFixed(2)} |`);
    }
}
if (big) {
  const { base, during, newPeer, resume, replay, filled } = big;
  const ratio = during.duringP99 / base.p99;
  const s = during.snapshots;
  console.log(`\n${mib(filled.bytes)} MiB database (${filled.entries} fill entries), ${SNAP_CONCURRENCY} update workers\n`);
  console.log('| snapshots | copy ms (each) | size MiB | p99 baseline ms | p99 during a snapshot ms | ratio (target <= 2) | writes/s baseline / with snapshots |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|');
  console.log(`| ${s.length} | ${s.map((x) => fInt(x.durationMs)).join(', ')} | ${s[0] ? mib(s[0].bytes) : '-'} | ${f3(base.p99)} | ` +
    `${f3(during.duringP99)} | ${Number.isFinite(ratio) ? ratio.toFixed(2) : '-'} | ${fInt(base.txPerSec)} / ${fInt(during.txPerSec)} |`);
  console.log('\n| | ms |');
  console.log('|---|---:|');
  console.log(`| new peer: add_peer to caught up (snapshot sent, installed) | ${fInt(newPeer.ms)} |`);
  console.log(`| restart with its database: fork to SqlStore.open resolved (caught up) | ${fInt(resume.open)} |`);
  console.log(`| restart without it (whole log replayed): fork to caught up | ${fInt(replay.caught)} |`);
  if (!s.length) missed.push('no snapshot was taken during the window');
  else if (!(ratio <= 2)) missed.push(`p99 during a snapshot / baseline p99 = ${Number.isFinite(ratio) ? ratio.toFixed(2) : '-'} > 2`);
  if (base.errors || during.errors) missed.push(`${base.errors + during.errors} failed updates in the snapshot phase`);
  if (newPeer.stats.snapshotsInstalled < 1) missed.push('the new peer did not install a snapshot');
}
cleanup();
if (missed.length) console.log(`\nbench:sql: SOME TARGETS MISSED: ${missed.join('; ')}`);
else if (!big) console.log('\nbench:sql: no target checked (the snapshot phase did not run)');
else console.log('\nbench:sql: every target met');
