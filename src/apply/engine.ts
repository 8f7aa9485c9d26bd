/**
 * The engine behind every way an operator changes Patronus (REST, CLI,
 * start-up): validate -> plan -> apply as one transaction, with revisions in
 * the store, rollback, commit-confirm and start-up reconciliation.
 *
 * Apply runs the subsystems in apply order (src/apply/domain.ts subsystemsOf). If a step throws, every
 * subsystem already touched (the failing one included: it may be half done)
 * is converged back to the last committed revision, in reverse order, and
 * the error names the failing step. Because Subsystem.apply converges from
 * any state, rollback, reconciliation and apply are the same operation with
 * a different target.
 *
 * One apply at a time: an in-process mutex plus an exclusive SQLite lock on
 * a side file, so two processes (the server and a CLI in --direct mode)
 * never drive the kernel at once; the OS drops that lock if a process dies.
 *
 * Fail closed, whoever dies when:
 * - A store write that fails after the kernel changed (disk full, I/O
 *   error) rolls the kernel back to the committed revision: the kernel never
 *   runs a revision the store does not record as running.
 * - A commit-confirm deadline is kept by a guard process spawned at apply
 *   time (src/apply/guard.ts, detached: it outlives the server or CLI that
 *   applied), besides the in-process timer; a start that finds a passed
 *   deadline rolls back at once, one with a future deadline re-arms it.
 * - The first revision on an empty store is applied directly over whatever
 *   runs (subsystems converge from any state): never through the empty
 *   configuration, which would open the firewall for the time in between.
 * - The revision the kernel runs is recorded in the store, so every process
 *   sharing it reports the same "running" revision.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { isDeepStrictEqual } from 'node:util';
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { dirname, join } from 'node:path';
import { subsystemsOf, type Domain } from './domain.js';
import { changesOf, DesiredStates, type Change, type CompileContext, type ServiceOpening, type Subsystem } from './subsystem.js';
import { documentOf, type Config, type DocumentModel, type Validated } from '../config/document.js';
import { ConfigError, type Issue } from '../config/issues.js';
import { locateIssues } from '../config/locate.js';
import { parseConfigText, readTextFile, type ConfigFormat } from '../config/load.js';
import { emptyDocumentIssues, isEmptyDocument } from '../config/input.js';
import type { FileReader } from '../aliases/aliases.js';
import type { Host } from '../system/host.js';
import { StoreError, type Revision, type RevisionState, type Store } from '../store/store.js';
import { SpareWorker, checkInWorker, compileInWorker } from './check-worker.js';
import { sourceText } from '../config/source-text.js';
export { sourceText };
import { trace } from '../system/trace.js';

/**
 * A configuration as text (YAML/JSON, parsed here) or as an already-parsed
 * document. An empty document is refused unless `allowEmpty` (src/config/input.ts).
 */
export type ConfigSource = (
  | { text: string; format?: ConfigFormat }
  /**
   * the document's text as UTF-8 bytes: a large request body's document (src/config/parse-worker.ts), moved
   * between threads (transferred to the compile worker) and never made a string on the main thread; the
   * caller's buffer is detached once a worker took it
   */
  | { bytes: Uint8Array; format?: ConfigFormat }
  | { document: unknown }
) & {
  allowEmpty?: boolean;
  /**
   * Apply only if the plan would still be this one (a saved plan, `patronus
   * apply FILE.plan`): the committed revision is the same and the plan
   * computed now against the running system has the same fingerprint.
   */
  expect?: PlanBasis;
};

/** What a plan was made against: the committed revision and a fingerprint of what plan found (terraform's saved plan). */
export interface PlanBasis {
  /** the committed revision when the plan was made (null: none yet) */
  revision: number | null;
  /** sha256 over every subsystem's planned changes: they are computed from the desired state and the observed kernel and daemon state */
  fingerprint: string;
}


/** What a request's work in progress is (Engine.beginWork); `request`: a large body being parsed before the route knows. */
export type WorkKind = 'validate' | 'plan' | 'apply' | 'request';

export interface ApplyMeta {
  author: string;
  message: string;
  /** seconds: roll back by itself unless confirmed within this time */
  confirmWithin?: number;
}

export interface StepResult {
  subsystem: string;
  ok: boolean;
  ms: number;
  error?: string;
  /** not run: the subsystem's part of the revision is the one it runs, and a drift check since found it clean */
  unchanged?: true;
}

/**
 * What a drift check found (src/drift/monitor.ts), with the compiled
 * revision it compared against: lets an apply skip the subsystems the new
 * revision does not change (see Engine.unchangedSubsystems).
 */
export interface CleanState {
  revision: number | null;
  state: string;
  /** when the check started (ISO time) */
  checkedAt: string;
  items: readonly { subsystem: string }[];
  checked: readonly string[];
  desired: DesiredStates;
}

export interface ApplyReport {
  revision: number;
  state: RevisionState;
  durationMs: number;
  steps: StepResult[];
  /** the subsystem whose apply threw */
  failedStep?: string;
  error?: string;
  /** what rollback did after a failure or a missed confirmation */
  rollback?: StepResult[];
  rolledBackTo?: number | null;
  confirmDeadline?: string;
  /** the document is the committed one and the kernel already runs it: nothing recorded, nothing touched */
  unchanged?: boolean;
}

export interface SubsystemPlan {
  subsystem: string;
  changes: Change[];
}

export interface Plan {
  /** the document is empty: applying it removes everything Patronus manages */
  removesEverything?: true;
  subsystems: SubsystemPlan[];
  summary: Record<Change['action'], number>;
  /** what the plan was made against (a saved plan is applied only while it still holds) */
  basis?: PlanBasis;
}

export type ProgressEvent =
  | { phase: 'validate' }
  | { phase: 'apply' | 'rollback'; subsystem: string; index: number; total: number }
  /** changes: those of the steps that ran, in order (all of them when ok; up to and including the failing one otherwise) */
  | { phase: 'step-done'; subsystem: string; ok: boolean; ms: number; changes: Change[] };

export interface EngineOptions {
  host: Host;
  store: Store;
  /** the domains this engine runs (src/domains.ts): the document's sections and the subsystems in apply order */
  domains: readonly Domain<any, any>[];
  /** default: every subsystem of `domains`, in apply order (tests drive hand-picked ones) */
  subsystems?: readonly Subsystem[];
  readFile?: FileReader;
  /** side file for the cross-process apply lock; default next to the store */
  lockPath?: string;
  /**
   * Spawn a guard process for each commit-confirm deadline (see guard.ts).
   * Default: on when the engine drives its domains' subsystems (the guard
   * process rebuilds the same list by name); an engine with hand-picked
   * test subsystems has only its in-process timer.
   */
  confirmGuard?: boolean;
  /**
   * Compile every document on this thread (the compile worker's own engine;
   * tests that measure the compile itself). Default: a large document is
   * compiled in a worker thread (see check()).
   */
  inThread?: boolean;
}

/**
 * Subsystems whose apply can recreate what later ones bind to (devices,
 * ifindexes, addresses): when one of them runs in an apply, no later
 * subsystem is skipped as unchanged (see Engine.unchangedSubsystems).
 */
const FOUNDATION = new Set(['links', 'interfaces']);

/** Subsystems an apply may leave alone: `same` compiled part as the running revision (and not drifted); `checked` of those, the ones a drift check vouches for. */
interface Unchanged {
  checked: Set<string>;
  same: Set<string>;
}

/** The guard acts this long after the deadline: the in-process timer (when its process lives) goes first. */
export const GUARD_GRACE_MS = 200;

