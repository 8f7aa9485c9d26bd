/**
 * Patronus' own XDP fast path as a bench path: the rule set becomes one
 * fast-path rule "drop from these source prefixes" compiled by
 * src/fastpath/compile.ts and written through FastpathDataPlane, so install
 * and swap measure the real compile + shadow-generation write + switch.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { inNetns } from '../../src/system/netns.js';
import { compileFastpath } from '../../src/fastpath/compile.js';
import { FastpathDataPlane, removePins } from '../../src/fastpath/dataplane.js';
import { fastpathSchema } from '../../src/fastpath/schema.js';
import type { FastpathConfig } from '../../src/fastpath/schema.js';
import type { PathContext } from './paths.js';
import { LPM_MAX } from './paths.js';
import type { RuleListPath } from './sidebyside.js';
import type { RuleSet } from './workload.js';

export async function createPatronusPath(ctx: PathContext): Promise<RuleListPath | string> {
  const pinDir = mkdtempSync('/sys/fs/bpf/pt-bench-fp-');
  let dp: FastpathDataPlane;
  try {
    dp = await FastpathDataPlane.open({ pinDir, capacity: { prefixes: LPM_MAX, portPrefixes: 1024, rateLimitSources: 1024, blocklist: 1024 }, inNetns: (fn) => inNetns(ctx.receiver.name, fn) });
  } catch (e) {
    rmSync(pinDir, { recursive: true, force: true });
    return `fast path did not load: ${(e as Error).message}`;
  }
  // bpf_prog_test_run classifies as if received on lo (ifindex 1): configure it too, never attach there
  const ifindexOf = (n: string) => (n === ctx.dev ? ctx.ifindex : 1);
  const compile = (rules: FastpathConfig['rules']) => {
    const fastpath = fastpathSchema.parse({
      interfaces: [{ name: ctx.dev, mode: 'native' }, { name: 'lo' }],
      rules,
      capacity: { prefixes: LPM_MAX, portPrefixes: 1024, rateLimitSources: 1024, blocklist: 1024 },
    });
    const { desired, issues } = compileFastpath({ fastpath, aliases: new Map() });
    if (issues.length) throw new Error(`fast path compile: ${issues.map((i) => i.message).join('; ')}`);
    return desired;
  };
  let attached = false;
  const installRules = async (rules: FastpathConfig['rules']) => {
    const t0 = performance.now();
    const desired = compile(rules);
    await dp.apply(desired, ifindexOf);
    if (!attached) {
      await dp.attach(desired.interfaces.filter((i) => i.name === ctx.dev), ifindexOf);
      attached = true;
    }
    return (performance.now() - t0) / 1000;
  };
  const install = (rules: RuleSet) => installRules(rules.prefixes.length ? [{ name: 'bench-drop', source: rules.prefixes, action: 'drop', direction: 'in', interfaces: [] }] : []);
  return {
    id: 'xdp-patronus',
    label: 'XDP, Patronus fast path',
    install,
    installRules,
    swap: install, // every apply is hitless (shadow generation + atomic switch)
    async drops() {
      return Number(dp.verdictCounters().ingress.rule_drop.packets);
    },
    async classifierNs(frame: Buffer, repeat: number) {
      return (await dp.xdp.testRun({ data: frame, repeat })).duration;
    },
    async remove() {
      if (attached) await dp.attach([], ifindexOf, [ctx.ifindex]);
      attached = false;
    },
    async close() {
      dp.destroy([ctx.ifindex]);
      removePins(pinDir);
      rmSync(pinDir, { recursive: true, force: true });
    },
  };
}
