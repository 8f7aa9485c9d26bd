/**
 * The pins of a fast-path data plane under its pin directory: ownership
 * marks (which network namespace a data plane serves), removal, opening the
 * pinned maps and programs, and the check of every map against the layout
 * generated from this build's BPF object. Shared by the read-only view
 * (view.ts) and the loader (dataplane.ts); nothing here loads a program.
 */
import { mkdirSync, existsSync, rmSync, readdirSync } from 'node:fs';
import { BpfError, BpfMap, BpfProgram, codecs, openPinnedMap, unpin } from '../bpf/index.js';
import { netnsExists } from '../system/host.js';
import { MAPS, MAP_NAMES, type MapName } from './layout.js';

export type RawMap = BpfMap<Buffer, Buffer>;

/** The pinned data plane belongs to another network namespace (another Patronus instance). */
export class ForeignDataPlaneError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ForeignDataPlaneError';
  }
}

/** The pinned data plane was built with another layout than this build's. */
export class IncompatibleDataPlaneError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IncompatibleDataPlaneError';
  }
}

/** True when a data plane is pinned at pinDir (its programs are pinned last). */
export function isPinned(pinDir: string): boolean {
  return existsSync(`${pinDir}/xdp_filter`);
}

/**
 * Opens every pinned map and both programs of the data plane at pinDir,
 * checked against this build's layout (IncompatibleDataPlaneError when a map
 * is missing or differs). Opens only: nothing is loaded, pinned or renamed.
 */
export function openPins(pinDir: string): { maps: Record<MapName, RawMap>; xdp: BpfProgram; tc: BpfProgram } {
  const maps = {} as Record<MapName, RawMap>;
  const opened: { close(): void }[] = [];
  try {
    for (const name of MAP_NAMES) {
      const path = `${pinDir}/${name}`;
      if (!existsSync(path)) throw new IncompatibleDataPlaneError(`fastpath: pinned data plane at ${pinDir} lacks map ${name} (it is from another Patronus version; an apply replaces it)`);
      const m = openRaw(path);
      opened.push(m);
      maps[name] = m;
    }
    checkLayout(maps, pinDir, true);
    const xdp = BpfProgram.openPinned(`${pinDir}/xdp_filter`);
    opened.push(xdp);
    const tc = BpfProgram.openPinned(`${pinDir}/tc_filter`);
    return { maps, xdp, tc };
  } catch (e) {
    for (const o of opened) o.close();
    throw e;
  }
}

/**
 * Ownership mark of a pin directory: an empty bpffs directory
 * owner_netns_<INODE> naming the network namespace whose interfaces the data
 * plane serves (bpffs holds no regular files, and refuses dots in names).
 */
const OWNER_MARK = /^owner_netns_(\d+)$/;

export function pinOwner(pinDir: string): number | undefined {
  for (const f of readdirSync(pinDir)) {
    const m = OWNER_MARK.exec(f);
    if (m) return Number(m[1]);
  }
  return undefined;
}

export function markOwner(pinDir: string, inode: number): void {
  for (const f of readdirSync(pinDir)) if (OWNER_MARK.test(f)) rmSync(`${pinDir}/${f}`, { recursive: true, force: true });
  mkdirSync(`${pinDir}/owner_netns_${inode}`);
}

export function foreignOwner(pinDir: string, owner: number, here: number): ForeignDataPlaneError {
  const gone = !netnsExists(owner);
  return new ForeignDataPlaneError(
    `fastpath: refusing to adopt the data plane pinned at ${pinDir}: it belongs to network namespace net:[${owner}] and this process is in net:[${here}]. ` +
      (gone
        ? `That namespace no longer exists: remove the pins (rm -r ${pinDir}) and apply again.`
        : 'Two Patronus instances share this pin root: give each its own (--netns NAME, or run each inside its namespace with its own --state-dir).'),
  );
}

export function supersededProgIds(oldPinDir: string): Set<number> {
  const ids = new Set<number>();
  for (const name of ['xdp_filter', 'tc_filter']) {
    if (!existsSync(`${oldPinDir}/${name}`)) continue;
    try {
      using p = BpfProgram.openPinned(`${oldPinDir}/${name}`);
      ids.add(p.info.id);
    } catch {
      /* not a program we can open: nothing to replace */
    }
  }
  return ids;
}

/** Removes every pin under pinDir (maps and programs) and the directory. */
export function removePins(pinDir: string): void {
  if (!existsSync(pinDir)) return;
  for (const f of readdirSync(pinDir)) if (!OWNER_MARK.test(f)) unpin(`${pinDir}/${f}`);
  rmSync(pinDir, { recursive: true, force: true });
}

function openRaw(path: string): RawMap {
  const h = openPinnedMap(path);
  return new BpfMap(h, codecs.bytes(h.info.keySize), codecs.bytes(h.info.valueSize));
}

/** Maps whose entries userspace sizes before load (capacity): their max_entries are not fixed by the object. */
const SIZED_AT_LOAD = new Set<MapName>(['src_v4', 'dst_v4', 'src_v6', 'dst_v6', 'v6_hash', 'sport', 'dport', 'rate_state', 'block_v4', 'block_v6']);

/**
 * Every map against the layout generated from this build's BPF object
 * (generated/filter.ts): type, key and value size, flags, and entries where
 * the object fixes them; with `btf`, also the key and value types recorded
 * in the map's own BTF (a pinned map from another build can have the same
 * sizes and a different layout).
 */
export function checkLayout(maps: Record<MapName, RawMap>, where: string, btf: boolean): void {
  const bad = (name: string, what: string) =>
    new IncompatibleDataPlaneError(`fastpath: map ${name} at ${where} ${what} (the pinned data plane is from another Patronus version, or the BPF object and src/fastpath/generated/filter.ts disagree: rebuild)`);
  for (const name of MAP_NAMES) {
    const want = MAPS[name] as { type: string; keySize?: number; valueSize?: number; maxEntries: number; flags: number; keyType?: string; valueType?: string };
    const info = maps[name].info;
    if (info.type !== want.type) throw bad(name, `is a ${info.type} map, this build expects ${want.type}`);
    if (info.keySize !== (want.keySize ?? 0) || info.valueSize !== (want.valueSize ?? 0)) throw bad(name, `has key/value ${info.keySize}/${info.valueSize} bytes, this build expects ${want.keySize}/${want.valueSize}`);
    if ((info.flags & want.flags) !== want.flags) throw bad(name, `has flags 0x${info.flags.toString(16)}, this build expects 0x${want.flags.toString(16)} set`);
    if (!SIZED_AT_LOAD.has(name) && info.maxEntries !== want.maxEntries) throw bad(name, `holds ${info.maxEntries} entries, this build expects ${want.maxEntries}`);
    // libbpf creates map-in-maps without BTF (an fd value has no type to record)
    // nor ring buffers (no key or value at all)
    if (!btf || want.valueType === 'map fd' || (!want.keyType && !want.valueType)) continue;
    const types = maps[name].nativeHandle.btfTypes();
    if (!types) throw bad(name, 'carries no BTF');
    if (want.keyType && types.key !== null && types.key !== want.keyType) throw bad(name, `has key type ${types.key}, this build expects ${want.keyType}`);
    if (want.valueType && types.value !== null && types.value !== want.valueType) throw bad(name, `has value type ${types.value}, this build expects ${want.valueType}`);
  }
}

export function tryOr<T>(fn: () => T, fallback: T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof BpfError && (e.code === 'ENODEV' || e.code === 'ENOENT')) return fallback;
    throw e;
  }
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
}
