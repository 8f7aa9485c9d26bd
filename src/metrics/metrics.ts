/**
 * The Prometheus registry. Counters that live in the kernel (per-CPU BPF
 * maps, nft counters, interface statistics) are read at scrape time through
 * each subsystem's metrics() hook — never cached between scrapes (the
 * per-rule families keep only their series' label text between scrapes:
 * src/metrics/text-family.ts) — and exposed under one naming scheme:
 *
 *   patronus_rule_packets_total / _bytes_total        {subsystem, rule, action}
 *   patronus_rule_rate_limited_packets_total          {subsystem, rule}  (rate-limit rules: packets over the limit, dropped)
 *   patronus_verdict_packets_total / _bytes_total     {subsystem, direction, verdict}
 *   patronus_map_entries / patronus_map_capacity_entries {subsystem, map}
 *   patronus_log_events_total / _suppressed_total / _lost_total, patronus_log_rate_events_per_second {subsystem, rule}
 *     (fast-path drop events: emitted, held back by the per-rule limiter, lost on a full ring; the limiter's rate)
 *   patronus_events_published_total {source}, patronus_events_dropped_total {source, stage}, patronus_events_followers
 *   patronus_service_up                               {service}  (configured services only)
 *   patronus_drift {subsystem} (objects not as the running revision says), patronus_drift_repairs_total {subsystem, result}
 *   patronus_ids_alerts_total {subsystem, signature_id, signature, severity}, patronus_ids_blocks_total
 *   patronus_interface_{receive,transmit}_{packets,bytes}_total, patronus_interface_up {interface}
 *   patronus_bgp_peer_{established,prefixes_received,prefixes_sent} {peer, afi}, patronus_ospf_neighbor_full {router_id, interface}
 *   patronus_routes {family, protocol, table}, patronus_vrrp_state {instance}, patronus_vrrp_transitions_total {instance, to}
 *   patronus_dns_queries_total {type}, patronus_dns_answers_total {rcode},
 *   patronus_dns_cache_{hits,misses}_total, patronus_dns_blocklist_domains {list}
 *   patronus_dhcp_leases {subnet, state}
 *   patronus_vpn_tunnel_up, patronus_vpn_{receive,transmit}_bytes_total, patronus_vpn_latest_handshake_seconds {service, tunnel, peer}
 *   patronus_apply_duration_seconds (histogram), patronus_applies_total {result}
 *   patronus_revision_committed, patronus_revision_pending_confirmation, patronus_reconcile_ok
 *   patronus_scrape_subsystem_ok {subsystem}, patronus_build_info {version, revision}
 *   process_*, nodejs_* (prom-client defaults, unprefixed: the names every process dashboard expects)
 *
 * The series below that belong to one domain (interfaces, IDS, BGP/OSPF/routes, VRRP,
 * DNS, DHCP, VPN) are declared in that domain's folder (Domain.metrics,
 * src/<domain>/domain.ts, through src/metrics/series.ts); this file
 * declares the shared ones and adds each domain's of engine.domains.
 *
 * `promtool check metrics` holds for all of it (test/integration/serve_process.test.ts).
 */
import { Counter, Gauge, Histogram, collectDefaultMetrics, type Registry } from 'prom-client';
import type { Engine } from '../apply/engine.js';
import type { SubsystemMetrics } from '../apply/subsystem.js';
import type { DriftMonitor } from '../drift/monitor.js';
import { buildInfo } from './build-info.js';
import { seriesOn, type Reading } from './series.js';
import { TextFamily, TextRegistry, type Emit } from './text-family.js';

export interface Metrics {
  registry: Registry;
  /** reads every subsystem's live counters once (shared by all collectors of one scrape) */
  snapshot(): Promise<Snapshot>;
}

export interface Snapshot {
  bySubsystem: { subsystem: string; metrics?: SubsystemMetrics; error?: string }[];
}

/**
 * drift: the server's drift monitor; with it, patronus_drift is exported and
 * patronus_service_up only lists services the running revision configures.
 */
