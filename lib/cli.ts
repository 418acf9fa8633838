// The `raftstore` command line: braft_cli's commands, flags, output lines and exit codes
// (docs/braft-compatibility.md §3), plus `get_leader` and `status`. It speaks CliService over
// baidu_std, so it manages any braft-compatible server, raftstore's or braft's own.
//
// Output: braft_cli logs through brpc's logger, on stderr; so do we, as plain lines without
// glog's prefix. A failure is one line `<RaftError code>: <braft_cli's message>`, so
// scripts can branch on the code; the text after the code is braft_cli's. Results meant
// for scripts (get_leader's leader id, status's table) go to stdout.
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import {
  BaiduStdClient, ProtoError, ProtoWriter, RpcCode, RpcError, decodeFields, socketErrorText, stringField,
  stringsField, type CallOptions, type Endpoint,
} from './baidu-std.js';
import { RaftError, type RaftErrorCode } from './errors.js';
import { PeerId, formatConfiguration, parseConfiguration, parsePeerId } from './peer.js';

export interface CliIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

/** braft_cli's exit status for every failure (its main returns -1). */
export const EXIT_FAILURE = 255;

const FLAG_NAMES = ['group', 'conf', 'peer', 'new_peers', 'timeout_ms', 'max_retry', 'tls_ca', 'tls_cert', 'tls_key'] as const;
type FlagName = (typeof FLAG_NAMES)[number];

const USAGE = `Usage: raftstore [Command] [OPTIONS...]
Command:
  add_peer --group=$group_id --peer=$adding_peer --conf=$current_conf
  remove_peer --group=$group_id --peer=$removing_peer --conf=$current_conf
  change_peers --group=$group_id --conf=$current_conf --new_peers=$new_peers
  reset_peer --group=$group_id --peer=$target_peer --new_peers=$new_peers
  snapshot --group=$group_id --peer=$target_peer
  transfer_leader --group=$group_id --peer=$target_leader --conf=$current_conf
  get_leader --group=$group_id --conf=$current_conf
  status --group=$group_id --conf=$current_conf
Options:
  --timeout_ms=N   timeout of the operation in ms, -1 = none (default -1)
  --max_retry=N    max retry times of each operation (default 3)
  --tls_ca=FILE --tls_cert=FILE --tls_key=FILE
                   mutual TLS with a cluster started with tls (PEM files: the cluster's CA,
                   a certificate it signed, and that certificate's key)
`;

// Each command's required flags, in the order braft_cli checks them (its first missing
// flag is the one it names).
type TextFlag = 'group' | 'conf' | 'peer' | 'new_peers';
const COMMANDS: ReadonlyMap<string, readonly TextFlag[]> = new Map([
  ['add_peer', ['conf', 'peer', 'group']],
  ['remove_peer', ['conf', 'peer', 'group']],
  ['change_peers', ['new_peers', 'conf', 'group']],
  ['reset_peer', ['new_peers', 'peer', 'group']],
  ['snapshot', ['peer', 'group']],
  ['transfer_leader', ['conf', 'peer', 'group']],
  ['get_leader', ['conf', 'group']],
  ['status', ['conf', 'group']],
]);

interface Options {
  group: string;
  conf: string;
  peer: string;
  new_peers: string;
  timeoutMs: number;
  maxRetry: number;
  tls: { ca: Buffer; cert: Buffer; key: Buffer } | undefined;
}

// braft_cli's get_leader probes use brpc's channel defaults, whatever the flags say.
const PROBE: CallOptions = { timeoutMs: 500, maxRetry: 3 };
const SERVICE = 'braft.CliService';

function badArgument(message: string): RaftError {
  return new RaftError('ERR_RAFT_BAD_ARGUMENT', message);
}

/**
 * Runs one command as braft_cli would and returns the process exit code: 0 on success,
 * 255 on any failure (after printing `<code>: <message>` to stderr).
 */