/** 409: the operation conflicts with what is going on (apply running, confirmation pending). */
export class ConflictError extends Error {
  override name = 'ConflictError';
}

/** 409 for a saved plan: what it was made against changed since. */
export class StalePlanError extends ConflictError {
  constructor(message: string) {
    super(`${message}: the plan is stale, make a new one (patronus plan -o FILE)`);
    this.name = 'StalePlanError';
  }
}

/** An apply failed at a step; the system was rolled back (see report.rollback). */
export class ApplyError extends Error {
  override name = 'ApplyError';
  constructor(readonly report: ApplyReport) {
    super(
      `apply of revision ${report.revision} failed at step "${report.failedStep}": ${report.error}; ` +
        (report.rollback?.every((s) => s.ok)
          ? `rolled back to ${report.rolledBackTo ? `revision ${report.rolledBackTo}` : 'the empty configuration'}`
          : `ROLLBACK INCOMPLETE: ${report.rollback?.filter((s) => !s.ok).map((s) => `${s.subsystem}: ${s.error}`).join('; ')}`),
    );
  }
}

/** Everything compiled for one document: what each subsystem should converge to. */
export interface Compiled {
  /** compiled in a worker: the config without its aliases (they are in `desired` already) */
  validated: Validated;
  /** compiled in a worker from text: parsed when first read */
  readonly document: unknown;
  /**
   * the document as the store records it (JSON text, UTF-8 bytes), when already serialised (compiled in a
   * worker: moved here, never a string on this thread)
   */
  documentBytes?: Uint8Array;
  /** sha256 (hex) of documentBytes, computed with them off the main thread (a 20 MB text took ~100 ms to hash here) */
  documentHash?: string;
  /** the compile worker stored documentBytes under documentHash already (Store.recordDocument) */
  documentStored?: boolean;
  /** whether the document is empty (see isEmptyDocument), when known without reading `document` */
  empty?: boolean;
  desired: DesiredStates;
}

export class Engine extends EventEmitter<{ applied: [ApplyReport]; progress: [ProgressEvent]; error: [Error]; spareRetired: [] }> {
  readonly host: Host;
  readonly store: Store;
  readonly domains: readonly Domain<any, any>[];
  /** the document of `domains`: its schema and validation */
  readonly document: DocumentModel;
  readonly subsystems: readonly Subsystem[];
  private readonly readFile: FileReader;
  /** the committed revision's validated document (see committedConfig) */
  private committedCache: { revision: number; config: Config | undefined } | undefined;
  readonly lockPath: string;
  private readonly confirmGuard: boolean;
  private readonly inThread: boolean;
  private busy = false;
  /** the lock is held by a drift repair (see repair()) */
  private repairing = false;
  private lockDb: Database.Database | undefined;
  private confirmTimer: NodeJS.Timeout | undefined;
  /** revision the kernel was last converged to (undefined: unknown / empty) */
  private running: number | undefined;
  private lastReconcile: { at: string; ok: boolean; error?: string } | undefined;
  /** when this engine last changed the kernel (apply, rollback, repair, reconcile): ms since the epoch */
  private lastTouched = 0;
  /**
   * What this engine's last successful apply converged, and when: every
   * subsystem it ran or left alone as vouched for (see unchangedSubsystems).
   */
  private lastConverged: { revision: number; at: number; desired: DesiredStates; names: Set<string> } | undefined;
  /** the compiled revision this engine last converged the kernel to (the drift loop reuses it: compiledFor) */
  private compiledRunning: { revision: number; compiled: Compiled } | undefined;
  /** the drift loop's last clean bill, when the server runs one (see unchangedSubsystems) */
  cleanState: (() => CleanState | undefined) | undefined;
  /** validations running in worker threads (see validate()) */
  private readonly checkWorkers = new Set<Worker>();
  /** a compile worker started ahead of its job (keepSpareWorker), and the timer that starts the next */
  private spare: SpareWorker | undefined;
  private spareWanted = false;
  private spareTimer: NodeJS.Timeout | undefined;
  /** requests whose work is in progress (see beginWork): id → what and since when */
  private readonly works = new Map<number, { kind: WorkKind; since: number }>();
  private workSeq = 0;
  /** stops a spare nobody took within spareIdleMs (keepSpareWorker) */
  private spareIdleTimer: NodeJS.Timeout | undefined;
  private spareIdleMs = SPARE_IDLE_MS;

  constructor(opts: EngineOptions) {
    super();
    this.host = opts.host;
    this.store = opts.store;
    this.domains = opts.domains;
    this.document = documentOf(opts.domains);
    this.subsystems = opts.subsystems ?? subsystemsOf(opts.domains);
    this.readFile = opts.readFile ?? readTextFile;
    this.lockPath = opts.lockPath ?? join(dirname(opts.store.path === ':memory:' ? join(opts.host.stateDir, 'x') : opts.store.path), 'apply.lock');
    this.confirmGuard = opts.confirmGuard ?? (opts.subsystems === undefined && opts.store.path !== ':memory:');
    this.inThread = opts.inThread ?? false;
  }

  /**
   * Parse, schema, aliases, every subsystem's compile and validate: all
   * issues at once. A large document (see heavyToCompile) is compiled in a
   * worker thread when the engine drives registered subsystems with the
   * default file reader (src/apply/check-worker.ts): the event loop keeps
   * answering /healthz and signals meanwhile.
   */
  async check(source: ConfigSource, opts: { forApply?: boolean; probe?: boolean } = {}): Promise<{ compiled?: Compiled; issues: Issue[] }> {
    const names = this.inThread ? undefined : this.workerSubsystems();
    if (names && heavyToCompile(source)) {
      // for an apply, the worker also stores the document's text (20 MB for 1M prefixes: ~0.25 s of SQLite on this thread)
      const record = opts.forApply && this.store.path !== ':memory:' ? { recordDocumentIn: this.store.path } : {};
      const out = await compileInWorker({ host: this.host.opts, ...names, source, ...record }, this.subsystems, this.checkWorkers, this.takeSpare(), this.keepIdle).finally(() => this.replaceSpare());
      // the machine probes here, not in the worker: this thread knows which subsystems a drift check vouched
      // for since (their probes are skipped, as for a small document: `nft -c` of an unchanged rule set and
      // `ip` spawns were 50-120 ms of a 10k-prefix apply), and its probe caches are warm
      if (!out.compiled) return out;
      const issues = await this.probeIssues(out.compiled);
      return issues.length ? { issues } : out;
    }
    return this.checkHere(source, opts.probe ?? true);
  }

  /**
   * Keeps one compile worker started ahead of its job (the server calls this
   * once it is up): a large document's validate, plan or apply then does not
   * wait for a worker to start and load the domains (0.3-0.5 s here). The
   * first spare is started a second after the first large document, and
   * again a second after each use (each worker serves one job): a server
   * that never gets a large document never pays for an idle worker (~30 MB
   * of RSS), and a spare no job took within `idleMs` (default 30 s) is
   * stopped (event 'spareRetired').
   */
  keepSpareWorker(opts: { idleMs?: number } = {}): void {
    this.spareWanted = true;
    this.spareIdleMs = opts.idleMs ?? SPARE_IDLE_MS;
  }

  /** Whether a spare compile worker is started and waiting (keepSpareWorker). */
  get hasSpareWorker(): boolean {
    return this.spare !== undefined;
  }

  private takeSpare(): SpareWorker | undefined {
    const s = this.spare;
    this.spare = undefined;
    clearTimeout(this.spareIdleTimer);
    this.spareIdleTimer = undefined;
    return s;
  }