export function createMetrics(engine: Engine, opts: { processMetrics?: boolean; drift?: DriftMonitor } = {}): Metrics {
  const registry = new TextRegistry();
  if (opts.processMetrics !== false) {
    collectDefaultMetrics({ register: registry });
    // prom-client's sums of nodejs_active_{handles,requests,resources} are gauges named *_total,
    // which promtool rejects (only counters end in _total); the per-type gauges stay
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);
  }
  // the info-metric convention: constant 1, what runs is in the labels
  const build = buildInfo();
  new Gauge({ name: 'patronus_build_info', help: 'Version of the running Patronus (constant 1)', labelNames: ['version', 'revision'], registers: [registry] }).set({ version: build.version, revision: build.revision }, 1);

  // one read of the kernel per scrape: every collector of a scrape asks synchronously within
  // registry.metrics(), so they all get the same promise; scrapes (or /api/v1/rules reads) that
  // arrive while a read is in flight share it (single flight). Once it settles the next caller
  // reads again: a finished snapshot is never handed out (back-to-back scrapes in one tick
  // sequence used to get the first snapshot for ever, as the reset waited for setImmediate).
  let inflight: Promise<Snapshot> | undefined;
  const snapshot = (): Promise<Snapshot> => {
    if (inflight) return inflight;
    const p = readSnapshot(engine, opts.drift).finally(() => {
      if (inflight === p) inflight = undefined;
    });
    inflight = p;
    return p;
  };

  // every series is filled from one snapshot taken at scrape time; a domain's own series
  // (Domain.metrics) from its own subsystems' readings in it
  const readings = async (names: ReadonlySet<string> | undefined): Promise<Reading[]> => {
    const out: Reading[] = [];
    for (const x of (await snapshot()).bySubsystem) if (x.metrics && (!names || names.has(x.subsystem))) out.push({ subsystem: x.subsystem, m: x.metrics });
    return out;
  };
  const series = seriesOn(registry, readings);
  const { counter, gauge } = series();

  // one series per rule (10^4 at 10k nft rules): written as text with each series' labels kept between scrapes
  const ruleFamily = (name: string, help: string, labelNames: string[], fill: (emit: Emit, s: readonly Reading[]) => void) =>
    registry.registerFamily(new TextFamily(name, help, 'counter', labelNames, async (emit) => fill(emit, await readings(undefined))));
  ruleFamily('patronus_rule_packets_total', 'Packets that matched a rule', ['subsystem', 'rule', 'action'], (emit, s) => {
    for (const { subsystem, m } of s) for (const r of m.rules ?? []) emit([subsystem, r.rule, r.action ?? ''], r.packets);
  });
  ruleFamily('patronus_rule_bytes_total', 'Bytes of packets that matched a rule', ['subsystem', 'rule', 'action'], (emit, s) => {
    for (const { subsystem, m } of s) for (const r of m.rules ?? []) emit([subsystem, r.rule, r.action ?? ''], r.bytes);
  });
  ruleFamily('patronus_rule_rate_limited_packets_total', 'Packets a rate-limit rule dropped for being over its limit', ['subsystem', 'rule'], (emit, s) => {
    for (const { subsystem, m } of s) for (const r of m.rules ?? []) if (r.limited !== undefined) emit([subsystem, r.rule], r.limited);
  });
  counter('patronus_verdict_packets_total', 'Packets by final verdict', ['subsystem', 'direction', 'verdict'], (c, s) => {
    for (const { subsystem, m } of s) for (const v of m.verdicts ?? []) c.inc({ subsystem, direction: v.direction ?? 'ingress', verdict: v.verdict }, Number(v.packets));
  });
  counter('patronus_verdict_bytes_total', 'Bytes by final verdict', ['subsystem', 'direction', 'verdict'], (c, s) => {
    for (const { subsystem, m } of s) for (const v of m.verdicts ?? []) c.inc({ subsystem, direction: v.direction ?? 'ingress', verdict: v.verdict }, Number(v.bytes));
  });
  counter('patronus_log_events_total', 'Drop events a rule emitted to the fast-path event ring', ['subsystem', 'rule'], (c, s) => {
    for (const { subsystem, m } of s) for (const x of m.logEvents ?? []) c.inc({ subsystem, rule: x.rule }, Number(x.emitted));
  });
  counter('patronus_log_events_suppressed_total', 'Drops of a logging rule the per-rule event limiter did not report (the sample rate at work)', ['subsystem', 'rule'], (c, s) => {
    for (const { subsystem, m } of s) for (const x of m.logEvents ?? []) c.inc({ subsystem, rule: x.rule }, Number(x.suppressed));
  });
  counter('patronus_log_events_lost_total', 'Drop events that found the event ring full (the reader fell behind)', ['subsystem', 'rule'], (c, s) => {
    for (const { subsystem, m } of s) for (const x of m.logEvents ?? []) c.inc({ subsystem, rule: x.rule }, Number(x.lost));
  });
  gauge('patronus_log_rate_events_per_second', 'Configured limit of drop events per second per rule', ['subsystem', 'rule'], (g, s) => {
    for (const { subsystem, m } of s) for (const x of m.logEvents ?? []) g.set({ subsystem, rule: x.rule }, x.rate);
  });
  gauge('patronus_map_entries', 'Entries in a BPF map or nft set', ['subsystem', 'map'], (g, s) => {
    for (const { subsystem, m } of s) for (const x of m.maps ?? []) g.set({ subsystem, map: x.map }, x.entries);
  });
  gauge('patronus_map_capacity_entries', 'Capacity of a BPF map or nft set', ['subsystem', 'map'], (g, s) => {
    for (const { subsystem, m } of s) for (const x of m.maps ?? []) g.set({ subsystem, map: x.map }, x.capacity);
  });
  gauge('patronus_service_up', 'Whether a managed service is running (1) or not (0)', ['service'], (g, s) => {
    for (const { m } of s) for (const x of m.services ?? []) g.set({ service: x.service }, x.up ? 1 : 0);
  });
  // the domains' own series (interfaces, BGP, VRRP, DNS, DHCP, VPN, IDS, ...)
  for (const d of engine.domains) d.metrics?.(series(new Set((d.subsystems ?? []).map((x) => x.subsystem.name))));
  new Gauge({
    name: 'patronus_scrape_subsystem_ok',
    help: 'Whether reading a subsystem\'s counters succeeded in this scrape',
    labelNames: ['subsystem'],
    registers: [registry],
    async collect() {
      const s = await snapshot();
      this.reset();
      for (const x of s.bySubsystem) this.set({ subsystem: x.subsystem }, x.error ? 0 : 1);
    },
  });

  if (opts.drift) registerDriftMetrics(registry, opts.drift);

  const duration = new Histogram({
    name: 'patronus_apply_duration_seconds',
    help: 'Time to apply a revision (including rollback when it failed)',
    labelNames: ['result'],
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });
  const applies = new Counter({ name: 'patronus_applies_total', help: 'Applies by result (committed, confirming, failed, rolled_back)', labelNames: ['result'], registers: [registry] });
  engine.on('applied', (r) => {
    duration.observe({ result: r.state }, r.durationMs / 1000);
    applies.inc({ result: r.state });
  });
  new Gauge({
    name: 'patronus_revision_committed',
    help: 'Id of the last committed revision (0: none)',
    registers: [registry],
    collect() {
      // the id only: current() reads and parses the whole document (~90 ms per scrape at 10k rules)
      this.set(engine.store.head().committed ?? 0);
    },
  });
  new Gauge({
    name: 'patronus_revision_pending_confirmation',
    help: '1 while a revision awaits confirmation',
    registers: [registry],
    collect() {
      this.set(engine.store.head().confirming !== undefined ? 1 : 0);
    },
  });
  new Gauge({
    name: 'patronus_reconcile_ok',
    help: 'Whether the start-up reconciliation converged the system to the committed revision',
    registers: [registry],
    collect() {
      const r = engine.status().reconcile;
      this.set(r ? (r.ok ? 1 : 0) : 1);
    },
  });

  return { registry, snapshot };
}

