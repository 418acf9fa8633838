// A linearizability checker for histories recorded against a replicated key-value store, where
// each key is a register (put / get / cas / delete).
//
// Every operation touches exactly one key, so the history is checked one key at a time
// (P-compositionality: a history is linearizable iff each key's sub-history is), which keeps
// each search small. Each key is checked with the Wing & Gong search as improved by Lowe
// ("Testing for linearizability", 2017): walk the invocation/response events in time order,
// linearize ops just in time (an op may go next iff its invocation precedes the first
// response still pending), backtrack when a response is reached that cannot be explained, and
// remember every (set of linearized ops, register value) already explored so no configuration
// is searched twice.
//
// Timing convention: op a must precede op b iff a.completedAt < b.invokedAt. Equal timestamps
// count as overlapping, the conservative choice: clocks have finite resolution, and a checker
// that calls two ops ordered when they might not be would report bugs that are not there.

export type KvOp =
  | { kind: 'put'; key: string; value: string }
  | { kind: 'get'; key: string }
  // a transaction: if the key's current value equals `expect` (null = the key is absent), set it to `value`
  | { kind: 'cas'; key: string; expect: string | null; value: string }
  | { kind: 'delete'; key: string };
export type KvResult =
  | { kind: 'put' } | { kind: 'delete' }
  | { kind: 'get'; value: string | null }
  | { kind: 'cas'; succeeded: boolean };
export interface HistoryOp {
  client: number;            // who issued it (a client issues one op at a time)
  op: KvOp;
  invokedAt: number;         // ms, any common clock (float)
  // null: the outcome is unknown (the client crashed or timed out): the op may have taken
  // effect at any time after invokedAt, or never
  completedAt: number | null;
  result?: KvResult;          // present iff completedAt !== null
}
export type CheckResult =
  | { ok: true; keys: number; ops: number }
  | { ok: false; key: string; explanation: string };   // explanation: human readable, names the ops that cannot be ordered (the smallest failing prefix window you can cheaply report)

// The model, reduced to four step kinds over interned values (0 = absent). A delete is a
// write of 0; an unknown-outcome cas is a CAS that is only ever linearized when it succeeds
// (a cas that fails changes nothing, so "failed" is the same as "never happened").
const WRITE = 0; // state := arg
const READ = 1; // requires state == arg
const CAS = 2; // requires state == arg; state := arg2
const CASFAIL = 3; // requires state != arg

interface Rec {
  h: number; // index in the caller's history, for explanations
  kind: number;
  arg: number;
  arg2: number;
  inv: number;
  ret: number | null; // null: outcome unknown
}

// fail: frontier is the latest completion time at which the search was ever stuck, where the
// failure usually shows (a hint for explain()).
type Verdict = { verdict: 'ok' } | { verdict: 'fail'; frontier: number } | { verdict: 'timeout'; explored: number; deepest: number };

export function checkLinearizable(
  history: readonly HistoryOp[],
  options?: { initial?: (key: string) => string | null; budgetMs?: number },
): CheckResult {
  if (!Array.isArray(history)) throw new TypeError('checkLinearizable: history must be an array of HistoryOp');
  const budgetMs = options?.budgetMs ?? 60_000;
  if (typeof budgetMs !== 'number' || Number.isNaN(budgetMs) || budgetMs <= 0) {
    throw new TypeError(`checkLinearizable: budgetMs must be a positive number of milliseconds, got ${String(budgetMs)}`);
  }
  const initialOf = options?.initial ?? (() => null);

  validate(history);

  // Group by key in order of first appearance, so the key reported on failure is deterministic.
  const byKey = new Map<string, number[]>();
  history.forEach((h, i) => {
    const list = byKey.get(h.op.key);
    if (list) list.push(i);
    else byKey.set(h.op.key, [i]);
  });

  for (const [key, indices] of byKey) {
    const init = initialOf(key);
    if (init !== null && typeof init !== 'string') {
      throw new TypeError(`checkLinearizable: options.initial(${JSON.stringify(key)}) must return a string or null`);
    }
    const values = new Map<string, number>();
    const intern = (v: string | null): number => {
      if (v === null) return 0;
      let id = values.get(v);
      if (id === undefined) values.set(v, (id = values.size + 1));
      return id;
    };
    const initial = intern(init);
    const recs: Rec[] = [];
    for (const i of indices) {
      const rec = toRec(history[i]!, i, intern);
      if (rec) recs.push(rec);
    }
    const deadline = performance.now() + budgetMs;
    const v = search(recs, initial, deadline);
    if (v.verdict === 'ok') continue;
    if (v.verdict === 'timeout') {
      return {
        ok: false,
        key,
        explanation:
          `key ${JSON.stringify(key)}: INCONCLUSIVE, not a pass: the search over its ${indices.length} ops exceeded the ` +
          `budget of ${budgetMs} ms after ${v.explored} search steps (at most ${v.deepest} of the ` +
          `${recs.filter((r) => r.ret !== null).length} completed ops were ever ordered at once). Raise budgetMs or ` +
          `check a shorter history.`,
      };
    }
    // The verdict is settled; narrowing the failure down gets a budget of its own.
    const why = explain(history, key, recs, initial, init, v.frontier, performance.now() + budgetMs);
    return { ok: false, key, explanation: why };
  }
  return { ok: true, keys: byKey.size, ops: history.length };
}

