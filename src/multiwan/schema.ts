/**
 * The `gateways:` section: multi-WAN. Gateways (an interface and a next hop,
 * each health-monitored), gateway groups (tiers for failover, weights for
 * load balancing inside a tier) and policies that send new connections from
 * matching sources to a group. See src/multiwan/compile.ts for how it maps
 * onto conntrack marks, ip rules and routing tables.
 */
import { z } from 'zod';

const name = z.string().regex(/^[A-Za-z][A-Za-z0-9_]{0,23}$/, 'must start with a letter and hold only letters, digits and _ (max 24)');
const ifName = z.string().regex(/^[A-Za-z0-9_.:-]{1,15}$/, 'must be a Linux interface name (1-15 characters)');
const ipv4 = z.ipv4({ message: 'must be an IPv4 address' });

export const monitorSchema = z
  .object({
    method: z.enum(['icmp', 'tcp']).default('icmp').describe('icmp: echo requests; tcp: connect to target:port'),
    target: ipv4.optional().describe('what to probe through this gateway (default: the next hop); a stable host beyond it tests the whole path'),
    port: z.number().int().min(1).max(65535).optional().describe('TCP port (method tcp)'),
    intervalMs: z.number().int().min(20).max(60000).default(500).describe('time between probes; a probe not answered by the next one counts as lost'),
    window: z.number().int().min(1).max(100).default(10).describe('how many recent probes loss and latency are computed over'),
    lossPercent: z.number().min(1).max(100).default(20).describe('the gateway is down when at least this share of the window is lost'),
    latencyMs: z.number().min(1).max(60000).default(500).describe('the gateway is down when the average round trip over the window reaches this'),
    upAfter: z.number().int().min(1).max(100).default(3).describe('consecutive good probes before a down gateway is used again'),
  })
  .strict();

export const gatewaySchema = z
  .object({
    name: name.describe('gateway name (groups refer to it)'),
    interface: ifName.describe('interface the gateway is reached on'),
    nextHop: ipv4.describe('next-hop address'),
    flushStatesOnDown: z
      .boolean()
      .default(true)
      .describe('when the gateway goes down, delete the UDP and ICMP conntrack entries pinned to it, so flows that keep their addresses (VPN clients, VoIP) are re-decided onto a gateway that works; TCP entries and connections on other gateways are never touched'),
    monitor: monitorSchema.default({ method: 'icmp', intervalMs: 500, window: 10, lossPercent: 20, latencyMs: 500, upAfter: 3 }).describe('health monitoring'),
    description: z.string().max(200).optional(),
  })
  .strict();

export const groupSchema = z
  .object({
    name: name.describe('group name (policies refer to it)'),
    members: z
      .array(
        z
          .object({
            gateway: name.describe('a gateway name'),
            tier: z.number().int().min(1).max(15).default(1).describe('failover tier: the lowest tier with a gateway up carries the traffic'),
            weight: z.number().int().min(1).max(100).default(1).describe('share of new connections among the up gateways of the same tier'),
          })
          .strict(),
      )
      .min(1)
      .describe('member gateways'),
    description: z.string().max(200).optional(),
  })
  .strict();

export const policySchema = z
  .object({
    name: name.describe('policy name (counter key)'),
    group: name.describe('the gateway group new matching connections use'),
    interfaces: z.array(ifName).default([]).describe('ingress interfaces; empty = any'),
    source: z.array(z.string().min(1)).default([]).describe('source prefixes or network aliases; empty = any'),
    destination: z.array(z.string().min(1)).default([]).describe('destination prefixes or network aliases; empty = any'),
  })
  .strict();

export const gatewaysSchema = z
  .object({
    gateways: z.array(gatewaySchema).default([]).describe('WAN gateways'),
    groups: z.array(groupSchema).default([]).describe('gateway groups (failover tiers, load-balancing weights)'),
    policies: z.array(policySchema).default([]).describe('which new connections use which group, first match wins'),
    defaultRoute: name
      .optional()
      .describe("a gateway group that owns the main table's IPv4 default route (protocol 248): via its active members (several: a weighted multipath route), moved on every health change; traffic no policy matches (the gateway's own included) follows it"),
    tableBase: z.number().int().min(1).max(0x7fff0000).default(200).describe('routing table of gateway n (1-based, in list order) is tableBase + n'),
    rulePriority: z.number().int().min(1).max(32000).default(10000).describe('ip rule preferences: rulePriority (main table without its default), + n (mark of gateway n), + 256 + 4n (WAN source addresses); only rules Patronus added itself are ever removed'),
  })
  .strict()
  .default({ gateways: [], groups: [], policies: [], tableBase: 200, rulePriority: 10000 });

export type GatewaysConfig = z.infer<typeof gatewaysSchema>;
/** kept for src/config/document.ts compatibility */
export type GatewayConfig = z.infer<typeof gatewaySchema>;
export type MonitorConfig = z.infer<typeof monitorSchema>;
export type GroupConfig = z.infer<typeof groupSchema>;
