// Exactly what native/src exports. Nothing else may touch the addon.
export interface NativeMapInfo {
  name: string;
  id: number;
  type: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  perCpu: boolean;
  possibleCpus: number;
  /** bytes of one value as passed to lookup/update (per-CPU: rounded size x CPUs) */
  valueBytes: number;
}

export interface NativeBatch {
  count: number;
  keys: Buffer;
  values: Buffer;
}

export declare class NativeMap {
  private constructor();
  readonly info: NativeMapInfo;
  readonly fd: number;
  readonly closed: boolean;
  /** key/value type names from the map's BTF ("struct rule_bits", "__u32"); null: created without BTF */
  btfTypes(): { key: string | null; value: string | null } | null;
  lookup(key: Buffer): Buffer | null;
  lookupAndDelete(key: Buffer): Buffer | null;
  update(key: Buffer, value: Buffer, flags?: number): void;
  delete(key: Buffer): boolean;
  nextKey(key: Buffer | null): Buffer | null;
  lookupBatch(opts?: { chunk?: number; delete?: boolean }): Promise<NativeBatch>;
  updateBatch(keys: Buffer, values: Buffer, flags?: number): Promise<number>;
  deleteBatch(keys: Buffer): Promise<number>;
  pin(path: string): void;
  close(): void;
}

export interface NativeProgramInfo {
  name: string;
  id: number;
  type: string;
  tag: string;
}

export interface NativeTestRunOptions {
  data?: Buffer;
  ctx?: Buffer;
  dataSizeOut?: number;
  ctxSizeOut?: number;
  repeat?: number;
  flags?: number;
  batchSize?: number;
}

export interface NativeTestRunResult {
  retval: number;
  duration: number;
  data: Buffer;
  ctx?: Buffer;
}

export type XdpMode = 'native' | 'generic' | 'offload';

export declare class NativeProgram {
  private constructor();
  readonly info: NativeProgramInfo;
  readonly fd: number;
  readonly closed: boolean;
  attachXdp(ifindex: number, opts: { mode: XdpMode; replace?: boolean; expected?: NativeProgram }): XdpMode;
  attachTc(
    ifindex: number,
    direction: 'ingress' | 'egress',
    opts?: { priority?: number; handle?: number; replace?: boolean },
  ): { priority: number; handle: number; progId: number };
  pin(path: string): void;
  testRun(opts: NativeTestRunOptions): Promise<NativeTestRunResult>;
  close(): void;
}

export interface NativeObjectMapInfo {
  name: string;
  type: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  internal: boolean;
  pinPath?: string;
  pinned: boolean;
}

export declare class NativeObject {
  constructor(path: string);
  readonly loaded: boolean;
  setMapMaxEntries(name: string, n: number): void;
  setMapPinPath(name: string, path: string | null): void;
  setMapInitialValue(name: string, value: Buffer): void;
  reuseMapFd(name: string, map: NativeMap): void;
  load(): Promise<void>;
  programs(): { name: string; section: string; type: string }[];
  maps(): NativeObjectMapInfo[];
  map(name: string): NativeMap;
  program(name: string): NativeProgram;
  close(): void;
}

export interface NativeXdpQuery {
  mode: 'none' | 'native' | 'generic' | 'offload' | 'multi';
  progId: number;
  nativeProgId: number;
  genericProgId: number;
  offloadProgId: number;
}

/**
 * onBatch(records, dropped): records concatenated as [u32 length][bytes,
 * padded to 4]; dropped: records discarded since the last batch because
 * JS fell behind (bounded queue).
 */
export type NativeBatchCallback = (records: Buffer, dropped: number) => void;

/** Reads a BPF ring buffer on its own thread (its own dup of the map's fd). */
export declare class NativeRingReader {
  constructor(map: NativeMap, onBatch: NativeBatchCallback);
  close(): void;
  ref(): void;
  unref(): void;
}

/** A netlink socket of one protocol, opened in the calling thread's network namespace; received datagrams arrive in batches. */
export declare class NativeNetlinkSocket {
  constructor(protocol: number, onBatch: NativeBatchCallback, rcvbufBytes?: number);
  send(message: Buffer): void;
  close(): void;
  ref(): void;
  unref(): void;
}

export interface NativeAddon {
  NativeRingReader: typeof NativeRingReader;
  NativeNetlinkSocket: typeof NativeNetlinkSocket;
  NativeObject: typeof NativeObject;
  NativeMap: typeof NativeMap;
  NativeProgram: typeof NativeProgram;
  setErrorClasses(bpfError: Function, verifierError: Function, notSupported: Function): void;
  openPinned(path: string): NativeMap | NativeProgram;
  unpin(path: string): void;
  detachXdp(ifindex: number, mode: XdpMode, expected?: NativeProgram): void;
  queryXdp(ifindex: number): NativeXdpQuery;
  detachTc(ifindex: number, direction: 'ingress' | 'egress', priority: number, handle: number): void;
  queryTc(ifindex: number, direction: 'ingress' | 'egress', priority: number, handle: number): number | null;
  destroyTcHook(ifindex: number): void;
  probeMapType(type: number): boolean;
  probeProgType(type: number): boolean;
  possibleCpus(): number;
  /** if_nametoindex in the calling thread's network namespace; 0: no such interface */
  ifNameToIndex(name: string): number;
  /** Whether the kernel has the BPF_MAP_*_BATCH commands (creates a small probe map). */
  probeBatchApi(): boolean;
  /** glibc malloc_trim(0): returns the C heap's free pages to the kernel; whether any went back */
  mallocTrim(): boolean;
  /** One datagram to the service manager's notification socket (sd_notify: a path, or @name for the abstract namespace). */
  notifyServiceManager(socketPath: string, message: string): void;
  inNetns<T>(path: string, fn: () => T): T;
}
