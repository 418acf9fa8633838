// KvStore replicas in three processes while replicas are killed with SIGKILL at random
// moments and restarted (resuming from their stores, or installing a snapshot when the others
// compacted their logs past them), under a workload of puts, gets, compare-and-sets and
// deletes on a few keys, leases that are kept alive and leases that are let go:
// - every replica ends with the same contents and revision;
// - every replica's watcher (resumed after each restart from the revision after the last it
//   logged) saw every change once, in revision order: its log equals the full history;
// - the put/get/cas/delete history is linearizable (test/linearizability.ts, per key);
// - each lease let go expired once (its key deleted once, at one revision, everywhere), and
//   the lease kept alive through the leader's kills never expired.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ChildReplica, childStatuses, childrenCaughtUp, eventually, portBlock, sleep, type ChildReply } from './helpers.js';
import { seededRandom } from '../lib/seeded-random.js';
import { checkLinearizable, type HistoryOp, type KvOp, type KvResult } from './linearizability.js';

const fixture = fileURLToPath(new URL('./fixtures/kv-replica.ts', import.meta.url));

interface Status { role: string; applied: number; commitIndex: number; snapshotIndex: number; revision: number }
type Change = [revision: number, type: string, key: string];

describe('KvStore (three processes, SIGKILL)', function () {
  this.timeout(300_000);
  let dir = '';
  let replicas: ChildReplica[] = [];
  afterEach(() => {
    for (const r of replicas) r.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it('equal stores, complete watches, a linearizable history and leases expiring once after kills and restarts', async () => {
    dir = mkdtempSync(join(tmpdir(), 'kv-crash-'));
    const base = await portBlock(3);
    const ports = [base, base + 1, base + 2];
    const config = ports.map((p) => `127.0.0.1:${p}:0`).join(',');
    const dirs = ports.map((p) => join(dir, String(p)));
    replicas = ports.map((p, i) => new ChildReplica(fixture, p, ['kvcrash', config, String(p), dirs[i]!, '300']));
    await Promise.all(replicas.map((r) => r.start()));
    const up = new Set(replicas);
    const any = (n: number): ChildReplica | undefined => [...up][n % Math.max(1, up.size)];
    let stopped = false;
    const t0 = performance.now();

    // Clients: one op at a time each, on a few keys, timed by this process's clock around
    // the call (so the window contains the op's real moment).
    const history: HistoryOp[] = [];
    const outcomes = new Map<string, number>();
    const keys = Array.from({ length: 12 }, (_, i) => `lin/${i}`);
    const clients = [0, 1, 2, 3, 4, 5].map(async (c) => {
      const random = seededRandom(100 + c);
      const seen = new Map<string, string | null>();
      let n = 0;
      while (!stopped) {
        const r = any(c + n);
        if (!r) {
          await sleep(20);
          continue;
        }
        const key = keys[Math.floor(random() * keys.length)]!;
        const pick = random();
        const value = `c${c}-${n++}`;
        const op: KvOp = pick < 0.4 ? { kind: 'get', key }
          : pick < 0.7 ? { kind: 'put', key, value }
            : pick < 0.9 ? { kind: 'cas', key, expect: seen.get(key) ?? null, value }
              : { kind: 'delete', key };
        const invokedAt = performance.now() - t0;
        const res: ChildReply = await r.call(op.kind, op.kind === 'cas' ? { key, expect: op.expect, value } : { key, value });
        const completedAt = performance.now() - t0;
        outcomes.set(res.ok ? 'ok' : res.code, (outcomes.get(res.ok ? 'ok' : res.code) ?? 0) + 1);
        if (!res.ok) {
          // The outcome is unknown (a kill, a timeout, a leader change): a write may have
          // happened or not; a read tells nothing.
          if (op.kind !== 'get') history.push({ client: c, op, invokedAt, completedAt: null });
          await sleep(5);
          continue;
        }
        let result: KvResult;
        if (op.kind === 'get') {
          result = { kind: 'get', value: res.result as string | null };
          seen.set(key, res.result as string | null);
        } else if (op.kind === 'cas') {
          result = { kind: 'cas', succeeded: res.result as boolean };
          if (res.result) seen.set(key, value);
        } else {
          result = { kind: op.kind } as KvResult;
          seen.set(key, op.kind === 'put' ? value : null);
        }
        history.push({ client: c, op, invokedAt, completedAt, result });
      }
    });

    // A lease kept alive all along (its key must never be deleted), and leases let go.
    let kept = 0;
    const keeper = (async () => {
      for (;;) {
        const g = await any(0)?.call('grant', { ttlMs: 3000 });
        if (g?.ok) {
          kept = g.result as number;
          const p = await any(1)?.call('put', { key: 'keep/1', value: 'alive', lease: kept });
          if (p?.ok) break;
        }
        await sleep(50);
      }
      let n = 0;
      while (!stopped) {
        await any(n++)?.call('keepAlive', { lease: kept });
        await sleep(300);
      }
    })();
    const letGo: string[] = [];
    const leasers = (async () => {
      for (let n = 0; !stopped; n++) {
        const g = await any(n)?.call('grant', { ttlMs: 800 });
        if (g?.ok) {
          const key = `lease/${n}`;
          const p = await any(n + 1)?.call('put', { key, value: 'x', lease: g.result as number });
          if (p?.ok) {
            letGo.push(key);
            for (let k = 0; k < 2 && !stopped; k++) {
              await sleep(300);
              await any(n + k)?.call('keepAlive', { lease: g.result as number });
            }
          }
        }
        await sleep(600);
      }
    })();

    const chaos = seededRandom(Number(process.env['KV_CRASH_SEED'] ?? 11));
    let kills = 0;
    let installs = 0;
    const countInstalls = async (r: ChildReplica): Promise<void> => {
      const n = await r.call('installs');
      if (n.ok) installs += n.result as number;
    };
    for (let round = 0; round < 8; round++) {
      await sleep(500 + chaos() * 1500);
      // Every other round the leader: leases must survive failovers.
      const statuses = await Promise.all(replicas.map((r) => r.call('status')));
      const leader = statuses.findIndex((s) => s.ok && (s.result as Status).role === 'leader');
      const victim = replicas[round % 2 === 0 && leader >= 0 ? leader : Math.floor(chaos() * 3)]!;
      await countInstalls(victim);
      up.delete(victim);
      victim.kill();
      kills++;
      await sleep(300 + chaos() * 2500);
      await victim.start();
      up.add(victim);
    }
    stopped = true;
    await Promise.all([...clients, keeper, leasers]);
    // The kept lease still holds its key: it never expired through the kills.
    const revoked = await eventually('the kept lease revoked', async () => {
      const r = await any(0)?.call('revoke', { lease: kept });
      if (r && !r.ok && r.code === 'ERR_KV_LEASE_NOT_FOUND') return { deleted: 0, revision: 0 }; // it expired
      return r?.ok ? (r.result as { deleted: number; revision: number }) : undefined;
    });
    assert.equal(revoked.deleted, 1, 'the lease kept alive through failovers never expired');
    await sleep(2500); // the last leases let go expire: no change after this

    await childrenCaughtUp<Status>(replicas);
    const s = await childStatuses<Status>(replicas);
    assert.equal(new Set(s.map((x) => x.revision)).size, 1, `revisions differ: ${s.map((x) => x.revision).join(' ')}`);
    const sums = await Promise.all(replicas.map(async (r) => ((await r.call('checksum')) as { result: string }).result));
    assert.equal(new Set(sums).size, 1, `stores differ: ${sums.join(' ')}`);
    for (const r of replicas) await countInstalls(r);

    // Watches: each replica's log, across its restarts, is the whole history, once, in order.
    const full = ((await replicas[0]!.call('history')) as { ok: true; result: Change[] }).result;
    assert.equal(full.at(-1)![0], s[0]!.revision);
    const revisions = [...new Set(full.map((c) => c[0]))];
    assert.deepEqual(revisions, Array.from({ length: s[0]!.revision }, (_, i) => i + 1), 'every revision has its changes');
    const lastLogged = (d: string): number => (JSON.parse(readFileSync(join(d, 'watch.log'), 'utf8').trim().split('\n').at(-1)!) as Change[]).at(-1)![0];
    await eventually('every watcher logged the last revision', () => dirs.every((d) => lastLogged(d) === s[0]!.revision) || undefined, 10_000)
      .catch(async (e: unknown) => {
        throw new Error(`${String(e)}: the last revision is ${s[0]!.revision}; the watchers logged up to ${dirs.map(lastLogged).join(', ')}; ` +
          `statuses ${JSON.stringify(await childStatuses(replicas))}`);
      });
    for (const d of dirs) {
      const logged = readFileSync(join(d, 'watch.log'), 'utf8').trim().split('\n').flatMap((l) => JSON.parse(l) as Change[]);
      const at = logged.findIndex((c, i) => JSON.stringify(c) !== JSON.stringify(full[i]));
      assert.ok(at < 0 && logged.length === full.length, `the watcher of ${d} saw every change once, in order: ` +
        `${logged.length} logged, ${full.length} changes; first difference at ${at}: logged ` +
        `${JSON.stringify(logged.slice(Math.max(0, at - 3), at + 4))}, history ${JSON.stringify(full.slice(Math.max(0, at - 3), at + 4))}`);
    }

    // Leases.
    const deletes = (key: string): Change[] => full.filter((c) => c[2] === key && c[1] === 'delete');
    assert.deepEqual(deletes('keep/1'), [[revoked.revision, 'delete', 'keep/1']], 'the kept lease\'s key went once, when revoked');
    assert.ok(letGo.length >= 5, `leases were let go: ${letGo.length}`);
    for (const key of letGo) assert.equal(deletes(key).length, 1, `${key}: its lease expired once`);

    // Linearizability of the clients' history, per key.
    const check = checkLinearizable(history);
    const unknown = history.filter((h) => h.completedAt === null).length;
    console.log(`      ${history.length} ops (${unknown} of unknown outcome), outcomes ${JSON.stringify(Object.fromEntries(outcomes))}, ` +
      `${kills} kills, ${installs} snapshot installs, revision ${s[0]!.revision}, ${letGo.length} leases expired once, ` +
      `applied ${s.map((x) => x.applied).join('/')}, snapshots at ${s.map((x) => x.snapshotIndex).join('/')}`);
    assert.ok(check.ok, check.ok ? '' : `not linearizable at ${check.key}: ${check.explanation}`);
    assert.ok(history.length > 1000, `the clients did work: ${history.length}`);
    assert.ok(installs > 0, 'a restarted replica installed a snapshot');
  });
});
