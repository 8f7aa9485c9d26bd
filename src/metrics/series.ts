/**
 * How a domain adds series of its own to /metrics (Domain.metrics): it
 * declares counters and gauges whose values it fills, at each scrape, from
 * the metrics() its own subsystems returned in that scrape's one snapshot
 * (src/metrics/metrics.ts). Several domains may fill the same series (the
 * three VPNs fill patronus_vpn_*): the second declaration of a name adds its
 * fill to the first, with the same help and labels.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { SubsystemMetrics } from '../apply/subsystem.js';

/** One subsystem's metrics in a scrape. `M` is what the domain's subsystem returns (a SubsystemMetrics with fields of its own). */
export interface Reading<M extends SubsystemMetrics = SubsystemMetrics> {
  subsystem: string;
  m: M;
}

export interface DomainSeries {
  counter<L extends string, M extends SubsystemMetrics = SubsystemMetrics>(name: string, help: string, labelNames: L[], fill: (c: Counter<L>, readings: readonly Reading<M>[]) => void): void;
  gauge<L extends string, M extends SubsystemMetrics = SubsystemMetrics>(name: string, help: string, labelNames: L[], fill: (g: Gauge<L>, readings: readonly Reading<M>[]) => void): void;
}

/** The readings of one scrape, by subsystem name. */
export type ReadingsOf = (subsystems: ReadonlySet<string> | undefined) => Promise<readonly Reading[]>;

type Fill = (metric: any, readings: readonly Reading[]) => void;

/**
 * Series registered on `registry` whose collect() reads `readings` (the
 * scrape's snapshot). `subsystems` limits a declaration to the readings of
 * those subsystems (a domain's own); undefined: every subsystem's.
 */
export function seriesOn(registry: Registry, readings: ReadingsOf): (subsystems?: ReadonlySet<string>) => DomainSeries {
  const declared = new Map<string, { kind: 'counter' | 'gauge'; help: string; labels: string; fills: { fill: Fill; subsystems: ReadonlySet<string> | undefined }[] }>();
  const declare = (kind: 'counter' | 'gauge', name: string, help: string, labelNames: string[], fill: Fill, subsystems: ReadonlySet<string> | undefined) => {
    const known = declared.get(name);
    if (known) {
      if (known.kind !== kind || known.help !== help || known.labels !== labelNames.join(',')) throw new Error(`metric ${name} is declared twice with different kind, help or labels`);
      known.fills.push({ fill, subsystems });
      return;
    }
    const entry = { kind, help, labels: labelNames.join(','), fills: [{ fill, subsystems }] };
    declared.set(name, entry);
    async function collect(this: Counter<string> | Gauge<string>) {
      const all = await Promise.all(entry.fills.map((f) => readings(f.subsystems)));
      this.reset();
      entry.fills.forEach((f, i) => f.fill(this, all[i]!));
    }
    if (kind === 'counter') new Counter({ name, help, labelNames, registers: [registry], collect });
    else new Gauge({ name, help, labelNames, registers: [registry], collect });
  };
  return (subsystems) => ({
    counter: (name, help, labelNames, fill) => declare('counter', name, help, labelNames, fill as Fill, subsystems),
    gauge: (name, help, labelNames, fill) => declare('gauge', name, help, labelNames, fill as Fill, subsystems),
  });
}
