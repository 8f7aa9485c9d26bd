/**
 * The drift loop (docs/architecture.md, "drift"): compares the running system with
 * the revision it should run, reports every difference, and repairs what it
 * can by applying that revision again to the subsystems that drifted.
 *
 * Each subsystem says what it checks (Subsystem.drift: program ids on
 * interfaces, the nft table, daemon pids, addresses); this module
 * aggregates. It stays cheap because:
 *   - the revision is compiled once per revision id, found with an id-only
 *     query (Store.head), never by reading the document per call;
 *   - at most one check is in flight; callers share it, and a result younger
 *     than maxAgeMs (1 s for /healthz) is reused.
 * Only the periodic loop (start()) repairs; /healthz, status and scrapes
 * read, so a drift stays visible (503) until the loop has repaired it.
 *
 * The target is the revision awaiting confirmation when there is one (the
 * kernel runs it), else the last committed revision (else the empty
 * configuration). While this process applies, nothing is checked (the
 * kernel is between two revisions by design).
 *
 * While a request's validation, plan or apply is in progress before its
 * kernel phase (Engine.beginWork: the body's parse, the compile, the plan),
 * no check starts either: each check runs ip/nft children, and on a busy
 * 2-core machine every spawn holds the event loop 35-50 ms while the child
 * waits to exec (docs/bench-control.md). Readers get the last verified
 * result (state ok or drift, never `applying`) for the same target revision
 * instead; a verified drift stays a drift. Not when the target revision
 * changed (a new revision waits for its own check), when there is no
 * verified result, or when that result is older than maxDeferMs (30 s): then
 * a check runs as usual. The periodic loop skips its ticks meanwhile.
 *
 * Repairs (reconcile: auto) go through Engine.repair (the apply lock, and
 * only when the store's head is still the target), one subsystem at a time
 * in apply order. A subsystem that drifts again soon after a repair (a daemon
 * that keeps dying) waits 1 s, 2 s, 4 s ... up to maxBackoffSeconds between
 * repairs; the count resets once it stayed clean for STABLE_MS.
 */
import { EventEmitter } from 'node:events';
import type { CleanState, Compiled, Engine, StepResult } from '../apply/engine.js';
import type { DriftFinding, Subsystem } from '../apply/subsystem.js';
import type { Config } from '../config/document.js';
import type { DriftConfig } from './schema.js';

export interface DriftItem extends DriftFinding {
  subsystem: string;
}

export interface RepairRecord {
  subsystem: string;
  at: string;
  ok: boolean;
  /** the subsystem still drifted after the repair, or its apply failed */
  error?: string;
  /** repairs in a row without a stable spell in between */
  attempt: number;
  /** what had drifted ("object: reason") */
  found: string[];
}

export interface DriftReport {
  checkedAt: string;
  /** how long the check took (repairs included) */
  ms: number;
  /** the revision the system should run (null: none committed, i.e. the empty configuration) */
  revision: number | null;
  mode: DriftConfig['reconcile'];
  /** ok: matches (or nothing committed yet); drift: items below; applying: this process is applying (nothing checked); off: reconcile off */
  state: 'ok' | 'drift' | 'applying' | 'off';
  /** what differs now (after any repair of this check) */
  items: DriftItem[];
  /** repairs this check made */
  repairs: RepairRecord[];
  /** subsystems that have a drift check (patronus_drift has a series for each) */
  checked: string[];
  /** subsystems waiting for their next repair (backoff), ISO time */
  nextRepair: Record<string, string>;
}

export interface DriftMonitorOptions {
  /** default: the revision's drift.intervalSeconds */
  intervalMs?: number;
  /** override the revision's drift.reconcile (tests) */
  mode?: DriftConfig['reconcile'];
  /** first backoff step (default 1000 ms) */
  backoffBaseMs?: number;
  /** how old the last verified result may grow while checks are deferred for a request's work (default 30 s) */
  maxDeferMs?: number;
}

