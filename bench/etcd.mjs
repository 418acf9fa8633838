// etcd as the benchmarks' comparison: three members of Debian's etcd-server on loopback, and
// the etcd3 npm client a Node application would use. Shared by bench:node and bench:kv.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { live, portAllocator, sleep } from './lib.mjs';

const etcdTimeouts = { 1000: { heartbeat: 100, election: 1000 }, 100: { heartbeat: 10, election: 100 } };
const etcdSettings = (t) => etcdTimeouts[t] ?? { heartbeat: Math.max(1, Math.round(t / 10)), election: t };

/** Client and peer ports for three members, from [lo, hi]. */
export function etcdPortAllocator(lo, hi) {
  const next = portAllocator(lo, hi, 6);
  return () => {
    const p = next();
    return [0, 1, 2].map((i) => ({ client: p[2 * i], peer: p[2 * i + 1] }));
  };
}

export const etcdBin = ['/usr/bin/etcd', '/usr/local/bin/etcd'].find((p) => existsSync(p)) ??
  (() => {
    try {
      return execFileSync('sh', ['-c', 'command -v etcd'], { encoding: 'utf8' }).trim() || null;
    } catch {
      return null;
    }
  })();
let Etcd3;

/** Loads the etcd3 client; resolves with the etcd binary's version. */
export async function loadEtcd() {
  ({ Etcd3 } = await import('etcd3'));
  return /etcd Version: (\S+)/.exec(execFileSync(etcdBin, ['--version'], { encoding: 'utf8' }))?.[1] ?? '?';
}

export class EtcdCluster {
  constructor(electionTimeoutMs, ports, opTimeoutMs) {
    this.opTimeoutMs = opTimeoutMs;
    const { heartbeat, election } = etcdSettings(electionTimeoutMs);
    this.heartbeat = heartbeat;
    this.election = election;
    this.dir = mkdtempSync(join(tmpdir(), 'bench-etcd-'));
    this.token = `bench-node-${process.pid}-${Math.floor(Math.random() * 1e9)}`;
    this.members = ports.map((p, i) => ({ name: `m${i}`, ...p, child: null, log: '' }));
    this.initial = this.members.map((m) => `${m.name}=http://127.0.0.1:${m.peer}`).join(',');
    this.hosts = this.members.map((m) => `http://127.0.0.1:${m.client}`);
    live.add(this);
    for (let i = 0; i < 3; i++) this.start(i);
  }
  start(i) {
    const m = this.members[i];
    m.log = '';
    m.child = spawn(etcdBin, [
      `--name=${m.name}`, `--data-dir=${join(this.dir, m.name)}`,
      `--listen-client-urls=http://127.0.0.1:${m.client}`, `--advertise-client-urls=http://127.0.0.1:${m.client}`,
      `--listen-peer-urls=http://127.0.0.1:${m.peer}`, `--initial-advertise-peer-urls=http://127.0.0.1:${m.peer}`,
      `--initial-cluster=${this.initial}`, `--initial-cluster-token=${this.token}`, '--initial-cluster-state=new',
      `--heartbeat-interval=${this.heartbeat}`, `--election-timeout=${this.election}`,
      '--logger=zap', '--log-outputs=stderr', '--log-level=error',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    m.child.stderr.setEncoding('utf8');
    m.child.stderr.on('data', (d) => {
      m.log = (m.log + d).slice(-4000);
    });
  }
  // Each member's Maintenance.Status through etcd's JSON gateway (who it is, whom it
  // follows), or null if it does not answer within 500 ms.
  status() {
    return Promise.all(this.members.map(async (m) => {
      try {
        const res = await fetch(`http://127.0.0.1:${m.client}/v3/maintenance/status`,
          { method: 'POST', body: '{}', signal: AbortSignal.timeout(500) });
        return res.ok ? await res.json() : null;
      } catch {
        return null;
      }
    }));
  }
  // The index of the member that every live member names as leader.
  async leader() {
    for (let i = 0; i < 400; i++) {
      const st = await this.status();
      const ids = st.map((s) => s?.header?.member_id);
      const leaders = new Set(st.filter((s) => s?.leader && s.leader !== '0').map((s) => s.leader));
      if (leaders.size === 1) {
        const idx = ids.indexOf([...leaders][0]);
        if (idx >= 0) {
          this.leaderId = ids[idx];
          return idx;
        }
      }
      await sleep(25);
    }
    const logs = this.members.map((m) => `${m.name}: ${m.log.trim().split('\n').slice(-3).join('\n')}`).join('\n');
    throw new Error(`etcd: no leader within 10 s\n${logs}`);
  }
  // Waits until every member answers status and names the same leader.
  async healthy() {
    for (let i = 0; i < 400; i++) {
      const st = await this.status();
      if (st.every((s) => s?.leader && s.leader !== '0' && s.leader === st[0].leader)) return;
      await sleep(25);
    }
    throw new Error('etcd: members not all up within 10 s');
  }
  // What a Node application would construct: the etcd3 defaults (every call on a randomly
  // picked member, three retries, a circuit breaker per member), plus a per-call deadline
  // equal to raftstore's proposal timeout here. `members`: only those (default all).
  client(members = [0, 1, 2]) {
    return new Etcd3({
      hosts: members.map((i) => this.hosts[i]),
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + this.opTimeoutMs }),
    });
  }
  kill(i) {
    this.members[i].child?.kill('SIGKILL');
  }
  stop() {
    for (const m of this.members) m.child?.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }
}
