/** Intrusion detection (Suricata): the section, its subsystem, the alert/block series and the alert and unblock routes. The domain's descriptor (src/apply/domain.ts). */
import { z } from 'zod';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Domain } from '../../apply/domain.js';
import { errorBody } from '../../api/errors.js';
import { anyObject, type Operation } from '../../api/operation.js';
import { addressTextProblem, canonicalAddress, isAddress } from '../../net/address.js';
import { idsSchema } from './schema.js';
import { idsSubsystem, type IdsMetrics } from './subsystem.js';
import { idsEngine } from './engine.js';

const blockParams = z.object({ address: z.string().describe('the blocked source, an IPv4 or IPv6 address') });

const alertsQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100_000).default(100).describe('most alerts to return'),
  severity: z.coerce.number().int().min(1).max(4).optional().describe('only alerts at least this severe (1 is the most severe)'),
  signatureId: z.coerce.number().int().positive().optional().describe('only this signature'),
  source: z.string().max(64).optional().describe('only alerts from this source address'),
});

export const domain: Domain<'ids', typeof idsSchema> = {
  name: 'ids',
  module: import.meta.url,
  section: { key: 'ids', schema: idsSchema, describe: 'intrusion detection (Suricata)' },
  subsystems: [{ phase: 'services', subsystem: idsSubsystem }],
  metrics({ counter }) {
    counter<'subsystem' | 'signature_id' | 'signature' | 'severity', IdsMetrics>('patronus_ids_alerts_total', 'IDS (Suricata) alerts since the control plane started, by signature', ['subsystem', 'signature_id', 'signature', 'severity'], (c, s) => {
      for (const { subsystem, m } of s) for (const a of m.alerts ?? []) c.inc({ subsystem, signature_id: String(a.signatureId), signature: a.signature, severity: String(a.severity) }, a.count);
    });
    counter<'subsystem', IdsMetrics>('patronus_ids_blocks_total', 'Sources the IDS added to the fast-path block list', ['subsystem'], (c, s) => {
      for (const { subsystem, m } of s) if (m.blocks !== undefined) c.inc({ subsystem }, m.blocks);
    });
  },
  routes(fastify, { engine, prefix }) {
    const app = fastify.withTypeProvider<ZodTypeProvider>();
    app.get(`${prefix}/ids/alerts`, { config: { role: 'viewer' }, schema: { summary: 'Recent IDS alerts, newest first, with counts by signature and severity and the auto-block record', querystring: alertsQuery } }, async (req) => {
      const e = idsEngine(engine.host);
      if (!e) return { ingesting: false, alerts: [], summary: null };
      const q = req.query;
      const alerts = e.store.recent(q.limit, { ...(q.severity !== undefined ? { minSeverity: q.severity } : {}), ...(q.signatureId !== undefined ? { signatureId: q.signatureId } : {}), ...(q.source !== undefined ? { srcIp: q.source } : {}) });
      return { ingesting: true, alerts, summary: e.summary() };
    });

    app.delete(`${prefix}/ids/blocks/:address`, { config: { role: 'operator' }, schema: { summary: 'Take a source off the IDS dynamic block list (the fast-path drop list auto-block fills)', params: blockParams } }, async (req, reply) => {
      const text = req.params.address;
      const problem = addressTextProblem(text) ?? (isAddress(text) ? undefined : `"${text}" is not an IPv4 or IPv6 address`);
      if (problem) return reply.code(400).send(errorBody(400, `address: ${problem}`));
      const address = canonicalAddress(text);
      const e = idsEngine(engine.host);
      if (!e) return reply.code(409).send(errorBody(409, `cannot unblock ${address}: no IDS engine runs (ids is not enabled in the committed revision)`));
      const removed = await e.unblock(address);
      if (removed === undefined) return reply.code(409).send(errorBody(409, `cannot unblock ${address}: no fast-path block list is loaded (the fast path does not run)`));
      return { address, removed };
    });
  },
  operations: (P): Record<string, Operation> => ({
    [`GET ${P}/ids/alerts`]: { operationId: 'listIdsAlerts', tag: 'ids', ok: anyObject('ingesting, alerts (newest first), summary'), errors: [400, 401, 500] },
    [`DELETE ${P}/ids/blocks/:address`]: { operationId: 'unblockIdsAddress', tag: 'ids', ok: { type: 'object', required: ['address', 'removed'], properties: { address: { type: 'string', description: 'the address, canonical' }, removed: { type: 'boolean', description: 'whether it was on the block list' } } }, errors: [400, 401, 409, 500] },
  }),
};