// Input checks: a malformed history would otherwise be checked as something it is not.
function validate(history: readonly HistoryOp[]): void {
  const lastByClient = new Map<number, number>(); // client -> index of its latest op so far, by invokedAt
  const order = history.map((_, i) => i);
  history.forEach((h, i) => {
    const where = `checkLinearizable: history[${i}]`;
    if (typeof h !== 'object' || h === null) throw new TypeError(`${where} is not an object`);
    if (typeof h.client !== 'number' || !Number.isFinite(h.client)) throw new TypeError(`${where}.client must be a finite number`);
    const op = h.op as KvOp | undefined;
    if (typeof op !== 'object' || op === null) throw new TypeError(`${where}.op is missing`);
    if (typeof op.key !== 'string') throw new TypeError(`${where}.op.key must be a string`);
    switch (op.kind) {
      case 'put':
        if (typeof op.value !== 'string') throw new TypeError(`${where}: put value must be a string`);
        break;
      case 'cas':
        if (typeof op.value !== 'string') throw new TypeError(`${where}: cas value must be a string`);
        if (op.expect !== null && typeof op.expect !== 'string') throw new TypeError(`${where}: cas expect must be a string or null`);
        break;
      case 'get':
      case 'delete':
        break;
      default:
        throw new TypeError(`${where}.op.kind must be put, get, cas or delete, got ${JSON.stringify((op as { kind: unknown }).kind)}`);
    }
    if (typeof h.invokedAt !== 'number' || !Number.isFinite(h.invokedAt)) throw new TypeError(`${where}.invokedAt must be a finite number`);
    if (h.completedAt === null) {
      if (h.result !== undefined) throw new TypeError(`${where} has a result but completedAt is null (outcome unknown): drop the result or give completedAt`);
      return;
    }
    if (typeof h.completedAt !== 'number' || !Number.isFinite(h.completedAt)) {
      throw new TypeError(`${where}.completedAt must be a finite number, or null for an unknown outcome`);
    }
    if (h.completedAt < h.invokedAt) {
      throw new TypeError(`${where}: completedAt (${h.completedAt}) is before invokedAt (${h.invokedAt})`);
    }
    const r = h.result as KvResult | undefined;
    if (typeof r !== 'object' || r === null) throw new TypeError(`${where} completed (completedAt ${h.completedAt}) but has no result`);
    if (r.kind !== op.kind) throw new TypeError(`${where}: result kind ${JSON.stringify(r.kind)} does not match op kind ${JSON.stringify(op.kind)}`);
    if (r.kind === 'get' && r.value !== null && typeof r.value !== 'string') throw new TypeError(`${where}: get result value must be a string or null`);
    if (r.kind === 'cas' && typeof r.succeeded !== 'boolean') throw new TypeError(`${where}: cas result succeeded must be a boolean`);
  });
  // One op at a time per client: a completed op must end before the client's next one starts
  // (after an unknown outcome the client has given up on that op and may go on).
  order.sort((a, b) => history[a]!.invokedAt - history[b]!.invokedAt || a - b);
  for (const i of order) {
    const h = history[i]!;
    const j = lastByClient.get(h.client);
    if (j !== undefined) {
      const p = history[j]!;
      if (p.completedAt !== null && p.completedAt > h.invokedAt) {
        throw new TypeError(
          `checkLinearizable: client ${h.client} has two ops at once: history[${j}] [${p.invokedAt}, ${p.completedAt}] ` +
            `overlaps history[${i}] invoked at ${h.invokedAt} (a client issues one op at a time)`,
        );
      }
    }
    lastByClient.set(h.client, i);
  }
}