export async function runCli(argv: string[], io: CliIo = {
  stdout: (s) => void process.stdout.write(s),
  stderr: (s) => void process.stderr.write(s),
}): Promise<number> {
  // As braft_cli: the flags are parsed (and bad values refused) before the command is looked at.
  let parsed: ReturnType<typeof parseArgs>;
  let o: Options;
  try {
    parsed = parseArgs(argv);
    if (parsed.help) {
      io.stdout(USAGE);
      return 0;
    }
    o = options(parsed.values);
  } catch (e) {
    return report(io, e);
  }
  const [command, ...extra] = parsed.positional;
  if (command === undefined || extra.length > 0) {
    io.stderr(USAGE);
    return report(io, badArgument(command === undefined ? 'no command given'
      : `one command expected, got ${parsed.positional.map((c) => `\`${c}'`).join(' ')}`));
  }
  const required = COMMANDS.get(command);
  if (required === undefined) return report(io, badArgument(`Unknown command \`${command}'`));
  const client = new BaiduStdClient(o.tls ? { tls: o.tls } : {});
  try {
    for (const flag of required) if (o[flag] === '') throw badArgument(`${command} requires --${flag}`);
    return await run(command, o, client, io);
  } catch (e) {
    // A TLS port drops a plaintext client without a word: say what may be missing.
    if (!o.tls && e instanceof RaftError && /Got EOF|ECONNRESET|Connection reset/.test(e.message))
      e.message += ' (if the cluster runs with TLS, pass --tls_ca, --tls_cert and --tls_key)';
    return report(io, e);
  } finally {
    client.close();
  }
}

function report(io: CliIo, e: unknown): number {
  const err = e instanceof RaftError ? e : new RaftError('ERR_RAFT_INTERNAL', String(e), { cause: e });
  io.stderr(`${err.code}: ${err.message}\n`);
  return EXIT_FAILURE;
}

// gflags' syntax: `--flag=value`, `--flag value`, one or two dashes, `--` ends the flags;
// anything else is positional (the command may come before or after the flags). A repeated
// flag keeps its last value.
function parseArgs(argv: string[]): { positional: string[]; values: Partial<Record<FlagName, string>>; help: boolean } {
  const positional: string[] = [];
  const values: Partial<Record<FlagName, string>> = {};
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positional.push(arg);
      continue;
    }
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    if (name === 'help' || name === 'h' || name === 'helpshort') {
      help = true;
      continue;
    }
    if (!(FLAG_NAMES as readonly string[]).includes(name))
      throw badArgument(`unknown command line flag '${name}' (flags: ${FLAG_NAMES.map((f) => `--${f}`).join(' ')})`);
    let value: string;
    if (eq >= 0) value = body.slice(eq + 1);
    else if (i + 1 < argv.length) value = argv[++i] as string; // gflags takes it even if it starts with '-'
    else throw badArgument(`flag '--${name}' is missing its argument`);
    values[name as FlagName] = value;
  }
  return { positional, values, help };
}

// Flag values are checked before anything is sent, as gflags rejects a bad int32 at parse.
function options(v: Partial<Record<FlagName, string>>): Options {
  const group = v.group ?? '';
  // Any string is a braft group id, but one with control characters cannot be meant and
  // would garble the output.
  if (/[\u0000-\u001f\u007f]/.test(group))
    throw badArgument(`illegal value ${JSON.stringify(group)} for --group: it contains control characters`);
  return {
    group,
    conf: v.conf ?? '',
    peer: v.peer ?? '',
    new_peers: v.new_peers ?? '',
    timeoutMs: int32('timeout_ms', v.timeout_ms, -1, (n) => n === -1 || n > 0,
      '-1 (no timeout) or a whole number of milliseconds from 1 to 2147483647'),
    maxRetry: int32('max_retry', v.max_retry, 3, (n) => n >= 0, 'a whole number from 0 to 2147483647'),
    tls: tlsFlags(v),
  };
}

