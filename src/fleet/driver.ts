/**
 * The agent's NodeDriver over the real engine: the same apply, commit-confirm
 * and rollback as `patronus apply --confirm-within`, the drift monitor for
 * the drift half of the health check, the document's probes for the rest.
 */
import type { Engine } from '../apply/engine.js';
import type { DriftMonitor } from '../drift/monitor.js';
import type { Metrics } from '../metrics/metrics.js';
import type { NodeDriver } from './agent.js';
import type { NodeInfo } from './model.js';
import { healthCheck, healthOf } from './health.js';

export const FLEET_AUTHOR = 'fleet';

export class EngineDriver implements NodeDriver {
  private counters: NodeInfo['counters'];
  private countersAt = 0;

  constructor(
    private readonly engine: Engine,
    private readonly drift: DriftMonitor,
    private readonly metrics?: Metrics,
  ) {}

  async apply(document: unknown, meta: { message: string; confirmWithin: number }) {
    const r = await this.engine.apply({ document }, { author: FLEET_AUTHOR, message: meta.message, confirmWithin: meta.confirmWithin });
    return { revision: r.revision, ...(r.unchanged ? { unchanged: true } : {}) };
  }

  async health(document: unknown) {
    return healthCheck({
      host: this.engine.host,
      health: healthOf(document),
      drift: async () => {
        const d = await this.drift.check({ maxAgeMs: 0 });
        return d.state === 'drift' ? d.items.map((i) => `${i.subsystem} ${i.object}: ${i.reason}`).join('; ') : '';
      },
    });
  }

  async confirm(revision: number): Promise<void> {
    const pending = this.engine.pendingConfirmation();
    if (pending?.id !== revision) throw new Error(`revision ${revision} no longer awaits confirmation (rolled back by its deadline?)`);
    await this.engine.confirm();
  }

  async rollBack(revision: number, reason: string): Promise<number | null> {
    const r = await this.engine.expireIfPending(revision, reason);
    if (!r) throw new Error(`revision ${revision} no longer awaits confirmation`);
    return r.rolledBackTo ?? null;
  }

  info(): Pick<NodeInfo, 'revision' | 'rollout' | 'drift' | 'health' | 'counters'> {
    const s = this.engine.status();
    const h = this.engine.health();
    const committed = s.committed;
    const rollout = committed?.author === FLEET_AUTHOR ? /^fleet rollout ([^\s:]+)/.exec(committed.message)?.[1] : undefined;
    this.refreshCounters();
    return {
      revision: s.running,
      ...(rollout ? { rollout } : {}),
      drift: this.drift.lastReport?.state ?? 'unknown',
      health: (h.reconcile && !h.reconcile.ok) || !h.store.ok ? 'degraded' : 'ok',
      ...(this.counters ? { counters: this.counters } : {}),
    };
  }

  /** Rule counters summed, read at most every 30 s in the background (a scrape's worth of work). */
  private refreshCounters(): void {
    if (!this.metrics || Date.now() - this.countersAt < 30_000) return;
    this.countersAt = Date.now();
    this.metrics
      .snapshot()
      .then((s) => {
        let rules = 0;
        let packets = 0;
        let bytes = 0;
        for (const x of s.bySubsystem)
          for (const r of x.metrics?.rules ?? []) {
            rules++;
            packets += Number(r.packets);
            bytes += Number(r.bytes);
          }
        this.counters = { rules, packets, bytes };
      })
      .catch(() => undefined);
  }
}
