/**
 * The `qos:` section: traffic shaping with tc, per interface and direction.
 *
 *   qos:
 *     interfaces:
 *       - interface: wan0
 *         egress:                # what leaves wan0
 *           type: htb
 *           rate: 100mbit        # the link: what the upstream really carries
 *           defaultClass: bulk
 *           classes:
 *             - { name: voice, rate: 10mbit, ceil: 20mbit, priority: 0 }
 *             - { name: bulk, rate: 90mbit }
 *           rules:               # first match wins, like firewall rules
 *             - { class: voice, protocol: udp, destinationPort: 5060-5080 }
 *         ingress:               # what arrives on wan0, shaped through an IFB device
 *           type: tbf
 *           rate: 50mbit
 *
 * Rates are bits per second: a number, or a string with a unit (bit, kbit,
 * mbit, gbit, tbit; SI multiples, as tc reads them), or for classes a
 * percentage of the direction's rate ("30%").
 */
import { z } from 'zod';

const RATE = /^(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit|tbit|bps|kbps|mbps|gbps)?$/i;
const PERCENT = /^(\d+(?:\.\d+)?)\s*%$/;

/** bits per second of "10mbit", "1.5gbit", 800000; undefined when unreadable. */
export function parseRate(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value > 0 ? Math.round(value) : undefined;
  const m = RATE.exec(value.trim());
  if (!m) return undefined;
  const unit = (m[2] ?? 'bit').toLowerCase();
  const mult: Record<string, number> = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9, tbit: 1e12, bps: 8, kbps: 8e3, mbps: 8e6, gbps: 8e9 };
  const bits = Math.round(Number(m[1]) * mult[unit]!);
  return bits > 0 ? bits : undefined;
}

/** Size in bytes of "1500", "32kb", "1mb" (tc's binary multiples). */
export function parseSize(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value > 0 ? value : undefined;
  const m = /^(\d+)\s*(b|kb|k|mb|m)?$/i.exec(value.trim());
  if (!m) return undefined;
  const mult: Record<string, number> = { b: 1, kb: 1024, k: 1024, mb: 1 << 20, m: 1 << 20 };
  const n = Number(m[1]) * mult[(m[2] ?? 'b').toLowerCase()]!;
  return n > 0 ? n : undefined;
}

const rateSchema = z
  .union([z.number().int().positive(), z.string()])
  .refine((v) => parseRate(v) !== undefined, { message: 'must be a rate in bits per second: a number, or a number with a unit (bit, kbit, mbit, gbit, tbit; bps, kbps, mbps, gbps for bytes)' });

const classRateSchema = z
  .union([z.number().int().positive(), z.string()])
  .refine((v) => parseRate(v) !== undefined || (typeof v === 'string' && PERCENT.test(v) && Number(PERCENT.exec(v)![1]) > 0 && Number(PERCENT.exec(v)![1]) <= 100), {
    message: 'must be a rate (e.g. 10mbit) or a percentage of the direction\'s rate (e.g. 30%)',
  });

const sizeSchema = z
  .union([z.number().int().positive(), z.string()])
  .refine((v) => parseSize(v) !== undefined, { message: 'must be a size in bytes: a number, or with a unit (kb, mb)' });

const CLASS_NAME = /^[A-Za-z_][A-Za-z0-9_-]{0,31}$/;

/** What a queue inside a leaf class is. fq_codel and cake only where the kernel has them (checked at validate). */
export const leafSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('pfifo').describe('first-in first-out, limited in packets'), limit: z.number().int().min(1).max(1_000_000).default(1000).describe('queue length in packets') }).strict(),
  z.object({ type: z.literal('bfifo').describe('first-in first-out, limited in bytes'), limit: sizeSchema.default('256kb').describe('queue length in bytes') }).strict(),
  z
    .object({
      type: z.literal('fq_codel').describe('fair queueing with CoDel (only where the kernel has sch_fq_codel)'),
      target: z.string().regex(/^\d+(us|ms)$/).optional().describe('codel target delay, e.g. 5ms'),
      interval: z.string().regex(/^\d+(us|ms)$/).optional().describe('codel interval, e.g. 100ms'),
      limit: z.number().int().min(1).optional().describe('queue length in packets'),
    })
    .strict(),
  z
    .object({
      type: z.literal('cake').describe('CAKE (only where the kernel has sch_cake)'),
      rtt: z.string().regex(/^\d+(us|ms)$/).optional().describe('expected round-trip time, e.g. 100ms'),
    })
    .strict(),
]);

