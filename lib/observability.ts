// What an operator sees from JavaScript: the engine's structured log records through a
// pino-compatible logger, and its metric families (named and described once, in
// native/runtime/metrics.cpp) for node.metrics() and an app's prom-client registry.
import { RaftError } from './errors.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/** The fields of one engine log record, besides its message. */
export interface LogFields {
  group: string;
  peer: string;
  [field: string]: string;
}

/**
 * The part of pino's interface raftstore calls: `logger.info({ group, peer, ...fields }, msg)`.
 * A pino logger (or a child of one) fits as it is; so does any object with these four methods.
 */
export interface Logger {
  debug(fields: LogFields, message: string): void;
  info(fields: LogFields, message: string): void;
  warn(fields: LogFields, message: string): void;
  error(fields: LogFields, message: string): void;
}

/** A record of the status page's recent events (info and above). */
export interface LogEvent {
  timeMs: number;
  level: LogLevel;
  message: string;
  fields: Record<string, string>;
}

/** The level from the option, else RAFTSTORE_LOG, else 'info'. */
export function resolveLogLevel(option: unknown): LogLevel {
  const from = option ?? process.env.RAFTSTORE_LOG;
  if (from === undefined || from === '') return 'info';
  const level = from === 'warning' ? 'warn' : from;
  if (typeof level !== 'string' || !(LOG_LEVELS as readonly string[]).includes(level))
    throw new RaftError('ERR_RAFT_BAD_CONFIG',
      `${option === undefined ? 'RAFTSTORE_LOG' : 'logLevel'} must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(from)}`);
  return level as LogLevel;
}

function line(level: LogLevel, fields: LogFields, message: string): string {
  const { group, peer, ...rest } = fields;
  const extra = Object.entries(rest).map(([k, v]) => ` ${k}=${/[\s"=]/.test(v) || v === '' ? JSON.stringify(v) : v}`).join('');
  return `${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} raftstore ${group} ${peer}: ${message}${extra}\n`;
}

/** The default: one line per record on stderr, e.g. `… INFO  raftstore g 127.0.0.1:8100:0:0: became leader term=2`. */
export const stderrLogger: Logger = {
  debug: (f, m) => void process.stderr.write(line('debug', f, m)),
  info: (f, m) => void process.stderr.write(line('info', f, m)),
  warn: (f, m) => void process.stderr.write(line('warn', f, m)),
  error: (f, m) => void process.stderr.write(line('error', f, m)),
};

export interface MetricSample {
  /** The full sample name: the family's, or with `_bucket`, `_sum` or `_count` for histograms. */
  name: string;
  labels: Record<string, string>;
  value: number;
}
export interface MetricFamily {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  samples: MetricSample[];
}

/** Anything with metrics(): a RaftNode, a Store, SqlStore or KvStore. */
export interface MetricsSource {
  metrics(): MetricFamily[];
}

/**
 * The part of prom-client's Registry that registerMetrics uses. prom-client types its
 * parameter as its own metric classes; what it reads of them is PromMetric.
 */
export interface PromRegistry {
  registerMetric(metric: never): void;
}
/** What prom-client's registry reads from a metric (as its own Counter, Gauge, Histogram). */
export interface PromMetric {
  name: string;
  help: string;
  type: MetricFamily['type'];
  aggregator: 'sum';
  get(): Promise<{ name: string; help: string; type: MetricFamily['type']; aggregator: 'sum'; values: { value: number; labels: Record<string, string>; metricName: string }[] }>;
  reset(): void;
}

/** Families from several sources, merged by name; a sample seen twice (the same port's) once. */
export function mergeFamilies(sources: readonly MetricsSource[]): MetricFamily[] {
  const byName = new Map<string, { family: MetricFamily; seen: Set<string> }>();
  for (const source of sources)
    for (const f of source.metrics()) {
      let entry = byName.get(f.name);
      if (!entry) byName.set(f.name, entry = { family: { ...f, samples: [] }, seen: new Set() });
      for (const s of f.samples) {
        const key = `${s.name}${JSON.stringify(s.labels)}`;
        if (entry.seen.has(key)) continue;
        entry.seen.add(key);
        entry.family.samples.push(s);
      }
    }
  return [...byName.values()].map((e) => e.family);
}

/**
 * Registers every raftstore metric of `sources` in a prom-client Registry (`register`, or one
 * of your own), read fresh at each scrape. Sources may be closed later: they then report
 * nothing. Metric names already taken in the registry throw, as prom-client does.
 */
export function registerMetrics(registry: PromRegistry, ...sources: MetricsSource[]): void {
  if (sources.length === 0) throw new RaftError('ERR_RAFT_BAD_ARGUMENT', 'registerMetrics needs at least one node or store');
  // One scrape reads every family: the engine is asked once per scrape, not once per family.
  let cached: { at: number; families: Map<string, MetricFamily> } | undefined;
  const current = (name: string): MetricFamily | undefined => {
    const now = performance.now();
    if (!cached || now - cached.at > 100)
      cached = { at: now, families: new Map(mergeFamilies(sources).map((f) => [f.name, f])) };
    return cached.families.get(name);
  };
  for (const family of mergeFamilies(sources)) {
    const { name, help, type } = family;
    const metric: PromMetric = {
      name, help, type, aggregator: 'sum',
      async get() {
        const now = current(name);
        return {
          name, help, type, aggregator: 'sum',
          values: (now?.samples ?? []).map((s) => ({ value: s.value, labels: s.labels, metricName: s.name })),
        };
      },
      reset() {
        // Engine counters are not reset from JavaScript.
      },
    };
    (registry.registerMetric as (m: PromMetric) => void).call(registry, metric);
  }
}
