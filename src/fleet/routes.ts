/**
 * /api/v1/fleet/*: the fleet seen from any node that joined it (serve
 * --fleet), the same controller as `patronus fleet`. A rollout started here
 * runs in this server process (202 with its id; follow it with GET
 * /fleet/rollouts/:id); it ends when the server stops (its lock lease lapses).
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { parseConfigText } from '../config/load.js';
import { ConfigError } from '../config/issues.js';
import { API_PREFIX } from '../api/server.js';
import { FleetError, rolloutId, rolloutOptions, type FleetController } from './controller.js';

const groupField = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/, 'must be a group name');
const documentInput = z.union([z.string().describe('the base document as YAML or JSON text'), z.record(z.string(), z.unknown()).describe('the base document as a JSON object')]);

const rolloutBody = z
  .object({
    group: groupField.describe('group to roll out to'),
    config: documentInput.describe('the group base document (each node gets it with its overlay)'),
    canary: z.number().int().min(0).max(1000).default(1).describe('nodes in the first wave'),
    waves: z.array(z.string().regex(/^\d{1,3}(\.\d+)?%$/)).min(1).max(20).default(['100%']).describe('cumulative shares of the group after the canary, the last 100%'),
    confirmWithin: z.number().min(5).max(3600).default(60).describe('seconds each node has to apply, check its health and confirm'),
    message: z.string().max(500).default('').describe('why (kept with each node revision)'),
  })
  .strict();
const validateBody = z.object({ group: groupField, config: documentInput }).strict();

export function documentFrom(config: string | Record<string, unknown>): unknown {
  if (typeof config !== 'string') return config;
  const parsed = parseConfigText(config);
  if (parsed.issues.length) throw new ConfigError(parsed.issues);
  return parsed.value;
}

export async function fleetRoutes(app: FastifyInstance, opts: { controller: FleetController }): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const c = opts.controller;
  const running = new Set<Promise<unknown>>();
  app.addHook('onClose', async () => {
    await Promise.allSettled([...running]);
  });

  r.get(`${API_PREFIX}/fleet/status`, { config: { role: 'viewer' }, schema: { summary: 'Fleet groups: members, online, converged, running rollouts' } }, async () => c.status());
  r.get(`${API_PREFIX}/fleet/nodes`, { config: { role: 'viewer' }, schema: { summary: 'Fleet members with registration and last rollout status', querystring: z.object({ group: groupField.optional() }).strict() } }, async (req) => c.nodes(req.query.group));
  r.get(`${API_PREFIX}/fleet/rollouts`, { config: { role: 'viewer' }, schema: { summary: 'Rollouts, newest first', querystring: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(20) }).strict() } }, async (req) => c.rollouts(req.query.limit));
  r.get(`${API_PREFIX}/fleet/rollouts/:id`, { config: { role: 'viewer' }, schema: { summary: 'One rollout: waves, per-node results, history', params: z.object({ id: z.string().min(1).max(64) }) } }, async (req) => c.record(req.params.id));
  r.post(`${API_PREFIX}/fleet/validate`, { config: { role: 'viewer' }, schema: { summary: 'Validate a base document for every member of a group (with its overlay)', body: validateBody } }, async (req) => {
    const v = await c.validate(req.body.group, documentFrom(req.body.config));
    if (!v.members.length) throw new FleetError(`group ${req.body.group} has no members`, 'invalid');
    if (v.problems.length) throw new ConfigError(v.problems.flatMap((p) => p.issues.map((i) => ({ ...i, path: [`node ${p.node}`, ...i.path] }))));
    return { valid: true, members: v.members };
  });
  r.post(`${API_PREFIX}/fleet/rollouts`, { config: { role: 'operator' }, schema: { summary: 'Start a rollout (202: it runs in this server; follow GET /fleet/rollouts/:id)', body: rolloutBody } }, async (req, reply) => {
    const b = req.body;
    rolloutOptions(b);
    const id = rolloutId();
    const document = documentFrom(b.config);
    const p = c.rollout({ id, group: b.group, document, canary: b.canary, waves: b.waves, confirmWithin: b.confirmWithin, message: b.message }).catch(() => undefined);
    running.add(p);
    void p.finally(() => running.delete(p));
    // answer once the record exists (validation and the lock are its first steps)
    for (let i = 0; i < 40; i++) {
      const rec = await c.record(id).catch(() => undefined);
      if (rec) return reply.code(202).send(rec);
      await new Promise((res) => setTimeout(res, 50));
    }
    return reply.code(202).send({ id });
  });
  r.get(`${API_PREFIX}/fleet/commits`, { config: { role: 'viewer' }, schema: { summary: 'What the GitOps watcher made of each commit of a group, newest first', querystring: z.object({ group: groupField, limit: z.coerce.number().int().min(1).max(1000).default(20) }).strict() } }, async (req) => c.commits(req.query.group, req.query.limit));
  r.post(
    `${API_PREFIX}/fleet/commits/:commit/approve`,
    { config: { role: 'operator' }, schema: { summary: 'Approve a commit held under GitOps policy approval (the watcher rolls it out on its next poll)', params: z.object({ commit: z.string().regex(/^[0-9a-fA-F]{7,64}$/, 'must be a commit hash (7 to 64 hex digits)') }), body: z.object({ group: groupField, message: z.string().max(500).default('') }).strict() } },
    async (req) => c.approve(req.body.group, req.params.commit, req.principal?.user ?? 'api', req.body.message),
  );
  r.post(`${API_PREFIX}/fleet/rollouts/:id/abort`, { config: { role: 'operator' }, schema: { summary: 'Halt a running rollout', params: z.object({ id: z.string().min(1).max(64) }) } }, async (req) => c.abort(req.params.id));
}
