/**
 * Attachment: the data plane's XDP program on each configured interface
 * (ingress) and its tc program on clsact egress where enabled, replacing a
 * superseded Patronus data plane's programs in one netlink operation during
 * an upgrade; detachment from interfaces no longer configured. Used by
 * FastpathDataPlane under the apply lock.
 */
import { queryXdp, queryTc, detachXdp, detachTc, type BpfProgram, type XdpMode } from '../bpf/index.js';
import type { CompiledInterface } from './compile.js';
import { tryOr } from './pins.js';
import { TC_HANDLE, TC_PRIORITY } from './view.js';

/** What attachment needs of a data plane. */
export interface AttachTarget {
  readonly xdp: BpfProgram;
  readonly tc: BpfProgram;
  /** runs attach/query code inside the data plane's network namespace */
  readonly inNs: <T>(fn: () => T) => T;
  /** program ids of a superseded data plane that may be replaced */
  readonly superseded: ReadonlySet<number>;
  configuredIfindexes(): number[];
}

/**
 * Attaches the filter where `interfaces` say (XDP on each, tc egress where
 * enabled) and detaches it from interfaces no longer listed. An interface
 * that already runs this data plane's program is left alone (no reattach).
 */
export async function attachFilter(dp: AttachTarget, interfaces: CompiledInterface[], ifindexOf: (name: string) => number | Promise<number>, previous: number[] = []): Promise<Map<string, XdpMode>> {
  const modes = new Map<string, XdpMode>();
  const keep = new Set<number>();
  for (const i of interfaces) {
    const idx = await ifindexOf(i.name);
    keep.add(idx);
    const q = dp.inNs(() => queryXdp(idx));
    if (q.progId === dp.xdp.info.id) {
      modes.set(i.name, q.mode as XdpMode);
    } else {
      const upgrade = dp.superseded.has(q.progId);
      if (q.progId !== 0 && !upgrade) throw new Error(`fastpath: interface ${i.name} already runs XDP program id ${q.progId}, not Patronus' (detach it first)`);
      // an older Patronus data plane is replaced in one netlink operation: no gap
      modes.set(i.name, dp.inNs(() => dp.xdp.attachXdp(idx, { mode: upgrade ? (q.mode === 'generic' ? 'generic' : 'native') : i.mode, replace: upgrade })));
    }
    const tcId = dp.inNs(() => queryTc(idx, 'egress', TC_PRIORITY, TC_HANDLE));
    if (i.egress && tcId !== dp.tc.info.id) dp.inNs(() => dp.tc.attachTc(idx, 'egress', { priority: TC_PRIORITY, handle: TC_HANDLE, replace: true }));
    if (!i.egress && tcId !== null) dp.inNs(() => detachTc(idx, 'egress', TC_PRIORITY, TC_HANDLE));
  }
  for (const idx of new Set([...previous, ...dp.configuredIfindexes()])) if (!keep.has(idx)) detachFilter(dp, idx);
  return modes;
}

/** Detaches the data plane's programs from one interface (nothing when it runs other programs or is gone). */
export function detachFilter(dp: AttachTarget, idx: number): void {
  dp.inNs(() => {
    let q;
    try {
      q = queryXdp(idx);
    } catch {
      return; // interface gone
    }
    if (q.progId === dp.xdp.info.id) detachXdp(idx, q.mode === 'generic' ? 'generic' : 'native', dp.xdp);
    // the XDP query answers "nothing attached" for an ifindex that no longer
    // exists (an interface deleted, or deleted and recreated under a new
    // ifindex); the tc query fails with ENODEV there: nothing to detach
    if (tryOr(() => queryTc(idx, 'egress', TC_PRIORITY, TC_HANDLE), null) !== null) detachTc(idx, 'egress', TC_PRIORITY, TC_HANDLE);
  });
}
