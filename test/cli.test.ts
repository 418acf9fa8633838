// The `raftstore` CLI: braft_cli's commands against a live cluster of RaftNodes in this
// process, its errors, bad input for every flag, and the baidu_std client against fake
// servers that answer oddly (or not at all).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RaftNode, type Entry, type SnapshotReader, type SnapshotWriter, type StateMachine } from '../lib/index.js';
import { runCli } from '../lib/cli.js';
import {
  BaiduStdClient, ProtoWriter, RpcError, decodeFields, intField, stringField, stringsField,
} from '../lib/baidu-std.js';

const here = dirname(fileURLToPath(import.meta.url));
import { eventually, portBlock, sleep } from './helpers.js';

interface Result {
  code: number;
  out: string;
  err: string;
}

async function cli(...args: string[]): Promise<Result> {
  let out = '';
  let err = '';
  const code = await runCli(args, { stdout: (s) => (out += s), stderr: (s) => (err += s) });
  return { code, out, err };
}

/** The CLI as a child process (test/fixtures/cli.ts), for the real exit code. */
function cliProcess(...args: string[]): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'cli.ts'), ...args],
      { cwd: join(here, '..'), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

/** A failure: exit 255 and exactly one line `<code>: <message>` at the end of stderr. */
function assertFails(r: Result, code: string, message: RegExp | string): void {
  assert.equal(r.code, 255, `exit code; stderr: ${r.err}`);
  // `<code>: <message>`, the message's detail lines (one per peer tried) after it.
  const lines = r.err.trimEnd().split('\n');
  const prefix = `${code}: `;
  let at = lines.length - 1;
  while (at >= 0 && !lines[at]!.startsWith(prefix)) at--;
  assert.ok(at >= 0, `expected ${prefix}..., got ${JSON.stringify(r.err)}`);
  const text = lines.slice(at).join('\n').slice(prefix.length);
  if (typeof message === 'string') assert.equal(text, message);
  else assert.match(text, message);
}


class SnapCounter implements StateMachine<number> {
  value = 0;
  apply(entries: readonly Entry[]): number[] {
    return entries.map((e) => (this.value += e.data.readInt32LE(0)));
  }
  snapshot(w: SnapshotWriter): Promise<void> {
    return w.writeFile('value', String(this.value));
  }
  async restore(r: SnapshotReader): Promise<void> {
    this.value = Number((await r.readFile('value')).toString());
  }
}
const one = Buffer.from([1, 0, 0, 0]);

const base = await portBlock(6);
const peerOf = (port: number) => `127.0.0.1:${port}:0:0`;

describe('raftstore CLI: flags and bad input', function () {
  this.timeout(10_000);
  const conf = `127.0.0.1:${base}:0,127.0.0.1:${base + 1}:0`;

  it('names the first missing flag of every command, in braft_cli\'s order', async () => {
    const cases: [string[], string][] = [
      [['add_peer'], 'add_peer requires --conf'],
      [['add_peer', `--conf=${conf}`], 'add_peer requires --peer'],
      [['add_peer', `--conf=${conf}`, '--peer=127.0.0.1:1'], 'add_peer requires --group'],
      [['remove_peer', '--group=g', '--peer=127.0.0.1:1'], 'remove_peer requires --conf'],
      [['remove_peer', '--group=g', `--conf=${conf}`], 'remove_peer requires --peer'],
      [['remove_peer', `--conf=${conf}`, '--peer=127.0.0.1:1'], 'remove_peer requires --group'],
      [['change_peers', '--group=g', `--conf=${conf}`], 'change_peers requires --new_peers'],
      [['change_peers', '--group=g', `--new_peers=${conf}`], 'change_peers requires --conf'],
      [['change_peers', `--conf=${conf}`, `--new_peers=${conf}`], 'change_peers requires --group'],
      [['reset_peer', '--group=g', '--peer=127.0.0.1:1'], 'reset_peer requires --new_peers'],
      [['reset_peer', '--group=g', `--new_peers=${conf}`], 'reset_peer requires --peer'],
      [['reset_peer', '--peer=127.0.0.1:1', `--new_peers=${conf}`], 'reset_peer requires --group'],
      [['snapshot', '--group=g'], 'snapshot requires --peer'],
      [['snapshot', '--peer=127.0.0.1:1'], 'snapshot requires --group'],
      [['transfer_leader', '--group=g', '--peer=127.0.0.1:1'], 'transfer_leader requires --conf'],
      [['transfer_leader', '--group=g', `--conf=${conf}`], 'transfer_leader requires --peer'],
      [['transfer_leader', `--conf=${conf}`, '--peer=127.0.0.1:1'], 'transfer_leader requires --group'],
      [['get_leader', '--group=g'], 'get_leader requires --conf'],
      [['get_leader', `--conf=${conf}`], 'get_leader requires --group'],
      [['status', '--group=g'], 'status requires --conf'],
      [['status', `--conf=${conf}`], 'status requires --group'],
      [['add_peer', '--group=', `--conf=${conf}`, '--peer=127.0.0.1:1'], 'add_peer requires --group'], // empty = unset, as gflags
    ];
    for (const [args, message] of cases) assertFails(await cli(...args), 'ERR_RAFT_BAD_ARGUMENT', message);
  });

  it('refuses an unknown command, no command, or two', async () => {
    assertFails(await cli('get_status', '--group=g'), 'ERR_RAFT_BAD_ARGUMENT', 'Unknown command `get_status\'');
    assertFails(await cli('toString'), 'ERR_RAFT_BAD_ARGUMENT', 'Unknown command `toString\'');
    // Flags are parsed first, as gflags does before braft_cli looks at the command.
    assertFails(await cli('get_status', '--max_retry=x'), 'ERR_RAFT_BAD_ARGUMENT', /^illegal value `x' for --max_retry/);
    const none = await cli('--group=g');
    assertFails(none, 'ERR_RAFT_BAD_ARGUMENT', 'no command given');
    assert.match(none.err, /^Usage: raftstore \[Command\]/);
    assertFails(await cli('snapshot', 'add_peer'), 'ERR_RAFT_BAD_ARGUMENT', /one command expected, got `snapshot' `add_peer'/);
    const help = await cli('--help');
    assert.equal(help.code, 0);
    assert.match(help.out, /transfer_leader --group=\$group_id --peer=\$target_leader --conf=\$current_conf/);
  });

  it('gives a coded error for a wrong value of every flag', async () => {
    const ok = { group: 'g', conf, peer: '127.0.0.1:1', new_peers: conf };
    const run = (cmd: string, patch: Record<string, string>) =>
      cli(cmd, ...Object.entries({ ...ok, ...patch }).map(([k, v]) => `--${k}=${v}`));
    const badConfig: [string, Record<string, string>, RegExp][] = [
      ['add_peer', { conf: 'nope' }, /^Fail to parse --conf=`nope': bad peer "nope" in configuration "nope"/],
      ['add_peer', { conf: '127.0.0.1:1,,127.0.0.1:2' }, /^Fail to parse --conf=`127.0.0.1:1,,127.0.0.1:2': bad peer "" /],
      ['add_peer', { peer: 'localhost:8100' }, /^Fail to parse --peer=`localhost:8100': .*numeric IPv4/],
      ['remove_peer', { peer: '127.0.0.1:70000' }, /^Fail to parse --peer=`127.0.0.1:70000': .*port "70000"/],
      ['remove_peer', { conf: '127.0.0.1' }, /^Fail to parse --conf=`127.0.0.1': /],
      ['change_peers', { new_peers: '127.0.0.1:1:0:2' }, /^Fail to parse --new_peers=`127.0.0.1:1:0:2': .*role "2"/],
      ['change_peers', { conf: '1.2.3:4' }, /^Fail to parse --conf=`1.2.3:4'/],
      ['reset_peer', { new_peers: ',' }, /^Fail to parse --new_peers=`,'/],
      ['reset_peer', { peer: '127.0.0.1:1:x' }, /^Fail to parse --peer=`127.0.0.1:1:x': .*idx "x"/],
      ['snapshot', { peer: ' 127.0.0.1:1' }, /^Fail to parse --peer=` 127.0.0.1:1': .*whitespace/],
      ['transfer_leader', { peer: '127.0.0.1:1:0:0:0' }, /^Fail to parse --peer=`127.0.0.1:1:0:0:0': .*5 colon-separated fields/],
      ['transfer_leader', { conf: 'x' }, /^Fail to parse --conf=`x'/],
      ['get_leader', { conf: '256.0.0.1:1' }, /^Fail to parse --conf=`256.0.0.1:1'/],
      ['status', { conf: '127.0.0.1:-1' }, /^Fail to parse --conf=`127.0.0.1:-1'/],
    ];
    for (const [cmd, patch, message] of badConfig) assertFails(await run(cmd, patch), 'ERR_RAFT_BAD_CONFIG', message);
    const badArgument: [string, Record<string, string>, RegExp][] = [
      ['snapshot', { timeout_ms: 'abc' }, /^illegal value `abc' for --timeout_ms: expected -1 \(no timeout\) or/],
      ['snapshot', { timeout_ms: '-5' }, /^illegal value `-5' for --timeout_ms/],
      ['snapshot', { timeout_ms: '0' }, /^illegal value `0' for --timeout_ms/],
      ['snapshot', { timeout_ms: '1.5' }, /^illegal value `1.5' for --timeout_ms/],
      ['snapshot', { timeout_ms: '2147483648' }, /^illegal value `2147483648' for --timeout_ms/],
      ['snapshot', { timeout_ms: '' }, /^illegal value `' for --timeout_ms/],
      ['add_peer', { max_retry: '-1' }, /^illegal value `-1' for --max_retry: expected a whole number from 0 to 2147483647/],
      ['add_peer', { max_retry: 'three' }, /^illegal value `three' for --max_retry/],
      ['add_peer', { max_retry: '1e3' }, /^illegal value `1e3' for --max_retry/],
      ['get_leader', { group: 'a\nb' }, /^illegal value "a\\nb" for --group: it contains control characters/],
    ];
    for (const [cmd, patch, message] of badArgument) assertFails(await run(cmd, patch), 'ERR_RAFT_BAD_ARGUMENT', message);
    assertFails(await cli('snapshot', '--group=g', '--peer=127.0.0.1:1', '--nope=1'), 'ERR_RAFT_BAD_ARGUMENT',
      /^unknown command line flag 'nope'/);
    assertFails(await cli('snapshot', '--peer=127.0.0.1:1', '--group'), 'ERR_RAFT_BAD_ARGUMENT',
      "flag '--group' is missing its argument");
  });

  it('takes gflags\' forms: --flag value, -flag, a negative value after a space', async () => {
    // Nothing listens on ports[5] of this file's range: one attempt (--max_retry 0), refused.
    const port = base + 5;
    const r = await cli('-group', 'g', 'snapshot', '--peer', `127.0.0.1:${port}`, '--timeout_ms', '-1', '-max_retry=0');
    assertFails(r, 'ERR_RAFT_IO', `Fail to make snapshot : [E111]Fail to connect 127.0.0.1:${port}: Connection refused`);
  });
});

// A baidu_std server of our own that answers every request with `answer` (raw bytes to
// write, or nothing), recording what it was sent.
interface FakeFrame {
  service: string;
  method: string;
  id: bigint;
  body: Buffer;
}

async function fakeServer(answer: (frame: FakeFrame, socket: Socket) => Buffer | undefined) {
  const requests: FakeFrame[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 12 && buf.length >= 12 + buf.readUInt32BE(4)) {
        const body = buf.readUInt32BE(4);
        const metaSize = buf.readUInt32BE(8);
        const meta = decodeFields(buf.subarray(12, 12 + metaSize));
        const req = decodeFields(meta.find((f) => f.field === 1)!.value as Buffer);
        const frame = {
          service: stringField(req, 1) ?? '', method: stringField(req, 2) ?? '',
          id: intField(meta, 4) ?? 0n, body: buf.subarray(12 + metaSize, 12 + body),
        };
        buf = buf.subarray(12 + body);
        requests.push(frame);
        const out = answer(frame, s);
        if (out) s.write(out);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    port, requests,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}

function responseFrame(id: bigint, payload: Buffer, errorCode = 0, errorText = '', extraMeta?: (w: ProtoWriter) => void): Buffer {
  const response = new ProtoWriter().int(1, errorCode);
  if (errorText !== '') response.string(2, errorText);
  const meta = new ProtoWriter().message(2, response).int(3, 0).int(4, id);
  extraMeta?.(meta);
  const m = meta.finish();
  const head = Buffer.alloc(12);
  head.write('PRPC', 0, 'latin1');
  head.writeUInt32BE(m.length + payload.length, 4);
  head.writeUInt32BE(m.length, 8);
  return Buffer.concat([head, m, payload]);
}

describe('raftstore CLI: baidu_std against odd servers', function () {
  this.timeout(10_000);

  it('sends braft_cli\'s requests and reads answers with unknown fields', async () => {
    const srv = await fakeServer(({ id, method }) => {
      if (method !== 'get_leader') return responseFrame(id, Buffer.alloc(0));
      // leader_id plus fields this client has never heard of, and extra RpcMeta fields.
      const payload = new ProtoWriter().int(7, 99).string(1, '127.0.0.1:9:0:0').bytes(15, Buffer.from([1, 2])).finish();
      return responseFrame(id, payload, 0, '', (w) => w.int(10, 0).int(11, 0).bytes(12, Buffer.alloc(0)).int(1000, 5));
    });
    try {
      const r = await cli('get_leader', '--group', 'G', '--conf', `127.0.0.1:${srv.port}`);
      assert.deepEqual(r, { code: 0, out: '127.0.0.1:9:0:0\n', err: '' });
      const [req] = srv.requests;
      assert.equal(req?.service, 'braft.CliService');
      const body = decodeFields(req!.body);
      assert.equal(stringField(body, 1), 'G');
      assert.equal(stringField(body, 2), `127.0.0.1:${srv.port}:0:0`);
      // The leader is the target already: braft_cli says so and sends nothing more.
      const t = await cli('transfer_leader', '--group=G', `--conf=127.0.0.1:${srv.port}`, '--peer=127.0.0.1:9');
      assert.deepEqual(t, { code: 0, out: '', err: 'peer 127.0.0.1:9:0:0 is already the leader\n' });
    } finally {
      await srv.close();
    }
  });

  it('retries ENOENT max_retry times with new correlation ids, as brpc', async () => {
    const srv = await fakeServer(({ id }) => responseFrame(id, Buffer.alloc(0), 2, '[127.0.0.1:1][E2]Fail to find node'));
    try {
      const r = await cli('snapshot', '--group=Nope', `--peer=127.0.0.1:${srv.port}`, '--max_retry=2');
      assertFails(r, 'ERR_RAFT_BAD_ARGUMENT',
        'Fail to make snapshot : [E2][127.0.0.1:1][E2]Fail to find node (3 attempts)');
      assert.equal(srv.requests.length, 3);
      assert.equal(new Set(srv.requests.map((q) => q.id)).size, 3);
      assert.deepEqual(srv.requests.map((q) => q.method), ['snapshot', 'snapshot', 'snapshot']);
    } finally {
      await srv.close();
    }
  });

  it('fails at once, coded, on a corrupt or oversized answer (even with no timeout)', async () => {
    const bad: [string, (id: bigint) => Buffer][] = [
      ['bad magic', () => Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n')],
      ['exceeds the limit', () => {
        const h = Buffer.alloc(12);
        h.write('PRPC', 0, 'latin1');
        h.writeUInt32BE(0xfffffff0, 4);
        return h;
      }],
      ['meta size', () => {
        const h = Buffer.alloc(12);
        h.write('PRPC', 0, 'latin1');
        h.writeUInt32BE(1, 4);
        h.writeUInt32BE(5, 8);
        return Buffer.concat([h, Buffer.alloc(1)]);
      }],
      ['truncated varint', (id) => {
        const m = Buffer.concat([new ProtoWriter().int(4, id).finish(), Buffer.from([0x80])]);
        const h = Buffer.alloc(12);
        h.write('PRPC', 0, 'latin1');
        h.writeUInt32BE(m.length, 4);
        h.writeUInt32BE(m.length, 8);
        return Buffer.concat([h, m]);
      }],
      ['must have response', (id) => {
        const m = new ProtoWriter().int(4, id).finish(); // no response meta
        const h = Buffer.alloc(12);
        h.write('PRPC', 0, 'latin1');
        h.writeUInt32BE(m.length, 4);
        h.writeUInt32BE(m.length, 8);
        return Buffer.concat([h, m]);
      }],
    ];
    for (const [what, answer] of bad) {
      const srv = await fakeServer(({ id }) => answer(id));
      try {
        const started = Date.now();
        const r = await cli('snapshot', '--group=g', `--peer=127.0.0.1:${srv.port}`);
        assertFails(r, 'ERR_RAFT_IO', new RegExp(`^Fail to make snapshot : \\[E2002\\]Fail to parse response from 127\\.0\\.0\\.1:${srv.port}: .*${what}`));
        assert.ok(Date.now() - started < 2000);
        assert.equal(srv.requests.length, 1, 'a corrupt answer is not retried');
      } finally {
        await srv.close();
      }
    }
  });

  it('times out a silent server: probes after 500 ms, operations after --timeout_ms', async () => {
    const srv = await fakeServer(() => undefined);
    try {
      let started = Date.now();
      const probe = await cli('add_peer', '--group=g', `--conf=127.0.0.1:${srv.port}`, '--peer=127.0.0.1:1');
      assertFails(probe, 'ERR_RAFT_TIMEOUT',
        `Fail to add_peer : Fail to get leader of group g; tried:\n  127.0.0.1:${srv.port}: [E1008]Reached timeout=500ms @127.0.0.1:${srv.port}`);
      let took = Date.now() - started;
      assert.ok(took >= 450 && took < 1500, `took ${took} ms`);
      started = Date.now();
      const op = await cli('snapshot', '--group=g', `--peer=127.0.0.1:${srv.port}`, '--timeout_ms', '300');
      assertFails(op, 'ERR_RAFT_TIMEOUT', `Fail to make snapshot : [E1008]Reached timeout=300ms @127.0.0.1:${srv.port}`);
      took = Date.now() - started;
      assert.ok(took >= 250 && took < 1500, `took ${took} ms`);
    } finally {
      await srv.close();
    }
  });

  it('status reads braft\'s own /raft_stat text', async () => {
    const paths: string[] = [];
    let port = 0;
    const braftStat = () => [
      '[G]\r\n',
      `peer_id: 127.0.0.1:${port}:0:0\r\nstate: LEADER\r\nreadonly: 0\r\nterm: 7\r\nconf_index: 3\r\n`,
      `peers: 127.0.0.1:${port}:0:0 127.0.0.1:${port}:1:0\r\nchanging_conf: NO    stage: STAGE_NONE\r\n`,
      'election_timer: timeout(1000ms) STOPPED\r\n',
      'storage: [1, 12]\ndisk_index: 12\nknown_applied_index: 11\nlast_log_id: (index=12,term=7)\n',
      'state_machine: Idle\nlast_committed_index: 12\r\n',
      `replicator_123@127.0.0.1:${port}:1:0: next_index=13  flying_append_entries_size=0 idle hc=5 ac=3 ic=0\r\n\r\n`,
      `peer_id: 127.0.0.1:${port}:1:0\r\nstate: FOLLOWER\r\nreadonly: 0\r\nterm: 7\r\n`,
      `leader: 127.0.0.1:${port}:0:0\r\nlast_msg_to_now: 12\r\n`,
      'storage: [1, 12]\ndisk_index: 12\nknown_applied_index: 10\nlast_log_id: (index=12,term=7)\n',
      'state_machine: Idle\nlast_committed_index: 11\r\n\r\n',
    ].join('');
    const http = createHttpServer((req, res) => {
      paths.push(req.url ?? '');
      res.setHeader('Content-Type', 'text/plain');
      res.end(req.url === '/raft_stat/G' ? braftStat() : '');
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    port = (http.address() as { port: number }).port;
    try {
      const r = await cli('status', '--group=G', `--conf=127.0.0.1:${port}:1,127.0.0.1:${port}:0`);
      assert.equal(r.code, 0, r.err);
      assert.equal(r.out, [
        `PEER${' '.repeat(`127.0.0.1:${port}:0:0`.length - 2)}STATE     TERM  LEADER${' '.repeat(`127.0.0.1:${port}:0:0`.length - 4)}LAST_LOG_INDEX  COMMITTED  APPLIED`,
        `127.0.0.1:${port}:0:0  leader    7     127.0.0.1:${port}:0:0  12              12         11`,
        `127.0.0.1:${port}:1:0  follower  7     127.0.0.1:${port}:0:0  12              11         10`,
        '',
      ].join('\n'));
      assert.deepEqual(paths, ['/raft_stat/G', '/raft_stat/G']);
    } finally {
      await new Promise<void>((r) => http.close(() => r()));
    }
  });

  it('an aborted call rejects with the abort reason', async () => {
    const srv = await fakeServer(() => undefined);
    const client = new BaiduStdClient();
    try {
      const ac = new AbortController();
      const call = client.call({ host: '127.0.0.1', port: srv.port }, 'braft.CliService', 'get_leader',
        new ProtoWriter().string(1, 'g').finish(), { signal: ac.signal });
      await eventually('the request', () => (srv.requests.length === 1 ? true : undefined));
      ac.abort(new Error('enough'));
      await assert.rejects(call, /enough/);
      const closed = client.call({ host: '127.0.0.1', port: srv.port }, 'braft.CliService', 'get_leader',
        new ProtoWriter().string(1, 'g').finish());
      client.close();
      await assert.rejects(closed, (e: unknown) => e instanceof RpcError && e.rpcCode === 125 && e.code === 'ERR_RAFT_SHUTDOWN');
    } finally {
      client.close();
      await srv.close();
    }
  });

  it('matches answers that come back out of order on one connection', async () => {
    const held: { id: bigint; group: string; socket: Socket }[] = [];
    const srv = await fakeServer(({ id, body }, socket) => {
      held.push({ id, group: stringField(decodeFields(body), 1) ?? '', socket });
      if (held.length === 2) {
        for (const h of [...held].reverse()) {
          const payload = new ProtoWriter().string(1, `leader-of-${h.group}`).finish();
          h.socket.write(responseFrame(h.id, payload));
        }
      }
      return undefined;
    });
    const client = new BaiduStdClient();
    try {
      const call = (group: string) => client.call({ host: '127.0.0.1', port: srv.port }, 'braft.CliService',
        'get_leader', new ProtoWriter().string(1, group).finish(), { timeoutMs: 2000 });
      const [a, b] = await Promise.all([call('a'), call('b')]);
      assert.equal(stringField(decodeFields(a), 1), 'leader-of-a');
      assert.equal(stringField(decodeFields(b), 1), 'leader-of-b');
      assert.equal(new Set(held.map((h) => h.socket)).size, 1, 'one connection');
    } finally {
      client.close();
      await srv.close();
    }
  });
});

describe('raftstore CLI: against a live cluster', function () {
  this.timeout(20_000);
  const G = 'cli';
  const ports = [base, base + 1, base + 2, base + 3, base + 4, base + 5];
  const ids = ports.map(peerOf);
  const conf3 = ids.slice(0, 3).join(',');
  let dir = '';
  const nodes = new Map<number, RaftNode<number>>();

  const start = async (i: number, config: string): Promise<RaftNode<number>> => {
    const node = new RaftNode<number>({
      group: G, config, port: ports[i] as number, dir: join(dir, String(i)),
      stateMachine: new SnapCounter(), electionTimeoutMs: 300,
    });
    await node.start();
    nodes.set(i, node);
    return node;
  };
  const node = (i: number): RaftNode<number> => nodes.get(i) as RaftNode<number>;
  const leaderId = async (conf: string): Promise<string | undefined> => {
    const r = await cli('get_leader', `--group=${G}`, `--conf=${conf}`);
    return r.code === 0 ? r.out.trim() : undefined;
  };
  const leaderIndex = (among: number[]): number | undefined => among.find((i) => nodes.get(i)?.isLeader);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'raftstore-cli-'));
    await Promise.all([0, 1, 2].map((i) => start(i, conf3)));
    const l = await eventually('a leader', () => leaderIndex([0, 1, 2]));
    await node(l).propose(one, { timeoutMs: 5000 }); // its first entry committed: changes may begin
    await eventually('all applied', () => ([0, 1, 2].every((i) => node(i).appliedIndex >= 2) ? true : undefined));
  });
  after(async () => {
    for (const n of nodes.values()) await n.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('get_leader prints the leader (in process and as a child process)', async () => {
    const l = leaderIndex([0, 1, 2]) as number;
    const r = await cli('get_leader', '-group', G, '--conf', conf3);
    assert.deepEqual(r, { code: 0, out: `${ids[l]}\n`, err: '' });
    const p = await cliProcess('get_leader', `--group=${G}`, `--conf=${conf3}`);
    assert.deepEqual(p, { code: 0, out: `${ids[l]}\n`, err: '' });
    // A peer of --conf that is down does not matter while another one answers.
    assert.equal(await leaderId(`${conf3},127.0.0.1:${ports[5]}`), ids[l]);
  });

  it('status prints a table of every peer', async () => {
    const r = await cli('status', `--group=${G}`, `--conf=${conf3},127.0.0.1:${ports[5]}`);
    assert.equal(r.code, 0, r.err);
    const lines = r.out.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^PEER +STATE +TERM +LEADER +LAST_LOG_INDEX +COMMITTED +APPLIED$/);
    assert.equal(lines.length, 5);
    const l = leaderIndex([0, 1, 2]) as number;
    const term = node(l).term;
    for (let i = 0; i < 3; i++) {
      const cells = (lines[i + 1] ?? '').split(/ +/);
      assert.equal(cells[0], ids[i]);
      assert.equal(cells[1], i === l ? 'leader' : 'follower');
      assert.equal(cells[2], String(term));
      assert.equal(cells[3], ids[l]);
      assert.ok(Number(cells[4]) >= 2 && Number(cells[5]) >= 2 && Number(cells[6]) >= 2, lines[i + 1]);
    }
    assert.match(lines[4] ?? '', new RegExp(`^${ids[5]} +unreachable +- +- +- +- +-$`));
    assert.match(r.err, new RegExp(`^${ids[5]}: unreachable: `, 'm'));
    // Columns line up: every row's STATE starts where the header's does.
    const at = (lines[0] ?? '').indexOf('STATE');
    for (const line of lines.slice(1)) assert.match(line.slice(at), /^[a-z]/);
  });

  it('add_peer and remove_peer print the configuration change', async () => {
    await start(3, ids.slice(0, 4).join(','));
    const added = await cli('add_peer', `--group=${G}`, `--conf=${conf3}`, `--peer=${ids[3]}`);
    assert.deepEqual(added, { code: 0, out: '',
      err: `Configuration of replication group \`${G}' changed from ${conf3} to ${ids.slice(0, 4).join(',')}\n` });
    const removed = await cli('remove_peer', `--group=${G}`, `--conf=${ids.slice(0, 4).join(',')}`,
      `--peer=127.0.0.1:${ports[3]}`);
    assert.deepEqual(removed, { code: 0, out: '',
      err: `Configuration of replication group \`${G}' changed from ${ids.slice(0, 4).join(',')} to ${conf3}\n` });
    await node(3).close();
    nodes.delete(3);
  });

  it('change_peers prints conf, leader and new peers, then the change', async () => {
    await start(4, [...ids.slice(0, 3), ids[4]].join(','));
    const four = [...ids.slice(0, 3), ids[4]].join(',');
    const r = await cli('change_peers', `--group=${G}`, `--conf=${conf3}`, `--new_peers=${four}`);
    const l = ids[leaderIndex([0, 1, 2]) as number];
    assert.deepEqual(r, { code: 0, out: '', err: `conf=${conf3} leader=${l} new_peers=${four}\n`
      + `Configuration of replication group \`${G}' changed from ${conf3} to ${four}\n` });
    const back = await cli('change_peers', `--group=${G}`, `--conf=${four}`, `--new_peers=${conf3}`);
    assert.equal(back.code, 0, back.err);
    assert.match(back.err, new RegExp(`changed from ${four} to ${conf3}\n$`));
    await node(4).close();
    nodes.delete(4);
  });

  it('transfer_leader moves leadership; to the leader it says so', async () => {
    const from = leaderIndex([0, 1, 2]) as number;
    const to = (from + 1) % 3;
    const r = await cli('transfer_leader', `--group=${G}`, `--conf=${conf3}`, `--peer=${ids[to]}`);
    assert.deepEqual(r, { code: 0, out: '', err: '' });
    await eventually('the new leader', async () => ((await leaderId(conf3)) === ids[to] && node(to).isLeader ? true : undefined));
    const again = await cli('transfer_leader', `--group=${G}`, `--conf=${conf3}`, `--peer=${ids[to]}`);
    assert.deepEqual(again, { code: 0, out: '', err: `peer ${ids[to]} is already the leader\n` });
    // A target outside the group: the leader refuses (EINVAL).
    const outside = await cli('transfer_leader', `--group=${G}`, `--conf=${conf3}`, `--peer=${ids[5]}`);
    assertFails(outside, 'ERR_RAFT_BAD_ARGUMENT', /^Fail to transfer_leader: \[E22\]/);
  });

  it('snapshot makes the peer take a snapshot', async () => {
    const l = leaderIndex([0, 1, 2]) as number;
    for (let k = 0; k < 5; k++) await node(l).propose(one, { timeoutMs: 5000 });
    const f = (l + 1) % 3;
    await eventually('follower applied', () => (node(f).appliedIndex >= node(l).appliedIndex ? true : undefined));
    const before = node(f).status().snapshotIndex;
    const r = await cli('snapshot', `--group=${G}`, `--peer=${ids[f]}`, '--timeout_ms=5000');
    assert.deepEqual(r, { code: 0, out: '', err: '' });
    assert.ok(node(f).status().snapshotIndex > before, 'a new snapshot');
  });

  it('reports an unknown group with a coded error', async () => {
    const g = await cli('get_leader', '--group=nope', `--conf=${conf3}`);
    assertFails(g, 'ERR_RAFT_BAD_ARGUMENT',
      new RegExp(`^Fail to get_leader : Fail to get leader of group nope; tried:\n  127\\.0\\.0\\.1:${ports[0]}: \\[E2\\]`
        + `.*Fail to find node ${ids[0]} in group nope`));
    // A peer that is down (sorted last) does not hide what the others answered.
    const a = await cli('add_peer', '--group=nope', `--conf=${conf3},${ids[5]}`, `--peer=${ids[5]}`);
    assertFails(a, 'ERR_RAFT_BAD_ARGUMENT', /^Fail to add_peer : Fail to get leader of group nope; tried:\n(  127\.0\.0\.1:\d+: .*\n?){4}$/);
    const s = await cli('snapshot', '--group=nope', `--peer=${ids[0]}`);
    assertFails(s, 'ERR_RAFT_BAD_ARGUMENT', new RegExp(`^Fail to make snapshot : \\[E2\\].*Fail to find node ${ids[0]} in group nope`));
    const r = await cli('reset_peer', '--group=nope', `--peer=${ids[0]}`, `--new_peers=${ids[0]}`);
    assertFails(r, 'ERR_RAFT_BAD_ARGUMENT', /^Fail to reset_peer : \[E2\]/);
    const st = await cli('status', '--group=nope', `--conf=${conf3}`);
    assertFails(st, 'ERR_RAFT_BAD_ARGUMENT', `Fail to get status of group \`nope': no peer of ${conf3} hosts it`);
    assert.match(st.out, new RegExp(`^${ids[0]} +absent`, 'm'));
  });

  it('quorum lost: changes fail within --timeout_ms; reset_peer recovers the survivor', async () => {
    const l = leaderIndex([0, 1, 2]) as number;
    const gone = [0, 1, 2].filter((i) => i !== l);
    for (const i of gone) {
      await node(i).close();
      nodes.delete(i);
    }
    // Adding a new peer, or removing a member (removing a non-member is a successful no-op).
    for (const [command, peer] of [['add_peer', ids[5]], ['remove_peer', ids[gone[0] as number]]] as const) {
      const started = Date.now();
      const r = await cli(command, `--group=${G}`, `--conf=${conf3}`, `--peer=${peer}`, '--timeout_ms=1500');
      // Which error depends on when the leader notices: the change cannot catch up or commit
      // (ECATCHUP, or our timeout), the leader steps down (EPERM), or no one leads any more.
      const code = r.err.match(/^(ERR_RAFT_[A-Z_]+):/m)?.[1] ?? '?';
      assert.ok(['ERR_RAFT_CATCHUP_FAILED', 'ERR_RAFT_TIMEOUT', 'ERR_RAFT_NOT_LEADER', 'ERR_RAFT_LEADER_CHANGED']
        .includes(code), r.err);
      assertFails(r, code, new RegExp(`^Fail to ${command} : `));
      assert.ok(Date.now() - started < 5000, `${command} took ${Date.now() - started} ms`);
    }
    // The child process too: the real exit status.
    const p = await cliProcess('remove_peer', `--group=${G}`, `--conf=${conf3}`, `--peer=${ids[gone[1] as number]}`,
      '--timeout_ms=1000');
    assert.equal(p.code, 255, p.err);
    assert.match(p.err, /^ERR_RAFT_[A-Z_]+: Fail to remove_peer : /m);
    // status still answers for the survivor, and says which peers are down.
    const st = await cli('status', `--group=${G}`, `--conf=${conf3}`);
    assert.equal(st.code, 0);
    assert.equal(st.out.split('\n').filter((line) => / unreachable /.test(line)).length, 2);
    // reset_peer: the survivor alone becomes the group and elects itself.
    const reset = await cli('reset_peer', `--group=${G}`, `--peer=${ids[l]}`, `--new_peers=${ids[l]}`);
    assert.deepEqual(reset, { code: 0, out: '', err: '' });
    await eventually('the survivor leads', async () => ((await leaderId(ids[l] as string)) === ids[l] ? true : undefined));
    await node(l).propose(one, { timeoutMs: 5000 });
  });
});
