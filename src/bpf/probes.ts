/**
 * Feature probes: ask the running kernel, never assume. A missing feature is
 * reported by name so validation can refuse a config before any apply.
 */
import { existsSync, readFileSync } from 'node:fs';
import { addon } from './addon.js';
import { NotSupportedError } from './errors.js';

/** enum bpf_map_type values (uapi/linux/bpf.h). */
export const MapType = {
  hash: 1,
  array: 2,
  prog_array: 3,
  percpu_hash: 5,
  percpu_array: 6,
  lru_hash: 9,
  lru_percpu_hash: 10,
  lpm_trie: 11,
  array_of_maps: 12,
  hash_of_maps: 13,
  ringbuf: 27,
} as const;

/** enum bpf_prog_type values. */
export const ProgType = { sched_cls: 3, xdp: 6 } as const;

const cache = new Map<string, boolean>();

export function hasMapType(name: keyof typeof MapType): boolean {
  const k = `map:${name}`;
  if (!cache.has(k)) cache.set(k, addon().probeMapType(MapType[name]));
  return cache.get(k)!;
}

export function hasProgType(name: keyof typeof ProgType): boolean {
  const k = `prog:${name}`;
  if (!cache.has(k)) cache.set(k, addon().probeProgType(ProgType[name]));
  return cache.get(k)!;
}

/**
 * Whether the kernel has the batch map commands, probed once per process
 * (cilium/ebpf's haveBatchAPI). A map type that lacks an operation still
 * answers ENOTSUPP per call; any other batch error is a real error.
 */
export function hasBatchApi(): boolean {
  const k = 'batch';
  if (!cache.has(k)) cache.set(k, addon().probeBatchApi());
  return cache.get(k)!;
}

export function hasBtf(): boolean {
  return existsSync('/sys/kernel/btf/vmlinux');
}

export function bpffsMounted(dir = '/sys/fs/bpf'): boolean {
  try {
    return readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .some((l) => {
        const [, mnt, type] = l.split(' ');
        return type === 'bpf' && (dir === mnt || dir.startsWith(`${mnt}/`));
      });
  } catch {
    return false;
  }
}

export function possibleCpus(): number {
  return addon().possibleCpus();
}

/** Throws NotSupportedError naming every missing feature the fast path needs. */
export function requireFastPathFeatures(): void {
  const missing: string[] = [];
  if (!hasBtf()) missing.push('kernel BTF (/sys/kernel/btf/vmlinux)');
  if (!hasProgType('xdp')) missing.push('XDP programs');
  if (!hasProgType('sched_cls')) missing.push('tc cls_bpf programs');
  if (!hasMapType('lpm_trie')) missing.push('LPM trie maps');
  if (!hasMapType('percpu_array')) missing.push('per-CPU array maps');
  if (!bpffsMounted()) missing.push('bpffs mounted at /sys/fs/bpf');
  if (missing.length) {
    throw new NotSupportedError(`the running kernel lacks: ${missing.join(', ')}`, {
      errno: 95,
      code: 'EOPNOTSUPP',
      operation: 'probe',
      object: 'kernel',
    });
  }
}