function tlsFlags(v: Partial<Record<FlagName, string>>): Options['tls'] {
  const given = (['tls_ca', 'tls_cert', 'tls_key'] as const).filter((f) => v[f] !== undefined);
  if (given.length === 0) return undefined;
  if (given.length < 3)
    throw new RaftError('ERR_RAFT_BAD_CONFIG', `TLS needs all of --tls_ca, --tls_cert and --tls_key; got only ${given.map((f) => `--${f}`).join(', ')}`);
  const read = (flag: 'tls_ca' | 'tls_cert' | 'tls_key'): Buffer => {
    try {
      return readFileSync(v[flag] as string);
    } catch (e) {
      throw new RaftError('ERR_RAFT_BAD_CONFIG', `Fail to read --${flag}=\`${v[flag]}': ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  };
  return { ca: read('tls_ca'), cert: read('tls_cert'), key: read('tls_key') };
}

function int32(flag: string, text: string | undefined, fallback: number, ok: (n: number) => boolean,
  expected: string): number {
  if (text === undefined) return fallback;
  const n = /^[+-]?[0-9]{1,10}$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(n) || n > 2147483647 || !ok(n))
    throw badArgument(`illegal value \`${text}' for --${flag}: expected ${expected}`);
  return n;
}

function peerFlag(flag: 'peer', text: string): PeerId {
  try {
    return parsePeerId(text);
  } catch (e) {
    throw new RaftError('ERR_RAFT_BAD_CONFIG', `Fail to parse --${flag}=\`${text}': ${(e as Error).message}`);
  }
}

function confFlag(flag: 'conf' | 'new_peers', text: string): PeerId[] {
  try {
    return parseConfiguration(text);
  } catch (e) {
    throw new RaftError('ERR_RAFT_BAD_CONFIG', `Fail to parse --${flag}=\`${text}': ${(e as Error).message}`);
  }
}

function endpoint(peer: PeerId): Endpoint {
  return { host: peer.address, port: peer.port };
}

// Wraps a failed step the way braft_cli logs it: "Fail to <what> : <status>".
function failed(what: string, e: unknown): RaftError {
  if (e instanceof RpcError) return new RpcError(e.rpcCode, `${what}${e.message}`, { cause: e, fromServer: e.fromServer });
  if (e instanceof RaftError) return new RaftError(e.code, `${what}${e.message}`, { cause: e });
  return new RaftError('ERR_RAFT_INTERNAL', `${what}${String(e)}`, { cause: e });
}

async function run(command: string, o: Options, client: BaiduStdClient, io: CliIo): Promise<number> {
  const op: CallOptions = { timeoutMs: o.timeoutMs, maxRetry: o.maxRetry };
  const info = (line: string): void => io.stderr(`${line}\n`);
  const changed = (resp: Buffer): void => {
    const fields = decode(resp);
    info(`Configuration of replication group \`${o.group}' changed from ${confText(stringsField(fields, 1))}`
      + ` to ${confText(stringsField(fields, 2))}`);
  };
  switch (command) {
    case 'add_peer':
    case 'remove_peer': {
      // Same order as braft_cli: --conf, then --peer.
      const conf = confFlag('conf', o.conf);
      const peer = peerFlag('peer', o.peer);
      const what = `Fail to ${command} : `;
      try {
        const leader = await getLeader(client, o.group, conf);
        const req = new ProtoWriter().string(1, o.group).string(2, leader.toString()).string(3, peer.toString());
        const stop = command === 'add_peer' ? watchCatchUp(leader, o.group, [peer], o.tls, info) : () => {};
        try {
          changed(await client.call(endpoint(leader), SERVICE, command, req.finish(), op));
        } finally {
          stop();
        }
      } catch (e) {
        throw failed(what, e);
      }
      return 0;
    }
    case 'change_peers': {
      const newPeers = confFlag('new_peers', o.new_peers);
      const conf = confFlag('conf', o.conf);
      try {
        const leader = await getLeader(client, o.group, conf);
        info(`conf=${formatConfiguration(conf)} leader=${leader.toString()} new_peers=${formatConfiguration(newPeers)}`);
        const req = new ProtoWriter().string(1, o.group).string(2, leader.toString()).strings(3, newPeers.map(String));
        const added = newPeers.filter((p) => !conf.some((c) => c.equals(p)));
        const stop = watchCatchUp(leader, o.group, added, o.tls, info);
        try {
          changed(await client.call(endpoint(leader), SERVICE, 'change_peers', req.finish(), op));
        } finally {
          stop();
        }
      } catch (e) {
        throw failed('Fail to change_peers : ', e);
      }
      return 0;
    }
    case 'reset_peer': {
      const newPeers = confFlag('new_peers', o.new_peers);
      const peer = peerFlag('peer', o.peer);
      // Field 3 (old_peers) is unused by braft; the new configuration is field 4.
      const req = new ProtoWriter().string(1, o.group).string(2, peer.toString()).strings(4, newPeers.map(String));
      try {
        await client.call(endpoint(peer), SERVICE, 'reset_peer', req.finish(), op);
      } catch (e) {
        throw failed('Fail to reset_peer : ', e);
      }
      return 0;
    }
    case 'snapshot': {
      const peer = peerFlag('peer', o.peer);
      const req = new ProtoWriter().string(1, o.group).string(2, peer.toString());
      try {
        await client.call(endpoint(peer), SERVICE, 'snapshot', req.finish(), op);
      } catch (e) {
        throw failed('Fail to make snapshot : ', e);
      }
      return 0;
    }
    case 'transfer_leader': {
      const conf = confFlag('conf', o.conf);
      const peer = peerFlag('peer', o.peer);
      try {
        const leader = await getLeader(client, o.group, conf);
        if (leader.equals(peer)) {
          info(`peer ${peer.toString()} is already the leader`);
          return 0;
        }
        const req = new ProtoWriter().string(1, o.group).string(2, leader.toString());
        // 0.0.0.0:0 is braft's ANY_PEER: no peer_id, the leader picks the most up-to-date follower.
        if (!isEmptyPeer(peer)) req.string(3, peer.toString());
        await client.call(endpoint(leader), SERVICE, 'transfer_leader', req.finish(), op);
      } catch (e) {
        throw failed('Fail to transfer_leader: ', e); // sic: braft_cli has no space here
      }
      return 0;
    }
    case 'get_leader': {
      const conf = confFlag('conf', o.conf);
      try {
        io.stdout(`${(await getLeader(client, o.group, conf)).toString()}\n`);
      } catch (e) {
        throw failed('Fail to get_leader : ', e);
      }
      return 0;
    }
    case 'status':
      return status(o, confFlag('conf', o.conf), io);
    default:
      throw badArgument(`Unknown command \`${command}'`);
  }
}

function isEmptyPeer(p: PeerId): boolean {
  return p.ip === 0 && p.port === 0 && p.idx === 0;
}

function decode(resp: Buffer) {
  try {
    return decodeFields(resp);
  } catch (e) {
    throw new RpcError(RpcCode.ERESPONSE, `[E${RpcCode.ERESPONSE}]Fail to parse response: ${(e as ProtoError).message}`,
      { cause: e });
  }
}

// Peers from a response, printed as braft prints a Configuration: sorted, comma-separated.
function confText(peers: string[]): string {
  const parsed: PeerId[] = [];
  for (const p of peers) {
    try {
      parsed.push(parsePeerId(p));
    } catch {
      return peers.join(','); // not ours to judge; show what the server said
    }
  }
  return formatConfiguration(parsed);
}

/**
 * braft's cli get_leader: asks every peer of `conf`, in sorted order, for its leader; the
 * last answer wins, and the failures are reported only if no peer answered. braft keeps the
 * last failure's code; we prefer the last one a server answered (`Unknown leader`, `Fail to
 * find node`) over a peer being down, as it says more about the group.
 */
async function getLeader(client: BaiduStdClient, group: string, conf: readonly PeerId[]): Promise<PeerId> {
  let text = `Fail to get leader of group ${group}; tried:`;
  let code = -1;
  let fromServer = false;
  let leader: PeerId | undefined;
  for (const peer of conf) {
    const req = new ProtoWriter().string(1, group).string(2, peer.toString()).finish();
    try {
      const resp = await client.call(endpoint(peer), SERVICE, 'get_leader', req, PROBE);
      const id = stringField(decode(resp), 1) ?? '';
      try {
        leader = parsePeerId(id);
      } catch {
        leader = undefined; // as braft's PeerId::parse, a bad answer resets it
      }
    } catch (e) {
      const err = e instanceof RpcError ? e : new RpcError(RpcCode.EINTERNAL, String(e), { cause: e });
      text += `\n  ${peer.address}:${peer.port}: ${err.message}`; // one line per peer tried
      if (err.fromServer || !fromServer) {
        code = err.rpcCode;
        fromServer = err.fromServer;
      }
    }
  }
  if (leader === undefined || isEmptyPeer(leader)) throw new RpcError(code, text, { fromServer });
  return leader;
}

// ---------------------------------------------------------------------------------------
// status: /raft_stat/<group> of every peer, as one table.

interface PeerStat {
  peer: string;
  state?: string;
  term?: string;
  leader?: string;
  lastLogIndex?: string;
  committed?: string;
  applied?: string;
}

const STAT_LIMIT = 1 << 20;

async function status(o: Options, conf: PeerId[], io: CliIo): Promise<number> {
  const timeoutMs = o.timeoutMs > 0 ? o.timeoutMs : 1000;
  const rows = await Promise.all(conf.map(async (peer): Promise<string[]> => {
    const id = peer.toString();
    let text: string;
    try {
      text = await fetchText(peer, `/raft_stat/${encodeURIComponent(o.group)}`, timeoutMs, o.tls);
    } catch (e) {
      io.stderr(`${id}: unreachable: ${socketErrorText(e as Error)}\n`);
      return [id, 'unreachable', '-', '-', '-', '-', '-'];
    }
    const stat = parseRaftStat(text).find((s) => samePeer(s.peer, peer));
    if (!stat) {
      io.stderr(`${id}: no node of group \`${o.group}' there\n`);
      return [id, 'absent', '-', '-', '-', '-', '-'];
    }
    const dash = (s: string | undefined): string => (s === undefined || s === '' ? '-' : s);
    let leader = stat.leader;
    if (leader === undefined && stat.state?.toLowerCase() === 'leader') leader = id; // braft omits it on a leader
    if (leader !== undefined && samePeer(leader, new PeerId(0, 0))) leader = undefined;
    return [id, dash(stat.state?.toLowerCase()), dash(stat.term), dash(leader), dash(stat.lastLogIndex),
      dash(stat.committed), dash(stat.applied)];
  }));
  io.stdout(table(['PEER', 'STATE', 'TERM', 'LEADER', 'LAST_LOG_INDEX', 'COMMITTED', 'APPLIED'], rows));
  const answered = rows.filter((r) => r[1] !== 'unreachable' && r[1] !== 'absent').length;
  if (answered > 0) return 0;
  const anyUp = rows.some((r) => r[1] === 'absent');
  const code: RaftErrorCode = anyUp ? 'ERR_RAFT_BAD_ARGUMENT' : 'ERR_RAFT_IO';
  throw new RaftError(code, `Fail to get status of group \`${o.group}': `
    + (anyUp ? `no peer of ${formatConfiguration(conf)} hosts it` : `no peer of ${formatConfiguration(conf)} answered`));
}

function samePeer(text: string, peer: PeerId): boolean {
  try {
    return parsePeerId(text).equals(peer);
  } catch {
    return false;
  }
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd() + '\n';
  return [header, ...rows].map(line).join('');
}

// A raftstore port's status page data (native/runtime/status.cpp), as much as progress needs.
interface StatusJson {
  groups: {
    group: string;
    peer: string;
    last_index: number;
    snapshot_bytes: number;
    peers: { id: string; match_index: number; lag: number; state: string; snapshot_bytes_sent: number }[];
  }[];
}

const mib = (n: number): string => `${(n / (1 << 20)).toFixed(1)} MiB`;

/**
 * While a membership change waits for new peers to catch up, shows how far they got, from the
 * leader's /status.json (looked at twice a second; a line when it changed): entries, and
 * snapshot bytes when they are sent one.
 * Silent for a server without that page (braft's own). Returns the function that stops it.
 */
function watchCatchUp(leader: PeerId, group: string, peers: PeerId[], tls: Options['tls'], info: (line: string) => void): () => void {
  if (peers.length === 0) return () => {};
  const last = new Map<string, string>();
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    fetchText(leader, '/status.json', 1000, tls).then((text) => {
      const g = (JSON.parse(text) as StatusJson).groups.find((x) => x.group === group && samePeer(x.peer, leader));
      for (const p of peers) {
        const st = g?.peers.find((x) => samePeer(x.id, p));
        if (!g || !st) continue;
        let line = `${p.toString()} catching up: ${st.match_index} of ${g.last_index} entries (${st.lag} behind)`;
        if (st.snapshot_bytes_sent > 0 || st.state === 'snapshot')
          line += `, snapshot ${mib(st.snapshot_bytes_sent)} sent (the snapshot is ${mib(g.snapshot_bytes)})`;
        if (last.get(p.toString()) !== line) info(line);
        last.set(p.toString(), line);
      }
    }).catch(() => {
      // No page (braft), or no answer this second: nothing to show.
    }).finally(() => {
      busy = false;
    });
  }, 500);
  timer.unref();
  return () => clearInterval(timer);
}

