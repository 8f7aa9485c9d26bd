/**
 * What /openapi.json says beyond the request schemas the routes carry: an
 * operationId and a tag per operation, and a response for every status it
 * can answer (the error shape of errors.ts for 4xx/5xx, the result for 200,
 * media types for exports). Added by the swagger transform, so it documents
 * without changing how responses are serialized at run time.
 */
import type { FastifySchema } from 'fastify';
import { jsonSchemaTransform } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { API_PREFIX } from './server.js';
import type { Domain } from '../apply/domain.js';
import { anyObject, type JsonSchema, type Operation } from './operation.js';
import { firewallEventSchema } from '../events/hub.js';

/** The one error shape (src/api/errors.ts ErrorBody). */
export const ERROR_SCHEMA: JsonSchema = {
  type: 'object',
  required: ['statusCode', 'error', 'message'],
  properties: {
    statusCode: { type: 'integer' },
    error: { type: 'string', description: 'HTTP reason phrase' },
    message: { type: 'string' },
    issues: {
      type: 'array',
      description: 'bad input: every problem with its path (and, for a document sent as text, the line and column of the node it is about)',
      items: { type: 'object', required: ['path', 'message'], properties: { path: { type: 'string' }, message: { type: 'string' }, line: { type: 'integer', minimum: 1 }, column: { type: 'integer', minimum: 1 } } },
    },
    report: { type: 'object', additionalProperties: true, description: 'a failed apply (500): the steps, the failing one and what the rollback did' },
  },
};

const ERROR_TEXT: Record<number, string> = {
  400: 'Bad input (every issue with its path); nothing changed',
  401: 'Missing or invalid bearer token or session cookie',
  403: "The principal's role is below the route's (x-patronus-role), or a cookie-signed request that changes something lacks its X-CSRF-Token",
  404: 'No such object',
  409: 'Conflict: an apply is running or a revision awaits confirmation',
  413: 'Body over api.bodyLimit',
  415: 'Unsupported content type (JSON or YAML)',
  429: 'Too many failed sign-ins from this address or for this user (Retry-After says when to try again)',
  500: 'Failure (a failed apply carries its report; the previous revision was restored)',
};

/** The configuration document's JSON Schema (a component: see documentComponent), as /schema.json serves it. */
const DOCUMENT_REF = '#/components/schemas/PatronusDocument';

