// Three counter-server processes on loopback, taking a snapshot every second: the client's
// output line, kill -9 of the leader under load with no acknowledged increment lost, and a
// follower that was away catching up by snapshot install.
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { portBlock } from './helpers.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const server = join(root, 'build/release/raftstore-counter-server');
const client = join(root, 'build/release/raftstore-counter-client');
const run = promisify(execFile);

interface ClientResult {
  qps: number;
  errors: number;
  maxValue: number;
}

function parse(out: string): ClientResult {
  const line = /^qps=(\d+) p50_ms=[\d.]+ p90_ms=[\d.]+ p99_ms=[\d.]+ p999_ms=[\d.]+ errors=(\d+)$/m.exec(out);
  const max = /^max_value=(-?\d+)$/m.exec(out);
  assert.ok(line && max, `unexpected client output:\n${out}`);
  return { qps: Number(line[1]), errors: Number(line[2]), maxValue: Number(max[1]) };
}

async function stat(port: number): Promise<string> {
  try {
    return await (await fetch(`http://127.0.0.1:${port}/raft_stat`)).text();
  } catch {
    return '';
  }
}

const base = await portBlock(3);

describe('counter server (3 processes)', function () {
  this.timeout(60_000);
  const ports = [base, base + 1, base + 2];
  const conf = ports.map((p) => `127.0.0.1:${p}:0`).join(',');
  const servers = new Map<number, ChildProcess>();
  let dir = '';

  const start = (port: number): void => {
    const child = spawn(server, [`-port=${port}`, `-conf=${conf}`, `-data_path=${join(dir, String(port))}`,
      '-election_timeout_ms=500', '-snapshot_interval=1'], { stdio: 'ignore' });
    servers.set(port, child);
  };
  const clientRun = async (args: string[]): Promise<ClientResult> =>
    parse((await run(client, [`-conf=${conf}`, ...args])).stdout);
  const field = async (port: number, name: string): Promise<number> =>
    Number(new RegExp(`${name}: (\\d+)`).exec(await stat(port))?.[1] ?? -1);
  const leaderPort = async (): Promise<number> => {
    for (let i = 0; i < 100; i++) {
      for (const p of ports) if ((await stat(p)).includes('state: leader')) return p;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('no leader');
  };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'counter-'));
    for (const p of ports) start(p);
  });
  after(() => {
    for (const child of servers.values()) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves fetch_add and reports qps and latency percentiles', async () => {
    await leaderPort();
    const r = await clientRun(['-thread_num=2', '-seconds=2']);
    assert.equal(r.errors, 0);
    assert.ok(r.qps > 50, `qps ${r.qps}`);
  });

  it('loses no acknowledged increment when the leader is killed with SIGKILL', async () => {
    const leader = await leaderPort();
    const load = clientRun(['-thread_num=4', '-seconds=4']);
    await new Promise((r) => setTimeout(r, 1500));
    servers.get(leader)?.kill('SIGKILL');
    const during = await load;
    assert.ok(during.maxValue > 0, 'some increments were acknowledged');
    start(leader); // restarts from its data directory
    // fetch_add(0) returns the counter itself: every acknowledged increment is in it.
    const now = await clientRun(['-thread_num=1', '-seconds=1', '-value=0']);
    assert.ok(now.maxValue >= during.maxValue + 1,
      `counter ${now.maxValue} lost increments acknowledged up to ${during.maxValue}`);
    // The restarted replica catches up.
    let caughtUp = false;
    for (let i = 0; i < 100 && !caughtUp; i++) {
      const other = await field(ports.find((p) => p !== leader) ?? leader, 'applied_index');
      caughtUp = (await field(leader, 'applied_index')) >= other && other > 0;
      if (!caughtUp) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(caughtUp, 'the restarted replica caught up');
  });

  it('sends a snapshot to a follower that missed compacted entries', async () => {
    const leader = await leaderPort();
    const away = ports.find((p) => p !== leader) ?? leader;
    servers.get(away)?.kill('SIGKILL');
    await clientRun(['-thread_num=4', '-seconds=2']);
    // The leader's next snapshot (every second) compacts past what the follower has.
    const target = await field(leader, 'applied_index');
    for (let i = 0; i < 100 && (await field(leader, 'snapshot_index')) < target; i++)
      await new Promise((r) => setTimeout(r, 50));
    assert.ok((await field(leader, 'snapshot_index')) >= target, 'the leader took a snapshot');
    start(away);
    let installed = false;
    for (let i = 0; i < 200 && !installed; i++) {
      installed = (await field(away, 'snapshots_installed')) >= 1 &&
        (await field(away, 'applied_index')) >= target;
      if (!installed) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(installed, `no snapshot install:\n${await stat(away)}`);
    const now = await clientRun(['-thread_num=1', '-seconds=1']);
    assert.equal(now.errors, 0);
  });
});
