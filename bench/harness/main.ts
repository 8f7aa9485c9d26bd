/**
 * The data-plane benchmark: the same packets and the same rule set through
 * Patronus' XDP fast path, nftables netdev ingress (set, and one rule per
 * prefix) and nftables inet input/forward with conntrack, in one invocation.
 *
 *   node dist/bench/harness/main.js [--short] [--out DIR] [--counts 1,100,...]
 *        [--mixes 0,0.5,1] [--families 4,6] [--reps N] [--duration S]
 *        [--paths id,...] [--sources N] [--no-control-plane] [--side-by-side]
 *        [--rx-cpu N|same] [--no-bpf-stats]
 *   node dist/bench/harness/main.js --report DIR | --combine DIR,DIR,...
 *
 * --side-by-side measures issue 13's table instead of the curves: every
 * scenario once per round (shuffled order, --reps rounds) on one traffic mix
 * (bench/harness/sidebyside.ts), each target decided met / missed / undecided
 * from per-round paired ratios (bench/harness/decide.ts). There the receiver
 * runs in a threaded-NAPI kernel thread on its own CPU (--rx-cpu N; "same"
 * keeps it in the generator's softirq) and the kernel's BPF run-time stats
 * time the XDP program during each run (--no-bpf-stats to leave them off).
 * Paths xdp-const (PROTOTYPE: the rules as load-time constants,
 * constfilter.ts) and xdp-floor (a program that reads the Ethernet header and
 * drops) run only when --paths names them, and only side by side.
 *
 * Every figure is counted at the receiver. A run whose receiver-side
 * arithmetic does not add up (packets lost for a reason other than the
 * filter) stops the benchmark with the numbers that disagree.
 * Writes results.md, results.json and one SVG per figure under
 * bench/results/<timestamp>/ (or --out). A benchmark, never a test.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { hostname, cpus as osCpus, loadavg, release } from 'node:os';
import path from 'node:path';
import { projectRoot } from '../../src/bpf/addon.js';
import { createPatronusPath } from './fastpath.js';
import { NftPath, XdpFilterPath, XdpLpmPath, type FilterPath, type PathContext } from './paths.js';
import { fmt, fmtSI, si, markdownTable, summarize, svgPlot, type Series, type Summary } from './report.js';
import { readFile } from 'node:fs/promises';
import { Topology, diff, RX_DEV, DST4, DST6, TX_DEV, type RxCounters } from './topology.js';
import { TrafficGen, type GenResult } from './trafficgen.js';
import { frameTable, ruleSet, type Family, type FrameTable, type RuleSet } from './workload.js';
import { XdpConstPath } from './constfilter.js';
import { combinedReport, scenarios, sideBySideReport, type ScenarioRun } from './sidebyside.js';
import { roundOrder } from './decide.js';

/** A run in which the receiver's ring refused at least this share of the offered frames was receiver-bound. */
const RECEIVER_BOUND_SHARE = 0.02;

interface Plan {
  counts: number[];
  mixes: number[];
  families: Family[];
  reps: number;
  duration: number;
  sources: number;
  paths: string[] | undefined;
  /** the largest rule count the rule-per-prefix nftables path is run with */
  rulesMax: number;
  controlPlane: boolean;
  /** issue 13's side-by-side table instead of the rule-count curves */
  sideBySide: boolean;
  cpReps: number;
  genCpus: number[];
  /** threaded NAPI for the receiver, pinned to this CPU (undefined: the receive path runs in the generator's softirq) */
  rxCpu: number | undefined;
  /** kernel BPF run-time stats during each generator run (XDP program ns per packet) */
  bpfStats: boolean;
  /** the 1-minute load average when the run started (other tenants of the machine) */
  load1?: number;
  testRunRepeat: number;
  out: string;
}

/** One measured run at the receiver. */
interface Run {
  path: string;
  family: Family;
  rules: number;
  mix: number;
  gen: GenResult;
  d: RxCounters;
  rxPps: number;
  deliveredPps: number;
  droppedPps: number;
  cpuNsPerPacket: number;
  filterDrops: number;
  /** share of the offered frames the receiver's ring refused (> 0: the receiver was the bottleneck) */
  refusedShare: number;
}

export class AccountingError extends Error {}

// SIGINT/SIGTERM: stop at the next run boundary, so namespaces and pins are removed in `finally`
let interrupted: string | undefined;
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => (interrupted = sig));

const ALL_PATHS = ['xdp-patronus', 'xdp-lpm', 'xdp-filter', 'nft-netdev-set', 'nft-netdev-rules', 'nft-inet-ct', 'xdp-const', 'xdp-floor'];

