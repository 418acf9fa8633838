// The object store: transactions re-executed on every replica, atomic, deterministic, with
// indices kept in step and rebuilt on restore.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RaftError, Store, StoreError, type Transaction, type TxContext, type View } from '../lib/index.js';
import { portBlock, until } from './helpers.js';
import { OrderedIndex } from '../lib/store/ordered.js';

class Todo {
  declare readonly id: number;
  declare readonly title: string;
  declare readonly owner: string;
  declare readonly tags: readonly string[];
  declare readonly due: number;
  declare readonly done: boolean;
  get late(): boolean {
    return !this.done && this.due < 100;
  }
  static computed = ['late'] as const; // a getter: not a field tx.create asks for
  static indices = {
    title: { kind: 'unique', key: (t: Todo) => t.title },
    tag: { kind: 'multi', key: (t: Todo) => t.tags },
    due: { kind: 'ordered', key: (t: Todo) => t.due },
  } as const;
}

class User {
  declare readonly id: number;
  declare readonly name: string;
  static indices = { name: { kind: 'unique', key: (u: User) => u.name } } as const;
}

const transactions = {
  addTodo(tx: Transaction, a: { title: string; tags?: string[]; due?: number }, ctx: TxContext) {
    return tx.create(Todo, { title: a.title, owner: '', tags: a.tags ?? [], due: a.due ?? ctx.now, done: false });
  },
  finish(tx: Transaction, id: number) {
    return tx.update(Todo, id, { done: true });
  },
  remove(tx: Transaction, id: number) {
    tx.delete(Todo, id);
  },
  // Makes changes, then throws: none of them may survive anywhere.
  addThenFail(tx: Transaction, a: { title: string }) {
    const t = tx.create(Todo, { title: a.title, owner: '', tags: ['x'], due: 1, done: false });
    tx.update(Todo, t.id, { due: 2 });
    tx.create(User, { name: a.title });
    throw new Error(`refused ${a.title} (id ${t.id})`);
  },
  stamp(_tx: Transaction, _a: null, ctx: TxContext) {
    return [ctx.now, ctx.random(), ctx.random(), ctx.index];
  },
  stamped(tx: Transaction, _a: null, ctx: TxContext) {
    const r = ctx.random();
    tx.create(Todo, { title: String(r), owner: '', tags: [], due: ctx.now, done: false });
    return [ctx.now, r, ctx.random(), ctx.index];
  },
  bulk(tx: Transaction, a: { n: number; from: number }) {
    for (let i = 0; i < a.n; i++) tx.create(User, { name: `u${a.from + i}` });
    return a.n;
  },
  promise(): Promise<number> {
    return Promise.resolve(1);
  },
};

// Everything a replica holds, as a hash: objects (with ids), in id order, and every index.
function stateHash(store: Store<typeof transactions>): string {
  const h = createHash('sha256');
  store.read((v) => {
    for (const o of v.all(Todo).sort((a, b) => a.id - b.id)) h.update(JSON.stringify(['Todo', o]));
    for (const o of v.all(User).sort((a, b) => a.id - b.id)) h.update(JSON.stringify(['User', o]));
  });
  h.update(JSON.stringify(indexDump(store)));
  return h.digest('hex');
}

// What the indices answer, compared with what a scan of the objects says they should.
function indexDump(store: Store<typeof transactions>): unknown {
  return store.read((v: View) => {
    const todos = v.all(Todo);
    const tags = [...new Set(todos.flatMap((t) => t.tags))].sort();
    return {
      titles: todos.map((t) => [t.title, v.findOne(Todo, 'title', t.title)?.id]),
      tags: tags.map((g) => [g, v.find(Todo, 'tag', g).map((t) => t.id)]),
      due: v.range(Todo, 'due').map((t) => t.id),
      users: v.all(User).map((u) => [u.name, v.findOne(User, 'name', u.name)?.id]),
    };
  });
}

