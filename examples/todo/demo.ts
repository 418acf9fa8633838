// `npm run demo`: three replicas of the todo app (app.ts) in three processes on localhost.
// It writes through each of them, kills the leader with SIGKILL while a follower keeps
// writing, checks that no acknowledged todo was lost, restarts the killed replica from its
// data directory and watches it catch up, saying at each step what happens.
//
//   npm run demo -- [--dir <path>] [--ports 8100,8101,8102] [--election-timeout-ms 1000]
//
// Data goes to a new temporary directory, removed at the end, unless --dir is given (then it
// is kept, and a later run with the same --dir continues from it). Exit code 0 when every
// check passed; 1, with the reason, otherwise.
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Ready, Reply, ReplicaStatus, Request, TodoData } from './ipc.js';

const USAGE = 'usage: npm run demo -- [--dir <path>] [--ports 8100,8101,8102] [--election-timeout-ms 1000]';
const replicaScript = fileURLToPath(new URL('./replica.ts', import.meta.url));
const started = performance.now();
const now = (): number => performance.now();
const secs = (ms: number): string => `${(ms / 1000).toFixed(2)}s`;
const say = (line: string): void => console.log(`+${secs(now() - started)} ${line}`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

class DemoError extends Error {}

// ---- options ---------------------------------------------------------------------------

function options(): { dir: string | undefined; ports: number[]; electionTimeoutMs: number } {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        dir: { type: 'string' },
        ports: { type: 'string', default: '8100,8101,8102' },
        'election-timeout-ms': { type: 'string', default: '1000' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    throw new DemoError(`${(e as Error).message}\n${USAGE}`);
  }
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const ports = values.ports.split(',').map((p) => Number(p.trim()));
  if (ports.length < 3 || ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535) || new Set(ports).size !== ports.length)
    throw new DemoError(`--ports needs three (or more) distinct ports, like 8100,8101,8102; got ${JSON.stringify(values.ports)}`);
  const electionTimeoutMs = Number(values['election-timeout-ms']);
  if (!Number.isInteger(electionTimeoutMs) || electionTimeoutMs < 100 || electionTimeoutMs > 60_000)
    throw new DemoError(`--election-timeout-ms must be an integer from 100 to 60000; got ${JSON.stringify(values['election-timeout-ms'])}`);
  return { dir: values.dir, ports, electionTimeoutMs };
}

// ---- the replica processes -------------------------------------------------------------

type Call = Request extends infer R ? (R extends Request ? Omit<R, 'id'> : never) : never;
const portOf = (peerId: string | null): number => Number(peerId?.split(':')[1] ?? NaN);

