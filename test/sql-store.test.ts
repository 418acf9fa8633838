// SqlStore: every replica its own SQLite database, written only by applying the log.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqlError, SqlStore, type SqlTx, type TxContext } from '../lib/index.js';
import { portBlock, until } from './helpers.js';

const migrations = [
  'CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, qty INTEGER NOT NULL CHECK (qty >= 0))',
  `CREATE TABLE stamp (id INTEGER PRIMARY KEY, at TEXT DEFAULT CURRENT_TIMESTAMP, r INTEGER, b BLOB, d TEXT,
                       j REAL, u INTEGER, s TEXT)`,
];
const transactions = {
  restock(sql: SqlTx, { name, qty }: { name: string; qty: number }) {
    return sql.run('UPDATE item SET qty = qty + ? WHERE name = ?', [qty, name]).changes;
  },
  // Changes rows, then fails: nothing of it may stay anywhere.
  moveThenFail(sql: SqlTx, { name }: { name: string }) {
    sql.run('UPDATE item SET qty = qty - 1 WHERE name = ?', [name]);
    sql.run('INSERT INTO item (name, qty) VALUES (?, ?)', [`${name}-copy`, 1]);
    throw new Error(`refused ${name}`);
  },
  count(sql: SqlTx) {
    return (sql.get<{ n: number }>('SELECT count(*) AS n FROM item')!).n;
  },
  stampTx(sql: SqlTx, _a: null, ctx: TxContext) {
    sql.run('INSERT INTO stamp (r, s) VALUES (random(), ?)', [String(ctx.random())]);
    return ctx.now;
  },
  leak(sql: SqlTx) {
    return sql; // used after the function returned: refused
  },
};

