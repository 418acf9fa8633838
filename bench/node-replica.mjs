// One replica of `npm run bench:node`: an application process embedding a RaftNode with a
// JavaScript counter state machine (entry = an int32 increment, result = the new value). It
// runs the benchmark's proposers itself, as an application would, and is driven by
// bench/node.mjs over IPC.
//   argv: group config port dir electionTimeoutMs [tlsDir]
//   (tlsDir: ca.pem, node.pem, node.key from test/fixtures/make-certs.sh: mutual TLS)
//   requests {id, op: 'status' | 'load' | 'value', concurrency?, seconds?}
//   replies {id, ok: true, result} | {id, ok: false, message}; first {ready: true}
// 'load': `concurrency` closed-loop proposers, each awaiting node.propose(+1) before the next,
// for `seconds`; the result is bench/load.mjs's summary (writes/s, percentiles, gaps).
// It runs the compiled package (dist/, as an application gets it from npm), not lib/ through
// tsx: tsx's per-closure helpers alone cost a third of the throughput.
import { RaftNode } from '../dist/index.js';
import { closedLoop } from './load.mjs';

const [group = 'bench', config = '', port = '0', dir = '', timeout = '1000', tlsDir = ''] = process.argv.slice(2);

class Counter {
  value = 0;
  apply(entries) {
    return entries.map((e) => (this.value += e.data.readInt32LE(0)));
  }
}

const sm = new Counter();
const node = new RaftNode({
  group, config, port: Number(port), dir, stateMachine: sm, electionTimeoutMs: Number(timeout),
  ...(tlsDir ? { tls: { ca: `${tlsDir}/ca.pem`, cert: `${tlsDir}/node.pem`, key: `${tlsDir}/node.key` } } : {}),
});
await node.start();
// The benchmark owns this process: when it goes away (or kills us), so do we.
process.on('disconnect', () => process.exit(0));

const one = Buffer.alloc(4);
one.writeInt32LE(1);
const reply = (m) => {
  process.send?.(m);
};

process.on('message', (raw) => {
  const m = raw;
  const ok = (result) => reply({ id: m.id, ok: true, result });
  const fail = (e) => reply({ id: m.id, ok: false, message: String(e) });
  switch (m.op) {
    case 'status':
      ok({ role: node.role, leaderId: node.leaderId, term: node.term, applied: node.appliedIndex });
      break;
    case 'value':
      ok(sm.value);
      break;
    case 'load':
      closedLoop(m.concurrency ?? 1, m.seconds ?? 1, () => node.propose(one, { timeoutMs: 5000 })).then(ok, fail);
      break;
    default:
      fail(new Error(`unknown op ${m.op}`));
  }
});
reply({ ready: true });
