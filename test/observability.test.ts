// What an operator sees: /metrics, node.metrics() and prom-client, structured logs, and
// the access list on administrative calls.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Registry, Counter as PromCounter } from 'prom-client';
import {
  RaftError, RaftNode, registerMetrics, stderrLogger, type Entry, type LogFields, type Logger, type MetricFamily,
  type StateMachine,
} from '../lib/index.js';
import { BaiduStdClient, ProtoWriter, RpcError } from '../lib/baidu-std.js';
import { resolveLogLevel } from '../lib/observability.js';
import { portBlock, until } from './helpers.js';

class Counter implements StateMachine<number> {
  value = 0;
  apply(entries: readonly Entry[]): number[] {
    return entries.map((e) => (this.value += e.data.readInt32LE(0)));
  }
  snapshot(w: import('../lib/index.js').SnapshotWriter): Promise<void> {
    return w.writeFile('value', String(this.value));
  }
  async restore(r: import('../lib/index.js').SnapshotReader): Promise<void> {
    this.value = Number((await r.readFile('value')).toString());
  }
}
const inc = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32LE(n);
  return b;
};

interface Record_ {
  level: string;
  fields: LogFields;
  message: string;
}
class MemoryLogger implements Logger {
  records: Record_[] = [];
  debug(fields: LogFields, message: string): void { this.records.push({ level: 'debug', fields, message }); }
  info(fields: LogFields, message: string): void { this.records.push({ level: 'info', fields, message }); }
  warn(fields: LogFields, message: string): void { this.records.push({ level: 'warn', fields, message }); }
  error(fields: LogFields, message: string): void { this.records.push({ level: 'error', fields, message }); }
}

/** Prometheus's text format, strictly: every line a comment or `name{labels} value`. */
function parseExposition(text: string): { families: Map<string, { type: string; help: string }>; samples: { name: string; labels: Record<string, string>; value: number }[] } {
  const families = new Map<string, { type: string; help: string }>();
  const samples: { name: string; labels: Record<string, string>; value: number }[] = [];
  const helps = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (m) { helps.set(m[1]!, m[2]!); continue; }
    m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$/.exec(line);
    if (m) {
      assert.ok(!families.has(m[1]!), `family ${m[1]} declared twice`);
      families.set(m[1]!, { type: m[2]!, help: helps.get(m[1]!) ?? '' });
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    const value = m[3] === '+Inf' ? Infinity : Number(m[3]);
    assert.ok(!Number.isNaN(value), `bad value in ${line}`);
    samples.push({ name: m[1]!, labels, value });
  }
  return { families, samples };
}

async function get(port: number, path: string): Promise<Response> {
  return fetch(`http://127.0.0.1:${port}${path}`);
}

const base = await portBlock(40);