/** One replica process, driven over IPC. */
class Replica {
  child: ChildProcess | undefined;
  #ready = false;
  #expectExit = false;
  #exited: Promise<void> = Promise.resolve();
  #next = 1;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  constructor(readonly port: number, readonly args: string[],
    readonly onCrash: (err: Error) => void) {}

  /** Starts the process (again: from the same data directory); resolves once it joined. */
  start(): Promise<void> {
    this.#ready = false;
    this.#expectExit = false;
    const child = fork(replicaScript, this.args, {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // The engine's own records (elections, leader changes) would interleave with the
      // demo's story: warnings only, unless RAFTSTORE_LOG asks for more.
      env: { ...process.env, RAFTSTORE_LOG: process.env.RAFTSTORE_LOG ?? 'warn' },
    });
    this.child = child;
    return new Promise<void>((resolveStart, rejectStart) => {
      this.#exited = new Promise<void>((resolveExit) => {
        child.on('exit', (code, signal) => {
          this.child = undefined;
          const err = new DemoError(`replica ${this.port} exited (${signal ? `killed by ${signal}` : `exit code ${code}`})`);
          for (const p of this.#pending.values()) p.reject(err);
          this.#pending.clear();
          rejectStart(err);
          if (this.#ready && !this.#expectExit) this.onCrash(err);
          resolveExit();
        });
      });
      child.on('error', (e) => rejectStart(new DemoError(`replica ${this.port} could not be started: ${e.message}`)));
      child.on('message', (raw) => {
        const m = raw as Ready | Reply;
        if ('ready' in m) {
          if (m.ready) {
            this.#ready = true;
            resolveStart();
          } else {
            const hint = m.code === 'ERR_RAFT_LISTEN' ? ` (is port ${this.port} in use? choose others with --ports)` : '';
            rejectStart(new DemoError(`replica ${this.port} could not start: ${m.message}${hint}`));
          }
          return;
        }
        const p = this.#pending.get(m.id);
        this.#pending.delete(m.id);
        if (m.ok) p?.resolve(m.result);
        else p?.reject(Object.assign(new DemoError(`replica ${this.port}: ${m.message}`), { code: m.code }));
      });
    });
  }

  call(req: Call, timeoutMs = 15_000): Promise<unknown> {
    const child = this.child;
    if (!child?.connected) return Promise.reject(new DemoError(`replica ${this.port} is not running`));
    const id = this.#next++;
    return new Promise((resolveCall, rejectCall) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        rejectCall(new DemoError(`replica ${this.port} did not answer ${req.op} within ${secs(timeoutMs)}`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (v) => (clearTimeout(timer), resolveCall(v)),
        reject: (e) => (clearTimeout(timer), rejectCall(e)),
      });
      child.send({ ...req, id });
    });
  }
  status(): Promise<ReplicaStatus> {
    return this.call({ op: 'status' }) as Promise<ReplicaStatus>;
  }
  list(): Promise<TodoData[]> {
    return this.call({ op: 'list' }) as Promise<TodoData[]>;
  }
  add(title: string, ref: string): Promise<TodoData> {
    return this.call({ op: 'add', title, ref }) as Promise<TodoData>;
  }

  /** SIGKILL: no chance to close anything; what it had made durable is all that survives. */
  kill(): Promise<void> {
    this.#expectExit = true;
    this.child?.kill('SIGKILL');
    return this.#exited;
  }
  /** Leaves the group cleanly (or is killed if it does not end within 5 s). */
  async close(): Promise<void> {
    if (!this.child) return;
    this.#expectExit = true;
    const timer = setTimeout(() => this.child?.kill('SIGKILL'), 5000);
    await this.call({ op: 'close' }).catch(() => this.child?.kill('SIGKILL'));
    await this.#exited;
    clearTimeout(timer);
  }
}

// ---- checks ------------------------------------------------------------------------------

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const end = now() + timeoutMs;
  for (;;) {
    const found = await probe();
    if (found !== undefined) return found;
    if (now() > end) throw new DemoError(`${what} did not happen within ${secs(timeoutMs)}`);
    await sleep(20);
  }
}

/** Waits until one of `among` leads in a term above `minTerm` and the others follow it. */
function leaderOf(among: Replica[], minTerm: number, timeoutMs: number): Promise<{ leader: Replica; term: number }> {
  return until('an elected leader that the others follow', timeoutMs, async () => {
    const all = await Promise.all(among.map((r) => r.status().catch(() => undefined)));
    const i = all.findIndex((s) => s?.role === 'leader' && s.term > minTerm);
    const s = all[i];
    if (!s || !all.every((o) => o?.leaderId === s.leaderId && o.term === s.term)) return undefined;
    return { leader: among[i]!, term: s.term };
  });
}

const listText = (list: TodoData[]): string => JSON.stringify(list);
/** Linearizable lists from every replica of `among`; they must be identical. */
async function sameTodos(among: Replica[]): Promise<TodoData[]> {
  const lists = await Promise.all(among.map((r) => r.list()));
  const first = lists[0]!;
  lists.forEach((l, i) => {
    if (listText(l) !== listText(first))
      throw new DemoError(`replicas ${among[0]!.port} and ${among[i]!.port} list different todos (${first.length} and ${l.length})`);
  });
  return first;
}

const names = (rs: Replica[]): string => {
  const ports = rs.map((r) => String(r.port));
  return ports.length <= 1 ? ports.join('') : `${ports.slice(0, -1).join(', ')} and ${ports[ports.length - 1]}`;
};

// ---- the demo ------------------------------------------------------------------------------

let replicas: Replica[] = [];
let tempDir: string | undefined;

