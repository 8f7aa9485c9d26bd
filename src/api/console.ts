/**
 * The web console on the API's own server (and so under TLS when the API is):
 *   - /console/*            the built single-page app (dist/console, made by scripts/setup.sh from
 *                           src/console), served without authentication: it holds no data, it signs in
 *                           through the API like any client;
 *   - /                     redirects to /console/;
 *   - GET /api/v1/stream/dashboard   server-sent events (Accept: text/event-stream; else one frame as
 *                           JSON): the live counters the dashboard shows
 *                           (interfaces, rules, verdicts, services, revision and pending confirmation, drift),
 *                           read from the kernel every `intervalMs` through the same snapshot /metrics and
 *                           /api/v1/rules use. One reader serves every subscriber.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Engine } from '../apply/engine.js';
import type { DriftMonitor } from '../drift/monitor.js';
import type { Metrics, Snapshot } from '../metrics/metrics.js';
import type { DnsMetrics } from '../services/unbound/subsystem.js';
import type { VpnMetrics } from '../services/common/vpn-metrics.js';
import type { HaMetrics } from '../services/keepalived/subsystem.js';
import type { FrrMetrics } from '../services/frr/subsystem.js';
import type { IdsMetrics } from '../services/ids/subsystem.js';
import type { InterfaceMetrics } from '../interfaces/subsystem.js';
import { jsonSafe } from './json.js';

/** dist/console next to this compiled file (dist/src/api/console.js). */
export const CONSOLE_DIR = fileURLToPath(new URL('../../console/', import.meta.url));
export const CONSOLE_PREFIX = '/console/';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};

export interface ConsoleOptions {
  engine: Engine;
  metrics: Metrics;
  drift: DriftMonitor;
  /** where the built app is (default: dist/console) */
  dir?: string;
  /** how often the dashboard stream reads the counters (default 500 ms: ≤ 1 s from kernel to screen) */
  intervalMs?: number;
}

/** One dashboard frame: raw counters (the browser turns deltas into rates) with the time they were read. */
export interface DashboardFrame {
  time: number;
  interfaces: { interface: string; rxPackets: number; rxBytes: number; txPackets: number; txBytes: number; up: boolean }[];
  rules: { subsystem: string; rule: string; action: string | null; packets: number; bytes: number; rateLimited?: number }[];
  verdicts: { subsystem: string; direction: string; verdict: string; packets: number; bytes: number }[];
  services: { service: string; up: boolean }[];
  errors: { subsystem: string; error: string }[];
  status: { committed: number | null; pending: { id: number; deadline: string | null } | null; applying: boolean };
  drift: { state: string; revision: number | null; checkedAt: string | null; items: { subsystem: string; object: string; reason: string }[] } | null;
  /**
   * gateway services, as the subsystems' metrics() report them (a fixed panel of the console: it reads
   * these domains' metric fields by name, types only; a domain the list lacks leaves its part empty)
   */
  gateway: {
    dns: NonNullable<DnsMetrics['dns']> | null;
    vpnTunnels: NonNullable<VpnMetrics['vpnTunnels']>;
    vrrp: NonNullable<HaMetrics['vrrp']>;
    bgpPeers: NonNullable<FrrMetrics['bgpPeers']>;
    ospfNeighbors: NonNullable<FrrMetrics['ospfNeighbors']>;
    idsBlocks: number | null;
  };
}

export function dashboardFrame(s: Snapshot, engine: Engine, drift: DriftMonitor): DashboardFrame {
  const f: DashboardFrame = { time: Date.now(), interfaces: [], rules: [], verdicts: [], services: [], errors: [], status: { committed: null, pending: null, applying: false }, drift: null, gateway: { dns: null, vpnTunnels: [], vrrp: [], bgpPeers: [], ospfNeighbors: [], idsBlocks: null } };
  for (const x of s.bySubsystem) {
    if (x.error) f.errors.push({ subsystem: x.subsystem, error: x.error });
    const m = x.metrics as (InterfaceMetrics & DnsMetrics & VpnMetrics & HaMetrics & FrrMetrics & IdsMetrics) | undefined;
    if (!m) continue;
    for (const i of m.interfaces ?? []) f.interfaces.push({ interface: i.interface, rxPackets: i.rxPackets, rxBytes: i.rxBytes, txPackets: i.txPackets, txBytes: i.txBytes, up: i.up });
    for (const r of m.rules ?? []) f.rules.push({ subsystem: x.subsystem, rule: r.rule, action: r.action ?? null, packets: Number(r.packets), bytes: Number(r.bytes), ...(r.limited !== undefined ? { rateLimited: Number(r.limited) } : {}) });
    for (const v of m.verdicts ?? []) f.verdicts.push({ subsystem: x.subsystem, direction: v.direction ?? 'ingress', verdict: v.verdict, packets: Number(v.packets), bytes: Number(v.bytes) });
    for (const v of m.services ?? []) f.services.push({ service: v.service, up: v.up });
    const g = f.gateway;
    if (m.dns) g.dns = m.dns;
    g.vpnTunnels.push(...(m.vpnTunnels ?? []));
    g.vrrp.push(...(m.vrrp ?? []));
    g.bgpPeers.push(...(m.bgpPeers ?? []));
    g.ospfNeighbors.push(...(m.ospfNeighbors ?? []));
    if (m.blocks !== undefined) g.idsBlocks = (g.idsBlocks ?? 0) + m.blocks;
  }
  const head = engine.store.head();
  const pending = head.confirming !== undefined ? engine.store.info(head.confirming) : undefined;
  f.status = { committed: head.committed ?? null, pending: pending ? { id: pending.id, deadline: pending.confirmDeadline ?? null } : null, applying: engine.health().applying };
  const d = drift.lastReport;
  if (d) f.drift = { state: d.state, revision: d.revision, checkedAt: d.checkedAt ?? null, items: d.items.map((i) => ({ subsystem: i.subsystem, object: i.object, reason: i.reason })) };
  return f;
}

