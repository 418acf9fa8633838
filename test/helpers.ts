import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

// Waiting in tests (for a condition, or for a probe to produce a value, with a deadline), and
// the loopback ports tests listen on.
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves once `cond()` holds; fails naming `what` after `ms`. */
export async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  await eventually(what, () => (cond() ? true : undefined), ms);
}

/** Resolves with the first value `probe()` gives other than undefined; fails after `ms`. */
export async function eventually<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** The lowest port the kernel picks as a connection's source port. */
export function ephemeralPortLow(): number {
  return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0]) || 32768;
}

const handedOut: Array<[number, number]> = [];

/**
 * The first of `count` consecutive loopback ports for a test file to listen on, each free when
 * handed out and never handed out twice in this process. They lie below the kernel's ephemeral
 * range: a port in that range can become the source port of any outgoing connection (a replica
 * redialling a peer that is down), and a replica restarting on it then fails to bind (CI saw it).
 */
export async function portBlock(count: number): Promise<number> {
  const ephemeralLow = ephemeralPortLow();
  const lo = 10_000;
  const hi = ephemeralLow - count;
  if (hi <= lo) throw new Error(`no room for ${count} ports below the ephemeral range (${ephemeralLow})`);
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = lo + Math.floor(Math.random() * (hi - lo));
    if (handedOut.some(([a, b]) => base < b && a < base + count)) continue;
    const block: [number, number] = [base, base + count];
    handedOut.push(block); // before probing, so that concurrent calls cannot pick it too
    if (await allFree(base, count)) return base;
    handedOut.splice(handedOut.indexOf(block), 1);
  }
  throw new Error(`no ${count} consecutive free loopback ports in ${lo}-${ephemeralLow - 1}`);
}

async function allFree(base: number, count: number): Promise<boolean> {
  for (let p = base; p < base + count; p++) if ((await tryListen(p)) !== undefined) return false;
  return true;
}

/** Listens on 127.0.0.1:`port` and closes again; resolves with the error if it could not. */
export function tryListen(port: number): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', resolve);
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(undefined)));
  });
}

export type ChildReply = { ok: true; result: unknown } | { ok: false; code: string; message: string };

/** A replica in a child process (a fixture under test/fixtures) driven over IPC:
 *  it sends {ready: true} once open, then answers {id, op, ...} with {id, ok, ...}. */
export class ChildReplica {
  child!: ChildProcess;
  #next = 1;
  #waiting = new Map<number, (r: ChildReply) => void>();
  constructor(readonly fixture: string, readonly port: number, readonly args: string[]) {}

  async start(): Promise<void> {
    this.child = fork(this.fixture, this.args, { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.#waiting.clear();
    await new Promise<void>((resolve, reject) => {
      this.child.once('exit', (code, signal) => reject(new Error(`replica ${this.port} exited (${code ?? signal})`)));
      this.child.on('message', (m: { ready?: boolean; id?: number } & ChildReply) => {
        if (m.ready) return resolve();
        const done = m.id === undefined ? undefined : this.#waiting.get(m.id);
        if (done && m.id !== undefined) {
          this.#waiting.delete(m.id);
          done(m);
        }
      });
    });
    this.child.removeAllListeners('exit');
    this.child.on('exit', () => {
      for (const done of this.#waiting.values()) done({ ok: false, code: 'EXITED', message: 'exited' });
      this.#waiting.clear();
    });
  }
  call(op: string, extra: Record<string, unknown> = {}): Promise<ChildReply> {
    const id = this.#next++;
    return new Promise((resolve) => {
      this.#waiting.set(id, resolve);
      const gone = (): void => {
        this.#waiting.delete(id);
        resolve({ ok: false, code: 'EXITED', message: 'not connected' });
      };
      if (!this.child.connected) return gone();
      this.child.send({ id, op, ...extra }, (err) => {
        if (err) gone();
      });
    });
  }
  kill(): void {
    this.child.kill('SIGKILL');
  }
}

/** Each child replica's `status` reply (the fixtures' status has applied and commitIndex). */
export async function childStatuses<S>(replicas: readonly ChildReplica[]): Promise<S[]> {
  return Promise.all(replicas.map(async (r) => ((await r.call('status')) as { result: S }).result));
}

/** Waits until every child replica applied its group's last commit; their statuses then. */
export async function childrenCaughtUp<S extends { applied: number; commitIndex: number }>(
  replicas: readonly ChildReplica[], ms = 60_000): Promise<S[]> {
  await eventually('every replica caught up', async () => {
    const s = await childStatuses<S>(replicas);
    const top = Math.max(...s.map((x) => x.commitIndex));
    return s.every((x) => x.applied >= top && x.commitIndex === top) ? true : undefined;
  }, ms);
  return childStatuses<S>(replicas);
}