function toRec(h: HistoryOp, i: number, intern: (v: string | null) => number): Rec | undefined {
  const op = h.op;
  const ret = h.completedAt;
  const base = { h: i, inv: h.invokedAt, ret };
  switch (op.kind) {
    case 'put':
      return { ...base, kind: WRITE, arg: intern(op.value), arg2: 0 };
    case 'delete':
      return { ...base, kind: WRITE, arg: 0, arg2: 0 };
    case 'get': {
      // A get with an unknown outcome returned nothing to check and changed nothing: drop it.
      if (ret === null) return undefined;
      return { ...base, kind: READ, arg: intern((h.result as { value: string | null }).value), arg2: 0 };
    }
    case 'cas': {
      const succeeded = ret === null || (h.result as { succeeded: boolean }).succeeded;
      return { ...base, kind: succeeded ? CAS : CASFAIL, arg: intern(op.expect), arg2: intern(op.value) };
    }
  }
}

// Deterministic pseudo-random 32-bit values for Zobrist hashing (mulberry32).
function zobristTable(n: number): Int32Array {
  const z = new Int32Array(n);
  let s = 0x2545f491;
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    z[i] = t ^ (t >>> 14);
  }
  return z;
}

// The memo of explored configurations: a chained hash table over flat typed arrays, since
// millions of small objects (one per configuration) made garbage collection a third of the
// run time. An entry is (first pending return, candidates before it, value, flag, unknown ops
// used); see visit() in search() for what that identifies.
class Memo {
  private heads: Int32Array = new Int32Array(1 << 12); // bucket -> entry + 1, 0 = empty
  private count = 0;
  private eNext: Int32Array = new Int32Array(1 << 10);
  private eHash: Int32Array = new Int32Array(1 << 10);
  private eFirst: Int32Array = new Int32Array(1 << 10);
  private eState: Int32Array = new Int32Array(1 << 10);
  private eFlag: Int32Array = new Int32Array(1 << 10);
  private eCand: Int32Array = new Int32Array(1 << 10); // offset into cands; length = eCand[e+1] - eCand[e]
  private cands: Int32Array = new Int32Array(1 << 12);
  private us: Uint32Array; // uWords words per entry: the unknown-outcome ops used
  constructor(private readonly uWords: number) {
    this.us = new Uint32Array(Math.max(1, uWords) << 10);
  }
  // Adds the configuration and returns true, or returns false if an entry covers it: same first
  // return, candidates, value and flag, with a subset of its unknown-outcome ops used.
  visit(hash: number, first: number, state: number, flag: number, cand: Int32Array, n: number, ubits: Uint32Array): boolean {
    const uw = this.uWords;
    for (let e = this.heads[hash & (this.heads.length - 1)]! - 1; e >= 0; e = this.eNext[e]! - 1) {
      if (this.eHash[e] !== hash || this.eFirst[e] !== first || this.eState[e] !== state || this.eFlag[e] !== flag) continue;
      const off = this.eCand[e]!;
      if (this.eCand[e + 1]! - off !== n) continue;
      let same = true;
      for (let j = 0; j < n && same; j++) same = this.cands[off + j] === cand[j];
      for (let w = 0; w < uw && same; w++) same = (this.us[e * uw + w]! & ~ubits[w]!) === 0;
      if (same) return false;
    }
    let e = this.count;
    if (e + 2 > this.eNext.length) this.growEntries();
    const off = this.eCand[e]!;
    if (off + n > this.cands.length) this.cands = grow(this.cands, off + n);
    this.cands.set(cand.subarray(0, n), off);
    this.eCand[e + 1] = off + n;
    for (let w = 0; w < uw; w++) this.us[e * uw + w] = ubits[w]!;
    this.eHash[e] = hash;
    this.eFirst[e] = first;
    this.eState[e] = state;
    this.eFlag[e] = flag;
    this.count = ++e;
    if (this.count > this.heads.length) this.rehash();
    else {
      const b = hash & (this.heads.length - 1);
      this.eNext[e - 1] = this.heads[b]!;
      this.heads[b] = e;
    }
    return true;
  }
  private growEntries(): void {
    const size = this.eNext.length * 2;
    this.eNext = grow(this.eNext, size);
    this.eHash = grow(this.eHash, size);
    this.eFirst = grow(this.eFirst, size);
    this.eState = grow(this.eState, size);
    this.eFlag = grow(this.eFlag, size);
    this.eCand = grow(this.eCand, size);
    if (this.uWords > 0) this.us = growU(this.us, size * this.uWords);
  }
  private rehash(): void {
    this.heads = new Int32Array(this.heads.length * 2);
    const mask = this.heads.length - 1;
    for (let e = 0; e < this.count; e++) {
      const b = this.eHash[e]! & mask;
      this.eNext[e] = this.heads[b]!;
      this.heads[b] = e + 1;
    }
  }
}
function grow(a: Int32Array, atLeast: number): Int32Array {
  const b = new Int32Array(Math.max(atLeast, a.length * 2));
  b.set(a);
  return b;
}
function growU(a: Uint32Array, atLeast: number): Uint32Array {
  const b = new Uint32Array(Math.max(atLeast, a.length * 2));
  b.set(a);
  return b;
}

