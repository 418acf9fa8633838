// `npm run demo` (examples/todo/demo.ts) end to end: three replica processes, the leader
// killed with SIGKILL, no acknowledged todo lost, the killed replica caught up; and its
// failure path (a port in use) exits 1 and leaves no temporary directory behind.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { portBlock } from './helpers.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const base = await portBlock(3);

function demo(args: string[]): Promise<{ code: number | null; out: string; err: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'examples/todo/demo.ts', ...args],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err, ms: performance.now() - started }));
  });
}

const dataDir = (out: string): string => /\(data in (\S+)\)/.exec(out)?.[1] ?? '';

describe('npm run demo', function () {
  this.timeout(60_000);

  it('kills the leader, loses no acknowledged todo, and the restarted replica catches up', async () => {
    const ports = [base, base + 1, base + 2];
    const r = await demo(['--ports', ports.join(',')]);
    const show = `\n--- stdout\n${r.out}--- stderr\n${r.err}`;
    assert.equal(r.code, 0, `exit code ${r.code}${show}`);
    const first = /\+[\d.]+s (\d+) is the leader \(term (\d+)\)/.exec(r.out);
    assert.ok(first, `a first leader${show}`);
    const killed = Number(first[1]);
    assert.ok(ports.includes(killed));
    assert.match(r.out, new RegExp(`killing the leader ${killed} with SIGKILL`), show);
    const next = /\+[\d.]+s (\d+) is the new leader \(term (\d+)\)/.exec(r.out);
    assert.ok(next, `a new leader${show}`);
    assert.notEqual(Number(next[1]), killed);
    assert.ok(Number(next[2]) > Number(first[2]), 'in a later term');
    assert.match(r.out, /writes resumed [\d.]+s after the kill/, show);
    const kept = /0 acknowledged todos lost: all (\d+) are on/.exec(r.out);
    assert.ok(kept && Number(kept[1]) > 6, `acknowledged todos counted, none lost${show}`);
    assert.match(r.out, new RegExp(`the leader reached ${killed} [\\d.]+s later and it caught up .*: ` +
      `the same \\d+ todos; it is a follower of ${next[1]}`), show);
    assert.match(r.out, /all 3 replicas list the same \d+ todos\n\nsummary:/, show);
    assert.match(r.out, /0 of \d+ acknowledged todos were lost/, show);
    const dir = dataDir(r.out);
    assert.ok(dir !== '' && !existsSync(dir), `the temporary data directory ${dir} was removed`);
    assert.ok(r.out.split('\n').length <= 30, `readable, not chatty (${r.out.split('\n').length} lines)`);
  });

  it('fails with exit code 1 and a clear message when a port is taken, and cleans up', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(base + 1, '127.0.0.1', resolve));
    try {
      const r = await demo(['--ports', [base, base + 1, base + 2].join(',')]);
      assert.equal(r.code, 1, r.out + r.err);
      assert.match(r.err, new RegExp(`demo failed: replica ${base + 1} could not start: .*in use`));
      const dir = dataDir(r.out);
      assert.ok(dir !== '' && !existsSync(dir), `the temporary data directory ${dir} was removed`);
    } finally {
      taken.close();
    }
  });

  it('refuses bad flags', async () => {
    const r = await demo(['--ports', '8100,8101']);
    assert.equal(r.code, 1);
    assert.match(r.err, /--ports needs three \(or more\) distinct ports/);
  });
});
