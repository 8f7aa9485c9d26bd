/**
 * The shape every part of Patronus that changes the system has (fast path,
 * nftables, routing, each daemon). The engine (src/apply/engine.ts) drives
 * them in one transaction:
 *
 *   validate every subsystem  ->  apply each in order  ->  commit
 *                                   | any step fails
 *                                   v
 *        re-apply the last committed revision to every subsystem already
 *        touched (reverse order), then report which step failed.
 *
 * A subsystem says what it would do as steps (`steps(desired, host)`:
 * `{changes, run}[]`, read against the running system): plan prints the
 * steps' changes, apply runs the same steps' `run` (terraform's model; QoS
 * did it first). So what plan prints is what apply runs. The steps must
 * converge the system to `desired` from whatever state it is in
 * (idempotent), which is also what makes start-up reconciliation and
 * rollback the same operation.
 */
import type { Host } from '../system/host.js';
import type { Issue } from '../config/issues.js';
import type { Config } from '../config/document.js';
import type { AliasTable } from '../aliases/aliases.js';

/** A port an enabled service listens on; the firewall opens exactly these. */
export interface ServiceOpening {
  service: string;
  proto: 'tcp' | 'udp' | 'esp' | 'vrrp' | 'ospf' | 'icmp';
  port?: number;
  /** interfaces it must be reachable on; empty = every managed interface */
  interfaces: string[];
}

export interface CompileContext {
  /** every opening all subsystems declared (see Subsystem.openings), for the nftables compiler */
  openings: ServiceOpening[];
  /** the validated document */
  config: Config;
  /** every alias resolved */
  aliases: AliasTable;
  /** reads files named by the config (alias tables, GeoIP databases) */
  readFile(path: string): string;
}

export interface Change {
  action: 'add' | 'remove' | 'change' | 'reload' | 'restart' | 'start' | 'stop';
  /** what it acts on, e.g. "map src_v4 entry 10.0.0.0/8", "table inet patronus", "unbound" */
  object: string;
  detail?: string;
}

/**
 * One unit of apply: the changes plan prints for it, and what apply runs. A
 * step that makes several changes in one transaction (`nft -f` of a whole
 * table, a fast-path generation flip) lists them all; most make one. A step
 * without changes is bookkeeping that touches nothing plan would print
 * (e.g. the in-process IDS ingester following its daemon).
 */
export interface Step {
  readonly changes: readonly Change[];
  run(): Promise<void>;
}

/** A step that makes one change. */
export function step(change: Change, run: () => Promise<void> | void): Step {
  return { changes: [change], run: async () => void (await run()) };
}

/** Plan: the changes of the steps, in order. */
export function changesOf(steps: readonly Step[]): Change[] {
  return steps.flatMap((s) => s.changes);
}

/** Apply: runs the steps in order; the first that throws stops the rest. */
export async function runSteps(steps: readonly Step[]): Promise<void> {
  for (const s of steps) await s.run();
}

/** What a subsystem module defines: everything but plan and apply, which come from steps. */
export type SubsystemDefinition<Desired, M extends SubsystemMetrics = SubsystemMetrics> = Omit<Subsystem<Desired, M>, 'plan' | 'apply'>;

/**
 * A Subsystem from its definition: plan() is the steps' changes and apply()
 * runs the steps, both computed by the one `steps` function.
 */
export function defineSubsystem<Desired, Extra extends object = {}, M extends SubsystemMetrics = SubsystemMetrics>(def: SubsystemDefinition<Desired, M> & Extra): Subsystem<Desired, M> & Extra {
  return {
    ...def,
    plan: async (desired, host) => changesOf(await def.steps(desired, host)),
    apply: async (desired, host) => runSteps(await def.steps(desired, host)),
  };
}