const step = { type: 'object', required: ['subsystem', 'ok', 'ms'], properties: { subsystem: { type: 'string' }, ok: { type: 'boolean' }, ms: { type: 'number' }, error: { type: 'string' }, unchanged: { type: 'boolean', description: 'not run: this part of the revision is what runs, checked clean by the drift loop' } } };
const revisionState = { type: 'string', enum: ['applying', 'confirming', 'committed', 'failed', 'rolled_back', 'interrupted'] };
const applyReport: JsonSchema = {
  type: 'object',
  required: ['revision', 'state', 'durationMs', 'steps'],
  properties: {
    revision: { type: 'integer' },
    state: revisionState,
    durationMs: { type: 'number' },
    steps: { type: 'array', items: step },
    failedStep: { type: 'string' },
    error: { type: 'string' },
    rollback: { type: 'array', items: step },
    rolledBackTo: { type: ['integer', 'null'] },
    confirmDeadline: { type: 'string', format: 'date-time' },
    unchanged: { type: 'boolean', description: 'the document is the committed one and the kernel runs it: nothing recorded' },
  },
};
const revisionProps = {
  id: { type: 'integer' },
  createdAt: { type: 'string', format: 'date-time' },
  author: { type: 'string' },
  message: { type: 'string' },
  state: revisionState,
  confirmDeadline: { type: 'string', format: 'date-time' },
  finishedAt: { type: 'string', format: 'date-time' },
};
const revision: JsonSchema = { type: 'object', required: ['id', 'createdAt', 'author', 'message', 'state'], properties: { ...revisionProps, config: { type: 'object', additionalProperties: true, description: 'the document as given' }, result: { type: 'object', additionalProperties: true } } };
const change = { type: 'object', required: ['action', 'object'], properties: { action: { type: 'string', enum: ['add', 'remove', 'change', 'reload', 'restart', 'start', 'stop'] }, object: { type: 'string' }, detail: { type: 'string' } } };
const plan: JsonSchema = {
  type: 'object',
  required: ['subsystems', 'summary', 'text'],
  properties: {
    removesEverything: { type: 'boolean' },
    subsystems: { type: 'array', items: { type: 'object', required: ['subsystem', 'changes'], properties: { subsystem: { type: 'string' }, changes: { type: 'array', items: change } } } },
    summary: { type: 'object', additionalProperties: { type: 'integer' }, description: 'changes per action' },
    text: { type: 'string', description: 'the plan as `patronus plan` prints it' },
  },
};
const counters = { packets: { type: 'integer' }, bytes: { type: 'integer' } };
const rules: JsonSchema = {
  type: 'object',
  required: ['rules', 'verdicts', 'errors'],
  properties: {
    rules: { type: 'array', items: { type: 'object', required: ['subsystem', 'rule', 'action', 'packets', 'bytes'], properties: { subsystem: { type: 'string' }, rule: { type: 'string' }, action: { type: ['string', 'null'] }, ...counters, rateLimited: { type: 'integer' } } } },
    verdicts: { type: 'array', items: { type: 'object', required: ['subsystem', 'direction', 'verdict', 'packets', 'bytes'], properties: { subsystem: { type: 'string' }, direction: { type: 'string' }, verdict: { type: 'string' }, ...counters } } },
    errors: { type: 'array', items: { type: 'object', properties: { subsystem: { type: 'string' }, error: { type: 'string' } } } },
  },
};
/** The data of a dashboard stream `frame` event (src/api/console.ts DashboardFrame): raw counters, the time they were read (ms since the epoch). */
const num = { type: 'number' };
const str = { type: 'string' };
export const DASHBOARD_FRAME_SCHEMA: JsonSchema = {
  type: 'object',
  required: ['time', 'interfaces', 'rules', 'verdicts', 'services', 'errors', 'status', 'drift', 'gateway'],
  properties: {
    time: num,
    interfaces: { type: 'array', items: { type: 'object', required: ['interface', 'rxPackets', 'rxBytes', 'txPackets', 'txBytes', 'up'], properties: { interface: str, rxPackets: num, rxBytes: num, txPackets: num, txBytes: num, up: { type: 'boolean' } } } },
    rules: (rules.properties as Record<string, JsonSchema>).rules!,
    verdicts: (rules.properties as Record<string, JsonSchema>).verdicts!,
    services: { type: 'array', items: { type: 'object', required: ['service', 'up'], properties: { service: str, up: { type: 'boolean' } } } },
    errors: { type: 'array', items: { type: 'object', required: ['subsystem', 'error'], properties: { subsystem: str, error: str } } },
    status: {
      type: 'object',
      required: ['committed', 'pending', 'applying'],
      properties: {
        committed: { type: ['integer', 'null'] },
        pending: { type: ['object', 'null'], required: ['id', 'deadline'], properties: { id: { type: 'integer' }, deadline: { type: ['string', 'null'], format: 'date-time' } } },
        applying: { type: 'boolean' },
      },
    },
    drift: {
      type: ['object', 'null'],
      required: ['state', 'revision', 'checkedAt', 'items'],
      properties: {
        state: str,
        revision: { type: ['integer', 'null'] },
        checkedAt: { type: ['string', 'null'] },
        items: { type: 'array', items: { type: 'object', required: ['subsystem', 'object', 'reason'], properties: { subsystem: str, object: str, reason: str } } },
      },
    },
    gateway: {
      type: 'object',
      description: 'gateway services as their subsystems report them (the same figures as the patronus_dns_*, patronus_vpn_*, patronus_vrrp_*, patronus_bgp_*, patronus_ospf_* metrics)',
      required: ['dns', 'vpnTunnels', 'vrrp', 'bgpPeers', 'ospfNeighbors', 'idsBlocks'],
      properties: {
        dns: {
          type: ['object', 'null'],
          required: ['queriesByType', 'answersByRcode', 'cacheHits', 'cacheMisses', 'blocklists'],
          properties: {
            queriesByType: { type: 'object', additionalProperties: num },
            answersByRcode: { type: 'object', additionalProperties: num },
            cacheHits: num,
            cacheMisses: num,
            blocklists: { type: 'array', items: { type: 'object', required: ['list', 'domains'], properties: { list: str, domains: num } } },
          },
        },
        vpnTunnels: {
          type: 'array',
          items: { type: 'object', required: ['service', 'tunnel', 'peer', 'up', 'rxBytes', 'txBytes'], properties: { service: { type: 'string', enum: ['wireguard', 'openvpn', 'ipsec'] }, tunnel: str, peer: str, up: { type: 'boolean' }, rxBytes: num, txBytes: num, latestHandshake: num } },
        },
        vrrp: {
          type: 'array',
          items: { type: 'object', required: ['instance', 'state', 'transitions'], properties: { instance: str, state: { type: 'integer', description: '0 init, 1 backup, 2 master, 3 fault, 4 stopped' }, transitions: { type: 'array', items: { type: 'object', required: ['to', 'count'], properties: { to: str, count: num } } } } },
        },
        bgpPeers: { type: 'array', items: { type: 'object', required: ['peer', 'afi', 'established', 'prefixesReceived', 'prefixesSent'], properties: { peer: str, afi: str, established: { type: 'boolean' }, prefixesReceived: num, prefixesSent: num } } },
        ospfNeighbors: { type: 'array', items: { type: 'object', required: ['routerId', 'interface', 'full'], properties: { routerId: str, interface: str, full: { type: 'boolean' } } } },
        idsBlocks: { type: ['number', 'null'], description: 'sources the IDS added to the fast-path block list' },
      },
    },
  },
};
const role = { type: 'string', enum: ['metrics', 'viewer', 'operator', 'admin'] };
const signIn: JsonSchema = {
  type: 'object',
  required: ['user', 'role', 'kind', 'via', 'sessionId', 'csrfToken', 'expiresAt'],
  properties: {
    user: { type: 'string', description: 'the user, or the name of the token signed in with' },
    role,
    kind: { type: 'string', const: 'session' },
    via: { type: 'string', enum: ['user', 'token'] },
    sessionId: { type: 'string' },
    csrfToken: { type: 'string', description: 'send as X-CSRF-Token with every request that changes something' },
    expiresAt: { type: 'string', format: 'date-time', description: 'when the session ends unless used (idle timeout, capped by its lifetime)' },
  },
};
const whoami: JsonSchema = {
  type: 'object',
  required: ['user', 'role', 'kind'],
  properties: { ...(signIn.properties as JsonSchema), kind: { type: 'string', enum: ['session', 'token'], description: 'signed in by the session cookie or a bearer token' } },
};
const session: JsonSchema = {
  type: 'object',
  required: ['id', 'user', 'via', 'role', 'createdAt', 'lastSeenAt', 'expiresAt', 'current'],
  properties: {
    id: { type: 'string' },
    user: { type: 'string' },
    via: { type: 'string', enum: ['user', 'token'] },
    role,
    createdAt: { type: 'string', format: 'date-time' },
    lastSeenAt: { type: 'string', format: 'date-time', description: 'recorded at most every 30 s' },
    expiresAt: { type: 'string', format: 'date-time' },
    address: { type: ['string', 'null'] },
    userAgent: { type: ['string', 'null'] },
    current: { type: 'boolean', description: "this request's own session" },
  },
};