function fetchText(peer: PeerId, path: string, timeoutMs: number, tls: Options['tls']): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const where = {
      host: peer.address, port: peer.port, method: 'GET', agent: false, path,
      // A browser-like User-Agent makes brpc answer HTML; none gets plain text.
    } as const;
    const req = (tls ? httpsRequest : httpRequest)(tls ? { ...where, ...tls, checkServerIdentity: () => undefined } : where, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > STAT_LIMIT) req.destroy(new Error(`${path} answer larger than ${STAT_LIMIT} bytes`));
        else chunks.push(c);
      });
      res.on('end', () => {
        clearTimeout(timer);
        if (res.statusCode === 204) return resolve('');
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode ?? '?'} for ${path}`));
        resolve(Buffer.concat(chunks).toString('utf8'));
      });
      res.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.end();
  });
}

/**
 * Reads /raft_stat text in raftstore's form (`[group] peer` then `key: value` lines) and in
 * braft's (`[group]`, then per node `peer_id: ...`, `state: LEADER`, `last_log_id:
 * (index=N,term=T)`, `last_committed_index: N`, ...). The first value of a key wins.
 */
export function parseRaftStat(text: string): PeerStat[] {
  const stats: PeerStat[] = [];
  let fields: Map<string, string> | undefined;
  const flush = (): void => {
    if (!fields) return;
    const get = (...keys: string[]): string | undefined => {
      for (const k of keys) {
        const v = fields?.get(k);
        if (v !== undefined) return v;
      }
      return undefined;
    };
    const peer = get('peer_id');
    if (peer !== undefined) {
      const stat: PeerStat = { peer };
      const set = <K extends keyof PeerStat>(key: K, value: PeerStat[K] | undefined): void => {
        if (value !== undefined) stat[key] = value;
      };
      set('state', get('state'));
      set('term', get('term'));
      set('leader', get('leader'));
      set('lastLogIndex', get('last_index')
        ?? /index=(\d+)/.exec(get('last_log_id') ?? '')?.[1]
        ?? /,\s*(\d+)\]/.exec(get('storage') ?? '')?.[1]);
      set('committed', get('committed_index', 'last_committed_index'));
      set('applied', get('applied_index', 'known_applied_index'));
      stats.push(stat);
    }
    fields = undefined;
  };
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    const header = /^\[(.*)\](?:\s+(\S+))?\s*$/.exec(line);
    if (header) {
      flush();
      if (header[2] !== undefined) fields = new Map([['peer_id', header[2]]]);
      continue;
    }
    const kv = /^([a-z_]+):\s?(.*)$/.exec(line);
    if (!kv) continue;
    const [, key = '', value = ''] = kv;
    if (key === 'peer_id') {
      if (fields?.has('peer_id') && fields.size > 1) flush();
      if (fields?.has('peer_id')) continue;
      fields = new Map();
    }
    if (!fields) continue;
    if (!fields.has(key)) fields.set(key, value.trim());
  }
  flush();
  return stats;
}
