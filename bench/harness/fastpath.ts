/**
 * Patronus' own XDP fast path as a bench path, through its public API:
 * compileFastpath (config section -> map contents) and FastpathDataPlane
 * (load, attach, hitless apply, counters). Install and swap times are what
 * an operator waits for: compile + apply.
 *
 * The bench's rule set "drop these N source prefixes" is one fast-path rule
 * with N source prefixes (the way an operator blocks a list, directly or
 * through an alias), per family.
 *
 * For the classifier-alone timing (bpf_prog_test_run, whose packets arrive on
 * the loopback device of the namespace the run happens in, ifindex 1) the
 * same rule set is also written for a pseudo interface resolved to ifindex
 * 1; the program is attached only to the receiver's real interface.
 */
import { mkdtempSync, existsSync } from 'node:fs';
import path from 'node:path';
import { inNetns } from '../../src/bpf/index.js';
import { compileFastpath } from '../../src/fastpath/compile.js';
import { FastpathDataPlane, removePins } from '../../src/fastpath/dataplane.js';
import { fastpathSchema } from '../../src/fastpath/schema.js';
import type { FilterPath, PathContext } from './paths.js';
import type { RuleSet } from './workload.js';

const TEST_RUN_IFACE = 'bench-testrun';

export async function createPatronusPath(ctx: PathContext): Promise<FilterPath | string> {
  if (!existsSync('/sys/fs/bpf')) return 'bpffs is not mounted at /sys/fs/bpf';
  return PatronusPath.create(ctx);
}

class PatronusPath implements FilterPath {
  readonly id = 'xdp-patronus';
  readonly label = 'Patronus XDP fast path';
  private attached = false;

  private constructor(
    private readonly ctx: PathContext,
    private readonly dp: FastpathDataPlane,
    private readonly pinRoot: string,
  ) {}

  static async create(ctx: PathContext): Promise<PatronusPath> {
    const pinRoot = mkdtempSync('/sys/fs/bpf/pt-bench-');
    try {
      const dp = await FastpathDataPlane.open({
        pinDir: path.join(pinRoot, 'fastpath'),
        capacity: { prefixes: 262_144 },
        inNetns: (fn) => inNetns(ctx.receiver.name, fn),
      });
      return new PatronusPath(ctx, dp, pinRoot);
    } catch (e) {
      removePins(path.join(pinRoot, 'fastpath'));
      removePins(pinRoot);
      throw e;
    }
  }

  private compile(rules: RuleSet) {
    const config = fastpathSchema.parse({
      interfaces: [
        { name: this.ctx.dev, mode: 'native' },
        { name: TEST_RUN_IFACE, mode: 'native' },
      ],
      rules: rules.prefixes.length ? [{ name: `bench-drop-v${rules.family}`, source: rules.prefixes, action: 'drop' }] : [],
      capacity: { prefixes: 262_144 },
    });
    const { desired, issues } = compileFastpath({ fastpath: config, aliases: new Map() });
    if (issues.length) throw new Error(`xdp-patronus: the fast path refused the bench rule set: ${issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    return desired;
  }

  private ifindexOf = (name: string): number => (name === TEST_RUN_IFACE ? 1 : this.ctx.ifindex);

  async install(rules: RuleSet): Promise<number> {
    const t0 = performance.now();
    const desired = this.compile(rules);
    await this.dp.apply(desired, this.ifindexOf);
    if (!this.attached) {
      await this.dp.attach(
        desired.interfaces.filter((i) => i.name === this.ctx.dev),
        this.ifindexOf,
      );
      this.attached = true;
    }
    return (performance.now() - t0) / 1000;
  }

  /** The fast path's own update is hitless (shadow generation + one switch), so a swap is an install. */
  async swap(rules: RuleSet): Promise<number> {
    return this.install(rules);
  }

  async drops(): Promise<number> {
    return Number(this.dp.verdictCounters().ingress.rule_drop.packets);
  }

  async classifierNs(frame: Buffer, repeat: number): Promise<number> {
    const r = await this.dp.xdp.testRun({ data: frame, repeat });
    return r.duration;
  }

  async remove(): Promise<void> {
    if (!this.attached) return;
    await this.dp.attach([], this.ifindexOf, [this.ctx.ifindex]);
    this.attached = false;
  }

  async close(): Promise<void> {
    try {
      this.dp.destroy([this.ctx.ifindex]);
    } finally {
      removePins(this.pinRoot);
    }
  }
}