/** patronus_drift and patronus_drift_repairs_total from a drift monitor (once per registry). */
export function registerDriftMetrics(registry: Registry, drift: DriftMonitor): void {
  if (registry.getSingleMetric('patronus_drift')) return;
  new Gauge({
    name: 'patronus_drift',
    help: 'Objects of a subsystem that are not as the running revision says (0: none); any > 0 makes /healthz 503',
    labelNames: ['subsystem'],
    registers: [registry],
    async collect() {
      // the periodic loop's report while it is younger than the loop's interval: a scrape does not list the
      // whole nft table and routes once more for it (that was half of a scrape's time at 10k rules)
      const r = await drift.check({ maxAgeMs: Math.max(1000, drift.interval) });
      this.reset();
      for (const name of r.checked) this.set({ subsystem: name }, 0);
      for (const i of r.items) this.inc({ subsystem: i.subsystem });
    },
  });
  const repairs = new Counter({ name: 'patronus_drift_repairs_total', help: 'Drift repairs by subsystem and result (ok, failed)', labelNames: ['subsystem', 'result'], registers: [registry] });
  drift.on('report', (r) => {
    for (const x of r.repairs) repairs.inc({ subsystem: x.subsystem, result: x.ok ? 'ok' : 'failed' });
  });
}

async function readSnapshot(engine: Engine, drift: DriftMonitor | undefined): Promise<Snapshot> {
  // a service the running revision does not configure has no patronus_service_up series (no false 0s)
  const compiled = drift?.committed().compiled;
  const bySubsystem = await Promise.all(
    engine.subsystems
      .filter((s) => s.metrics)
      .map(async (s) => {
        try {
          const metrics = await s.metrics!(engine.host);
          if (compiled && s.configured && metrics.services && !s.configured(compiled.desired.of(s))) delete metrics.services;
          return { subsystem: s.name, metrics };
        } catch (e) {
          return { subsystem: s.name, error: (e as Error).message };
        }
      }),
  );
  return { bySubsystem };
}
