/**
 * The `ra:` section: IPv6 router advertisements for the LANs (radvd):
 * prefixes for SLAAC, DNS servers (RDNSS) and search domains (DNSSL), and
 * the M/O flags that send clients to a DHCPv6 server.
 */
import { isIPv6 } from '../../net/address.js';
import { z } from 'zod';
import { DOMAIN } from '../unbound/schema.js';

const ipv6 = z.string().refine((s) => isIPv6(s), 'must be an IPv6 address');

export const raInterfaceSchema = z
  .object({
    interface: z.string().regex(/^[A-Za-z0-9_.:-]{1,15}$/, 'must be a Linux interface name').describe('managed LAN interface to advertise on'),
    prefixes: z
      .array(z.string().min(1))
      .optional()
      .describe('/64 prefixes clients form addresses in (SLAAC); default: the /64 networks of the interface\'s IPv6 addresses'),
    dns: z.array(ipv6).max(3).default([]).describe('recursive DNS servers (RDNSS, RFC 8106)'),
    searchDomains: z.array(z.string().regex(DOMAIN, 'must be a DNS name')).max(4).default([]).describe('DNS search list (DNSSL)'),
    managed: z.boolean().default(false).describe('M flag: addresses from a stateful DHCPv6 server'),
    otherConfig: z.boolean().default(false).describe('O flag: other configuration (DNS...) from DHCPv6'),
    autonomous: z.boolean().default(true).describe('clients form their own addresses in the prefixes (SLAAC)'),
    maxIntervalSeconds: z.number().int().min(4).max(1800).default(600).describe('longest time between unsolicited advertisements'),
    routerLifetimeSeconds: z.number().int().min(0).max(9000).default(1800).describe('how long clients use this router as their default (0: not a default router)'),
  })
  .strict();

export const raSchema = z
  .object({
    enabled: z.boolean().default(true).describe('false stops radvd but keeps the configuration'),
    interfaces: z.array(raInterfaceSchema).default([]).describe('interfaces that send router advertisements'),
  })
  .strict()
  .default({ enabled: false, interfaces: [] });

export type RaConfig = z.infer<typeof raSchema>;
export type RaInterface = z.infer<typeof raInterfaceSchema>;
