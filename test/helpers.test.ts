import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo } from 'node:net';
import { ephemeralPortLow, portBlock, tryListen } from './helpers.js';

describe('test ports', function () {
  it('a port that is the source of a connection cannot be listened on (why tests avoid the ephemeral range)', async () => {
    const server = createServer((s) => s.destroy()).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
    await new Promise((r) => client.once('connect', r));
    try {
      assert.equal((await tryListen(client.localPort!))?.code, 'EADDRINUSE');
    } finally {
      client.destroy();
      server.close();
    }
  });

  it('portBlock hands out free, disjoint blocks below the ephemeral range', async () => {
    const ephemeralLow = ephemeralPortLow();
    const blocks = await Promise.all([portBlock(50), portBlock(50), portBlock(50)]);
    for (const b of blocks) {
      assert.ok(b >= 1024 && b + 50 <= ephemeralLow, `${b}..${b + 49} lies below ${ephemeralLow}`);
      for (let p = b; p < b + 50; p++) assert.equal(await tryListen(p), undefined, `port ${p} is free`);
    }
    const sorted = [...blocks].sort((x, y) => x - y);
    assert.ok(sorted[0]! + 50 <= sorted[1]! && sorted[1]! + 50 <= sorted[2]!, `${sorted.join(', ')} do not overlap`);
  });
});
