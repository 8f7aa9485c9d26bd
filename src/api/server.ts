/**
 * The REST API (fastify + zod schemas, OpenAPI at /openapi.json) over the
 * same engine the CLI uses. buildServer() only builds: the caller listens
 * (src/api/serve.ts in production, tests on 127.0.0.1:0) and closes, which
 * runs the onClose hooks (confirmation timer, lock file, store).
 *
 * Every route declares the least role it needs (`config: { role }`, see
 * src/api/auth/roles.ts); one hook (src/api/auth/auth.ts) checks a bearer
 * token or a console session cookie against it. /healthz, /schema.json and
 * sign-in are public. Request bodies are capped (413 beyond).
 */
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import fastifySwagger from '@fastify/swagger';
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { DASHBOARD_FRAME_SCHEMA, OPENAPI_TAGS, documentComponent, openapiTransform } from './openapi.js';
import { z } from 'zod';
import type { ConfigSource, Engine } from '../apply/engine.js';
import { formatPlan } from '../apply/plan.js';
import { registerDriftMetrics, type Metrics } from '../metrics/metrics.js';
import type { Store } from '../store/store.js';
import { streamApply, wantsStream } from './stream.js';
import { errorBody, errorHandler } from './errors.js';
import { ConfigError } from '../config/issues.js';
import { ValidationStopped } from '../apply/check-worker.js';
import { documentJsonSchemaText } from '../config/json-schema.js';
import { parseConfigText } from '../config/load.js';
import { idsEngine } from '../services/ids/engine.js';
import type { HaSync } from '../ha/sync.js';
import type { HaEtcdSync } from '../ha/etcd-sync.js';
import { DriftMonitor } from '../drift/monitor.js';
import { jsonSafe } from './json.js';
import { redactSecrets } from '../services/common/redact.js';
import { dhcpLeases } from '../services/kea/kea.js';
import { keaSchema } from '../services/kea/schema.js';
import { addressTextProblem, canonicalAddress, contains, isAddress, parsePrefix } from '../net/address.js';
import { exportClientConfig, ExportError } from '../services/wireguard/export.js';
import { wireguardInterfaceSchema } from '../services/wireguard/schema.js';
import { exportProfile } from '../services/openvpn/openvpn.js';
import { openvpnServerSchema } from '../services/openvpn/schema.js';
import { ipsecCaCertificate } from '../services/ipsec/ipsec.js';
import { registerConsole } from './console.js';
import { EventHub } from '../events/hub.js';
import { registerEventRoutes } from '../events/routes.js';
import { registerEventMetrics } from '../events/metrics.js';
import { installAuth, type SessionTimes } from './auth/auth.js';
import type { LoginLimitOptions } from './auth/login-limit.js';

export interface ServerOptions {
  engine: Engine;
  store: Store;
  metrics: Metrics;
  bodyLimit?: number;
  https?: { cert: string | Buffer; key: string | Buffer };
  /** heartbeat interval of streamed applies (default 10 s) */
  streamHeartbeatMs?: number;
  metricsRequireToken?: boolean;
  /** close the store and engine when the server closes (production) */
  ownsEngine?: boolean;
  logger?: FastifyServerOptions['logger'];
  /** the HA primary's config sync (src/ha/sync.ts): served at /api/v1/ha/sync */
  haSync?: HaSync;
  /** HA config sync through etcd (src/ha/etcd-sync.ts): its last report is served at /api/v1/ha/sync when the REST push has none */
  haEtcdSync?: HaEtcdSync;
  /**
   * The drift monitor behind /healthz, status and patronus_drift (serve
   * starts its periodic loop). Default: one that checks on demand only.
   */
  drift?: DriftMonitor;
  /** the web console (src/api/console.ts): where its build is, how often the dashboard stream reads counters */
  console?: { dir?: string; intervalMs?: number };
  /** the firewall event log behind /api/v1/events (serve feeds it from the fast path and NFLOG); default: an empty one */
  events?: EventHub;
  /** console session idle timeout and lifetime (default 1 h, 12 h) */
  sessions?: SessionTimes;
  /** failed sign-ins allowed per address and per user (default 5 a minute) */
  loginLimit?: LoginLimitOptions;
}