export async function registerConsole(app: FastifyInstance, opts: ConsoleOptions): Promise<void> {
  const dir = opts.dir ?? CONSOLE_DIR;
  const intervalMs = opts.intervalMs ?? 500;

  // the app's files hold no data (public): it signs in through the API like any client
  app.get('/', { config: { role: 'public' }, schema: { hide: true } }, async (_req, reply) => reply.redirect(CONSOLE_PREFIX));
  app.get('/console', { config: { role: 'public' }, schema: { hide: true } }, async (_req, reply) => reply.redirect(CONSOLE_PREFIX));
  app.get(`${CONSOLE_PREFIX}*`, { config: { role: 'public' }, schema: { hide: true } }, async (req, reply) => serveFile(dir, req, reply));

  // one reader for every subscriber: N open dashboards cost one kernel read per interval
  const subscribers = new Set<(frame: string) => void>();
  let timer: NodeJS.Timeout | undefined;
  let reading = false;
  const tick = async () => {
    if (reading) return;
    reading = true;
    try {
      const frame = dashboardFrame(await opts.metrics.snapshot(), opts.engine, opts.drift);
      const text = `event: frame\ndata: ${JSON.stringify(jsonSafe(frame))}\n\n`;
      for (const send of subscribers) send(text);
    } catch (e) {
      const text = `event: failure\ndata: ${JSON.stringify({ message: (e as Error).message })}\n\n`;
      for (const send of subscribers) send(text);
    } finally {
      reading = false;
    }
  };
  const subscribe = (send: (frame: string) => void) => {
    subscribers.add(send);
    if (!timer) {
      timer = setInterval(() => void tick(), intervalMs);
      timer.unref();
    }
    void tick();
    return () => {
      subscribers.delete(send);
      if (!subscribers.size && timer) {
        clearInterval(timer);
        timer = undefined;
      }
    };
  };
  // open streams end before the server closes (else close() waits for every browser to go away)
  const streams = new Set<() => void>();
  app.addHook('preClose', async () => {
    for (const close of streams) close();
    if (timer) clearInterval(timer);
    timer = undefined;
  });
  // the drift report the frames carry: keep it fresh while someone watches (the monitor shares checks)
  let driftTimer: NodeJS.Timeout | undefined;

  app.get('/api/v1/stream/dashboard', { config: { role: 'viewer' }, schema: { summary: `Live counters for the console. With Accept: text/event-stream, server-sent events: a "frame" of live counters (interfaces, rules, verdicts, services), revision, pending confirmation and drift every ${intervalMs} ms; otherwise one frame as JSON` } }, async (req: FastifyRequest, reply: FastifyReply) => {
    // a client that does not ask for a stream (a script, curl) gets one frame as JSON
    if (!/\btext\/event-stream\b/.test(String(req.headers.accept ?? ''))) return jsonSafe(dashboardFrame(await opts.metrics.snapshot(), opts.engine, opts.drift));
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(`retry: 2000\n\n`);
    const unsubscribe = subscribe((text) => res.write(text));
    if (!driftTimer) {
      driftTimer = setInterval(() => {
        if (!subscribers.size) {
          clearInterval(driftTimer);
          driftTimer = undefined;
          return;
        }
        opts.drift.check({ maxAgeMs: 5000 }).catch(() => undefined);
      }, 2000);
      driftTimer.unref();
      opts.drift.check({ maxAgeMs: 5000 }).catch(() => undefined);
    }
    const close = () => {
      streams.delete(close);
      unsubscribe();
      if (!res.writableEnded) res.end();
    };
    streams.add(close);
    req.raw.once('close', close);
  });
}

function serveFile(dir: string, req: FastifyRequest, reply: FastifyReply) {
  const rel = decodeURIComponent(req.url.split('?')[0]!.slice(CONSOLE_PREFIX.length));
  let path = normalize(join(dir, rel));
  if (!path.startsWith(normalize(dir)) || rel.split('/').includes('..')) return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: 'no such file' });
  // the app routes on the client: any path without a file extension is the app's index
  if (!rel || !extname(rel) || !existsSync(path) || statSync(path).isDirectory()) {
    if (extname(rel) && rel !== '') return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `no console file ${rel}` });
    path = join(dir, 'index.html');
    if (!existsSync(path)) return reply.code(503).type('text/plain; charset=utf-8').send('the console is not built: run scripts/setup.sh (it builds src/console into dist/console)\n');
  }
  const immutable = path.includes(`${sep}assets${sep}`);
  reply.header('cache-control', immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
  reply.header('x-content-type-options', 'nosniff');
  if (path.endsWith('.html')) {
    reply.header('content-security-policy', "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'");
    reply.header('x-frame-options', 'DENY');
  }
  const type = TYPES[extname(path)] ?? 'application/octet-stream';
  // precompressed copies made by the build (name.gz) when the client takes gzip
  const gz = `${path}.gz`;
  if (/\bgzip\b/.test(String(req.headers['accept-encoding'] ?? '')) && existsSync(gz)) {
    reply.header('content-encoding', 'gzip').header('vary', 'accept-encoding');
    return reply.type(type).send(readFileSync(gz));
  }
  return reply.type(type).send(readFileSync(path));
}