const BODY_ERRORS = [400, 401, 409, 413, 415, 500];

/**
 * Every documented operation by "METHOD url": the core's and those of the
 * domains' routes (Domain.operations). A route missing here fails the
 * OpenAPI test.
 */
let operations: Record<string, Operation> | undefined;
export function documentedOperations(domains: readonly Domain<any, any>[]): Record<string, Operation> {
  operations ??= buildOperations(API_PREFIX);
  return { ...operations, ...Object.assign({}, ...domains.map((d) => (d.operations?.(API_PREFIX) ?? {}) as Record<string, Operation>)) };
}

function buildOperations(P: string): Record<string, Operation> {
  const { $schema: _, ...firewallEvent } = z.toJSONSchema(firewallEventSchema, { io: 'output' }) as JsonSchema;
  return {
  [`GET ${P}/status`]: { operationId: 'getStatus', tag: 'status', ok: anyObject('committed, running and pending revisions, reconciliation, store health, drift'), errors: [401, 500] },
  [`GET ${P}/config`]: { operationId: 'getConfig', tag: 'config', ok: {
      type: 'object',
      required: ['revision', 'config', 'pending'],
      properties: {
        revision: { type: ['integer', 'null'] },
        config: { anyOf: [{ $ref: DOCUMENT_REF }, { type: 'null' }], description: 'the committed document as it was given (secrets redacted); null while the first revision awaits confirmation' },
        pending: {
          type: ['object', 'null'],
          required: ['revision', 'deadline', 'config'],
          properties: { revision: { type: 'integer' }, deadline: { type: 'string', format: 'date-time' }, config: { $ref: DOCUMENT_REF, description: 'the document awaiting confirmation (secrets redacted)' } },
          description: 'the revision awaiting confirmation, if any',
        },
      },
    }, errors: [401, 404, 500] },
  [`POST ${P}/config/validate`]: { operationId: 'validateConfig', tag: 'config', ok: { type: 'object', required: ['valid'], properties: { valid: { type: 'boolean', const: true } } }, errors: BODY_ERRORS },
  [`POST ${P}/config/plan`]: { operationId: 'planConfig', tag: 'config', ok: plan, errors: BODY_ERRORS },
  [`POST ${P}/config/apply`]: {
    operationId: 'applyConfig',
    tag: 'config',
    ok: {
      description: 'the apply report; with Accept: application/x-ndjson a stream of lines instead: {"progress": ...} per step, {"heartbeat": time} every 10 s, last {"report": ...} or {"error": <error body>}',
      content: {
        'application/json': { schema: applyReport },
        'application/x-ndjson': { schema: { type: 'string', description: 'newline-delimited JSON: progress, heartbeat, then report or error' } },
      },
    },
    errors: BODY_ERRORS,
  },
  [`POST ${P}/config/confirm`]: { operationId: 'confirmConfig', tag: 'config', ok: { type: 'object', required: ['id', 'state'], properties: revisionProps }, errors: [401, 409, 500] },
  [`POST ${P}/config/rollback`]: {
    operationId: 'rollbackConfig',
    tag: 'config',
    ok: {
      description: 'the apply report of the revision gone back to; with Accept: application/x-ndjson streamed as for apply',
      content: {
        'application/json': { schema: applyReport },
        'application/x-ndjson': { schema: { type: 'string', description: 'newline-delimited JSON: progress, heartbeat, then report or error' } },
      },
    },
    errors: BODY_ERRORS,
  },
  [`GET ${P}/revisions`]: { operationId: 'listRevisions', tag: 'revisions', ok: { type: 'array', items: { type: 'object', required: ['id', 'state'], properties: { ...revisionProps, failedStep: { type: ['string', 'null'] } } } }, errors: [400, 401, 500] },
  [`GET ${P}/revisions/:id`]: { operationId: 'getRevision', tag: 'revisions', ok: revision, errors: [400, 401, 404, 500] },
  [`GET ${P}/rules`]: { operationId: 'listRules', tag: 'counters', ok: rules, errors: [401, 500] },
  [`GET ${P}/services`]: { operationId: 'listServices', tag: 'status', ok: { type: 'array', items: { type: 'object', required: ['subsystem'], properties: { subsystem: { type: 'string' }, status: { type: ['object', 'array'], description: 'what runs: each subsystem reports its own shape (an object, or a list such as interfaces)' }, error: { type: 'string' } } } }, errors: [401, 500] },
  [`GET ${P}/ha/sync`]: { operationId: 'getHaSync', tag: 'ha', ok: anyObject('the last comparison with the peer'), errors: [401, 404, 500] },
  [`POST ${P}/ha/sync`]: { operationId: 'syncHa', tag: 'ha', ok: anyObject('the comparison and any push'), errors: [401, 409, 500] },
  [`GET ${P}/stream/dashboard`]: {
    operationId: 'streamDashboard',
    tag: 'counters',
    ok: {
      description: 'with Accept: text/event-stream, server-sent events: `frame` events whose data is one DashboardFrame as JSON, `failure` when a read failed; otherwise one DashboardFrame',
      content: { 'application/json': { schema: { $ref: '#/components/schemas/DashboardFrame' } }, 'text/event-stream': { schema: { type: 'string', description: 'event: frame / data: #/components/schemas/DashboardFrame' } } },
    },
    errors: [401, 403, 500],
  },
  [`POST ${P}/session`]: { operationId: 'signIn', tag: 'auth', ok: signIn, errors: [400, 401, 403, 415, 429, 500] },
  [`DELETE ${P}/session`]: { operationId: 'signOut', tag: 'auth', ok: { type: 'object', required: ['signedOut'], properties: { signedOut: { type: 'string', description: 'the id of the session that ended' } } }, errors: [400, 401, 500] },
  [`GET ${P}/whoami`]: { operationId: 'whoami', tag: 'auth', ok: whoami, errors: [401, 500] },
  [`GET ${P}/session`]: { operationId: 'getSession', tag: 'auth', ok: whoami, errors: [401, 500] },
  [`GET ${P}/sessions`]: { operationId: 'listSessions', tag: 'auth', ok: { type: 'array', items: session }, errors: [401, 500] },
  [`DELETE ${P}/sessions/:id`]: { operationId: 'revokeSession', tag: 'auth', ok: { type: 'object', required: ['revoked'], properties: { revoked: { type: 'string' } } }, errors: [400, 401, 404, 500] },
  [`GET ${P}/events`]: {
    operationId: 'listEvents',
    tag: 'events',
    ok: {
      description: 'recent events (JSON), or with follow=1 a server-sent event stream: `id: N` and `data: <event JSON>` per event, `: heartbeat` comments, `event: dropped` with {dropped} after events this client was too slow to take',
      content: {
        'application/json': { schema: { type: 'object', required: ['events', 'lastId'], properties: { events: { type: 'array', items: firewallEvent }, lastId: { type: 'integer' } } } },
        'text/event-stream': { schema: { type: 'string' } },
      },
    },
    errors: [400, 401, 500],
  },
  };
}