async function main(): Promise<void> {
  const report = process.argv.indexOf('--report');
  if (report >= 0) return rewriteReport(process.argv[report + 1]);
  const combine = process.argv.indexOf('--combine');
  if (combine >= 0) return combineRuns(process.argv[combine + 1]);
  const plan = parseArgs(process.argv.slice(2));
  await mkdir(plan.out, { recursive: true });
  const started = new Date();
  const log = (s: string) => console.log(`[${((Date.now() - started.getTime()) / 1000).toFixed(0).padStart(4)}s] ${s}`);

  const topo = await Topology.create();
  if (plan.rxCpu !== undefined) {
    try {
      const pid = await topo.pinReceiver(plan.rxCpu);
      log(`receiver: threaded NAPI, kernel thread ${pid} pinned to CPU ${plan.rxCpu}; generator on CPU ${plan.genCpus.join(',')}`);
    } catch (e) {
      await topo.teardown();
      throw e;
    }
  }
  const gen = await TrafficGen.create(topo.sender, TX_DEV);
  const ctx: PathContext = { receiver: topo.receiver, dev: RX_DEV, ifindex: topo.rxIfindex };
  const paths: FilterPath[] = [];
  const skipped: { id: string; reason: string }[] = [];
  const runs: Run[] = [];
  const genLimit: { what: string; family: Family; pps: Summary; offered: Summary }[] = [];
  const classifier: { path: string; family: Family; rules: number; kind: 'match' | 'miss'; ns: Summary }[] = [];
  const cp: { figure: string; path: string; seconds: Summary; note?: string }[] = [];
  const sideBySide: ScenarioRun[] = [];
  const scenarioLabels: Record<string, string> = {};
  let failure: unknown;
  const ep = { srcMac: topo.txMac, dstMac: topo.rxMac, dst4: DST4, dst6: DST6 };

  try {
    const lpm = await XdpLpmPath.create(ctx);
    const want = (id: string) => !plan.paths || plan.paths.includes(id);
    const patronus = want('xdp-patronus') ? await createPatronusPath(ctx) : undefined;
    if (typeof patronus === 'string') skipped.push({ id: 'xdp-patronus', reason: patronus });
    else if (patronus) paths.push(patronus);
    if (want('xdp-lpm')) paths.push(lpm);
    if (want('xdp-filter')) {
      const xf = await XdpFilterPath.create(ctx);
      if (typeof xf === 'string') skipped.push({ id: 'xdp-filter', reason: xf });
      else paths.push(xf);
    }
    for (const mode of ['netdev-set', 'netdev-rules', 'inet-ct'] as const) if (want(`nft-${mode}`)) paths.push(await NftPath.create(ctx, mode));
    // PROTOTYPE and the floor: only when asked for by name
    for (const [id, floor] of [['xdp-const', false], ['xdp-floor', true]] as const) {
      if (!plan.paths?.includes(id)) continue;
      if (plan.sideBySide) paths.push(new XdpConstPath(ctx, floor));
      else skipped.push({ id, reason: 'side by side only (--side-by-side)' });
    }
    for (const s of skipped) log(`SKIP ${s.id}: ${s.reason}`);

    // 1. the generator's own limit: everything dropped by the cheapest XDP program there is;
    // measured at the start and again at the end, so drift on a shared machine shows
    const measureLimit = async (when: 'start' | 'end') => {
      log(`generator limit (${when}): XDP drop-everything (bench LPM trie with 0.0.0.0/0 and ::/0)`);
      for (const family of plan.families) {
        const all: RuleSet = { family, prefixes: [family === 4 ? '0.0.0.0/0' : '::/0'] };
        await lpm.install(all);
        const frames = frameTable(ruleSet(family, 1), plan.sources, 0, ep);
        for (const [what, isStatic] of [['prepared frames, many sources', false], ['one unchanged frame', true]] as const) {
          const rx: number[] = [];
          const offered: number[] = [];
          for (let r = 0; r < plan.reps; r++) {
            const run = await measure(topo, gen, lpm, all, frames, 1, plan, isStatic);
            rx.push(run.rxPps);
            offered.push(run.gen.pps);
          }
          genLimit.push({ what: `${what}, ${when} of run`, family, pps: summarize(rx), offered: summarize(offered) });
          log(`  IPv${family} ${what}: ${fmt(summarize(rx), 1e6)} Mpps at the receiver`);
        }
        await lpm.remove();
      }
    };
    await measureLimit('start');

    if (plan.sideBySide) {
      // one traffic table for every scenario: 4096 sources over the 100k-prefix set, all dropped
      const big = ruleSet(4, 100_000);
      const frames = frameTable(big, plan.sources, 1, ep);
      const list = scenarios(paths, DST4);
      for (const sc of list) scenarioLabels[sc.id] = sc.label;
      // rounds: every scenario once per round, in a shuffled order, so drift between rounds cancels
      // in the per-round ratios (bench/harness/decide.ts)
      for (let r = 0; r < plan.reps; r++) {
        const order = roundOrder(list.map((sc) => sc.id), r);
        log(`round ${r + 1}/${plan.reps} (load ${loadavg()[0]!.toFixed(1)}): ${order.join(' ')}`);
        for (const id of order) {
          const sc = list.find((x) => x.id === id)!;
          const secs = await sc.install();
          const p0 = plan.bpfStats ? await topo.xdpProgStats() : undefined;
          const run = await measure(topo, gen, sc.path, big, frames, 1, plan, false);
          const p1 = p0 ? await topo.xdpProgStats() : undefined;
          const progNs = p0 && p1 && p1.id === p0.id && p1.runCnt > p0.runCnt ? (p1.runTimeNs - p0.runTimeNs) / (p1.runCnt - p0.runCnt) : NaN;
          runs.push(run);
          sideBySide.push({
            round: r,
            scenario: sc.id,
            rxPps: run.rxPps,
            cpuNsPerPacket: run.cpuNsPerPacket,
            rxNsPerPacket: run.cpuNsPerPacket,
            progNsPerPacket: progNs,
            receiverBound: run.refusedShare >= RECEIVER_BOUND_SHARE,
            refusedShare: run.refusedShare,
            offeredPps: run.gen.pps,
            load1: loadavg()[0]!,
          });
          log(
            `  ${sc.label}: installed in ${secs.toFixed(2)} s, ${(run.rxPps / 1e6).toFixed(3)} Mpps taken, ${pct(run.refusedShare)} refused, ` +
              `${run.cpuNsPerPacket.toFixed(0)} ns receiver CPU/pkt, ${Number.isFinite(progNs) ? progNs.toFixed(0) : '–'} ns XDP program/pkt`,
          );
          await sc.path.remove();
        }
      }
    }

    // 2. throughput and receiver CPU, every path, every rule count, every mix. The
    // repetitions are interleaved (rep 1 of every path, then rep 2, ...), so a
    // busy stretch on a shared machine spreads over the paths instead of
    // landing on one; each repetition installs the rule set afresh.
    for (const family of plan.sideBySide ? [] : plan.families) {
      for (const n of plan.counts) {
        const rules = ruleSet(family, n);
        const tables = plan.mixes.map((mix) => frameTable(rules, plan.sources, mix, ep));
        const here = paths.filter((p) => !(p.id === 'nft-netdev-rules' && n > plan.rulesMax) && !p.unsupported?.(rules));
        for (let r = 0; r < plan.reps; r++) {
          for (const p of here) {
            const secs = await p.install(rules);
            log(`IPv${family} ${n} prefixes, ${p.id}, rep ${r + 1}: installed in ${secs.toFixed(2)} s`);
            for (const [i, mix] of plan.mixes.entries()) {
              const run = await measure(topo, gen, p, rules, tables[i]!, mix, plan, false);
              runs.push(run);
              log(`  mix ${pct(mix)}: ${(run.rxPps / 1e6).toFixed(3)} Mpps in, ${(run.droppedPps / 1e6).toFixed(3)} dropped, ${run.cpuNsPerPacket.toFixed(0)} ns CPU/pkt`);
            }
            if (p.classifierNs && r === plan.reps - 1) {
              const t = tables.find((x) => x.sampleMatch) ?? tables[0]!;
              for (const kind of ['match', 'miss'] as const) {
                const frame = kind === 'match' ? t.sampleMatch : t.sampleMiss;
                if (!frame) continue;
                const ns: number[] = [];
                for (let k = 0; k < plan.reps; k++) ns.push(await p.classifierNs(frame, plan.testRunRepeat));
                classifier.push({ path: p.id, family, rules: n, kind, ns: summarize(ns) });
              }
            }
            await p.remove();
          }
        }
      }
    }
    await measureLimit('end');

    // 3. control plane
    if (plan.controlPlane && !plan.sideBySide) {
      log('control plane');
      const v4 = (n: number, off = 0) => ruleSet(4, n, off);
      for (const p of paths.filter((x) => !x.unsupported?.(v4(10_000)))) {
        const load: number[] = [];
        const apply: number[] = [];
        for (let r = 0; r < plan.cpReps; r++) {
          if (p.id !== 'nft-netdev-rules') {
            await p.remove();
            load.push(await p.install(v4(100_000)));
          }
          await p.remove();
          apply.push(await p.install(v4(10_000)));
        }
        await p.remove();
        if (load.length) cp.push({ figure: 'load 100k prefixes', path: p.id, seconds: summarize(load) });
        cp.push({ figure: 'apply 10k rules', path: p.id, seconds: summarize(apply) });
        log(`  ${p.id}: 100k prefixes ${fmt(summarize(load), 1, 3)} s, 10k rules ${fmt(summarize(apply), 1, 3)} s`);
      }
      // swap A -> B (disjoint 10k sets) while the generator runs; traffic half inside A
      for (const p of paths.filter((x) => !x.unsupported?.(v4(10_000)))) {
        const a = v4(10_000);
        const b = v4(10_000, 10_000);
        const frames = frameTable(a, plan.sources, 0.5, ep);
        const swaps: number[] = [];
        let note = '';
        for (let r = 0; r < plan.cpReps; r++) {
          if (interrupted) throw new Error(`interrupted by ${interrupted}`);
          await p.install(a);
          await p.beforeRun?.();
          const c0 = await topo.counters(plan.genCpus);
          const run = gen.start(frames, { duration: Math.max(1.5, plan.duration), cpus: plan.genCpus });
          await sleep(500);
          swaps.push(await p.swap(b));
          const g = await run.done;
          await sleep(100);
          const d = diff(c0, await topo.counters(plan.genCpus));
          checkTransport(g, d, `${p.id} swap under traffic`);
          // after the swap A's sources pass: some but not all of the matching half was dropped
          const dropped = d.rx - d.delivered;
          if (dropped < 0 || dropped > d.rx * 0.5 + 256) {
            throw new AccountingError(`${p.id} swap under traffic: ${dropped} of ${d.rx} dropped, at most half can match A`);
          }
          note = `${(d.rx / g.seconds / 1e6).toFixed(2)} Mpps during the run, ${pct(dropped / d.rx)} dropped`;
          await p.remove();
        }
        cp.push({ figure: 'swap 10k-prefix set under traffic', path: p.id, seconds: summarize(swaps), note });
        log(`  ${p.id}: swap under traffic ${fmt(summarize(swaps), 1, 3)} s (${note})`);
      }
    }
  } catch (e) {
    failure = e;
  } finally {
    for (const p of paths) await p.close().catch((e) => console.error(`# close ${p.id}: ${e}`));
    await gen.close();
    await topo.teardown();
  }

  const md = await writeResults(plan, started, { runs, genLimit, classifier, cp, sideBySide, scenarioLabels, skipped, paths: paths.map((p) => ({ id: p.id, label: p.label })), failure });
  console.log('\n' + md);
  console.log(`results: ${plan.out}`);
  if (failure) {
    console.error(`\nBENCHMARK STOPPED: ${failure instanceof Error ? failure.message : String(failure)}`);
    process.exitCode = 1;
  }
}

