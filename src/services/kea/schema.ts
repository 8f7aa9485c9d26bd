/**
 * The `dhcp:` section: a DHCPv4 server (Kea) for the LANs. Addresses,
 * pools and reservations are checked against their subnet here, so the
 * daemon's checker only ever sees a plausible configuration.
 */
import { z } from 'zod';
import { DOMAIN } from '../unbound/schema.js';
import { addressTextProblem, contains, formatPrefix, hasHostBits, ipv4ToNumber, isIPv4, overlaps, parseAddressWithLength, parsePrefix, type Prefix } from '../../net/address.js';

const ipv4 = z.string().refine((s) => isIPv4(s), 'must be an IPv4 address');
const domain = z.string().regex(DOMAIN, 'must be a DNS name such as lan.example');
const seconds = z.number().int().min(60).max(31536000);

export const MAC = /^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$/;

export const reservationSchema = z
  .object({
    mac: z.string().regex(MAC, 'must be a MAC address such as 52:54:00:12:34:56').describe('client hardware address'),
    address: ipv4.describe('address always given to this client'),
    hostname: z
      .string()
      .regex(/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/, 'must be a host name (letters, digits, -)')
      .optional()
      .describe('host name sent to the client'),
  })
  .strict();

export const subnetSchema = z
  .object({
    id: z.number().int().min(1).max(4294967294).optional().describe('stable subnet id (leases refer to it); default: position in the list, from 1'),
    subnet: z
      .string()
      .superRefine((s, ctx) => {
        const bad = addressTextProblem(s);
        if (bad) ctx.addIssue({ code: 'custom', message: bad });
        else if (!/^\d+\.\d+\.\d+\.\d+\/\d{1,2}$/.test(s)) ctx.addIssue({ code: 'custom', message: 'must be an IPv4 network such as 192.168.1.0/24' });
      })
      .describe('network served'),
    interface: z.string().min(1).describe('managed interface the clients are on'),
    pools: z
      .array(z.string().regex(/^\s*\d+\.\d+\.\d+\.\d+\s*-\s*\d+\.\d+\.\d+\.\d+\s*$/, 'must be a range such as 192.168.1.100-192.168.1.199'))
      .default([])
      .describe('dynamic address ranges "first-last"'),
    router: ipv4.optional().describe('default gateway (option 3)'),
    dnsServers: z.array(ipv4).max(8).optional().describe('DNS servers (option 6); default the top-level dnsServers'),
    domainName: domain.optional().describe('domain name (option 15); default the top-level domainName'),
    validLifetime: seconds.optional().describe('lease time in seconds; default the top-level validLifetime'),
    reservations: z.array(reservationSchema).default([]).describe('fixed addresses by MAC address'),
  })
  .strict();

export const keaSchema = z
  .object({
    enabled: z.boolean().default(false).describe('run the DHCPv4 server'),
    validLifetime: seconds.default(3600).describe('lease time in seconds'),
    authoritative: z.boolean().default(true).describe('answer requests for unknown leases with NAK (clients move on quickly)'),
    dnsServers: z.array(ipv4).max(8).default([]).describe('DNS servers for every subnet (option 6)'),
    domainName: domain.optional().describe('domain name for every subnet (option 15)'),
    subnets: z.array(subnetSchema).default([]).describe('subnets served'),
  })
  .strict()
  .prefault({})
  .superRefine((c, ctx) => {
    if (c.enabled && c.subnets.length === 0) ctx.addIssue({ code: 'custom', path: ['subnets'], message: 'the DHCP server needs at least one subnet' });
    const nets: { net: Prefix; i: number }[] = [];
    const ids = new Map<number, number>();
    const macs = new Map<string, string>();
    const addrs = new Map<string, string>();
    c.subnets.forEach((s, i) => {
      const at = (...p: (string | number)[]) => ['subnets', i, ...p];
      const id = s.id ?? i + 1;
      if (ids.has(id)) ctx.addIssue({ code: 'custom', path: at('id'), message: `subnet id ${id} is already used by subnets[${ids.get(id)}]` });
      ids.set(id, i);
      const written = parseAddressWithLength(s.subnet);
      if (written?.family !== 4 || written.length === undefined) {
        ctx.addIssue({ code: 'custom', path: at('subnet'), message: `"${s.subnet}" is not an IPv4 network (address/0-32)` });
        return;
      }
      const net = parsePrefix(s.subnet);
      if (hasHostBits(written.address, net)) ctx.addIssue({ code: 'custom', path: at('subnet'), message: `"${s.subnet}" has host bits set (network is ${formatPrefix(net)})` });
      for (const o of nets) {
        if (overlaps(o.net, net)) ctx.addIssue({ code: 'custom', path: at('subnet'), message: `overlaps subnets[${o.i}]` });
      }
      nets.push({ net, i });
      const inNet = (a: string) => contains(net, a);
      const ranges: [number, number][] = [];
      s.pools.forEach((p, j) => {
        const [a, b] = p.split('-').map((x) => x.trim()) as [string, string];
        if (!isIPv4(a) || !isIPv4(b)) return void ctx.addIssue({ code: 'custom', path: at('pools', j), message: `"${p}" is not a range of two IPv4 addresses` });
        const [x, y] = [ipv4ToNumber(a), ipv4ToNumber(b)];
        if (x > y) ctx.addIssue({ code: 'custom', path: at('pools', j), message: `"${p}": the range ends before it starts` });
        if (!inNet(a) || !inNet(b)) ctx.addIssue({ code: 'custom', path: at('pools', j), message: `"${p}" is not inside ${s.subnet}` });
        for (const [u, v] of ranges) if (x <= v && u <= y) ctx.addIssue({ code: 'custom', path: at('pools', j), message: `"${p}" overlaps another pool` });
        ranges.push([x, y]);
      });
      if (s.router && isIPv4(s.router) && !inNet(s.router)) ctx.addIssue({ code: 'custom', path: at('router'), message: `router ${s.router} is not inside ${s.subnet}` });
      s.reservations.forEach((r, j) => {
        if (!isIPv4(r.address)) return;
        if (!inNet(r.address)) ctx.addIssue({ code: 'custom', path: at('reservations', j, 'address'), message: `${r.address} is not inside ${s.subnet}` });
        const mac = r.mac.toLowerCase();
        const where = `subnets[${i}].reservations[${j}]`;
        if (macs.has(`${id}/${mac}`)) ctx.addIssue({ code: 'custom', path: at('reservations', j, 'mac'), message: `${r.mac} is already reserved at ${macs.get(`${id}/${mac}`)}` });
        macs.set(`${id}/${mac}`, where);
        if (addrs.has(r.address)) ctx.addIssue({ code: 'custom', path: at('reservations', j, 'address'), message: `${r.address} is already reserved at ${addrs.get(r.address)}` });
        addrs.set(r.address, where);
      });
    });
  });

export type DhcpConfig = z.infer<typeof keaSchema>;
export type DhcpSubnet = z.infer<typeof subnetSchema>;
