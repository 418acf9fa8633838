import assert from 'node:assert/strict';

import {
  PeerId,
  RaftError,
  formatConfiguration,
  parseConfiguration,
  parsePeerId,
} from '../lib/index.js';

// Asserts that fn throws a RaftError ERR_RAFT_BAD_CONFIG whose message matches `message`.
function assertBadConfig(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof RaftError, `expected a RaftError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_RAFT_BAD_CONFIG');
    assert.match(err.message, message);
    return true;
  });
}

describe('PeerId', () => {
  describe('parsePeerId accepts', () => {
    const valid: [input: string, printed: string][] = [
      ['127.0.0.1:8100', '127.0.0.1:8100:0:0'],
      ['127.0.0.1:8100:2', '127.0.0.1:8100:2:0'],
      ['127.0.0.1:8100:2:1', '127.0.0.1:8100:2:1'],
      ['0.0.0.0:0:0:0', '0.0.0.0:0:0:0'],
      ['255.255.255.255:65535:2147483647:1', '255.255.255.255:65535:2147483647:1'],
      ['010.001.000.009:0080:007', '10.1.0.9:80:7:0'], // leading zeros, as from_chars
      ['1.2.3.4:0000000080', '1.2.3.4:80:0:0'], // ten digits is still a number
    ];
    for (const [input, printed] of valid) {
      it(`${input} -> ${printed}`, () => {
        const peer = parsePeerId(input);
        assert.equal(peer.toString(), printed);
        // The printed form parses back to the same peer, role included.
        const again = PeerId.parse(peer.toString());
        assert.ok(again.equals(peer));
        assert.equal(again.role, peer.role);
        assert.equal(again.toString(), printed);
      });
    }
  });

  it('exposes its fields', () => {
    const peer = parsePeerId('192.168.1.20:8100:3:1');
    assert.equal(peer.ip, 0xc0a80114);
    assert.equal(peer.address, '192.168.1.20');
    assert.equal(peer.port, 8100);
    assert.equal(peer.idx, 3);
    assert.equal(peer.role, 1);
  });

  describe('parsePeerId rejects', () => {
    const invalid: [input: string, why: RegExp][] = [
      ['', /empty/],
      ['127.0.0.1', /1 colon-separated field,/],
      ['127.0.0.1:1:2:1:5', /5 colon-separated fields/],
      [' 127.0.0.1:80', /whitespace/],
      ['127.0.0.1:80 ', /whitespace/],
      ['localhost:80', /ip "localhost" is not a numeric IPv4 address/],
      ['x:1', /ip "x"/],
      ['::1:80', /ip ""/],
      ['1.2.3:80', /ip "1.2.3"/],
      ['1.2.3.4.5:80', /ip "1.2.3.4.5"/],
      ['1.2.3.256:80', /ip "1.2.3.256"/],
      ['1.2..4:80', /ip "1.2..4"/],
      ['1.2.3.-4:80', /ip/],
      ['+1.2.3.4:80', /ip/],
      ['0x7f.0.0.1:80', /ip/],
      ['127.0.0.1:', /port ""/],
      ['127.0.0.1:65536', /port "65536" is not an integer from 0 to 65535/],
      ['127.0.0.1:-1', /port "-1"/],
      ['127.0.0.1:+80', /port/],
      ['127.0.0.1:8o', /port/],
      ['127.0.0.1:1e3', /port/],
      ['127.0.0.1:00000000080', /port/], // eleven digits: the C++ refuses them
      ['127.0.0.1:80:', /idx ""/],
      ['127.0.0.1:80:2147483648', /idx "2147483648" is not an integer from 0 to 2147483647/],
      ['127.0.0.1:80:-1', /idx "-1"/],
      ['127.0.0.1:80:0:2', /role "2" is not 0 \(replica\) or 1 \(witness\)/],
      ['127.0.0.1:80:0:', /role ""/],
    ];
    for (const [input, why] of invalid) {
      it(JSON.stringify(input), () => {
        assertBadConfig(() => parsePeerId(input), why);
        assertBadConfig(() => parsePeerId(input), /expected ip:port\[:idx\[:role\]\]/);
      });
    }
  });

  it('compares by ip, then port, then idx, ignoring role', () => {
    const p = (s: string) => parsePeerId(s);
    assert.ok(p('1.2.3.4:80:0:0').equals(p('1.2.3.4:80:0:1')));
    assert.ok(!p('1.2.3.4:80:0').equals(p('1.2.3.4:80:1')));
    assert.ok(PeerId.compare(p('9.0.0.0:9999'), p('10.0.0.0:1')) < 0);
    assert.ok(PeerId.compare(p('200.0.0.0:1'), p('10.0.0.0:1')) > 0); // unsigned, not int32
    assert.ok(PeerId.compare(p('1.1.1.1:9'), p('1.1.1.1:10')) < 0);
    assert.ok(PeerId.compare(p('1.1.1.1:9:1'), p('1.1.1.1:9:0')) > 0);
    assert.equal(PeerId.compare(p('1.1.1.1:9:1:0'), p('1.1.1.1:9:1:1')), 0);
  });

  it('constructor validates its fields', () => {
    assert.equal(new PeerId(0x7f000001, 8100).toString(), '127.0.0.1:8100:0:0');
    assertBadConfig(() => new PeerId(-1, 80), /ip/);
    assertBadConfig(() => new PeerId(2 ** 32, 80), /ip/);
    assertBadConfig(() => new PeerId(1, 65536), /port/);
    assertBadConfig(() => new PeerId(1, 80.5), /port/);
    assertBadConfig(() => new PeerId(1, 80, 2 ** 31), /idx/);
  });
});

describe('configuration', () => {
  const valid: [input: string, printed: string][] = [
    ['127.0.0.1:8100:0', '127.0.0.1:8100:0:0'],
    ['127.0.0.1:8100:0,', '127.0.0.1:8100:0:0'], // one trailing comma is allowed
    [
      '127.0.0.1:8102:0,127.0.0.1:8100:0,127.0.0.1:8101:0',
      '127.0.0.1:8100:0:0,127.0.0.1:8101:0:0,127.0.0.1:8102:0:0',
    ],
    // duplicates (role ignored) collapse to the first one given
    ['1.1.1.1:1:0:1,1.1.1.1:1,1.1.1.1:1:0:0,', '1.1.1.1:1:0:1'],
    ['1.1.1.1:1:1,1.1.1.1:1:0', '1.1.1.1:1:0:0,1.1.1.1:1:1:0'],
    ['10.0.0.1:5,9.0.0.1:5,200.0.0.1:5', '9.0.0.1:5:0:0,10.0.0.1:5:0:0,200.0.0.1:5:0:0'],
  ];
  for (const [input, printed] of valid) {
    it(`${input} -> ${printed}`, () => {
      const peers = parseConfiguration(input);
      assert.equal(formatConfiguration(peers), printed);
      assert.equal(peers.map(String).join(','), printed); // already sorted and unique
      assert.equal(formatConfiguration(parseConfiguration(printed)), printed); // round trip
    });
  }

  it('formatConfiguration sorts and dedupes any list', () => {
    const peers = ['1.1.1.1:3', '1.1.1.1:1', '1.1.1.1:3:0:1', '1.1.1.1:2'].map(parsePeerId);
    assert.equal(formatConfiguration(peers), '1.1.1.1:1:0:0,1.1.1.1:2:0:0,1.1.1.1:3:0:0');
    assert.equal(formatConfiguration([]), '');
  });

  const invalid: [input: string, why: RegExp][] = [
    ['', /^empty configuration: expected a comma-separated list/],
    [',', /bad peer "" in configuration ",": it is empty/],
    ['1.1.1.1:1,,', /bad peer "" in configuration/], // only one trailing comma
    ['1.1.1.1:1,,1.1.1.1:2', /bad peer ""/],
    [',1.1.1.1:1', /bad peer ""/],
    ['1.1.1.1:1, 1.1.1.1:2', /bad peer " 1.1.1.1:2".*whitespace/],
    ['1.1.1.1:1;1.1.1.1:2', /bad peer "1.1.1.1:1;1.1.1.1:2"/],
    [
      '127.0.0.1:8100,x:1',
      /^bad peer "x:1" in configuration "127.0.0.1:8100,x:1": .*expected ip:port\[:idx\[:role\]\] with a numeric IPv4 address$/,
    ],
    ['1.1.1.1:1:0:7', /role "7"/],
  ];
  for (const [input, why] of invalid) {
    it(`rejects ${JSON.stringify(input)}`, () => {
      assertBadConfig(() => parseConfiguration(input), why);
    });
  }
});

describe('RaftError', () => {
  it('carries a code, an optional leader id and a cause', () => {
    const cause = new Error('socket closed');
    const err = new RaftError('ERR_RAFT_NOT_LEADER', 'not the leader', {
      leaderId: '127.0.0.1:8101:0:0',
      cause,
    });
    assert.ok(err instanceof Error);
    assert.equal(err.name, 'RaftError');
    assert.equal(err.code, 'ERR_RAFT_NOT_LEADER');
    assert.equal(err.leaderId, '127.0.0.1:8101:0:0');
    assert.equal(err.cause, cause);
    const plain = new RaftError('ERR_RAFT_TIMEOUT', 'timed out');
    assert.equal(plain.leaderId, undefined);
  });
});