/** One run: counters before, generator, counters after, and the receiver's books checked. */
async function measure(topo: Topology, gen: TrafficGen, p: FilterPath, rules: RuleSet, frames: FrameTable, mix: number, plan: Plan, isStatic: boolean): Promise<Run> {
  if (interrupted) throw new Error(`interrupted by ${interrupted}`);
  await p.beforeRun?.();
  const drops0 = p.drops ? await p.drops() : NaN;
  const c0 = await topo.counters(plan.genCpus);
  const g = await gen.run(frames, { duration: plan.duration, cpus: plan.genCpus, static: isStatic, bpfStats: plan.bpfStats });
  await sleep(50); // anything ksoftirqd still holds
  let c1 = await topo.counters(plan.genCpus);
  // a threaded receiver may still hold frames in its ring (up to 256) when the generator exits
  for (const deadline = Date.now() + 3000; plan.rxCpu !== undefined && c1.rx - c0.rx < c1.xmit - c0.xmit && Date.now() < deadline; ) {
    await sleep(20);
    c1 = await topo.counters(plan.genCpus);
  }
  const drops1 = p.drops ? await p.drops() : NaN;
  const d = diff(c0, c1);
  const what = `${p.id} IPv${rules.family} ${rules.prefixes.length} prefixes mix ${pct(mix)}`;
  checkTransport(g, d, what);
  const dropped = d.rx - d.delivered;
  // the static frame is always the table's first frame; prepared frames carry the table's share
  const dropAll = rules.prefixes.some((x) => x.endsWith('/0'));
  const expected = dropAll ? 1 : isStatic ? (frames.matching && mix > 0 ? 1 : 0) : frames.matching / frames.count;
  const tolerance = 0.01 + frames.count / Math.max(d.rx, 1);
  if (dropped < 0 || Math.abs(dropped / d.rx - expected) > tolerance) {
    throw new AccountingError(
      `${what}: the receiver took ${d.rx} frames, ${d.delivered} reached UDP, so ${dropped} (${pct(dropped / d.rx)}) were dropped, ` +
        `but the filter should drop ${pct(expected)}: packets were lost (or passed) for a reason other than the filter`,
    );
  }
  const filterDrops = drops1 - drops0;
  if (Number.isFinite(filterDrops) && Math.abs(filterDrops - dropped) > 64 + dropped * 0.001) {
    throw new AccountingError(`${what}: the filter counted ${filterDrops} drops, the receiver's books say ${dropped}`);
  }
  return {
    path: p.id,
    family: rules.family,
    rules: rules.prefixes.length,
    mix,
    gen: g,
    d,
    rxPps: d.rx / g.seconds,
    deliveredPps: d.delivered / g.seconds,
    droppedPps: dropped / g.seconds,
    // threaded receiver: its NAPI thread's own time; else the generator CPU's softirq time
    cpuNsPerPacket: ((plan.rxCpu !== undefined ? d.rxThreadSeconds : d.softirqSeconds) * 1e9) / d.rx,
    filterDrops,
    refusedShare: d.xmitErrors / Math.max(d.xmit + d.xmitErrors, 1),
  };
}