/** Operations only a node that joined a fleet serves (serve --fleet, src/fleet/routes.ts): not in documentedOperations(). */
let fleetOps: Record<string, Operation> | undefined;
export function fleetOperations(): Record<string, Operation> {
  const P = API_PREFIX;
  fleetOps ??= {
    [`GET ${P}/fleet/status`]: { operationId: 'getFleetStatus', tag: 'fleet', ok: anyObject('groups: members, online, converged, running rollout, base'), errors: [401, 403, 500] },
    [`GET ${P}/fleet/nodes`]: { operationId: 'listFleetNodes', tag: 'fleet', ok: { type: 'array', items: anyObject('a member: registration (online), last status, desired rollout') }, errors: [400, 401, 403, 500] },
    [`GET ${P}/fleet/rollouts`]: { operationId: 'listFleetRollouts', tag: 'fleet', ok: { type: 'array', items: anyObject('a rollout record') }, errors: [400, 401, 403, 500] },
    [`GET ${P}/fleet/rollouts/:id`]: { operationId: 'getFleetRollout', tag: 'fleet', ok: anyObject('waves, per-node results, history'), errors: [400, 401, 403, 404, 500] },
    [`POST ${P}/fleet/validate`]: { operationId: 'validateFleetDocument', tag: 'fleet', ok: anyObject('valid for every member'), errors: [400, 401, 403, 500] },
    [`POST ${P}/fleet/rollouts`]: { operationId: 'startFleetRollout', tag: 'fleet', ok: anyObject('the rollout record (202: it runs on)'), errors: [400, 401, 403, 409, 500] },
    [`POST ${P}/fleet/rollouts/:id/abort`]: { operationId: 'abortFleetRollout', tag: 'fleet', ok: anyObject('the halted rollout'), errors: [401, 403, 404, 409, 500] },
    [`GET ${P}/fleet/commits`]: { operationId: 'listFleetCommits', tag: 'fleet', ok: { type: 'array', items: anyObject('a commit the GitOps watcher examined: state, detail, rollout') }, errors: [400, 401, 403, 500] },
    [`POST ${P}/fleet/commits/:commit/approve`]: { operationId: 'approveFleetCommit', tag: 'fleet', ok: anyObject('the approval (commit, by, note, at)'), errors: [400, 401, 403, 404, 409, 500] },
  };
  return fleetOps;
}