export const API_PREFIX = '/api/v1';

const configInput = z
  .union([z.string().describe('the document as YAML or JSON text'), z.record(z.string(), z.unknown()).describe('the document as a JSON object')])
  .describe('a Patronus configuration document');
const sourceBody = z
  .object({
    config: configInput,
    format: z.enum(['yaml', 'json']).optional().describe('format of `config` when it is text (default: detected)'),
    allowEmpty: z.boolean().optional().describe('accept an empty document (applying it removes everything Patronus manages); refused otherwise'),
  })
  .strict();
const applyBody = sourceBody
  .extend({
    message: z.string().max(500).default('').describe('why this change (kept with the revision)'),
    confirmWithin: z.coerce.number().positive().max(86400).optional().describe('seconds: roll back by itself unless confirmed within this time'),
    expect: z
      .object({ revision: z.number().int().positive().nullable(), fingerprint: z.string().regex(/^[0-9a-f]{64}$/) })
      .strict()
      .optional()
      .describe("a saved plan's basis (the plan response's `basis`): apply only if the committed revision is still that one and the plan computed now is the same (409 otherwise)"),
  })
  .strict();
const rollbackBody = z
  .object({ to: z.number().int().positive().optional().describe('revision to go back to (default: the previous committed one)') })
  .strict()
  .default({});
const revisionParams = z.object({ id: z.coerce.number().int().positive() });
const listQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(50),
  before: z.coerce.number().int().positive().optional(),
});

const blockParams = z.object({ address: z.string().describe('the blocked source, an IPv4 or IPv6 address') });

const alertsQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100_000).default(100).describe('most alerts to return'),
  severity: z.coerce.number().int().min(1).max(4).optional().describe('only alerts at least this severe (1 is the most severe)'),
  signatureId: z.coerce.number().int().positive().optional().describe('only this signature'),
  source: z.string().max(64).optional().describe('only alerts from this source address'),
});

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
const nameField = z.string().min(1).max(64);
const wgPeerParams = z.object({ interface: nameField.describe('WireGuard interface name'), peer: nameField.describe('peer name') });
const wgConfigQuery = z.object({ format: z.enum(['text', 'svg']).default('text').describe('text: wg-quick config; svg: the same as a QR code') }).strict();
const ovpnParams = z.object({ server: nameField.describe('OpenVPN server name'), client: nameField.describe('client name') });

