// The README's code as a reader copies it: every ```ts block type-checks against the package's
// public types (dist/*.d.ts, through the package's own name), and the three-process app in
// examples/http (quoted whole in the README) runs as written: writes through any replica, the
// leader killed, writes go on.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { eventually } from './helpers.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const tsBlocks = [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1] ?? '');

describe('README code', function () {
  this.timeout(120_000);

  it('quotes examples/http/server.ts whole', () => {
    const example = readFileSync(join(root, 'examples/http/server.ts'), 'utf8');
    assert.ok(tsBlocks.includes(example), 'the README\'s three-process app differs from examples/http/server.ts');
  });

  it('type-checks every ts block against the published types', () => {
    assert.ok(tsBlocks.length >= 3, `only ${tsBlocks.length} ts blocks found`);
    // Inside the package, so that `from 'raftstore'` resolves to dist/ as it does for a user.
    const dir = join(root, 'build/readme-snippets');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const files = tsBlocks.map((code, i) => {
      const file = `snippet-${i + 1}.ts`;
      // A module of its own, so that blocks do not see each other's names.
      writeFileSync(join(dir, file), `${code}\nexport {};\n`);
      return file;
    });
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
      extends: '../../tsconfig.json', compilerOptions: { types: ['node'] }, include: files,
    }));
    try {
      execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', dir], { encoding: 'utf8' });
    } catch (e) {
      assert.fail(`README snippets do not compile:\n${(e as { stdout?: string }).stdout ?? String(e)}`);
    }
  });
});

function http(port: number, method: 'GET' | 'POST', body = ''): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path: '/' }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const WAIT = 30_000; // for elections and process start-up on a loaded machine

describe('examples/http: three processes', function () {
  this.timeout(120_000);
  let dir = '';
  const procs = new Map<number, ChildProcess>();
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'raftstore-http-'));
  });
  after(() => {
    for (const p of procs.values()) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  // undefined until the replica answers 200 (a refused connection or a 503 is "not yet").
  const post = (port: number, text: string): Promise<unknown> =>
    http(port, 'POST', text).then((r) => (r.status === 200 ? JSON.parse(r.text) : undefined), () => undefined);
  const texts = (port: number): Promise<string[] | undefined> =>
    http(port, 'GET').then(
      (r) => (r.status === 200 ? (JSON.parse(r.text) as { text: string }[]).map((n) => n.text) : undefined),
      () => undefined);

  it('writes through any replica, loses its leader, and keeps going', async () => {
    for (const i of [1, 2, 3]) {
      // tsx from this package (the data directories go in a temporary cwd).
      const tsx = pathToFileURL(createRequire(join(root, 'package.json')).resolve('tsx')).href;
      const p = spawn(process.execPath, ['--import', tsx, join(root, 'examples/http/server.ts'), String(i)],
        { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] });
      procs.set(i, p);
    }
    await eventually('three replicas serving', async () => ((await Promise.all([1, 2, 3].map((i) => texts(3000 + i)))).every(Boolean) ? true : undefined), WAIT);
    for (const i of [1, 2, 3]) assert.ok(await eventually(`a note through replica ${i}`, () => post(3000 + i, `note ${i}`), WAIT));
    assert.deepEqual(await texts(3002), ['note 1', 'note 2', 'note 3']);

    // As the README finds it: the package's bin.
    const out = execFileSync(process.execPath, [join(root, 'bin/raftstore.js'), 'get_leader', '--group=notes',
      '--conf=127.0.0.1:8201:0,127.0.0.1:8202:0,127.0.0.1:8203:0'], { encoding: 'utf8' });
    const leader = Number(/127\.0\.0\.1:820(\d):0/.exec(out)?.[1]);
    assert.ok([1, 2, 3].includes(leader), `leader from get_leader: ${out}`);
    procs.get(leader)?.kill('SIGKILL');
    procs.delete(leader);

    const [a, b] = [...procs.keys()] as [number, number];
    await eventually('a write after the leader died', () => post(3000 + a, 'after the kill'), WAIT);
    assert.deepEqual(await eventually('the note on the other survivor', async () => {
      const t = await texts(3000 + b);
      return t?.length === 4 ? t : undefined;
    }, WAIT), ['note 1', 'note 2', 'note 3', 'after the kill']);
  });
});