  /**
   * A worker that answered with a small heap (check-worker.ts): the spare
   * for the next large document, already loaded and warm, when the engine
   * keeps one and has none; stopped otherwise.
   */
  private readonly keepIdle = (s: SpareWorker): void => {
    if (!this.spareWanted || this.spare) return s.stop();
    this.installSpare(s);
  };

  /** `s` becomes the spare; a spare nobody used for a while is stopped. */
  private installSpare(s: SpareWorker): void {
    this.spare = s;
    // a spare nobody used for a while is stopped (its ~30 MB go back; 'spareRetired' lets the server trim
    // the C heap): a burst of large documents keeps one warm, an idle server holds none
    clearTimeout(this.spareIdleTimer);
    this.spareIdleTimer = setTimeout(() => {
      this.spareIdleTimer = undefined;
      const idle = this.spare;
      if (!idle) return;
      this.spare = undefined;
      idle.stop();
      this.emit('spareRetired');
    }, this.spareIdleMs);
    this.spareIdleTimer.unref();
  }

  private replaceSpare(delayMs = 1000): void {
    if (!this.spareWanted || this.spare || this.spareTimer) return;
    const start = () => {
      this.spareTimer = undefined;
      if (!this.spareWanted || this.spare) return;
      const names = this.workerSubsystems();
      if (!names) return;
      try {
        this.installSpare(new SpareWorker(names.domains));
      } catch (e) {
        this.emit('error', new Error(`cannot start a spare compile worker: ${(e as Error).message}`));
      }
    };
    if (delayMs === 0) return start();
    this.spareTimer = setTimeout(start, delayMs);
    this.spareTimer.unref();
  }

  /** check() on this thread, yielding to the event loop between stages. */
  private async checkHere(source: ConfigSource, probe = true): Promise<{ compiled?: Compiled; issues: Issue[] }> {
    let document: unknown;
    if ('text' in source || 'bytes' in source) {
      const parsed = parseConfigText(sourceText(source), source.format);
      if (parsed.issues.length) return { issues: parsed.issues };
      document = parsed.value;
      trace('check: text parsed');
      await new Promise((r) => setImmediate(r)); // parsing a large text is a stage of its own
    } else document = source.document;
    const empty = emptyDocumentIssues(document, source.allowEmpty);
    if (empty.length) return { issues: empty };

    // between stages (schema and aliases, each subsystem's compile) the event loop runs: shorter stalls for
    // /healthz and signals while a large document compiles here (validate() moves all of it off this thread)
    const stage = this.compileStages(document);
    let step = stage.next();
    while (!step.done) {
      await new Promise((r) => setImmediate(r));
      step = stage.next();
    }
    const { compiled, issues } = step.value;
    trace('check: compiled');
    if (!compiled) return { issues };
    const probeIssues = probe ? await this.probeIssues(compiled) : [];
    // line and column where the document came from text, as schema issues have them
    if (probeIssues.length) return { issues: locateIssues(compiled.document, probeIssues) };
    return { compiled, issues: [] };
  }

  /** Every subsystem's machine probes (Subsystem.validate) but those a drift check vouched for. */
  private async probeIssues(compiled: Compiled): Promise<Issue[]> {
    const { desired } = compiled;
    const unchanged = this.unchangedSubsystems(compiled);
    const probed = await Promise.all(
      this.subsystems.map(async (s) => {
        // what runs now passed these probes when it was applied, and a drift check found it in place since
        if (!s.validate || unchanged.checked.has(s.name)) return [];
        try {
          const t0 = performance.now();
          const out = await s.validate(desired.of(s), this.host);
          trace(`check: ${s.name} validated in ${(performance.now() - t0).toFixed(1)} ms`);
          return out;
        } catch (e) {
          return [{ path: [s.name], message: `validation failed: ${(e as Error).message}` }];
        }
      }),
    );
    return probed.flat();
  }

  /**
   * Schema, aliases and every subsystem's compile, without the machine
   * probes of validate(): what a stored revision asks of each subsystem,
   * even while the machine has drifted away from it (the drift check).
   */
  compileDocument(document: unknown): { compiled?: Compiled; issues: Issue[] } {
    const stages = this.compileStages(document);
    for (;;) {
      const step = stages.next();
      if (step.done) return step.value;
    }
  }

  /** compileDocument as stages: each `yield` is a point where an async caller lets the event loop run. */
  private *compileStages(document: unknown): Generator<void, { compiled?: Compiled; issues: Issue[] }, void> {
    // the document type is that of the domains Patronus runs (src/domains.ts), which the entry points hand in
    const { validated, issues } = yield* this.validateStages(document);
    trace('check: schema and aliases');
    if (!validated) return { issues: locateIssues(document, [...issues, ...(yield* this.independentCompileIssues(document, issues))]) };
    const ctx: CompileContext = {
      config: validated.config,
      aliases: validated.aliases,
      openings: this.openings(validated),
      readFile: this.readFile,
    };
    const desired = new DesiredStates();
    const all: Issue[] = [];
    for (const s of this.subsystems) {
      yield;
      try {
        const out = s.compile(ctx);
        trace(`check: ${s.name} compiled`);
        desired.put(s, out.desired);
        all.push(...out.issues);
      } catch (e) {
        all.push({ path: [s.name], message: `compile failed: ${(e as Error).message}` });
      }
    }
    if (all.length) return { issues: locateIssues(document, all) };
    return { compiled: { validated, document, desired }, issues: [] };
  }

  /**
   * Every issue of a document, as check() finds them. A large document (or
   * one that reads alias files or a GeoIP database) is checked in a worker
   * thread when the engine drives registered subsystems with the default
   * file reader (src/apply/check-worker.ts says why): it never blocks this
   * thread's event loop (/healthz, signals). A small one, or test
   * subsystems and custom readers, in this thread: a worker costs ~0.5 s to
   * start, more than a small document takes to check.
   */
  async validate(source: ConfigSource): Promise<Issue[]> {
    return this.working('validate', () => this.validateNow(source));
  }

  private async validateNow(source: ConfigSource): Promise<Issue[]> {
    const names = this.inThread ? undefined : this.workerSubsystems();
    if (!names || !heavyToCompile(source)) return (await this.checkHere(source)).issues;
    return checkInWorker({ host: this.host.opts, ...names, source }, this.checkWorkers, this.takeSpare(), this.keepIdle).finally(() => this.replaceSpare());
  }

  /** Stops every validation worker (their callers get an error): shutdown does not wait for them. */
  stopValidations(): void {
    for (const w of this.checkWorkers) void w.terminate();
  }

  /** Throws ConfigError with every issue. */
  async compile(source: ConfigSource, opts: { forApply?: boolean } = {}): Promise<Compiled> {
    const { compiled, issues } = await this.check(source, opts);
    if (!compiled) throw new ConfigError(issues);
    return compiled;
  }

  /** What apply would change, per subsystem, read against the running system. */
  async plan(source: ConfigSource): Promise<Plan> {
    return this.working('plan', async () => this.planCompiled(await this.compile(source)));
  }

  async planCompiled(compiled: Compiled): Promise<Plan> {
    const out: SubsystemPlan[] = [];
    for (const s of this.subsystems) {
      try {
        out.push({ subsystem: s.name, changes: changesOf(await s.steps(compiled.desired.of(s), this.host)) });
      } catch (e) {
        throw new Error(`plan: subsystem "${s.name}" failed: ${(e as Error).message}`);
      }
    }
    const summary = { add: 0, remove: 0, change: 0, reload: 0, restart: 0, start: 0, stop: 0 };
    for (const p of out) for (const c of p.changes) summary[c.action]++;
    // the id only (current() reads and parses the whole document: 20 MB for 1M prefixes, on this thread)
    const basis = { revision: this.store.head().committed ?? null, fingerprint: planFingerprint(out) };
    return { ...((compiled.empty ?? isEmptyDocument(compiled.document)) ? { removesEverything: true as const } : {}), subsystems: out, summary, basis };
  }

