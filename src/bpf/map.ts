/**
 * Typed map handles. A BpfMap owns one file descriptor; close() is
 * idempotent and `using` works (Symbol.dispose). Per-CPU maps return one
 * value per possible CPU; `sum` folds them.
 */
import { addon } from './addon.js';
import type { NativeMap, NativeMapInfo } from './native.js';
import type { Codec } from './codecs.js';
import { BpfError, wrongPinKind } from './errors.js';
import { hasBatchApi } from './probes.js';
import { Slicer, TICK_EVERY } from '../system/slices.js';

export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;

export class BpfMap<K, V> implements Disposable {
  readonly name: string;

  constructor(
    protected readonly handle: NativeMap,
    readonly keyCodec: Codec<K>,
    readonly valueCodec: Codec<V>,
  ) {
    this.name = handle.info.name;
    const info = handle.info;
    if (keyCodec.size !== info.keySize) {
      throw new RangeError(`map ${this.name}: key codec is ${keyCodec.size} bytes, map key is ${info.keySize}`);
    }
    if (valueCodec.size > info.valueSize) {
      throw new RangeError(`map ${this.name}: value codec is ${valueCodec.size} bytes, map value is ${info.valueSize}`);
    }
  }

  /** Opens a map pinned on bpffs. */
  static openPinned<K, V>(path: string, key: Codec<K>, value: Codec<V>): BpfMap<K, V> {
    return new BpfMap(openPinnedMap(path), key, value);
  }

  get info(): NativeMapInfo {
    return this.handle.info;
  }

  get fd(): number {
    return this.handle.fd;
  }

  get closed(): boolean {
    return this.handle.closed;
  }

  /** The addon handle, for passing to another object (reuseMapFd). */
  get nativeHandle(): NativeMap {
    return this.handle;
  }

  protected encodeValue(v: V): Buffer {
    const buf = Buffer.alloc(this.handle.info.valueBytes);
    this.valueCodec.encode(v, buf, 0);
    return buf;
  }

  get(key: K): V | undefined {
    const raw = this.handle.lookup(this.keyCodec.encode(key));
    return raw ? this.valueCodec.decode(raw) : undefined;
  }

  set(key: K, value: V, flags = BPF_ANY): void {
    this.handle.update(this.keyCodec.encode(key), this.encodeValue(value), flags);
  }

  /** Raw update for callers that already hold encoded bytes (e.g. tests of size checks). */
  setRaw(key: Buffer, value: Buffer, flags = BPF_ANY): void {
    this.handle.update(key, value, flags);
  }

  delete(key: K): boolean {
    return this.handle.delete(this.keyCodec.encode(key));
  }

  *keys(): Generator<K> {
    let cur: Buffer | null = null;
    for (;;) {
      const next: Buffer | null = this.handle.nextKey(cur);
      if (!next) return;
      yield this.keyCodec.decode(next);
      cur = next;
    }
  }

  /** All entries; batch lookup where the kernel and map type have it, else iteration. */
  async entries(): Promise<[K, V][]> {
    if (this.canBatch('lookup')) {
      try {
        const b = await this.handle.lookupBatch();
        const out: [K, V][] = [];
        const ks = this.handle.info.keySize;
        const vs = this.handle.info.valueBytes;
        // a million entries: decoded in slices, the event loop runs between them
        const slicer = new Slicer();
        for (let i = 0; i < b.count; i++) {
          if (i % TICK_EVERY === 0) if (slicer.due()) await slicer.pause();
          out.push([this.keyCodec.decode(b.keys, i * ks), this.valueCodec.decode(b.values, i * vs)]);
        }
        return out;
      } catch (e) {
        if (!this.lacksBatchOp('lookup', e)) throw e;
      }
    }
    const out: [K, V][] = [];
    for (const k of this.keys()) {
      const v = this.get(k);
      if (v !== undefined) out.push([k, v]);
    }
    return out;
  }

  /**
   * Every entry as raw bytes, keys and values back to back (`count` of each):
   * one batch lookup off the JS thread where the kernel and map type have
   * it, else iteration. Nothing decoded per entry (a million entries).
   */
  async rawEntries(): Promise<{ count: number; keys: Buffer; values: Buffer }> {
    if (this.canBatch('lookup')) {
      try {
        return await this.handle.lookupBatch();
      } catch (e) {
        if (!this.lacksBatchOp('lookup', e)) throw e;
      }
    }
    const ks = this.handle.info.keySize;
    const vs = this.handle.info.valueBytes;
    const keys: Buffer[] = [];
    const values: Buffer[] = [];
    for (let cur: Buffer | null = this.handle.nextKey(null); cur; cur = this.handle.nextKey(cur)) {
      const v = this.handle.lookup(cur);
      if (!v) continue;
      keys.push(cur);
      values.push(v);
    }
    return { count: keys.length, keys: Buffer.concat(keys, keys.length * ks), values: Buffer.concat(values, values.length * vs) };
  }