function expectedIndex(store: Store<typeof transactions>): unknown {
  return store.read((v: View) => {
    const todos = v.all(Todo);
    const tags = [...new Set(todos.flatMap((t) => t.tags))].sort();
    return {
      titles: todos.map((t) => [t.title, t.id]),
      tags: tags.map((g) => [g, todos.filter((t) => t.tags.includes(g)).map((t) => t.id).sort((a, b) => a - b)]),
      due: [...todos].sort((a, b) => a.due - b.due || a.id - b.id).map((t) => t.id),
      users: v.all(User).map((u) => [u.name, u.id]),
    };
  });
}

// Compile-time checks (tsc runs in npm test); never called.
export function storeTypeChecks(s: Store<typeof transactions>): void {
  void s.transact('promise'); // a transaction without arguments
  void s.transact('stamp', null, { timeoutMs: 5 });
  // @ts-expect-error addTodo needs its arguments
  void s.transact('addTodo');
  // @ts-expect-error wrong arguments
  void s.transact('addTodo', { nope: 1 });
  s.read((v) => {
    const due: number[] = v.range(Todo, 'due', { lt: 5 }).map((t) => t.due); // typed objects
    const tagged = v.find(Todo, 'tag', 'x');
    // @ts-expect-error no such index
    v.find(Todo, 'nosuch', 1);
    // @ts-expect-error title is a unique index, not an ordered one
    v.range(Todo, 'title');
    // @ts-expect-error User's indices are not Todo's
    v.findOne(User, 'tag', 'x');
    return [due, tagged];
  });
}
export const createTypeChecks = {
  complete: (tx: Transaction) => tx.create(Todo, { title: 't', owner: '', tags: [], due: 1, done: false }),
  // @ts-expect-error a field is missing (done)
  missing: (tx: Transaction) => tx.create(Todo, { title: 't', owner: '', tags: [], due: 1 }),
  // @ts-expect-error not a field of Todo
  unknown: (tx: Transaction) => tx.create(Todo, { title: 't', owner: '', tags: [], due: 1, done: false, nope: 1 }),
  // @ts-expect-error the id is the store's
  id: (tx: Transaction) => tx.create(User, { id: 3, name: 'n' }),
  optional: (tx: Transaction) => tx.create(Note, { text: 'no title needed' }),
  typed: (tx: Transaction): string => tx.create(User, { name: 'n' }).name,
};
class Note {
  declare readonly id: number;
  declare readonly text: string;
  declare readonly title?: string;
  words(): number {
    return this.text.split(' ').length; // a method: not asked for either
  }
}

const base = await portBlock(100);