/** What the generator offered must be what the sending veth handled, and what it handed over must be what the receiver took. */
function checkTransport(g: GenResult, d: RxCounters, what: string): void {
  if (g.sent > 0 && d.rx === 0) {
    throw new AccountingError(`${what}: the generator sent ${g.sent} frames and the receiver took none (GRO off and no XDP program at the receiver?)`);
  }
  if (Math.abs(d.xmit + d.xmitErrors - g.sent) > 64 + g.sent * 0.001) {
    throw new AccountingError(`${what}: the generator sent ${g.sent}, the sending veth handled ${d.xmit} + ${d.xmitErrors} refused`);
  }
  if (Math.abs(d.rx - d.xmit) > 64 + d.xmit * 0.001) {
    throw new AccountingError(`${what}: the sending veth handed over ${d.xmit} frames, the receiver took ${d.rx}`);
  }
}

interface Collected {
  runs: Run[];
  genLimit: { what: string; family: Family; pps: Summary; offered: Summary }[];
  classifier: { path: string; family: Family; rules: number; kind: 'match' | 'miss'; ns: Summary }[];
  cp: { figure: string; path: string; seconds: Summary; note?: string }[];
  sideBySide?: ScenarioRun[];
  scenarioLabels?: Record<string, string>;
  skipped: { id: string; reason: string }[];
  paths: { id: string; label: string }[];
  failure: unknown;
}

