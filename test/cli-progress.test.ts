// The CLI shows a newcomer's catch-up while add_peer waits: entries, and the bytes of the
// snapshot it is sent, from the leader's /status.json. Three replica processes whose
// snapshots carry a 384 MiB file, so the copy takes seconds.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCli } from '../lib/cli.js';
import { ChildReplica, portBlock } from './helpers.js';

const fixture = fileURLToPath(new URL('./fixtures/replica.ts', import.meta.url));
const PAD = 384 << 20;

describe('CLI progress during add_peer', function () {
  this.timeout(180_000);
  let dir = '';
  let replicas: ChildReplica[] = [];
  afterEach(() => {
    for (const r of replicas) r.kill();
    replicas = [];
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('shows the newcomer\'s entries and snapshot bytes until it caught up', async () => {
    const base = await portBlock(4);
    dir = mkdtempSync(join(tmpdir(), 'raftstore-progress-'));
    const ports = [base, base + 1, base + 2];
    const conf = ports.map((p) => `127.0.0.1:${p}:0`).join(',');
    // group config port dir electionTimeoutMs stuckApplyTimeoutMs snapshotLogThreshold padBytes
    const args = (port: number, config: string): string[] =>
      ['progress', config, String(port), join(dir, String(port)), '500', '30000', '100', String(PAD)];
    replicas = ports.map((p) => new ChildReplica(fixture, p, args(p, conf)));
    await Promise.all(replicas.map((r) => r.start()));
    let proposer = replicas[0]!;
    for (let i = 0; i < 150; ) {
      const r = await proposer.call('propose', { n: 1 });
      if (r.ok) i++;
      else await new Promise((res) => setTimeout(res, 100));
    }
    // Every replica took its padded snapshot at 100 entries.
    for (const r of replicas)
      for (let k = 0; k < 300; k++) {
        const s = await r.call('status');
        if (s.ok && (s.result as { snapshotIndex: number }).snapshotIndex >= 100) break;
        await new Promise((res) => setTimeout(res, 100));
      }
    const newcomer = new ChildReplica(fixture, base + 3, args(base + 3, ''));
    replicas.push(newcomer);
    await newcomer.start();
    let out = '';
    let err = '';
    const code = await runCli(['add_peer', '--group=progress', `--conf=${conf}`, `--peer=127.0.0.1:${base + 3}:0`, '--timeout_ms=120000'],
      { stdout: (s) => (out += s), stderr: (s) => (err += s) });
    assert.equal(code, 0, err);
    const progress = err.split('\n').filter((l) => l.includes('catching up'));
    assert.ok(progress.length >= 1, `progress lines:\n${err}`);
    assert.match(progress.join('\n'), new RegExp(`^127\\.0\\.0\\.1:${base + 3}:0:0 catching up: \\d+ of \\d+ entries \\(\\d+ behind\\), snapshot \\d+\\.\\d MiB sent \\(the snapshot is 384\\.0 MiB\\)$`, 'm'));
    assert.match(err, /Configuration of replication group `progress' changed/);
    // The leader counted what it sent the newcomer.
    proposer = replicas[0]!;
    const leaderPort = await (async () => {
      for (const r of replicas.slice(0, 3)) {
        const s = await r.call('status');
        if (s.ok && (s.result as { role: string }).role === 'leader') return r.port;
      }
      return 0;
    })();
    const text = await (await fetch(`http://127.0.0.1:${leaderPort}/metrics`)).text();
    const sent = new RegExp(`raftstore_peer_snapshot_sent_bytes_total\\{[^}]*target="127\\.0\\.0\\.1:${base + 3}:0:0"\\} (\\d+)`).exec(text);
    assert.ok(sent && Number(sent[1]) >= PAD, `sent: ${sent?.[1]}`);
  });
});
