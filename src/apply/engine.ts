/**
 * The engine behind every way an operator changes Patronus (REST, CLI,
 * start-up): validate -> plan -> apply as one transaction, with revisions in
 * the store, rollback, commit-confirm and start-up reconciliation.
 *
 * Apply runs the subsystems in registry order. If a step throws, every
 * subsystem already touched (the failing one included: it may be half done)
 * is converged back to the last committed revision, in reverse order, and
 * the error names the failing step. Because Subsystem.apply converges from
 * any state, rollback, reconciliation and apply are the same operation with
 * a different target.
 *
 * One apply at a time: an in-process mutex plus an exclusive SQLite lock on
 * a side file, so two processes (the server and a CLI in --direct mode)
 * never drive the kernel at once; the OS drops that lock if a process dies.
 */
import { EventEmitter } from 'node:events';
import Database from 'better-sqlite3';
import { dirname, join } from 'node:path';
import { subsystems as registry } from './registry.js';
import type { Change, CompileContext, ServiceOpening, Subsystem } from './subsystem.js';
import { validateDocument, type Validated } from '../config/document.js';
import { ConfigError, type Issue } from '../config/issues.js';
import { parseConfigText, readTextFile, type ConfigFormat } from '../config/load.js';
import type { FileReader } from '../aliases/aliases.js';
import type { Host } from '../system/host.js';
import type { Revision, RevisionState, Store } from '../store/store.js';

/** A configuration as text (YAML/JSON, parsed here) or as an already-parsed document. */
export type ConfigSource = { text: string; format?: ConfigFormat } | { document: unknown };

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
}

export interface SubsystemPlan {
  subsystem: string;
  changes: Change[];
}

export interface Plan {
  subsystems: SubsystemPlan[];
  summary: Record<Change['action'], number>;
}

export type ProgressEvent =
  | { phase: 'validate' }
  | { phase: 'apply' | 'rollback'; subsystem: string; index: number; total: number }
  | { phase: 'step-done'; subsystem: string; ok: boolean; ms: number };

export interface EngineOptions {
  host: Host;
  store: Store;
  /** default: every registered subsystem, in apply order */
  subsystems?: readonly Subsystem<any>[];
  readFile?: FileReader;
  /** side file for the cross-process apply lock; default next to the store */
  lockPath?: string;
}

/** 409: the operation conflicts with what is going on (apply running, confirmation pending). */
export class ConflictError extends Error {
  override name = 'ConflictError';
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
  validated: Validated;
  document: unknown;
  desired: Map<string, unknown>;
}

export class Engine extends EventEmitter<{ applied: [ApplyReport]; progress: [ProgressEvent]; error: [Error] }> {
  readonly host: Host;
  readonly store: Store;
  readonly subsystems: readonly Subsystem<any>[];
  private readonly readFile: FileReader;
  private readonly lockPath: string;
  private busy = false;
  private lockDb: Database.Database | undefined;
  private confirmTimer: NodeJS.Timeout | undefined;
  /** revision the kernel was last converged to (undefined: unknown / empty) */
  private running: number | undefined;
  private lastReconcile: { at: string; ok: boolean; error?: string } | undefined;

  constructor(opts: EngineOptions) {
    super();
    this.host = opts.host;
    this.store = opts.store;
    this.subsystems = opts.subsystems ?? registry;
    this.readFile = opts.readFile ?? readTextFile;
    this.lockPath = opts.lockPath ?? join(dirname(opts.store.path === ':memory:' ? join(opts.host.stateDir, 'x') : opts.store.path), 'apply.lock');
  }

  /** Parse, schema, aliases, every subsystem's compile and validate: all issues at once. */
  async check(source: ConfigSource): Promise<{ compiled?: Compiled; issues: Issue[] }> {
    let document: unknown;
    if ('text' in source) {
      const parsed = parseConfigText(source.text, source.format);
      if (parsed.issues.length) return { issues: parsed.issues };
      document = parsed.value;
    } else document = source.document;

    const { compiled, issues } = this.compileDocument(document);
    if (!compiled) return { issues };
    const { desired } = compiled;
    const probed = await Promise.all(
      this.subsystems.map(async (s) => {
        if (!s.validate) return [];
        try {
          return await s.validate(desired.get(s.name), this.host);
        } catch (e) {
          return [{ path: [s.name], message: `validation failed: ${(e as Error).message}` }];
        }
      }),
    );
    const probeIssues = probed.flat();
    if (probeIssues.length) return { issues: probeIssues };
    return { compiled, issues: [] };
  }