  /**
   * Validates, records a revision, applies it to every subsystem. On failure
   * restores the last committed revision and throws ApplyError. With
   * confirmWithin, the revision stays "confirming" and rolls back by itself
   * unless confirm() is called in time.
   */
  async apply(source: ConfigSource, meta: ApplyMeta): Promise<ApplyReport> {
    return this.working('apply', () => this.applyNow(source, meta));
  }

  private async applyNow(source: ConfigSource, meta: ApplyMeta): Promise<ApplyReport> {
    trace('engine: apply');
    const compiled = await this.compile(source, { forApply: true });
    trace('engine: compiled');
    return this.exclusive(false, async () => {
      trace('engine: lock held');
      this.closeStaleApplying();
      let pending = this.pendingConfirmation();
      // a deadline nobody enforced (every process that could was dead): roll back now instead of refusing forever
      if (pending && deadlinePassed(pending)) {
        await this.expireLocked(pending.id, `not confirmed by its deadline ${pending.confirmDeadline} (rolled back late: no process was there to enforce it)`);
        pending = this.pendingConfirmation();
      }
      if (pending) throw new ConflictError(`revision ${pending.id} awaits confirmation until ${pending.confirmDeadline}: confirm or roll it back first`);
      if (source.expect) await this.checkPlanBasis(compiled, source.expect);
      const unchanged = await this.unchangedReport(compiled);
      trace('engine: unchanged? checked');
      if (unchanged) return unchanged;
      return this.applyCompiled(compiled, meta);
    });
  }

  /** Under the apply lock: refuses a saved plan whose committed revision or observed state changed since it was made. */
  private async checkPlanBasis(compiled: Compiled, expect: PlanBasis): Promise<void> {
    const committed = this.store.head().committed ?? null;
    if (committed !== expect.revision) throw new StalePlanError(`the plan was made against revision ${expect.revision ?? '(none)'}, revision ${committed ?? '(none)'} is committed now`);
    const now = await this.planCompiled(compiled);
    if (now.basis?.fingerprint !== expect.fingerprint) {
      throw new StalePlanError('the running system changed since the plan was made (the plan computed now differs)');
    }
  }

  /**
   * Rolls back `id` if it still awaits confirmation (the guard process at
   * the deadline); undefined when it was confirmed or rolled back already.
   */
  async expireIfPending(id: number, reason: string, prepared?: PreparedRestore): Promise<ApplyReport | undefined> {
    return this.expireConfirmation(id, reason, prepared);
  }

  /**
   * Compiles the committed revision ahead of a rollback (the guard does it
   * while it waits, so the rollback at the deadline only converges). Used
   * only while the committed revision is still the same one.
   */
  async prepareRestore(): Promise<PreparedRestore> {
    const current = this.store.current();
    return { revision: current?.id, compiled: await this.compile({ document: current?.config ?? {}, allowEmpty: true }) };
  }

  /** Confirms the revision awaiting confirmation. */
  async confirm(): Promise<Revision> {
    const pending = this.pendingConfirmation();
    if (!pending) throw new ConflictError('no revision awaits confirmation');
    if (!this.store.transition(pending.id, 'confirming', 'committed')) throw new ConflictError(`revision ${pending.id} was rolled back before it could be confirmed`);
    this.clearConfirmTimer();
    return this.store.get(pending.id)!;
  }

  /**
   * Without `to`: rolls back a revision awaiting confirmation, or else goes
   * back to the committed revision before the current one. With `to`:
   * applies that revision's configuration again (as a new revision).
   */
  async rollback(opts: { to?: number; author: string }): Promise<ApplyReport> {
    const pending = this.pendingConfirmation();
    if (pending && opts.to === undefined) {
      const report = await this.expireConfirmation(pending.id, 'rolled back by request');
      if (!report) throw new ConflictError(`revision ${pending.id} was confirmed before it could be rolled back`);
      return report;
    }
    if (pending) throw new ConflictError(`revision ${pending.id} awaits confirmation: confirm or roll it back first`);
    const current = this.store.current();
    const target = opts.to !== undefined ? this.store.get(opts.to) : current && this.store.committedBefore(current.id);
    if (!target) throw new ConflictError(opts.to !== undefined ? `revision ${opts.to} does not exist` : 'there is no earlier committed revision to roll back to');
    if (opts.to !== undefined && !['committed', 'rolled_back', 'failed', 'interrupted'].includes(target.state)) {
      throw new ConflictError(`revision ${target.id} is ${target.state}`);
    }
    return this.apply({ document: target.config, allowEmpty: true }, { author: opts.author, message: `rollback to revision ${target.id}` });
  }

  /**
   * Start-up: marks revisions a dead process left mid-apply as interrupted;
   * a revision awaiting confirmation whose deadline passed is rolled back at
   * once, one whose deadline is still ahead is kept (timer and guard
   * re-armed). Then converges every subsystem to what should run: the
   * pending revision, else the last committed one, else (empty store) `seed`
   * applied directly over whatever runs and recorded as the first revision.
   * Store write failures here (a full disk) do not stop the start: the
   * kernel is converged anyway and status().store says what failed.
   */
  async reconcile(seed?: ConfigSource): Promise<{ revision?: number; report?: ApplyReport; error?: string }> {
    return this.exclusive(true, async () => {
      const notes: string[] = [];
      const bestEffort = (what: () => void) => {
        try {
          what();
        } catch (e) {
          if (!(e instanceof StoreError)) throw e;
          notes.push(e.message);
        }
      };
      let pending: Revision | undefined;
      for (const r of this.store.unfinished()) {
        if (r.state === 'confirming' && !deadlinePassed(r)) {
          pending = r;
          continue;
        }
        const reason =
          r.state === 'confirming'
            ? `not confirmed by its deadline ${r.confirmDeadline}: rolled back at start-up (no process was there to enforce it)`
            : `found ${r.state} at start-up: the process stopped before it finished`;
        bestEffort(() => this.store.finish(r.id, r.state === 'confirming' ? 'rolled_back' : 'interrupted', { ...(r.result as object | undefined), error: reason, interrupted: reason }));
      }
      const current = this.store.current();
      const done = (out: { revision?: number; report?: ApplyReport; error?: string }) => {
        const error = [out.error, ...notes].filter(Boolean).join('; ') || undefined;
        this.lastReconcile = { at: new Date().toISOString(), ok: !error, ...(error ? { error } : {}) };
        return { ...out, ...(error ? { error } : {}) };
      };
      try {
        if (pending) {
          // the deadline first: whatever happens below, the revision still rolls back on time
          const ms = Math.max(0, Date.parse(pending.confirmDeadline!) - Date.now());
          this.armConfirmTimer(pending.id, ms, `not confirmed by its deadline ${pending.confirmDeadline}`);
          this.spawnGuard(pending.id, pending.confirmDeadline!);
        }
        const target = pending ?? current;
        if (target) {
          const compiled = await this.compile({ document: target.config, allowEmpty: true });
          const steps = await this.converge(compiled);
          const failed = steps.find((s) => !s.ok);
          if (failed) throw new Error(`subsystem "${failed.subsystem}": ${failed.error}`);
          this.running = target.id;
          this.compiledRunning = { revision: target.id, compiled };
          bestEffort(() => this.store.setRunning(target.id));
          return done({ revision: target.id });
        }
        if (!seed) {
          // nothing committed and nothing to seed: clear anything a first apply may have left
          await this.converge(await this.compile({ document: {}, allowEmpty: true }));
          this.running = undefined;
          bestEffort(() => this.store.setRunning(null));
          return done({});
        }
        // the first revision goes directly over what runs: no pass through the empty configuration
        const report = await this.applyCompiled(await this.compile(seed), { author: 'patronus', message: 'embedded default configuration' });
        return done({ revision: report.revision, report });
      } catch (e) {
        const error = e instanceof ApplyError || e instanceof ConfigError || e instanceof StoreError ? e.message : `reconcile failed: ${(e as Error).message}`;
        return done({ error });
      }
    });
  }

