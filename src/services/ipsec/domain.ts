/** IPsec (strongSwan): the section, its subsystem, the VPN series and the CA certificate route. The domain's descriptor (src/apply/domain.ts). */
import type { Domain } from '../../apply/domain.js';
import { errorBody } from '../../api/errors.js';
import { text, type Operation } from '../../api/operation.js';
import { vpnSeries } from '../common/vpn-metrics.js';
import { ipsecSchema } from './schema.js';
import { ipsecSubsystem } from './subsystem.js';
import { ipsecCaCertificate } from './ipsec.js';

export const domain: Domain<'ipsec', typeof ipsecSchema> = {
  name: 'ipsec',
  module: import.meta.url,
  section: { key: 'ipsec', schema: ipsecSchema, describe: 'IPsec (strongSwan) connections' },
  subsystems: [{ phase: 'services', subsystem: ipsecSubsystem }],
  metrics: vpnSeries,
  routes(app, { engine, prefix }) {
    app.get(`${prefix}/vpn/ipsec/ca`, { config: { role: 'viewer' }, schema: { summary: "The certificate (PEM) of this host's IPsec CA, for peers to trust (one CA per host)" } }, async (_req, reply) => {
      // the CA is made on first use: do not make one on a host that runs no IPsec
      if (!engine.committedConfig()?.ipsec.connections.length) return reply.code(404).send(errorBody(404, 'no IPsec connections in the committed configuration'));
      return reply.type('application/x-pem-file').send(await ipsecCaCertificate(engine.host.stateDir));
    });
  },
  operations: (P): Record<string, Operation> => ({
    [`GET ${P}/vpn/ipsec/ca`]: { operationId: 'getIpsecCa', tag: 'vpn', ok: text('application/x-pem-file', 'the CA certificate (PEM)'), errors: [401, 404, 500] },
  }),
};