describe('Store', function () {
  this.timeout(60_000);
  let dir = '';
  let stores: Store<typeof transactions>[] = [];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'store-'));
  });
  afterEach(async () => {
    for (const s of stores) await s.close();
    stores = [];
    rmSync(dir, { recursive: true, force: true });
  });
  const open = (ports: number[], i: number, extra: Record<string, unknown> = {}) =>
    Store.open({
      group: 'todos', config: ports.map((p) => `127.0.0.1:${p}:0`).join(','), port: ports[i]!,
      dir: join(dir, String(ports[i])), electionTimeoutMs: 300, transactions, classes: [Todo, User], ...extra,
    });
  const three = async (offset: number, extra: Record<string, unknown> = {}) => {
    const ports = [base + offset, base + offset + 1, base + offset + 2];
    stores = await Promise.all(ports.map((_, i) => open(ports, i, extra)));
    return ports;
  };

  it('runs transactions from any replica; each replica reads its own writes', async () => {
    await three(0);
    const [a, b, c] = stores as [Store<typeof transactions>, Store<typeof transactions>, Store<typeof transactions>];
    const t1 = await a.transact('addTodo', { title: 'ship it', tags: ['work'], due: 50 });
    assert.equal(t1.title, 'ship it');
    assert.ok(t1 instanceof Todo && t1.late, 'objects are instances of their class');
    const t2 = await b.transact('addTodo', { title: 'test it', tags: ['work', 'qa'], due: 10 });
    assert.equal(b.get(Todo, t2.id)?.title, 'test it', 'read-your-writes on the proposing replica');
    const done = await c.transact('finish', t1.id);
    assert.equal(done.done, true);
    assert.equal(c.get(Todo, t1.id)?.done, true);
    await until('replicated', () => stores.every((s) => s.get(Todo, t1.id)?.done === true && s.all(Todo).length === 2));
    for (const s of stores) {
      assert.deepEqual(s.read((v) => v.find(Todo, 'tag', 'work').map((t) => t.title)), ['ship it', 'test it']);
      assert.deepEqual(s.read((v) => v.range(Todo, 'due', { lt: 20 }).map((t) => t.title)), ['test it']);
      assert.deepEqual(s.read((v) => v.range(Todo, 'due', { reverse: true, limit: 1 }).map((t) => t.id)), [t1.id]);
    }
    // A linearizable read on a follower sees a write acknowledged elsewhere.
    await c.transact('remove', t2.id);
    const follower = stores.find((s) => !s.isLeader)!;
    assert.equal(await follower.read((v) => v.get(Todo, t2.id), { consistency: 'linearizable' }), undefined);
    assert.throws(() => (t1 as { title: string }).title = 'x', TypeError, 'stored objects are frozen');
  });

  it('emits applied, role and leader events; status() reports the replica', async () => {
    await three(80);
    await until('a leader', () => stores.some((s) => s.isLeader));
    const seen = stores.map((s) => {
      const e = { applied: [] as number[], roles: [] as string[], leaders: [] as (string | null)[] };
      s.on('applied', (index) => e.applied.push(index));
      s.on('role', (role) => e.roles.push(role));
      s.on('leader', (id) => e.leaders.push(id));
      return e;
    });
    const old = stores.findIndex((s) => s.isLeader);
    const leader = stores[old]!;
    const status = leader.status();
    assert.equal(status.role, 'leader');
    assert.equal(status.leaderId, leader.leaderId);
    assert.equal(status.configuration.peers.length, 3);
    await stores[(old + 1) % 3]!.transact('addTodo', { title: 'evented' });
    await until('applied everywhere', () => seen.every((e) => e.applied.at(-1) === leader.appliedIndex));
    assert.equal(leader.status().appliedIndex, leader.appliedIndex);
    // The leader goes away: the others report the election and the new leader.
    await leader.close();
    const rest = stores.filter((_, i) => i !== old);
    await until('a new leader', () => rest.some((s) => s.isLeader));
    const next = rest.find((s) => s.isLeader)!;
    const e = seen[stores.indexOf(next)]!;
    assert.ok(e.roles.includes('leader'), `roles seen: ${e.roles}`);
    await until('leader event everywhere', () => rest.every((s) => seen[stores.indexOf(s)]!.leaders.at(-1) === next.leaderId));
    stores = rest;
  });

  it('a throwing transaction leaves no trace on any replica, and fails the same way everywhere', async () => {
    await three(10);
    const [a, b] = stores as [Store<typeof transactions>, Store<typeof transactions>];
    await a.transact('addTodo', { title: 'keep', tags: ['x'], due: 5 });
    const before = stores.map(stateHash);
    await assert.rejects(b.transact('addThenFail', { title: 'gone' }), /refused gone \(id 2\)/);
    // The unique index refuses a second "keep", undoing the create's other effects too.
    await assert.rejects(a.transact('addTodo', { title: 'keep' }), (e: unknown) => e instanceof StoreError && e.code === 'ERR_STORE_UNIQUE');
    await assert.rejects(a.transact('finish', 999), (e: unknown) => e instanceof StoreError && e.code === 'ERR_STORE_NO_OBJECT');
    await assert.rejects(a.transact('promise'), /returned a promise/); // no arguments: transact(name)
    const t = await a.transact('addTodo', { title: 'next' });
    assert.equal(t.id, 2, 'ids of failed transactions are not used up');
    await until('applied everywhere', () => stores.every((s) => s.appliedIndex === a.appliedIndex));
    const after = stores.map(stateHash);
    assert.equal(new Set(after).size, 1, 'every replica holds the same state');
    assert.notEqual(after[0], before[0]);
    for (const s of stores) {
      assert.equal(s.all(User).length, 0);
      assert.deepEqual(indexDump(s), expectedIndex(s));
    }
  });

  it('ctx.now and ctx.random() are the same on every replica; now never goes back', async () => {
    await three(20);
    const results: number[][] = [];
    const before = Date.now();
    for (const s of stores) results.push(await s.transact('stamp', null));
    for (const s of stores) results.push(await s.transact('stamped', null));
    const after = Date.now();
    // The leader's clock (this machine's) when it appended each entry.
    for (const [now] of results) assert.ok(now! >= before && now! <= after, `${now} within [${before}, ${after}]`);
    for (let i = 1; i < results.length; i++) assert.ok(results[i]![0]! >= results[i - 1]![0]!, 'now never goes back');
    const [, r1, r2] = results[0]!;
    assert.ok(r1! >= 0 && r1! < 1 && r1 !== r2);
    assert.notDeepEqual(results[0]!.slice(1, 3), results[1]!.slice(1, 3), 'different entries, different numbers');
    // What each replica computed went into its objects: the same everywhere.
    await until('applied everywhere', () => stores.every((s) => s.all(Todo).length === 3));
    assert.equal(new Set(stores.map(stateHash)).size, 1);
    const mine = stores[0]!.all(Todo)[0]!;
    assert.equal(mine.due, results[3]![0], 'the proposer got the values its replica stored');
  });

  it('refuses async transactions and unknown names; a replica that meets an unknown transaction stops', async () => {
    await assert.rejects(Store.open({ group: 'g', port: base + 30, dir: join(dir, 'x'), standalone: true,
      transactions: { async bad() { return 1; } } }), (e: unknown) => e instanceof StoreError && e.code === 'ERR_STORE_BAD_TRANSACTION');
    const ports = await three(40);
    await assert.rejects((stores[0]!.transact as (name: string, args: unknown) => Promise<unknown>)('nope', null),
      (e: unknown) => e instanceof StoreError && e.code === 'ERR_STORE_UNKNOWN_TRANSACTION');
    // An older version of the app on one replica: it lacks 'stamp'.
    const old = stores[2]!;
    await old.close();
    const { stamp: _dropped, ...older } = transactions;
    const errors: RaftError[] = [];
    const downgraded = await Store.open({
      group: 'todos', config: ports.map((p) => `127.0.0.1:${p}:0`).join(','), port: ports[2]!,
      dir: join(dir, String(ports[2])), electionTimeoutMs: 300, transactions: older as typeof transactions, classes: [Todo, User],
    });
    stores[2] = downgraded;
    downgraded.on('error', (e) => errors.push(e));
    await stores[0]!.transact('stamp', null);
    await until('the old replica stopped', () => errors.length > 0);
    assert.equal(errors[0]!.code, 'ERR_RAFT_STATE_MACHINE');
    assert.match(String(errors[0]!.message), /transaction "stamp", which this version does not define/);
  });

  it('snapshots and restores objects and indices; a lagging replica gets the snapshot', async () => {
    const ports = await three(50);
    const [a] = stores as [Store<typeof transactions>];
    const lag = stores.findIndex((s) => !s.isLeader && s !== a);
    for (let i = 0; i < 30; i++) await a.transact('addTodo', { title: `t${i}`, tags: [`g${i % 3}`], due: (i * 7) % 10 });
    await until('replicated', () => stores.every((s) => s.all(Todo).length === 30));
    await stores[lag]!.close();
    for (let i = 0; i < 10; i++) await a.transact('finish', i + 1);
    for (let i = 0; i < 5; i++) await a.transact('remove', 30 - i);
    await a.transact('bulk', { n: 1000, from: 0 });
    const events: { index: number; objects: number; bytes: number }[] = [];
    for (const s of stores) s.on('snapshot', (e) => events.push(e));
    for (const s of stores) if (s !== stores[lag]) await s.snapshot();
    assert.ok(events.length >= 1 && events[0]!.objects === 1025 && events[0]!.bytes > 0, JSON.stringify(events[0]));
    await a.transact('addTodo', { title: 'after', tags: ['g0'], due: 3 });
    const fresh = await open(ports, lag);
    stores[lag] = fresh;
    await until('caught up', () => fresh.appliedIndex === a.appliedIndex && fresh.all(Todo).length === 26, 20_000);
    assert.equal(stateHash(fresh), stateHash(a));
    assert.deepEqual(indexDump(fresh), expectedIndex(fresh));
    // Restart from its own snapshot plus the log after it.
    const li = stores.indexOf(a);
    await a.close();
    const again = await open(ports, li);
    stores[li] = again;
    assert.equal(again.all(User).length, 1000, 'open resolved with its own snapshot restored');
    await until('replayed', () => again.all(Todo).length === 26 && again.all(User).length === 1000);
    assert.equal(stateHash(again), stateHash(fresh));
    const t = await again.transact('addTodo', { title: 'new' });
    assert.equal(t.id, 1032, 'ids continue after a restore');
  });

  it('after a random workload with failovers, restarts and snapshot installs, every replica holds the same state', async () => {
    const extra = { snapshotLogThreshold: 40 };
    const ports = await three(60, extra);
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 6; round++) {
      const work: Promise<unknown>[] = [];
      for (let i = 0; i < 60; i++) {
        const s = stores[rnd(3)]!;
        const k = rnd(10);
        const id = 1 + rnd(40);
        const p = k < 5 ? s.transact('addTodo', { title: `r${round}-${i}-${rnd(5)}`, tags: [`g${rnd(4)}`], due: rnd(50) })
          : k < 7 ? s.transact('finish', id)
          : k < 8 ? s.transact('remove', id)
          : k < 9 ? s.transact('addThenFail', { title: `f${i}` })
          : s.transact('stamp', null);
        work.push(p.catch(() => undefined));
      }
      const li = stores.findIndex((s) => s.isLeader);
      if (round % 2 === 0 && li >= 0) {
        // The leader goes away with transactions in flight, and comes back from its directory
        // (its snapshot plus its log, or a newer snapshot from the new leader).
        await stores[li]!.close();
        stores[li] = await open(ports, li, extra);
      } else if (li >= 0) await stores[li]!.node.transferLeader().catch(() => undefined);
      await Promise.all(work);
      await until('a leader', () => stores.some((s) => s.isLeader));
    }
    const last = await stores[0]!.transact('stamp', null);
    await until('applied everywhere', () => stores.every((s) => s.appliedIndex >= last[3]!));
    const hashes = stores.map(stateHash);
    assert.equal(new Set(hashes).size, 1, 'identical state on every replica');
    for (const s of stores) assert.deepEqual(indexDump(s), expectedIndex(s));
  });

  it('a standalone store seeds a new cluster once, with its data intact', async () => {
    const solo = join(dir, 'solo');
    const standalone = await Store.open({ group: 'todos', dir: solo, standalone: true, transactions, classes: [Todo, User] });
    for (let i = 0; i < 25; i++) await standalone.transact('addTodo', { title: `s${i}`, tags: [`g${i % 4}`], due: i % 7 });
    await standalone.transact('remove', 3);
    await standalone.transact('bulk', { n: 25_000, from: 0 }); // more than one part
    assert.equal(standalone.all(Todo).length, 24);
    const before = stateHash(standalone);
    await standalone.close();
    // Reopened standalone, it replays its own log: same state.
    const again = await Store.open({ group: 'todos', dir: solo, standalone: true, transactions, classes: [Todo, User] });
    assert.equal(stateHash(again), before);
    await again.close();

    const ports = [base + 70, base + 71, base + 72];
    const config = ports.map((p) => `127.0.0.1:${p}:0`).join(',');
    const opts = (i: number, extra: Record<string, unknown> = {}) => ({
      group: 'todos', config, port: ports[i]!, dir: join(dir, String(ports[i])), electionTimeoutMs: 300,
      transactions, classes: [Todo, User], ...extra,
    });
    stores = await Promise.all([Store.open(opts(0, { importFrom: solo })), Store.open(opts(1)), Store.open(opts(2))]);
    assert.equal(stateHash(stores[0]!), before, 'open resolved with the data in');
    await until('seeded everywhere', () => stores.every((s) => s.all(User).length === 25_000));
    for (const s of stores) {
      assert.equal(stateHash(s), before);
      assert.deepEqual(indexDump(s), expectedIndex(s));
    }
    const next = await stores[1]!.transact('addTodo', { title: 'clustered' });
    assert.equal(next.id, 25_026, 'ids go on from the standalone store\'s');
    // A replica restarted with importFrom still set finds the cluster seeded: nothing happens.
    await stores[0]!.close();
    stores[0] = await Store.open(opts(0, { importFrom: solo }));
    await until('caught up', () => stores[0]!.get(Todo, next.id) !== undefined);
    assert.equal(stores[0]!.all(User).length, 25_000);
    // A cluster that already has data refuses a seed.
    const other = [base + 75, base + 76, base + 77];
    const used = other.map((p, i) => ({ ...opts(0), config: other.map((q) => `127.0.0.1:${q}:0`).join(','), port: p, dir: join(dir, `u${i}`) }));
    const [u0, u1] = await Promise.all([Store.open(used[0]!), Store.open(used[1]!)]);
    stores.push(u0!, u1!);
    await u0!.transact('addTodo', { title: 'already here' });
    await assert.rejects(Store.open({ ...used[2]!, importFrom: solo }),
      (e: unknown) => e instanceof StoreError && e.code === 'ERR_STORE_IMPORT' && /already has data/.test(e.message));
  });

  it('importFrom a missing, empty or clustered directory is refused and leaves the cluster unseeded', async () => {
    // A closed replica of another cluster, with a log of its own.
    const otherPorts = [base + 85, base + 86, base + 87];
    const other = (i: number) => ({
      group: 'todos', config: otherPorts.map((p) => `127.0.0.1:${p}:0`).join(','), port: otherPorts[i]!,
      dir: join(dir, `other${i}`), electionTimeoutMs: 300, transactions, classes: [Todo, User],
    });
    const [o0, o1] = await Promise.all([Store.open(other(0)), Store.open(other(1))]);
    await until('a leader', () => o0!.isLeader || o1!.isLeader);
    await (o0!.isLeader ? o0! : o1!).transact('addTodo', { title: 'theirs' });
    await Promise.all([o0!.close(), o1!.close()]);
    const empty = join(dir, 'empty');
    mkdirSync(empty);

    const ports = [base + 80, base + 81, base + 82];
    const opts = (i: number, extra: Record<string, unknown> = {}) => ({
      group: 'todos', config: ports.map((p) => `127.0.0.1:${p}:0`).join(','), port: ports[i]!,
      dir: join(dir, `c${i}`), electionTimeoutMs: 300, transactions, classes: [Todo, User], ...extra,
    });
    stores = await Promise.all([Store.open(opts(1)), Store.open(opts(2))]);
    const bad: [string, RegExp][] = [
      [join(dir, 'sollo'), /no such directory/], [empty, /is empty/], [join(dir, 'other0'), /replica of a cluster/],
    ];
    for (const [from, why] of bad)
      await assert.rejects(Store.open(opts(0, { importFrom: from })),
        (e: unknown) => e instanceof StoreError && e.code === 'ERR_STORE_IMPORT' && why.test(e.message) && /not seeded/.test(e.message));
    // Still unseeded: the right directory seeds it.
    const solo = join(dir, 'solo');
    const standalone = await Store.open({ group: 'todos', dir: solo, standalone: true, transactions, classes: [Todo, User] });
    for (let i = 0; i < 3; i++) await standalone.transact('addTodo', { title: `s${i}` });
    await standalone.close();
    stores.push(await Store.open(opts(0, { importFrom: solo })));
    await until('seeded everywhere', () => stores.every((s) => s.all(Todo).length === 3));
  });

  it('a restarted replica opens caught up: its reads see what was committed before (catchUpOnOpen)', async () => {
    const ports = await three(92);
    await until('a leader', () => stores.some((s) => s.isLeader));
    const li = stores.findIndex((s) => s.isLeader);
    const f = (li + 1) % 3; // a follower; transactions go through any replica
    for (let i = 0; i < 20; i++) await stores[li]!.transact('addTodo', { title: `a${i}` });
    await stores[f]!.close();
    for (let i = 0; i < 30; i++) await stores[li]!.transact('addTodo', { title: `b${i}` });
    stores[f] = await open(ports, f);
    assert.equal(stores[f]!.all(Todo).length, 50, 'open resolved with everything committed before it');
    // Without a majority, open waits up to openTimeoutMs; catchUpOnOpen: false does not wait.
    await Promise.all(stores.map((s) => s.close()));
    await assert.rejects(open(ports, f, { openTimeoutMs: 800 }),
      (e: unknown) => e instanceof RaftError && e.code === 'ERR_RAFT_TIMEOUT' && /catchUpOnOpen/.test(e.message));
    stores[f] = await open(ports, f, { catchUpOnOpen: false });
    assert.equal(stores[f]!.isLeader, false);
  });

  it('snapshots and restores 1,000,000 objects', async function () {
    this.timeout(180_000);
    const solo = join(dir, 'big');
    const open1 = () => Store.open({ group: 'big', dir: solo, standalone: true, transactions, classes: [Todo, User] });
    const big = await open1();
    const perTx = 50_000;
    for (let from = 0; from < 1_000_000; from += perTx) await big.transact('bulk', { n: perTx, from });
    assert.equal(big.read((v) => v.count(User)), 1_000_000);
    let event: { objects: number; bytes: number; durationMs: number } | undefined;
    big.on('snapshot', (e) => (event = e));
    const t0 = performance.now();
    await big.snapshot();
    const saveMs = performance.now() - t0;
    assert.equal(event?.objects, 1_000_000);
    await big.close();
    const t1 = performance.now();
    const again = await open1(); // from the snapshot, not by replaying 20 transactions
    const restoreMs = performance.now() - t1;
    stores.push(again);
    assert.equal(again.read((v) => v.count(User)), 1_000_000);
    assert.equal(again.read((v) => v.findOne(User, 'name', 'u765432')?.id), 765_433);
    assert.equal((await again.transact('bulk', { n: 1, from: 1_000_000 })), 1);
    assert.equal(again.read((v) => v.findOne(User, 'name', 'u1000000')?.id), 1_000_001);
    console.log(`      1,000,000 objects: snapshot ${Math.round(saveMs)} ms, ${(event!.bytes / 2 ** 20).toFixed(1)} MiB; reopen with restore ${Math.round(restoreMs)} ms`);
  });

  it('rejects bad options with coded errors', async () => {
    const ok = { group: 'g', port: base + 90, dir: join(dir, 'y'), transactions };
    const cases: [string, Record<string, unknown>][] = [
      ['config', {}], ['transactions', { transactions: 5 }], ['transactions.x', { transactions: { x: 1 } }],
      ['classes', { classes: 'Todo' }], ['standalone', { standalone: 'yes' }],
      ['group', { group: '', config: `127.0.0.1:${base + 90}:0` }],
      ['standalone with config', { standalone: true, config: '127.0.0.1:1:0' }],
      ['importFrom', { config: `127.0.0.1:${base + 90}:0`, importFrom: 5 }], ['importFrom standalone', { standalone: true, importFrom: '/x' }],
    ];
    for (const [what, patch] of cases)
      await assert.rejects(Store.open({ ...ok, ...patch } as never),
        (e: unknown) => (e instanceof RaftError || e instanceof StoreError) && /^ERR_/.test(e.code), what);
  });
});