  /** The revision awaiting confirmation, if any. */
  pendingConfirmation(): Revision | undefined {
    return this.store.unfinished().find((r) => r.state === 'confirming');
  }

  /** Waits until the pending revision is confirmed (true) or rolled back (false). */
  async waitForConfirmation(id: number, pollMs = 250): Promise<boolean> {
    for (;;) {
      const r = this.store.get(id);
      if (!r || r.state !== 'confirming') return r?.state === 'committed';
      await new Promise((res) => setTimeout(res, pollMs));
    }
  }

  /**
   * Ids from the store's head and each revision's metadata: no document is
   * read or parsed (status is polled; a document can be megabytes).
   */
  status() {
    const head = this.store.head();
    const current = head.committed !== undefined ? this.store.info(head.committed) : undefined;
    const pending = head.confirming !== undefined ? this.store.info(head.confirming) : undefined;
    // what runs is what the last process that converged the kernel recorded (a --direct CLI, the server, a guard)
    const recorded = this.store.running();
    return {
      running: recorded !== undefined ? recorded : (this.running ?? null),
      /** the store's health: false after a failed write (disk full, I/O error) or with too little space left */
      store: this.store.health(),
      committed: current ? { id: current.id, author: current.author, message: current.message, createdAt: current.createdAt } : null,
      pendingConfirmation: pending ? { id: pending.id, deadline: pending.confirmDeadline } : null,
      applying: this.busy,
      reconcile: this.lastReconcile ?? null,
      subsystems: this.subsystems.map((s) => s.name),
    };
  }

  /**
   * The compiled document of `revision` when it is the one this engine last
   * converged the kernel to: the drift loop checks against it instead of
   * compiling the same document again (seconds for a large one, on this thread).
   */
  /**
   * The committed revision's document, validated and defaulted: what the
   * routes, serve and HA sync read sections from (never the raw stored
   * document). The empty document's defaults while nothing is committed;
   * undefined when the stored document does not validate any more. Parsed
   * once per revision.
   */
  committedConfig(): Config | undefined {
    // the id first (no document read): the revision this engine applied is compiled already
    const committed = this.store.head().committed;
    const compiled = committed !== undefined ? this.compiledFor(committed) : undefined;
    if (compiled) return compiled.validated.config;
    const id = committed ?? 0;
    if (this.committedCache?.revision !== id) {
      const current = committed !== undefined ? this.store.get(committed) : undefined;
      const parsed = this.document.schema.safeParse(current?.config ?? {});
      this.committedCache = { revision: id, config: parsed.success ? (parsed.data as Config) : undefined };
    }
    return this.committedCache.config;
  }

  compiledFor(revision: number): Compiled | undefined {
    return this.compiledRunning?.revision === revision ? this.compiledRunning.compiled : undefined;
  }

  /**
   * Marks a request's work in progress until the returned function is
   * called (once; later calls do nothing): a validation, a plan or an apply
   * from its body's parse to its answer, compile included, not only the
   * kernel phase (health().applying). The drift monitor starts no check
   * meanwhile (each check runs ip/nft children, and on a busy machine every
   * spawn holds this thread while the child waits to exec): it answers its
   * last verified result (src/drift/monitor.ts, DriftMonitor.deferring).
   */
  beginWork(kind: WorkKind): () => void {
    const id = ++this.workSeq;
    this.works.set(id, { kind, since: Date.now() });
    return () => void this.works.delete(id);
  }

  /** Whether an apply (or rollback, repair, reconcile) holds the apply lock: the kernel phase. */
  get applying(): boolean {
    return this.busy;
  }

  /** The oldest request's work in progress (beginWork), or undefined. */
  workInProgress(): { kind: WorkKind; since: number } | undefined {
    for (const w of this.works.values()) return w;
    return undefined;
  }

  private async working<T>(kind: WorkKind, fn: () => Promise<T>): Promise<T> {
    const end = this.beginWork(kind);
    try {
      return await fn();
    } finally {
      end();
    }
  }

  /** What /healthz needs, without reading any document from the store. */
  health(): { applying: boolean; reconcile: { at: string; ok: boolean; error?: string } | null; store: ReturnType<Store['health']> } {
    return { applying: this.busy, reconcile: this.lastReconcile ?? null, store: this.store.health() };
  }

  /**
   * Drift repair (src/drift/monitor.ts): converges the named subsystems to
   * `compiled` again, under the apply lock. Undefined (nothing done) when an
   * apply holds the lock or the store's head is no longer `revision`.
   */
  async repair(revision: number, compiled: Compiled, names: readonly string[]): Promise<StepResult[] | undefined> {
    if (this.busy) return undefined;
    try {
      return await this.exclusive(false, async () => {
        this.repairing = true;
        try {
          return await this.repairLocked(revision, compiled, names);
        } finally {
          this.repairing = false;
        }
      });
    } catch (e) {
      if (e instanceof ConflictError) return undefined;
      throw e;
    }
  }

  private async repairLocked(revision: number, compiled: Compiled, names: readonly string[]): Promise<StepResult[] | undefined> {
    // under the lock nobody else applies (a row left 'applying' by a dead process does not block repairs)
    const head = this.store.head();
    if ((head.confirming ?? head.committed) !== revision) return undefined;
    const steps: StepResult[] = [];
    for (const s of this.subsystems) {
      if (!names.includes(s.name)) continue;
      steps.push(await this.applyStep(s, compiled));
    }
    return steps;
  }

  /** Stops the confirmation timer and validation workers, releases the lock file (the store stays open: the caller owns it). */
  close(): void {
    this.clearConfirmTimer();
    this.stopValidations();
    this.spareWanted = false;
    clearTimeout(this.spareTimer);
    this.spareTimer = undefined;
    this.takeSpare()?.stop();
    this.lockDb?.close();
    this.lockDb = undefined;
  }

  // --- internals

  /** The domains' modules and subsystem names when a worker can rebuild exactly this engine's compile, else undefined. */
  private workerSubsystems(): { domains: string[]; subsystems: string[] } | undefined {
    if (this.readFile !== readTextFile) return undefined;
    const theirs = subsystemsOf(this.domains);
    if (!this.subsystems.every((s) => theirs.includes(s))) return undefined;
    return { domains: this.domains.map((d) => d.module), subsystems: this.subsystems.map((s) => s.name) };
  }

  /** The document's schema and aliases (typed by the domains Patronus runs, src/domains.ts). */
  private validateStages(document: unknown): Generator<void, { validated?: Validated; issues: Issue[] }, void> {
    return this.document.validateStages(document, this.readFile) as Generator<void, { validated?: Validated; issues: Issue[] }, void>;
  }

