// The linearizability checker used on recorded key-value histories: hand-written histories that
// must pass and ones that must be rejected, input validation, the time budget, agreement with a
// brute-force checker on small random histories, and large simulated histories (correct ones
// pass quickly; one stale read planted in them is found).
import { strict as assert } from 'node:assert';
import { checkLinearizable, type CheckResult, type HistoryOp, type KvOp } from './linearizability.js';

// Builders. A null completion time means the outcome is unknown (no result).
function done(client: number, op: KvOp, invokedAt: number, completedAt: number, result: HistoryOp['result']): HistoryOp {
  return result === undefined ? { client, op, invokedAt, completedAt } : { client, op, invokedAt, completedAt, result };
}
function lost(client: number, op: KvOp, invokedAt: number): HistoryOp {
  return { client, op, invokedAt, completedAt: null };
}
const put = (c: number, key: string, value: string, inv: number, ret: number | null): HistoryOp =>
  ret === null ? lost(c, { kind: 'put', key, value }, inv) : done(c, { kind: 'put', key, value }, inv, ret, { kind: 'put' });
const del = (c: number, key: string, inv: number, ret: number | null): HistoryOp =>
  ret === null ? lost(c, { kind: 'delete', key }, inv) : done(c, { kind: 'delete', key }, inv, ret, { kind: 'delete' });
const get = (c: number, key: string, value: string | null, inv: number, ret: number): HistoryOp =>
  done(c, { kind: 'get', key }, inv, ret, { kind: 'get', value });
const cas = (c: number, key: string, expect: string | null, value: string, succeeded: boolean | null, inv: number, ret: number | null): HistoryOp =>
  succeeded === null || ret === null
    ? lost(c, { kind: 'cas', key, expect, value }, inv)
    : done(c, { kind: 'cas', key, expect, value }, inv, ret, { kind: 'cas', succeeded });

function assertOk(r: CheckResult): void {
  assert.ok(r.ok, r.ok ? '' : `expected linearizable, got:\n${r.explanation}`);
}
function assertRejected(r: CheckResult, key: string): string {
  assert.equal(r.ok, false, 'expected the history to be rejected');
  assert.ok(!r.ok);
  assert.equal(r.key, key);
  assert.doesNotMatch(r.explanation, /inconclusive/i);
  return r.explanation;
}