  /**
   * Writes `keys.length / keySize` entries given as raw bytes back to back
   * (BPF_ANY): one batch syscall where supported, else one by one. A failure
   * carries `done`, as setMany's.
   */
  async setManyRaw(keys: Buffer, values: Buffer): Promise<number> {
    const ks = this.handle.info.keySize;
    const vs = this.handle.info.valueBytes;
    const n = keys.length / ks;
    if (n === 0) return 0;
    if (values.length !== n * vs) throw new RangeError(`map ${this.name}: ${n} keys but ${values.length / vs} values`);
    if (this.canBatch('update')) {
      try {
        return await this.handle.updateBatch(keys, values, BPF_ANY);
      } catch (e) {
        if (!this.lacksBatchOp('update', e)) throw e;
      }
    }
    for (let i = 0; i < n; i++) {
      try {
        this.handle.update(keys.subarray(i * ks, (i + 1) * ks), values.subarray(i * vs, (i + 1) * vs), BPF_ANY);
      } catch (e) {
        throw withDone(e, i, i, n, 'written');
      }
    }
    return n;
  }

  /** Deletes keys given as raw bytes back to back, as deleteMany does. */
  async deleteManyRaw(keys: Buffer): Promise<number> {
    const ks = this.handle.info.keySize;
    const n = keys.length / ks;
    if (n === 0) return 0;
    if (this.canBatch('delete')) {
      try {
        return await this.handle.deleteBatch(keys);
      } catch (e) {
        if (!this.lacksBatchOp('delete', e)) throw e;
      }
    }
    let done = 0;
    for (let i = 0; i < n; i++) {
      try {
        if (this.handle.delete(keys.subarray(i * ks, (i + 1) * ks))) done++;
      } catch (e) {
        throw withDone(e, i, done, n, 'deleted');
      }
    }
    return done;
  }

  /**
   * Writes many entries: one batch syscall where supported, else one by one.
   * Resolves to the number written; a failure rejects with a BpfError whose
   * `done` says how many entries were really written before it.
   * The kernel's batch command takes no BPF_NOEXIST/BPF_EXIST element flags,
   * so those go one by one (in order, stopping at the first failure).
   */
  async setMany(entries: readonly (readonly [K, V])[], flags = BPF_ANY): Promise<number> {
    if (entries.length === 0) return 0;
    const ks = this.handle.info.keySize;
    const vs = this.handle.info.valueBytes;
    const keys = Buffer.alloc(ks * entries.length);
    const values = Buffer.alloc(vs * entries.length);
    const slicer = new Slicer();
    for (let i = 0; i < entries.length; i++) {
      if (i % TICK_EVERY === 0) if (slicer.due()) await slicer.pause();
      const [k, v] = entries[i]!;
      this.keyCodec.encode(k, keys, i * ks);
      this.valueCodec.encode(v, values, i * vs);
    }
    if (flags === BPF_ANY && this.canBatch('update')) {
      try {
        return await this.handle.updateBatch(keys, values, flags);
      } catch (e) {
        if (!this.lacksBatchOp('update', e)) throw e;
      }
    }
    for (let i = 0; i < entries.length; i++) {
      try {
        this.handle.update(keys.subarray(i * ks, (i + 1) * ks), values.subarray(i * vs, (i + 1) * vs), flags);
      } catch (e) {
        throw withDone(e, i, i, entries.length, 'written');
      }
    }
    return entries.length;
  }

