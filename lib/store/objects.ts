// The store's in-memory state: objects by class and id, and their indices, changed only by
// transactions (with an undo log, so a throwing transaction leaves no trace) and by restore.
import { StoreError } from '../errors.js';
import { OrderedIndex, type OrderedKey, type Range } from './ordered.js';

export type IndexKey = string | number | bigint | boolean | null;

/** How a class is indexed; `key` reads an object (undefined: not in this index). */
export type IndexSpec<T> =
  | { readonly kind: 'unique'; readonly key: (o: T) => IndexKey | undefined }
  | { readonly kind: 'multi'; readonly key: (o: T) => IndexKey | readonly IndexKey[] | undefined }
  | { readonly kind: 'ordered'; readonly key: (o: T) => OrderedKey | undefined };

/**
 * A class whose instances the store keeps. Objects are made from their fields with the
 * class's prototype (the constructor is not called), get a stable numeric `id`, and are
 * frozen: they change only through transactions. `storeName` (default: the class name)
 * names it in the log and in snapshots, so keep it stable.
 */
export interface StoreClass<T extends object = object> {
  readonly prototype: T;
  readonly name: string;
  readonly storeName?: string;
  readonly indices?: { readonly [name: string]: IndexSpec<T> };
}

/** Any registered class, whatever its instances (what the store's own tables hold). */
export interface AnyStoreClass {
  readonly prototype: object;
  readonly name: string;
  readonly storeName?: string | undefined;
  readonly indices?: { readonly [name: string]: IndexSpec<never> } | undefined;
}

/**
 * The names of a class's indices, from its static `indices` (declare it `as const`), of the
 * given kinds: `find(Todo, 'nosuch', …)` does not compile. A class with an index signature
 * instead of named indices accepts any name (checked when called).
 */
export type IndexName<C, Kind extends IndexSpec<never>['kind'] = IndexSpec<never>['kind']> =
  C extends { readonly indices?: infer I }
    ? { [K in keyof NonNullable<I> & string]: NonNullable<I>[K] extends { readonly kind: Kind } ? K : never }[keyof NonNullable<I> & string]
    : never;

/** A stored object: its fields, read-only, with its id. */
export type Stored<T> = Readonly<T> & { readonly id: number };

/** Fields to update an object with (no id: the store assigns it). */
export type Fields<T> = Partial<Omit<T, 'id'>>;

/** The keys of T that hold data: not its methods, not `id`. */
type DataKeys<T> = {
  [K in keyof T]-?: K extends 'id' ? never : T[K] extends (...args: never[]) => unknown ? never : K;
}[keyof T];

/**
 * The names a class lists in its static `computed` (declare it `as const`): its getters and
 * other derived properties, which TypeScript cannot tell from fields and `create` must not ask for.
 */
export type ComputedNames<C> = C extends { readonly computed: readonly (infer K extends PropertyKey)[] } ? K : never;

/**
 * What `tx.create` needs: every field of the class (an optional field, `title?: string`,
 * may be left out), but not its id, methods or `computed` properties. So a new field in a
 * class is a compile error in every transaction that creates one without it.
 */
export type CreateFields<C extends AnyStoreClass> = Omit<
  Pick<C['prototype'], DataKeys<C['prototype']>>,
  ComputedNames<C>
>;

export interface RangeQuery extends Range {
  reverse?: boolean;
  limit?: number;
}

type Index =
  | { kind: 'unique'; spec: IndexSpec<object>; map: Map<IndexKey, number> }
  | { kind: 'multi'; spec: IndexSpec<object>; map: Map<IndexKey, Set<number>> }
  | { kind: 'ordered'; spec: IndexSpec<object>; tree: OrderedIndex };

export interface ClassState {
  readonly name: string;
  readonly cls: AnyStoreClass;
  readonly objects: Map<number, Stored<object>>;
  readonly indices: Map<string, Index>;
}

function keysOf(spec: IndexSpec<object>, o: object): IndexKey[] {
  const k = spec.key(o);
  if (k === undefined) return [];
  return spec.kind === 'multi' && Array.isArray(k) ? [...new Set(k as IndexKey[])] : [k as IndexKey];
}

// Arrays and plain objects inside an object are frozen too, so no reference handed out can
// change replicated state behind the log's back.
function deepFreeze<T>(v: T): T {
  if (typeof v !== 'object' || v === null || Object.isFrozen(v)) return v;
  const proto = Object.getPrototypeOf(v) as unknown;
  if (Array.isArray(v) || proto === Object.prototype || proto === null) {
    Object.freeze(v);
    for (const x of Object.values(v as object)) deepFreeze(x);
  }
  return v;
}

export class Objects {
  readonly classes = new Map<string, ClassState>();
  readonly #byCtor = new Map<AnyStoreClass, ClassState>();
  nextId = 1;