// Deterministic PRNG (mulberry32) so a failure reproduces.
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('linearizability checker: histories that are linearizable', function () {
  it('a sequential history of put, get, cas and delete', () => {
    const h = [
      get(1, 'k', null, 0, 1),
      put(1, 'k', 'a', 2, 3),
      get(2, 'k', 'a', 4, 5),
      cas(1, 'k', 'a', 'b', true, 6, 7),
      cas(2, 'k', 'a', 'c', false, 8, 9),
      get(1, 'k', 'b', 10, 11),
      del(2, 'k', 12, 13),
      get(1, 'k', null, 14, 15),
      cas(2, 'k', null, 'd', true, 16, 17),
      get(1, 'k', 'd', 18, 19),
    ];
    const r = checkLinearizable(h);
    assert.deepEqual(r, { ok: true, keys: 1, ops: 10 });
  });

  it('overlapping writes, with concurrent reads seeing them in either order', () => {
    // put a and put b overlap; reads during them may see b then a (b linearized first) ...
    assertOk(
      checkLinearizable([
        put(1, 'k', 'a', 0, 10),
        put(2, 'k', 'b', 0, 10),
        get(3, 'k', 'b', 1, 3),
        get(3, 'k', 'a', 4, 6),
        get(3, 'k', 'a', 11, 12),
      ]),
    );
    // ... or a then b, and whichever went last is what every later read sees
    assertOk(
      checkLinearizable([
        put(1, 'k', 'a', 0, 10),
        put(2, 'k', 'b', 0, 10),
        get(3, 'k', 'a', 1, 3),
        get(3, 'k', 'b', 4, 6),
        get(4, 'k', 'b', 11, 12),
        get(3, 'k', 'b', 13, 14),
      ]),
    );
  });

  it('a read overlapping a write may return the old or the new value', () => {
    const base = [put(1, 'k', 'old', 0, 1), put(1, 'k', 'new', 2, 10)];
    assertOk(checkLinearizable([...base, get(2, 'k', 'old', 3, 9)]));
    assertOk(checkLinearizable([...base, get(2, 'k', 'new', 3, 9)]));
    // a read that ends exactly when the write begins still overlaps it (equal times are not ordered)
    assertOk(checkLinearizable([put(1, 'k', 'old', 0, 1), get(2, 'k', 'new', 1.5, 2), put(1, 'k', 'new', 2, 3)]));
  });

  it('a cas race where exactly one of several concurrent cas on the same value succeeds', () => {
    assertOk(
      checkLinearizable([
        put(1, 'k', 'v0', 0, 1),
        cas(1, 'k', 'v0', 'x', false, 2, 8),
        cas(2, 'k', 'v0', 'y', true, 2.5, 7),
        cas(3, 'k', 'v0', 'z', false, 3, 9),
        get(4, 'k', 'y', 10, 11),
      ]),
    );
  });

  it('a failed cas explained by a concurrent write that got in first', () => {
    // absent -> cas(absent -> a) fails: only possible if the overlapping put b went first
    assertOk(checkLinearizable([cas(1, 'k', null, 'a', false, 0, 5), put(2, 'k', 'b', 1, 6), get(1, 'k', 'b', 7, 8)]));
  });

  it('an unknown-outcome write that is observed later took effect', () => {
    assertOk(checkLinearizable([put(1, 'k', 'a', 0, 1), put(2, 'k', 'b', 2, null), get(3, 'k', 'a', 3, 4), get(3, 'k', 'b', 50, 51), get(1, 'k', 'b', 60, 61)]));
    // an unknown-outcome delete and cas, observed
    assertOk(checkLinearizable([put(1, 'k', 'a', 0, 1), del(2, 'k', 2, null), get(3, 'k', null, 3, 4)]));
    assertOk(checkLinearizable([put(1, 'k', 'a', 0, 1), cas(2, 'k', 'a', 'c', null, 2, null), get(3, 'k', 'c', 3, 4)]));
  });

  it('an unknown-outcome write that is never observed may never have happened', () => {
    assertOk(
      checkLinearizable([
        put(1, 'k', 'a', 0, 1),
        put(2, 'k', 'b', 2, null),
        del(2, 'k', 2.5, null),
        cas(4, 'k', 'a', 'c', null, 2.7, null),
        get(3, 'k', 'a', 3, 4),
        get(3, 'k', 'a', 100, 101),
        // unknown-outcome gets tell nothing and are ignored, whatever they carry
        lost(5, { kind: 'get', key: 'k' }, 102),
      ]),
    );
  });

  it('a chain of unknown-outcome writes, each observed through a cas', () => {
    assertOk(
      checkLinearizable([
        put(1, 'k', 'a', 0, 1),
        put(2, 'k', 'b', 2, null),
        cas(3, 'k', 'b', 'c', null, 3, null),
        cas(4, 'k', 'c', 'd', true, 4, 5),
        get(1, 'k', 'd', 6, 7),
      ]),
    );
  });

  it('writes nobody reads, placed in time to make failed cas fail', () => {
    // put p must go before 2 (so the first cas can fail) and put q after get a (so the last one
    // can): of two writes nobody reads, the one due first has to be tried first
    const h = [
      put(1, 'k', 'p', 0, 2),
      put(2, 'k', 'q', 0, 10),
      cas(3, 'k', 'x', 'z', false, 1, 2.5),
      put(4, 'k', 'a', 3, 4),
      get(5, 'k', 'a', 5, 6),
      cas(6, 'k', 'a', 'z', false, 7, 9),
    ];
    assertOk(checkLinearizable(h, { initial: () => 'x' }));
  });

  it('histories where a shortcut in the search once went wrong (found against the brute-force search)', () => {
    // a write nobody reads must be placed before the one due later
    assertOk(
      checkLinearizable([
        put(0, 'k0', 'c', 1, 5),
        cas(1, 'k1', 'a', 'b', false, 5, 5),
        cas(2, 'k0', null, 'c', false, 9, 10),
        put(3, 'k0', 'a', 2, 4),
        put(4, 'k0', 'a', 4, 9),
        lost(5, { kind: 'get', key: 'k0' }, 9),
        del(6, 'k0', 5, 6),
      ]),
    );
    // the unknown-outcome delete is needed at the end: a configuration reached having spent
    // it early must not stand in for the same one reached with it still unspent
    assertOk(
      checkLinearizable([
        put(0, 'k0', 'a', 3, null),
        del(1, 'k0', 1, null),
        put(2, 'k0', 'a', 0, 4),
        get(3, 'k0', null, 9, 10),
        cas(4, 'k0', null, 'a', true, 3, 3),
        put(5, 'k0', 'b', 5, 5),
        cas(6, 'k0', 'a', 'c', false, 1, 1),
      ]),
    );
  });

  it('starts from options.initial and checks keys independently', () => {
    const h = [get(1, 'x', 'seed-x', 0, 1), get(1, 'y', null, 2, 3), put(2, 'y', 'a', 0, 10), get(3, 'y', 'a', 4, 5)];
    assert.deepEqual(checkLinearizable(h, { initial: (k) => (k === 'x' ? 'seed-x' : null) }), { ok: true, keys: 2, ops: 4 });
    assertRejected(checkLinearizable(h), 'x');
  });

  it('an empty history', () => {
    assert.deepEqual(checkLinearizable([]), { ok: true, keys: 0, ops: 0 });
  });
});

