/**
 * The kernel half of the `routing:` section: system settings (forwarding,
 * reverse-path filtering, bridge netfilter) and static routes Patronus
 * installs in the kernel itself, with no routing daemon. FRR keeps the
 * dynamic half (`routing.static` for routes FRR should own and
 * redistribute, OSPF, BGP; src/services/frr/schema.ts spreads these fields
 * into the same section).
 */
import { addressFamily } from '../net/address.js';
import { z } from 'zod';

const ifname = z.string().regex(/^[A-Za-z0-9_.:-]{1,15}$/, 'must be a Linux interface name (1-15 characters)');
const address = z.string().refine((s) => addressFamily(s) !== 0, 'must be an IPv4 or IPv6 address');

export const kernelRouteSchema = z
  .object({
    prefix: z.string().min(1).describe('destination prefix, IPv4 or IPv6 (0.0.0.0/0 or ::/0 for a default route)'),
    via: address.optional().describe('gateway address (same family as prefix); must be on a connected network of the gateway'),
    interface: ifname.optional().describe('outgoing interface (alone for on-link routes, or with via)'),
    blackhole: z.boolean().default(false).describe('drop traffic to the prefix (no via/interface)'),
    metric: z.number().int().min(0).max(4294967295).optional().describe('route metric (lower wins; routes to the same prefix with different metrics coexist)'),
  })
  .strict();

export const forwardingSchema = z.union([
  z.boolean(),
  z
    .object({
      ipv4: z.boolean().optional().describe('net.ipv4.ip_forward'),
      ipv6: z.boolean().optional().describe('net.ipv6.conf.all.forwarding'),
    })
    .strict(),
]);

/** Fields of `routing:` handled by the kernel subsystems (src/routing/). */
export const kernelRoutingFields = {
  forwarding: forwardingSchema
    .optional()
    .describe(
      'IP forwarding: true/false for both families, or {ipv4, ipv6}. Omitted: on whenever the document forwards traffic (forward rules or zone policies, port forwards, NAT, gateways, routes, VPNs, OSPF/BGP; IPv6 when an interface has an IPv6 address), else left as the kernel has it. The value before Patronus changed it comes back when the setting goes',
    ),
  rpFilter: z
    .enum(['off', 'strict', 'loose'])
    .optional()
    .describe('reverse-path filtering (net.ipv4.conf.{all,default,<managed interface>}.rp_filter); omitted: left alone. Use loose with multi-WAN'),
  bridgeNetfilter: z
    .boolean()
    .optional()
    .describe('whether bridged frames go through the firewall (net.bridge.bridge-nf-call-{iptables,ip6tables,arptables}); omitted: left alone'),
  routes: z
    .array(kernelRouteSchema)
    .default([])
    .describe('static routes Patronus installs in the kernel itself (protocol 249 "patronus"; only those are ever changed or removed), no routing daemon needed'),
};

export type KernelRoute = z.infer<typeof kernelRouteSchema>;
export type Forwarding = z.infer<typeof forwardingSchema>;
