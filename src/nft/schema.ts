/**
 * The `firewall:` section: stateful filtering and NAT, compiled to nftables
 * (src/nft/compile.ts). Stateless drop/pass/rate-limit rules belong to
 * `fastpath:` (XDP); see docs/firewall.md for the division of labour.
 *
 * Every rule, forward and NAT entry has a `name`: it becomes the nftables
 * rule comment (`patronus:<kind>:<name>`), which is how counters read back
 * with `nft -j` map to the configuration, stable across reorders.
 */
import { z } from 'zod';

export const RULE_NAME = /^[A-Za-z0-9_.-]{1,48}$/;
const name = z.string().regex(RULE_NAME, 'must be 1-48 letters, digits, "_", "." or "-"');
const zoneName = z.string().regex(/^[a-z][a-z0-9_]{0,30}$/, 'must be a zone name (lower case letter, then letters, digits, _)');
const ifName = z.string().regex(/^[A-Za-z0-9_.:-]{1,15}$/, 'must be a Linux interface name (1-15 characters)');
const ipv4 = z.ipv4({ message: 'must be an IPv4 address' });
const ipAddr = z.union([z.ipv4(), z.ipv6()], { message: 'must be an IPv4 or IPv6 address' });

/** A list of networks: prefixes, addresses or network/country alias names. */
const networks = z.array(z.string().min(1)).default([]).describe('prefixes, addresses or network alias names (any of them matches); empty = any');
/** A list of ports: numbers, "8000-8100" ranges or port alias names. */
const ports = z.array(z.union([z.number().int().min(0).max(65535), z.string().min(1)])).default([]).describe('ports, ranges ("8000-8100") or port alias names; empty = any');

export const verdictSchema = z.enum(['accept', 'drop', 'reject']);
export type Verdict = z.infer<typeof verdictSchema>;

export const zonePolicySchema = z
  .object({
    name: zoneName.describe('zone name, as used in interfaces[].zone'),
    input: verdictSchema.optional().describe('default verdict for new connections from this zone to the gateway itself (defaults: firewall.defaults.input)'),
    forward: verdictSchema.optional().describe('default verdict for new connections from this zone forwarded through the gateway (defaults: firewall.defaults.forward)'),
    log: z.string().regex(/^[A-Za-z0-9_. :-]{1,24}$/).optional().describe('log what the default policy catches, with this log prefix'),
  })
  .strict();

export const ruleSchema = z
  .object({
    name: name.describe('unique rule name; the nftables comment and counter key'),
    direction: z.enum(['forward', 'input']).default('forward').describe('forward: traffic routed through the gateway; input: traffic to the gateway itself'),
    from: zoneName.optional().describe('ingress zone; omitted = any managed interface'),
    interface: ifName.optional().describe('ingress interface (narrower than from)'),
    to: zoneName.optional().describe('egress zone (forward rules only)'),
    action: verdictSchema.describe('accept, drop, or reject (TCP reset / ICMP unreachable)'),
    protocol: z.enum(['any', 'tcp', 'udp', 'tcp_udp', 'icmp', 'icmpv6']).default('any').describe('layer-4 protocol; ports need tcp, udp or tcp_udp'),
    source: networks,
    destination: networks,
    sourcePorts: ports,
    ports: ports.describe('destination ports, ranges or port alias names; empty = any'),
    log: z.string().regex(/^[A-Za-z0-9_. :-]{1,24}$/, 'log prefix: 1-24 letters, digits, space, "_", ".", ":" or "-"').optional().describe('log matches with this log prefix (kernel log / nflog)'),
    counter: z.boolean().default(true).describe('count packets and bytes (read back per rule name)'),
    enabled: z.boolean().default(true),
    description: z.string().max(200).optional(),
  })
  .strict();

export const portForwardSchema = z
  .object({
    name: name.describe('unique name; comment and counter key of the DNAT and filter rules'),
    interface: ifName.describe('interface the forward is reached on (usually the WAN)'),
    protocol: z.enum(['tcp', 'udp', 'tcp_udp']).default('tcp'),
    destination: ipAddr.optional().describe('external address the forward answers on (same family as target); omitted = any address of the target\'s family arriving on the interface'),
    port: z.union([z.number().int().min(1).max(65535), z.string().regex(/^\d{1,5}-\d{1,5}$/)]).describe('external port or range'),
    target: ipAddr.describe('internal server address, IPv4 or IPv6 (an IPv6 forward is DNAT66 to it)'),
    targetPort: z.number().int().min(1).max(65535).optional().describe('internal port (default: the external port; a range maps onto a range starting here)'),
    source: networks.describe('only these sources may use the forward; empty = any'),
    hairpin: z.boolean().default(true).describe('also forward when reached from inside (NAT reflection): inside clients are masqueraded so replies return through the gateway'),
    log: z.string().regex(/^[A-Za-z0-9_. :-]{1,24}$/).optional(),
    description: z.string().max(200).optional(),
  })
  .strict();

