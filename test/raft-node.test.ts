// RaftNode in one process: a JavaScript state machine on the native engine.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RaftError, RaftNode, type ConfChange, type Configuration, type Entry, type StateMachine } from '../lib/index.js';
import { portBlock, sleep, until } from './helpers.js';

/** A counter: each entry is a signed 32-bit increment; the result is the new value. */
class Counter implements StateMachine<number> {
  value = 0;
  applied: number[] = [];
  times: number[] = []; // Entry.time, as applied
  leaderTerms: number[] = [];
  confs: [number, number][] = []; // (index, voters) as onConfigurationCommitted saw them
  apply(entries: readonly Entry[]): number[] {
    return entries.map((e) => {
      this.applied.push(e.index);
      this.times.push(e.time);
      this.value += e.data.readInt32LE(0);
      return this.value;
    });
  }
  onLeaderStart(term: number): void {
    this.leaderTerms.push(term);
  }
  onConfigurationCommitted(conf: Configuration, index: number): void {
    this.confs.push([index, conf.peers.length]);
  }
}

/** A counter that snapshots its value (written asynchronously, after a synchronous capture). */
class SnapCounter extends Counter {
  restored: number[] = [];
  snapshot(w: import('../lib/index.js').SnapshotWriter): Promise<void> {
    const value = this.value; // captured now; applies may continue while it is written
    return w.writeFile('value', String(value));
  }
  async restore(r: import('../lib/index.js').SnapshotReader): Promise<void> {
    this.value = Number((await r.readFile('value')).toString());
    this.restored.push(r.index);
  }
}

const fixture = fileURLToPath(new URL('./fixtures/one-shot.ts', import.meta.url));

const inc = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32LE(n);
  return b;
};

const base = await portBlock(100);

