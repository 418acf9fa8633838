// Helpers shared by the benchmarks (bench/counter.mjs, bench/node.mjs): option parsing, the
// release build, and a 3-replica raftstore-counter-server cluster driven by
// raftstore-counter-client (braft's counter example on raftstore's C++ runtime).
import { spawn, execFile, execFileSync, fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { now } from './load.mjs';

export const root = fileURLToPath(new URL('..', import.meta.url));
export const counterServer = join(root, 'build/release/raftstore-counter-server');
export const counterClient = join(root, 'build/release/raftstore-counter-client');
export const run = promisify(execFile);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// `--name N` or `--name N,N,...` from argv; exits 2 (saying why, as `bench:<bench>`) when
// the value is not a number or list of numbers.
export function numericOption(bench, name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = process.argv[i + 1];
  if (!v || !/^\d+(,\d+)*$/.test(v)) {
    console.error(`bench:${bench}: --${name} needs a number or a comma-separated list, got "${v ?? ''}"`);
    process.exit(2);
  }
  return v;
}

// Builds the release tree (counter server and client among it); exits 1 if that fails.
export async function buildRelease(bench) {
  const build = await run(process.execPath, [join(root, 'scripts/build.mjs'), '--release-only'], { cwd: root })
    .catch((e) => e);
  if (build instanceof Error) {
    console.error(`bench:${bench}: build failed\n${build.stdout ?? ''}${build.stderr ?? ''}`);
    process.exit(1);
  }
}

// Three raftstore-counter-server replicas on loopback ports base..base+2, data in a fresh
// temporary directory.
export class CounterCluster {
  constructor(electionTimeoutMs, base) {
    this.dir = mkdtempSync(join(tmpdir(), 'bench-counter-'));
    this.ports = [base, base + 1, base + 2];
    this.conf = this.ports.map((p) => `127.0.0.1:${p}:0`).join(',');
    this.timeout = electionTimeoutMs;
    this.children = new Map();
    for (const p of this.ports) this.start(p);
  }
  start(port) {
    const child = spawn(counterServer, [`-port=${port}`, `-conf=${this.conf}`, `-data_path=${join(this.dir, String(port))}`,
      `-election_timeout_ms=${this.timeout}`], { stdio: 'ignore' });
    this.children.set(port, child);
  }
  async stat(port) {
    try {
      return await (await fetch(`http://127.0.0.1:${port}/raft_stat`)).text();
    } catch {
      return '';
    }
  }
  async leader() {
    for (let i = 0; i < 400; i++) {
      for (const p of this.ports) if ((await this.stat(p)).includes('state: leader')) return p;
      await sleep(25);
    }
    throw new Error('no leader within 10 s');
  }
  // raftstore-counter-client with `threads` synchronous callers for `secs` seconds.
  async client(threads, secs) {
    const { stdout } = await run(counterClient, [`-conf=${this.conf}`, `-thread_num=${threads}`, `-seconds=${secs}`],
      { maxBuffer: 1 << 20 });
    const line = /^qps=(\d+) p50_ms=([\d.]+) p90_ms=([\d.]+) p99_ms=([\d.]+) p999_ms=([\d.]+) errors=(\d+)$/m.exec(stdout);
    const outage = /^outage_ms=(\d+)$/m.exec(stdout);
    if (!line || !outage) throw new Error(`unexpected client output:\n${stdout}`);
    return { qps: Number(line[1]), p50: line[2], p99: line[4], p999: line[5], errors: Number(line[6]), outage: Number(outage[1]) };
  }
  stop() {
    for (const c of this.children.values()) c.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------
// Everything a benchmark starts is stopped on the way out, however it leaves.

export const live = new Set(); // objects with a synchronous stop()
let cleaned = false;
export function cleanup() {
  if (cleaned) return;
  cleaned = true;
  for (const c of live) {
    try {
      c.stop();
    } catch { /* best effort */ }
  }
  live.clear();
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });
}

/**
 * Hands out `width` consecutive ports at a time from [lo, hi], from a random start. Benchmarks
 * keep below 32768, the kernel's ephemeral range, where any outgoing connection may take a port
 * as its source and a restarting replica then cannot bind it.
 */
export function portAllocator(lo, hi, width = 3) {
  let next = lo + Math.floor(Math.random() * 90) * 10;
  return () => {
    if (next + width > hi) next = lo;
    const p = Array.from({ length: width }, (_, i) => next + i);
    next += width;
    return p;
  };
}

/** The replicas run the package as users get it: lib/ compiled to dist/, and the addon. */
export function buildPackage() {
  console.log('\ncompiling lib/ to dist/ (tsc -p tsconfig.build.json) and building the addon');
  execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
  execFileSync(process.execPath, [join(root, 'scripts/build.mjs'), '--addon-only'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
}

/**
 * Three replica processes of `file` on loopback, driven over IPC: a request {id, op, ...}
 * gets {id, ok, result} or {id, ok: false, message}; a replica first sends {ready: true, ...}.
 * argv: group conf port dir electionTimeoutMs ...extra.
 */
export class ReplicaCluster {
  constructor(file, dirPrefix, ports, electionTimeoutMs) {
    this.file = file;
    this.dir = mkdtempSync(join(tmpdir(), dirPrefix));
    this.ports = ports;
    this.conf = ports.map((p) => `127.0.0.1:${p}:0`).join(',');
    this.timeout = electionTimeoutMs;
    this.replicas = new Map(); // port -> { child, calls, nextId, ready }
    live.add(this);
  }
  /** Forks the replica on `port` (with `conf`, default the cluster's; '' for a newcomer);
   *  `r.ready` resolves with its ready message. Other messages without an id go to
   *  `onMessage`; `onExit(error)` runs when it exits. */
  fork(port, extra = [], onMessage = () => {}, onExit = () => {}, conf = this.conf) {
    const args = ['bench', conf, String(port), join(this.dir, String(port)), String(this.timeout), ...extra];
    // The engine's info records (elections) would interleave with the tables: warnings only.
    const env = { ...process.env, RAFTSTORE_LOG: process.env.RAFTSTORE_LOG ?? 'warn' };
    const child = fork(this.file, args, { cwd: root, env, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    const r = { child, calls: new Map(), nextId: 1 };
    r.ready = new Promise((resolve, reject) => {
      child.on('message', (m) => {
        if (m.ready) return resolve(m);
        const call = m.id === undefined ? undefined : r.calls.get(m.id);
        if (!call) return onMessage(m);
        r.calls.delete(m.id);
        if (m.ok) call.resolve(m.result);
        else call.reject(new Error(m.message));
      });
      child.on('exit', (code, signal) => {
        const e = new Error(`replica ${port} exited (${signal ?? code})`);
        reject(e);
        onExit(e);
        for (const c of r.calls.values()) c.reject(e);
        r.calls.clear();
      });
    });
    this.replicas.set(port, r);
    return r;
  }
  /** Forks a replica of a store bench (sql, kv): `until`, an index to report `caughtUp`
   *  at ({at, applied, stats, ...}); `conf` '' for a new peer. `ready` resolves with the
   *  replica's times ({loaded, open}). */
  start(port, until, conf = this.conf) {
    const forkedAt = now();
    let caughtUp;
    const caught = new Promise((resolve, reject) => {
      caughtUp = { resolve, reject };
    });
    caught.catch(() => {});
    const r = this.fork(port, until === undefined ? [] : [String(until)], (m) => m.caughtUp && caughtUp.resolve(m.caughtUp),
      (e) => caughtUp.reject(e), conf);
    return { ...r, forkedAt, caughtUp: caught, ready: r.ready.then((m) => m.times) };
  }
  async startAll() {
    await Promise.all(this.ports.map((p) => this.start(p).ready));
  }
  /** Resolves with every running replica's status once each applied `index`. */
  async converged(index, ms = 600_000) {
    const end = Date.now() + ms;
    for (;;) {
      const st = await Promise.all([...this.replicas.keys()].filter((p) => this.running(p)).map((p) => this.call(p, 'status').catch(() => null)));
      if (st.every((s) => s && s.applied >= index)) return st;
      if (Date.now() > end) throw new Error(`replicas did not reach ${index}: ${JSON.stringify(st)}`);
      await sleep(50);
    }
  }
  running(port) {
    const c = this.replicas.get(port)?.child;
    return c !== undefined && c.exitCode === null && c.signalCode === null;
  }
  call(port, op, args = {}) {
    const r = this.replicas.get(port);
    if (!this.running(port)) return Promise.reject(new Error(`replica ${port} is not running`));
    const id = r.nextId++;
    return new Promise((resolve, reject) => {
      r.calls.set(id, { resolve, reject });
      r.child.send({ id, op, ...args });
    });
  }
  async leader() {
    for (let i = 0; i < 400; i++) {
      for (const p of this.ports) {
        const s = await this.call(p, 'status').catch(() => null);
        if (s?.role === 'leader') return p;
      }
      await sleep(25);
    }
    throw new Error('no leader within 10 s');
  }
  kill(port) {
    this.replicas.get(port)?.child.kill('SIGKILL');
  }
  async exited(port) {
    const c = this.replicas.get(port)?.child;
    if (this.running(port)) await new Promise((r) => c.once('exit', r));
  }
  stop() {
    for (const r of this.replicas.values()) r.child.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }
}
