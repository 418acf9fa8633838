// Waiting in tests: for a condition, or for a probe to produce a value, with a deadline.
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves once `cond()` holds; fails naming `what` after `ms`. */
export async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  await eventually(what, () => (cond() ? true : undefined), ms);
}

/** Resolves with the first value `probe()` gives other than undefined; fails after `ms`. */
export async function eventually<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