const MAX_DEFER_MS = 30_000;

const STABLE_MS = 30_000;

interface Backoff {
  attempts: number;
  lastRepair: number;
  nextAt: number;
}

export class DriftMonitor extends EventEmitter<{ report: [DriftReport]; error: [Error]; loop: [{ report: DriftReport; nextInMs: number }] }> {
  private cache: { revision: number | null; compiled?: Compiled; error?: string } | undefined;
  private last: DriftReport | undefined;
  private lastAt = 0;
  /** the last report that verified something (state ok, drift or off; not applying) */
  private verified: DriftReport | undefined;
  private verifiedAt = 0;
  private inflight: Promise<DriftReport> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly backoff = new Map<string, Backoff>();
  private stopped = false;

  constructor(
    readonly engine: Engine,
    private readonly opts: DriftMonitorOptions = {},
  ) {
    super();
  }

  /** Periodic checks until stop(); the interval follows the running revision's drift.intervalSeconds. */
  start(): this {
    this.stopped = false;
    const tick = () => {
      if (this.stopped) return;
      if (this.deferring) {
        // a request's work is in progress: no spawns now; the next tick checks (and repairs) as usual
        this.timer = setTimeout(tick, Math.min(this.intervalMs(), 1000));
        this.timer.unref();
        return;
      }
      let report: DriftReport | undefined;
      this.checkAndRepair()
        .then((r) => (report = r))
        .catch((e: Error) => this.emit('error', e))
        .finally(() => {
          if (this.stopped) return;
          const nextInMs = this.intervalMs();
          this.timer = setTimeout(tick, nextInMs);
          this.timer.unref();
          // a periodic check (not a reader's) ended and the next is scheduled: serve logs the first
          if (report) this.emit('loop', { report, nextInMs });
        });
    };
    this.timer = setTimeout(tick, Math.min(this.intervalMs(), 1000));
    this.timer.unref();
    return this;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Milliseconds between the periodic loop's checks (the revision's drift.intervalSeconds). */
  get interval(): number {
    return this.intervalMs();
  }

  /** Whether a check (or a check and repair) is running now. */
  get checking(): boolean {
    return this.inflight !== undefined;
  }

  /**
   * Whether checks are deferred now: a request's validation, plan or apply
   * is in progress before its kernel phase, and the last verified result is
   * for the current target revision and younger than maxDeferMs. check()
   * then answers that result without starting a check.
   */
  get deferring(): boolean {
    return this.deferredResult() !== undefined;
  }

  /** The last report (undefined before the first check). */
  get lastReport(): DriftReport | undefined {
    return this.last;
  }

