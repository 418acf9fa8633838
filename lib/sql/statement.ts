// What SQL the replicated log may carry, decided from the text alone (so every replica, and
// the proposer before it proposes, decides the same): one statement per call, no statement
// that changes the connection rather than the database, nothing that reads per-connection
// state, and none of raftstore's own tables.
import { SqlError } from '../errors.js';

interface Token {
  kind: 'word' | 'quoted' | 'string' | 'punct';
  text: string; // lower-cased for words and quoted identifiers
}

// Statements that act on the connection or the transaction, not on the data: they would
// break the entry's own transaction, or leave replicas configured differently.
const FORBIDDEN_FIRST = new Set(['attach', 'detach', 'pragma', 'vacuum', 'begin', 'commit', 'end', 'rollback', 'savepoint', 'release']);

function tokens(sql: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const n = sql.length;
  const until = (close: string, from: number): number => {
    // SQL quotes are escaped by doubling them.
    let j = from;
    for (;;) {
      const k = sql.indexOf(close, j);
      if (k < 0) return n;
      if (sql[k + 1] === close && close !== ']') j = k + 2;
      else return k + 1;
    }
  };
  while (i < n) {
    const c = sql[i]!;
    if (/\s/.test(c)) i++;
    else if (c === '-' && sql[i + 1] === '-') {
      const k = sql.indexOf('\n', i);
      i = k < 0 ? n : k + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      const k = sql.indexOf('*/', i + 2);
      i = k < 0 ? n : k + 2;
    } else if (c === "'") {
      const j = until("'", i + 1);
      out.push({ kind: 'string', text: sql.slice(i, j) });
      i = j;
    } else if (c === '"' || c === '`' || c === '[') {
      const j = until(c === '[' ? ']' : c, i + 1);
      out.push({ kind: 'quoted', text: sql.slice(i + 1, j - 1).toLowerCase() });
      i = j;
    } else if (/[A-Za-z_\u0080-\uffff]/.test(c)) {
      let j = i + 1;
      while (j < n && /[A-Za-z0-9_$\u0080-\uffff]/.test(sql[j]!)) j++;
      out.push({ kind: 'word', text: sql.slice(i, j).toLowerCase() });
      i = j;
    } else {
      out.push({ kind: 'punct', text: c });
      i++;
    }
  }
  return out;
}

export interface CheckOptions {
  /** Several statements separated by ';' (migrations run through `exec`). */
  multiple?: boolean;
}

// Texts that passed (applications repeat a few statements): checked once.
const passed = new Set<string>();
const PASSED_MAX = 10_000;

/** Throws a coded SqlError if `sql` may not be replicated (or, for queries, run locally). */
export function checkStatement(sql: string, where: string, options: CheckOptions = {}): void {
  if (typeof sql !== 'string') throw new SqlError('ERR_SQL_ERROR', `${where}: the SQL must be a string, got ${typeof sql}`);
  const key = options.multiple ? `;${sql}` : sql;
  if (passed.has(key)) return;
  check(sql, where, options);
  if (passed.size >= PASSED_MAX) passed.clear();
  passed.add(key);
}

function check(sql: string, where: string, options: CheckOptions): void {
  const all = tokens(sql);
  // Split at ';'. A trigger's body holds ';' (and CASE ... END), so a CREATE TRIGGER is taken
  // to run to the end of the text; SQLite itself refuses anything after it, on every replica.
  const statements: Token[][] = [[]];
  for (const t of all) {
    const current = statements[statements.length - 1]!;
    const trigger = current[0]?.text === 'create' && current.slice(1, 3).some((w) => w.text === 'trigger');
    if (t.kind === 'punct' && t.text === ';' && !trigger) {
      if (current.length > 0) statements.push([]);
      continue;
    }
    current.push(t);
  }
  const nonEmpty = statements.filter((s) => s.length > 0);
  if (nonEmpty.length === 0) throw new SqlError('ERR_SQL_ERROR', `${where}: no SQL statement in ${JSON.stringify(sql)}`);
  if (nonEmpty.length > 1 && !options.multiple)
    throw new SqlError('ERR_SQL_FORBIDDEN', `${where}: one statement per call (batch() runs several atomically): ${excerpt(sql)}`);
  for (const s of nonEmpty) checkOne(s, sql, where);
}

function checkOne(s: Token[], sql: string, where: string): void {
  const first = s[0]!;
  if (first.kind === 'word' && FORBIDDEN_FIRST.has(first.text))
    throw new SqlError('ERR_SQL_FORBIDDEN',
      `${where}: ${first.text.toUpperCase()} statements are not replicated (each write already runs in its own transaction; ` +
      `connection settings are raftstore's): ${excerpt(sql)}`);
  if (first.text === 'create' && (s[1]?.text === 'temp' || s[1]?.text === 'temporary'))
    throw new SqlError('ERR_SQL_FORBIDDEN', `${where}: temporary objects belong to one connection and would differ between replicas: ${excerpt(sql)}`);
  for (let i = 0; i < s.length; i++) {
    const t = s[i]!;
    if (t.kind !== 'word' && t.kind !== 'quoted') continue;
    if (t.text.startsWith('_raftstore'))
      throw new SqlError('ERR_SQL_FORBIDDEN', `${where}: ${t.text} is raftstore's own table: ${excerpt(sql)}`);
    if (t.text === 'temp' && s[i + 1]?.text === '.')
      throw new SqlError('ERR_SQL_FORBIDDEN', `${where}: the temp schema belongs to one connection: ${excerpt(sql)}`);
    if (t.kind === 'word' && t.text === 'total_changes' && s[i + 1]?.text === '(')
      throw new SqlError('ERR_SQL_NONDETERMINISTIC',
        `${where}: total_changes() counts since the connection opened, which differs between replicas: ${excerpt(sql)}`);
  }
}

function excerpt(sql: string): string {
  const one = sql.replace(/\s+/g, ' ').trim();
  return JSON.stringify(one.length > 80 ? `${one.slice(0, 77)}...` : one);
}