  /**
   * The compile issues a document has beside its schema issues, so that one
   * validation reports every stage's problems at once. The sections with a
   * schema issue are left out (they take their defaults), the rest is
   * compiled, and a subsystem's issues count only when its compile read none
   * of the left-out sections (nor openings or aliases that came from them):
   * an issue that follows from a broken section (a reference to something
   * it defines) is not reported, one independent of it is.
   */
  private *independentCompileIssues(document: unknown, schemaIssues: readonly Issue[]): Generator<void, Issue[], void> {
    if (!document || typeof document !== 'object' || Array.isArray(document) || !schemaIssues.length) return [];
    const broken = new Set<string>();
    for (const i of schemaIssues) {
      const top = i.path[0];
      // a problem with the document as a whole (not a section): nothing to compile apart from it
      if (typeof top !== 'string') return [];
      broken.add(top);
    }
    const rest = Object.fromEntries(Object.entries(document).filter(([k]) => !broken.has(k)));
    const { validated } = yield* this.validateStages(rest);
    if (!validated) return [];
    const openingReads = new Set<string>();
    const openings = this.openings({ config: recordReads(validated.config, openingReads), aliases: validated.aliases });
    const out: Issue[] = [];
    for (const s of this.subsystems) {
      yield;
      const reads = new Set<string>();
      const ctx: CompileContext = {
        config: recordReads(validated.config, reads),
        get aliases() {
          reads.add('aliases');
          return validated.aliases;
        },
        get openings() {
          for (const r of openingReads) reads.add(r);
          return openings;
        },
        readFile: this.readFile,
      };
      let found: Issue[];
      try {
        found = s.compile(ctx).issues;
      } catch {
        continue; // on a document with defaults in place of broken sections: not a finding of its own
      }
      if (![...reads].some((r) => broken.has(r))) out.push(...found);
    }
    return out;
  }

  private openings(v: Validated): ServiceOpening[] {
    const out: ServiceOpening[] = [];
    for (const s of this.subsystems) if (s.openings) out.push(...s.openings(v.config));
    return out;
  }

  private async applyCompiled(compiled: Compiled, meta: ApplyMeta): Promise<ApplyReport> {
    const started = performance.now();
    let revision: Revision;
    try {
      revision = this.store.createRevision({
        author: meta.author,
        message: meta.message,
        ...(compiled.documentBytes !== undefined ? { bytes: compiled.documentBytes, ...(compiled.documentHash ? { hash: compiled.documentHash, stored: compiled.documentStored === true } : {}) } : { config: compiled.document }),
      });
    } catch (e) {
      if (!(e instanceof StoreError)) throw e;
      throw new Error(`cannot record the revision, nothing was changed: ${e.message}`);
    }
    trace('engine: revision created');
    this.emit('progress', { phase: 'validate' });
    const steps = await this.converge(compiled, true, this.unchangedSubsystems(compiled));
    const failed = steps.find((s) => !s.ok);
    const report: ApplyReport = { revision: revision.id, state: 'committed', durationMs: 0, steps };

    if (failed) {
      report.failedStep = failed.subsystem;
      report.error = failed.error;
      const touched = this.subsystems.slice(0, steps.length).reverse();
      return this.failAndRestore(report, touched, started);
    }

    const deadline = meta.confirmWithin !== undefined ? new Date(Date.now() + meta.confirmWithin * 1000) : undefined;
    if (deadline) {
      report.state = 'confirming';
      report.confirmDeadline = deadline.toISOString();
    }
    report.durationMs = performance.now() - started;
    try {
      // the guard first: once the store says "confirming", someone must be there to enforce the deadline
      if (deadline) this.spawnGuard(revision.id, deadline.toISOString());
      trace('engine: converged');
      this.store.finish(revision.id, report.state, report, deadline, revision.id);
      trace('engine: store finished');
    } catch (e) {
      if (!(e instanceof StoreError)) throw e;
      // the store cannot say the kernel runs this revision: take the kernel back to what it says
      report.state = 'committed';
      delete report.confirmDeadline;
      report.failedStep = 'store';
      report.error = e.message;
      return this.failAndRestore(report, [...this.subsystems].reverse(), started);
    }
    if (deadline) this.armConfirmTimer(revision.id, meta.confirmWithin! * 1000, `not confirmed within ${meta.confirmWithin} s`);
    this.running = revision.id;
    this.compiledRunning = { revision: revision.id, compiled };
    this.lastConverged = { revision: revision.id, at: Date.now(), desired: compiled.desired, names: new Set(steps.filter((s) => s.ok).map((s) => s.subsystem)) };
    this.prune();
    trace('engine: pruned');
    this.emit('applied', report);
    return report;
  }

  /** After a failed step or store write: converges `touched` back to the committed revision, records the failure, throws ApplyError. */
  private async failAndRestore(report: ApplyReport, touched: readonly Subsystem[], started: number): Promise<never> {
    const { rollback, to } = await this.restoreCommitted(touched);
    report.rollback = rollback;
    report.rolledBackTo = to ?? null;
    report.state = 'failed';
    report.durationMs = performance.now() - started;
    try {
      this.store.finish(report.revision, 'failed', report);
    } catch (e) {
      if (!(e instanceof StoreError)) throw e;
      report.error = `${report.error}; and recording the failure failed too (${e.message}): revision ${report.revision} stays "applying" in the store until the next apply or start marks it interrupted`;
    }
    this.emit('applied', report);
    throw new ApplyError(report);
  }

  /**
   * Identical to the committed document, which the kernel runs, and a plan
   * with no change: nothing to record, nothing to touch.
   */
  private async unchangedReport(compiled: Compiled): Promise<ApplyReport | undefined> {
    // ids first; the document from memory when this engine applied it (a large one is seconds to read and compare)
    const committed = this.store.head().committed;
    if (committed === undefined || this.store.running() !== committed) return undefined;
    if (compiled.documentBytes !== undefined) {
      // a large document (compiled in a worker): the hash of its text against the stored one's, without
      // reading either on this thread (the same document with its keys reordered counts as a change)
      if ((compiled.documentHash ?? createHash('sha256').update(compiled.documentBytes).digest('hex')) !== this.store.documentHash(committed)) return undefined;
    } else {
      const document = this.compiledFor(committed)?.document ?? this.store.get(committed)?.config;
      // key order aside, the same document (deep equality stops at the first difference)
      if (!isDeepStrictEqual(document ?? {}, compiled.document ?? {})) return undefined;
    }
    const current = { id: committed };
    const t0 = performance.now();
    let plan: Plan;
    try {
      plan = await this.planCompiled(compiled);
    } catch {
      // cannot tell (e.g. no room for the plan's scratch files): apply, which converges whatever the plan would say
      return undefined;
    }
    if (Object.values(plan.summary).some((n) => n > 0)) return undefined;
    return { revision: current.id, state: 'committed', durationMs: performance.now() - t0, steps: [], unchanged: true };
  }

  /** Under the apply lock nobody else is applying: a revision still "applying" was left by a process that died or could not record its end. */
  private closeStaleApplying(): void {
    for (const r of this.store.unfinished()) {
      if (r.state !== 'applying') continue;
      try {
        this.store.finish(r.id, 'interrupted', { ...(r.result as object | undefined), interrupted: 'found applying by a later apply: the process that applied it stopped or could not record its end' });
      } catch (e) {
        if (!(e instanceof StoreError)) throw e;
        this.emit('error', e);
      }
    }
  }

  private prune(): void {
    try {
      this.store.prune();
    } catch (e) {
      if (!(e instanceof StoreError)) throw e;
      this.emit('error', e);
    }
  }

