// braft peer ids and configurations in their text form, parsed exactly as the C++ core
// does (native/core/types.cpp) so that a string accepted here is accepted there, and
// vice versa: `ip:port[:idx[:role]]`, comma-separated for a configuration.

import { RaftError } from './errors.js';

/** 0 = replica, 1 = witness (braft's PeerId::Role). */
export type PeerRole = 0 | 1;

const MAX_PORT = 65535;
const MAX_IDX = 2147483647; // int32, as in braft
const EXPECTED = 'expected ip:port[:idx[:role]] with a numeric IPv4 address';

export class PeerId {
  /** IPv4 address as an unsigned 32-bit number (host order). */
  readonly ip: number;
  readonly port: number;
  readonly idx: number;
  readonly role: PeerRole;

  constructor(ip: number, port: number, idx = 0, role: PeerRole = 0) {
    const bad =
      !inRange(ip, 0xffffffff) ? `ip ${ip} is not an unsigned 32-bit integer`
      : !inRange(port, MAX_PORT) ? `port ${port} is not an integer from 0 to ${MAX_PORT}`
      : !inRange(idx, MAX_IDX) ? `idx ${idx} is not an integer from 0 to ${MAX_IDX}`
      : role !== 0 && role !== 1 ? `role ${String(role)} is not 0 (replica) or 1 (witness)`
      : undefined;
    if (bad !== undefined) throw new RaftError('ERR_RAFT_BAD_CONFIG', `bad peer id: ${bad}`);
    this.ip = ip;
    this.port = port;
    this.idx = idx;
    this.role = role;
  }

  static parse(text: string): PeerId {
    return parsePeerId(text);
  }

  /** Orders by ip, then port, then idx; role is ignored, as in braft. */
  static compare(a: PeerId, b: PeerId): number {
    return a.ip - b.ip || a.port - b.port || a.idx - b.idx;
  }

  /** The dotted IPv4 address. */
  get address(): string {
    return [24, 16, 8, 0].map((shift) => (this.ip >>> shift) & 0xff).join('.');
  }

  /** Role is ignored, as in braft. */
  equals(other: PeerId): boolean {
    return PeerId.compare(this, other) === 0;
  }

  /** Always all four fields, like braft. */
  toString(): string {
    return `${this.address}:${this.port}:${this.idx}:${this.role}`;
  }
}

/** Parses `ip:port[:idx[:role]]`; throws RaftError ERR_RAFT_BAD_CONFIG. */
export function parsePeerId(text: string): PeerId {
  const peer = tryParsePeer(text);
  if (typeof peer === 'string') {
    throw new RaftError('ERR_RAFT_BAD_CONFIG', `bad peer "${text}": ${peer}; ${EXPECTED}`);
  }
  return peer;
}

/**
 * Parses a comma-separated list of peers (one trailing comma allowed) into a list sorted
 * by PeerId.compare without duplicates; of duplicates the first one is kept. An empty
 * configuration is an error. Throws RaftError ERR_RAFT_BAD_CONFIG.
 */
export function parseConfiguration(text: string): PeerId[] {
  const peers: PeerId[] = [];
  // The same walk as parse_peer_list: stop at the end, so only a final comma is allowed.
  let rest = text;
  while (rest !== '') {
    const comma = rest.indexOf(',');
    const item = comma < 0 ? rest : rest.slice(0, comma);
    const peer = tryParsePeer(item);
    if (typeof peer === 'string') {
      throw new RaftError(
        'ERR_RAFT_BAD_CONFIG',
        `bad peer "${item}" in configuration "${text}": ${peer}; ${EXPECTED}`,
      );
    }
    peers.push(peer);
    if (comma < 0) break;
    rest = rest.slice(comma + 1);
  }
  if (peers.length === 0) {
    throw new RaftError(
      'ERR_RAFT_BAD_CONFIG',
      `empty configuration: expected a comma-separated list of peers, each ip:port[:idx[:role]]`,
    );
  }
  return sortUnique(peers);
}

/** braft's text form: sorted, without duplicates, no trailing comma. */
export function formatConfiguration(peers: Iterable<PeerId>): string {
  return sortUnique([...peers]).join(',');
}

// Array.prototype.sort is stable, so the first of equal peers stays first and is kept,
// matching insert_sorted in the C++.
function sortUnique(peers: PeerId[]): PeerId[] {
  const sorted = [...peers].sort(PeerId.compare);
  return sorted.filter((p, i) => i === 0 || !p.equals(sorted[i - 1] as PeerId));
}

// Returns the peer, or what is wrong with the text.
function tryParsePeer(text: string): PeerId | string {
  if (text === '') return 'it is empty';
  if (text.trim() !== text) return 'it has surrounding whitespace';
  const fields = text.split(':');
  if (fields.length < 2 || fields.length > 4) {
    return `it has ${fields.length} colon-separated field${fields.length === 1 ? '' : 's'}, not 2 to 4`;
  }
  const [ipText = '', portText = '', idxText, roleText] = fields;
  const ip = parseIpv4(ipText);
  if (ip === undefined) return `ip "${ipText}" is not a numeric IPv4 address (four numbers 0-255)`;
  const port = parseUint(portText, MAX_PORT);
  if (port === undefined) return `port "${portText}" is not an integer from 0 to ${MAX_PORT}`;
  const idx = idxText === undefined ? 0 : parseUint(idxText, MAX_IDX);
  if (idx === undefined) return `idx "${idxText}" is not an integer from 0 to ${MAX_IDX}`;
  const role = roleText === undefined ? 0 : parseUint(roleText, 1);
  if (role === undefined) return `role "${roleText}" is not 0 (replica) or 1 (witness)`;
  return new PeerId(ip, port, idx, role === 1 ? 1 : 0);
}

// Like the C++ parse_uint: 1-10 ASCII digits (leading zeros allowed, no sign), at most max.
function parseUint(text: string, max: number): number | undefined {
  if (!/^[0-9]{1,10}$/.test(text)) return undefined;
  const value = Number(text);
  return value <= max ? value : undefined;
}

function parseIpv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let ip = 0;
  for (const part of parts) {
    const octet = parseUint(part, 255);
    if (octet === undefined) return undefined;
    ip = ip * 256 + octet; // not `<<`: that would go negative above 127.255.255.255
  }
  return ip;
}

function inRange(n: number, max: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= max;
}
