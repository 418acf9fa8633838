// The closed-loop load of `npm run bench:node`, the same code for every Node client: each of
// `concurrency` async workers awaits one operation, then issues the next, for `seconds`.
// Latency is measured per operation with performance.now(). Times reported as absolute
// milliseconds (performance.timeOrigin + performance.now()) so that another process on the
// same machine can relate them to its own clock (when it killed a leader).

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