async function writeResults(plan: Plan, started: Date, c: Collected): Promise<string> {
  const parts: string[] = [];
  const cpuModel = osCpus()[0]?.model ?? 'unknown CPU';
  const label = (id: string) => c.paths.find((p) => p.id === id)?.label ?? id;
  parts.push(`# Patronus data-plane benchmark\n`);
  parts.push(
    `${started.toISOString()} on ${hostname()}: Linux ${release()}, ${osCpus().length} × ${cpuModel}. ` +
      `${plan.reps} repetitions of ${plan.duration} s per point (interleaved across paths), ${plan.sources} distinct source addresses per run, ` +
      `64-byte UDP frames, one generator thread on CPU ${plan.genCpus.join(',')}, ` +
      (plan.rxCpu !== undefined
        ? `the receiver's NAPI poll in its own kernel thread on CPU ${plan.rxCpu} (threaded NAPI; receiver CPU per packet is that thread's time). `
        : `the receiver's NAPI poll in the generator's softirq on the same CPU. `) +
      (plan.bpfStats ? 'Kernel BPF run-time stats on during each generator run (BPF_ENABLE_STATS, off between runs). ' : '') +
      (plan.load1 !== undefined ? `Load average (1 min) at the start: ${plan.load1.toFixed(1)}. ` : '') +
      `Cells are "median (min–max)". All packet counts are taken at the receiver.\n`,
  );
  if (c.failure) parts.push(`**The run stopped early:** ${c.failure instanceof Error ? c.failure.message : String(c.failure)}\n`);
  for (const s of c.skipped) parts.push(`- not measured: **${s.id}**: ${s.reason}`);
  if (c.skipped.length) parts.push('');

  parts.push(`## Generator limit\n`);
  parts.push('Packets/s the receiver took while an XDP program dropped everything, at the start and at the end of the run: near this no path can be told apart.\n');
  parts.push(markdownTable(['family', 'frames', 'packets/s at receiver', 'packets/s offered'], c.genLimit.map((g) => [`IPv${g.family}`, g.what, fmtSI(g.pps), fmtSI(g.offered)])));
  // the plots' reference line: the lower of the start and end limits with many sources
  const limit = Math.min(...c.genLimit.filter((g) => g.what.startsWith('prepared')).map((g) => g.pps.median));

  const files: Record<string, string> = {};
  let decided: unknown;
  if (c.sideBySide?.length) {
    const r = sideBySideReport(c.sideBySide, c.scenarioLabels ?? {});
    parts.push(r.md);
    files['side-by-side.svg'] = r.svg;
    files['side-by-side-targets.svg'] = r.targetsSvg;
    decided = r.targets;
  }
  for (const family of plan.sideBySide ? [] : plan.families) {
    for (const mix of plan.mixes) {
      const rs = c.runs.filter((r) => r.family === family && r.mix === mix);
      if (!rs.length) continue;
      const ids = [...new Set(rs.map((r) => r.path))];
      const cell = (id: string, n: number, f: (r: Run) => number, unit = '') => fmtSI(summarize(rs.filter((r) => r.path === id && r.rules === n).map(f)), unit);
      const counts = plan.counts.filter((n) => rs.some((r) => r.rules === n));
      parts.push(`## IPv${family}, ${pct(mix)} of the traffic matching\n`);
      parts.push(`Packets/s the receiver took (delivered + dropped):\n`);
      parts.push(markdownTable(['path', ...counts.map((n) => `${n.toLocaleString('en')} prefixes`)], ids.map((id) => [label(id), ...counts.map((n) => cell(id, n, (r) => r.rxPps))])));
      parts.push(`\nPackets/s delivered to UDP / dropped by the filter (medians):\n`);
      parts.push(
        markdownTable(
          ['path', ...counts.map((n) => `${n.toLocaleString('en')}`)],
          ids.map((id) => [label(id), ...counts.map((n) => {
            const here = rs.filter((r) => r.path === id && r.rules === n);
            // a path that cannot take this rule set (xdp-filter above 39 prefixes) has no runs
            return here.length ? `${si(summarize(here.map((r) => r.deliveredPps)).median)} / ${si(summarize(here.map((r) => r.droppedPps)).median)}` : '–';
          })]),
        ),
      );
      parts.push(`\nReceiver CPU time per packet (softirq + ksoftirqd time of the generator's CPU / packets taken):\n`);
      parts.push(markdownTable(['path', ...counts.map((n) => `${n.toLocaleString('en')}`)], ids.map((id) => [label(id), ...counts.map((n) => cell(id, n, (r) => r.cpuNsPerPacket / 1e9, 's'))])));
      const series = (f: (r: Run) => number): Series[] =>
        ids.map((id) => ({ label: label(id), points: counts.map((n) => ({ x: n, y: summarize(rs.filter((r) => r.path === id && r.rules === n).map(f)) })) }));
      const tag = `v${family}-match${Math.round(mix * 100)}`;
      files[`pps-${tag}.svg`] = svgPlot({
        title: `Packets/s at the receiver — IPv${family}, ${pct(mix)} matching`,
        xLabel: 'prefixes in the rule set',
        yLabel: 'packets/s taken by the receiver',
        logX: true,
        logY: true,
        ...(Number.isFinite(limit) ? { ref: { y: limit, label: 'generator limit' } } : {}),
        series: series((r) => r.rxPps),
      });
      files[`cpu-${tag}.svg`] = svgPlot({
        title: `Receiver CPU per packet — IPv${family}, ${pct(mix)} matching`,
        xLabel: 'prefixes in the rule set',
        yLabel: 'ns of CPU per packet',
        logX: true,
        logY: true,
        series: series((r) => r.cpuNsPerPacket),
      });
      parts.push(`\n![packets/s](pps-${tag}.svg) ![CPU per packet](cpu-${tag}.svg)\n`);
    }
  }

  if (c.classifier.length) {
    parts.push(`## XDP classifier alone, in-kernel ns per packet (bpf_prog_test_run, repeat ${plan.testRunRepeat})\n`);
    const keys = [...new Set(c.classifier.map((x) => `${x.path}|${x.family}|${x.kind}`))];
    const counts = [...new Set(c.classifier.map((x) => x.rules))].sort((a, b) => a - b);
    parts.push(
      markdownTable(
        ['path', 'family', 'packet', ...counts.map((n) => `${n.toLocaleString('en')}`)],
        keys.map((k) => {
          const [id, fam, kind] = k.split('|');
          return [label(id!), `IPv${fam}`, kind!, ...counts.map((n) => fmt(c.classifier.find((x) => `${x.path}|${x.family}|${x.kind}` === k && x.rules === n)?.ns ?? summarize([]), 1, 0))];
        }),
      ),
    );
    files['classifier-ns.svg'] = svgPlot({
      title: 'XDP classifier alone: ns per packet (bpf_prog_test_run)',
      xLabel: 'prefixes in the rule set',
      yLabel: 'ns per packet',
      logX: true,
      series: keys.map((k) => {
        const [id, fam, kind] = k.split('|');
        return { label: `${id} v${fam} ${kind}`, points: c.classifier.filter((x) => `${x.path}|${x.family}|${x.kind}` === k).map((x) => ({ x: x.rules, y: x.ns })) };
      }),
    });
    parts.push(`\n![classifier](classifier-ns.svg)\n`);
  }

  if (c.cp.length) {
    parts.push(`## Control plane, seconds\n`);
    parts.push(markdownTable(['figure', 'path', 'seconds', 'note'], c.cp.map((x) => [x.figure, label(x.path), fmt(x.seconds, 1, 3), x.note ?? ''])));
    const figs = [...new Set(c.cp.map((x) => x.figure))];
    files['control-plane.svg'] = svgPlot({
      title: 'Control plane: seconds per operation',
      xLabel: 'operation (1 = load 100k prefixes, 2 = apply 10k rules, 3 = swap 10k under traffic)',
      yLabel: 'seconds',
      logY: true,
      series: [...new Set(c.cp.map((x) => x.path))].map((id) => ({
        label: label(id),
        points: c.cp.filter((x) => x.path === id).map((x) => ({ x: figs.indexOf(x.figure) + 1, y: x.seconds })),
      })),
    });
    parts.push(`\n![control plane](control-plane.svg)\n`);
  }

  parts.push(`## How this was measured\n`);
  parts.push(
    [
      '- Sender and receiver are two fresh network namespaces joined by one veth pair. The generator (bench/trafficgen) sends prepared frames with ' +
        '`bpf_prog_test_run` in live-frames mode on an XDP_TX program (ctx ingress_ifindex = the sending veth), one source address per frame.',
      plan.rxCpu !== undefined
        ? `- The receiving veth has GRO on and threaded NAPI: its receive path (XDP, stack, nftables) runs in one kernel thread pinned to CPU ${plan.rxCpu}, the generator on CPU ${plan.genCpus.join(',')}. ` +
          'When the receiver is slower than the generator its ring overflows and the sending veth counts the refused frames: such a run is receiver-bound, and its packet rate measures the receiver.'
        : '- The receiving veth has GRO on and non-threaded NAPI: its receive path (XDP, stack, nftables) runs in softirq on the generator\'s CPU right after each batch of 64.',
      '- "Taken by the receiver" is the receiving veth\'s rx_queue_0_xdp_packets; "delivered" is UDP InDatagrams + NoPorts (+ IPv6) in the receiver namespace; ' +
        '"dropped" is their difference, which must equal the share of matching frames (and the filter\'s own counter where it has one), or the benchmark stops.',
      plan.rxCpu !== undefined
        ? '- Receiver CPU per packet is the NAPI thread\'s own CPU time during the run (/proc/PID/schedstat, ns) divided by packets taken: other tenants\' work is not in it.'
        : '- Receiver CPU per packet is the softirq time plus ksoftirqd time of the generator\'s CPU during the run (the receive path runs there) divided by packets taken. ' +
          'Other tenants\' softirq work on that CPU is included: this kernel has no kprobes and no fentry programs to time the veth poll alone.',
      ...(plan.bpfStats
        ? ['- XDP program per packet: the attached program\'s run_time_ns / run_cnt from the kernel\'s BPF stats, switched on only while the generator runs (BPF_ENABLE_STATS, released when it exits); for xdp-filter that is libxdp\'s dispatcher with xdp-filter\'s program in it. The stats add two clock reads to every program run, alike for every XDP row.']
        : []),
      '- Rule sets drop source prefixes (IPv4 /24, IPv6 /48, every other one); non-matching sources sit in the gaps between them.',
    ].join('\n') + '\n',
  );
  const md = parts.join('\n');
  await writeFile(path.join(plan.out, 'results.md'), md);
  for (const [name, svg] of Object.entries(files)) await writeFile(path.join(plan.out, name), svg);
  await writeFile(
    path.join(plan.out, 'results.json'),
    JSON.stringify({ plan, started: started.toISOString(), host: hostname(), kernel: release(), cpu: cpuModel, ...c, ...(decided ? { targets: decided } : {}), failure: c.failure ? String(c.failure) : undefined }, null, 1),
  );
  return md;
}

