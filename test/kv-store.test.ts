// KvStore: an etcd-style key-value store on LMDB, written only by applying the log.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KvError, KvStore, type KvEvent, type LeaseId } from '../lib/index.js';
import { portBlock, sleep, until } from './helpers.js';

describe('KvStore', function () {
  this.timeout(60_000);
  let base: string;
  let port: number;
  let config: string;
  let stores: KvStore[] = [];

  const open = (i: number, extra: { catchUpOnOpen?: boolean; snapshotLogThreshold?: number } = {}) =>
    KvStore.open({ group: 'kv', config, port: port + i, dir: join(base, String(i)), electionTimeoutMs: 300, ...extra });

  beforeEach(async () => {
    base = mkdtempSync(join(tmpdir(), 'raftstore-kv-'));
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
    assert.equal(new Set(sums).size, 1, `checksums differ: ${sums.join(' ')}`);
    assert.equal(new Set(stores.map((s) => s.revision)).size, 1);
  };

  const code = (c: string) => (e: unknown) => e instanceof KvError && e.code === c;

  it('puts, gets and ranges with revisions, versions and past revisions, from any replica', async () => {
    const a = await stores[1]!.put('config/db/url', 'postgres://a');
    const b = await stores[2]!.put('config/db/pool', '10');
    const c = await stores[0]!.put('config/db/url', 'postgres://b');
    assert.deepEqual([a.revision, b.revision, c.revision], [1, 2, 3]);
    const kv = await stores[2]!.get('config/db/url');
    assert.deepEqual(kv, { key: 'config/db/url', value: 'postgres://b', createRevision: 1, modRevision: 3, version: 2, lease: 0 });
    assert.equal((await stores[0]!.get('config/db/url', { revision: 2 }))?.value, 'postgres://a');
    assert.equal(await stores[0]!.get('config/db/url', { revision: 0 + 1, consistency: 'local' }).then((x) => x?.value), 'postgres://a');
    await stores[0]!.put('other', 'x');
    const r = await stores[1]!.range({ prefix: 'config/' });
    assert.deepEqual(r.kvs.map((x) => [x.key, x.value]), [['config/db/pool', '10'], ['config/db/url', 'postgres://b']]);
    assert.equal(r.more, false);
    assert.equal(r.revision, 4);
    const limited = await stores[1]!.range({ prefix: 'config/' }, { limit: 1, keysOnly: true });
    assert.deepEqual(limited.kvs.map((x) => [x.key, x.value]), [['config/db/pool', '']]);
    assert.equal(limited.more, true);
    const past = await stores[2]!.range({ from: 'a' }, { revision: 2 });
    assert.deepEqual(past.kvs.map((x) => [x.key, x.value, x.modRevision]), [['config/db/pool', '10', 2], ['config/db/url', 'postgres://a', 1]]);
    const del = await stores[2]!.delete({ prefix: 'config/' });
    assert.deepEqual(del, { deleted: 2, revision: 5 });
    assert.equal(await stores[0]!.get('config/db/url'), undefined);
    assert.equal((await stores[0]!.get('config/db/url', { revision: 4 }))?.value, 'postgres://b');
    assert.deepEqual(await stores[0]!.delete('nothing'), { deleted: 0, revision: 5 });
    // Bytes, and a key with zero bytes in it (the history's escaping).
    const bin = await KvStore.open({ group: 'kv', config, port: port + 9, dir: join(base, 'x'), encoding: 'buffer', catchUpOnOpen: false })
      .catch((e: unknown) => e);
    assert.ok(bin instanceof Error); // not in the configuration's ports: refused, not hung
    await stores[0]!.put(new Uint8Array([0, 1, 0]), new Uint8Array([0xff]));
    await stores[0]!.put(new Uint8Array([0]), 'zero');
    const zeros = await stores[1]!.range({ from: new Uint8Array([0]), to: new Uint8Array([1]) }, { revision: 7 });
    assert.deepEqual(zeros.kvs.map((x) => Buffer.from(x.key).toString('hex')), ['00', '000100']);
    await converged();
  });

  it('refuses bad input with coded errors, before proposing', async () => {
    await until('the leader extended the leases (its first entry)', () => stores.every((s) => s.appliedIndex >= 2));
    const before = stores[0]!.appliedIndex;
    await assert.rejects(stores[0]!.put('x'.repeat(961), 'v'), code('ERR_KV_TOO_LARGE'));
    await assert.rejects(stores[0]!.put('k', Buffer.alloc((1 << 20) + 1)), code('ERR_KV_TOO_LARGE'));
    await assert.rejects(stores[0]!.put('', 'v'), code('ERR_KV_BAD_ARGUMENT'));
    await assert.rejects(stores[0]!.put(42 as unknown as string, 'v'), code('ERR_KV_BAD_ARGUMENT'));
    await assert.rejects(stores[0]!.range({ prefix: 'a' }, { limit: 0 }), code('ERR_KV_BAD_ARGUMENT'));
    await assert.rejects(stores[0]!.txn({ success: Array.from({ length: 1025 }, () => ({ get: 'k' })) }), code('ERR_KV_TOO_LARGE'));
    await assert.rejects(stores[0]!.get('k', { revision: 99 }), code('ERR_KV_FUTURE_REVISION'));
    assert.equal(stores[0]!.appliedIndex, before);
    // Applied, refused alike everywhere: a lease that does not exist.
    await assert.rejects(stores[1]!.put('k', 'v', { lease: 12345 as LeaseId }), code('ERR_KV_LEASE_NOT_FOUND'));
    assert.equal(await stores[0]!.get('k'), undefined);
    await converged();
  });

  it('runs transactions atomically at one revision: compare-and-set, one winner', async () => {
    const lock = (me: string) => stores[['a', 'b', 'c'].indexOf(me)]!.txn({
      compare: [{ key: 'lock', target: 'version', op: '==', value: 0 }],
      success: [{ put: ['lock', me] }, { put: ['owner', me] }, { get: 'lock' }],
      failure: [{ get: 'lock' }, { range: [{ prefix: 'lo' }, { keysOnly: true }] }],
    });
    const rs = await Promise.all(["a", "b", "c"].map(lock));
    assert.equal(rs.filter((r) => r.succeeded).length, 1);
    const winner = rs.find((r) => r.succeeded)!;
    assert.deepEqual(winner.results[0], { revision: winner.revision });
    assert.equal((winner.results[2] as { value: string }).value, (await stores[0]!.get('owner'))!.value);
    for (const r of rs.filter((x) => !x.succeeded)) {
      assert.equal((r.results[0] as { value: string }).value, (await stores[0]!.get('lock'))!.value);
      assert.deepEqual((r.results[1] as { kvs: { key: string }[] }).kvs.map((k) => k.key), ['lock']);
    }
    // Compare on value and revisions; a missing lease fails the whole transaction.
    const t = await stores[2]!.txn({
      compare: [{ key: 'owner', target: 'modRevision', op: '==', value: winner.revision }, { key: 'nope', target: 'value', op: '!=', value: 'x' }],
      success: [{ delete: 'owner' }], failure: [{ delete: { prefix: '' } }],
    });
    assert.equal(t.succeeded, false); // a missing key's value compares false
    assert.deepEqual(t.results, [{ deleted: 2 }]);
    await stores[0]!.get('a'); // a read barrier: this replica has applied the transactions above
    const before = stores[0]!.revision;
    await assert.rejects(stores[0]!.txn({ success: [{ put: ['a', '1'] }, { put: ['b', '2', { lease: 7 as LeaseId }] }] }), code('ERR_KV_LEASE_NOT_FOUND'));
    assert.equal(await stores[0]!.get('a'), undefined);
    assert.equal(stores[0]!.revision, before);
    await converged();
  });

  it('watches from any replica: every change once, in order, resumable from a revision', async () => {
    const seen: KvEvent[] = [];
    const ac = new AbortController();
    const watching = (async () => {
      try {
        for await (const events of stores[2]!.watch({ prefix: 'w/' }, { signal: ac.signal })) seen.push(...events);
      } catch (e) {
        if (!ac.signal.aborted) throw e;
      }
    })();
    await sleep(20);
    for (let i = 0; i < 50; i++) await stores[i % 2]!.put(`w/${i % 5}`, String(i));
    await stores[0]!.put('other', 'x');
    await stores[1]!.delete({ prefix: 'w/' });
    await until('the watcher saw every change', () => seen.length === 55);
    ac.abort();
    await watching;
    assert.deepEqual(seen.map((e) => e.kv.modRevision), [...Array.from({ length: 50 }, (_, i) => i + 1), 52, 52, 52, 52, 52]);
    assert.deepEqual(seen.slice(-5).map((e) => [e.type, e.kv.key]), [0, 1, 2, 3, 4].map((i) => ['delete', `w/${i}`]));
    // Resume: from a revision in the past, on another replica, through a restart.
    await stores[1]!.close();
    stores[1] = await open(1);
    const again: KvEvent[] = [];
    for await (const events of stores[1]!.watch('w/3', { fromRevision: 20 })) {
      again.push(...events);
      if (again.at(-1)!.type === 'delete') break;
    }
    assert.deepEqual(again.map((e) => e.kv.modRevision), [24, 29, 34, 39, 44, 49, 52]);
    assert.equal(stores[1]!.stats.watchers, 0);
    // Compaction: past revisions and watches from them refused, the state at it kept.
    await stores[0]!.compact(30);
    await assert.rejects(stores[0]!.get('w/3', { revision: 29 }), code('ERR_KV_COMPACTED'));
    await stores[2]!.get('w/3'); // a read barrier: replica 2 applied the compaction too
    await assert.rejects(stores[2]!.watch('w/3', { fromRevision: 29 }).next(), (e: unknown) => e instanceof KvError && e.compactRevision === 30);
    assert.equal((await stores[2]!.get('w/4', { revision: 30 }))?.value, '29');
    assert.equal((await stores[2]!.get('w/3', { revision: 30 }))?.value, '28');
    await converged();
  });

  it('leases: keys go when a lease is revoked or expires, once, at one revision everywhere; a failover keeps them', async () => {
    const expired: [LeaseId[], number][][] = stores.map(() => []);
    stores.forEach((s, i) => s.on('expired', (ids, rev) => expired[i]!.push([ids, rev])));
    const short = await stores[1]!.grantLease(600);
    const long = await stores[2]!.grantLease(60_000);
    await stores[0]!.put('session/a', '1', { lease: short });
    await stores[0]!.put('session/b', '2', { lease: long });
    assert.equal((await stores[0]!.get('session/a'))!.lease, short);
    // Leases are not changes of keys: puts took revisions 1 and 2, the revocation 3.
    assert.deepEqual(await stores[2]!.revokeLease(long), { deleted: 1, revision: 3 });
    await assert.rejects(stores[2]!.keepAlive(long), code('ERR_KV_LEASE_NOT_FOUND'));
    // Kept alive past its TTL, then let go.
    for (let i = 0; i < 4; i++) {
      await sleep(250);
      await stores[i % 3]!.keepAlive(short);
    }
    assert.ok(await stores[0]!.get('session/a'));
    await until('the lease expired everywhere', () => expired.every((x) => x.length === 1), 5000);
    assert.deepEqual(expired.map((x) => x[0]), [[[short], 4], [[short], 4], [[short], 4]]);
    assert.equal(await stores[1]!.get('session/a', { consistency: 'local' }), undefined);
    // A lease survives the loss of its leader.
    const kept = await stores[0]!.grantLease(1500);
    await stores[0]!.put('session/c', '3', { lease: kept });
    const leader = stores.findIndex((s) => s.isLeader);
    await stores[leader]!.close();
    const rest = stores.filter((_, i) => i !== leader);
    await until('a new leader', () => rest.some((s) => s.isLeader));
    const survivor = rest.find((s) => s.isLeader)!;
    assert.ok(survivor.lease(kept)!.expiresAt >= Date.now() + 1000, 'the new leader extended the lease');
    assert.ok(await survivor.get('session/c'));
    stores[leader] = await open(leader);
    await converged();
  });

  it('restarts without replaying, and a lagging replica installs a snapshot', async () => {
    for (let i = 0; i < 200; i++) await stores[i % 3]!.put(`k/${i % 37}`, `v${i}`);
    await stores[2]!.close();
    for (let i = 0; i < 300; i++) await stores[i % 2]!.put(`k/${i % 41}`, `w${i}`);
    await Promise.all([stores[0]!.snapshot(), stores[1]!.snapshot()]);
    for (let i = 0; i < 20; i++) await stores[0]!.put(`after/${i}`, 'x');
    stores[2] = await open(2);
    assert.equal(stores[2].stats.snapshotsInstalled, 1);
    await converged();
    const applied = stores[0]!.stats.entriesApplied;
    await stores[0]!.close();
    stores[0] = await open(0);
    // Nothing run again (a new leader's lease extension may be new to it).
    assert.ok(stores[0].stats.entriesApplied <= 1, `${stores[0].stats.entriesApplied} entries run again`);
    assert.ok(stores[0].stats.entriesSkipped > 0 && stores[0].stats.entriesSkipped <= applied);
    assert.equal((await stores[0].get('k/5'))!.value, (await stores[2].get('k/5'))!.value);
    await converged();
  });

  it('after a machine crash (another boot id, not closed cleanly) rebuilds its store from its snapshot and log', async () => {
    for (let i = 0; i < 100; i++) await stores[i % 3]!.put(`m/${i % 10}`, `v${i}`);
    await stores[2]!.get('m/1'); // it applied everything
    await stores[2]!.snapshot();
    for (let i = 0; i < 30; i++) await stores[0]!.put(`m/${i % 10}`, `w${i}`);
    await until('replica 2 applied everything', () => stores[2]!.appliedIndex === stores[0]!.appliedIndex);
    const before = stores[2]!.checksum();
    await stores[2]!.close();
    // As if the machine had gone down with the store open: no clean-close mark, another boot.
    rmSync(join(base, '2', 'kv', 'closed_cleanly'));
    process.env['RAFTSTORE_TEST_BOOT_ID'] = 'another-boot';
    try {
      stores[2] = await open(2, { catchUpOnOpen: false });
    } finally {
      delete process.env['RAFTSTORE_TEST_BOOT_ID'];
    }
    assert.equal(stores[2].stats.discardedAfterMachineCrash, true);
    await until('it applied its log again', () => stores[2]!.appliedIndex === stores[0]!.appliedIndex);
    assert.equal(stores[2].stats.snapshotsInstalled, 1, 'its own snapshot');
    assert.ok(stores[2].stats.entriesApplied >= 30, 'and the log after it');
    assert.equal(stores[2].checksum(), before);
    // The same boot again: trusted.
    await stores[2].close();
    process.env['RAFTSTORE_TEST_BOOT_ID'] = 'another-boot';
    try {
      stores[2] = await open(2);
    } finally {
      delete process.env['RAFTSTORE_TEST_BOOT_ID'];
    }
    assert.equal(stores[2].stats.discardedAfterMachineCrash, false);
    await converged();
  });
});
