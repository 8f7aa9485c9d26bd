/** DHCPv4 (Kea): the section, its subsystem, the lease series and the leases route. The domain's descriptor (src/apply/domain.ts). */
import { z } from 'zod';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Domain } from '../../apply/domain.js';
import type { JsonSchema, Operation } from '../../api/operation.js';
import { contains, parsePrefix } from '../../net/address.js';
import { keaSchema } from './schema.js';
import { keaSubsystem, type DhcpMetrics } from './subsystem.js';
import { dhcpLeases } from './kea.js';

const leasesQuery = z
  .object({
    subnet: z
      .string()
      .regex(/^(\d+|\d+\.\d+\.\d+\.\d+\/\d{1,2})$/, 'must be a subnet id or an IPv4 network such as 192.168.1.0/24')
      .refine((s) => !s.includes('/') || Number(s.split('/')[1]) <= 32, 'prefix length must be at most 32')
      .optional()
      .describe('only leases in this subnet: its id, or its network (addresses inside it)'),
    state: z.enum(['active', 'declined', 'expired']).optional().describe('only leases in this state'),
  })
  .strict();

/** One lease as GET /dhcp/leases answers it (DhcpLease in ./leases.ts); the console's types are generated from it. */
const leaseJson: JsonSchema = {
  type: 'object',
  required: ['address', 'mac', 'subnetId', 'validLifetime', 'expires', 'state'],
  properties: {
    address: { type: 'string', description: 'the leased IPv4 address' },
    mac: { type: 'string', description: 'the client hardware address, lower case, colon separated' },
    clientId: { type: 'string', description: "the client identifier (option 61), when the client sent one" },
    hostname: { type: 'string', description: 'the host name the client gave, when it gave one' },
    subnetId: { type: 'integer', description: "the subnet's id (dhcp.subnets[].id)" },
    validLifetime: { type: 'integer', description: 'seconds the lease was granted for' },
    expires: { type: 'string', format: 'date-time', description: 'when it runs out' },
    state: { type: 'string', enum: ['active', 'declined', 'expired'] },
  },
};
const leasesJson: JsonSchema = {
  type: 'object',
  required: ['enabled', 'leases'],
  properties: { enabled: { type: 'boolean', description: 'whether the committed revision runs a DHCP server' }, leases: { type: 'array', items: leaseJson } },
};

export const domain: Domain<'dhcp', typeof keaSchema> = {
  name: 'dhcp',
  module: import.meta.url,
  section: { key: 'dhcp', schema: keaSchema, describe: 'DHCPv4 server (Kea)' },
  subsystems: [{ phase: 'services', subsystem: keaSubsystem }],
  metrics(series) {
    series.gauge<'subnet' | 'state', DhcpMetrics>('patronus_dhcp_leases', 'DHCP leases by subnet id and state', ['subnet', 'state'], (g, s) => {
      for (const { m } of s) for (const l of m.dhcp?.leases ?? []) g.set({ subnet: String(l.subnet), state: l.state }, l.count);
    });
  },
  routes(fastify, { engine, prefix }) {
    const app = fastify.withTypeProvider<ZodTypeProvider>();
    app.get(`${prefix}/dhcp/leases`, { config: { role: 'viewer' }, schema: { summary: "Kea's current DHCPv4 leases (empty when DHCP is disabled)", querystring: leasesQuery } }, async (req) => {
      if (!engine.committedConfig()?.dhcp.enabled) return { enabled: false, leases: [] };
      const { subnet, state } = req.query;
      let inSubnet: (l: { address: string; subnetId: number }) => boolean = () => true;
      if (subnet?.includes('/')) {
        const net = parsePrefix(subnet);
        inSubnet = (l) => contains(net, l.address);
      } else if (subnet !== undefined) {
        inSubnet = (l) => l.subnetId === Number(subnet);
      }
      const leases = (await dhcpLeases(engine.host)).filter((l) => inSubnet(l) && (state === undefined || l.state === state));
      return { enabled: true, leases };
    });
  },
  operations: (P): Record<string, Operation> => ({
    [`GET ${P}/dhcp/leases`]: { operationId: 'listDhcpLeases', tag: 'services', ok: leasesJson, errors: [400, 401, 500] },
  }),
};