type TransformArgs = Parameters<typeof jsonSchemaTransform>[0];

/** The swagger transform of a server running these domains (see openapiTransform). */
export function openapiTransformFor(domains: readonly Domain<any, any>[]): (args: TransformArgs) => { schema: FastifySchema; url: string } {
  let ops: Record<string, Operation> | undefined;
  return (args) => openapiTransform(args, (ops ??= { ...documentedOperations(domains), ...fleetOperations() }));
}

/** jsonSchemaTransform (zod -> JSON Schema), then the operation's id, tag and responses. */
function openapiTransform(args: TransformArgs, operations: Record<string, Operation>): { schema: FastifySchema; url: string } {
  const out = jsonSchemaTransform(args);
  const methods = [args.route.method].flat().filter((m) => m !== 'HEAD');
  const op = operations[`${methods[0]} ${args.url}`];
  if (!op) return out;
  const response: Record<string, unknown> = {
    200: 'content' in op.ok ? op.ok : { description: 'OK', ...op.ok },
  };
  // the role each route declares (src/api/auth/roles.ts); below it: 403
  const role = (args.route.config as { role?: string } | undefined)?.role ?? 'admin';
  const errors = role === 'public' ? op.errors : [...new Set([...op.errors, 403])].sort((a, b) => a - b);
  for (const code of errors) response[code] = { description: ERROR_TEXT[code], ...ERROR_SCHEMA };
  return {
    ...out,
    schema: { ...out.schema, ...typedConfigBody(out.schema), operationId: op.operationId, tags: [op.tag], response, 'x-patronus-role': role, ...(role === 'public' ? { security: [] } : {}) } as FastifySchema,
  };
}

