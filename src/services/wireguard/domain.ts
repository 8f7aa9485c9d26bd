/** WireGuard: the section, its subsystem, the VPN series and the peer-config export route. The domain's descriptor (src/apply/domain.ts). */
import { z } from 'zod';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Domain } from '../../apply/domain.js';
import { errorBody } from '../../api/errors.js';
import type { Operation } from '../../api/operation.js';
import { vpnSeries } from '../common/vpn-metrics.js';
import { wireguardSchema } from './schema.js';
import { wireguardSubsystem } from './subsystem.js';
import { exportClientConfig, ExportError } from './export.js';

const nameField = z.string().min(1).max(64);
const wgPeerParams = z.object({ interface: nameField.describe('WireGuard interface name'), peer: nameField.describe('peer name') });
const wgConfigQuery = z.object({ format: z.enum(['text', 'svg']).default('text').describe('text: wg-quick config; svg: the same as a QR code') }).strict();

export const domain: Domain<'wireguard', typeof wireguardSchema> = {
  name: 'wireguard',
  module: import.meta.url,
  section: { key: 'wireguard', schema: wireguardSchema, describe: 'WireGuard interfaces and peers' },
  subsystems: [{ phase: 'services', subsystem: wireguardSubsystem }],
  metrics: vpnSeries,
  routes(fastify, { engine, prefix }) {
    const app = fastify.withTypeProvider<ZodTypeProvider>();
    app.get(
      `${prefix}/vpn/wireguard/:interface/peers/:peer/config`,
      // holds a private key: admin only
      { config: { role: 'admin' }, schema: { summary: 'Client config of a generated WireGuard peer: wg-quick text (text/plain) or QR code (image/svg+xml); holds the peer private key', params: wgPeerParams, querystring: wgConfigQuery } },
      async (req, reply) => {
        const { interface: name, peer } = req.params;
        const iface = engine.committedConfig()?.wireguard.interfaces.find((i) => i.name === name);
        if (!iface) return reply.code(404).send(errorBody(404, `wireguard interface "${name}" is not in the committed configuration`));
        if (!iface.peers.some((p) => p.name === peer)) return reply.code(404).send(errorBody(404, `wireguard interface ${name} has no peer "${peer}"`));
        let out;
        try {
          out = await exportClientConfig(engine.host.stateDir, iface, peer);
        } catch (e) {
          // the peer exists but cannot be exported (key not kept, no clientExport, not applied yet)
          if (e instanceof ExportError) return reply.code(409).send(errorBody(409, e.message));
          throw e;
        }
        reply.header('cache-control', 'no-store');
        if (req.query.format === 'svg') return reply.type('image/svg+xml').send(out.svg);
        return reply.type('text/plain; charset=utf-8').send(out.text);
      },
    );
  },
  operations: (P): Record<string, Operation> => ({
    [`GET ${P}/vpn/wireguard/:interface/peers/:peer/config`]: {
      operationId: 'getWireguardPeerConfig',
      tag: 'vpn',
      ok: { description: 'wg-quick configuration (format=text) or its QR code (format=svg)', content: { 'text/plain': { schema: { type: 'string' } }, 'image/svg+xml': { schema: { type: 'string' } } } },
      errors: [400, 401, 404, 409, 500],
    },
  }),
};
