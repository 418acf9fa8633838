// A cluster on mutual TLS from JavaScript: replicas replicate and forward over it; the CLI
// with --tls_* manages it; plaintext clients and certificates of another CA are refused,
// and counted. (Handshake fuzzing and certificate rotation: native/tests/tls_test.cpp.)
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RaftError, RaftNode, type Entry, type StateMachine } from '../lib/index.js';
import { BaiduStdClient, ProtoWriter, RpcError } from '../lib/baidu-std.js';
import { runCli } from '../lib/cli.js';
import { portBlock, until } from './helpers.js';

class Counter implements StateMachine<number> {
  value = 0;
  apply(entries: readonly Entry[]): number[] {
    return entries.map((e) => (this.value += e.data.readInt32LE(0)));
  }
}
const one = (): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32LE(1);
  return b;
};

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(args, { stdout: (s) => (out += s), stderr: (s) => (err += s) });
  return { code, out, err };
}

const base = await portBlock(10);

describe('mutual TLS from JavaScript and the CLI', function () {
  this.timeout(60_000);
  let dir = '';
  let certs = '';
  let nodes: RaftNode<number>[] = [];

  before(() => {
    certs = mkdtempSync(join(tmpdir(), 'raftstore-certs-'));
    const made = spawnSync('bash', [fileURLToPath(new URL('./fixtures/make-certs.sh', import.meta.url)), certs], { encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
  });
  after(() => rmSync(certs, { recursive: true, force: true }));
  afterEach(async () => {
    await Promise.all(nodes.map((n) => n.close()));
    nodes = [];
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const file = (name: string): string => join(certs, name);

  it('replicates, forwards and is managed over TLS; refuses plaintext and other CAs', async () => {
    dir = mkdtempSync(join(tmpdir(), 'raftstore-tls-'));
    const ports = [base, base + 1, base + 2];
    const conf = ports.map((p) => `127.0.0.1:${p}:0`).join(',');
    const tls = { ca: file('ca.pem'), cert: file('node.pem'), key: file('node.key') };
    nodes = ports.map((port, i) => new RaftNode<number>({
      group: 'tls', config: conf, port, dir: join(dir, String(i)), stateMachine: new Counter(), electionTimeoutMs: 300, tls,
    }));
    await Promise.all(nodes.map((n) => n.start()));
    await until('a leader', () => nodes.some((n) => n.isLeader));
    const follower = nodes.find((n) => !n.isLeader)!;
    for (let i = 0; i < 20; i++) await follower.propose(one()); // forwarded over TLS
    await until('applied everywhere', () => nodes.every((n) => n.appliedIndex >= follower.appliedIndex));

    const flags = [`--tls_ca=${file('ca.pem')}`, `--tls_cert=${file('client.pem')}`, `--tls_key=${file('client.key')}`];
    const status = await cli('status', '--group=tls', `--conf=${conf}`, ...flags);
    assert.equal(status.code, 0, status.err);
    assert.equal(status.out.split('\n').filter((l) => / (leader|follower) /.test(l)).length, 3, status.out);
    const leader = nodes.find((n) => n.isLeader)!;
    const snap = await cli('snapshot', '--group=tls', `--peer=${leader.id}`, ...flags);
    assert.equal(snap.code, 255, 'no state machine snapshots here: refused by the node, so the call got through');
    assert.match(snap.err, /does not take snapshots/);

    const plain = await cli('get_leader', '--group=tls', `--conf=${conf}`);
    assert.equal(plain.code, 255);
    assert.match(plain.err, /pass --tls_ca, --tls_cert and --tls_key/, plain.err);
    const rogue = await cli('get_leader', '--group=tls', `--conf=${conf}`,
      `--tls_ca=${file('ca.pem')}`, `--tls_cert=${file('rogue.pem')}`, `--tls_key=${file('rogue.key')}`);
    assert.equal(rogue.code, 255, rogue.out);
    const partial = await cli('get_leader', '--group=tls', `--conf=${conf}`, `--tls_ca=${file('ca.pem')}`);
    assert.equal(partial.code, 255);
    assert.match(partial.err, /^ERR_RAFT_BAD_CONFIG: TLS needs all of/);

    // A raw plaintext baidu_std call: no answer, the connection is dropped.
    const raw = new BaiduStdClient();
    try {
      await assert.rejects(raw.call({ host: '127.0.0.1', port: ports[0]! }, 'braft.CliService', 'get_leader',
        new ProtoWriter().string(1, 'tls').finish(), { maxRetry: 0, timeoutMs: 3000 }), (e: RpcError) => e instanceof RpcError);
    } finally {
      raw.close();
    }
    const refused = nodes[0]!.metrics().find((f) => f.name === 'raftstore_port_tls_refused_total')!;
    assert.ok(refused.samples[0]!.value >= 2, `refused handshakes counted: ${refused.samples[0]!.value}`);
  });

  it('says which TLS file is wrong', async () => {
    dir = mkdtempSync(join(tmpdir(), 'raftstore-tls-'));
    const node = new RaftNode<number>({
      group: 'tls', config: `127.0.0.1:${base + 5}:0`, port: base + 5, dir, stateMachine: new Counter(),
      tls: { ca: file('ca.pem'), cert: file('node.pem'), key: file('no-such.key') },
    });
    await assert.rejects(node.start(), (e: RaftError) => e.code === 'ERR_RAFT_BAD_CONFIG' && /no-such\.key/.test(e.message));
    assert.throws(() => new RaftNode({ group: 'g', config: '127.0.0.1:1:0', port: 1, dir, stateMachine: new Counter(),
      tls: { ca: file('ca.pem'), cert: '', key: '' } }), (e: RaftError) => e.code === 'ERR_RAFT_BAD_CONFIG' && /tls must be/.test(e.message));
  });
});
