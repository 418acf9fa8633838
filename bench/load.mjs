// The closed-loop load of `npm run bench:node`, the same code for every Node client: each of
// `concurrency` async workers awaits one operation, then issues the next, for `seconds`.
// Latency is measured per operation with performance.now(). Times reported as absolute
// milliseconds (performance.timeOrigin + performance.now()) so that another process on the
// same machine can relate them to its own clock (when it killed a leader).

import { monitorEventLoopDelay } from 'node:perf_hooks';

export const now = () => performance.timeOrigin + performance.now();

// op(worker) returns a promise; a rejection counts as an error and the worker goes on
// (after `errorPauseMs`, so that a worker facing a dead server does not spin).
export async function closedLoop(concurrency, seconds, op, { errorPauseMs = 1 } = {}) {
  const latencies = [];
  const completions = []; // absolute completion times of successes, only when tracking gaps
  let errors = 0;
  let firstError = '';
  const start = performance.now();
  const end = start + seconds * 1000;
  const worker = async (w) => {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        await op(w);
        const t1 = performance.now();
        latencies.push(t1 - t0);
        completions.push(performance.timeOrigin + t1);
      } catch (e) {
        errors += 1;
        if (!firstError) firstError = `${e?.code ?? e?.name ?? 'Error'}: ${e?.message ?? e}`;
        await new Promise((r) => setTimeout(r, errorPauseMs));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  const elapsed = (performance.now() - start) / 1000;
  return summarize(latencies, completions, errors, firstError, seconds, elapsed, start + performance.timeOrigin);
}

function summarize(latencies, completions, errors, firstError, seconds, elapsed, startAbs) {
  const sorted = Float64Array.from(latencies).sort();
  const pct = (q) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]);
  // The gaps between successive successful completions (any worker), largest first: the
  // outage a client saw is the largest one that ends after the leader was killed.
  completions.sort((a, b) => a - b);
  const gaps = [];
  let prev = startAbs;
  for (const t of completions) {
    if (t - prev > 2) gaps.push([prev, t]);
    prev = t;
  }
  gaps.sort((a, b) => (b[1] - b[0]) - (a[1] - a[0]));
  return {
    ops: sorted.length,
    writesPerSec: sorted.length / seconds,
    elapsed,
    p50: pct(0.5),
    p99: pct(0.99),
    p999: pct(0.999),
    errors,
    firstError,
    gaps: gaps.slice(0, 50),
    lastCompletion: completions.length ? completions[completions.length - 1] : null,
    end: performance.timeOrigin + performance.now(),
  };
}

// The outage a client saw around a kill at absolute time `killAt`: the longest gap between
// successive successful completions that ends after the kill (or, if nothing completed
// after it, from the last completion to the end of the run, marked `recovered: false`).
export function outageAround(result, killAt) {
  if (result.lastCompletion === null || result.lastCompletion < killAt)
    return { ms: result.end - Math.min(killAt, result.lastCompletion ?? killAt), recovered: false };
  let ms = 0;
  for (const [a, b] of result.gaps) if (b >= killAt) ms = Math.max(ms, b - a);
  return { ms, recovered: true };
}

const pct = (sorted, q) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]);

// A closed loop of `op` for `seconds`; with `snapshot`, `takeSnapshot()` (resolving with the
// snapshot's info) back to back from `delayMs` while the window lasts (the load goes on
// until the last one is done). Every op's start and end are kept, so the latencies of the
// ops that overlapped a snapshot can be told apart from the others.
export async function snapshotLoad({ concurrency = 32, seconds = 10, snapshot = false, delayMs = 500 }, op, takeSnapshot) {
  const starts = [];
  const ends = [];
  let errors = 0;
  let firstError = '';
  let stop = false;
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  const worker = async () => {
    while (!stop) {
      const s = performance.now();
      try {
        await op();
        starts.push(s);
        ends.push(performance.now());
      } catch (e) {
        errors += 1;
        if (!firstError) firstError = `${e?.code ?? e?.name ?? 'Error'}: ${e?.message ?? e}`;
        await new Promise((r) => setTimeout(r, 1));
      }
    }
  };
  const workers = Array.from({ length: concurrency }, worker);
  const snaps = [];
  const snapper = (async () => {
    if (!snapshot) return;
    await new Promise((r) => setTimeout(r, delayMs));
    while (performance.now() < end) {
      const start = performance.now();
      const info = await takeSnapshot();
      snaps.push({ start, end: performance.now(), info: { ms: performance.now() - start, ...info } });
    }
  })();
  await new Promise((r) => setTimeout(r, Math.max(0, end - performance.now())));
  await snapper;
  stop = true;
  await Promise.all(workers);
  delay.disable();
  const elapsed = (performance.now() - t0) / 1000;
  const all = [];
  const during = [];
  for (let i = 0; i < starts.length; i++) {
    const lat = ends[i] - starts[i];
    all.push(lat);
    if (snaps.some((w) => starts[i] < w.end && ends[i] > w.start)) during.push(lat);
  }
  const sortAll = Float64Array.from(all).sort();
  const sortDuring = Float64Array.from(during).sort();
  return {
    ops: all.length, elapsed, txPerSec: all.length / elapsed, errors, firstError,
    p50: pct(sortAll, 0.5), p99: pct(sortAll, 0.99), p999: pct(sortAll, 0.999),
    duringOps: during.length, duringP50: pct(sortDuring, 0.5), duringP99: pct(sortDuring, 0.99),
    snapshots: snaps.map((w) => w.info),
    loopDelayMaxMs: delay.max / 1e6, loopDelayP99Ms: delay.percentile(99) / 1e6,
  };
}
