/** Intrusion detection (Suricata): the section, its subsystem, the alert/block series and the alert and unblock routes. The domain's descriptor (src/apply/domain.ts). */
import { z } from 'zod';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Domain } from '../../apply/domain.js';
import { errorBody } from '../../api/errors.js';
import type { JsonSchema, Operation } from '../../api/operation.js';
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

/** GET /ids/alerts as it answers (EveAlert in ./eve.ts, IdsEngine.summary in ./engine.ts); the console's types are generated from it. */
const alertJson: JsonSchema = {
  type: 'object',
  required: ['timestamp', 'srcIp', 'destIp', 'proto', 'action', 'gid', 'signatureId', 'rev', 'signature', 'category', 'severity'],
  properties: {
    timestamp: { type: 'string', description: 'as Suricata wrote it (ISO 8601 with offset)' },
    srcIp: { type: 'string' },
    srcPort: { type: 'integer' },
    destIp: { type: 'string' },
    destPort: { type: 'integer' },
    proto: { type: 'string' },
    inIface: { type: 'string' },
    action: { type: 'string', description: 'allowed, or blocked (IPS mode only)' },
    gid: { type: 'integer' },
    signatureId: { type: 'integer' },
    rev: { type: 'integer' },
    signature: { type: 'string' },
    category: { type: 'string' },
    severity: { type: 'integer', minimum: 1, maximum: 4, description: '1 is the most severe' },
    source: { type: 'string', description: "the attacker per the rule's target keyword, when the rule has one" },
    flowId: { type: 'integer' },
  },
};
const alertsJson: JsonSchema = {
  type: 'object',
  required: ['ingesting', 'alerts', 'summary'],
  properties: {
    ingesting: { type: 'boolean', description: 'whether an IDS engine runs (ids.enabled in the committed revision)' },
    alerts: { type: 'array', items: alertJson, description: 'newest first' },
    summary: {
      type: ['object', 'null'],
      description: 'null when no IDS engine runs',
      required: ['alerts', 'bySeverity', 'signatures', 'malformedLines', 'autoBlock'],
      additionalProperties: true,
      properties: {
        alerts: { type: 'integer', description: 'alerts since the engine started' },
        bySeverity: { type: 'object', additionalProperties: { type: 'integer' }, description: 'alerts by severity' },
        signatures: { type: 'array', items: { type: 'object', required: ['signatureId', 'signature', 'severity', 'count'], properties: { signatureId: { type: 'integer' }, signature: { type: 'string' }, severity: { type: 'integer' }, count: { type: 'integer' } } } },
        malformedLines: { type: 'integer' },
        autoBlock: {
          type: 'object',
          required: ['enabled', 'blocks', 'current', 'errors'],
          additionalProperties: true,
          properties: {
            enabled: { type: 'boolean' },
            blocks: { type: 'integer', description: 'sources blocked since the engine started' },
            current: { type: 'array', description: 'sources blocked now', items: { type: 'object', required: ['address', 'expiresAt'], properties: { address: { type: 'string' }, expiresAt: { type: ['string', 'null'], format: 'date-time', description: 'null: until unblocked' } } } },
            errors: { type: 'integer' },
          },
        },
      },
    },
  },
};

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
    [`GET ${P}/ids/alerts`]: { operationId: 'listIdsAlerts', tag: 'ids', ok: alertsJson, errors: [400, 401, 500] },
    [`DELETE ${P}/ids/blocks/:address`]: { operationId: 'unblockIdsAddress', tag: 'ids', ok: { type: 'object', required: ['address', 'removed'], properties: { address: { type: 'string', description: 'the address, canonical' }, removed: { type: 'boolean', description: 'whether it was on the block list' } } }, errors: [400, 401, 409, 500] },
  }),
};