// The search for one key. Known-outcome ops are numbered 0..nk-1 and sit in a doubly linked
// list of call/return events sorted by time (unlinked and relinked in O(1) as they are
// linearized and undone, "dancing links"). Unknown-outcome ops never return, so they get a
// separate list sorted by invocation: each is a candidate while its invocation is no later
// than the first pending return.
//
// These rules shrink the search without losing any answer:
// - A read-only op (a get, a failed cas) that can go next at the current value goes next, with
//   no alternative tried: in any valid order it could be moved up to here (it changes nothing,
//   and nothing pending had to precede it), so only writes are ever branched on.
// - Take a valid order and delete every unknown-outcome op that changes nothing, or whose new
//   value no op looks at before it is overwritten: what remains is still valid (the ops in
//   between cannot tell), and unknown-outcome ops never have to precede anything. So an
//   unknown-outcome op is placed only if it changes the value, and then the next write waits
//   until something has observed it: a get of the new value, a cas expecting it, or a failed cas
//   that expected the old one. Without this every pending unknown write would be tried in every
//   order at every step, exponential in their number.
// - For the same reason one is not tried at all when no remaining op could observe it.
// - Interchangeable unknown-outcome ops are tried one per step: of several with the same effect
//   (say, deletes) only the earliest invoked still unused, since once invoked each stays
//   available and any order using a later one works with the earlier one instead. A write whose
//   value no remaining op mentions ("blind": it can only have served to make a failed cas fail)
//   sets a stand-in value BLIND, so all blind writes have the same effect and are
//   interchangeable too. Without this every combination of them would be tried.
// Known ops are tried before unknown-outcome ones, which are only needed to explain reads.
const FRESH = 0; // a new node: look for a read-only op first
const WRITES = 1; // branching over known writes
const UNKNOWN = 2; // then over unknown-outcome ops
const FORCED = 3; // a frame whose read-only op had no alternative
function search(recs: readonly Rec[], initial: number, deadline: number): Verdict {
  const knownRecs = recs.filter((r) => r.ret !== null);
  // An unknown-outcome cas that would set the very value it expects can never change anything.
  const unknownRecs = recs.filter((r) => r.ret === null && !(r.kind === CAS && r.arg === r.arg2)).sort((a, b) => a.inv - b.inv);
  const nk = knownRecs.length;
  const nu = unknownRecs.length;
  const n = nk + nu;
  if (nk === 0) return { verdict: 'ok' };
  const kind = new Uint8Array(n);
  const arg = new Int32Array(n);
  const arg2 = new Int32Array(n);
  let maxValue = initial;
  [...knownRecs, ...unknownRecs].forEach((r, i) => {
    // a successful cas that sets the value it expected is just a read
    kind[i] = r.kind === CAS && r.arg === r.arg2 ? READ : r.kind;
    arg[i] = r.arg;
    arg2[i] = r.arg2;
    maxValue = Math.max(maxValue, r.arg, r.arg2);
  });
  // Remaining ops that could observe a value: obs[v] counts gets of v and cas expecting v,
  // fails[v] failed cas that expected v (they need the value to be anything but v).
  const BLIND = maxValue + 1;
  const obs = new Int32Array(BLIND + 1);
  const fails = new Int32Array(BLIND + 1);
  for (let i = 0; i < n; i++) {
    if (kind[i] === CASFAIL) fails[arg[i]!]!++;
    else if (kind[i] !== WRITE) obs[arg[i]!]!++;
  }

  // Known events: call of op i = 2i, its return = 2i+1 (odd = return); HEAD/TAIL sentinels,
  // TAIL odd so a scan for calls stops there without a separate check.
  const HEAD = 2 * nk;
  const TAIL = 2 * nk + 1;
  const next = new Int32Array(2 * nk + 2);
  const prev = new Int32Array(2 * nk + 2);
  const etime = new Float64Array(2 * nk + 2);
  const events: number[] = [];
  for (let i = 0; i < nk; i++) {
    const r = knownRecs[i]!;
    etime[2 * i] = r.inv;
    etime[2 * i + 1] = r.ret!;
    events.push(2 * i, 2 * i + 1);
  }
  // At equal times calls sort before returns: the ops overlap (see the timing convention).
  events.sort((a, b) => etime[a]! - etime[b]! || (a & 1) - (b & 1) || a - b);
  let last = HEAD;
  for (const e of events) {
    next[last] = e;
    prev[e] = last;
    last = e;
  }
  next[last] = TAIL;
  prev[TAIL] = last;

  // Unknown-outcome ops: list node u is op nk+u; UTAIL's invocation time +Infinity ends scans.
  const UHEAD = nu;
  const UTAIL = nu + 1;
  const unext = new Int32Array(nu + 2);
  const uprev = new Int32Array(nu + 2);
  const uinv = new Float64Array(nu + 2);
  for (let u = 0; u < nu; u++) {
    uinv[u] = unknownRecs[u]!.inv;
    unext[u] = u + 1 === nu ? UTAIL : u + 1;
    uprev[u] = u === 0 ? UHEAD : u - 1;
  }
  unext[UHEAD] = nu === 0 ? UTAIL : 0;
  uprev[UTAIL] = nu === 0 ? UHEAD : nu - 1;
  uinv[UTAIL] = Infinity;
  // sameAs[u]: the previous unknown-outcome op with exactly the same effect, or -1.
  const sameAs = new Int32Array(nu);
  const lastWith = new Map<string, number>();
  for (let u = 0; u < nu; u++) {
    const sig = `${kind[nk + u]} ${arg[nk + u]} ${arg2[nk + u]}`;
    sameAs[u] = lastWith.get(sig) ?? -1;
    lastWith.set(sig, u);
  }

  // Linearizing op i unlinks it (and the reverse relinks it, in the reverse order); the obs and
  // fails counts and the set of unknown-outcome ops used (a bitset) follow along.
  const ubits = new Uint32Array((nu + 31) >>> 5);
  let knownLeft = nk;
  let deepest = 0;
  const lift = (i: number): void => {
    const k = kind[i]!;
    if (k === CASFAIL) fails[arg[i]!]!--;
    else if (k !== WRITE) obs[arg[i]!]!--;
    if (i < nk) {
      const c = 2 * i;
      const r = c + 1;
      next[prev[c]!] = next[c]!;
      prev[next[c]!] = prev[c]!;
      next[prev[r]!] = next[r]!;
      prev[next[r]!] = prev[r]!;
      if (nk - --knownLeft > deepest) deepest = nk - knownLeft;
    } else {
      const u = i - nk;
      unext[uprev[u]!] = unext[u]!;
      uprev[unext[u]!] = uprev[u]!;
      ubits[u >>> 5]! |= 1 << (u & 31);
    }
  };
  const unlift = (i: number): void => {
    const k = kind[i]!;
    if (k === CASFAIL) fails[arg[i]!]!++;
    else if (k !== WRITE) obs[arg[i]!]!++;
    if (i < nk) {
      const c = 2 * i;
      const r = c + 1;
      next[prev[r]!] = r;
      prev[next[r]!] = r;
      next[prev[c]!] = c;
      prev[next[c]!] = c;
      knownLeft++;
    } else {
      const u = i - nk;
      unext[uprev[u]!] = u;
      uprev[unext[u]!] = u;
      ubits[u >>> 5]! &= ~(1 << (u & 31));
    }
  };

  // The memo. The set of known-outcome ops linearized is identified compactly by the first
  // pending return r and the pending calls before it (the candidates): every op linearized so
  // far was a candidate when it went, so was invoked before r, and every op invoked before r is
  // either linearized or one of those candidates. That is O(concurrency) to read off the list,
  // compare and store, instead of O(n) for a bitset, with a Zobrist hash of it.
  // Unknown-outcome ops used are kept as a bitset, and not hashed: a configuration is covered
  // by one with the same known part, value and flag explored with a subset of them used, since
  // having more of them left to place can only help. A covered configuration has failed: one
  // on the current path cannot recur, the set only grows along it.
  const zob = zobristTable(nk);
  const scratch = new Int32Array(nk);
  const memo = new Memo(ubits.length);
  const visit = (st: number, fl: number): boolean => {
    let e = next[HEAD]!;
    let cnt = 0;
    let h = Math.imul(st + 1, 0x85ebca6b) ^ Math.imul(fl, 0xc2b2ae35);
    for (; (e & 1) === 0; e = next[e]!) {
      h ^= zob[e >>> 1]!;
      scratch[cnt++] = e;
    }
    h ^= Math.imul(e + 1, 0x9e3779b1);
    return memo.visit(h ^ (h >>> 15), e, st, fl, scratch, cnt, ubits);
  };

  // The DFS stack: the op linearized at each level, and what to restore when it is undone.
  const fOp = new Int32Array(n);
  const fState = new Int32Array(n);
  const fFlag = new Int32Array(n);
  const fPhase = new Uint8Array(n);
  const fCur = new Int32Array(n);
  const fT = new Float64Array(n);
  const fBlind = new Uint8Array(n);
  const fEdf = new Int32Array(n);
  let depth = 0;

  let state = initial;
  // 0, or 1 + the value before the last unknown-outcome op while nothing has observed it yet
  let flag = 0;
  let explored = 0;
  visit(state, flag);

  let phase = FRESH;
  let cur = 0; // scan position: a known event (WRITES) or an unknown list node (UNKNOWN)
  let tRet = 0; // time of the first pending return, bounding the unknown-outcome candidates
  let blindSeen = 0; // the unknown scan has passed a blind write
  let edf = -1; // the blind known write to try at this node
  let frontier = -Infinity;
  for (;;) {
    if (knownLeft === 0) return { verdict: 'ok' };
    if ((++explored & 0xfff) === 0 && performance.now() > deadline) return { verdict: 'timeout', explored, deepest };
    let chosen = -1;
    let ns = state;
    let nf = 0;
    if (phase === FRESH) {
      let ro = -1;
      for (cur = next[HEAD]!; (cur & 1) === 0; cur = next[cur]!) {
        const i = cur >>> 1;
        const k = kind[i]!;
        if (k === READ ? state === arg[i] : k === CASFAIL && state !== arg[i]) {
          ro = i;
          break;
        }
      }
      if (ro >= 0) {
        // a get here reads the unobserved value itself; a failed cas observes it if it expected the old one
        nf = flag !== 0 && kind[ro] === CASFAIL && arg[ro] !== flag - 1 ? flag : 0;
        lift(ro);
        if (visit(state, nf)) {
          chosen = ro;
          phase = FORCED;
        } else {
          unlift(ro);
          phase = FORCED; // no alternative: backtrack
        }
      } else {
        phase = WRITES;
        // of the blind known writes that could go next, only the one due first (see above)
        edf = -1;
        for (cur = next[HEAD]!; (cur & 1) === 0; cur = next[cur]!) {
          const i = cur >>> 1;
          if (kind[i] === WRITE && obs[arg[i]!] === 0 && fails[arg[i]!] === 0 && (edf < 0 || etime[2 * i + 1]! < etime[2 * edf + 1]!)) edf = i;
        }
        cur = next[HEAD]!;
      }
    }
    if (phase === WRITES) {
      for (; (cur & 1) === 0; cur = next[cur]!) {
        const i = cur >>> 1;
        const k = kind[i]!;
        if (k === WRITE) {
          if (flag !== 0) continue; // the unknown-outcome op before must be observed first
          ns = arg[i]!;
          if (obs[ns] === 0 && fails[ns] === 0) {
            if (i !== edf) continue;
            ns = BLIND;
          }
        } else if (k === CAS) {
          if (state !== arg[i]) continue;
          ns = arg2[i]!;
          if (obs[ns] === 0 && fails[ns] === 0) ns = BLIND;
        } else continue;
        lift(i);
        if (visit(ns, 0)) {
          chosen = i;
          break;
        }
        unlift(i);
      }
      if (chosen < 0) {
        tRet = etime[cur]!; // cur is the first pending return
        if (tRet > frontier) frontier = tRet;
        phase = UNKNOWN;
        cur = unext[UHEAD]!;
        blindSeen = 0;
      }
    }
    if (phase === UNKNOWN) {
      for (; uinv[cur]! <= tRet; cur = unext[cur]!) {
        const i = nk + cur;
        if (kind[i] === WRITE) {
          if (flag !== 0) continue;
          ns = arg[i]!;
        } else {
          if (state !== arg[i]) continue;
          ns = arg2[i]!;
        }
        if (obs[ns] === 0 && fails[ns] === 0) {
          if (kind[i] === WRITE) {
            if (blindSeen) continue; // an earlier blind write was (or could not be) tried
            blindSeen = 1;
          }
          ns = BLIND;
        }
        if (ns === state || (obs[ns] === 0 && fails[state] === 0)) continue;
        let same = sameAs[cur]!;
        while (same >= 0 && (ubits[same >>> 5]! & (1 << (same & 31))) !== 0) same = sameAs[same]!;
        if (same >= 0) continue; // an earlier one with the same effect is unused
        lift(i);
        if (visit(ns, state + 1)) {
          chosen = i;
          nf = state + 1;
          break;
        }
        unlift(i);
      }
    }
    if (chosen >= 0) {
      // Descend, remembering how to resume this node's scan.
      fOp[depth] = chosen;
      fState[depth] = state;
      fFlag[depth] = flag;
      fPhase[depth] = phase;
      fCur[depth] = cur;
      fT[depth] = tRet;
      fBlind[depth] = blindSeen;
      fEdf[depth] = edf;
      depth++;
      state = ns;
      flag = nf;
      phase = FRESH;
      continue;
    }
    // Backtrack: nothing can go next here; undo choices until one has an alternative left.
    for (;;) {
      if (depth === 0) return { verdict: 'fail', frontier };
      depth--;
      unlift(fOp[depth]!);
      state = fState[depth]!;
      flag = fFlag[depth]!;
      phase = fPhase[depth]!;
      if (phase === FORCED) continue;
      tRet = fT[depth]!;
      blindSeen = fBlind[depth]!;
      edf = fEdf[depth]!;
      cur = phase === WRITES ? next[fCur[depth]!]! : unext[fCur[depth]!]!;
      break;
    }
  }
}

