/**
 * A domain (the firewall, the fast path, DNS, WireGuard, ...) is one folder
 * that exports one descriptor, `domain`, from its `domain.ts`: the section of
 * the document it owns with its schema and docs blurb, the subsystems that
 * apply it (each in an apply phase), the Prometheus series of its own and
 * its REST routes as a fastify plugin. The entry points (serve, the CLI, the
 * docs generators, tests) hand the one list of domains (src/domains.ts) to
 * the core, which builds from it the document schema
 * (src/config/document.ts), the apply order (subsystemsOf, below), /metrics
 * (src/metrics/metrics.ts) and the routes (src/api/server.ts). The core
 * never imports a domain: adding one is its folder plus its entry in the list.
 *
 * Each descriptor is declared with its type, `Domain<'key', typeof schema>`
 * (`Domain<never>` without a section): the document type is built from those
 * types, and routes that read the committed document (typed by it) would
 * otherwise make the descriptor's inferred type depend on itself.
 */
import type { z } from 'zod';
import type { FastifyInstance } from 'fastify';
import type { Subsystem } from './subsystem.js';
import type { Engine } from './engine.js';
import type { DomainSeries } from '../metrics/series.js';
import type { Metrics } from '../metrics/metrics.js';

/**
 * Apply phases, in order. Within a phase, subsystems run in the order of
 * the domain list (and of each domain's `subsystems`); rollback runs the
 * whole order backwards.
 */
export const PHASES = [
  /** bridges, VLANs, bonds: addresses, routes and zones name them */
  'links',
  /** interface addresses and static routes */
  'addresses',
  /** the data plane: filtering is in place before services listen and before forwarding goes on */
  'filter',
  /** kernel settings that turn forwarding on, once the firewall is in place */
  'forwarding',
  /** WAN addresses by DHCP and multi-WAN gateways, before anything that routes through them */
  'uplinks',
  /** ACME orders need the uplinks (and the challenge port open); services that serve TLS come after */
  'certificates',
  /** the routing daemon */
  'routing',
  /** every other daemon */
  'services',
] as const;
export type Phase = (typeof PHASES)[number];

/** A subsystem and the phase it applies in. */
export interface PhasedSubsystem {
  phase: Phase;
  subsystem: Subsystem;
}

/** The section of the document a domain owns. */
export interface Section<K extends string = string, S extends z.ZodType = z.ZodType> {
  /** its key in the document: "firewall", "dns", ... */
  key: K;
  /** its schema (defaults applied, path-qualified errors) */
  schema: S;
  /** one line for the configuration reference (docs/configuration.md) and the JSON schema */
  describe: string;
}

/** What a domain's REST routes get besides the fastify instance. */
export interface DomainRouteOptions {
  engine: Engine;
  /** the scrape snapshot (live counters of every subsystem, read once for all readers) */
  metrics: Metrics;
  /** "/api/v1" */
  prefix: string;
}

export interface Domain<K extends string = string, S extends z.ZodType = z.ZodType> {
  /** short name, for messages */
  readonly name: string;
  /** the module that exports this descriptor as `domain` (import.meta.url): lets a worker thread or the confirm guard load the same domains */
  readonly module: string;
  readonly section?: Section<K, S>;
  readonly subsystems?: readonly PhasedSubsystem[];
  /** series of its own on /metrics, filled from its subsystems' metrics() of each scrape (src/metrics/series.ts) */
  readonly metrics?: (series: DomainSeries) => void;
  /**
   * Its REST routes, registered under the API prefix. Each route declares
   * its role (`config: { role }`) and has an entry in `operations`
   * (operationId, tag, responses) for /openapi.json.
   */
  readonly routes?: (app: FastifyInstance, opts: DomainRouteOptions) => Promise<void> | void;
  /** OpenAPI details of its routes by "METHOD url" (src/api/openapi.ts Operation), built for a prefix */
  readonly operations?: (prefix: string) => Record<string, unknown>;
}

/** Every subsystem of the domains, in apply order (phase, then list order). */
export function subsystemsOf(domains: readonly Domain<any, any>[]): Subsystem[] {
  const out: Subsystem[] = [];
  for (const phase of PHASES) for (const d of domains) for (const s of d.subsystems ?? []) if (s.phase === phase) out.push(s.subsystem);
  return out;
}

/**
 * The domains exported by these modules (Domain.module), for a process or
 * thread that must rebuild an engine's domains (the check worker, the
 * confirm guard).
 */
export async function loadDomains(modules: readonly string[]): Promise<Domain[]> {
  return Promise.all(
    modules.map(async (m) => {
      const d = ((await import(m)) as { domain?: Domain }).domain;
      if (!d) throw new Error(`${m} exports no domain`);
      return d;
    }),
  );
}
