/**
 * /openapi.json of a real server: every operation has an operationId, a tag
 * and a response for each status it answers (the error shape for 4xx/5xx),
 * exports declare their media types; and what the server answers has the
 * documented required fields.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { buildServer } from '../../src/api/server.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { documentedOperations } from '../../src/api/openapi.js';
import { documentJsonSchemaText } from '../../src/config/json-schema.js';
import { missing } from '../lib/skip.js';
import { controlLab, type ControlLab } from '../lib/control.js';
import { documentSchema, domains } from '../../src/domains.js';

type Schema = { required?: string[]; properties?: Record<string, unknown> };
type Response = { description?: string; content?: Record<string, { schema: Schema }> };
type Op = { operationId?: string; tags?: string[]; responses: Record<string, Response>; requestBody?: unknown };

describe('OpenAPI document', { timeout: 300_000, skip: missing('netns') }, () => {
  let L: ControlLab;
  let store: Store;
  let engine: Engine;
  let app: FastifyInstance;
  let token: string;
  let doc: { openapi: string; servers?: unknown[]; tags?: { name: string }[]; paths: Record<string, Record<string, Op>> };
  const call = (method: 'GET' | 'POST', url: string, payload?: unknown) => app.inject({ method, url, headers: { authorization: `Bearer ${token}` }, ...(payload !== undefined ? { payload: payload as object } : {}) });
  const op = (method: string, path: string) => doc.paths[path]?.[method.toLowerCase()];

  before(async () => {
    L = await controlLab();
    store = Store.open(join(L.stateDir, 'patronus.db'));
    engine = new Engine({ domains, host: L.host, store });
    await engine.reconcile({ document: { interfaces: [{ name: 'wan0', zone: 'wan' }], firewall: { enabled: false } } });
    token = store.addToken('openapi');
    app = await buildServer({ engine, store, metrics: createMetrics(engine, { processMetrics: false }) });
    doc = (await call('GET', '/openapi.json')).json();
  });
  after(async () => {
    await app?.close();
    engine?.close();
    store?.close();
    await L?.teardown();
  });

  it('GET /schema.json: the document\'s JSON Schema (docs/patronus.schema.json), without a token', async () => {
    const r = await app.inject({ method: 'GET', url: '/schema.json' });
    assert.equal(r.statusCode, 200, r.body);
    assert.match(String(r.headers['content-type']), /^application\/schema\+json/);
    assert.equal(r.body, documentJsonSchemaText(documentSchema));
    // served verbatim: the secret-redacting serializer must not touch its presharedKey properties
    assert.match(r.body, /"presharedKey"/);
  });

  it('a document sent as text: each issue has the line and column of its node', async () => {
    const text = 'interfaces:\n  - name: wan0\n    mtu: 1\n';
    const r = await call('POST', '/api/v1/config/validate', { config: text });
    assert.equal(r.statusCode, 400, r.body);
    assert.deepEqual(r.json().issues.map((i: { path: string; line?: number; column?: number }) => [i.path, i.line, i.column]), [['interfaces[0].mtu', 3, 10]]);
  });

  it('every operation: a unique operationId, a declared tag, 200 and error responses', () => {
    assert.ok(doc.openapi.startsWith('3.'));
    assert.ok(doc.servers?.length, 'servers');
    const tags = new Set(doc.tags?.map((t) => t.name));
    const ids = new Set<string>();
    let count = 0;
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const [method, o] of Object.entries(methods)) {
        count++;
        const where = `${method.toUpperCase()} ${path}`;
        assert.ok(o.operationId, `${where}: operationId (add it to src/api/openapi.ts)`);
        assert.ok(!ids.has(o.operationId), `${where}: operationId ${o.operationId} unique`);
        ids.add(o.operationId);
        assert.ok(o.tags?.length && o.tags.every((t) => tags.has(t)), `${where}: tag declared`);
        assert.ok(o.responses['200']?.content, `${where}: 200 with content`);
        for (const code of ['401', '500']) {
          const schema = o.responses[code]?.content?.['application/json']?.schema;
          assert.deepEqual(schema?.required, ['statusCode', 'error', 'message'], `${where}: ${code} has the error shape`);
        }
      }
    }
    assert.equal(count, Object.keys(documentedOperations(domains)).length, 'every documented operation is a route and vice versa');
  });

  it('request and response types: the config body, the apply report, exports by media type', () => {
    const apply = op('POST', '/api/v1/config/apply')!;
    // the config body: YAML/JSON text, or the document typed by its schema
    const body = (apply.requestBody as { content: Record<string, { schema: { properties: { config: { anyOf?: { $ref?: string; type?: string }[] } } } }> }).content['application/json']!.schema;
    const variants = body.properties.config.anyOf!;
    assert.deepEqual(variants.map((v) => v.$ref ?? v.type).sort(), ['#/components/schemas/PatronusDocument', 'string']);
    const document = (doc as unknown as { components: { schemas: Record<string, { properties: Record<string, unknown> }> } }).components.schemas.PatronusDocument!;
    for (const section of ['interfaces', 'firewall', 'fastpath', 'dns', 'routing']) assert.ok(document.properties[section], `document schema has ${section}`);
    for (const code of ['400', '409', '413', '415']) assert.ok(apply.responses[code], `apply ${code}`);
    // the raw YAML form: text body, the other fields as query parameters (validate and plan take only allowEmpty)
    for (const [path, query] of [['/api/v1/config/apply', ['allowEmpty', 'confirmWithin', 'message']], ['/api/v1/config/validate', ['allowEmpty']], ['/api/v1/config/plan', ['allowEmpty']]] as const) {
      const o = op('POST', path)!;
      const content = (o.requestBody as { content: Record<string, { schema: { type?: string } }> }).content;
      assert.deepEqual(Object.keys(content).sort(), ['application/json', 'application/yaml'], path);
      assert.equal(content['application/yaml']!.schema.type, 'string', path);
      const params = (o as { parameters?: { name: string; in: string }[] }).parameters ?? [];
      assert.deepEqual(params.filter((p) => p.in === 'query').map((p) => p.name).sort(), [...query], path);
    }
    assert.deepEqual(apply.responses['200']!.content!['application/json']!.schema.required, ['revision', 'state', 'durationMs', 'steps']);
    assert.ok(apply.responses['400']!.content!['application/json']!.schema.properties!.issues, 'issues documented');
    assert.ok(op('GET', '/api/v1/revisions/{id}')!.responses['404']);
    const wg = op('GET', '/api/v1/vpn/wireguard/{interface}/peers/{peer}/config')!;
    assert.deepEqual(Object.keys(wg.responses['200']!.content!).sort(), ['image/svg+xml', 'text/plain']);
    assert.ok(op('GET', '/api/v1/vpn/openvpn/{server}/clients/{client}/profile')!.responses['200']!.content!['application/x-openvpn-profile']);
  });

  it('real answers carry the documented required fields', async () => {
    const check = (method: string, path: string, code: number, body: Record<string, unknown>) => {
      const schema = op(method, path)!.responses[String(code)]!.content!['application/json']!.schema;
      for (const k of schema.required ?? []) assert.ok(k in body, `${method} ${path} ${code}: ${k} in ${JSON.stringify(body).slice(0, 300)}`);
    };
    const plan = await call('POST', '/api/v1/config/plan', { config: { interfaces: [{ name: 'wan0', zone: 'wan', addresses: ['10.90.0.1/24'] }], firewall: { enabled: false } } });
    assert.equal(plan.statusCode, 200, plan.body);
    check('POST', '/api/v1/config/plan', 200, plan.json());
    const bad = await call('POST', '/api/v1/config/validate', { config: { interfaces: [{ name: 'wan0', mtu: 1 }] } });
    assert.equal(bad.statusCode, 400);
    check('POST', '/api/v1/config/validate', 400, bad.json());
    // the documented YAML form as a client sends it: text body, fields in the query string
    const yaml = (url: string, body: string) => app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/yaml' }, payload: body });
    const yamlPlan = await yaml('/api/v1/config/plan', 'interfaces:\n  - name: wan0\n    zone: wan\nfirewall:\n  enabled: false\n');
    assert.equal(yamlPlan.statusCode, 200, yamlPlan.body);
    check('POST', '/api/v1/config/plan', 200, yamlPlan.json());
    const yamlBad = await yaml('/api/v1/config/validate?allowEmpty=false', 'interfaces:\n  - name: wan0\n    mtu: 1\n');
    assert.equal(yamlBad.statusCode, 400);
    check('POST', '/api/v1/config/validate', 400, yamlBad.json());
    assert.ok((yamlBad.json() as { issues: { line?: number }[] }).issues.some((i) => i.line === 3), yamlBad.body);
    const rules = await call('GET', '/api/v1/rules');
    check('GET', '/api/v1/rules', 200, rules.json());
    const missingRev = await call('GET', '/api/v1/revisions/999');
    assert.equal(missingRev.statusCode, 404);
    check('GET', '/api/v1/revisions/{id}', 404, missingRev.json());
    const noAuth = await app.inject({ method: 'GET', url: '/api/v1/status' });
    assert.equal(noAuth.statusCode, 401);
    check('GET', '/api/v1/status', 401, noAuth.json());
  });
});