export interface Subsystem<Desired = unknown, M extends SubsystemMetrics = SubsystemMetrics> {
  /** short name: "fastpath", "nftables", "unbound", ... (also the metrics label) */
  readonly name: string;
  /**
   * Pure: the validated config -> this subsystem's desired state. Config
   * problems found here are returned as issues with document paths.
   */
  compile(ctx: CompileContext): { desired: Desired; issues: Issue[] };
  /**
   * Checks that need the machine but change nothing: kernel feature probes,
   * the daemon's own config checker on rendered files in a scratch dir.
   */
  validate?(desired: Desired, host: Host): Promise<Issue[]>;
  /**
   * The steps that converge the running system to `desired`, read against
   * it (no changes made): plan prints their changes, apply runs them. Empty
   * when the system already matches.
   */
  steps(desired: Desired, host: Host): Promise<Step[]>;
  /** changesOf(steps): what apply() would change (derived by defineSubsystem). */
  plan(desired: Desired, host: Host): Promise<Change[]>;
  /** runSteps(steps): converge the running system to `desired`. Idempotent. Throws on failure (derived by defineSubsystem). */
  apply(desired: Desired, host: Host): Promise<void>;
  /** Pure: the ports this subsystem's enabled services need open. */
  openings?(config: Config): ServiceOpening[];
  /** Stop and remove everything this subsystem made (used by teardown and tests). */
  teardown?(host: Host): Promise<void>;
  /** Operator-facing status (daemon up/down, attached programs, ...). */
  status?(host: Host): Promise<unknown>;
  /**
   * Live counters, read at call time (each Prometheus scrape, `patronus
   * rules`); never cached. The metrics module turns them into
   * patronus_rule_*, patronus_verdict_*, patronus_map_*, patronus_service_up...
   */
  metrics?(host: Host): Promise<M>;
  /**
   * Cheap reads of the running system against `desired` (the revision the
   * kernel should run): what differs, one item per object (an interface
   * without its XDP program, a hand-deleted nft rule, a dead daemon, a
   * missing address). Empty when the system is as desired. Called often (the
   * drift loop, every /healthz): no loads, no scratch namespaces per call;
   * cache what only depends on `desired`. Repair is apply(desired) again
   * (src/drift/monitor.ts), so items only need to say what is wrong.
   */
  drift?(desired: Desired, host: Host): Promise<DriftFinding[]>;
  /**
   * Pure: whether `desired` runs anything of this subsystem (a daemon, a
   * table). Services not configured report no patronus_service_up series.
   */
  configured?(desired: Desired): boolean;
  /**
   * How `desired` crosses from the compile worker to the main thread when a
   * structured clone of it would be slow (millions of small objects): pack
   * runs in the worker and names the buffers to transfer, unpack runs on the
   * main thread in slices (src/apply/check-worker.ts). Without it, desired is
   * cloned and its Uint8Arrays become Buffers again.
   */
  wire?: DesiredWire<Desired>;
}

export interface DesiredWire<Desired> {
  pack(desired: Desired): { value: unknown; transfer: ArrayBuffer[] };
  unpack(value: unknown): Promise<Desired>;
}

/** One object that is not as the running revision says. */
export interface DriftFinding {
  /** what, e.g. "xdp eth0", "table inet patronus chain input", "unbound", "address 10.0.0.1/24 on lan0" */
  object: string;
  /** what is wrong, for people: "not attached (ifindex 7)", "rule missing: ...", "not running" */
  reason: string;
  /** false when apply cannot fix it (e.g. the interface does not exist): reported, never retried */
  repairable?: boolean;
}

export interface PacketCounts {
  packets: number | bigint;
  bytes: number | bigint;
}

export interface SubsystemMetrics {
  /** per rule; `rule` is the rule's id as the config names it */
  rules?: ({ rule: string; action?: string; /** rate-limit rules: packets over the limit (dropped) */ limited?: number | bigint } & PacketCounts)[];
  /** per verdict (drop, pass, bypass, rate_limited, malformed, ...) */
  verdicts?: ({ verdict: string; direction?: 'ingress' | 'egress' } & PacketCounts)[];
  /** occupancy of each map (or set) against its capacity */
  maps?: { map: string; entries: number; capacity: number }[];
  services?: { service: string; up: boolean }[];
  /*
   * A domain's own series (interface counters, BGP peers, VRRP state, DNS statistics, DHCP leases, VPN tunnels, IDS
   * alerts, ...) are fields of its subsystem's metrics type (Subsystem<Desired, M>), declared and
   * turned into series in the domain's folder (Domain.metrics, src/metrics/series.ts).
   */
  /**
   * Fast-path drop events per logging rule (patronus_log_events_total, _suppressed_total, _lost_total,
   * patronus_log_rate_events_per_second): emitted to the ring, suppressed by the per-rule limiter, lost on a full ring
   */
  logEvents?: { rule: string; emitted: number | bigint; suppressed: number | bigint; lost: number | bigint; rate: number }[];
}

/**
 * What compile made for each subsystem, keyed by the subsystem itself: a
 * reader holding a typed Subsystem<D> gets a D back (`of(s)`), never an
 * unknown to cast, and only a Subsystem<D> can put a D in. (Stored by name
 * underneath: the engine and the check worker rebuild it from another
 * thread's subsystems of the same names.)
 */
export class DesiredStates {
  private readonly byName = new Map<string, unknown>();

  put<D>(s: Subsystem<D>, desired: D): this {
    this.byName.set(s.name, desired);
    return this;
  }

  of<D>(s: Subsystem<D>): D {
    if (!this.byName.has(s.name)) throw new Error(`nothing compiled for subsystem ${s.name}`);
    return this.byName.get(s.name) as D;
  }

  has(s: Pick<Subsystem, 'name'>): boolean {
    return this.byName.has(s.name);
  }
}