describe('OrderedIndex', () => {
  it('answers ranges like a sorted scan, through inserts, deletes and a rebuild', () => {
    const ix = new OrderedIndex();
    const model = new Map<number, number>();
    let seed = 7;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const check = (): void => {
      const sorted = [...model].sort((a, b) => a[1] - b[1] || a[0] - b[0]);
      const lo = rnd(1000);
      const hi = lo + rnd(300);
      assert.deepEqual([...ix.range({ gte: lo, lt: hi })], sorted.filter(([, k]) => k >= lo && k < hi).map(([id]) => id));
      assert.deepEqual([...ix.range({ gt: lo, lte: hi }, true)], sorted.filter(([, k]) => k > lo && k <= hi).map(([id]) => id).reverse());
      assert.deepEqual([...ix.range()], sorted.map(([id]) => id));
      assert.equal(ix.size, model.size);
    };
    for (let i = 1; i <= 5000; i++) {
      const id = 1 + rnd(3000);
      if (model.has(id)) {
        assert.ok(ix.delete(model.get(id)!, id));
        model.delete(id);
      } else {
        const k = rnd(1000);
        ix.insert(k, id);
        model.set(id, k);
      }
      if (i % 500 === 0) check();
    }
    ix.build([...model].map(([id, key]) => ({ key, id })));
    check();
    assert.equal(ix.delete(-1, 1), false);
  });
});
