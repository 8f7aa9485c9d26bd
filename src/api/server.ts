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
import { DASHBOARD_FRAME_SCHEMA, OPENAPI_TAGS, documentComponent, openapiTransformFor } from './openapi.js';
import { z } from 'zod';
import type { ConfigSource, Engine } from '../apply/engine.js';
import { formatPlan } from '../apply/plan.js';
import { registerDriftMetrics, type Metrics } from '../metrics/metrics.js';
import type { Store } from '../store/store.js';
import { streamApply, wantsStream } from './stream.js';
import { errorBody, errorHandler } from './errors.js';
import { ConfigError, type Issue } from '../config/issues.js';
import { ValidationStopped } from '../apply/check-worker.js';
import { documentJsonSchemaText } from '../config/json-schema.js';
import { parseConfigText } from '../config/load.js';
import { LARGE_JSON_BODY, parseJsonBodyInWorker } from '../config/parse-worker.js';
import type { HaSync } from '../ha/sync.js';
import type { HaEtcdSync } from '../ha/etcd-sync.js';
import { DriftMonitor } from '../drift/monitor.js';
import { jsonSafe } from './json.js';
import { redactSecrets } from '../services/common/redact.js';
import { registerConsole } from './console.js';
import { EventHub } from '../events/hub.js';
import { registerEventRoutes } from '../events/routes.js';
import { registerEventMetrics } from '../events/metrics.js';
import { installAuth, type SessionTimes } from './auth/auth.js';
import type { LoginLimitOptions } from './auth/login-limit.js';
import { trace } from '../system/trace.js';

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
/** The routes whose large JSON body's `config` reaches the engine as bytes (see `source` in buildServer). */
const DOCUMENT_ROUTES = new Set([`${API_PREFIX}/config/validate`, `${API_PREFIX}/config/plan`, `${API_PREFIX}/config/apply`]);
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
  // A large body (a document with a million prefixes) is parsed in a worker thread and its document kept as
  // text (src/config/parse-worker.ts): this thread never holds the parsed document, /healthz keeps answering.
  const bodyIssues = (issues: Issue[]) => new ConfigError(issues.map((i) => ({ ...i, message: i.message.replace(/^invalid JSON/, 'invalid JSON request body') })));
  // a large body's parse is a request's work (Engine.beginWork: the drift monitor starts no check meanwhile)
  // until its answer is sent, so the route's validate/plan/apply takes over without a gap
  const bodyWork = new WeakMap<object, () => void>();
  // a large body's document as UTF-8 JSON bytes (parse-worker.ts), per request: never a string on this thread
  const bodyDocument = new WeakMap<object, Uint8Array>();
  const endBodyWork = async (req: FastifyRequest) => {
    bodyWork.get(req)?.();
    bodyWork.delete(req);
  };
  app.addHook('onResponse', endBodyWork);
  app.addHook('onRequestAbort', endBodyWork);
  // the raw bytes: a large body is decoded in the worker too (src/config/parse-worker.ts)
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, raw, done) => {
    const bytes = raw as Buffer;
    trace(`server: body received (${bytes.length} bytes)`);
    if (bytes.length > LARGE_JSON_BODY) {
      bodyWork.set(req, engine.beginWork('request'));
      // the engine's document routes take the document as bytes (Engine ConfigSource `bytes`); others as text
      const route = req.url.split('?')[0];
      parseJsonBodyInWorker(bytes, { documentAsBytes: DOCUMENT_ROUTES.has(route!) }).then(
        (p) => {
          trace('server: body parsed (worker)');
          if ('issues' in p) return done(bodyIssues(p.issues));
          // the document as bytes (body.config is '' then): handed on to the compile worker as they are
          if (p.configBytes) bodyDocument.set(req, p.configBytes);
          done(null, p.body);
        },
        (e: Error) => done(e),
      );
      return;
    }
    const text = bytes.toString('utf8');
    if (!text.trim()) return done(new ConfigError([{ path: ['body'], message: 'the request body is empty; send a JSON object such as {"config": ...}' }]));
    const parsed = parseConfigText(text, 'json');
    if (parsed.issues.length) return done(bodyIssues(parsed.issues));
    trace('server: body parsed');
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
        schemas: { PatronusDocument: documentComponent(engine.document.schema), DashboardFrame: DASHBOARD_FRAME_SCHEMA },
      },
      // either one; each operation's x-patronus-role says which role it needs
      security: [{ bearer: [] }, { session: [] }],
    },
    // operationIds, tags and every response (errors included): src/api/openapi.ts
    transform: openapiTransformFor(engine.domains),
  });
  // after swagger (it collects routes as they are added), before every route (their roles are recorded)
  installAuth(app, { store, secureCookie: !!opts.https, prefix: API_PREFIX, ...(opts.sessions ? { sessions: opts.sessions } : {}), ...(opts.loginLimit ? { loginLimit: opts.loginLimit } : {}) });

  // the revision's author: the signed-in user, or the token's name
  const author = (req: FastifyRequest) => req.principal?.user ?? 'api';
  const source = (b: z.infer<typeof sourceBody>, req: FastifyRequest): ConfigSource => {
    const bytes = bodyDocument.get(req);
    bodyDocument.delete(req);
    return {
      ...(bytes ? { bytes, format: 'json' as const } : typeof b.config === 'string' ? { text: b.config, ...(b.format ? { format: b.format } : {}) } : { document: b.config }),
      ...(b.allowEmpty ? { allowEmpty: true } : {}),
    };
  };

  /**
   * 200 when the system is verified to run the revision it should (or
   * nothing is committed yet); 503 with every drifted object otherwise, or
   * when start-up reconciliation failed. Never reads the stored document:
   * the drift monitor compiles each revision once and reuses a check younger
   * than 1 s, with one check in flight at most. While a check is in flight,
   * the last verified result for the same revision answers at once (checking:
   * true, checkedAt and ageMs say how old it is): /healthz never waits for a
   * check's ip/nft spawns then. A new revision, or no result yet, waits.
   * While a request's validation, plan or apply is compiled and planned, no
   * check starts (deferred: true, the last verified result for the same
   * revision, ageMs growing; at most 30 s old); during its kernel phase
   * status is `applying` (200).
   */
  app.get('/healthz', { config: { role: 'public' }, schema: { hide: true } }, async (_req, reply) => {
    const h = engine.health();
    const answer: { deferred?: boolean } = {};
    const d = await drift.check({ maxAgeMs: 1000, lastWhileChecking: true, answer });
    const deferred = answer.deferred === true;
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
      // how old that verification is, and whether a newer one is running
      ageMs: Math.max(0, Date.now() - Date.parse(d.checkedAt)),
      checking: drift.checking,
      // no check starts while a request's validation, plan or apply is in progress: this is the last verified result
      deferred,
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
  // built at the first request, not at start (its generation from the zod schemas allocates a few MB)
  let schemaText: string | undefined;
  app.get('/schema.json', { config: { role: 'public' }, schema: { hide: true } }, async (_req, reply) =>
    reply.type('application/schema+json; charset=utf-8').send((schemaText ??= documentJsonSchemaText(engine.document.schema))),
  );

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
    const issues = await engine.validate(source(req.body, req)).catch((e: Error) => {
      // stopped by a shutdown: close this connection with the answer, or the server's close waits for it to idle out
      if (e instanceof ValidationStopped) reply.header('connection', 'close');
      throw e;
    });
    if (issues.length) throw new ConfigError(issues);
    return { valid: true };
  });

  app.post(`${API_PREFIX}/config/plan`, { config: { role: 'operator' }, schema: { summary: 'What applying a document would change, per subsystem', body: sourceBody } }, async (req) => {
    const plan = await engine.plan(source(req.body, req));
    return { ...plan, text: formatPlan(plan) };
  });

  app.post(`${API_PREFIX}/config/apply`, { config: { role: 'operator' }, schema: { summary: 'Apply a document as a new revision (all or nothing); with Accept: application/x-ndjson, progress lines and heartbeats stream until the report', body: applyBody } }, async (req, reply) => {
    const b = req.body;
    trace('server: apply route');
    const run = () => engine.apply({ ...source(b, req), ...(b.expect ? { expect: b.expect } : {}) }, { author: author(req), message: b.message, ...(b.confirmWithin !== undefined ? { confirmWithin: b.confirmWithin } : {}) });
    return wantsStream(req) ? streamApply(reply, engine, run, opts.streamHeartbeatMs) : run();
  });

  app.post(`${API_PREFIX}/config/confirm`, { config: { role: 'operator' }, schema: { summary: 'Confirm the revision awaiting confirmation' } }, async () => engine.confirm());

  app.post(`${API_PREFIX}/config/rollback`, { config: { role: 'operator' }, schema: { summary: 'Roll back the pending revision, or go back to an earlier one; with Accept: application/x-ndjson, streamed like an apply', body: rollbackBody.optional() } }, async (req, reply) => {
    const run = () => engine.rollback({ ...(req.body?.to !== undefined ? { to: req.body.to } : {}), author: author(req) });
    return wantsStream(req) ? streamApply(reply, engine, run, opts.streamHeartbeatMs) : run();
  });

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

  // each domain's routes (src/<domain>/domain.ts): interfaces, DHCP leases, VPN exports, IDS alerts, ...
  for (const d of engine.domains) if (d.routes) await d.routes(app, { engine, metrics, prefix: API_PREFIX });

  await registerConsole(app, { engine, metrics, drift, ...opts.console });

  return app;
}