// The failing prefix: the first completion time T such that the history cut at T (the ops
// invoked by T, those still running then taken as outcome unknown) is not linearizable.
// Linearizability is prefix-closed, so T can be found by binary search over completion times;
// the search's frontier makes that one probe most of the time. The ops that complete at T are
// the ones that cannot be placed.
function explain(
  history: readonly HistoryOp[],
  key: string,
  recs: readonly Rec[],
  initial: number,
  initialValue: string | null,
  frontier: number,
  deadline: number,
): string {
  const times = [...new Set(recs.filter((r) => r.ret !== null).map((r) => r.ret!))].sort((a, b) => a - b);
  const cut = (t: number): Rec[] => {
    const out: Rec[] = [];
    for (const r of recs) {
      if (r.inv > t) continue;
      if (r.ret === null || r.ret <= t) out.push(r);
      // still running at t: writes may or may not have happened; a get or a failed cas has no effect
      else if (r.kind === WRITE || r.kind === CAS) out.push({ ...r, ret: null });
    }
    return out;
  };
  let lo = -1; // cut at times[lo] is linearizable (-1: the empty history)
  let hi = times.length - 1; // cut at times[hi] is not (the whole history)
  let minimized = true;
  // Probes the cut at times[mid], narrowing [lo, hi]; false when out of time.
  const probe = (mid: number): boolean => {
    const v = search(cut(times[mid]!), initial, deadline);
    if (v.verdict === 'timeout') return (minimized = false);
    if (v.verdict === 'ok') lo = mid;
    else hi = mid;
    return true;
  };
  // The cut at the search's frontier fails too: a valid order for it would be a valid partial
  // order of the whole history getting past the frontier, which the search would have found
  // (the ops still running at the cut are placed, if at all, with the effect they really had).
  // It is nearly always the answer, so one probe, of the completion before it, confirms it.
  const f = times.indexOf(frontier);
  if (f >= 0) hi = f;
  if (hi - lo > 1) probe(hi - 1);
  while (minimized && hi - lo > 1) probe((lo + hi) >>> 1);
  const t = times[hi]!;
  const culprits = recs.filter((r) => r.ret === t).map((r) => r.h);
  const window = cut(t);
  const lines: string[] = [];
  const q = (v: string | null): string => (v === null ? 'absent' : JSON.stringify(v));
  lines.push(
    `key ${JSON.stringify(key)}: not linearizable. ` +
      (minimized
        ? `The ops on it up to ${t} ms have no valid order as a register (initial value ${q(initialValue)}), though ` +
          `everything before has; it fails when ${culprits.length === 1 ? 'this op completes' : 'these ops complete'}:`
        : `(Time ran out narrowing it down: the history up to ${t} ms already fails, maybe earlier.) It fails when this completes:`),
  );
  for (const h of culprits) lines.push(`  ${describe(history, h)}`);

  // What the culprit saw, and who wrote it: most failures are a value read at the wrong time.
  for (const h of culprits) {
    const c = history[h]!;
    let seenValue: string | null | undefined;
    if (c.op.kind === 'get') seenValue = (c.result as { value: string | null }).value;
    else if (c.op.kind === 'cas' && (c.result as { succeeded: boolean }).succeeded) seenValue = c.op.expect;
    if (seenValue === undefined) continue;
    const writers = recs.filter((r) => {
      const w = history[r.h]!.op;
      return (w.kind === 'put' && w.value === seenValue) || (w.kind === 'cas' && w.value === seenValue) || (w.kind === 'delete' && seenValue === null);
    });
    const init = seenValue === initialValue ? ' (it is also the initial value)' : '';
    if (writers.length === 0) {
      lines.push(`  #${h} saw ${q(seenValue)}, which no op on this key writes${init}.`);
    } else {
      lines.push(`  #${h} saw ${q(seenValue)}${init}, written by:`);
      for (const w of writers.slice(0, 5)) lines.push(`    ${describe(history, w.h)}`);
      if (writers.length > 5) lines.push(`    ... and ${writers.length - 5} more`);
    }
  }

  // The window: ops that overlap a culprit, and the few that completed just before it began.
  // Unknown-outcome ops overlap everything after their invocation, so they are only counted.
  const cs = culprits.map((h) => history[h]!);
  const from = Math.min(...cs.map((c) => c.invokedAt));
  const lostOps = window.filter((r) => history[r.h]!.completedAt === null).map((r) => r.h);
  const overlapping = window.filter((r) => !culprits.includes(r.h) && history[r.h]!.completedAt !== null && (r.ret === null || r.ret >= from));
  const before = window
    .filter((r) => r.ret !== null && r.ret < from)
    .sort((a, b) => b.ret! - a.ret!)
    .slice(0, 3);
  const context = [...before, ...overlapping].sort((a, b) => a.inv - b.inv || a.h - b.h);
  if (context.length > 0) {
    lines.push('  It has to be ordered among (the last ops to complete before it, and those overlapping it):');
    for (const r of context.slice(0, 15)) lines.push(`    ${describe(history, r.h)}`);
    if (context.length > 15) lines.push(`    ... and ${context.length - 15} more`);
  } else {
    lines.push('  No other op on this key overlaps it or completed before it.');
  }
  if (lostOps.length > 0) {
    lines.push(
      `  Also considered: ${lostOps.length} write${lostOps.length === 1 ? '' : 's'} of unknown outcome invoked by then, ` +
        `which may have taken effect at any later time or never (${lostOps.slice(0, 8).map((h) => `#${h}`).join(', ')}${lostOps.length > 8 ? ', ...' : ''}).`,
    );
  }
  return lines.join('\n');
}

function describe(history: readonly HistoryOp[], i: number): string {
  const h = history[i]!;
  const q = (v: string | null): string => (v === null ? 'absent' : JSON.stringify(v));
  const op = h.op;
  let what: string;
  switch (op.kind) {
    case 'put':
      what = `put ${q(op.value)}`;
      break;
    case 'delete':
      what = 'delete';
      break;
    case 'get':
      what = h.result ? `get -> ${q((h.result as { value: string | null }).value)}` : 'get';
      break;
    case 'cas':
      what = `cas ${q(op.expect)} -> ${q(op.value)}` + (h.result ? ((h.result as { succeeded: boolean }).succeeded ? ' succeeded' : ' failed') : '');
      break;
  }
  const end = h.completedAt === null ? 'outcome unknown' : `${h.completedAt}`;
  return `#${i} client ${h.client}: ${what} [${h.invokedAt}, ${end}]`;
}
