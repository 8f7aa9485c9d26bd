/**
 * The `fastpath:` section: interfaces the XDP filter is attached to, the
 * ordered stateless rules (first match wins), GeoIP and map capacities.
 * Cross-references (aliases, interface names, capacity) are checked by the
 * compiler (src/fastpath/compile.ts) with path-qualified issues.
 */
import { z } from 'zod';
import { FILTER_MAX_RULES } from './layout.js';

export const TCP_FLAG_NAMES = ['fin', 'syn', 'rst', 'psh', 'ack', 'urg', 'ece', 'cwr'] as const;

const PROTOCOLS = ['tcp', 'udp', 'icmp', 'icmpv6', 'sctp', 'gre', 'esp', 'ah'] as const;
const protocol = z.union([z.enum(PROTOCOLS), z.number().int().min(0).max(255)]);
const oneOrMany = <T extends z.ZodTypeAny>(t: T) => z.union([t, z.array(t).min(1)]);
const portRef = z.union([z.number().int().min(0).max(65535), z.string().min(1)]);

export const fastpathInterfaceSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_.:-]{1,15}$/, 'must be a Linux interface name (1-15 characters)').describe('interface the XDP filter attaches to'),
    mode: z.enum(['auto', 'native', 'generic']).default('auto').describe('XDP mode: auto tries native (driver) and falls back to generic (skb)'),
    defaultPolicy: z.enum(['pass', 'drop']).default('pass').describe('verdict for packets no rule matches on ingress'),
    egress: z
      .object({
        enabled: z.boolean().default(false).describe('also filter traffic leaving this interface (tc clsact egress program)'),
        defaultPolicy: z.enum(['pass', 'drop']).default('pass').describe('verdict for egress packets no rule matches'),
      })
      .strict()
      .default({ enabled: false, defaultPolicy: 'pass' })
      .describe('egress filtering'),
  })
  .strict();

export const rateLimitSchema = z
  .object({
    packetsPerSecond: z.number().int().min(1).max(1_000_000_000).optional().describe('sustained packets per second per source address'),
    packetBurst: z.number().int().min(1).max(10_000_000_000).optional().describe('bucket depth in packets (default: one second of packetsPerSecond)'),
    bytesPerSecond: z.number().int().min(1).max(10_000_000_000).optional().describe('sustained bytes per second per source address'),
    byteBurst: z.number().int().min(64).max(10_000_000_000).optional().describe('bucket depth in bytes (default: one second of bytesPerSecond)'),
  })
  .strict()
  .refine((r) => r.packetsPerSecond !== undefined || r.bytesPerSecond !== undefined, 'give packetsPerSecond, bytesPerSecond or both');

export const fastpathRuleSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_.:-]{1,63}$/, 'letters, digits, _ . : - (1-63 characters)').describe('unique rule name; counters are reported by it'),
    description: z.string().max(200).optional(),
    direction: z.enum(['in', 'out']).default('in').describe('in: XDP ingress; out: tc egress (the interface needs egress.enabled)'),
    interfaces: z.array(z.string()).default([]).describe('fastpath interfaces the rule applies to; empty = all'),
    source: oneOrMany(z.string().min(1)).optional().describe('source prefixes/addresses or network/country alias names; absent = any'),
    destination: oneOrMany(z.string().min(1)).optional().describe('destination prefixes/addresses or alias names; absent = any'),
    countries: z.array(z.string().min(1)).optional().describe('source countries (ISO codes or country alias names), added to source; needs fastpath.geoip.database'),
    destinationCountries: z.array(z.string().min(1)).optional().describe('destination countries, added to destination'),
    protocol: oneOrMany(protocol).optional().describe('protocol name or number, or a list; absent = any'),
    sourcePorts: oneOrMany(portRef).optional().describe('source ports: 53, "1024-65535" or a port alias; needs protocol tcp/udp/sctp'),
    destinationPorts: oneOrMany(portRef).optional().describe('destination ports: 443, "8000-8100" or a port alias; needs protocol tcp/udp/sctp'),
    icmpType: z.number().int().min(0).max(255).optional().describe('ICMP/ICMPv6 type; needs protocol icmp or icmpv6'),
    icmpCode: z.number().int().min(0).max(255).optional().describe('ICMP code; needs icmpType'),
    tcpFlags: z
      .string()
      .regex(new RegExp(`^!?(${TCP_FLAG_NAMES.join('|')})(,!?(${TCP_FLAG_NAMES.join('|')}))*$`), 'comma list of fin,syn,rst,psh,ack,urg,ece,cwr, each optionally prefixed by ! (must be clear)')
      .optional()
      .describe('TCP flags that must be set (or clear with !), e.g. "syn,!ack"; others are ignored'),
    action: z.enum(['pass', 'drop', 'rate-limit', 'count']).describe('pass to the kernel stack, drop, rate-limit per source, or count and go on'),
    rateLimit: rateLimitSchema.optional().describe('token bucket per source address; required for action rate-limit'),
    log: z
      .boolean()
      .optional()
      .describe('report this rule\'s drops as events (GET /api/v1/events, patronus log), sampled per fastpath.log; default: fastpath.log.drops. Drop and rate-limit rules only'),
  })
  .strict()
  .superRefine((r, ctx) => {
    if (r.action === 'rate-limit' && !r.rateLimit) ctx.addIssue({ code: 'custom', path: ['rateLimit'], message: 'action rate-limit needs rateLimit' });
    if (r.log === true && (r.action === 'pass' || r.action === 'count')) ctx.addIssue({ code: 'custom', path: ['log'], message: `the fast path logs drops only; this rule's action is ${r.action} (log it in the firewall section instead)` });
    if (r.action !== 'rate-limit' && r.rateLimit) ctx.addIssue({ code: 'custom', path: ['rateLimit'], message: `rateLimit only applies to action rate-limit (this rule is ${r.action})` });
    const protos = r.protocol === undefined ? [] : Array.isArray(r.protocol) ? r.protocol : [r.protocol];
    const portProto = (p: string | number) => ['tcp', 'udp', 'sctp', 6, 17, 132].includes(p);
    for (const field of ['sourcePorts', 'destinationPorts'] as const) {
      if (r[field] !== undefined && (protos.length === 0 || !protos.every(portProto))) {
        ctx.addIssue({ code: 'custom', path: [field], message: 'ports need protocol tcp, udp or sctp (each listed protocol must have ports)' });
      }
    }
    if (r.icmpType !== undefined && (protos.length === 0 || !protos.every((p) => ['icmp', 'icmpv6', 1, 58].includes(p)))) {
      ctx.addIssue({ code: 'custom', path: ['icmpType'], message: 'icmpType needs protocol icmp or icmpv6' });
    }
    if (r.icmpType !== undefined && r.destinationPorts !== undefined) ctx.addIssue({ code: 'custom', path: ['icmpType'], message: 'icmpType and destinationPorts exclude each other' });
    if (r.icmpCode !== undefined && r.icmpType === undefined) ctx.addIssue({ code: 'custom', path: ['icmpCode'], message: 'icmpCode needs icmpType' });
    if (r.tcpFlags !== undefined && !(protos.length === 1 && ['tcp', 6].includes(protos[0]!))) {
      ctx.addIssue({ code: 'custom', path: ['tcpFlags'], message: 'tcpFlags needs protocol tcp' });
    }
  });