/** --report DIR: writes results.md and the plots again from DIR/results.json (no measurement). */
async function rewriteReport(dir: string | undefined): Promise<void> {
  if (!dir) throw new Error('--report needs the results folder');
  const j = JSON.parse(await readFile(path.join(dir, 'results.json'), 'utf8')) as Collected & { plan: Plan; started: string };
  const md = await writeResults({ ...j.plan, out: dir }, new Date(j.started), { ...j, failure: j.failure ? new Error(String(j.failure).replace(/^\w*Error: /, '')) : undefined });
  console.log(md);
}

/** --combine DIR,DIR,...: issue 13's targets over several side-by-side runs (no measurement); prints the table. */
async function combineRuns(dirs: string | undefined): Promise<void> {
  if (!dirs) throw new Error('--combine needs side-by-side results folders, comma-separated');
  const runs = [];
  for (const dir of dirs.split(',')) {
    const j = JSON.parse(await readFile(path.join(dir, 'results.json'), 'utf8')) as Collected & { started: string };
    if (!j.sideBySide?.length) throw new Error(`--combine: ${dir}/results.json holds no side-by-side runs`);
    runs.push({ name: `${path.basename(dir)} (${j.started.slice(11, 16)} UTC)`, runs: j.sideBySide });
  }
  console.log(combinedReport(runs).md);
}