export const outboundNatSchema = z
  .object({
    name: name.describe('unique name; comment and counter key'),
    interface: ifName.describe('egress interface translated on'),
    source: networks.describe('translate only these sources; empty = any'),
    destination: networks.describe('translate only towards these destinations; empty = any'),
    type: z.enum(['masquerade', 'snat', 'none']).default('masquerade').describe('masquerade (the interface address), snat (a fixed address) or none (exempt: no translation)'),
    address: ipv4.optional().describe('SNAT address (type snat)'),
    description: z.string().max(200).optional(),
  })
  .strict();

export const prefixTranslationSchema = z
  .object({
    name: name.describe('unique name; comment and counter key'),
    interface: ifName.describe('external interface (usually the WAN)'),
    internal: z.string().min(1).describe('inside IPv6 prefix, e.g. 2001:db8:1::/64 or fd00:1::/64'),
    external: z.string().min(1).describe('outside IPv6 prefix of the same length, routed to the gateway by the upstream'),
    description: z.string().max(200).optional(),
  })
  .strict();

export const oneToOneSchema = z
  .object({
    name: name.describe('unique name; comment and counter key'),
    interface: ifName.describe('external interface'),
    external: ipv4.describe('external address (must be routed to, or configured on, the gateway)'),
    internal: ipv4.describe('internal host address'),
    description: z.string().max(200).optional(),
  })
  .strict();

export const firewallSchema = z
  .object({
    enabled: z.boolean().default(true).describe('false (or omitting firewall: altogether) removes Patronus\' nftables table'),
    defaults: z
      .object({
        input: verdictSchema.default('drop').describe('default for zones without their own input policy'),
        forward: verdictSchema.default('drop').describe('default for zones without their own forward policy'),
      })
      .strict()
      .default({ input: 'drop', forward: 'drop' }),
    log: z
      .object({
        target: z.enum(['nflog', 'kernel']).default('nflog').describe('nflog: rules with a log prefix report to this NFLOG group, which `patronus serve` reads into its event log (GET /api/v1/events, patronus log); kernel: the kernel log (dmesg), as plain nftables does'),
        group: z.number().int().min(0).max(65535).default(100).describe('NFLOG group (one reader per group and namespace: no other NFLOG consumer such as ulogd may use it)'),
      })
      .strict()
      .default({ target: 'nflog', group: 100 })
      .describe('where the log statements of rules, zone policies and port forwards go'),
    zones: z.array(zonePolicySchema).default([]).describe('per-zone default policies'),
    rules: z.array(ruleSchema).default([]).describe('stateful rules, first match wins, in this order'),
    portForwards: z.array(portForwardSchema).default([]).describe('DNAT port forwards (each with its filter rule)'),
    outboundNat: z.array(outboundNatSchema).default([]).describe('source NAT for traffic leaving an interface, first match wins'),
    oneToOne: z.array(oneToOneSchema).default([]).describe('1:1 NAT (bidirectional address mapping)'),
    prefixTranslation: z
      .array(prefixTranslationSchema)
      .default([])
      .describe('IPv6 prefix translation (NPTv6-style netmap): inside addresses leave as the external prefix with their host bits kept, and inbound to the external prefix maps back; filtering still decides what gets in'),
  })
  .strict()
  // an omitted section means the feature is off: no table at all (write `firewall: {}` for the default-deny firewall)
  .default({ enabled: false, defaults: { input: 'drop', forward: 'drop' }, log: { target: 'nflog', group: 100 }, zones: [], rules: [], portForwards: [], outboundNat: [], oneToOne: [], prefixTranslation: [] });

export type FirewallConfig = z.infer<typeof firewallSchema>;
export type RuleConfig = z.infer<typeof ruleSchema>;
export type PortForwardConfig = z.infer<typeof portForwardSchema>;
export type OutboundNatConfig = z.infer<typeof outboundNatSchema>;
export type OneToOneConfig = z.infer<typeof oneToOneSchema>;
export type PrefixTranslationConfig = z.infer<typeof prefixTranslationSchema>;