  constructor(classes: readonly AnyStoreClass[]) {
    for (const cls of classes) {
      const name = typeof cls === 'function' ? (cls as AnyStoreClass).storeName ?? (cls as AnyStoreClass).name : '';
      if (!name)
        throw new StoreError('ERR_STORE_UNKNOWN_CLASS', 'classes must be classes with a name (or a static storeName)');
      if (this.classes.has(name))
        throw new StoreError('ERR_STORE_UNKNOWN_CLASS', `two classes are named ${JSON.stringify(name)}; give one a static storeName`);
      const indices = new Map<string, Index>();
      for (const [iname, spec] of Object.entries(cls.indices ?? {})) {
        const s = spec as unknown as IndexSpec<object>;
        if (typeof s?.key !== 'function')
          throw new StoreError('ERR_STORE_UNKNOWN_INDEX', `${name}.indices.${iname} needs a key function`);
        if (s.kind === 'unique') indices.set(iname, { kind: 'unique', spec: s, map: new Map() });
        else if (s.kind === 'multi') indices.set(iname, { kind: 'multi', spec: s, map: new Map() });
        else if (s.kind === 'ordered') indices.set(iname, { kind: 'ordered', spec: s, tree: new OrderedIndex() });
        else throw new StoreError('ERR_STORE_UNKNOWN_INDEX', `${name}.indices.${iname}.kind must be 'unique', 'multi' or 'ordered'`);
      }
      const state: ClassState = { name, cls, objects: new Map(), indices };
      this.classes.set(name, state);
      this.#byCtor.set(cls, state);
    }
  }

  of(cls: AnyStoreClass): ClassState {
    const s = this.#byCtor.get(cls);
    if (!s) throw new StoreError('ERR_STORE_UNKNOWN_CLASS', `${cls?.name ?? String(cls)} is not one of the store's classes`);
    return s;
  }

  make(state: ClassState, id: number, fields: object): Stored<object> {
    const o = Object.create(state.cls.prototype as object) as Record<string, unknown>;
    Object.assign(o, fields);
    o['id'] = id;
    return deepFreeze(Object.freeze(o)) as Stored<object>;
  }

  /**
   * Sets object `id` of `state` to `next` (undefined: deletes it), keeping every index;
   * a unique-key clash throws before anything changes. Returns the previous object.
   */
  put(state: ClassState, id: number, next: Stored<object> | undefined): Stored<object> | undefined {
    const prev = state.objects.get(id);
    if (next) {
      for (const [iname, index] of state.indices) {
        if (index.kind !== 'unique') continue;
        for (const k of keysOf(index.spec, next)) {
          const owner = index.map.get(k);
          if (owner !== undefined && owner !== id)
            throw new StoreError('ERR_STORE_UNIQUE', `${state.name}.${iname} ${String(k)} already belongs to object ${owner}`);
        }
      }
    }
    if (prev) this.#unindex(state, prev);
    if (next) {
      state.objects.set(id, next);
      this.#index(state, next);
    } else state.objects.delete(id);
    return prev;
  }

  #index(state: ClassState, o: Stored<object>): void {
    for (const index of state.indices.values()) {
      for (const k of keysOf(index.spec, o)) {
        if (index.kind === 'unique') index.map.set(k, o.id);
        else if (index.kind === 'multi') {
          let ids = index.map.get(k);
          if (!ids) index.map.set(k, (ids = new Set()));
          ids.add(o.id);
        } else index.tree.insert(k as OrderedKey, o.id);
      }
    }
  }

  #unindex(state: ClassState, o: Stored<object>): void {
    for (const index of state.indices.values()) {
      for (const k of keysOf(index.spec, o)) {
        if (index.kind === 'unique') {
          if (index.map.get(k) === o.id) index.map.delete(k);
        } else if (index.kind === 'multi') {
          const ids = index.map.get(k);
          ids?.delete(o.id);
          if (ids?.size === 0) index.map.delete(k);
        } else index.tree.delete(k as OrderedKey, o.id);
      }
    }
  }

  /** Rebuilds every index of every class from the objects (after a restore). */
  reindex(): void {
    for (const state of this.classes.values()) {
      for (const [iname, index] of state.indices) {
        if (index.kind === 'ordered') {
          const items: { key: OrderedKey; id: number }[] = [];
          for (const o of state.objects.values())
            for (const k of keysOf(index.spec, o)) items.push({ key: k as OrderedKey, id: o.id });
          index.tree.build(items);
          continue;
        }
        index.map.clear();
        for (const o of state.objects.values()) {
          for (const k of keysOf(index.spec, o)) {
            if (index.kind === 'unique') {
              const owner = index.map.get(k);
              if (owner !== undefined)
                throw new StoreError('ERR_STORE_UNIQUE', `${state.name}.${iname} ${String(k)} belongs to objects ${owner} and ${o.id}`);
              index.map.set(k, o.id);
            } else {
              let ids = index.map.get(k);
              if (!ids) index.map.set(k, (ids = new Set()));
              ids.add(o.id);
            }
          }
        }
      }
    }
  }

  index(state: ClassState, name: string): Index {
    const index = state.indices.get(name);
    if (!index) throw new StoreError('ERR_STORE_UNKNOWN_INDEX', `${state.name} has no index ${JSON.stringify(name)}`);
    return index;
  }
}

