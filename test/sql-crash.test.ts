// SqlStore replicas in three processes under a random SQL workload while replicas are killed
// with SIGKILL at random moments and restarted (resuming from their databases, or installing
// a snapshot when the others compacted past them): afterwards every database is the same,
// no acknowledged insert is missing, and the invariant the transactions keep holds.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ChildReplica, childStatuses, childrenCaughtUp, portBlock, sleep } from './helpers.js';
import { seededRandom } from '../lib/seeded-random.js';

const fixture = fileURLToPath(new URL('./fixtures/sql-replica.ts', import.meta.url));

interface Status { role: string; applied: number; commitIndex: number; snapshotIndex: number }

describe('SqlStore (three processes, SIGKILL)', function () {
  this.timeout(240_000);
  let dir = '';
  let replicas: ChildReplica[] = [];
  afterEach(() => {
    for (const r of replicas) r.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it('every replica ends with the same database after kills, restarts and snapshot installs under load', async () => {
    dir = mkdtempSync(join(tmpdir(), 'sql-crash-'));
    const base = await portBlock(3);
    const ports = [base, base + 1, base + 2];
    const config = ports.map((p) => `127.0.0.1:${p}:0`).join(',');
    // Snapshots every 300 entries: a replica down for a second or two comes back behind the
    // others' first index and must install one.
    replicas = ports.map((p) => new ChildReplica(fixture, p, ['sqlcrash', config, String(p), join(dir, String(p)), '300']));
    await Promise.all(replicas.map((r) => r.start()));
    const up = new Set(replicas);
    const inserted = new Set<number>(); // seeds of acknowledged inserts
    const codes = new Map<string, number>();
    let stopped = false;
    let seed = 1;
    const writers = [0, 1, 2, 3, 4, 5].map(async (w) => {
      while (!stopped) {
        const live = [...up];
        const r = live[w % live.length];
        if (!r) {
          await sleep(20);
          continue;
        }
        const s = seed++;
        const res = await r.call('write', { seed: s });
        const code = res.ok ? 'ok' : res.code;
        codes.set(code, (codes.get(code) ?? 0) + 1);
        if (res.ok && res.result === 'inserted') inserted.add(s);
        if (!res.ok) await sleep(5);
      }
    });
    const chaos = seededRandom(Number(process.env['SQL_CRASH_SEED'] ?? 7));
    let kills = 0;
    let installs = 0;
    const countInstalls = async (r: ChildReplica): Promise<void> => {
      const n = await r.call('installs');
      if (n.ok) installs += n.result as number;
    };
    for (let round = 0; round < 8; round++) {
      await sleep(500 + chaos() * 1500);
      const victim = replicas[Math.floor(chaos() * 3)]!;
      await countInstalls(victim);
      up.delete(victim);
      victim.kill();
      kills++;
      await sleep(300 + chaos() * 2500); // the others go on (and snapshot past it, sometimes)
      await victim.start();
      up.add(victim);
    }
    stopped = true;
    await Promise.all(writers);
    assert.equal(kills, 8);
    assert.ok((codes.get('ok') ?? 0) > 300, `writes were acknowledged: ${JSON.stringify([...codes])}`);
    assert.ok((codes.get('ERR_SQL_CONSTRAINT') ?? 0) > 0, 'constraint failures happened (UNIQUE and CHECK)');

    // Every replica applies everything, then all databases are equal.
    await childrenCaughtUp<Status>(replicas);
    const sums = await Promise.all(replicas.map(async (r) => (await r.call('checksum') as { result: string }).result));
    assert.equal(new Set(sums).size, 1, `databases differ: ${sums.join(' ')}`);
    const totals = await Promise.all(replicas.map(async (r) => (await r.call('sum') as { result: { n: number; total: number } }).result));
    for (const t of totals) assert.equal(t.total, 100 * t.n, 'transfers kept the total (no half-applied entry)');
    const s = await childStatuses<Status>(replicas);
    assert.ok(s.some((x) => x.snapshotIndex > 0), 'snapshots were taken');
    for (const r of replicas) await countInstalls(r);
    assert.ok(installs > 0, 'a restarted replica installed a snapshot');
    console.log(`      ${codes.get('ok')} writes acknowledged, ${kills} kills, outcomes ${JSON.stringify(Object.fromEntries(codes))}, ` +
      `${installs} snapshot installs, applied ${s.map((x) => x.applied).join('/')}, snapshots at ${s.map((x) => x.snapshotIndex).join('/')}`);
    for (const r of replicas) {
      const ledger = new Set((await r.call('ledger') as { result: number[] }).result);
      const lost = [...inserted].filter((x) => !ledger.has(x));
      assert.deepEqual(lost, [], 'no acknowledged insert is missing');
    }
  });
});