export const fastpathCapacitySchema = z
  .object({
    rules: z.number().int().min(1).max(FILTER_MAX_RULES).default(FILTER_MAX_RULES).describe(`most rules (the BPF object is built for ${FILTER_MAX_RULES})`),
    prefixes: z.number().int().min(16).max(4_194_304).default(262_144).describe('most prefixes per address field and family (source/destination x IPv4/IPv6), per rule-set generation'),
    portPrefixes: z.number().int().min(16).max(1_048_576).default(65_536).describe('most port/protocol prefixes per port field, per generation'),
    rateLimitSources: z.number().int().min(16).max(16_777_216).default(65_536).describe('source addresses tracked by rate limits (LRU: the least recent are forgotten)'),
    blocklist: z.number().int().min(16).max(16_777_216).default(65_536).describe('entries of the dynamic blocklist per family (LRU)'),
  })
  .strict();

export const fastpathLogSchema = z
  .object({
    drops: z.boolean().default(false).describe('report the drops of every drop and rate-limit rule, the default-drop policy and the blocklist as events, unless a rule says log: false'),
    rate: z.number().int().min(1).max(100_000).default(100).describe('events per second per rule at most (a token bucket per rule in the kernel; the rest are counted as suppressed)'),
    burst: z.number().int().min(1).max(1_000_000).optional().describe('events a rule may report at once after a quiet period (default: rate)'),
  })
  .strict();

export const fastpathSchema = z
  .object({
    interfaces: z
      .array(fastpathInterfaceSchema)
      .default([])
      .describe('interfaces with the XDP filter attached')
      .superRefine((list, ctx) => {
        const seen = new Set<string>();
        list.forEach((i, n) => {
          if (seen.has(i.name)) ctx.addIssue({ code: 'custom', path: [n, 'name'], message: `interface "${i.name}" is listed twice` });
          seen.add(i.name);
        });
      }),
    rules: z
      .array(fastpathRuleSchema)
      .default([])
      .describe('ordered rules: the first matching rule decides (count rules count and go on)')
      .superRefine((list, ctx) => {
        const seen = new Set<string>();
        list.forEach((r, n) => {
          if (seen.has(r.name)) ctx.addIssue({ code: 'custom', path: [n, 'name'], message: `rule name "${r.name}" is used twice` });
          seen.add(r.name);
        });
      }),
    geoip: z
      .object({
        database: z.string().min(1).optional().describe('MaxMind DB (mmdb) country database, e.g. /var/lib/GeoIP/GeoLite2-Country.mmdb'),
      })
      .strict()
      .default({})
      .describe('country database used to expand countries into prefixes'),
    capacity: fastpathCapacitySchema.default({
      rules: FILTER_MAX_RULES,
      prefixes: 262_144,
      portPrefixes: 65_536,
      rateLimitSources: 65_536,
      blocklist: 65_536,
    }).describe('map sizes; changing them reloads the data plane'),
    log: fastpathLogSchema.default({ drops: false, rate: 100 }).describe('drop events: which drops are reported and how many per second per rule (docs/logging.md)'),
  })
  .strict()
  .default({ interfaces: [], rules: [], geoip: {}, capacity: { rules: FILTER_MAX_RULES, prefixes: 262_144, portPrefixes: 65_536, rateLimitSources: 65_536, blocklist: 65_536 }, log: { drops: false, rate: 100 } });

export type FastpathConfig = z.infer<typeof fastpathSchema>;
export type FastpathRuleConfig = z.infer<typeof fastpathRuleSchema>;
export type FastpathInterfaceConfig = z.infer<typeof fastpathInterfaceSchema>;
/** Kept for the document assembler's naming convention. */