  /**
   * A fresh report, or the last one when it is younger than maxAgeMs and the
   * target revision has not changed. Concurrent callers share one check.
   */
  async check(opts: { maxAgeMs?: number; lastWhileChecking?: boolean } = {}): Promise<DriftReport> {
    const maxAge = opts.maxAgeMs ?? 1000;
    if (this.last && Date.now() - this.lastAt < maxAge && this.last.state !== 'applying' && this.sameTarget(this.last.revision)) return this.last;
    // /healthz: while a check (the loop's, or another reader's) is already running, the last verified
    // result for the same target answers at once instead of waiting for that check's spawns; its
    // checkedAt says how old it is, and a verified drift stays a drift (503) until a check finds it gone
    if (opts.lastWhileChecking && this.inflight && this.last && this.last.state !== 'applying' && this.sameTarget(this.last.revision)) return this.last;
    // a request's work in progress (compile, plan): no check starts, the last verified result answers
    const deferred = this.deferredResult();
    if (deferred) return deferred;
    this.inflight ??= this.run(false).finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  /**
   * A fresh check that also repairs (reconcile: auto): what the periodic loop
   * runs. Readers (/healthz, status, scrapes) only check(): a GET never
   * changes the system, and a drift stays visible until the loop repairs it.
   */
  async checkAndRepair(): Promise<DriftReport> {
    while (this.inflight) await this.inflight.catch(() => undefined);
    this.inflight = this.run(true).finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  /**
   * The last report with the compiled revision it compared against (the
   * engine skips the subsystems an apply does not change and this found
   * clean: Engine.unchangedSubsystems).
   */
  cleanState(): CleanState | undefined {
    const r = this.last;
    const c = this.cache;
    if (!r || !c?.compiled || c.revision !== r.revision) return undefined;
    return { revision: r.revision, state: r.state, checkedAt: r.checkedAt, items: r.items, checked: r.checked, desired: c.compiled.desired };
  }

  /** The compiled target revision (cached by id), for other readers (metrics: which services are configured). */
  committed(): { revision: number | null; compiled?: Compiled; error?: string } {
    const revision = this.target();
    if (this.cache?.revision === revision) return this.cache;
    // the revision this process just applied: compiled already (a large document takes seconds)
    const applied = revision !== null ? this.engine.compiledFor(revision) : undefined;
    if (applied) return (this.cache = { revision, compiled: applied });
    let document: unknown = {};
    if (revision !== null) {
      const r = this.engine.store.get(revision);
      if (!r) return { revision, error: `revision ${revision} vanished from the store` };
      document = r.config;
    }
    const { compiled, issues } = this.engine.compileDocument(document);
    this.cache = compiled ? { revision, compiled } : { revision, error: `revision ${revision ?? '(empty)'} does not compile any more: ${issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}` };
    return this.cache;
  }

  // --- internals

  private deferredResult(): DriftReport | undefined {
    const v = this.verified;
    if (!v || !this.engine.workInProgress() || this.engine.applying) return undefined;
    if (Date.now() - this.verifiedAt > (this.opts.maxDeferMs ?? MAX_DEFER_MS)) return undefined;
    return this.sameTarget(v.revision) ? v : undefined;
  }

  private sameTarget(revision: number | null): boolean {
    try {
      return this.target() === revision;
    } catch {
      return false; // the store cannot tell: check again (the check reports why)
    }
  }

  private target(): number | null {
    const head = this.engine.store.head();
    return head.confirming ?? head.committed ?? null;
  }

  private config(): Config | undefined {
    return this.cache?.compiled?.validated.config;
  }

  private intervalMs(): number {
    return this.opts.intervalMs ?? (this.config()?.drift.intervalSeconds ?? 5) * 1000;
  }

  private async run(repair: boolean): Promise<DriftReport> {
    const t0 = performance.now();
    let report: DriftReport;
    try {
      report = await this.compare(repair);
    } catch (e) {
      // the store unreadable (I/O error, locked): unverified, so not ok, and never a 5xx from /healthz
      const mode = this.opts.mode ?? this.config()?.drift.reconcile ?? 'auto';
      report = { checkedAt: new Date().toISOString(), ms: 0, revision: this.cache?.revision ?? null, mode, state: 'drift', items: [{ subsystem: 'engine', object: 'drift check', reason: `cannot read the revision to compare with: ${(e as Error).message}`, repairable: false }], repairs: [], checked: [], nextRepair: {} };
    }
    report.ms = Math.round((performance.now() - t0) * 10) / 10;
    this.last = report;
    this.lastAt = Date.now();
    if (report.state !== 'applying') {
      this.verified = report;
      this.verifiedAt = this.lastAt;
    }
    this.emit('report', report);
    return report;
  }

  private async compare(repair: boolean): Promise<DriftReport> {
    const target = this.committed();
    const mode = this.opts.mode ?? this.config()?.drift.reconcile ?? 'auto';
    const base = { checkedAt: new Date().toISOString(), revision: target.revision, mode, repairs: [] as RepairRecord[], nextRepair: {} as Record<string, string> };
    const checkable = this.engine.subsystems.filter((s) => s.drift);
    const checked = checkable.map((s) => s.name);
    let report: DriftReport;
    if (this.engine.health().applying) {
      report = { ...base, ms: 0, state: 'applying', items: [], checked };
    } else if (target.revision === null) {
      // nothing committed: no revision makes a claim about the system yet
      report = { ...base, ms: 0, state: 'ok', items: [], checked };
    } else if (mode === 'off') {
      report = { ...base, ms: 0, state: 'off', items: [], checked };
    } else if (!target.compiled) {
      report = { ...base, ms: 0, state: 'drift', items: [{ subsystem: 'engine', object: `revision ${target.revision}`, reason: target.error ?? 'cannot compile', repairable: false }], checked };
    } else {
      const compiled = target.compiled;
      let items = await this.inspect(checkable, compiled);
      const repairs: RepairRecord[] = [];
      if (repair && mode === 'auto' && items.length) {
        const now = Date.now();
        const due = [...new Set(items.filter((i) => i.repairable !== false).map((i) => i.subsystem))].filter((name) => (this.backoff.get(name)?.nextAt ?? 0) <= now);
        if (due.length) {
          const steps = await this.engine.repair(target.revision, compiled, due).catch((e: Error): StepResult[] => due.map((subsystem) => ({ subsystem, ok: false, ms: 0, error: e.message })));
          if (steps) {
            const found = items;
            const again = await this.inspect(checkable.filter((s) => due.includes(s.name)), compiled);
            items = [...items.filter((i) => !due.includes(i.subsystem)), ...again];
            for (const step of steps) repairs.push(this.recordRepair(step, found.filter((i) => i.subsystem === step.subsystem), again.filter((i) => i.subsystem === step.subsystem)));
          }
        }
      }
      // a subsystem clean for long enough after its last repair starts its backoff over
      const drifting = new Set(items.map((i) => i.subsystem));
      for (const [name, b] of this.backoff) if (!drifting.has(name) && Date.now() - b.lastRepair > STABLE_MS) this.backoff.delete(name);
      const nextRepair: Record<string, string> = {};
      for (const name of drifting) {
        const b = this.backoff.get(name);
        if (b && b.nextAt > Date.now()) nextRepair[name] = new Date(b.nextAt).toISOString();
      }
      report = { ...base, ms: 0, state: items.length ? 'drift' : 'ok', items, repairs, checked, nextRepair };
    }
    return report;
  }

  /** Every subsystem's findings, in parallel; a check that fails is itself a finding (unverified is not ok). */
  private async inspect(subsystems: readonly Subsystem[], compiled: Compiled): Promise<DriftItem[]> {
    const found = await Promise.all(
      subsystems.map(async (s): Promise<DriftItem[]> => {
        try {
          return (await s.drift!(compiled.desired.of(s), this.engine.host)).map((f) => ({ subsystem: s.name, ...f }));
        } catch (e) {
          return [{ subsystem: s.name, object: s.name, reason: `drift check failed: ${(e as Error).message}` }];
        }
      }),
    );
    return found.flat();
  }

  private recordRepair(step: StepResult, found: DriftItem[], remaining: DriftItem[]): RepairRecord {
    const now = Date.now();
    const b = this.backoff.get(step.subsystem) ?? { attempts: 0, lastRepair: 0, nextAt: 0 };
    b.attempts++;
    b.lastRepair = now;
    const maxMs = (this.config()?.drift.maxBackoffSeconds ?? 60) * 1000;
    b.nextAt = now + Math.min(maxMs, (this.opts.backoffBaseMs ?? 1000) * 2 ** (b.attempts - 1));
    this.backoff.set(step.subsystem, b);
    const error = step.error ?? (remaining.length ? `still drifting: ${remaining.map((i) => `${i.object}: ${i.reason}`).join('; ')}` : undefined);
    return { subsystem: step.subsystem, at: new Date(now).toISOString(), ok: !error, attempt: b.attempts, found: found.map((i) => `${i.object}: ${i.reason}`), ...(error ? { error } : {}) };
  }
}
