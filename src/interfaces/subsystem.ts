/**
 * Managed interfaces: the addresses and MTU the config gives them. Patronus
 * owns only what it set: a state file records the addresses it added and
 * each interface's MTU before it changed it, so removing a setting (or
 * rolling back) undoes exactly Patronus' own changes and leaves addresses
 * set by others alone. Also reports per-interface counters for /metrics.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { defineSubsystem, runSteps, step, type Change, type DriftFinding, type Step as SubsystemStep, type Subsystem, type SubsystemMetrics } from '../apply/subsystem.js';
import type { Host } from '../system/host.js';
import type { Issue } from '../config/issues.js';
import { readSysctl } from '../routing/sysctl.js';
import { addonAvailable } from '../bpf/addon.js';
import { NetlinkError } from '../net/netlink.js';
import { readLinkStats } from './link-stats.js';
import { createdLinks } from './links.js';
import { canonicalAddressWithLength, contains, familyOf, parseAddressWithLength, parsePrefix } from '../net/address.js';

export interface InterfaceDesired {
  name: string;
  index: number;
  addresses?: string[];
  mtu?: number;
  /** made by the links subsystem (kind:), so it may not exist before this apply */
  created?: boolean;
}

/** Live state and counters of every interface (patronus_interface_*, GET /api/v1/interfaces: declared in domain.ts). */
export interface InterfaceMetrics extends SubsystemMetrics {
  interfaces?: { interface: string; rxPackets: number; rxBytes: number; txPackets: number; txBytes: number; up: boolean }[];
}

