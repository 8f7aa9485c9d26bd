/** OpenVPN: the section, its subsystem, the VPN series and the client-profile export route. The domain's descriptor (src/apply/domain.ts). */
import { z } from 'zod';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Domain } from '../../apply/domain.js';
import { errorBody } from '../../api/errors.js';
import { text, type Operation } from '../../api/operation.js';
import { vpnSeries } from '../common/vpn-metrics.js';
import { openvpnSchema } from './schema.js';
import { openvpnSubsystem } from './subsystem.js';
import { exportProfile } from './openvpn.js';

const nameField = z.string().min(1).max(64);
const ovpnParams = z.object({ server: nameField.describe('OpenVPN server name'), client: nameField.describe('client name') });

export const domain: Domain<'openvpn', typeof openvpnSchema> = {
  name: 'openvpn',
  module: import.meta.url,
  section: { key: 'openvpn', schema: openvpnSchema, describe: 'OpenVPN servers and clients' },
  subsystems: [{ phase: 'services', subsystem: openvpnSubsystem }],
  metrics: vpnSeries,
  routes(fastify, { engine, prefix }) {
    const app = fastify.withTypeProvider<ZodTypeProvider>();
    app.get(
      `${prefix}/vpn/openvpn/:server/clients/:client/profile`,
      // holds a private key: admin only
      { config: { role: 'admin' }, schema: { summary: 'The .ovpn profile of an OpenVPN server client (inline CA, certificate, private key, tls-crypt key)', params: ovpnParams } },
      async (req, reply) => {
        const { server: name, client } = req.params;
        const committed = engine.committedConfig();
        const server = committed?.openvpn.servers.find((s) => s.name === name);
        if (!server) return reply.code(404).send(errorBody(404, `openvpn server "${name}" is not in the committed configuration`));
        if (!server.clients.some((c) => c.name === client)) return reply.code(404).send(errorBody(404, `openvpn server ${name} has no client "${client}"`));
        let profile: string;
        try {
          const rootCaFile = committed?.certificates.acme?.rootCaFile;
          profile = exportProfile(engine.host.stateDir, server, client, rootCaFile !== undefined ? { rootCaFile } : {});
        } catch (e) {
          return reply.code(409).send(errorBody(409, (e as Error).message));
        }
        reply.header('cache-control', 'no-store');
        reply.header('content-disposition', `attachment; filename="${client}-${name}.ovpn"`);
        return reply.type('application/x-openvpn-profile').send(profile);
      },
    );
  },
  operations: (P): Record<string, Operation> => ({
    [`GET ${P}/vpn/openvpn/:server/clients/:client/profile`]: { operationId: 'getOpenvpnProfile', tag: 'vpn', ok: text('application/x-openvpn-profile', 'the .ovpn profile'), errors: [400, 401, 404, 409, 500] },
  }),
};
