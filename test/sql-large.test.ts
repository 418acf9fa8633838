// A large SqlStore database (SQL_LARGE_MB, default 1024 MiB) built through the log: a
// snapshot taken while writes go on, a new peer that installs it, and a restart that runs
// nothing again.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqlStore } from '../lib/index.js';
import { portBlock, until } from './helpers.js';

const MB = Number(process.env['SQL_LARGE_MB'] ?? 1024);
const ROWS = 1000; // 1 KiB rows per fill entry: about 1 MiB an entry

describe(`SqlStore with a ${MB} MiB database`, function () {
  this.timeout(1_200_000);
  let base = '';
  let stores: SqlStore[] = [];
  after(async () => {
    await Promise.all(stores.map((s) => s.close()));
    rmSync(base, { recursive: true, force: true });
  });

  it('snapshots while writing, installs on a new peer, restarts without replay', async () => {
    base = mkdtempSync(join(tmpdir(), 'raftstore-sql-large-'));
    const port = await portBlock(4);
    const config = [0, 1, 2].map((i) => `127.0.0.1:${port + i}:0`).join(',');
    const migrations = [
      'CREATE TABLE doc (id INTEGER PRIMARY KEY, body BLOB NOT NULL)',
      'CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)',
      'INSERT INTO counter VALUES (1, 0)',
    ];
    const open = (i: number, conf = config): Promise<SqlStore> =>
      SqlStore.open({ group: 'large', config: conf, port: port + i, dir: join(base, String(i)), migrations, electionTimeoutMs: 1000 });
    stores = await Promise.all([0, 1, 2].map((i) => open(i)));
    const dbBytes = (i: number): number => statSync(join(base, String(i), 'sqlite', 'state.db')).size +
      (statSync(join(base, String(i), 'sqlite', 'state.db-wal'), { throwIfNoEntry: false })?.size ?? 0);
    const t0 = performance.now();
    let entries = 0;
    while (dbBytes(0) < MB * 2 ** 20) {
      await stores[entries % 3]!.exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
                                       INSERT INTO doc (body) SELECT randomblob(1024) FROM n`, [ROWS], { timeoutMs: 120_000 });
      entries++;
    }
    const filled = performance.now() - t0;

    // A snapshot on the leader while writers keep going on every replica.
    const leader = stores.find((s) => s.isLeader)!;
    let stop = false;
    let writes = 0;
    const writers = stores.map(async (s) => {
      while (!stop) {
        await s.exec('UPDATE counter SET n = n + 1 WHERE id = 1');
        writes++;
      }
    });
    const before = leader.appliedIndex;
    const s0 = performance.now();
    await leader.snapshot();
    const snapMs = performance.now() - s0;
    const writesDuring = writes;
    stop = true;
    await Promise.all(writers);
    const snap = leader.stats.lastSnapshot!;
    assert.ok(snap.index >= before && snap.bytes >= MB * 2 ** 20 * 0.9, `snapshot ${JSON.stringify(snap)}`);
    assert.ok(writesDuring > 0, 'writes went on during the snapshot');

    // A new peer (started empty, outside the configuration) added by the leader, whose log
    // now starts after its snapshot: the new peer must install the copy.
    const newcomer = await open(3, '');
    stores.push(newcomer);
    const a0 = performance.now();
    assert.ok(leader.isLeader, 'the leader did not change');
    await leader.node.addPeer(`127.0.0.1:${port + 3}:0`, { timeoutMs: 600_000 });
    const top = Math.max(...stores.map((s) => s.appliedIndex));
    await until('the new peer caught up', () => newcomer.appliedIndex >= top, 600_000);
    const addMs = performance.now() - a0;
    assert.equal(newcomer.stats.snapshotsInstalled, 1);
    assert.equal(newcomer.checksum(), leader.checksum());

    // A restart of a follower: its database holds every entry its log has, so none is run
    // again.
    const f = stores.findIndex((s, i) => i < 3 && s !== leader);
    await stores[f]!.close();
    const r0 = performance.now();
    stores[f] = await open(f);
    const reopenMs = performance.now() - r0;
    assert.equal(stores[f].stats.entriesApplied, 0, 'nothing was run again');
    assert.ok(stores[f].stats.entriesSkipped > 0, 'its log was handed over and skipped');
    await leader.exec('UPDATE counter SET n = n + 1 WHERE id = 1');
    const last = leader.appliedIndex;
    await until('every replica applied the last write', () => stores.every((s) => s.appliedIndex >= last), 60_000);
    const sums = stores.map((s) => s.checksum());
    assert.equal(new Set(sums).size, 1);
    console.log(`      ${entries} fill entries, ${(dbBytes(0) / 2 ** 20).toFixed(0)} MiB, filled in ${filled.toFixed(0)} ms; snapshot ` +
      `${(snap.bytes / 2 ** 20).toFixed(0)} MiB in ${snapMs.toFixed(0)} ms with ${writesDuring} writes during it; new peer caught ` +
      `up ${addMs.toFixed(0)} ms after add_peer (install ${stores[3]!.stats.lastInstall!.durationMs.toFixed(0)} ms); restart ` +
      `${reopenMs.toFixed(0)} ms, ${stores[f].stats.entriesSkipped} entries skipped, none run`);
  });
});
