// The package as users get it: `npm pack`, then `npm install` of the tarball in an empty
// directory, then a program that imports it, replicates one entry and exits on its own.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

describe('npm pack', function () {
  this.timeout(240_000);
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'raftstore-pack-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('installs in an empty directory and works there without a compiler', () => {
    const npm = (args: string[], cwd: string): string =>
      execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    npm(['pack', '--pack-destination', dir], root);
    const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
    assert.ok(tarball, 'npm pack made a tarball');
    const app = join(dir, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    npm(['install', '--prefer-offline', '--no-audit', '--no-fund', join(dir, tarball)], app);
    assert.ok(!existsSync(join(app, 'node_modules/raftstore/build')), 'installed from the prebuild, not compiled');
    // The source-build tools are optional peers: a user's install does not download them.
    for (const tool of ['cmake-js', 'node-addon-api', 'better-sqlite3', 'lmdb']) {
      assert.ok(!existsSync(join(app, 'node_modules', tool)), `${tool} was installed`);
    }
    writeFileSync(join(app, 'main.mjs'), `
      import { RaftNode, RaftError } from 'raftstore';
      let total = 0;
      const node = new RaftNode({
        group: 'demo', config: '127.0.0.1:${PORT}:0', port: ${PORT}, dir: 'data',
        stateMachine: { apply: (es) => es.map((e) => (total += e.data.readUInt32LE(0))) },
      });
      await node.start();
      const b = Buffer.alloc(4);
      b.writeUInt32LE(41);
      console.log('result', await node.propose(b), await node.propose(Buffer.from([1, 0, 0, 0])));
      // The package's bin, as npx finds it.
      const { execFile } = await import('node:child_process');
      const leader = await new Promise((resolve, reject) => execFile('node_modules/.bin/raftstore',
        ['get_leader', '--group=demo', '--conf=127.0.0.1:${PORT}:0'], (err, out) => (err ? reject(err) : resolve(out))));
      console.log('leader', leader.trim());
      try { new RaftNode({ group: 'demo', config: 'nonsense', port: 1, dir: 'x', stateMachine: node }); }
      catch (e) { console.log(e instanceof RaftError ? e.code : 'not a RaftError'); }
      await node.close();
      // SqlStore without its optional peer dependency: a coded error, nothing left running.
      const { SqlStore } = await import('raftstore');
      try { await SqlStore.open({ group: 'sql', config: '127.0.0.1:${PORT}:0', port: ${PORT}, dir: 'sqldata' }); }
      catch (e) { console.log(e.code); }
      const { KvStore } = await import('raftstore');
      try { await KvStore.open({ group: 'kv', config: '127.0.0.1:${PORT}:0', port: ${PORT}, dir: 'kvdata' }); }
      catch (e) { console.log(e.code); }
      // No process.exit: a closed node must not keep the process alive.
    `);
    const out = execFileSync(process.execPath, ['main.mjs'], { cwd: app, encoding: 'utf8', timeout: 30_000 });
    assert.equal(out, `result 41 42\nleader 127.0.0.1:${PORT}:0:0\nERR_RAFT_BAD_CONFIG\nERR_SQL_DEPENDENCY\nERR_KV_DEPENDENCY\n`);
  });
});

const PORT = 20000 + Math.floor(Math.random() * 1000);