describe('observability: metrics, logs, access list', function () {
  this.timeout(60_000);
  let dir = '';
  let nodes: RaftNode<number>[] = [];
  let loggers: MemoryLogger[] = [];

  async function cluster(n: number, portBase: number, extra: { logLevel?: 'warn'; adminAllow?: string[] } = {}): Promise<RaftNode<number>[]> {
    dir = mkdtempSync(join(tmpdir(), 'raftstore-obs-'));
    const config = Array.from({ length: n }, (_, i) => `127.0.0.1:${portBase + i}:0`).join(',');
    loggers = Array.from({ length: n }, () => new MemoryLogger());
    nodes = Array.from({ length: n }, (_, i) => new RaftNode<number>({
      group: 'obs', config, port: portBase + i, dir: join(dir, String(i)), stateMachine: new Counter(),
      electionTimeoutMs: 300, logger: loggers[i]!, logLevel: 'debug', snapshotLogThreshold: 0, ...extra,
    }));
    await Promise.all(nodes.map((x) => x.start()));
    await until('a leader', () => nodes.some((x) => x.isLeader));
    return nodes;
  }

  afterEach(async () => {
    await Promise.all(nodes.map((x) => x.close()));
    nodes = [];
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = '';
  });

  it('serves Prometheus metrics on the port that agree with node.metrics()', async () => {
    await cluster(3, base);
    const leader = nodes.find((x) => x.isLeader)!;
    const follower = nodes.find((x) => !x.isLeader)!;
    for (let i = 0; i < 40; i++) await follower.propose(inc(1)); // forwarded
    await Promise.all(Array.from({ length: 60 }, () => leader.propose(inc(1))));
    await follower.readBarrier();
    await leader.snapshot();
    await until('every replica applied 100', () => nodes.every((x) => (x.status().appliedIndex ?? 0) >= leader.status().commitIndex));

    const res = await get(Number(leader.id.split(':')[1]), '/metrics');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const { families, samples } = parseExposition(await res.text());
    const one = (name: string, labels: Record<string, string>): number => {
      const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
      assert.equal(found.length, 1, `${name} ${JSON.stringify(labels)}: ${found.length} samples`);
      return found[0]!.value;
    };
    const me = { group: 'obs', peer: leader.id };
    assert.equal(one('raftstore_role', { ...me, role: 'leader' }), 1);
    assert.equal(one('raftstore_role', { ...me, role: 'follower' }), 0);
    assert.equal(one('raftstore_term', me), leader.term);
    assert.equal(one('raftstore_commit_index', me), leader.status().commitIndex);
    assert.equal(one('raftstore_elections_won_total', me), 1);
    assert.ok(one('raftstore_proposals_total', { ...me, result: 'ok' }) >= 100, 'own 60 and 40 forwarded');
    assert.ok(one('raftstore_proposal_commit_seconds_count', me) >= 100);
    assert.equal(one('raftstore_proposal_commit_seconds_bucket', { ...me, le: '+Inf' }), one('raftstore_proposal_commit_seconds_count', me));
    assert.ok(one('raftstore_log_fsync_seconds_count', me) > 0);
    assert.ok(one('raftstore_log_append_batch_entries_sum', me) >= 100);
    assert.equal(one('raftstore_snapshots_taken_total', me), 1);
    assert.ok(one('raftstore_snapshot_size_bytes', me) > 0);
    assert.ok(one('raftstore_apply_lag_seconds_count', me) > 0, 'JavaScript reported applies');
    for (const p of nodes.filter((x) => x !== leader)) {
      assert.equal(one('raftstore_peer_replication_lag_entries', { ...me, target: p.id }), 0);
      assert.ok(one('raftstore_peer_last_contact_seconds', { ...me, target: p.id }) < 5);
    }
    assert.equal(families.get('raftstore_proposal_commit_seconds')?.type, 'histogram');
    assert.equal(families.get('raftstore_access_denied_total')?.type, 'counter');
    // Buckets are cumulative.
    const buckets = samples.filter((s) => s.name === 'raftstore_log_fsync_seconds_bucket' && s.labels.peer === leader.id);
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]!.value >= buckets[i - 1]!.value);

    // The follower counted its forwards and its read barrier.
    const fm = new Map(follower.metrics().map((f) => [f.name, f]));
    const value = (f: MetricFamily | undefined, name: string, labels: Record<string, string> = {}): number =>
      f!.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))!.value;
    assert.equal(value(fm.get('raftstore_forwards_total'), 'raftstore_forwards_total', { result: 'ok' }), 40);
    assert.equal(value(fm.get('raftstore_read_index_total'), 'raftstore_read_index_total', { result: 'ok' }), 1);
    assert.equal(value(fm.get('raftstore_read_index_seconds'), 'raftstore_read_index_seconds_count'), 1);
    // node.metrics() names the same families as /metrics, described the same way.
    for (const f of leader.metrics()) assert.deepEqual(families.get(f.name), { type: f.type, help: f.help }, f.name);
    // docs/observability.md lists every family.
    const doc = readFileSync(fileURLToPath(new URL('../docs/observability.md', import.meta.url)), 'utf8');
    for (const name of families.keys()) assert.ok(doc.includes(`| \`${name}\` |`), `docs/observability.md lists ${name}`);
    const first = nodes[0]!;
    assert.ok(first.metrics().length > 30);
    await first.close();
    assert.deepEqual(first.metrics(), [], 'a closed node reports nothing');
  });

  it('registers its metrics in a prom-client registry beside the app\'s own', async () => {
    await cluster(3, base + 10);
    const registry = new Registry();
    const mine = new PromCounter({ name: 'app_requests_total', help: 'requests', registers: [registry] });
    mine.inc(3);
    registerMetrics(registry, ...nodes);
    await nodes.find((x) => x.isLeader)!.propose(inc(5));
    const text = await registry.metrics();
    const { samples } = parseExposition(text);
    assert.ok(samples.some((s) => s.name === 'app_requests_total' && s.value === 3));
    for (const n of nodes) assert.ok(samples.some((s) => s.name === 'raftstore_term' && s.labels.peer === n.id), n.id);
    // The port's own counters appear once per port, not once per group or source.
    const conns = samples.filter((s) => s.name === 'raftstore_port_connections_total');
    assert.equal(conns.length, 3);
    const json = await registry.getMetricsAsJSON();
    assert.ok(json.some((m) => m.name === 'raftstore_proposal_commit_seconds' && String(m.type) === 'histogram'));
    assert.throws(() => registerMetrics(registry, nodes[0]!), /already been registered/);
  });

  it('logs elections, leader changes, membership and snapshots as structured records', async () => {
    await cluster(3, base + 20);
    const leader = nodes.find((x) => x.isLeader)!;
    await leader.propose(inc(1));
    await leader.snapshot();
    const li = nodes.indexOf(leader);
    const won = loggers[li]!.records.find((r) => r.message === 'became leader');
    assert.ok(won, 'the leader logged its election');
    assert.deepEqual({ group: won!.fields.group, peer: won.fields.peer, level: won.level }, { group: 'obs', peer: leader.id, level: 'info' });
    assert.equal(won.fields.term, String(leader.term));
    assert.ok(loggers[li]!.records.some((r) => r.message === 'snapshot taken' && Number(r.fields.bytes) > 0 && r.fields.index !== undefined));
    assert.ok(loggers[li]!.records.some((r) => r.level === 'debug' && r.message === 'configuration'), 'debug records at logLevel debug');
    // The leader goes: another replica logs winning, the rest a leader change.
    await leader.close();
    await until('a new leader', () => nodes.some((x) => x !== leader && x.isLeader));
    const next = nodes.find((x) => x !== leader && x.isLeader)!;
    await until('its record', () => loggers[nodes.indexOf(next)]!.records.some((r) => r.message === 'became leader' && r.fields.term === String(next.term)));
    const other = nodes.find((x) => x !== leader && x !== next)!;
    await until('the leader change', () => loggers[nodes.indexOf(other)]!.records.some((r) => r.message === 'leader changed' && r.fields.leader === next.id));
    // The same records, info and above, for the status page.
    assert.ok(next.events().some((e) => e.message === 'became leader' && e.level === 'info' && e.fields.term === String(next.term)));
    assert.ok(loggers[li]!.records.some((r) => r.message === 'replica stopped' && r.level === 'info'), 'an orderly close is no error');
  });

  it('takes a pino logger as it is', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write(chunk, _enc, done) { lines.push(...String(chunk).split('\n').filter(Boolean)); done(); } });
    dir = mkdtempSync(join(tmpdir(), 'raftstore-obs-'));
    const node = new RaftNode<number>({
      group: 'pino', config: `127.0.0.1:${base + 26}:0`, port: base + 26, dir, stateMachine: new Counter(),
      logger: pino({ level: 'debug' }, sink).child({ app: 'test' }), logLevel: 'info',
    });
    nodes = [node];
    await node.start();
    await until('a pino record', () => lines.some((l) => l.includes('became leader')));
    const rec = JSON.parse(lines.find((l) => l.includes('became leader'))!) as Record<string, unknown>;
    assert.equal(rec.msg, 'became leader');
    assert.equal(rec.level, 30); // pino's info
    assert.equal(rec.group, 'pino');
    assert.equal(rec.peer, node.id);
    assert.equal(rec.term, String(node.term));
    assert.equal(rec.app, 'test', 'a child logger keeps its bindings');
  });

  it('filters by level, reads RAFTSTORE_LOG, and writes one line per record by default', async () => {
    await cluster(1, base + 25, { logLevel: 'warn' });
    assert.deepEqual(loggers[0]!.records, [], 'nothing below warn');
    assert.equal(resolveLogLevel(undefined), process.env.RAFTSTORE_LOG || 'info');
    const saved = process.env.RAFTSTORE_LOG;
    try {
      process.env.RAFTSTORE_LOG = 'debug';
      assert.equal(resolveLogLevel(undefined), 'debug');
      assert.equal(resolveLogLevel('error'), 'error', 'the option wins');
      process.env.RAFTSTORE_LOG = 'loud';
      assert.throws(() => resolveLogLevel(undefined), (e: RaftError) => e.code === 'ERR_RAFT_BAD_CONFIG' && /RAFTSTORE_LOG/.test(e.message));
    } finally {
      if (saved === undefined) delete process.env.RAFTSTORE_LOG;
      else process.env.RAFTSTORE_LOG = saved;
    }
    assert.throws(() => new RaftNode({ group: 'g', config: '127.0.0.1:1:0', port: 1, dir: '/tmp/x', stateMachine: new Counter(), logLevel: 'verbose' as 'info' }),
      (e: RaftError) => e.code === 'ERR_RAFT_BAD_CONFIG');
    assert.throws(() => new RaftNode({ group: 'g', config: '127.0.0.1:1:0', port: 1, dir: '/tmp/x', stateMachine: new Counter(), logger: {} as Logger }),
      (e: RaftError) => e.code === 'ERR_RAFT_BAD_CONFIG' && /pino/.test(e.message));
    const lines: string[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((chunk: string) => (lines.push(chunk), true)) as typeof process.stderr.write;
    try {
      stderrLogger.info({ group: 'g', peer: '127.0.0.1:1:0:0', term: '3', why: 'a b' }, 'became leader');
    } finally {
      process.stderr.write = write;
    }
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /^\d{4}-\d\d-\d\dT\S+Z INFO  raftstore g 127\.0\.0\.1:1:0:0: became leader term=3 why="a b"\n$/);
  });

  it('refuses administrative calls from outside the access list with EPERM, and counts them', async () => {
    // Only the configuration's peers (127.0.0.1): 127.0.0.9 is loopback, but not allowed.
    await cluster(3, base + 30, { adminAllow: ['peers'] });
    const leader = nodes.find((x) => x.isLeader)!;
    const port = Number(leader.id.split(':')[1]);
    const snapshot = new ProtoWriter().string(1, 'obs').string(2, leader.id).finish();
    const outsider = new BaiduStdClient({ localAddress: '127.0.0.9' });
    const peer = new BaiduStdClient({ localAddress: '127.0.0.1' });
    try {
      await assert.rejects(outsider.call({ host: '127.0.0.1', port }, 'braft.CliService', 'snapshot', snapshot, { maxRetry: 0 }),
        (e: RpcError) => e.rpcCode === 1 && /not allowed from 127\.0\.0\.9 \(allowed: peers\)/.test(e.message));
      // get_leader only reads: anyone may ask.
      await outsider.call({ host: '127.0.0.1', port }, 'braft.CliService', 'get_leader', new ProtoWriter().string(1, 'obs').finish(), { maxRetry: 0 });
      await peer.call({ host: '127.0.0.1', port }, 'braft.CliService', 'snapshot', snapshot, { maxRetry: 0 });
      // Forwarding between the peers still works.
      await nodes.find((x) => !x.isLeader)!.propose(inc(1));
    } finally {
      outsider.close();
      peer.close();
    }
    const denied = leader.metrics().find((f) => f.name === 'raftstore_access_denied_total')!;
    assert.equal(denied.samples.find((s) => s.labels.service === 'CliService')!.value, 1);
    assert.equal(denied.samples.find((s) => s.labels.service === 'ForwardService')!.value, 0);
  });

  it('rejects a malformed access list, and one that differs from another group on the port', async () => {
    dir = mkdtempSync(join(tmpdir(), 'raftstore-obs-'));
    const opts = { config: `127.0.0.1:${base + 35}:0`, port: base + 35, stateMachine: new Counter() };
    const bad = new RaftNode({ ...opts, group: 'a', dir: join(dir, 'a'), adminAllow: ['10.0.0.0/33'] });
    await assert.rejects(bad.start(), (e: RaftError) => e.code === 'ERR_RAFT_BAD_CONFIG' && /prefix/.test(e.message));
    const a = new RaftNode({ ...opts, group: 'a', dir: join(dir, 'a'), adminAllow: ['loopback'] });
    await a.start();
    nodes = [a];
    const b = new RaftNode({ ...opts, group: 'b', dir: join(dir, 'b'), adminAllow: ['any'] });
    await assert.rejects(b.start(), (e: RaftError) => e.code === 'ERR_RAFT_BAD_CONFIG' && /differs/.test(e.message));
  });
});