describe('RaftNode (one process)', function () {
  this.timeout(30_000);
  let dir = '';
  let nodes: RaftNode<number>[] = [];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'raftnode-'));
  });
  afterEach(async () => {
    for (const n of nodes) await n.close();
    nodes = [];
    rmSync(dir, { recursive: true, force: true });
  });

  const make = (ports: number[], i: number, sm = new Counter(), extra = {}) =>
    new RaftNode<number>({
      group: 'g', config: ports.map((p) => `127.0.0.1:${p}:0`).join(','), port: ports[i] ?? 0,
      dir: join(dir, String(i)), stateMachine: sm, electionTimeoutMs: 300, ...extra,
    });
  const leaderOf = (ns: RaftNode<number>[]) => ns.find((n) => n.isLeader);
  // The first three of `ports` as a group with a leader; a counter for every port.
  const startThreeOf = async (ports: number[]) => {
    const three = ports.slice(0, 3);
    const sms = ports.map(() => new Counter());
    nodes = three.map((_, i) => make(three, i, sms[i]));
    await Promise.all(nodes.map((n) => n.start()));
    await until('leader', () => leaderOf(nodes) !== undefined);
    return { sms, leader: leaderOf(nodes)! };
  };

  it('a single replica elects itself and returns apply results', async () => {
    const sm = new Counter();
    const n = make([base], 0, sm);
    nodes.push(n);
    await n.start();
    // Proposed before any leader exists: it waits for the election instead of failing.
    assert.equal(await n.propose(inc(5)), 5);
    assert.ok(n.isLeader);
    assert.deepEqual(sm.leaderTerms, [n.term]);
    const results = await Promise.all([1, 2, 3].map((k) => n.propose(inc(k))));
    assert.deepEqual(results.sort((a, b) => a - b), [6, 8, 11]);
    assert.equal(sm.value, 11);
    const s = n.status();
    assert.equal(s.role, 'leader');
    assert.equal(s.appliedIndex, n.appliedIndex);
    assert.ok(s.commitIndex >= 5);
  });

  it('three replicas apply the same entries; a follower\'s proposal goes through the leader', async () => {
    const ports = [base + 10, base + 11, base + 12];
    const sms = [new Counter(), new Counter(), new Counter()];
    nodes = ports.map((_, i) => make(ports, i, sms[i]));
    const before = Date.now();
    await Promise.all(nodes.map((n) => n.start()));
    // Each replica proposes at once, with no leader yet; all land once one is elected.
    assert.deepEqual((await Promise.all(nodes.map((n) => n.propose(inc(0))))), [0, 0, 0]);
    await until('leader', () => leaderOf(nodes) !== undefined);
    const leader = leaderOf(nodes)!;
    for (let k = 0; k < 20; k++) await leader.propose(inc(1));
    await until('all applied', () => sms.every((s) => s.value === 20));
    assert.deepEqual(sms[0]!.applied, sms[1]!.applied);
    assert.deepEqual(sms[1]!.applied, sms[2]!.applied);
    // The leader's clock (here the same machine's) when it appended each entry, on every replica.
    const after = Date.now();
    assert.deepEqual(sms[0]!.times, sms[1]!.times);
    assert.deepEqual(sms[1]!.times, sms[2]!.times);
    assert.ok(sms[0]!.times.every((t) => t >= before && t <= after), `${sms[0]!.times} within [${before}, ${after}]`);
    const i = nodes.findIndex((n) => !n.isLeader);
    const follower = nodes[i]!;
    await until('follower knows the leader', () => follower.leaderId === leader.id);
    // Resolved with the result computed by the follower's own state machine, after it
    // applied the entry there: read-your-writes on every replica.
    assert.equal(await follower.propose(inc(5)), 25);
    assert.equal(sms[i]!.value, 25);
    const many = await Promise.all([1, 1, 1, 1].map(() => follower.propose(inc(1))));
    assert.deepEqual(many.sort((a, b) => a - b), [26, 27, 28, 29]);
  });

  it('keeps its leader while the event loop is blocked (native heartbeats)', async () => {
    const ports = [base + 20, base + 21, base + 22];
    nodes = ports.map((_, i) => make(ports, i, new Counter(), { electionTimeoutMs: 200 }));
    await Promise.all(nodes.map((n) => n.start()));
    await until('leader', () => leaderOf(nodes) !== undefined);
    const leader = leaderOf(nodes)!;
    await leader.propose(inc(1));
    const term = leader.status().term;
    const end = Date.now() + 3000; // 15 election timeouts with no JavaScript running
    while (Date.now() < end) { /* busy */ }
    for (const n of nodes) assert.equal(n.status().term, term, `${n.id} saw an election`);
    assert.equal(leader.status().role, 'leader');
    assert.equal(await leader.propose(inc(1)), 2);
  });

  it('bounds proposals in flight, and settles every one of them at close', async () => {
    const sm = new Counter();
    const n = make([base + 80], 0, sm, { maxPendingProposals: 10 });
    nodes.push(n);
    await n.start();
    await n.propose(inc(0));
    const burst = Array.from({ length: 30 }, () => n.propose(inc(1)));
    const outcomes = await Promise.allSettled(burst);
    const busy = outcomes.filter((o) => o.status === 'rejected' && o.reason instanceof RaftError && o.reason.code === 'ERR_RAFT_BUSY');
    assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 10);
    assert.equal(busy.length, 20);
    assert.equal(sm.value, 10);
    // Closed with proposals in flight: each settles (applied, or ERR_RAFT_SHUTDOWN), none hangs.
    const inFlight = Array.from({ length: 10 }, () => n.propose(inc(1)));
    await n.close();
    for (const o of await Promise.allSettled(inFlight))
      assert.ok(o.status === 'fulfilled' || (o.reason instanceof RaftError && o.reason.code === 'ERR_RAFT_SHUTDOWN'), String(o.status === 'rejected' && o.reason));
  });

  it('a throwing apply stops the replica with ERR_RAFT_STATE_MACHINE', async () => {
    const errors: RaftError[] = [];
    const sm: StateMachine<number> = {
      apply: () => { throw new Error('boom'); },
      onError: (e) => errors.push(e),
    };
    const n = make([base + 30], 0, new Counter());
    await n.close();
    const m = new RaftNode<number>({ group: 'g', config: `127.0.0.1:${base + 30}:0`, port: base + 30,
      dir: join(dir, 'x'), stateMachine: sm, electionTimeoutMs: 100 });
    nodes.push(m);
    await m.start();
    await until('leader', () => m.isLeader);
    await assert.rejects(m.propose(inc(1)), (e: unknown) => e instanceof RaftError && e.code === 'ERR_RAFT_STATE_MACHINE');
    assert.equal(errors[0]?.code, 'ERR_RAFT_STATE_MACHINE');
    await assert.rejects(m.propose(inc(1)), (e: unknown) => e instanceof RaftError && e.code === 'ERR_RAFT_SHUTDOWN');
  });

  it('close releases the directory; a restart replays the log', async () => {
    const sm = new Counter();
    {
      await using n = make([base + 40], 0, sm);
      await n.start();
      await until('leader', () => n.isLeader);
      for (let k = 0; k < 5; k++) await n.propose(inc(2));
    }
    const again = new Counter();
    const n2 = make([base + 40], 0, again);
    nodes.push(n2);
    await n2.start();
    await until('replayed', () => again.value === 10);
  });

  it('readBarrier on a follower sees every write acknowledged before it', async () => {
    const ports = [base + 50, base + 51, base + 52];
    const sms = [new Counter(), new Counter(), new Counter()];
    nodes = ports.map((_, i) => make(ports, i, sms[i]));
    const before = Date.now();
    await Promise.all(nodes.map((n) => n.start()));
    await until('leader', () => leaderOf(nodes) !== undefined);
    const leader = leaderOf(nodes)!;
    const i = nodes.findIndex((n) => n !== leader);
    for (let k = 0; k < 10; k++) {
      await leader.propose(inc(1));
      await nodes[i]!.readBarrier();
      assert.equal(sms[i]!.value, k + 1);
    }
    const index = await leader.readBarrier({ consistency: 'lease' });  // leases off: ReadIndex
    assert.ok(index >= 10);
    await assert.rejects(leader.readBarrier({ consistency: 'nope' as never }),
      (e: unknown) => e instanceof RaftError && e.code === 'ERR_RAFT_BAD_ARGUMENT');
  });

  it('a removed replica learns it: a removed event, status().member false, no campaign', async () => {
    const ports = [base + 70, base + 71, base + 72];
    const { leader } = await startThreeOf(ports);
    await leader.propose(inc(1));
    const gone = nodes.find((n) => n !== leader)!;
    assert.equal(gone.status().member, true);
    const removed = new Promise<Configuration>((resolve) => gone.once('removed', resolve));
    await leader.removePeer(gone.id, { timeoutMs: 10_000 });
    const conf = await Promise.race([removed, sleep(5000).then(() => null)]);
    assert.ok(conf, 'no removed event');
    assert.ok(!conf.peers.includes(gone.id), 'the event carries the configuration without it');
    assert.equal(gone.status().member, false);
    await sleep(1000); // it does not campaign, and the rest keep their leader
    assert.equal(gone.role, 'follower');
    assert.ok(nodes.some((n) => n !== gone && n.isLeader));
  });

  it('adds, transfers to and removes a replica', async () => {
    const ports = [base + 60, base + 61, base + 62, base + 63];
    const { sms, leader } = await startThreeOf(ports);
    await leader.propose(inc(7));
    // The newcomer starts knowing the configuration it will be part of.
    const fourth = make(ports, 3, sms[3]);
    nodes.push(fourth);
    await fourth.start();
    const events: Configuration[] = [];
    leader.on('configuration', (conf) => events.push(conf));
    const added = await leader.addPeer(fourth.id, { timeoutMs: 10_000 });
    assert.equal(added.oldPeers.length, 3);
    assert.equal(added.newPeers.length, 4);
    await until('newcomer caught up', () => sms[3]!.value === 7);
    assert.deepEqual(events.map((c) => c.peers.length), [4], 'the leader reported the new configuration');
    assert.ok(events[0]!.peers.includes(fourth.id));
    // Every replica saw the same configurations at the same indices, in log order.
    await until('configuration applied everywhere', () => sms.every((s) => s.confs.length === sms[0]!.confs.length));
    for (const sm of sms) assert.deepEqual(sm.confs, sms[0]!.confs);
    assert.equal(sms[0]!.confs.at(-1)![1], 4);
    // Asked the moment it leads, before its first entry commits: the change waits its turn.
    const removing = new Promise<ConfChange>((resolve, reject) => fourth.on('role', (role) => {
      if (role === 'leader') fourth.removePeer(leader.id, { timeoutMs: 10_000 }).then(resolve, reject);
    }));
    await leader.transferLeader(fourth.id);
    const removed = await removing;
    assert.deepEqual(removed.newPeers.length, 3);
    assert.equal(await fourth.propose(inc(1)), 8);
    await assert.rejects(fourth.addPeer('not a peer'), (e: unknown) => e instanceof RaftError && e.code === 'ERR_RAFT_BAD_CONFIG');
  });

  it("a replica started with config '' waits, never campaigning, until addPeer brings it in", async () => {
    const ports = [base + 64, base + 65, base + 66, base + 67];
    const { sms, leader } = await startThreeOf(ports);
    for (let k = 0; k < 200; k++) await leader.propose(inc(1));
    const fourth = make(ports, 3, sms[3], { config: '' });
    nodes.push(fourth);
    await fourth.start();
    await sleep(1000); // three election timeouts: it must neither campaign nor lead
    assert.equal(fourth.status().role, 'follower');
    assert.equal(fourth.status().term, 1, 'it never campaigned');
    assert.equal(sms[3]!.value, 0);
    await leader.addPeer(fourth.id, { timeoutMs: 10_000 });
    await until('newcomer caught up', () => sms[3]!.value === 200);
    assert.equal(fourth.status().configuration.peers.length, 4);
    assert.equal(await fourth.propose(inc(1)), 201);
  });

  it("connects out from each replica's own ip (127.0.0.2-4), not the host's first address", async () => {
    const ips = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
    const port = base + 68;
    const config = ips.map((ip) => `${ip}:${port}:0`).join(',');
    nodes = ips.map((ip, i) => new RaftNode<number>({
      group: 'g', config, ip, port, dir: join(dir, `ip${i}`), stateMachine: new Counter(), electionTimeoutMs: 300,
    }));
    await Promise.all(nodes.map((n) => n.start()));
    await until('leader', () => leaderOf(nodes) !== undefined);
    await leaderOf(nodes)!.propose(inc(1));
    await nodes.find((n) => !n.isLeader)!.propose(inc(1)); // forwarded: another channel
    // Established connections to our port, from /proc/net/tcp (addresses in hex, little-endian).
    const hexIp = (h: string) => [3, 2, 1, 0].map((k) => parseInt(h.slice(2 * k, 2 * k + 2), 16)).join('.');
    const sources = readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)
      .map((line) => line.trim().split(/\s+/))
      .filter((f) => f.length > 3 && f[3] === '01' && parseInt(f[1]!.split(':')[1]!, 16) === port)
      .map((f) => hexIp(f[2]!.split(':')[0]!));
    assert.ok(sources.length >= 2, 'replicas are connected');
    for (const ip of sources) assert.ok(ips.includes(ip), `a connection to a replica came from ${ip}`);
  });

  it('compacts, sends a snapshot to a replica that was away, and restarts from its own', async () => {
    const ports = [base + 70, base + 71, base + 72];
    const sms = ports.map(() => new SnapCounter());
    nodes = ports.map((_, i) => make(ports, i, sms[i]));
    await Promise.all(nodes.map((n) => n.start()));
    await until('leader', () => nodes.some((n) => n.isLeader));
    const leader = nodes.find((n) => n.isLeader)!;
    const li = nodes.indexOf(leader);
    const away = (li + 1) % 3;
    await leader.propose(inc(1));
    await until('replicated', () => sms[away]!.value === 1);
    await nodes[away]!.close();
    for (let k = 0; k < 100; k++) await leader.propose(inc(1));
    const events: number[] = [];
    leader.on('snapshot', (e) => events.push(e.index));
    for (const n of nodes) if (n !== nodes[away]) await n.snapshot();
    assert.ok(events[0]! >= 101, `snapshot event at ${events[0]}`);
    assert.ok(leader.status().snapshotIndex >= 101);
    assert.ok(leader.status().firstIndex > 100, 'the log below the snapshot is gone');
    await leader.propose(inc(1));
    const fresh = new SnapCounter();
    nodes[away] = make(ports, away, fresh);
    await nodes[away]!.start();
    await until('caught up by snapshot', () => fresh.value === 102);
    assert.ok(fresh.restored.length >= 1, 'it restored a snapshot');
    assert.deepEqual(fresh.confs[0], [fresh.restored[0], 3], 'the snapshot brought its configuration');
    // Restart from its own snapshot plus the log after it.
    await leader.close();
    const again = new SnapCounter();
    nodes[li] = make(ports, li, again);
    await nodes[li]!.start();
    await until('restored and replayed', () => again.value === 102);
    assert.ok(again.restored[0]! >= 101);
  });

  it('a process that only starts a node from its snapshot waits for the restore, then exits on its own', async () => {
    const sm = new SnapCounter();
    const n = make([base + 90], 0, sm);
    nodes.push(n);
    await n.start();
    await n.propose(inc(42));
    await n.snapshot();
    await n.close();
    const r = spawnSync(process.execPath, ['--import', 'tsx', fixture, 'restore', join(dir, '0'), String(base + 90)],
      { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0, `exit ${r.status} ${r.signal ?? ''} ${r.stderr}`); // 13: unsettled top-level await
    assert.equal(r.stdout, 'restored 42\n');
  });

  it('an exception thrown by a state machine callback is the process\'s uncaught exception, not an abort', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', fixture, 'throw', join(dir, 't'), String(base + 91)],
      { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.signal, null, `killed by ${r.signal}: ${r.stderr}`);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /boom from onLeaderStart/);
  });

  it('needs both snapshot and restore', () => {
    assert.throws(() => new RaftNode({ group: 'g', config: '127.0.0.1:9000:0', port: 9000, dir: '/tmp/x',
      stateMachine: { apply: () => [], snapshot: () => {} } }), (e: unknown) => e instanceof RaftError && e.code === 'ERR_RAFT_BAD_CONFIG');
  });

  it('rejects bad options with ERR_RAFT_BAD_CONFIG', () => {
    const ok = { group: 'g', config: '127.0.0.1:9000:0', port: 9000, dir: '/tmp/x', stateMachine: new Counter() };
    const cases: [string, Record<string, unknown>][] = [
      ['group', { group: '' }], ['group', { group: 'a b' }], ['config', { config: 'nope' }],
      ['port', { port: 0 }], ['port', { port: 70000 }], ['not in config', { port: 9001 }],
      ['dir', { dir: '' }], ['stateMachine', { stateMachine: {} }],
      ['electionTimeoutMs', { electionTimeoutMs: 0 }], ['electionTimeoutMs', { electionTimeoutMs: 1.5 }],
      ['leaderLease', { leaderLease: 'yes' }], ['snapshotIntervalS', { snapshotIntervalS: -1 }],
      ['ip', { ip: 'localhost' }], ['idx', { idx: -1 }], ['maxElectionDelayMs', { maxElectionDelayMs: -5 }],
      ['maxUncommittedEntries', { maxUncommittedEntries: 'many' }], ['snapshotLogThreshold', { snapshotLogThreshold: 0.5 }],
      ['stuckApplyTimeoutMs', { stuckApplyTimeoutMs: -1 }], ['maxPendingProposals', { maxPendingProposals: 0 }], ['stateMachine', { stateMachine: { apply() { return []; }, snapshot() {} } }],
    ];
    for (const [what, patch] of cases)
      assert.throws(() => new RaftNode({ ...ok, ...patch } as never),
        (e: unknown) => e instanceof RaftError && e.code === 'ERR_RAFT_BAD_CONFIG' && e.message.length > 10, what);
    // A number given as a string says so, instead of "got 9000".
    assert.throws(() => new RaftNode({ ...ok, port: '9000' } as never),
      (e: unknown) => e instanceof RaftError && /got the string "9000"/.test(e.message));
  });
});