/** Read access to the store's objects: what `store.read(fn)` and transactions see. */
export class View {
  readonly #objects: Objects;
  constructor(objects: Objects) {
    this.#objects = objects;
  }
  protected check(): void {}

  get<T extends object>(cls: StoreClass<T>, id: number): Stored<T> | undefined {
    this.check();
    return this.#objects.of(cls).objects.get(id) as Stored<T> | undefined;
  }
  /** Every object of the class, in id order (creation order). */
  all<T extends object>(cls: StoreClass<T>): Stored<T>[] {
    this.check();
    return [...this.#objects.of(cls).objects.values()] as Stored<T>[];
  }
  count(cls: AnyStoreClass): number {
    this.check();
    return this.#objects.of(cls).objects.size;
  }
  /** The objects with `key` in index `index` (unique or multi). */
  find<C extends AnyStoreClass>(cls: C, index: IndexName<C>, key: IndexKey): Stored<C['prototype']>[] {
    type T = C['prototype'];
    this.check();
    const state = this.#objects.of(cls);
    const ix = this.#objects.index(state, index);
    const get = (id: number): Stored<T> => state.objects.get(id) as Stored<T>;
    if (ix.kind === 'unique') {
      const id = ix.map.get(key);
      return id === undefined ? [] : [get(id)];
    }
    if (ix.kind === 'multi') return [...(ix.map.get(key) ?? [])].sort((a, b) => a - b).map(get);
    return [...ix.tree.range({ gte: key as OrderedKey, lte: key as OrderedKey })].map(get);
  }
  findOne<C extends AnyStoreClass>(cls: C, index: IndexName<C>, key: IndexKey): Stored<C['prototype']> | undefined {
    return this.find(cls, index, key)[0];
  }
  /** Objects by an ordered index, within bounds, in key order (then id). */
  range<C extends AnyStoreClass>(cls: C, index: IndexName<C, 'ordered'>, query: RangeQuery = {}): Stored<C['prototype']>[] {
    type T = C['prototype'];
    this.check();
    const state = this.#objects.of(cls);
    const ix = this.#objects.index(state, index);
    if (ix.kind !== 'ordered')
      throw new StoreError('ERR_STORE_UNKNOWN_INDEX', `${state.name}.${index} is ${ix.kind}, not ordered`);
    const out: Stored<T>[] = [];
    const limit = query.limit ?? Infinity;
    for (const id of ix.tree.range(query, query.reverse ?? false)) {
      if (out.length >= limit) break;
      out.push(state.objects.get(id) as Stored<T>);
    }
    return out;
  }
}

/** What a transaction function gets: reads, plus changes that commit or vanish together. */
export class Transaction extends View {
  readonly #objects: Objects;
  readonly #undo: { state: ClassState; id: number; prev: Stored<object> | undefined }[] = [];
  #open = true;

  constructor(objects: Objects) {
    super(objects);
    this.#objects = objects;
  }

  protected override check(): void {
    if (!this.#open)
      throw new StoreError('ERR_STORE_TX_CLOSED', 'this transaction has ended; use the tx only inside its function');
  }

  create<C extends AnyStoreClass>(cls: C, fields: CreateFields<C>): Stored<C['prototype']> {
    this.check();
    const state = this.#objects.of(cls);
    const id = this.#objects.nextId;
    const o = this.#objects.make(state, id, fields);
    this.#change(state, id, o);
    this.#objects.nextId = id + 1;
    return o as Stored<C['prototype']>;
  }

  /** Replaces fields of the object (`patch` may be a function of the current object). */
  update<T extends object>(cls: StoreClass<T>, id: number, patch: Fields<T> | ((o: Stored<T>) => Fields<T>)): Stored<T> {
    this.check();
    const state = this.#objects.of(cls);
    const prev = state.objects.get(id) as Stored<T> | undefined;
    if (!prev) throw new StoreError('ERR_STORE_NO_OBJECT', `${state.name} ${id} does not exist`);
    const fields = typeof patch === 'function' ? patch(prev) : patch;
    const o = this.#objects.make(state, id, { ...prev, ...fields });
    this.#change(state, id, o);
    return o as Stored<T>;
  }

  delete(cls: AnyStoreClass, id: number): void {
    this.check();
    const state = this.#objects.of(cls);
    if (!state.objects.has(id)) throw new StoreError('ERR_STORE_NO_OBJECT', `${state.name} ${id} does not exist`);
    this.#change(state, id, undefined);
  }

  #change(state: ClassState, id: number, next: Stored<object> | undefined): void {
    const prev = this.#objects.put(state, id, next);
    this.#undo.push({ state, id, prev });
  }

  /** Ends the transaction; with `rollback`, undoes its changes, newest first. */
  end(rollback: boolean, nextIdBefore: number): void {
    this.#open = false;
    if (!rollback) return;
    for (let i = this.#undo.length - 1; i >= 0; i--) {
      const u = this.#undo[i]!;
      this.#objects.put(u.state, u.id, u.prev);
    }
    this.#objects.nextId = nextIdBefore;
  }
}