function parseArgs(argv: string[]): Plan {
  const short = argv.includes('--short');
  const get = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const nums = (s: string | undefined, d: number[]) => (s ? s.split(',').map(Number) : d);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace(/-\d+Z$/, 'Z');
  const plan: Plan = {
    counts: nums(get('--counts'), short ? [1, 100, 1000] : [1, 100, 1000, 10_000, 100_000]),
    mixes: nums(get('--mixes'), short ? [0.5] : [0, 0.5, 1]),
    families: nums(get('--families'), argv.includes('--side-by-side') ? [4] : [4, 6]) as Family[],
    reps: Number(get('--reps') ?? (short ? 2 : 3)),
    duration: Number(get('--duration') ?? (short ? 1 : 2)),
    sources: Number(get('--sources') ?? 4096),
    paths: get('--paths')?.split(','),
    rulesMax: Number(get('--rules-max') ?? (short ? 1000 : 100_000)),
    controlPlane: !argv.includes('--no-control-plane'),
    sideBySide: argv.includes('--side-by-side'),
    cpReps: short ? 1 : 3,
    genCpus: nums(get('--gen-cpus'), [0]),
    // side by side: the receiver on its own CPU by default (its CPU time per packet varied 2-4x less
    // between rounds than the generator CPU's softirq time did; docs/benchmarks.md)
    rxCpu: get('--rx-cpu') === 'same' ? undefined : get('--rx-cpu') !== undefined ? Number(get('--rx-cpu')) : undefined,
    bpfStats: argv.includes('--side-by-side') && !argv.includes('--no-bpf-stats'),
    load1: loadavg()[0]!,
    testRunRepeat: short ? 200_000 : 1_000_000,
    out: get('--out') ?? path.join(projectRoot(), 'bench/results', stamp),
  };
  if (plan.sideBySide && get('--rx-cpu') === undefined) {
    const free = osCpus().map((_, i) => i).find((i) => !plan.genCpus.includes(i));
    if (free !== undefined) plan.rxCpu = free;
  }
  for (const p of plan.paths ?? []) if (!ALL_PATHS.includes(p)) throw new Error(`--paths: unknown path "${p}" (known: ${ALL_PATHS.join(', ')})`);
  for (const f of plan.families) if (f !== 4 && f !== 6) throw new Error(`--families: ${f} is not 4 or 6`);
  for (const m of plan.mixes) if (!(m >= 0 && m <= 1)) throw new Error(`--mixes: ${m} is not between 0 and 1`);
  for (const n of plan.counts) if (!(Number.isInteger(n) && n >= 1 && n <= 200_000)) throw new Error(`--counts: ${n} is not an integer in 1..200000`);
  if (plan.rxCpu !== undefined && !(Number.isInteger(plan.rxCpu) && plan.rxCpu >= 0 && plan.rxCpu < osCpus().length)) throw new Error(`--rx-cpu: ${get('--rx-cpu')} is not "same" or a CPU number below ${osCpus().length}`);
  if (!(plan.sources >= 1 && plan.sources <= 65536)) throw new Error(`--sources: ${plan.sources} is not in 1..65536`);
  return plan;
}

function pct(x: number): string {
  return `${+(x * 100).toFixed(1)} %`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

main().catch((e) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exit(1);
});