async function main(): Promise<void> {
  const opts = options();
  const et = opts.electionTimeoutMs;
  const dataDir = opts.dir === undefined ? (tempDir = mkdtempSync(join(tmpdir(), 'raftstore-demo-'))) : resolve(opts.dir);
  mkdirSync(dataDir, { recursive: true });
  const run = randomBytes(4).toString('hex'); // refs of this run's todos: <run>-<n>
  let refs = 0;
  const ref = (): string => `${run}-${++refs}`;
  const acked = new Set<string>(); // every todo some replica acknowledged to us

  console.log(`raftstore demo: a todo app replicated over ${opts.ports.length} processes with Raft ` +
    `(election timeout ${secs(et)})`);
  replicas = opts.ports.map((port) => new Replica(port, [
    '--port', String(port), '--peers', opts.ports.join(','), '--dir', join(dataDir, String(port)),
    '--election-timeout-ms', String(et),
  ], fail));

  // 1. Start the replicas; they elect a leader among themselves.
  say(`starting replicas on 127.0.0.1:${opts.ports.join(', ')} (data in ${dataDir})`);
  await Promise.all(replicas.map((r) => r.start()));
  const first = await leaderOf(replicas, 0, 10_000 + 10 * et);
  const followers = replicas.filter((r) => r !== first.leader);
  say(`${first.leader.port} is the leader (term ${first.term}); ${names(followers)} follow it`);
  say(`each replica's live status page: http://127.0.0.1:${first.leader.port}/ (and the other ports); metrics at /metrics`);
  const earlier = (await first.leader.list()).length;
  if (earlier > 0) say(`${earlier} todos from an earlier run are already there`);

  // 2. Write through every replica. A follower forwards a write to the leader, which
  //    replicates it; the follower answers once it has applied the write itself.
  const titles = [['buy milk', 'call the plumber'], ['water the plants', 'book the dentist'],
    ['fix the bike light', 'renew the passport']];
  let explained = false;
  let firstTodo: TodoData | undefined;
  for (const [i, r] of replicas.entries()) {
    const added: string[] = [];
    for (const title of titles[i % titles.length]!) {
      const t = await r.add(title, ref());
      acked.add(t.ref!);
      firstTodo ??= t;
      added.push(`"${t.title}"`);
    }
    let role = 'the leader';
    if (r !== first.leader) {
      role = explained ? 'a follower' : 'a follower, which forwards each write to the leader';
      explained = true;
    }
    let line = `through ${r.port} (${role}): added ${added.join(', ')}`;
    if (i === replicas.length - 1 && firstTodo) {
      await r.call({ op: 'complete', todo: firstTodo.id });
      line += `; completed "${firstTodo.title}"`;
    }
    say(line);
  }
  const listed = await sameTodos(replicas);
  say(`all ${replicas.length} replicas list the same ${listed.length} todos (${listed.filter((t) => t.done).length} done)`);

  // 3. A follower keeps writing while the leader is killed with SIGKILL.
  const old = first.leader;
  const writer = followers[0]!;
  const survivors = replicas.filter((r) => r !== old);
  say(`${writer.port} now adds todos in the background, one after another`);
  const background: { start: number; end: number }[] = [];
  const retried = new Map<string, number>(); // error code -> how many
  let stop = false;
  const writing = (async () => {
    for (let n = 1; !stop; n++) {
      const r = ref();
      for (;;) {
        const start = now();
        try {
          await writer.add(`background todo ${n}`, r);
          background.push({ start, end: now() });
          acked.add(r);
          break;
        } catch (e) {
          if (!writer.child) throw e; // the writer itself is gone: fail() has the story
          // The outcome is unknown (a timeout, the leader changed under it): the same ref
          // again is safe, since addTodo returns the todo if the first attempt did happen.
          const code = (e as { code?: string }).code ?? 'ERR';
          retried.set(code, (retried.get(code) ?? 0) + 1);
          await sleep(20);
        }
      }
    }
  })();
  writing.catch(() => {}); // awaited below; a failure of the writer's process is reported by fail()
  await sleep(1000);
  const before = await old.status();
  say(`killing the leader ${old.port} with SIGKILL (${background.length} background todos acknowledged so far)`);
  const killedAt = now();
  await old.kill();
  const next = await leaderOf(survivors, first.term, 10_000 + 10 * et);
  say(`${next.leader.port} is the new leader (term ${next.term})`);
  const resumed = await until('a write after the kill', 10_000 + 10 * et,
    async () => background.find((w) => w.start > killedAt));
  const outage = resumed.end - killedAt;
  say(`writes resumed ${secs(outage)} after the kill (the election timeout is ${secs(et)}` +
    (outage < et ? '; the followers saw the dead leader\'s connections close and did not wait for the timeout)' : ')'));
  await sleep(1000);
  stop = true;
  await writing;
  say(`stopped the background writes: ${background.length} acknowledged` +
    (retried.size > 0
      ? `; retried with the same ref: ${[...retried].map(([code, n]) => `${n} × ${code}`).join(', ')}`
      : ', none failed'));
  const after = await sameTodos(survivors);
  const present = new Set(after.map((t) => t.ref));
  const lost = [...acked].filter((r) => !present.has(r));
  if (lost.length > 0)
    throw new DemoError(`${lost.length} of ${acked.size} acknowledged todos lost: refs ${lost.slice(0, 5).join(', ')}…`);
  say(`0 acknowledged todos lost: all ${acked.size} are on ${names(survivors)}, which list the same ${after.length} todos`);

  // 4. The killed replica restarts from its own data directory and catches up.
  say(`restarting ${old.port} from its data directory; it missed ${after.length - before.todos} todos while it was down`);
  const restartedAt = now();
  await old.start();
  const upAt = now();
  say(`${old.port} is up again after ${secs(upAt - restartedAt)} (mostly Node starting) and waits to hear from the leader`);
  // The leader retries an unreachable peer with a growing backoff, so it may take it up to
  // about a second to notice that the peer is back; then it sends what the peer lacks.
  let reachedAt: number | undefined;
  const caught = await until(`${old.port} catching up`, 30_000, async () => {
    const s = await old.status();
    if (s.leaderId !== null) reachedAt ??= now();
    return s.todos === after.length && s.leaderId !== null ? s : undefined;
  });
  const caughtAt = now();
  const mine = await old.list();
  if (listText(mine) !== listText(after)) throw new DemoError(`${old.port} restarted with different todos than the others`);
  const as = caught.role === 'follower' ? `a follower of ${portOf(caught.leaderId)}` : `the ${caught.role}`;
  const reached = reachedAt ?? caughtAt;
  const fast = caughtAt - reached < 0.1 * (caughtAt - upAt) + 50;
  say(`the leader reached ${old.port} ${secs(reached - upAt)} later and it caught up ` +
    `${fast ? 'at once' : `in ${secs(caughtAt - reached)}`}: the same ${after.length} todos; it is ${as} (term ${caught.term})`);
  const last = await old.add('celebrate', ref());
  acked.add(last.ref!);
  const final = await sameTodos(replicas);
  say(`through ${old.port}: added "${last.title}"; all ${replicas.length} replicas list the same ${final.length} todos`);

  // 5. Summary.
  console.log('');
  console.log(`summary: the leader ${old.port} was killed with SIGKILL while ${writer.port} kept writing;`);
  console.log(`  ${next.leader.port} took over in term ${next.term} and writes resumed after ${secs(outage)} ` +
    `(election timeout ${secs(et)});`);
  console.log(`  0 of ${acked.size} acknowledged todos were lost;`);
  console.log(`  ${old.port} restarted from its data directory and caught up ${secs(caughtAt - upAt)} after it was up.`);
  await Promise.all(replicas.map((r) => r.close()));
  if (tempDir !== undefined) {
    rmSync(tempDir, { recursive: true, force: true });
    say(`stopped the replicas and removed ${tempDir}`);
  } else say(`stopped the replicas; the data stays in ${dataDir} (run again with --dir to continue from it)`);
}

// ---- failure and interruption ------------------------------------------------------------

let ending = false;
/** Kills every replica process, removes a temporary data directory, and exits. */
async function stopAll(code: number): Promise<never> {
  if (!ending) {
    ending = true;
    await Promise.race([Promise.all(replicas.map((r) => r.kill())), sleep(3000)]);
    if (tempDir !== undefined) rmSync(tempDir, { recursive: true, force: true, maxRetries: 3 });
  }
  process.exit(code);
}

function fail(err: unknown): void {
  if (ending) return;
  console.error(`\ndemo failed: ${err instanceof Error ? err.message : String(err)}`);
  void stopAll(1);
}

process.on('SIGINT', () => {
  if (!ending) console.error('\ninterrupted: stopping the replicas');
  void stopAll(130);
});
process.on('SIGTERM', () => void stopAll(143));
// Whatever happens, no replica outlives the demo.
process.on('exit', () => {
  for (const r of replicas) r.child?.kill('SIGKILL');
});

main().then(() => process.exit(0), fail);