export async function buildServer(opts: ServerOptions): Promise<FastifyInstance> {
  const { engine, store, metrics } = opts;
  const drift = opts.drift ?? new DriftMonitor(engine);
  registerDriftMetrics(metrics.registry, drift);
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: opts.bodyLimit ?? 8 << 20,
    ...(opts.https ? { https: opts.https } : {}),
    // JSON errors for everything, including 404s and bodies fastify cannot parse
    return503OnClosing: true,
  } as FastifyServerOptions).withTypeProvider<ZodTypeProvider>();

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((req, reply) => reply.code(404).send(errorBody(404, `no route ${req.method} ${req.url.split('?')[0]}`)));

  // raw YAML bodies: curl --data-binary @patronus.yaml -H 'content-type: application/yaml'
  // (?allowEmpty=true accepts an empty document, like the allowEmpty body field)
  app.addContentTypeParser(['application/yaml', 'application/x-yaml', 'text/yaml'], { parseAs: 'string' }, (req, body, done) => {
    const q = req.query as Record<string, string | undefined>;
    if (q.allowEmpty !== undefined && q.allowEmpty !== 'true' && q.allowEmpty !== 'false') {
      done(Object.assign(new Error(`invalid request: querystring.allowEmpty: must be true or false, not "${q.allowEmpty}"`), { statusCode: 400 }));
      return;
    }
    done(null, {
      config: body,
      format: 'yaml',
      ...(q.message !== undefined ? { message: q.message } : {}),
      ...(q.confirmWithin !== undefined ? { confirmWithin: q.confirmWithin } : {}),
      ...(q.allowEmpty === 'true' ? { allowEmpty: true } : {}),
    });
  });
  // JSON bodies: syntax errors with line and column, and duplicate keys
  // refused (JSON.parse would keep the last one silently: a trailing
  // "firewall": {"enabled": false} would win), as are __proto__/constructor keys
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = body as string;
    if (!text.trim()) return done(new ConfigError([{ path: ['body'], message: 'the request body is empty; send a JSON object such as {"config": ...}' }]));
    const parsed = parseConfigText(text, 'json');
    if (parsed.issues.length) return done(new ConfigError(parsed.issues.map((i) => ({ ...i, message: i.message.replace(/^invalid JSON/, 'invalid JSON request body') }))));
    done(null, parsed.value);
  });

  // Every JSON body (status, service state, documents, plans, errors) passes
  // redactSecrets: private keys and PSKs never leave, whatever a subsystem
  // reports. Text bodies (the explicit exports below, /metrics) are strings
  // and skip this hook; the OpenAPI document is schema, not data (its
  // `presharedKey` properties would be mangled).
  app.addHook('preSerialization', async (req, _reply, payload) => (req.url.split('?')[0] === '/openapi.json' ? payload : redactSecrets(payload)));

  app.addHook('onClose', async () => {
    drift.stop();
    opts.haSync?.detach(engine);
    await opts.haEtcdSync?.detach();
    if (opts.ownsEngine) {
      engine.close();
      store.close();
    }
  });

  await app.register(fastifySwagger, {
    openapi: {
      // 3.1: its schemas are JSON Schema 2020-12, which is what zod writes (numeric exclusiveMinimum, ...)
      openapi: '3.1.0',
      info: { title: 'Patronus', description: 'Linux firewall and edge data-plane manager: configuration, revisions, counters', version: '1', license: { name: 'GPL-2.0-only', identifier: 'GPL-2.0-only' } },
      servers: [{ url: '/', description: 'this server (api.listen)' }],
      tags: OPENAPI_TAGS,
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer' },
          session: { type: 'apiKey', in: 'cookie', name: 'patronus_session', description: 'console session (POST /api/v1/session); requests that change something also need X-CSRF-Token' },
        },
        schemas: { PatronusDocument: documentComponent(), DashboardFrame: DASHBOARD_FRAME_SCHEMA },
      },
      // either one; each operation's x-patronus-role says which role it needs
      security: [{ bearer: [] }, { session: [] }],
    },
    // operationIds, tags and every response (errors included): src/api/openapi.ts
    transform: openapiTransform,
  });
  // after swagger (it collects routes as they are added), before every route (their roles are recorded)
  installAuth(app, { store, secureCookie: !!opts.https, prefix: API_PREFIX, ...(opts.sessions ? { sessions: opts.sessions } : {}), ...(opts.loginLimit ? { loginLimit: opts.loginLimit } : {}) });

  // the revision's author: the signed-in user, or the token's name
  const author = (req: FastifyRequest) => req.principal?.user ?? 'api';
  const source = (b: z.infer<typeof sourceBody>): ConfigSource => ({
    ...(typeof b.config === 'string' ? { text: b.config, ...(b.format ? { format: b.format } : {}) } : { document: b.config }),
    ...(b.allowEmpty ? { allowEmpty: true } : {}),
  });

  /**
   * 200 when the system is verified to run the revision it should (or
   * nothing is committed yet); 503 with every drifted object otherwise, or
   * when start-up reconciliation failed. Never reads the stored document:
   * the drift monitor compiles each revision once and reuses a check younger
   * than 1 s, with one check in flight at most.
   */
  app.get('/healthz', { config: { role: 'public' }, schema: { hide: true } }, async (_req, reply) => {
    const h = engine.health();
    const d = await drift.check({ maxAgeMs: 1000 });
    // degraded: start-up reconciliation failed, or the store cannot record revisions (disk full, I/O errors)
    const degraded = (!!h.reconcile && !h.reconcile.ok) || !h.store.ok;
    const status = d.state === 'drift' ? 'drift' : degraded ? 'degraded' : d.state === 'applying' ? 'applying' : 'ok';
    reply.code(status === 'drift' || status === 'degraded' ? 503 : 200);
    return {
      status,
      revision: d.revision,
      // the revision the system should run (kept for clients of the earlier shape)
      committed: d.revision,
      checkedAt: d.checkedAt,
      reconcileMode: d.mode,
      drift: d.items,
      repairs: d.repairs,
      nextRepair: d.nextRepair,
      reconcile: h.reconcile,
      store: h.store,
    };
  });

  app.get('/metrics', { config: { role: opts.metricsRequireToken === false ? 'public' : 'metrics' }, schema: { hide: true } }, async (_req, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  app.get('/openapi.json', { config: { role: 'viewer' }, schema: { hide: true } }, async () => app.swagger());

  // for editors (yaml-language-server's `$schema=` modeline): docs/patronus.schema.json, served as text so
  // the secret-redacting serializer leaves its `presharedKey` properties alone
  const schemaText = documentJsonSchemaText();
  app.get('/schema.json', { config: { role: 'public' }, schema: { hide: true } }, async (_req, reply) => reply.type('application/schema+json; charset=utf-8').send(schemaText));

  const events = opts.events ?? new EventHub();
  registerEventMetrics(metrics.registry, events);
  registerEventRoutes(app, events, API_PREFIX);

  app.get(`${API_PREFIX}/status`, { config: { role: 'viewer' }, schema: { summary: 'Engine status: committed and running revisions, pending confirmation, reconciliation, drift' } }, async () => {
    const d = await drift.check({ maxAgeMs: 1000 });
    const s = engine.status();
    // running: what the last process that converged the kernel recorded (a --direct CLI included),
    // null while the drift check finds the system differs from it
    return { ...s, running: d.state === 'drift' ? null : s.running, drift: d };
  });

  app.get(`${API_PREFIX}/config`, { config: { role: 'viewer' }, schema: { summary: 'The last committed configuration' } }, async (_req, reply) => {
    const current = store.current();
    const pending = engine.pendingConfirmation();
    if (!current && !pending) return reply.code(404).send(errorBody(404, 'no configuration has been committed yet'));
    return { revision: current?.id ?? null, config: current?.config ?? null, pending: pending ? { revision: pending.id, deadline: pending.confirmDeadline, config: pending.config } : null };
  });

  app.post(`${API_PREFIX}/config/validate`, { config: { role: 'viewer' }, schema: { summary: 'Validate a document (schema, aliases, every subsystem); 400 lists every issue', body: sourceBody } }, async (req, reply) => {
    // in a worker thread: a huge document does not stall /healthz (see Engine.validate)
    const issues = await engine.validate(source(req.body)).catch((e: Error) => {
      // stopped by a shutdown: close this connection with the answer, or the server's close waits for it to idle out
      if (e instanceof ValidationStopped) reply.header('connection', 'close');
      throw e;
    });
    if (issues.length) throw new ConfigError(issues);
    return { valid: true };
  });

  app.post(`${API_PREFIX}/config/plan`, { config: { role: 'operator' }, schema: { summary: 'What applying a document would change, per subsystem', body: sourceBody } }, async (req) => {
    const plan = await engine.plan(source(req.body));
    return { ...plan, text: formatPlan(plan) };
  });

  app.post(`${API_PREFIX}/config/apply`, { config: { role: 'operator' }, schema: { summary: 'Apply a document as a new revision (all or nothing); with Accept: application/x-ndjson, progress lines and heartbeats stream until the report', body: applyBody } }, async (req, reply) => {
    const b = req.body;
    const run = () => engine.apply({ ...source(b), ...(b.expect ? { expect: b.expect } : {}) }, { author: author(req), message: b.message, ...(b.confirmWithin !== undefined ? { confirmWithin: b.confirmWithin } : {}) });
    return wantsStream(req) ? streamApply(reply, engine, run, opts.streamHeartbeatMs) : run();
  });

  app.post(`${API_PREFIX}/config/confirm`, { config: { role: 'operator' }, schema: { summary: 'Confirm the revision awaiting confirmation' } }, async () => engine.confirm());

  app.post(`${API_PREFIX}/config/rollback`, { config: { role: 'operator' }, schema: { summary: 'Roll back the pending revision, or go back to an earlier one', body: rollbackBody.optional() } }, async (req) =>
    engine.rollback({ ...(req.body?.to !== undefined ? { to: req.body.to } : {}), author: author(req) }),
  );

  app.get(`${API_PREFIX}/revisions`, { config: { role: 'viewer' }, schema: { summary: 'Revisions, newest first (without their documents)', querystring: listQuery } }, async (req) =>
    store.list({ ...req.query, withConfig: false }).map(({ config: _c, result, ...r }) => ({ ...r, failedStep: (result as { failedStep?: string } | undefined)?.failedStep ?? null })),
  );

  app.get(`${API_PREFIX}/revisions/:id`, { config: { role: 'viewer' }, schema: { summary: 'One revision with its document and apply result', params: revisionParams } }, async (req, reply) => {
    const r = store.get(req.params.id);
    return r ?? reply.code(404).send(errorBody(404, `revision ${req.params.id} does not exist`));
  });

  app.get(`${API_PREFIX}/rules`, { config: { role: 'viewer' }, schema: { summary: 'Rules with their live counters' } }, async () => {
    const s = await metrics.snapshot();
    const rules = [];
    for (const x of s.bySubsystem) for (const r of x.metrics?.rules ?? []) rules.push({ subsystem: x.subsystem, rule: r.rule, action: r.action ?? null, packets: Number(r.packets), bytes: Number(r.bytes), ...(r.limited !== undefined ? { rateLimited: Number(r.limited) } : {}) });
    const verdicts = [];
    for (const x of s.bySubsystem) for (const v of x.metrics?.verdicts ?? []) verdicts.push({ subsystem: x.subsystem, direction: v.direction ?? 'ingress', verdict: v.verdict, packets: Number(v.packets), bytes: Number(v.bytes) });
    return { rules, verdicts, errors: s.bySubsystem.filter((x) => x.error).map((x) => ({ subsystem: x.subsystem, error: x.error })) };
  });

  app.get(`${API_PREFIX}/interfaces`, { config: { role: 'viewer' }, schema: { summary: 'Managed interfaces: configured zone, live state and counters' } }, async () => {
    const current = store.current()?.config as { interfaces?: { name: string; zone?: string }[] } | undefined;
    const zones = new Map((current?.interfaces ?? []).map((i) => [i.name, i.zone ?? 'lan']));
    const s = await metrics.snapshot();
    const live = s.bySubsystem.flatMap((x) => x.metrics?.interfaces ?? []);
    return live.map((l) => ({ ...l, managed: zones.has(l.interface), zone: zones.get(l.interface) ?? null }));
  });

  app.get(`${API_PREFIX}/ids/alerts`, { config: { role: 'viewer' }, schema: { summary: 'Recent IDS alerts, newest first, with counts by signature and severity and the auto-block record', querystring: alertsQuery } }, async (req) => {
    const e = idsEngine(engine.host);
    if (!e) return { ingesting: false, alerts: [], summary: null };
    const q = req.query;
    const alerts = e.store.recent(q.limit, { ...(q.severity !== undefined ? { minSeverity: q.severity } : {}), ...(q.signatureId !== undefined ? { signatureId: q.signatureId } : {}), ...(q.source !== undefined ? { srcIp: q.source } : {}) });
    return { ingesting: true, alerts, summary: e.summary() };
  });

  app.delete(`${API_PREFIX}/ids/blocks/:address`, { config: { role: 'operator' }, schema: { summary: 'Take a source off the IDS dynamic block list (the fast-path drop list auto-block fills)', params: blockParams } }, async (req, reply) => {
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

  app.get(`${API_PREFIX}/ha/sync`, { config: { role: 'viewer' }, schema: { summary: 'HA config sync (primary): the last comparison with the peer (hashes, differing sections, last push)' } }, async (_req, reply) => {
    const r = opts.haSync?.status() ?? opts.haEtcdSync?.status();
    return r ?? reply.code(404).send(errorBody(404, opts.haSync || opts.haEtcdSync ? 'no sync has run yet (ha.sync not configured, or this node is not the primary)' : 'HA sync is not available on this server'));
  });

  app.post(`${API_PREFIX}/ha/sync`, { config: { role: 'operator' }, schema: { summary: 'HA config sync (primary): compare with the peer now and push when it differs' } }, async (_req, reply) => {
    const r = await opts.haSync?.run();
    return r ?? reply.code(409).send(errorBody(409, 'ha.sync is not configured with role: primary in the committed revision'));
  });

  app.get(`${API_PREFIX}/services`, { config: { role: 'viewer' }, schema: { summary: 'Status of every subsystem that reports one (what runs: interfaces, program ids, map fill, tables, daemons with pids and uptime)' } }, async () => {
    const out = await Promise.all(
      engine.subsystems
        .filter((s) => s.status)
        .map(async (s) => {
          try {
            // whatever a subsystem reports (bigint counters, Maps, Buffers) leaves as plain JSON
            return { subsystem: s.name, status: jsonSafe(await s.status!(engine.host)) };
          } catch (e) {
            return { subsystem: s.name, error: (e as Error).message };
          }
        }),
    );
    return out;
  });

  /** A section of the committed document (raw JSON, defaults applied by `schema`), or undefined when nothing is committed. */
  const committed = (key: string): unknown => (store.current()?.config as Record<string, unknown> | undefined)?.[key];

  app.get(`${API_PREFIX}/dhcp/leases`, { config: { role: 'viewer' }, schema: { summary: "Kea's current DHCPv4 leases (empty when DHCP is disabled)", querystring: leasesQuery } }, async (req) => {
    const dhcp = keaSchema.safeParse(committed('dhcp') ?? {});
    if (!dhcp.success || !dhcp.data.enabled) return { enabled: false, leases: [] };
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

  app.get(
    `${API_PREFIX}/vpn/wireguard/:interface/peers/:peer/config`,
    // holds a private key: admin only
    { config: { role: 'admin' }, schema: { summary: 'Client config of a generated WireGuard peer: wg-quick text (text/plain) or QR code (image/svg+xml); holds the peer private key', params: wgPeerParams, querystring: wgConfigQuery } },
    async (req, reply) => {
      const { interface: name, peer } = req.params;
      const raw = (committed('wireguard') as { interfaces?: { name?: unknown }[] } | undefined)?.interfaces?.find((i) => i.name === name);
      if (!raw) return reply.code(404).send(errorBody(404, `wireguard interface "${name}" is not in the committed configuration`));
      const iface = wireguardInterfaceSchema.parse(raw);
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

  app.get(
    `${API_PREFIX}/vpn/openvpn/:server/clients/:client/profile`,
    // holds a private key: admin only
    { config: { role: 'admin' }, schema: { summary: 'The .ovpn profile of an OpenVPN server client (inline CA, certificate, private key, tls-crypt key)', params: ovpnParams } },
    async (req, reply) => {
      const { server: name, client } = req.params;
      const raw = (committed('openvpn') as { servers?: { name?: unknown }[] } | undefined)?.servers?.find((s) => s.name === name);
      if (!raw) return reply.code(404).send(errorBody(404, `openvpn server "${name}" is not in the committed configuration`));
      const server = openvpnServerSchema.parse(raw);
      if (!server.clients.some((c) => c.name === client)) return reply.code(404).send(errorBody(404, `openvpn server ${name} has no client "${client}"`));
      let profile: string;
      try {
        const rootCaFile = (committed('certificates') as { acme?: { rootCaFile?: unknown } } | undefined)?.acme?.rootCaFile;
        profile = exportProfile(engine.host.stateDir, server, client, typeof rootCaFile === 'string' ? { rootCaFile } : {});
      } catch (e) {
        return reply.code(409).send(errorBody(409, (e as Error).message));
      }
      reply.header('cache-control', 'no-store');
      reply.header('content-disposition', `attachment; filename="${client}-${name}.ovpn"`);
      return reply.type('application/x-openvpn-profile').send(profile);
    },
  );

  app.get(`${API_PREFIX}/vpn/ipsec/ca`, { config: { role: 'viewer' }, schema: { summary: "The certificate (PEM) of this host's IPsec CA, for peers to trust (one CA per host)" } }, async (_req, reply) => {
    const conns = (committed('ipsec') as { connections?: unknown[] } | undefined)?.connections;
    // the CA is made on first use: do not make one on a host that runs no IPsec
    if (!conns?.length) return reply.code(404).send(errorBody(404, 'no IPsec connections in the committed configuration'));
    return reply.type('application/x-pem-file').send(await ipsecCaCertificate(engine.host.stateDir));
  });

  await registerConsole(app, { engine, metrics, drift, ...opts.console });

  return app;
}