  /**
   * A detached process that rolls `id` back at its deadline unless it was
   * confirmed or rolled back before: survives a kill -9 of this process.
   */
  private spawnGuard(id: number, deadline: string): void {
    if (!this.confirmGuard) return;
    const spec: GuardSpec = {
      storePath: this.store.path,
      lockPath: this.lockPath,
      host: this.host.opts,
      domains: this.domains.map((d) => d.module),
      subsystems: this.subsystems.map((s) => s.name),
      retention: this.store.retention,
      revision: id,
      deadline,
    };
    let log: number | 'ignore' = 'ignore';
    try {
      log = openSync(join(this.host.stateDir, 'confirm-guard.log'), 'a', 0o600);
    } catch {
      // no log (a full disk): the guard must run anyway
    }
    try {
      const child = spawn(process.execPath, [GUARD_SCRIPT, JSON.stringify(spec)], { detached: true, stdio: ['ignore', log, log] });
      child.on('error', (e) => this.emit('error', new Error(`confirm guard for revision ${id}: ${e.message}`)));
      child.unref();
    } finally {
      if (typeof log === 'number') closeSync(log);
    }
  }

  /** Applies every subsystem in order (but those in `skip`); stops at the first failure (when stopOnError). */
  private async converge(compiled: Compiled, stopOnError = false, skip: Unchanged = { checked: new Set(), same: new Set() }): Promise<StepResult[]> {
    const steps: StepResult[] = [];
    const total = this.subsystems.length;
    let foundationChanged = false;
    for (const [index, s] of this.subsystems.entries()) {
      // once links or interfaces change (devices may be recreated, ifindexes change), everything converges
      if (skip.checked.has(s.name) && !foundationChanged) {
        steps.push({ subsystem: s.name, ok: true, ms: 0, unchanged: true });
        continue;
      }
      if (FOUNDATION.has(s.name) && !skip.same.has(s.name)) foundationChanged = true;
      this.emit('progress', { phase: 'apply', subsystem: s.name, index, total });
      const changes: Change[] = [];
      const step = await this.applyStep(s, compiled, changes);
      steps.push(step);
      this.emit('progress', { phase: 'step-done', subsystem: s.name, ok: step.ok, ms: step.ms, changes });
      if (!step.ok && stopOnError) break;
    }
    return steps;
  }

  /**
   * Subsystems an apply of `compiled` can leave alone: their compiled part
   * equals that of the revision the kernel runs, and the drift loop checked
   * them clean against that revision after this engine last touched the
   * kernel. Most applies change one domain; converging every other one again
   * meant ~14 `ip`/`nft` processes per one-rule change, ~1 s here. Nothing
   * is skipped without such a check (a CLI in --direct mode, a server whose
   * loop has not run since the last apply, reconcile: off), for a subsystem
   * without a drift check, or one the check found drifted: those converge
   * as always. Drift that happens after the check is the drift loop's to
   * find and repair, as it is between applies. Once links or interfaces
   * run (a device recreated, an ifindex changed), every later subsystem
   * converges (FOUNDATION).
   *
   * This engine's own last apply vouches as a check would, as of its end:
   * it converged every subsystem it ran (and the others were vouched for),
   * so when nothing touched the kernel since, an apply right after it (no
   * drift check in between yet) leaves alone what it does not change
   * (routes, interfaces, gateways: 50-100 ms of a 10k-prefix swap here).
   */
  private unchangedSubsystems(compiled: Compiled): Unchanged {
    const out: Unchanged = { checked: new Set(), same: new Set() };
    const clean = this.cleanState?.();
    // only where a drift loop runs (it finds and repairs what changes between applies)
    if (!clean || (clean.state !== 'ok' && clean.state !== 'drift')) return out;
    let running: number | null | undefined;
    try {
      running = this.store.running();
    } catch {
      return out;
    }
    if (clean.revision === null || Date.parse(clean.checkedAt) < this.lastTouched || running !== clean.revision) {
      const c = this.lastConverged;
      if (!c || c.at < this.lastTouched || running !== c.revision) return out;
      for (const s of this.subsystems) {
        if (!s.drift || !c.names.has(s.name) || !c.desired.has(s)) continue;
        if (!sameDesired(c.desired.of(s), compiled.desired.of(s))) continue;
        out.same.add(s.name);
        out.checked.add(s.name);
      }
      return out;
    }
    const drifted = new Set(clean.items.map((i) => i.subsystem));
    for (const s of this.subsystems) {
      if (drifted.has(s.name) || !clean.desired.has(s)) continue;
      if (!sameDesired(clean.desired.of(s), compiled.desired.of(s))) continue;
      out.same.add(s.name);
      if (clean.checked.includes(s.name)) out.checked.add(s.name);
    }
    return out;
  }

  /**
   * Converges one subsystem to `compiled`: computes its steps against the
   * running system (exactly what plan prints) and runs them in order; the
   * outcome, never a throw. The one step loop for apply, rollback, repair and
   * start-up reconciliation.
   */
  private async applyStep(s: Subsystem, compiled: Compiled, ran: Change[] = []): Promise<StepResult> {
    const t0 = performance.now();
    try {
      const steps = await s.steps(compiled.desired.of(s), this.host);
      trace(`engine: ${s.name} planned`);
      for (const step of steps) {
        ran.push(...step.changes);
        await step.run();
      }
      trace(`engine: ${s.name} applied`);
      return { subsystem: s.name, ok: true, ms: performance.now() - t0 };
    } catch (e) {
      return { subsystem: s.name, ok: false, ms: performance.now() - t0, error: (e as Error).message };
    } finally {
      this.lastTouched = Date.now();
    }
  }

  /** Converges `touched` (already in reverse order) to the last committed revision, or to the empty config. */
  private async restoreCommitted(touched: readonly Subsystem[], prepared?: PreparedRestore): Promise<{ rollback: StepResult[]; to: number | undefined }> {
    const current = this.store.current();
    let compiled: Compiled;
    try {
      compiled = prepared && prepared.revision === current?.id ? prepared.compiled : await this.compile({ document: current?.config ?? {}, allowEmpty: true });
    } catch (e) {
      return { rollback: touched.map((s) => ({ subsystem: s.name, ok: false, ms: 0, error: `cannot compile revision ${current?.id}: ${(e as Error).message}` })), to: current?.id };
    }
    const rollback: StepResult[] = [];
    for (const [index, s] of touched.entries()) {
      this.emit('progress', { phase: 'rollback', subsystem: s.name, index, total: touched.length });
      rollback.push(await this.applyStep(s, compiled));
    }
    this.running = current?.id;
    this.compiledRunning = current && rollback.every((r) => r.ok) ? { revision: current.id, compiled } : undefined;
    try {
      this.store.setRunning(current?.id ?? null);
    } catch (e) {
      if (!(e instanceof StoreError)) throw e;
      this.emit('error', e);
    }
    return { rollback, to: current?.id };
  }

  private armConfirmTimer(id: number, ms: number, reason: string): void {
    this.clearConfirmTimer();
    this.confirmTimer = setTimeout(() => {
      this.confirmTimer = undefined;
      this.expireConfirmation(id, reason).catch((e) => this.emit('error', e));
    }, ms);
  }

  private clearConfirmTimer(): void {
    if (this.confirmTimer) clearTimeout(this.confirmTimer);
    this.confirmTimer = undefined;
  }

  /** Rolls an unconfirmed revision back; undefined when it was confirmed first. */
  private async expireConfirmation(id: number, reason: string, prepared?: PreparedRestore): Promise<ApplyReport | undefined> {
    return this.exclusive(true, () => this.expireLocked(id, reason, prepared));
  }