describe('linearizability checker: histories that are not linearizable', function () {
  it('a stale read after a completed write', () => {
    const why = assertRejected(checkLinearizable([put(1, 'k', 'a', 0, 1), put(1, 'k', 'b', 2, 3), get(2, 'k', 'a', 4, 5)]), 'k');
    assert.match(why, /#2 client 2: get -> "a" \[4, 5\]/);
    assert.match(why, /#0 client 1: put "a"/); // who wrote what it saw
    assert.match(why, /#1 client 1: put "b"/); // the write it missed
  });

  it('two reads in real-time order seeing the value go back', () => {
    const why = assertRejected(
      checkLinearizable([
        put(1, 'k', 'a', 0, 1),
        put(2, 'k', 'b', 2, 20), // overlaps both reads, so either alone is fine
        get(3, 'k', 'b', 3, 4),
        get(4, 'k', 'a', 5, 6),
      ]),
      'k',
    );
    assert.match(why, /#3 client 4: get -> "a"/);
  });

  it('two successful cas with the same expected value on the same old value', () => {
    assertRejected(
      checkLinearizable([put(1, 'k', 'v0', 0, 1), cas(1, 'k', 'v0', 'x', true, 2, 8), cas(2, 'k', 'v0', 'y', true, 2.5, 7)]),
      'k',
    );
  });

  it('a failed cas on a value that must have been there', () => {
    assertRejected(checkLinearizable([put(1, 'k', 'a', 0, 1), cas(2, 'k', 'a', 'b', false, 2, 3)]), 'k');
  });

  it('a read of a value never written', () => {
    const why = assertRejected(checkLinearizable([put(1, 'k', 'a', 0, 10), get(2, 'k', 'ghost', 1, 2)]), 'k');
    assert.match(why, /saw "ghost", which no op on this key writes/);
  });

  it('a read seeing a write that was invoked after the read completed', () => {
    const why = assertRejected(checkLinearizable([get(1, 'k', 'a', 0, 1), put(2, 'k', 'a', 2, 3)]), 'k');
    assert.match(why, /#0 client 1: get -> "a" \[0, 1\]/);
    assert.match(why, /written by:\n\s+#1 client 2: put "a" \[2, 3\]/);
  });

  it('an unknown-outcome write seen by one read and then not seen by a later one', () => {
    assertRejected(
      checkLinearizable([put(1, 'k', 'a', 0, 1), put(2, 'k', 'b', 2, null), get(3, 'k', 'b', 3, 4), get(3, 'k', 'a', 5, 6)]),
      'k',
    );
    // the same with a delete of unknown outcome
    assertRejected(checkLinearizable([put(1, 'k', 'a', 0, 1), del(2, 'k', 2, null), get(3, 'k', null, 3, 4), get(4, 'k', 'a', 5, 6)]), 'k');
  });

  it('an unknown-outcome write cannot take effect before it was invoked', () => {
    assertRejected(checkLinearizable([put(1, 'k', 'a', 0, 1), get(3, 'k', 'b', 2, 3), put(2, 'k', 'b', 4, null)]), 'k');
  });

  it('names the failing key among good ones, and the smallest failing window', () => {
    const h: HistoryOp[] = [];
    for (let i = 0; i < 50; i++) {
      h.push(put(1, 'good', `g${i}`, 4 * i, 4 * i + 1), get(2, 'good', `g${i}`, 4 * i + 2, 4 * i + 3));
      h.push(put(3, 'bad', `b${i}`, 4 * i, 4 * i + 1), get(4, 'bad', i === 30 ? `b${i - 1}` : `b${i}`, 4 * i + 2, 4 * i + 3));
    }
    const why = assertRejected(checkLinearizable(h), 'bad');
    // the culprit is the read at i = 30 (index 4*30+3); nothing from long before or after it is listed
    assert.match(why, /#123 client 4: get -> "b29" \[122, 123\]/);
    assert.doesNotMatch(why, /#(3|7|199) /);
  });
});

describe('linearizability checker: input and budget', function () {
  it('rejects malformed histories with a TypeError that says what is wrong', () => {
    assert.throws(() => checkLinearizable([put(1, 'k', 'a', 5, 4)]), { name: 'TypeError', message: /history\[0\]: completedAt \(4\) is before invokedAt \(5\)/ });
    assert.throws(
      () => checkLinearizable([{ client: 1, op: { kind: 'get', key: 'k' }, invokedAt: 0, completedAt: 1, result: { kind: 'put' } }]),
      { name: 'TypeError', message: /result kind "put" does not match op kind "get"/ },
    );
    assert.throws(() => checkLinearizable([{ client: 1, op: { kind: 'get', key: 'k' }, invokedAt: 0, completedAt: 1 }]), {
      name: 'TypeError',
      message: /has no result/,
    });
    assert.throws(
      () => checkLinearizable([{ client: 1, op: { kind: 'put', key: 'k', value: 'a' }, invokedAt: 0, completedAt: null, result: { kind: 'put' } }]),
      { name: 'TypeError', message: /completedAt is null/ },
    );
    assert.throws(() => checkLinearizable([put(1, 'k', 'a', 0, 5), get(1, 'k', 'a', 3, 6)]), { name: 'TypeError', message: /client 1 has two ops at once/ });
    assert.throws(() => checkLinearizable([put(1, 'k', 'a', Number.NaN, 5)]), { name: 'TypeError', message: /invokedAt must be a finite number/ });
    assert.throws(() => checkLinearizable([], { budgetMs: 0 }), { name: 'TypeError', message: /budgetMs/ });
    // a client may go on after giving up on an op whose outcome it does not know
    assertOk(checkLinearizable([put(1, 'k', 'a', 0, null), get(1, 'k', null, 1, 2)]));
  });

  it('reports a search that runs out of budget as inconclusive, never as a pass', () => {
    // 30 overlapping writes, each read by one of 30 overlapping reads, then a read of a value none
    // wrote: refuting it means trying the writes in every order the reads allow, far more than
    // fits in 50 ms
    const h: HistoryOp[] = [];
    for (let c = 0; c < 30; c++) h.push(put(c, 'k', `v${c}`, 0, 10), get(100 + c, 'k', `v${c}`, 0, 10));
    assertOk(checkLinearizable(h, { budgetMs: 5_000 })); // fine as it is, and found at once
    h.push(get(99, 'k', 'nobody', 11, 12));
    const r = checkLinearizable(h, { budgetMs: 50 });
    assert.equal(r.ok, false);
    assert.ok(!r.ok);
    assert.equal(r.key, 'k');
    assert.match(r.explanation, /INCONCLUSIVE/);
  });
});

// A reference checker by exhaustive search over orders (no memo, no pruning), for tiny histories.
function bruteForce(history: readonly HistoryOp[], initial: string | null = null): boolean {
  const ops = history.filter((h) => !(h.op.kind === 'get' && h.completedAt === null));
  const placed = ops.map(() => false);
  const known = ops.filter((h) => h.completedAt !== null).length;
  const state = new Map<string, string | null>();
  const go = (count: number): boolean => {
    if (count === known) return true;
    for (let i = 0; i < ops.length; i++) {
      if (placed[i]) continue;
      const o = ops[i]!;
      // o may go next only if no unplaced op completed before o was invoked
      if (ops.some((p, j) => !placed[j] && p.completedAt !== null && p.completedAt < o.invokedAt)) continue;
      const before = state.has(o.op.key) ? state.get(o.op.key)! : initial;
      let after = before;
      const res = o.result;
      switch (o.op.kind) {
        case 'put':
          after = o.op.value;
          break;
        case 'delete':
          after = null;
          break;
        case 'get':
          if (res?.kind === 'get' && res.value !== before) continue;
          break;
        case 'cas': {
          const ok = before === o.op.expect;
          if (res?.kind === 'cas' && res.succeeded !== ok) continue;
          if (ok) after = o.op.value;
        }
      }
      placed[i] = true;
      const had = state.has(o.op.key);
      state.set(o.op.key, after);
      const found = go(count + (o.completedAt !== null ? 1 : 0));
      if (had) state.set(o.op.key, before);
      else state.delete(o.op.key);
      placed[i] = false;
      if (found) return true;
    }
    return false;
  };
  return go(0);
}

// Simulates clients against one atomic store: each op takes effect at a random instant inside
// its [invokedAt, completedAt] window, in that order. Unknown-outcome ops take effect (at a
// random instant after invocation, possibly after the client moved on) or not, at random.
function simulate(seed: number, opts: { clients: number; keys: number; ops: number; unknownRate: number; latency: number }): HistoryOp[] {
  const rand = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  interface Planned {
    client: number;
    key: string;
    kind: KvOp['kind'];
    inv: number;
    at: number; // when it takes effect; Infinity: never
    ret: number | null;
  }
  const planned: Planned[] = [];
  const clock = Array.from({ length: opts.clients }, () => rand());
  for (let n = 0; n < opts.ops; n++) {
    const client = n % opts.clients;
    const inv = clock[client]! + rand() * opts.latency * 0.2;
    const key = `key${Math.floor(rand() * opts.keys)}`;
    const x = rand();
    const kind: KvOp['kind'] = x < 0.4 ? 'get' : x < 0.7 ? 'put' : x < 0.9 ? 'cas' : 'delete';
    if (rand() < opts.unknownRate) {
      const at = rand() < 0.5 ? inv + rand() * opts.latency * 5 : Infinity;
      planned.push({ client, key, kind, inv, at, ret: null });
      clock[client] = inv + opts.latency; // timed out; moves on
    } else {
      const at = inv + rand() * opts.latency;
      const ret = at + rand() * opts.latency;
      planned.push({ client, key, kind, inv, at, ret });
      clock[client] = ret;
    }
  }
  // Apply in effect order; values are unique so a stale read can be planted unambiguously.
  const order = planned.map((_, i) => i).sort((a, b) => planned[a]!.at - planned[b]!.at);
  const store = new Map<string, string | null>();
  const history: HistoryOp[] = new Array(planned.length);
  const writtenTo = new Map<string, string[]>();
  let counter = 0;
  for (const i of order) {
    const p = planned[i]!;
    const cur = store.get(p.key) ?? null;
    const seen = writtenTo.get(p.key) ?? [];
    let op: KvOp;
    let result: HistoryOp['result'];
    const value = `v${counter++}`;
    switch (p.kind) {
      case 'get':
        op = { kind: 'get', key: p.key };
        result = { kind: 'get', value: cur };
        break;
      case 'put':
        op = { kind: 'put', key: p.key, value };
        result = { kind: 'put' };
        break;
      case 'delete':
        op = { kind: 'delete', key: p.key };
        result = { kind: 'delete' };
        break;
      case 'cas': {
        // mostly read-modify-write on the current value, sometimes on an older one (fails)
        const expect = rand() < 0.6 || seen.length === 0 ? cur : rand() < 0.2 ? null : pick(seen);
        op = { kind: 'cas', key: p.key, expect, value };
        result = { kind: 'cas', succeeded: expect === cur };
        break;
      }
    }
    if (p.at !== Infinity && op.kind !== 'get') {
      const applies = op.kind !== 'cas' || op.expect === cur;
      if (applies) {
        const next = op.kind === 'delete' ? null : op.value;
        store.set(p.key, next);
        if (next !== null) writtenTo.set(p.key, [...seen.slice(-20), next]);
      }
    }
    history[i] = p.ret === null ? { client: p.client, op, invokedAt: p.inv, completedAt: null } : { client: p.client, op, invokedAt: p.inv, completedAt: p.ret, result: result! };
  }
  return history;
}

// Plants a stale read: a late get now returns a value that a later, completed write had
// certainly overwritten before the get began (its writer completed before that write began).
function plantStaleRead(history: HistoryOp[]): { index: number; key: string } {
  const writes = (key: string) =>
    history
      .map((h, i) => ({ h, i }))
      .filter(({ h }) => h.op.key === key && h.completedAt !== null && (h.op.kind === 'put' || (h.op.kind === 'cas' && h.result?.kind === 'cas' && h.result.succeeded)));
  for (let g = history.length - 1; g >= 0; g--) {
    const read = history[g]!;
    if (read.op.kind !== 'get' || read.completedAt === null) continue;
    const ws = writes(read.op.key);
    for (const w2 of ws) {
      if (w2.h.completedAt! >= read.invokedAt) continue;
      const old = ws.find((p) => p.h.completedAt! < w2.h.invokedAt);
      if (!old) continue;
      const stale = (old.h.op as { value: string }).value;
      if (read.result?.kind === 'get' && read.result.value === stale) continue;
      history[g] = { ...read, result: { kind: 'get', value: stale } };
      return { index: g, key: read.op.key };
    }
  }
  throw new Error('no place to plant a stale read');
}

describe('linearizability checker: generated histories', function () {
  this.timeout(60_000);

  it('agrees with a brute-force search on 1000 small simulated histories, half of them with a result changed', () => {
    const rand = rng(7);
    let yes = 0;
    let no = 0;
    for (let t = 0; t < 1000; t++) {
      const n = 2 + Math.floor(rand() * 6);
      const h = simulate(1000 + t, { clients: 1 + Math.floor(rand() * 3), keys: 1 + Math.floor(rand() * 2), ops: n, unknownRate: 0.25, latency: 2 });
      // integer times make equal timestamps common
      for (let i = 0; i < h.length; i++) {
        const o = h[i]!;
        const inv = Math.round(o.invokedAt);
        h[i] = o.completedAt === null ? { ...o, invokedAt: inv } : { ...o, invokedAt: inv, completedAt: Math.max(inv, Math.round(o.completedAt)) };
      }
      if (rand() < 0.5) {
        const written = h.flatMap((o) => (o.op.kind === 'put' || o.op.kind === 'cas' ? [o.op.value] : []));
        for (let i = 0; i < h.length; i++) {
          const o = h[i]!;
          if (o.result?.kind === 'get') h[i] = { ...o, result: { kind: 'get', value: rand() < 0.3 ? null : (written[Math.floor(rand() * written.length)] ?? null) } };
          if (o.result?.kind === 'cas') h[i] = { ...o, result: { kind: 'cas', succeeded: !o.result.succeeded } };
          if (o.result?.kind === 'get' || o.result?.kind === 'cas') break;
        }
      }
      const expected = bruteForce(h);
      const got = checkLinearizable(h);
      assert.equal(got.ok, expected, `history ${t}: checker says ${got.ok}, brute force ${expected}\n${JSON.stringify(h, null, 1)}`);
      if (expected) yes++;
      else no++;
    }
    // both outcomes are well represented, so agreement means something
    assert.ok(yes > 200 && no > 100, `linearizable ${yes}, not ${no}`);
  });

  it('agrees with a brute-force search on 2000 random histories over three values (repeats, unknown outcomes, an initial value)', () => {
    const rand = rng(11);
    const value = (): string => 'abc'[Math.floor(rand() * 3)]!;
    const maybe = (): string | null => (rand() < 0.3 ? null : value());
    let yes = 0;
    let no = 0;
    for (let t = 0; t < 2000; t++) {
      const h: HistoryOp[] = [];
      const keys = rand() < 0.7 ? 1 : 2;
      for (let c = 0, n = 2 + Math.floor(rand() * 6); c < n; c++) {
        const key = `k${Math.floor(rand() * keys)}`;
        const inv = Math.floor(rand() * 10);
        const ret = rand() < 0.3 ? null : inv + Math.floor(rand() * 6);
        const x = rand();
        if (x < 0.35) h.push(ret === null ? lost(c, { kind: 'get', key }, inv) : get(c, key, maybe(), inv, ret));
        else if (x < 0.6) h.push(put(c, key, value(), inv, ret));
        else if (x < 0.85) h.push(cas(c, key, maybe(), value(), rand() < 0.5, inv, ret));
        else h.push(del(c, key, inv, ret));
      }
      const initial = rand() < 0.3 ? 'a' : null;
      const expected = bruteForce(h, initial);
      const got = checkLinearizable(h, { initial: () => initial });
      assert.equal(got.ok, expected, `history ${t} (initial ${initial}): checker says ${got.ok}, brute force ${expected}\n${JSON.stringify(h, null, 1)}`);
      if (expected) yes++;
      else no++;
    }
    assert.ok(yes > 400 && no > 400, `linearizable ${yes}, not ${no}`);
  });

  it('a simulated correct store: 20,000 ops, 30 keys, 10 clients, some unknown outcomes, passes in a few seconds', () => {
    const h = simulate(42, { clients: 10, keys: 30, ops: 20_000, unknownRate: 0.01, latency: 5 });
    assert.ok(h.filter((o) => o.completedAt === null).length > 100);
    const start = performance.now();
    const r = checkLinearizable(h, { budgetMs: 10_000 });
    const ms = performance.now() - start;
    assertOk(r);
    assert.deepEqual(r, { ok: true, keys: 30, ops: 20_000 });
    assert.ok(ms < 10_000, `took ${ms.toFixed(0)} ms`);
  });

  it('the same history with one read made stale is rejected, naming that read', () => {
    const h = simulate(42, { clients: 10, keys: 30, ops: 20_000, unknownRate: 0.01, latency: 5 });
    const { index, key } = plantStaleRead(h);
    const why = assertRejected(checkLinearizable(h, { budgetMs: 10_000 }), key);
    assert.match(why, new RegExp(`#${index} client \\d+: get -> `));
  });

  it('a hot key: 3,000 ops from 10 clients on one key, passes; planted stale read fails', () => {
    const h = simulate(9, { clients: 10, keys: 1, ops: 3000, unknownRate: 0.02, latency: 5 });
    assertOk(checkLinearizable(h, { budgetMs: 10_000 }));
    const { index } = plantStaleRead(h);
    const why = assertRejected(checkLinearizable(h, { budgetMs: 10_000 }), 'key0');
    assert.match(why, new RegExp(`#${index} client \\d+: get -> `));
  });
});
