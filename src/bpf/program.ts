/**
 * Program handles and attachments. Attachment uses netlink (XDP) and tc
 * filters (clsact), which persist without a holder: that is what lets the
 * data plane keep running while the control plane restarts.
 */
import { addon } from './addon.js';
import type { NativeProgram, NativeProgramInfo, NativeTestRunOptions, NativeTestRunResult, NativeXdpQuery, XdpMode } from './native.js';
import { BpfError, wrongPinKind } from './errors.js';

export type { XdpMode };
export type XdpModeRequest = XdpMode | 'auto';
export type TcDirection = 'ingress' | 'egress';

/** XDP return codes. */
export const XDP = { ABORTED: 0, DROP: 1, PASS: 2, TX: 3, REDIRECT: 4 } as const;
/** tc return codes used here. */
export const TC_ACT = { OK: 0, SHOT: 2 } as const;
/** bpf_prog_test_run flag: send frames for real (traffic generation). */
export const BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1;

export class BpfProgram implements Disposable {
  constructor(readonly handle: NativeProgram) {}

  static openPinned(path: string): BpfProgram {
    const h = addon().openPinned(path);
    if (!(h instanceof addon().NativeProgram)) {
      h.close();
      throw wrongPinKind(path, 'map', 'program');
    }
    return new BpfProgram(h);
  }

  get info(): NativeProgramInfo {
    return this.handle.info;
  }

  get name(): string {
    return this.handle.info.name;
  }

  get closed(): boolean {
    return this.handle.closed;
  }

  /**
   * Attaches as the XDP program of an interface. mode 'auto' tries native
   * first and falls back to generic; the mode in use is returned.
   * replace: swap out whatever is attached (otherwise EBUSY when occupied);
   * expected: swap atomically only if that program is the one attached.
   */
  attachXdp(ifindex: number, opts: { mode?: XdpModeRequest; replace?: boolean; expected?: BpfProgram } = {}): XdpMode {
    const mode = opts.mode ?? 'auto';
    const base = {
      ...(opts.replace !== undefined ? { replace: opts.replace } : {}),
      ...(opts.expected ? { expected: opts.expected.handle } : {}),
    };
    if (mode !== 'auto') return this.handle.attachXdp(ifindex, { mode, ...base });
    try {
      return this.handle.attachXdp(ifindex, { mode: 'native', ...base });
    } catch (e) {
      if (!(e instanceof BpfError) || !['EOPNOTSUPP', 'EINVAL', 'ENOTSUP'].includes(e.code)) throw e;
      return this.handle.attachXdp(ifindex, { mode: 'generic', ...base });
    }
  }

  attachTc(ifindex: number, direction: TcDirection, opts: { priority?: number; handle?: number; replace?: boolean } = {}) {
    return this.handle.attachTc(ifindex, direction, opts);
  }

  async testRun(opts: NativeTestRunOptions): Promise<NativeTestRunResult> {
    return this.handle.testRun(opts);
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

export function queryXdp(ifindex: number): NativeXdpQuery {
  return addon().queryXdp(ifindex);
}

/** Detaches the XDP program in the given mode; with `expected`, only if it is still that one. */
export function detachXdp(ifindex: number, mode: XdpMode, expected?: BpfProgram): void {
  addon().detachXdp(ifindex, mode, expected?.handle);
}

export function detachTc(ifindex: number, direction: TcDirection, priority = 1, handle = 1): void {
  addon().detachTc(ifindex, direction, priority, handle);
}

export function queryTc(ifindex: number, direction: TcDirection, priority = 1, handle = 1): number | null {
  return addon().queryTc(ifindex, direction, priority, handle);
}

export function destroyTcHook(ifindex: number): void {
  addon().destroyTcHook(ifindex);
}

export function unpin(path: string): void {
  addon().unpin(path);
}
