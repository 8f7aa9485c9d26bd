/**
 * A BPF ELF object from bpf/build. Maps can be resized and given pin paths
 * before load (pinned maps that already exist are reused by libbpf, which is
 * how a restarted control plane adopts a running data plane).
 */
import path from 'node:path';
import { addon, projectRoot } from './addon.js';
import type { NativeObject, NativeObjectMapInfo } from './native.js';
import { BpfMap, PerCpuMap } from './map.js';
import { BpfProgram } from './program.js';
import type { Codec } from './codecs.js';

export class BpfObject implements Disposable {
  private constructor(
    private readonly handle: NativeObject,
    readonly file: string,
  ) {}

  /** Opens a file path, or a bare name ("xdp_stats") resolved to bpf/build/NAME.bpf.o. */
  static open(fileOrName: string): BpfObject {
    const file = fileOrName.includes('/') ? fileOrName : bpfObjectPath(fileOrName);
    return new BpfObject(new (addon().NativeObject)(file), file);
  }

  get loaded(): boolean {
    return this.handle.loaded;
  }

  setMapMaxEntries(map: string, n: number): this {
    this.handle.setMapMaxEntries(map, n);
    return this;
  }

  setMapPinPath(map: string, pinPath: string | null): this {
    this.handle.setMapPinPath(map, pinPath);
    return this;
  }

  setMapInitialValue(map: string, value: Buffer): this {
    this.handle.setMapInitialValue(map, value);
    return this;
  }

  reuseMap(mapName: string, map: BpfMap<unknown, unknown>): this {
    this.handle.reuseMapFd(mapName, map.nativeHandle);
    return this;
  }

  async load(): Promise<void> {
    return this.handle.load();
  }

  programs() {
    return this.handle.programs();
  }

  maps(): NativeObjectMapInfo[] {
    return this.handle.maps();
  }

  map<K, V>(name: string, key: Codec<K>, value: Codec<V>): BpfMap<K, V> {
    return new BpfMap(this.handle.map(name), key, value);
  }

  perCpuMap<K, V>(name: string, key: Codec<K>, value: Codec<V>): PerCpuMap<K, V> {
    return new PerCpuMap(this.handle.map(name), key, value);
  }

  program(name: string): BpfProgram {
    return new BpfProgram(this.handle.program(name));
  }

  /** Closing the object leaves map and program handles taken from it valid. */
  close(): void {
    this.handle.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export function bpfObjectPath(name: string): string {
  return path.join(projectRoot(), 'bpf/build', `${name}.bpf.o`);
}