export const interfacesSubsystem: Subsystem<InterfaceDesired[], InterfaceMetrics> = defineSubsystem<InterfaceDesired[], {}, InterfaceMetrics>({
  name: 'interfaces',

  compile(ctx) {
    const desired = ctx.config.interfaces.map((i, index) => ({
      name: i.name,
      index,
      ...(i.addresses ? { addresses: [...new Set(i.addresses.map(canonicalAddressWithLength))] } : {}),
      ...(i.mtu !== undefined ? { mtu: i.mtu } : {}),
      ...(i.kind ? { created: true } : {}),
    }));
    return { desired, issues: [] };
  },

  /**
   * One step per address added or removed and per MTU set or restored, then
   * the ownership bookkeeping. An interface the links subsystem creates in
   * the same apply does not exist yet when a plan is made: it gets one step
   * listing its settings, which makes that interface's steps once it exists
   * (in an apply, links has run by then, so there is no such step).
   */
  async steps(desired, host) {
    const links = await readLinks(host);
    const pending = desired.filter((d) => d.created && !links.has(d.name));
    // a link Patronus created that the document no longer names is deleted with its addresses (links runs
    // first): nothing to take off it, as in an apply, where it is gone by the time these steps are made
    for (const name of createdLinks(host)) if (!desired.some((d) => d.name === name)) links.delete(name);
    const { steps, next } = await diff(desired.filter((d) => !pending.includes(d)), host, links);
    const out: SubsystemStep[] = [];
    if (pending.length) {
      const later: Change[] = pending.flatMap((d) => [
        ...(d.addresses ?? []).map((a) => ({ action: 'add' as const, object: `address ${a} on ${d.name}` })),
        ...(d.mtu !== undefined ? [{ action: 'change' as const, object: `mtu of ${d.name}`, detail: `-> ${d.mtu}` }] : []),
      ]);
      out.push({
        changes: later,
        run: async () => {
          const now = await readLinks(host);
          const missing = pending.filter((d) => !now.has(d.name)).map((d) => d.name);
          if (missing.length) throw new Error(`interfaces: ${missing.join(', ')} does not exist (${host.where}); the links subsystem creates it first`);
          await runSteps(await interfacesSubsystem.steps(desired, host));
        },
      });
    }
    for (const s of steps) out.push(step(s.change, () => runInterfaceStep(host, s, next)));
    // what Patronus owns, also when no step ran (addresses it added that have gone by other hands)
    out.push({ changes: [], run: async () => writeState(host, next) });
    return out;
  },

  async validate(desired, host) {
    const issues: Issue[] = [];
    const links = await readLinks(host);
    for (const d of desired) {
      if ((d.addresses || d.mtu !== undefined) && !links.has(d.name) && !d.created) {
        issues.push({ path: ['interfaces', d.index, 'name'], message: `interface "${d.name}" does not exist (${host.where})` });
      }
    }
    return issues;
  },

  async teardown(host) {
    await interfacesSubsystem.apply([], host);
  },

  async status(host) {
    const links = await readLinks(host);
    return [...links.values()].map((l) => ({ name: l.ifname, up: l.operstate === 'UP' || l.flags?.includes('UP'), mtu: l.mtu, addresses: (l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`) }));
  },

  /** Every configured address present, every configured MTU set (one `ip -j addr show`). */
  async drift(desired, host) {
    const links = await readLinks(host);
    const out: DriftFinding[] = [];
    for (const d of desired) {
      if (!d.addresses?.length && d.mtu === undefined) continue;
      const link = links.get(d.name);
      if (!link) {
        out.push({ object: `interface ${d.name}`, reason: `does not exist (${host.where})`, repairable: false });
        continue;
      }
      const present = new Set((link.addr_info ?? []).map((a) => canonicalAddressWithLength(`${a.local}/${a.prefixlen}`)));
      for (const addr of d.addresses ?? []) if (!present.has(addr)) out.push({ object: `address ${addr} on ${d.name}`, reason: 'missing' });
      if (d.mtu !== undefined && link.mtu !== d.mtu) out.push({ object: `mtu of ${d.name}`, reason: `${link.mtu}, the revision says ${d.mtu}` });
    }
    return out;
  },

  async metrics(host): Promise<InterfaceMetrics> {
    // over rtnetlink (no `ip` process per scrape); `ip -s -j link show` when the addon or the socket is not there
    if (addonAvailable()) {
      try {
        const links = await readLinkStats((fn) => host.inNetns(fn));
        return { interfaces: links.filter((l) => l.ifname !== 'lo').map((l) => ({ interface: l.ifname, rxPackets: l.rxPackets, rxBytes: l.rxBytes, txPackets: l.txPackets, txBytes: l.txBytes, up: l.up })) };
      } catch (e) {
        if (!(e instanceof NetlinkError)) throw e;
      }
    }
    const r = await host.run('ip', ['-s', '-j', 'link', 'show']);
    const links = JSON.parse(r.stdout) as (Link & { stats64?: { rx: { packets: number; bytes: number }; tx: { packets: number; bytes: number } } })[];
    return {
      interfaces: links
        .filter((l) => l.ifname !== 'lo' && l.stats64)
        .map((l) => ({
          interface: l.ifname,
          rxPackets: l.stats64!.rx.packets,
          rxBytes: l.stats64!.rx.bytes,
          txPackets: l.stats64!.tx.packets,
          txBytes: l.stats64!.tx.bytes,
          up: l.operstate === 'UP' || (l.flags?.includes('UP') ?? false),
        })),
    };
  },
});

/**
 * Runs one step. Ownership is written before an add and after a removal, so
 * a crash between the two never leaves an address Patronus added unrecorded.
 */
async function runInterfaceStep(host: Host, step: Step, next: OwnedState): Promise<void> {
  if (step.recordFirst) {
    step.record(next);
    writeState(host, next);
  }
  try {
    if (step.keepInSubnet?.length) await removeKeepingSubnet(host, step);
    else await host.run('ip', step.args);
  } catch (e) {
    throw new Error(`interfaces: ${step.change.action} ${step.change.object}: ${(e as Error).message}`);
  }
  if (!step.recordFirst) {
    step.record(next);
    writeState(host, next);
  }
}

// --- internals

interface Link {
  ifname: string;
  mtu: number;
  operstate?: string;
  flags?: string[];
  addr_info?: { family: string; local: string; prefixlen: number; scope?: string }[];
}

/** What Patronus changed itself, per interface. */
interface OwnedState {
  [dev: string]: { addresses: string[]; originalMtu?: number };
}

interface Step {
  change: Change;
  args: string[];
  /** record ownership before acting (adds) or after (removals) */
  recordFirst: boolean;
  record(state: OwnedState): void;
  /**
   * IPv4 removal: addresses of the same subnet on the device that must
   * survive it. Deleting a primary address makes the kernel delete its
   * secondaries unless promote_secondaries is set (see removeKeepingSubnet).
   */
  keepInSubnet?: string[];
  dev?: string;
}

async function readLinks(host: Host): Promise<Map<string, Link>> {
  const r = await host.run('ip', ['-j', 'addr', 'show']);
  return new Map((JSON.parse(r.stdout) as Link[]).map((l) => [l.ifname, l]));
}

async function diff(desired: InterfaceDesired[], host: Host, links: Map<string, Link>): Promise<{ changes: Change[]; steps: Step[]; next: OwnedState }> {
  const owned = readState(host);
  const next: OwnedState = structuredClone(owned);
  const steps: Step[] = [];
  const own = (dev: string) => (next[dev] ??= { addresses: [] });
  const byName = new Map(desired.map((d) => [d.name, d]));

  for (const d of desired) {
    const link = links.get(d.name);
    if (!link) {
      if (d.addresses?.length || d.mtu !== undefined) throw new Error(`interfaces: interface "${d.name}" does not exist (${host.where})`);
      continue;
    }
    const present = new Set((link.addr_info ?? []).map((a) => canonicalAddressWithLength(`${a.local}/${a.prefixlen}`)));
    for (const addr of d.addresses ?? []) {
      if (present.has(addr)) {
        continue;
      }
      steps.push({
        change: { action: 'add', object: `address ${addr} on ${d.name}` },
        args: ['addr', 'add', addr, 'dev', d.name, ...(familyOf(addr) === 6 ? ['nodad'] : [])],
        recordFirst: true,
        record: (s) => {
          const mine = (s[d.name] ??= { addresses: [] });
          if (!mine.addresses.includes(addr)) mine.addresses.push(addr);
        },
      });
    }
    if (d.mtu !== undefined && link.mtu !== d.mtu) {
      const original = owned[d.name]?.originalMtu ?? link.mtu;
      steps.push({
        change: { action: 'change', object: `mtu of ${d.name}`, detail: `${link.mtu} -> ${d.mtu}` },
        args: ['link', 'set', 'dev', d.name, 'mtu', String(d.mtu)],
        recordFirst: true,
        record: (s) => void ((s[d.name] ??= { addresses: [] }).originalMtu = original),
      });
    }
  }

  // undo what Patronus added earlier and the config no longer asks for
  for (const [dev, mine] of Object.entries(owned)) {
    const link = links.get(dev);
    const d = byName.get(dev);
    const keep = new Set(d?.addresses ?? []);
    const present = new Set((link?.addr_info ?? []).map((a) => canonicalAddressWithLength(`${a.local}/${a.prefixlen}`)));
    const removing = new Set([...mine.addresses].filter((a) => !keep.has(a) && present.has(a)));
    // what the device holds once every step ran: the addresses there now or added above, less the removals
    const remaining = [...new Set([...present, ...keep])].filter((a) => !removing.has(a));
    for (const addr of new Set(mine.addresses)) {
      if (keep.has(addr)) continue;
      if (!link || !present.has(addr)) {
        own(dev).addresses = own(dev).addresses.filter((a) => a !== addr);
        continue;
      }
      const keepInSubnet = remaining.filter((a) => sameIpv4Subnet(a, addr));
      steps.push({
        change: {
          action: 'remove',
          object: `address ${addr} on ${dev}`,
          ...(keepInSubnet.length ? { detail: `${keepInSubnet.join(', ')} in the same subnet kept (promoted if ${addr} is primary)` } : {}),
        },
        args: ['addr', 'del', addr, 'dev', dev],
        recordFirst: false,
        record: (s) => void (s[dev] && (s[dev].addresses = s[dev].addresses.filter((a) => a !== addr))),
        ...(keepInSubnet.length ? { keepInSubnet, dev } : {}),
      });
    }
    if (mine.originalMtu !== undefined && d?.mtu === undefined && link) {
      const original = mine.originalMtu;
      if (link.mtu !== original) {
        steps.push({
          change: { action: 'change', object: `mtu of ${dev}`, detail: `${link.mtu} -> ${original} (restored)` },
          args: ['link', 'set', 'dev', dev, 'mtu', String(original)],
          recordFirst: false,
          record: (s) => void (s[dev] && delete s[dev].originalMtu),
        });
      } else delete own(dev).originalMtu;
    }
  }
  // addresses present already but asked for are not Patronus' to remove later; keep ownership as is
  for (const dev of Object.keys(next)) if (!next[dev]!.addresses.length && next[dev]!.originalMtu === undefined) delete next[dev];
  return { changes: steps.map((s) => s.change), steps, next };
}

/**
 * Removes an IPv4 address while the other addresses of its subnet stay: the
 * kernel deletes every secondary of a subnet with its primary unless
 * promote_secondaries is set, so a change 10.92.0.1/24 -> 10.92.0.5/24
 * (add .5, a secondary, then delete .1) would leave no address at all. The
 * device's promote_secondaries is 1 for the deletion only and then set back;
 * afterwards every address that had to stay is checked, and put back if the
 * kernel dropped it anyway.
 */
async function removeKeepingSubnet(host: Host, step: Step): Promise<void> {
  const dev = step.dev!;
  const key = `net/ipv4/conf/${dev}/promote_secondaries`;
  const original = await readSysctl(host, key);
  if (original !== undefined && original !== '1') await host.run('sysctl', ['-q', '-w', `${key}=1`]);
  try {
    await host.run('ip', step.args);
  } finally {
    if (original !== undefined && original !== '1') await host.run('sysctl', ['-q', '-w', `${key}=${original}`]);
  }
  const addressesNow = async () => new Set((((await readLinks(host)).get(dev)?.addr_info) ?? []).map((a) => canonicalAddressWithLength(`${a.local}/${a.prefixlen}`)));
  let now = await addressesNow();
  for (const a of step.keepInSubnet!) if (!now.has(a)) await host.run('ip', ['addr', 'add', a, 'dev', dev]);
  now = await addressesNow();
  const missing = step.keepInSubnet!.filter((a) => !now.has(a));
  if (missing.length) throw new Error(`removing ${step.args[2]} from ${dev} also removed ${missing.join(', ')}, which could not be added back`);
}

/** Both IPv4 with the same length, and the first address's subnet holds the second. */
function sameIpv4Subnet(a: string, b: string): boolean {
  const pa = parseAddressWithLength(a);
  const pb = parseAddressWithLength(b);
  return pa?.family === 4 && pb?.family === 4 && pa.length === pb.length && contains(parsePrefix(a), pb.address);
}

function statePath(host: Host): string {
  return join(host.stateDir, 'interfaces.json');
}

function readState(host: Host): OwnedState {
  try {
    return JSON.parse(readFileSync(statePath(host), 'utf8')) as OwnedState;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new Error(`interfaces: cannot read ${statePath(host)}: ${(e as Error).message}`);
  }
}

/**
 * write + rename: a crash never leaves a half-written state file. Unchanged
 * state is not written; on a full disk (no room for the copy) the file is
 * overwritten in place (its own pages are reused) rather than failing a
 * rollback that only needs to record what it restored.
 */
function writeState(host: Host, state: OwnedState): void {
  mkdirSync(host.stateDir, { recursive: true });
  const text = JSON.stringify(state);
  try {
    if (readFileSync(statePath(host), 'utf8') === text) return;
  } catch {
    // missing or unreadable: write it
  }
  const tmp = `${statePath(host)}.tmp`;
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, statePath(host));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
    rmSync(tmp, { force: true });
    writeFileSync(statePath(host), text);
  }
}