  /**
   * Schema, aliases and every subsystem's compile, without the machine
   * probes of validate(): what a stored revision asks of each subsystem,
   * even while the machine has drifted away from it (the drift check).
   */
  compileDocument(document: unknown): { compiled?: Compiled; issues: Issue[] } {
    const { validated, issues } = validateDocument(document, this.readFile);
    if (!validated) return { issues };
    const ctx: CompileContext = {
      config: validated.config,
      aliases: validated.aliases,
      openings: this.openings(validated),
      readFile: this.readFile,
    };
    const desired = new Map<string, unknown>();
    const all: Issue[] = [];
    for (const s of this.subsystems) {
      try {
        const out = s.compile(ctx);
        desired.set(s.name, out.desired);
        all.push(...out.issues);
      } catch (e) {
        all.push({ path: [s.name], message: `compile failed: ${(e as Error).message}` });
      }
    }
    if (all.length) return { issues: all };
    return { compiled: { validated, document, desired }, issues: [] };
  }

  /** Throws ConfigError with every issue. */
  async compile(source: ConfigSource): Promise<Compiled> {
    const { compiled, issues } = await this.check(source);
    if (!compiled) throw new ConfigError(issues);
    return compiled;
  }

  /** What apply would change, per subsystem, read against the running system. */
  async plan(source: ConfigSource): Promise<Plan> {
    return this.planCompiled(await this.compile(source));
  }

  async planCompiled(compiled: Compiled): Promise<Plan> {
    const out: SubsystemPlan[] = [];
    for (const s of this.subsystems) {
      try {
        out.push({ subsystem: s.name, changes: await s.plan(compiled.desired.get(s.name), this.host) });
      } catch (e) {
        throw new Error(`plan: subsystem "${s.name}" failed: ${(e as Error).message}`);
      }
    }
    const summary = { add: 0, remove: 0, change: 0, reload: 0, restart: 0, start: 0, stop: 0 };
    for (const p of out) for (const c of p.changes) summary[c.action]++;
    return { subsystems: out, summary };
  }

  /**
   * Validates, records a revision, applies it to every subsystem. On failure
   * restores the last committed revision and throws ApplyError. With
   * confirmWithin, the revision stays "confirming" and rolls back by itself
   * unless confirm() is called in time.
   */
  async apply(source: ConfigSource, meta: ApplyMeta): Promise<ApplyReport> {
    const compiled = await this.compile(source);
    return this.exclusive(false, async () => {
      const pending = this.pendingConfirmation();
      if (pending) throw new ConflictError(`revision ${pending.id} awaits confirmation until ${pending.confirmDeadline}: confirm or roll it back first`);
      return this.applyCompiled(compiled, meta);
    });
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
    return this.apply({ document: target.config }, { author: opts.author, message: `rollback to revision ${target.id}` });
  }

