/**
 * Whether the document needs IP forwarding (pure). A gateway that NATs,
 * forwards ports, routes or terminates VPNs is dead without it, and new
 * network namespaces (and many hosts) start with it off, so Patronus turns
 * it on whenever the document implies it; `routing.forwarding` set
 * explicitly always wins. Nothing implied and nothing set: the kernel's
 * value is left alone (undefined).
 */
import type { Config } from '../config/document.js';

export interface ForwardingIntent {
  ipv4?: boolean;
  ipv6?: boolean;
  /** why forwarding is on when the document did not say (shown in plan) */
  reason?: string;
}

export function forwardingIntent(config: Config): ForwardingIntent {
  const explicit = config.routing.forwarding;
  const implied = impliedBy(config);
  const v6Used = config.interfaces.some((i) => i.addresses?.some((a) => a.includes(':')));
  const out: ForwardingIntent = {};
  const set = (fam: 'ipv4' | 'ipv6', value: boolean | undefined) => {
    if (value !== undefined) out[fam] = value;
  };
  if (typeof explicit === 'boolean') {
    set('ipv4', explicit);
    set('ipv6', explicit);
  } else {
    set('ipv4', explicit?.ipv4 ?? (implied ? true : undefined));
    // a router advertisement makes clients route through this gateway: it must forward IPv6
    const ra = config.ra.enabled && config.ra.interfaces.length > 0;
    set('ipv6', explicit?.ipv6 ?? ((implied && v6Used) || ra ? true : undefined));
  }
  const why = implied ?? (config.ra.enabled && config.ra.interfaces.length ? 'ra' : undefined);
  if (why && typeof explicit !== 'boolean' && (explicit?.ipv4 === undefined || explicit?.ipv6 === undefined)) out.reason = why;
  return out;
}

/** What in the document forwards traffic (first reason found), or undefined. */
function impliedBy(c: Config): string | undefined {
  const fw = c.firewall;
  if (fw.enabled) {
    if (fw.outboundNat.some((n) => n.type !== 'none')) return 'firewall.outboundNat';
    if (fw.portForwards.length) return 'firewall.portForwards';
    if (fw.oneToOne.length) return 'firewall.oneToOne';
    if (fw.prefixTranslation.length) return 'firewall.prefixTranslation';
    if (fw.rules.some((r) => r.enabled && r.direction === 'forward' && r.action === 'accept')) return 'firewall.rules (forward)';
    if (fw.zones.some((z) => z.forward === 'accept') || (fw.defaults.forward === 'accept' && fw.zones.length)) return 'firewall.zones (forward accept)';
  }
  if (c.gateways.gateways.length) return 'gateways';
  if (c.routing.routes.length) return 'routing.routes';
  if (c.routing.enabled && (c.routing.static.length || c.routing.ospf || c.routing.bgp)) return 'routing (FRR)';
  if (c.wireguard.interfaces.some((i) => i.enabled)) return 'wireguard';
  if (c.openvpn.servers.some((s) => s.enabled) || c.openvpn.clients.some((s) => s.enabled)) return 'openvpn';
  if (c.ipsec.connections.length) return 'ipsec';
  return undefined;
}

/** FRR's `ip forwarding` lines must agree with the kernel settings Patronus applies. */
export function frrForwarding(config: Config): { ipv4: boolean; ipv6: boolean } {
  const f = forwardingIntent(config);
  return { ipv4: f.ipv4 ?? true, ipv6: f.ipv6 ?? true };
}