describe('SqlStore', function () {
  this.timeout(60_000);
  let base: string;
  let port: number;
  let config: string;
  let stores: SqlStore<typeof transactions>[] = [];

  const open = (i: number, extra: { migrations?: readonly string[]; catchUpOnOpen?: boolean } = {}) =>
    SqlStore.open({
      group: 'sql', config, port: port + i, dir: join(base, String(i)), migrations, transactions,
      electionTimeoutMs: 300, ...extra,
    });

  beforeEach(async () => {
    base = mkdtempSync(join(tmpdir(), 'raftstore-sql-'));
    port = await portBlock(3);
    config = [0, 1, 2].map((i) => `127.0.0.1:${port + i}:0`).join(',');
    stores = await Promise.all([0, 1, 2].map((i) => open(i)));
  });
  afterEach(async () => {
    await Promise.all(stores.map((s) => s.close()));
    rmSync(base, { recursive: true, force: true });
  });

  const converged = async (): Promise<void> => {
    const target = Math.max(...stores.map((s) => s.appliedIndex));
    await until('every replica applied everything', () => stores.every((s) => s.appliedIndex >= target));
    const sums = stores.map((s) => s.checksum());
    assert.deepEqual(new Set(sums).size, 1, `checksums differ: ${sums.join(' ')}`);
  };

  it('replicates exec, batch and transactions from any replica; migrations ran once', async () => {
    const r = await stores[1]!.exec('INSERT INTO item (name, qty) VALUES (?, ?)', ['bolt', 10]);
    assert.equal(r.changes, 1);
    assert.equal(r.lastInsertRowid, 1);
    const rs = await stores[2]!.batch([
      { sql: 'INSERT INTO item (name, qty) VALUES (:n, :q)', params: { n: 'nut', q: 3 } },
      { sql: 'UPDATE item SET qty = qty * 2' },
    ]);
    assert.deepEqual(rs.map((x) => x.changes), [1, 2]);
    assert.equal(await stores[0]!.transact('restock', { name: 'bolt', qty: 5 }), 1);
    assert.equal(await stores[0]!.transact('count'), 2);
    const rows = await stores[2]!.query('SELECT name, qty FROM item ORDER BY name', [], { consistency: 'linearizable' });
    assert.deepEqual(rows, [{ name: 'bolt', qty: 25 }, { name: 'nut', qty: 6 }]);
    assert.deepEqual(stores[0]!.query('SELECT 1 AS one'), [{ one: 1 }]);
    await converged();
    for (const s of stores) {
      // Every replica proposed the migrations at open; they ran once, in order.
      const n = s.query<{ n: number }>("SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table' AND name IN ('item', 'stamp')");
      assert.equal(n[0]!.n, 2);
    }
  });

  it('a failing statement fails the same way everywhere and leaves nothing behind', async () => {
    await stores[0]!.exec('INSERT INTO item (name, qty) VALUES (?, ?)', ['bolt', 1]);
    for (const s of stores) {
      await assert.rejects(s.exec('INSERT INTO item (name, qty) VALUES (?, ?)', ['bolt', 2]),
        (e: SqlError) => e instanceof SqlError && e.code === 'ERR_SQL_CONSTRAINT' && e.sqliteCode === 'SQLITE_CONSTRAINT_UNIQUE');
    }
    await assert.rejects(stores[1]!.exec('UPDATE item SET qty = -5'), (e: SqlError) => e.code === 'ERR_SQL_CONSTRAINT' && e.sqliteCode === 'SQLITE_CONSTRAINT_CHECK');
    await assert.rejects(stores[1]!.exec('UPDATE nosuch SET x = 1'), (e: SqlError) => e.code === 'ERR_SQL_ERROR' && /no such table/.test(e.message));
    await assert.rejects(stores[1]!.exec('UPDTE item SET qty = 1'), (e: SqlError) => e.code === 'ERR_SQL_ERROR' && /syntax/.test(e.message));
    await assert.rejects(stores[2]!.batch([
      { sql: 'UPDATE item SET qty = 100' },
      { sql: 'INSERT INTO item (name, qty) VALUES (?, ?)', params: ['bolt', 7] },
    ]), (e: SqlError) => e.code === 'ERR_SQL_CONSTRAINT' && e.statementIndex === 1);
    await assert.rejects(stores[0]!.transact('moveThenFail', { name: 'bolt' }), /refused bolt/);
    await assert.rejects(stores[0]!.exec('INSERT INTO item (name, qty) VALUES (?, ?)', ['x']),
      (e: SqlError) => e.code === 'ERR_SQL_PARAMETERS');
    await converged();
    for (const s of stores) assert.deepEqual(s.query('SELECT name, qty FROM item'), [{ name: 'bolt', qty: 1 }]);
  });

  it('refuses what cannot be replicated before proposing it, and writes in query', async () => {
    const before = stores[0]!.status().lastIndex;
    const refused: [string, string][] = [
      ['PRAGMA foreign_keys = OFF', 'ERR_SQL_FORBIDDEN'],
      ['BEGIN', 'ERR_SQL_FORBIDDEN'],
      ["ATTACH 'x.db' AS x", 'ERR_SQL_FORBIDDEN'],
      ['CREATE TEMP TABLE t (x)', 'ERR_SQL_FORBIDDEN'],
      ['INSERT INTO item (name, qty) VALUES (1, 1); DELETE FROM item', 'ERR_SQL_FORBIDDEN'],
      ['UPDATE _raftstore_state SET applied = 0', 'ERR_SQL_FORBIDDEN'],
      ['INSERT INTO item (name, qty) VALUES (total_changes(), 1)', 'ERR_SQL_NONDETERMINISTIC'],
      ['', 'ERR_SQL_ERROR'],
    ];
    for (const [sql, code] of refused)
      await assert.rejects(stores[1]!.exec(sql), (e: SqlError) => e instanceof SqlError && e.code === code, sql);
    await assert.rejects(stores[1]!.exec('INSERT INTO item (name, qty) VALUES (?, ?)', ['a', true as never]),
      (e: SqlError) => e.code === 'ERR_SQL_PARAMETERS');
    // Text in strings and comments is not mistaken for SQL.
    await stores[1]!.exec("INSERT INTO item (name, qty) VALUES ('BEGIN; PRAGMA x -- total_changes()', 1) -- ; DETACH");
    assert.throws(() => stores[0]!.query('DELETE FROM item'), (e: SqlError) => e.code === 'ERR_SQL_READONLY');
    assert.throws(() => stores[0]!.query('BEGIN'), (e: SqlError) => e.code === 'ERR_SQL_FORBIDDEN');
    assert.throws(() => stores[0]!.query('SELECT * FROM nosuch'), (e: SqlError) => e.code === 'ERR_SQL_ERROR');
    assert.equal(stores[0]!.status().lastIndex, before + 1);
  });

  it('random(), randomblob(), the time functions and CURRENT_TIMESTAMP give the same result everywhere', async () => {
    await stores[0]!.exec(`INSERT INTO stamp (r, b, d, j, u) VALUES
      (random(), randomblob(64), datetime('now', '+1 day'), julianday('now'), unixepoch())`);
    await stores[1]!.exec("INSERT INTO stamp (r, b, d) VALUES (random(), randomblob(100000), strftime('%Y-%m-%dT%H:%M:%f'))");
    const t = await stores[2]!.transact('stampTx', null);
    await stores[2]!.exec("INSERT INTO stamp (d) SELECT date(d, 'start of month') FROM stamp WHERE id = 1");
    await converged();
    const rows = stores[0]!.query<{ at: string; r: number; d: string | null; u: number | null }>('SELECT * FROM stamp ORDER BY id');
    assert.equal(rows.length, 4);
    assert.match(rows[0]!.at, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    assert.ok(Math.abs(rows[0]!.u! * 1000 - Date.now()) < 60_000, 'unixepoch() is the leader time');
    assert.ok(Math.abs(t - Date.now()) < 60_000);
    assert.notEqual(rows[0]!.r, rows[1]!.r);
    // A time zone is each machine's own: refused at apply, the same way on every replica.
    await assert.rejects(stores[1]!.exec("INSERT INTO stamp (d) VALUES (datetime('now', 'localtime'))"),
      (e: SqlError) => e.code === 'ERR_SQL_NONDETERMINISTIC');
    // Reads see the real clock and real randomness.
    const [a, b] = [stores[0]!.query('SELECT random() AS r')[0]!.r, stores[0]!.query('SELECT random() AS r')[0]!.r];
    assert.notEqual(a, b);
  });

  it('a transaction handle is dead once the function returned', async () => {
    const sql = await stores[0]!.transact('leak');
    assert.throws(() => sql.run('DELETE FROM item'), (e: SqlError) => e.code === 'ERR_SQL_BAD_TRANSACTION');
  });

  it('a restarted replica resumes from its database: nothing is re-executed', async () => {
    await stores[0]!.exec('INSERT INTO item (name, qty) VALUES (?, ?)', ['bolt', 0]);
    for (let i = 0; i < 50; i++) await stores[i % 3]!.exec('UPDATE item SET qty = qty + 1');
    await converged();
    const applied = stores[2]!.appliedIndex;
    await stores[2]!.close();
    // The log still holds every entry (no snapshot): those the database holds are skipped,
    // not run again (a second run of the UPDATEs would count them twice).
    stores[2] = await open(2);
    assert.ok(stores[2].appliedIndex >= applied);
    await stores[0]!.exec('UPDATE item SET qty = qty + 1');
    await converged();
    assert.deepEqual(stores[2].query('SELECT qty FROM item'), [{ qty: 51 }]);
  });

  it('a lagging replica installs a snapshot copy of the database and carries on', async () => {
    await stores[2]!.close();
    for (let i = 0; i < 200; i++) await stores[i % 2]!.exec('INSERT INTO item (name, qty) VALUES (?, ?)', [`n${i}`, i]);
    const snaps: number[] = [];
    stores[0]!.on('snapshot', (s) => snaps.push(s.index));
    await stores[0]!.snapshot();
    await stores[1]!.snapshot();
    assert.ok(snaps.length === 1 && snaps[0]! >= 200);
    for (let i = 0; i < 20; i++) await stores[0]!.exec('UPDATE item SET qty = qty + 1 WHERE name = ?', [`n${i}`]);
    stores[2] = await open(2);
    await converged();
    assert.ok(stores[2].status().snapshotIndex >= 200, 'it installed the snapshot');
    assert.equal(stores[2].query<{ n: number }>('SELECT count(*) AS n FROM item')[0]!.n, 200);
    assert.ok(!existsSync(join(base, '2', 'sqlite', 'state.db.install')));
  });

  it('a replica closed while it installs a snapshot keeps its old database and installs it at the next start', async () => {
    await stores[2]!.close();
    for (let i = 0; i < 48; i++)  // about 48 MiB
      await stores[i % 2]!.exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
                                 INSERT INTO stamp (b) SELECT randomblob(1024) FROM n`);
    await stores[0]!.snapshot();
    await stores[1]!.snapshot();
    const install = join(base, '2', 'sqlite', 'state.db.install');
    const reopened = await open(2, { catchUpOnOpen: false });
    stores[2] = reopened;
    await until('the copy beside the database', () => existsSync(install), 20_000);
    await reopened.close(); // mid-install
    assert.ok(!existsSync(install), 'the unfinished copy is removed');
    assert.equal(reopened.stats.snapshotsInstalled, 0);
    stores[2] = await open(2);
    await converged();
    assert.equal(stores[2].stats.snapshotsInstalled, 1);
  });

  it('migrations may only be appended; a changed one is refused at open', async () => {
    await stores[2]!.close();
    await assert.rejects(open(2, { migrations: [migrations[0]!, 'CREATE TABLE other (x)'] }),
      (e: SqlError) => e.code === 'ERR_SQL_MIGRATION');
    stores[2] = await open(2, { migrations: [...migrations, 'CREATE TABLE more (x)'] });
    await until('migration 2 on every replica', () =>
      stores.every((s) => s.query("SELECT name FROM sqlite_schema WHERE name = 'more'").length === 1));
    await converged();
  });
});
