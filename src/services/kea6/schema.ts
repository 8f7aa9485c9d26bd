/**
 * The `dhcp6:` section: a stateful DHCPv6 server (kea-dhcp6) for LANs whose
 * router advertisements set the M flag (`ra.interfaces[].managed: true`).
 */
import { isIPv6 } from '../../net/address.js';
import { z } from 'zod';

const ipv6 = z.string().refine((s) => isIPv6(s), 'must be an IPv6 address');

export const dhcp6SubnetSchema = z
  .object({
    id: z.number().int().min(1).max(4294967294).optional().describe('stable subnet id; default: position in the list, from 1'),
    subnet: z.string().min(1).describe('IPv6 network served, e.g. 2001:db8:1::/64'),
    interface: z.string().regex(/^[A-Za-z0-9_.:-]{1,15}$/, 'must be a Linux interface name').describe('managed interface the clients are on'),
    pools: z.array(z.string().regex(/^\s*[0-9A-Fa-f:]+\s*-\s*[0-9A-Fa-f:]+\s*$/, 'must be a range such as 2001:db8:1::1000-2001:db8:1::1fff')).min(1).describe('address ranges "first-last"'),
    dnsServers: z.array(ipv6).max(8).default([]).describe('DNS servers (option 23)'),
  })
  .strict();

export const dhcp6Schema = z
  .object({
    enabled: z.boolean().default(true).describe('run the DHCPv6 server'),
    preferredLifetime: z.number().int().min(60).max(31536000).default(3000).describe('preferred lifetime of leased addresses, seconds'),
    validLifetime: z.number().int().min(60).max(31536000).default(4000).describe('valid lifetime of leased addresses, seconds (at least the preferred lifetime)'),
    subnets: z.array(dhcp6SubnetSchema).default([]).describe('subnets served'),
  })
  .strict()
  .default({ enabled: false, preferredLifetime: 3000, validLifetime: 4000, subnets: [] });

export type Dhcp6Config = z.infer<typeof dhcp6Schema>;
