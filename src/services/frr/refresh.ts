/**
 * Route-policy changes reach routes already received or announced.
 *
 * FRR applies an edited prefix-list or route-map to new updates only: routes
 * a neighbor sent before the edit keep the verdict of the old policy (a route
 * the old policy denied is not even stored without soft-reconfiguration), so
 * "allow more" changes nothing until the session is reset. A soft refresh
 * (`clear bgp ... soft in`: a ROUTE-REFRESH asking the peer to resend;
 * `soft out`: resend ours through the new policy) fixes that without tearing
 * the session down.
 *
 * Which neighbors: each neighbor's inbound and outbound policy is reduced to
 * a fingerprint of everything that decides it (the attached prefix-list and
 * route-map names, their entries, the prefix-lists a route-map matches, and
 * next-hop-self / the peer's AS for outbound). The fingerprints of the last
 * successful apply are kept in the instance directory; a neighbor whose
 * fingerprint changed is refreshed in that direction only.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import type { Host } from '../../system/host.js';
import { DaemonError } from '../common/daemon.js';
import type { FrrModel } from './compile.js';
import type { FrrConfig } from './schema.js';
import { familyOf } from '../../net/address.js';

/** neighbor address -> fingerprint of its inbound and outbound policy */
export type PolicyFingerprints = Record<string, { in: string; out: string }>;

export interface SoftRefresh {
  address: string;
  direction: 'in' | 'out';
}

export function policyFingerprints(model: FrrModel): PolicyFingerprints {
  const c = model.config;
  const out: PolicyFingerprints = {};
  for (const n of c.bgp?.neighbors ?? []) {
    out[n.address.toLowerCase()] = {
      in: digest([listOf(c, n.prefixListIn), mapOf(c, n.routeMapIn)]),
      out: digest([listOf(c, n.prefixListOut), mapOf(c, n.routeMapOut), n.nextHopSelf, n.remoteAs]),
    };
  }
  return out;
}

/**
 * The refreshes that bring routes in line with `next` after `prev` was
 * applied: neighbors in both whose policy changed, not administratively shut
 * down (a neighbor that is new, or comes back from shutdown, starts a fresh
 * session with the new policy anyway).
 */
export function refreshesFor(prev: PolicyFingerprints, next: PolicyFingerprints, model: FrrModel): SoftRefresh[] {
  const out: SoftRefresh[] = [];
  for (const n of model.config.bgp?.neighbors ?? []) {
    const key = n.address.toLowerCase();
    const was = prev[key];
    const now = next[key];
    if (!was || !now || n.shutdown) continue;
    if (was.in !== now.in) out.push({ address: n.address, direction: 'in' });
    if (was.out !== now.out) out.push({ address: n.address, direction: 'out' });
  }
  return out;
}

/** vtysh command for one refresh (per address family: the neighbor is activated in its own family only). */
export function refreshCommand(r: SoftRefresh): string {
  return `clear bgp ipv${familyOf(r.address)} unicast ${r.address} soft ${r.direction}`;
}

export async function softRefresh(host: Host, vtySocketDir: string, refreshes: readonly SoftRefresh[]): Promise<void> {
  for (const r of refreshes) {
    const cmd = refreshCommand(r);
    const res = await host.run('vtysh', ['--vty_socket', vtySocketDir, '-c', cmd], { reject: false, timeout: 10_000 });
    // vtysh exits 0 even for some refusals; FRR prefixes those with "%"
    const text = `${res.stdout}\n${res.stderr}`.trim();
    if (res.exitCode !== 0 || /^%/m.test(text)) {
      throw new DaemonError('frr bgpd', `soft refresh of BGP neighbor ${r.address} (${r.direction}bound policy changed) failed: vtysh -c '${cmd}' exited ${res.exitCode}`, text);
    }
  }
}

export function readFingerprints(file: string): PolicyFingerprints | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as PolicyFingerprints;
  } catch {
    return undefined;
  }
}

export function writeFingerprints(file: string, fp: PolicyFingerprints): void {
  writeFileSync(file, `${JSON.stringify(fp)}\n`);
}

function listOf(c: FrrConfig, name: string | undefined): unknown {
  return name === undefined ? null : { name, entries: c.prefixLists.find((p) => p.name === name)?.entries ?? null };
}

function mapOf(c: FrrConfig, name: string | undefined): unknown {
  if (name === undefined) return null;
  const entries = c.routeMaps.find((m) => m.name === name)?.entries ?? null;
  // a route-map's verdicts also depend on the prefix-lists it matches
  const lists = [...new Set((entries ?? []).map((e) => e.match.prefixList).filter((p): p is string => p !== undefined))].sort();
  return { name, entries, lists: lists.map((l) => listOf(c, l)) };
}

function digest(parts: unknown[]): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex').slice(0, 16);
}