  /**
   * Start-up: marks revisions a dead process left unfinished as interrupted,
   * then converges every subsystem to the last committed revision (or, with
   * an empty store, to `seed`, recorded as the first revision).
   */
  async reconcile(seed?: ConfigSource): Promise<{ revision?: number; report?: ApplyReport; error?: string }> {
    return this.exclusive(true, async () => {
      for (const r of this.store.unfinished()) {
        this.store.finish(r.id, 'interrupted', { ...(r.result as object | undefined), interrupted: `found ${r.state} at start-up: the process stopped before it finished` });
      }
      const current = this.store.current();
      try {
        if (current) {
          const compiled = await this.compile({ document: current.config });
          const steps = await this.converge(compiled);
          const failed = steps.find((s) => !s.ok);
          if (failed) throw new Error(`subsystem "${failed.subsystem}": ${failed.error}`);
          this.running = current.id;
          this.lastReconcile = { at: new Date().toISOString(), ok: true };
          return { revision: current.id };
        }
        // nothing committed: clear anything a first apply may have left, then seed
        const empty = await this.compile({ document: {} });
        await this.converge(empty);
        if (!seed) {
          this.lastReconcile = { at: new Date().toISOString(), ok: true };
          return {};
        }
        const report = await this.applyCompiled(await this.compile(seed), { author: 'patronus', message: 'embedded default configuration' });
        this.lastReconcile = { at: new Date().toISOString(), ok: true };
        return { revision: report.revision, report };
      } catch (e) {
        const error = e instanceof ApplyError || e instanceof ConfigError ? e.message : `reconcile failed: ${(e as Error).message}`;
        this.lastReconcile = { at: new Date().toISOString(), ok: false, error };
        return { error };
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

  status() {
    const current = this.store.current();
    const pending = this.pendingConfirmation();
    return {
      running: this.running ?? null,
      committed: current ? { id: current.id, author: current.author, message: current.message, createdAt: current.createdAt } : null,
      pendingConfirmation: pending ? { id: pending.id, deadline: pending.confirmDeadline } : null,
      applying: this.busy,
      reconcile: this.lastReconcile ?? null,
      subsystems: this.subsystems.map((s) => s.name),
    };
  }

  /** What /healthz needs, without reading any document from the store. */
  health(): { applying: boolean; reconcile: { at: string; ok: boolean; error?: string } | null } {
    return { applying: this.busy, reconcile: this.lastReconcile ?? null };
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
        const head = this.store.head();
        if ((head.confirming ?? head.committed) !== revision || head.applying) return undefined;
        const steps: StepResult[] = [];
        for (const s of this.subsystems) {
          if (!names.includes(s.name)) continue;
          const t0 = performance.now();
          try {
            await s.apply(compiled.desired.get(s.name), this.host);
            steps.push({ subsystem: s.name, ok: true, ms: performance.now() - t0 });
          } catch (e) {
            steps.push({ subsystem: s.name, ok: false, ms: performance.now() - t0, error: (e as Error).message });
          }
        }
        return steps;
      });
    } catch (e) {
      if (e instanceof ConflictError) return undefined;
      throw e;
    }
  }

  /** Stops the confirmation timer and releases the lock file (the store stays open: the caller owns it). */
  close(): void {
    this.clearConfirmTimer();
    this.lockDb?.close();
    this.lockDb = undefined;
  }

  // --- internals

  private openings(v: Validated): ServiceOpening[] {
    const out: ServiceOpening[] = [];
    for (const s of this.subsystems) if (s.openings) out.push(...s.openings(v.config));
    return out;
  }

  private async applyCompiled(compiled: Compiled, meta: ApplyMeta): Promise<ApplyReport> {
    const started = performance.now();
    const revision = this.store.createRevision({ author: meta.author, message: meta.message, config: compiled.document });
    this.emit('progress', { phase: 'validate' });
    const steps = await this.converge(compiled, true);
    const failed = steps.find((s) => !s.ok);
    const report: ApplyReport = { revision: revision.id, state: 'committed', durationMs: 0, steps };

    if (failed) {
      report.failedStep = failed.subsystem;
      report.error = failed.error;
      const touched = this.subsystems.slice(0, steps.length).reverse();
      const { rollback, to } = await this.restoreCommitted(touched);
      report.rollback = rollback;
      report.rolledBackTo = to ?? null;
      report.state = 'failed';
      report.durationMs = performance.now() - started;
      this.store.finish(revision.id, 'failed', report);
      this.emit('applied', report);
      throw new ApplyError(report);
    }

    if (meta.confirmWithin !== undefined) {
      const deadline = new Date(Date.now() + meta.confirmWithin * 1000);
      report.state = 'confirming';
      report.confirmDeadline = deadline.toISOString();
      report.durationMs = performance.now() - started;
      this.store.finish(revision.id, 'confirming', report, deadline);
      this.armConfirmTimer(revision.id, meta.confirmWithin * 1000);
    } else {
      report.durationMs = performance.now() - started;
      this.store.finish(revision.id, 'committed', report);
    }
    this.running = revision.id;
    this.emit('applied', report);
    return report;
  }

  /** Applies every subsystem in order; stops at the first failure (when stopOnError). */
  private async converge(compiled: Compiled, stopOnError = false): Promise<StepResult[]> {
    const steps: StepResult[] = [];
    const total = this.subsystems.length;
    for (const [index, s] of this.subsystems.entries()) {
      this.emit('progress', { phase: 'apply', subsystem: s.name, index, total });
      const t0 = performance.now();
      try {
        await s.apply(compiled.desired.get(s.name), this.host);
        steps.push({ subsystem: s.name, ok: true, ms: performance.now() - t0 });
      } catch (e) {
        steps.push({ subsystem: s.name, ok: false, ms: performance.now() - t0, error: (e as Error).message });
        this.emit('progress', { phase: 'step-done', subsystem: s.name, ok: false, ms: performance.now() - t0 });
        if (stopOnError) break;
        continue;
      }
      this.emit('progress', { phase: 'step-done', subsystem: s.name, ok: true, ms: performance.now() - t0 });
    }
    return steps;
  }

  /** Converges `touched` (already in reverse order) to the last committed revision, or to the empty config. */
  private async restoreCommitted(touched: readonly Subsystem<any>[]): Promise<{ rollback: StepResult[]; to: number | undefined }> {
    const current = this.store.current();
    let compiled: Compiled;
    try {
      compiled = await this.compile({ document: current?.config ?? {} });
    } catch (e) {
      return { rollback: touched.map((s) => ({ subsystem: s.name, ok: false, ms: 0, error: `cannot compile revision ${current?.id}: ${(e as Error).message}` })), to: current?.id };
    }
    const rollback: StepResult[] = [];
    for (const [index, s] of touched.entries()) {
      this.emit('progress', { phase: 'rollback', subsystem: s.name, index, total: touched.length });
      const t0 = performance.now();
      try {
        await s.apply(compiled.desired.get(s.name), this.host);
        rollback.push({ subsystem: s.name, ok: true, ms: performance.now() - t0 });
      } catch (e) {
        rollback.push({ subsystem: s.name, ok: false, ms: performance.now() - t0, error: (e as Error).message });
      }
    }
    this.running = current?.id;
    return { rollback, to: current?.id };
  }

  private armConfirmTimer(id: number, ms: number): void {
    this.clearConfirmTimer();
    this.confirmTimer = setTimeout(() => {
      this.confirmTimer = undefined;
      this.expireConfirmation(id, `not confirmed within ${ms / 1000} s`).catch((e) => this.emit('error', e));
    }, ms);
  }

  private clearConfirmTimer(): void {
    if (this.confirmTimer) clearTimeout(this.confirmTimer);
    this.confirmTimer = undefined;
  }

  /** Rolls an unconfirmed revision back; undefined when it was confirmed first. */
  private async expireConfirmation(id: number, reason: string): Promise<ApplyReport | undefined> {
    return this.exclusive(true, async () => {
      // whoever flips the state first wins: a concurrent confirm or this rollback
      if (!this.store.transition(id, 'confirming', 'rolled_back')) return undefined;
      this.clearConfirmTimer();
      const started = performance.now();
      const { rollback, to } = await this.restoreCommitted([...this.subsystems].reverse());
      const previous = (this.store.get(id)?.result ?? {}) as ApplyReport;
      const report: ApplyReport = { ...previous, revision: id, state: 'rolled_back', durationMs: performance.now() - started, rollback, rolledBackTo: to ?? null, error: reason };
      this.store.finish(id, 'rolled_back', report);
      this.emit('applied', report);
      return report;
    });
  }

  /** One apply at a time, in this process and across processes. `wait`: queue instead of refusing. */
  private async exclusive<T>(wait: boolean, fn: () => Promise<T>): Promise<T> {
    while (this.busy) {
      if (!wait) throw new ConflictError('another apply is in progress');
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

function openLockDb(path: string): Database.Database {
  const db = new Database(path);
  db.pragma('busy_timeout = 0');
  // no schema: BEGIN EXCLUSIVE locks even an empty database file (and creating one would itself need the lock)
  return db;
}