  /** expireConfirmation with the apply lock held. */
  private async expireLocked(id: number, reason: string, prepared?: PreparedRestore): Promise<ApplyReport | undefined> {
    // whoever flips the state first wins: a concurrent confirm or this rollback
    let storeError: StoreError | undefined;
    try {
      if (!this.store.transition(id, 'confirming', 'rolled_back')) return undefined;
    } catch (e) {
      if (!(e instanceof StoreError)) throw e;
      // the deadline holds even when the store cannot say so: roll the kernel back; the next start or guard does it again (idempotent)
      if (this.store.get(id)?.state !== 'confirming') return undefined;
      storeError = e;
    }
    this.clearConfirmTimer();
    const started = performance.now();
    const { rollback, to } = await this.restoreCommitted([...this.subsystems].reverse(), prepared);
    const previous = (this.store.get(id)?.result ?? {}) as ApplyReport;
    const report: ApplyReport = { ...previous, revision: id, state: 'rolled_back', durationMs: performance.now() - started, rollback, rolledBackTo: to ?? null, error: reason };
    if (storeError) report.error = `${reason}; the store could not record it (${storeError.message})`;
    try {
      this.store.finish(id, 'rolled_back', report);
    } catch (e) {
      if (!(e instanceof StoreError)) throw e;
      this.emit('error', e);
    }
    this.emit('applied', report);
    return report;
  }

  /** One apply at a time, in this process and across processes. `wait`: queue instead of refusing. */
  private async exclusive<T>(wait: boolean, fn: () => Promise<T>): Promise<T> {
    while (this.busy) {
      // a drift repair is short and converges to the committed revision: an apply waits for it
      if (!wait && !this.repairing) throw new ConflictError('another apply is in progress');
      await new Promise((r) => setTimeout(r, 50));
    }
    this.busy = true;
    try {
      this.lockDb ??= openLockDb(this.lockPath);
      for (let tries = 0; ; tries++) {
        try {
          this.lockDb.exec('BEGIN EXCLUSIVE');
          break;
        } catch (e) {
          if ((e as { code?: string }).code !== 'SQLITE_BUSY') throw e;
          if (!wait || tries > 600) throw new ConflictError('another Patronus process is applying a configuration');
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      try {
        return await fn();
      } finally {
        this.lockDb.exec('COMMIT');
      }
    } finally {
      this.busy = false;
    }
  }
}

/** The committed revision compiled ahead of a rollback (see Engine.prepareRestore). */
export interface PreparedRestore {
  revision: number | undefined;
  compiled: Compiled;
}

/** What the guard process needs to act on the same host, namespace, state dir and subsystems (see guard.ts). */
export interface GuardSpec {
  storePath: string;
  lockPath: string;
  host: { netns?: string; stateDir: string; bpfRoot?: string };
  /** the engine's domains (Domain.module) */
  domains: string[];
  subsystems: string[];
  retention: { keep?: number; days?: number };
  revision: number;
  deadline: string;
}

const GUARD_SCRIPT = fileURLToPath(new URL('./guard.js', import.meta.url));

/** Above this many values a document takes ~100 ms or more to compile (~10 µs a prefix). */
const HEAVY_VALUES = 10_000;
/** the same for text: ~15 bytes a value */
const HEAVY_TEXT = 256 * 1024;

/** How long a spare compile worker waits for a job before it is stopped (keepSpareWorker). */
export const SPARE_IDLE_MS = 30_000;

/**
 * Whether compiling `source` may stall an event loop: many values, or alias
 * files / a GeoIP database (their size is unknown until read). A bounded
 * walk: it stops at the first sign.
 */
export function heavyToCompile(source: ConfigSource): boolean {
  if ('bytes' in source) return source.bytes.byteLength > HEAVY_TEXT || /\b(files|geoip)\b/.test(sourceText(source));
  if ('text' in source) return source.text.length > HEAVY_TEXT || /\b(files|geoip)\b/.test(source.text);
  let budget = HEAVY_VALUES;
  const stack: unknown[] = [source.document];
  while (stack.length) {
    const v = stack.pop();
    if (--budget < 0) return true;
    if (Array.isArray(v)) {
      if (v.length > budget) return true;
      for (const x of v) stack.push(x);
    } else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if ((k === 'files' || k === 'geoip') && x !== undefined && x !== null && !(Array.isArray(x) && x.length === 0)) return true;
        stack.push(x);
      }
    }
  }
  return false;
}

/** Deep-equality results by object pair: an apply compares the same compiled parts in check() and again when it applies (seconds for 10^6 prefixes). */
const equalPairs = new WeakMap<object, WeakMap<object, boolean>>();

function sameDesired(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (!a || !b || typeof a !== 'object' || typeof b !== 'object') return isDeepStrictEqual(a, b);
  let inner = equalPairs.get(a);
  const known = inner?.get(b);
  if (known !== undefined) return known;
  const eq = deepEqual(a, b);
  if (!inner) equalPairs.set(a, (inner = new WeakMap()));
  inner.set(b, eq);
  return eq;
}

/**
 * isDeepStrictEqual for compiled parts, fast on what they are made of: plain
 * objects, arrays, Buffers and typed arrays (bytes compared natively; a
 * compiled fast path holds 10^6 entries of two Buffers each, where
 * isDeepStrictEqual spends ~3 µs per Buffer on its property checks). Any
 * other kind of value goes to isDeepStrictEqual itself.
 */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return isDeepStrictEqual(a, b);
  if (ArrayBuffer.isView(a) || ArrayBuffer.isView(b)) {
    if (!ArrayBuffer.isView(a) || !ArrayBuffer.isView(b) || a.constructor !== b.constructor || a.byteLength !== b.byteLength) return false;
    if (a instanceof DataView) return isDeepStrictEqual(a, b);
    return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  }
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length || Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
    for (let i = 0; i < a.length; i++) {
      if (!(i in a) || !(i in b)) return isDeepStrictEqual(a, b); // holes
      if (!deepEqual(a[i], b[i])) return false;
    }
    return Object.keys(a).length === a.length && Object.keys(b).length === b.length ? true : isDeepStrictEqual(a, b);
  }
  const pa = Object.getPrototypeOf(a);
  if ((pa !== Object.prototype && pa !== null) || Object.getPrototypeOf(b) !== pa) return isDeepStrictEqual(a, b);
  if (Object.getOwnPropertySymbols(a).length || Object.getOwnPropertySymbols(b).length) return isDeepStrictEqual(a, b);
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b, k)) return false;
    if (!deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}

function deadlinePassed(r: Revision): boolean {
  return !r.confirmDeadline || Date.parse(r.confirmDeadline) <= Date.now();
}

function openLockDb(path: string): Database.Database {
  closeSync(openSync(path, 'a', 0o600));
  const db = new Database(path);
  db.pragma('busy_timeout = 0');
  // no schema: BEGIN EXCLUSIVE locks even an empty database file (and creating one would itself need the lock)
  return db;
}

/** sha256 over every subsystem's changes, in order. */
export function planFingerprint(subsystems: readonly SubsystemPlan[]): string {
  return createHash('sha256').update(JSON.stringify(subsystems.map((p) => [p.subsystem, p.changes]))).digest('hex');
}

/** `config` as seen by one compile: notes each top-level section it reads (spreading it reads all). */
function recordReads<T extends object>(config: T, reads: Set<string>): T {
  return new Proxy(config, {
    get(target, key, receiver) {
      if (typeof key === 'string') reads.add(key);
      return Reflect.get(target, key, receiver);
    },
    ownKeys(target) {
      for (const k of Reflect.ownKeys(target)) if (typeof k === 'string') reads.add(k);
      return Reflect.ownKeys(target);
    },
  });
}
