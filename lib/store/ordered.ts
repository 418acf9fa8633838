// An ordered multiset of (key, id) pairs for range queries: sorted chunks of at most CHUNK
// entries, so an insert or delete moves O(CHUNK) entries rather than O(n), and building from
// n entries is one sort. Keys of one index are all numbers, all strings or all bigints.
export type OrderedKey = number | string | bigint;

const CHUNK = 512;

interface Item {
  key: OrderedKey;
  id: number;
}

function compare(a: Item, b: Item): number {
  if (a.key < b.key) return -1;
  if (a.key > b.key) return 1;
  return a.id - b.id;
}

export interface Range {
  gt?: OrderedKey;
  gte?: OrderedKey;
  lt?: OrderedKey;
  lte?: OrderedKey;
}

export class OrderedIndex {
  #chunks: Item[][] = [];
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** Replaces the contents with `items` (any order). */
  build(items: Item[]): void {
    items.sort(compare);
    this.#chunks = [];
    for (let i = 0; i < items.length; i += CHUNK) this.#chunks.push(items.slice(i, i + CHUNK));
    this.#size = items.length;
  }

  insert(key: OrderedKey, id: number): void {
    const item = { key, id };
    if (this.#chunks.length === 0) {
      this.#chunks.push([item]);
      this.#size = 1;
      return;
    }
    const c = this.#chunkFor(item);
    const chunk = this.#chunks[c]!;
    chunk.splice(lowerBound(chunk, item), 0, item);
    this.#size++;
    if (chunk.length > 2 * CHUNK) this.#chunks.splice(c, 1, chunk.slice(0, CHUNK), chunk.slice(CHUNK));
  }

  /** False if (key, id) was not there. */
  delete(key: OrderedKey, id: number): boolean {
    const item = { key, id };
    if (this.#chunks.length === 0) return false;
    const c = this.#chunkFor(item);
    const chunk = this.#chunks[c]!;
    const at = lowerBound(chunk, item);
    if (at >= chunk.length || compare(chunk[at]!, item) !== 0) return false;
    chunk.splice(at, 1);
    this.#size--;
    if (chunk.length === 0) this.#chunks.splice(c, 1);
    return true;
  }

  /** Ids whose keys fall in `range`, in key order (then id), or reversed. */
  *range(range: Range = {}, reverse = false): IterableIterator<number> {
    const inLow = (k: OrderedKey): boolean =>
      (range.gt === undefined || k > range.gt) && (range.gte === undefined || k >= range.gte);
    const inHigh = (k: OrderedKey): boolean =>
      (range.lt === undefined || k < range.lt) && (range.lte === undefined || k <= range.lte);
    if (!reverse) {
      const low = range.gte ?? range.gt;
      let c = 0;
      let i = 0;
      if (low !== undefined) {
        // The first chunk whose last key reaches the low bound, then the first item in it.
        const probe = { key: low, id: -Infinity };
        c = this.#firstChunkEndingAtOrAfter(probe);
        i = c < this.#chunks.length ? lowerBound(this.#chunks[c]!, probe) : 0;
      }
      for (; c < this.#chunks.length; c++, i = 0) {
        const chunk = this.#chunks[c]!;
        for (; i < chunk.length; i++) {
          const it = chunk[i]!;
          if (!inHigh(it.key)) return;
          if (inLow(it.key)) yield it.id;
        }
      }
    } else {
      const high = range.lte ?? range.lt;
      let c = this.#chunks.length - 1;
      let i = c >= 0 ? this.#chunks[c]!.length - 1 : -1;
      if (high !== undefined && c >= 0) {
        // The last item at or below the high bound.
        const probe = { key: high, id: Infinity };
        const after = this.#firstChunkEndingAtOrAfter(probe);
        if (after < this.#chunks.length) {
          c = after;
          i = lowerBound(this.#chunks[c]!, probe) - 1;
        }
      }
      for (; c >= 0; c--, i = c >= 0 ? this.#chunks[c]!.length - 1 : -1) {
        const chunk = this.#chunks[c]!;
        for (; i >= 0; i--) {
          const it = chunk[i]!;
          if (!inLow(it.key)) return;
          if (inHigh(it.key)) yield it.id;
        }
      }
    }
  }

  // The chunk an item belongs in: the first whose last item is >= it (else the last chunk).
  #chunkFor(item: Item): number {
    const c = this.#firstChunkEndingAtOrAfter(item);
    return Math.min(c, this.#chunks.length - 1);
  }

  #firstChunkEndingAtOrAfter(item: Item): number {
    let lo = 0;
    let hi = this.#chunks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const chunk = this.#chunks[mid]!;
      if (compare(chunk[chunk.length - 1]!, item) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

function lowerBound(chunk: Item[], item: Item): number {
  let lo = 0;
  let hi = chunk.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compare(chunk[mid]!, item) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
