/**
 * Fixtures for control-plane tests: a namespace with a managed veth end
 * (wan0, peer eth0 in a second namespace), a Host and a temp state dir, and
 * helpers that read the kernel state the engine is supposed to produce.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, type Netns } from './netns.js';
import { Host } from '../../src/system/host.js';
import { defineSubsystem, type Subsystem } from '../../src/apply/subsystem.js';

export interface ControlLab {
  lab: Lab;
  fw: Netns;
  peer: Netns;
  host: Host;
  stateDir: string;
  bpfRoot: string;
  teardown(): Promise<void>;
}

export async function controlLab(): Promise<ControlLab> {
  const lab = new Lab();
  const stateDir = mkdtempSync(join(tmpdir(), 'pt-control-'));
  // the fast path pins its maps here; a unique dir under bpffs, removed in teardown
  const bpfRoot = mkdtempSync('/sys/fs/bpf/pt-control-');
  const cleanup = async () => {
    await lab.teardown();
    rmSync(bpfRoot, { recursive: true, force: true });
    rmSync(stateDir, { recursive: true, force: true });
  };
  try {
    const fw = await lab.ns('fw');
    const peer = await lab.ns('peer');
    await lab.veth({ ns: fw, dev: 'wan0', address: '192.0.2.2/24' }, { ns: peer, dev: 'eth0', address: '192.0.2.1/24' });
    const host = new Host({ netns: fw.name, stateDir, bpfRoot });
    return {
      lab,
      fw,
      peer,
      host,
      stateDir,
      bpfRoot,
      teardown: cleanup,
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

/** Addresses on a device, "a.b.c.d/len", sorted. */
export async function addresses(ns: Netns, dev: string): Promise<string[]> {
  const { stdout } = await ns.ip('-j', 'addr', 'show', 'dev', dev);
  const [link] = JSON.parse(stdout) as { addr_info: { local: string; prefixlen: number; scope: string }[] }[];
  return link!.addr_info.filter((a) => a.scope !== 'link').map((a) => `${a.local}/${a.prefixlen}`).sort();
}

export async function mtu(ns: Netns, dev: string): Promise<number> {
  const { stdout } = await ns.ip('-j', 'link', 'show', 'dev', dev);
  return (JSON.parse(stdout) as { mtu: number }[])[0]!.mtu;
}

/**
 * Test-only subsystem that fails (throws) when the document's first
 * interface has description "fail" — the fault injected mid-apply — and
 * stalls for `stallMs` when it says "stall".
 */
export function faultSubsystem(): Subsystem<string | undefined> {
  return defineSubsystem<string | undefined>({
    name: 'fault',
    compile: (ctx) => ({ desired: ctx.config.interfaces[0]?.description, issues: [] }),
    steps: async (d) => [
      {
        changes: [],
        async run() {
          if (d === 'fail') throw new Error('injected failure');
          if (d?.startsWith('stall')) await new Promise((r) => setTimeout(r, 60_000));
        },
      },
    ],
  });
}

/** A document managing wan0 with the given addresses. */
export function doc(addrs: string[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { interfaces: [{ name: 'wan0', zone: 'wan', addresses: addrs, ...extra }] };
}