  /**
   * Deletes many keys: a missing key fails the batch with ENOENT (one by
   * one, where batches are unavailable, missing keys are skipped and not
   * counted). A failure carries `done`, the number really deleted.
   */
  async deleteMany(keys: readonly K[]): Promise<number> {
    if (keys.length === 0) return 0;
    const ks = this.handle.info.keySize;
    const buf = Buffer.alloc(ks * keys.length);
    const slicer = new Slicer();
    for (let i = 0; i < keys.length; i++) {
      if (i % TICK_EVERY === 0) if (slicer.due()) await slicer.pause();
      this.keyCodec.encode(keys[i]!, buf, i * ks);
    }
    if (this.canBatch('delete')) {
      try {
        return await this.handle.deleteBatch(buf);
      } catch (e) {
        if (!this.lacksBatchOp('delete', e)) throw e;
      }
    }
    let n = 0;
    for (let i = 0; i < keys.length; i++) {
      try {
        if (this.handle.delete(buf.subarray(i * ks, (i + 1) * ks))) n++;
      } catch (e) {
        throw withDone(e, i, n, keys.length, 'deleted');
      }
    }
    return n;
  }

  private readonly unbatchable = new Set<BatchOp>();

  private canBatch(op: BatchOp): boolean {
    return !this.unbatchable.has(op) && hasBatchApi();
  }

  /**
   * ENOTSUPP from a batch call means this map type lacks the operation (LPM
   * tries have no batch ops): remember it and go one by one. Every other
   * error (EINVAL included) is the caller's.
   */
  private lacksBatchOp(op: BatchOp, e: unknown): boolean {
    if (!(e instanceof BpfError) || e.code !== 'ENOTSUPP' || (e.done ?? 0) > 0) return false;
    this.unbatchable.add(op);
    return true;
  }

  /** Removes every entry (hash and trie maps; arrays cannot delete). */
  async clear(): Promise<number> {
    const all = [...this.keys()];
    return this.deleteMany(all);
  }

  pin(path: string): void {
    this.handle.pin(path);
  }

  close(): void {
    this.handle.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** A per-CPU map: values are arrays with one element per possible CPU. */
export class PerCpuMap<K, V> extends BpfMap<K, V[]> {
  private readonly stride: number;
  private readonly cpus: number;

  constructor(handle: NativeMap, keyCodec: Codec<K>, readonly elementCodec: Codec<V>) {
    const info = handle.info;
    if (!info.perCpu) throw new RangeError(`map ${info.name} is ${info.type}, not a per-CPU map`);
    const stride = Math.ceil(info.valueSize / 8) * 8;
    const cpus = info.possibleCpus;
    const arrayCodec: Codec<V[]> = {
      size: info.valueSize,
      align: 8,
      encode(values, into = Buffer.alloc(stride * cpus), o = 0) {
        if (values.length !== cpus) throw new RangeError(`map ${info.name}: need ${cpus} per-CPU values, got ${values.length}`);
        values.forEach((v, i) => elementCodec.encode(v, into, o + i * stride));
        return into;
      },
      decode(b, o = 0) {
        const out: V[] = [];
        for (let i = 0; i < cpus; i++) out.push(elementCodec.decode(b, o + i * stride));
        return out;
      },
    };
    super(handle, keyCodec, arrayCodec);
    this.stride = stride;
    this.cpus = cpus;
  }

  static openPinnedPerCpu<K, V>(path: string, key: Codec<K>, value: Codec<V>): PerCpuMap<K, V> {
    return new PerCpuMap(openPinnedMap(path), key, value);
  }

  get possibleCpus(): number {
    return this.cpus;
  }

  get valueStride(): number {
    return this.stride;
  }

  /** The same value on every CPU (e.g. zeroing counters). */
  setAll(key: K, value: V): void {
    this.set(key, Array.from({ length: this.cpus }, () => value));
  }
}

export function openPinnedMap(path: string): NativeMap {
  const h = addon().openPinned(path);
  if (!(h instanceof addon().NativeMap)) {
    h.close();
    throw wrongPinKind(path, 'program', 'map');
  }
  return h;
}

type BatchOp = 'lookup' | 'update' | 'delete';

/** The error of entry `index` of n, told with the real count done before it. */
function withDone(e: unknown, index: number, done: number, n: number, verb: string): unknown {
  if (!(e instanceof BpfError)) return e;
  return new BpfError(`${e.message}; entry ${index} failed; ${done} of ${n} entries ${verb}`, {
    errno: e.errno,
    code: e.code,
    operation: e.operation,
    object: e.object,
    done,
  });
}

/** Sums numeric fields of per-CPU values: [{packets, bytes}, ...] -> {packets, bytes}. */
export function sumPerCpu<T extends Record<string, bigint>>(values: readonly T[]): T {
  const out: Record<string, bigint> = {};
  for (const v of values) for (const [k, n] of Object.entries(v)) out[k] = (out[k] ?? 0n) + n;
  return out as T;
}