export const qosClassSchema = z
  .object({
    name: z.string().regex(CLASS_NAME, 'must start with a letter or _ and hold only letters, digits, _ and - (max 32)').describe('class name rules refer to'),
    parent: z.string().optional().describe('name of the parent class; omitted = directly under the link'),
    rate: classRateSchema.describe('guaranteed rate: a rate or a percentage of the direction\'s rate'),
    ceil: classRateSchema.optional().describe('the most this class may take by borrowing unused bandwidth; default: its parent\'s ceiling (borrow everything idle)'),
    priority: z.number().int().min(0).max(7).default(4).describe('0 (first) to 7: the order in which classes get spare bandwidth'),
    leaf: leafSchema.default({ type: 'pfifo', limit: 1000 }).describe('queue of a leaf class (ignored for classes that have children)'),
    description: z.string().max(200).optional().describe('free text for operators'),
  })
  .strict();

const portSpec = z.union([z.number().int().min(0).max(65535), z.string().min(1)]);
const portField = z.union([portSpec, z.array(portSpec).min(1)]);
const networkField = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);

/** A classifier rule: the same match fields as firewall rules. */
export const qosRuleSchema = z
  .object({
    class: z.string().describe('leaf class that matching packets go to'),
    protocol: z.union([z.enum(['any', 'tcp', 'udp', 'icmp', 'icmpv6']), z.number().int().min(1).max(255)]).default('any').describe('transport protocol (name or number)'),
    family: z.enum(['any', 'ipv4', 'ipv6']).default('any').describe('address family; implied by prefixes when they are all of one family'),
    source: networkField.optional().describe('source prefixes, addresses or network alias names'),
    destination: networkField.optional().describe('destination prefixes, addresses or network alias names'),
    sourcePort: portField.optional().describe('source ports, ranges (8000-8100) or port alias names (tcp/udp only)'),
    destinationPort: portField.optional().describe('destination ports, ranges or port alias names (tcp/udp only)'),
    description: z.string().max(200).optional().describe('free text for operators'),
  })
  .strict();

export const htbDirectionSchema = z
  .object({
    type: z.literal('htb').describe('hierarchical token bucket: classes with guaranteed rates and ceilings'),
    rate: rateSchema.describe('the link rate: set it a little below what the link really carries so the queue stays here'),
    defaultClass: z.string().describe('leaf class for packets no rule matches'),
    classes: z.array(qosClassSchema).min(1).describe('class tree; parents before or after children, any order'),
    rules: z.array(qosRuleSchema).max(256).default([]).describe('classifier rules, first match wins'),
  })
  .strict();

export const tbfDirectionSchema = z
  .object({
    type: z.literal('tbf').describe('token bucket filter: one rate limit for the whole direction'),
    rate: rateSchema.describe('rate limit'),
    burst: sizeSchema.optional().describe('bucket size in bytes; default: rate x 10 ms, at least 10 kb'),
    latency: z.number().int().min(1).max(10_000).default(50).describe('longest a packet may wait in the queue, in ms'),
  })
  .strict();

export const qosDirectionSchema = z.discriminatedUnion('type', [htbDirectionSchema, tbfDirectionSchema]);

export const qosInterfaceSchema = z
  .object({
    interface: z.string().regex(/^[A-Za-z0-9_.:-]{1,15}$/, 'must be a Linux interface name (1-15 characters)').describe('a managed interface (listed under interfaces)'),
    egress: qosDirectionSchema.optional().describe('shaping of traffic leaving the interface'),
    ingress: qosDirectionSchema.optional().describe('shaping of traffic arriving on the interface (through an IFB device Patronus creates)'),
  })
  .strict();

export const qosSchema = z
  .object({
    interfaces: z.array(qosInterfaceSchema).default([]).describe('per-interface shaping'),
  })
  .strict()
  .default({ interfaces: [] });

export type QosConfig = z.infer<typeof qosSchema>;
export type QosDirectionConfig = z.infer<typeof qosDirectionSchema>;
export type QosClassConfig = z.infer<typeof qosClassSchema>;
export type QosRuleConfig = z.infer<typeof qosRuleSchema>;
export type LeafConfig = z.infer<typeof leafSchema>;
export { PERCENT as RATE_PERCENT };