/** The component every config body refers to: the configuration document (docs/configuration.md), as its input. */
const documentJson = new WeakMap<z.ZodType, JsonSchema>();
export function documentComponent(documentSchema: z.ZodType): JsonSchema {
  let json = documentJson.get(documentSchema);
  if (!json) {
    const { $schema: _, ...schema } = z.toJSONSchema(documentSchema, { io: 'input', unrepresentable: 'any', reused: 'inline' }) as JsonSchema;
    json = schema;
    documentJson.set(documentSchema, json);
  }
  return json;
}

/**
 * A body with `config`: the object variant is the document schema (the text
 * variant stays a string), as application/json; and the raw document as
 * application/yaml (server.ts's content parser: `curl --data-binary
 * @patronus.yaml -H 'content-type: application/yaml'`), whose other fields
 * come as query parameters instead.
 */
function typedConfigBody(schema: FastifySchema): { body?: unknown; querystring?: unknown } {
  const body = schema.body as { properties?: Record<string, { anyOf?: JsonSchema[]; oneOf?: JsonSchema[] } & JsonSchema> } | undefined;
  const config = body?.properties?.config;
  const variants = config?.anyOf ?? config?.oneOf;
  if (!body || !config || !variants) return {};
  const typed = variants.map((v) => (v.type === 'object' ? { $ref: DOCUMENT_REF, description: v.description } : v));
  const json = { ...body, properties: { ...body.properties, config: { ...config, ...(config.anyOf ? { anyOf: typed } : { oneOf: typed }) } } };
  // the fields the YAML form takes from the query string (server.ts: message, confirmWithin, allowEmpty)
  const query: Record<string, JsonSchema> = {};
  for (const key of YAML_QUERY_FIELDS) {
    const field = body.properties![key];
    if (!field) continue;
    const { default: _, ...rest } = field as JsonSchema & { default?: unknown };
    query[key] = { ...rest, ...(rest.type === 'boolean' ? { type: 'string', enum: ['true', 'false'] } : {}), description: `with a YAML body: ${String(rest.description ?? key)}` };
  }
  return {
    body: {
      content: {
        'application/json': { schema: json },
        'application/yaml': { schema: { type: 'string', description: 'the document as YAML text (also accepted as application/x-yaml and text/yaml); the other fields as query parameters' } },
      },
    },
    ...(Object.keys(query).length ? { querystring: { type: 'object', properties: query } } : {}),
  };
}
const YAML_QUERY_FIELDS = ['message', 'confirmWithin', 'allowEmpty'];

export const OPENAPI_TAGS = [
  { name: 'config', description: 'validate, plan, apply, confirm, roll back' },
  { name: 'revisions', description: 'the history of applied documents' },
  { name: 'status', description: 'what runs, drift, subsystems' },
  { name: 'counters', description: 'live rule, verdict and interface counters' },
  { name: 'services', description: 'gateway services' },
  { name: 'vpn', description: 'VPN client exports' },
  { name: 'ids', description: 'intrusion detection' },
  { name: 'ha', description: 'high availability' },
  { name: 'fleet', description: 'fleet on etcd (only on a node started with serve --fleet)' },
  { name: 'auth', description: 'console sign-in, sessions, who am I' },
  { name: 'events', description: 'the live firewall log: fast-path drops and nftables log events' },
];
