/**
 * Families with one series per rule (patronus_rule_packets_total and the
 * like: 10^4 series at 10k nftables rules), written as exposition text here
 * instead of by prom-client. prom-client builds a label object per series at
 * every scrape, hashes it, and formats and escapes its labels again when it
 * writes the text (~70 ms of a 10k-rule scrape, docs/bench-control.md). A
 * TextFamily keeps each series' head (`name{label="value",...} `) from the
 * last scrape and rebuilds only the heads whose label values changed (an
 * apply that changed the rules); a scrape of an unchanged rule set only
 * writes the numbers.
 *
 * The text is what prom-client writes for the same series (same HELP/TYPE
 * lines, label escaping, number format, order of first appearance; series
 * with the same labels are summed, as Counter.inc sums them), so
 * `promtool check metrics` holds (test/integration/serve_process.test.ts;
 * the text against prom-client's own: test/unit/metrics_text_family.test.ts).
 * `TextRegistry` is the prom-client Registry that asks such a family for its
 * text; every other metric is written by prom-client as before.
 */
import { Registry, type Metric, type MetricObjectWithValues, type MetricValue } from 'prom-client';

/** Emits one series: its label values (in labelNames order) and its value. */
export type Emit = (labelValues: readonly string[], value: number | bigint) => void;

export class TextFamily {
  readonly aggregator = 'sum';
  // the last scrape's series: label values (labelNames.length per series) and the head built from them
  private labels: string[] = [];
  private heads: string[] = [];
  /** whether the heads are known to be distinct (checked again whenever one is rebuilt) */
  private distinct = true;

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge',
    readonly labelNames: readonly string[],
    /** fills one scrape's series through emit (awaits the scrape's snapshot) */
    private readonly fill: (emit: Emit) => Promise<void>,
  ) {}

  /** The family in the text exposition format (no trailing newline, as prom-client's per-metric text). */
  async text(): Promise<string> {
    const { heads, values } = await this.collect();
    const lines = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`];
    if (this.distinct) for (let i = 0; i < heads.length; i++) lines.push(heads[i]! + formatValue(values[i]!));
    else for (const [head, value] of sumByHead(heads, values)) lines.push(head + formatValue(value));
    return lines.join('\n');
  }

  /** Registry.resetMetrics(): nothing to reset (every scrape fills the family anew). */
  reset(): void {}

  /** prom-client's metric object (Registry.getMetricsAsJSON and other readers of get()). */
  async get(): Promise<MetricObjectWithValues<MetricValue<string>>> {
    const { count, values } = await this.collect();
    const byHead = new Map<string, MetricValue<string>>();
    for (let i = 0; i < count; i++) {
      const labels: Record<string, string> = {};
      this.labelNames.forEach((l, j) => (labels[l] = this.labels[i * this.labelNames.length + j]!));
      const head = this.heads[i]!;
      const known = byHead.get(head);
      if (known) known.value += values[i]!;
      else byHead.set(head, { value: values[i]!, labels });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: [...byHead.values()] } as unknown as MetricObjectWithValues<MetricValue<string>>;
  }

  private async collect(): Promise<{ heads: readonly string[]; values: number[]; count: number }> {
    const k = this.labelNames.length;
    const values: number[] = [];
    let changed = false;
    await this.fill((labelValues, value) => {
      const i = values.length;
      values.push(Number(value));
      let same = i < this.heads.length;
      for (let j = 0; same && j < k; j++) same = this.labels[i * k + j] === labelValues[j];
      if (same) return;
      for (let j = 0; j < k; j++) this.labels[i * k + j] = labelValues[j]!;
      this.heads[i] = `${this.name}{${this.labelNames.map((l, j) => `${l}="${escapeLabelValue(labelValues[j]!)}"`).join(',')}} `;
      changed = true;
    });
    if (values.length !== this.heads.length) {
      this.heads.length = values.length;
      this.labels.length = values.length * k;
    }
    if (changed) this.distinct = new Set(this.heads).size === this.heads.length;
    return { heads: this.heads, values, count: values.length };
  }
}

/** prom-client's Registry, except that a TextFamily writes its own text. */
export class TextRegistry extends Registry {
  override async metrics(): Promise<string> {
    const parts = await Promise.all(this.getMetricsAsArray().map((m: unknown) => (m instanceof TextFamily ? m.text() : this.getSingleMetricAsString((m as { name: string }).name))));
    return `${parts.join('\n\n')}\n`;
  }

  /** Registers a family (prom-client's registerMetric, which only needs name, get() and the rest of the metric shape). */
  registerFamily(family: TextFamily): TextFamily {
    this.registerMetric(family as unknown as Metric);
    return family;
  }
}

function sumByHead(heads: readonly string[], values: readonly number[]): Map<string, number> {
  const out = new Map<string, number>();
  for (let i = 0; i < heads.length; i++) out.set(heads[i]!, (out.get(heads[i]!) ?? 0) + values[i]!);
  return out;
}

/** As prom-client writes a value. */
function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'Nan';
  if (!Number.isFinite(v)) return v < 0 ? '-Inf' : '+Inf';
  return `${v}`;
}

function escapeHelp(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function escapeLabelValue(s: string): string {
  return escapeHelp(s).replace(/"/g, '\\"');
}
