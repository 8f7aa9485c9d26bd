/**
 * The issue-13 table: every path once, side by side in one run, on the same
 * traffic: 64-byte UDP from 4096 distinct sources spread over the 100k-prefix
 * rule set (so "1 prefix" and "100k prefixes" see the same packets, and
 * flatness compares like with like), every frame dropped, counted at the
 * receiver. Each scenario is a path plus how it is given its rule set:
 *
 *   xdp-lpm       one LPM trie lookup; 1 prefix (16.0.0.0/6, covering all sources) and 100k /24s
 *   xdp-filter    one rule: drop to the receiver's address (it matches exact addresses,
 *                 so "drop from 4096 sources" would be 4096 rules; one destination rule
 *                 is its one-hash-lookup case, the -f ipv4 variant)
 *   xdp-patronus  one rule on 16.0.0.0/6; one rule whose source list holds 100k /24s
 *                 (what an alias of 100k networks compiles to); 1023 non-matching rules
 *                 (prefixes, ports, protocols) ahead of the /6 drop rule
 *                 the same rule with xdp-filter's default feature set (`xdp-filter load DEV`)
 *   xdp-const     PROTOTYPE (constfilter.ts): the rules as load-time constants; the /6 rule,
 *                 and five non-matching rules (eight atoms) ahead of it
 *   xdp-floor     a program that reads the Ethernet header and drops: the least any XDP program costs
 *   nft-netdev-set, nft-inet-ct   1 prefix and 100k /24s
 *
 * Writes its own section (table, targets decided per round, plots) into results.md.
 */
import type { FastpathConfig } from '../../src/fastpath/schema.js';
import type { FilterPath } from './paths.js';
import { markdownTable, fmtSI, si, summarize, type Summary } from './report.js';
import { acrossRuns, decideTarget, ISSUE13_TARGETS, medianInterval, pairedRatios, type Interval, type RoundSample, type TargetResult, type Verdict } from './decide.js';
import { ruleSet, type RuleSet } from './workload.js';
import { rules1024 as sharedRules1024, rulesSmall } from './rules.js';

export const COVER_ALL = '16.0.0.0/6'; // ruleSet(4, 100k) spans 16.0.0.0–19.13.x: one prefix over all of it

export interface Scenario {
  id: string;
  label: string;
  path: FilterPath;
  install(): Promise<number>;
}

/** The Patronus bench path can also install a whole rule list (the 1024-rule case). */
export interface RuleListPath extends FilterPath {
  installRules(rules: FastpathConfig['rules']): Promise<number>;
}

export interface DestinationRulePath extends FilterPath {
  /** features: xdp-filter's -f (undefined: its default feature set, what `xdp-filter load DEV` gives) */
  installDestination(address: string, features?: string): Promise<number>;
}

/** 1023 rules no frame of the workload matches (prefixes, ports, protocols), then the drop rule on COVER_ALL. */
export const rules1024 = (): FastpathConfig['rules'] => sharedRules1024(COVER_ALL, 'bench-drop');

export function scenarios(paths: FilterPath[], dst4: string): Scenario[] {
  const by = (id: string) => paths.find((p) => p.id === id);
  const one: RuleSet = { family: 4, prefixes: [COVER_ALL] };
  const big = ruleSet(4, 100_000);
  const out: Scenario[] = [];
  const lpm = by('xdp-lpm');
  if (lpm) {
    out.push({ id: 'lpm-1', label: 'single-LPM reference, 1 prefix', path: lpm, install: () => lpm.install(one) });
    out.push({ id: 'lpm-100k', label: 'single-LPM reference, 100k prefixes', path: lpm, install: () => lpm.install(big) });
  }
  const xf = by('xdp-filter') as DestinationRulePath | undefined;
  if (xf) {
    out.push({ id: 'xdp-filter-1', label: 'xdp-filter (-f ipv4), 1 rule', path: xf, install: () => xf.installDestination(dst4, 'ipv4') });
    out.push({ id: 'xdp-filter-default-1', label: 'xdp-filter (default features), 1 rule', path: xf, install: () => xf.installDestination(dst4, undefined) });
  }
  const pt = by('xdp-patronus') as RuleListPath | undefined;
  if (pt) {
    out.push({ id: 'patronus-1', label: 'Patronus, 1 rule (1 prefix)', path: pt, install: () => pt.install(one) });
    out.push({ id: 'patronus-100k', label: 'Patronus, 1 rule, 100k-prefix alias', path: pt, install: () => pt.install(big) });
    out.push({ id: 'patronus-1024', label: 'Patronus, 1024 rules', path: pt, install: () => pt.installRules(rules1024()) });
  }
  const cst = by('xdp-const') as RuleListPath | undefined;
  if (cst) {
    out.push({ id: 'const-1', label: 'PROTOTYPE constant rules, 1 rule (1 prefix)', path: cst, install: () => cst.install(one) });
    out.push({ id: 'const-8', label: 'PROTOTYPE constant rules, 6 rules (8 atoms)', path: cst, install: () => cst.installRules(rulesSmall(COVER_ALL, 'bench-drop')) });
  }
  const floor = by('xdp-floor');
  if (floor) out.push({ id: 'floor', label: 'floor: XDP program reading the Ethernet header, drop', path: floor, install: () => floor.install(one) });
  for (const [id, name] of [['nft-netdev-set', 'nftables netdev ingress set'], ['nft-inet-ct', 'nftables inet + conntrack, set']] as const) {
    const p = by(id);
    if (!p) continue;
    out.push({ id: `${id}-1`, label: `${name}, 1 prefix`, path: p, install: () => p.install(one) });
    out.push({ id: `${id}-100k`, label: `${name}, 100k prefixes`, path: p, install: () => p.install(big) });
  }
  return out;
}

export interface ScenarioRun {
  /** the round (every scenario once per round); older results without it are numbered by repetition */
  round?: number;
  scenario: string;
  rxPps: number;
  /** receive-path CPU per packet (threaded receiver: its NAPI thread; else the generator CPU's softirq), ns */
  cpuNsPerPacket: number;
  rxNsPerPacket?: number;
  /** the attached XDP program's run time per run (kernel BPF stats), ns; NaN without one */
  progNsPerPacket?: number;
  /** the receiver's ring refused frames: the receiver, not the generator, set the rate */
  receiverBound?: boolean;
  refusedShare?: number;
  offeredPps?: number;
  load1?: number;
}

/** Rounds for every run (older results: the n-th run of a scenario was round n). */
export function roundSamples(runs: readonly ScenarioRun[]): RoundSample[] {
  const seen = new Map<string, number>();
  return runs.map((r) => {
    const k = seen.get(r.scenario) ?? 0;
    seen.set(r.scenario, k + 1);
    return {
      round: r.round ?? k,
      scenario: r.scenario,
      rxPps: r.rxPps,
      rxNsPerPacket: r.rxNsPerPacket ?? r.cpuNsPerPacket,
      progNsPerPacket: r.progNsPerPacket ?? NaN,
      receiverBound: r.receiverBound ?? false,
    };
  });
}

const fmtIv = (iv: Interval) => (iv.n ? `${iv.median.toFixed(2)} (${iv.lo.toFixed(2)}–${iv.hi.toFixed(2)})` : '–');
const bold = (v: Verdict) => (v === 'met' ? 'met' : v === 'missed' ? '**missed**' : '*undecided*');

/** Table, the issue's targets decided per round (decide.ts) and the plots of the side-by-side runs. */
export function sideBySideReport(runs: ScenarioRun[], labels: Record<string, string>): { md: string; svg: string; targetsSvg: string; targets: TargetResult[] } {
  const samples = roundSamples(runs);
  // rows in the scenarios' own order (labels are recorded in that order), not in a round's shuffled one
  const ids = [...new Set([...Object.keys(labels), ...runs.map((r) => r.scenario)])].filter((id) => runs.some((r) => r.scenario === id));
  const of = (id: string, f: (r: ScenarioRun) => number | undefined) => summarize(runs.filter((r) => r.scenario === id).map((r) => f(r) ?? NaN));
  const pps = (id: string) => of(id, (r) => r.rxPps);
  const hasXf = ids.includes('xdp-filter-1');
  const vsXf = (id: string, f: (s: RoundSample) => number, inverse: boolean) =>
    hasXf && id !== 'xdp-filter-1' ? medianInterval(pairedRatios(samples, id, 'xdp-filter-1', f, inverse).map((x) => x.ratio)) : undefined;
  const rows = ids.map((id) => {
    const a = vsXf(id, (s) => s.rxPps, false);
    const b = vsXf(id, (s) => s.rxNsPerPacket, true);
    const bound = runs.filter((r) => r.scenario === id && r.receiverBound).length;
    const n = runs.filter((r) => r.scenario === id).length;
    return [
      labels[id] ?? id,
      fmtSI(pps(id)),
      `${bound}/${n}`,
      fmtSI(of(id, (r) => (r.rxNsPerPacket ?? r.cpuNsPerPacket) / 1e9), 's'),
      fmtSI(of(id, (r) => (r.progNsPerPacket ?? NaN) / 1e9), 's'),
      id === 'xdp-filter-1' ? '1' : a ? fmtIv(a) : '–',
      id === 'xdp-filter-1' ? '1' : b ? fmtIv(b) : '–',
    ];
  });
  const rounds = new Set(samples.map((s) => s.round)).size;
  const parts: string[] = [];
  parts.push('## Side by side (issue 13)\n');
  parts.push(
    `Every frame dropped; 4096 distinct sources spread over the 100k-prefix rule set for every row; ${rounds} rounds, every scenario once per round in a shuffled order. ` +
      'Cells are median (min–max) over the rounds; ratios are per-round ratios (both scenarios of the same round), median (≥ 95 % interval for that median). ' +
      '"Receiver-bound" counts the runs in which the receiver refused offered frames (its ring overflowed): only those packet rates measure the receiver. ' +
      '"Receiver CPU" is the receive path\'s CPU time per packet taken; "XDP program" the attached program\'s own run time per packet (kernel BPF stats).\n',
  );
  parts.push(markdownTable(['path', 'packets/s', 'receiver-bound', 'receiver CPU per packet', 'XDP program per packet', '× xdp-filter, packets/s', '× xdp-filter, receiver capacity'], rows));
  const targets = ISSUE13_TARGETS.filter((t) => ids.includes(t.num) && ids.includes(t.den)).map((t) => decideTarget(t, samples));
  const t = targets.map((x) => [
    x.figure,
    `≥ ${x.target}`,
    `${fmtIv(x.pps.interval)}${x.pps.receiverBoundRounds < x.pps.interval.n ? ` generator-bound ${x.pps.interval.n - x.pps.receiverBoundRounds}/${x.pps.interval.n}` : ''} → ${x.pps.verdict}`,
    `${fmtIv(x.capacity.interval)} → ${x.capacity.verdict}`,
    x.program ? `${fmtIv(x.program.interval)} → ${x.program.verdict}` : '–',
    bold(x.decision),
    x.reason,
  ]);
  parts.push('\nTargets of issue 13, decided per round (a target is met when its whole interval is on its side, missed when the whole interval is below it):\n');
  parts.push(markdownTable(['figure', 'target', 'packets/s ratio', 'receiver capacity ratio', 'XDP program cost ratio', 'decision', 'why'], t));
  parts.push('\n![side by side](side-by-side.svg) ![targets](side-by-side-targets.svg)\n');
  return {
    md: parts.join('\n'),
    // longer is better, as with packets/s; the capacity moves neither with the generator nor with the receiver's CPU share
    svg: barPlot(
      'Receiver capacity: 1 / receive-path CPU per packet (packets/s on a CPU of its own), every frame dropped',
      ids.map((id) => ({ label: labels[id] ?? id, y: of(id, (r) => 1e9 / (r.rxNsPerPacket ?? r.cpuNsPerPacket)) })),
    ),
    targetsSvg: targetPlot(targets),
    targets,
  };
}

/** One row per target: the receiver-capacity interval (bar) and median (dot) on a log axis, the target as a tick. */
export function targetPlot(targets: TargetResult[]): string {
  const W = 820;
  const rowH = 30;
  const m = { l: 330, r: 110, t: 46, b: 36 };
  const H = m.t + m.b + targets.length * rowH;
  const lo = 0.25;
  const hi = 32;
  const pw = W - m.l - m.r;
  const tx = (v: number) => m.l + ((Math.log(Math.min(Math.max(v, lo), hi)) - Math.log(lo)) / (Math.log(hi) - Math.log(lo))) * pw;
  const esc = (x: string) => x.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`, `<rect width="${W}" height="${H}" fill="white"/>`];
  out.push(`<text x="10" y="20" font-size="15" font-weight="bold">Issue 13 targets: receiver capacity ratio per round, median and ≥ 95 % interval</text>`);
  out.push(`<text x="10" y="36" fill="#555">black tick: the target; bar green: met, red: missed, grey: undecided</text>`);
  for (const v of [0.25, 0.5, 1, 2, 4, 8, 16, 32]) {
    out.push(`<line x1="${tx(v).toFixed(1)}" y1="${m.t}" x2="${tx(v).toFixed(1)}" y2="${H - m.b}" stroke="#ddd"/>`);
    out.push(`<text x="${tx(v).toFixed(1)}" y="${H - m.b + 16}" text-anchor="middle">${v}×</text>`);
  }
  targets.forEach((t, i) => {
    const y = m.t + i * rowH + rowH / 2;
    const iv = t.capacity.interval;
    const c = t.decision === 'met' ? '#2ca02c' : t.decision === 'missed' ? '#d62728' : '#888';
    out.push(`<text x="${m.l - 8}" y="${y + 4}" text-anchor="end">${esc(t.figure)}</text>`);
    out.push(`<line x1="${tx(t.target).toFixed(1)}" y1="${y - 10}" x2="${tx(t.target).toFixed(1)}" y2="${y + 10}" stroke="black" stroke-width="2"/>`);
    if (!iv.n) return;
    out.push(`<line x1="${tx(iv.lo).toFixed(1)}" y1="${y}" x2="${tx(iv.hi).toFixed(1)}" y2="${y}" stroke="${c}" stroke-width="6"/>`);
    out.push(`<circle cx="${tx(iv.median).toFixed(1)}" cy="${y}" r="4" fill="black"/>`);
    out.push(`<text x="${W - m.r + 8}" y="${y + 4}">${iv.median.toFixed(2)}× ${t.decision}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** Horizontal bars: median, with the min–max spread as a whisker. */
export function barPlot(title: string, bars: { label: string; y: Summary }[]): string {
  const W = 820;
  const rowH = 26;
  const m = { l: 300, r: 90, t: 40, b: 30 };
  const H = m.t + m.b + bars.length * rowH;
  const max = Math.max(...bars.map((b) => (Number.isFinite(b.y.max) ? b.y.max : 0)), 1);
  const pw = W - m.l - m.r;
  const tx = (v: number) => m.l + (v / max) * pw;
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`, `<rect width="${W}" height="${H}" fill="white"/>`];
  out.push(`<text x="10" y="22" font-size="15" font-weight="bold">${esc(title)}</text>`);
  bars.forEach((b, i) => {
    const y = m.t + i * rowH;
    const c = b.label.startsWith('Patronus') ? '#1f77b4' : b.label.startsWith('xdp-filter') ? '#ff7f0e' : b.label.startsWith('single') ? '#2ca02c' : '#d62728';
    out.push(`<text x="${m.l - 8}" y="${y + 16}" text-anchor="end">${esc(b.label)}</text>`);
    if (!Number.isFinite(b.y.median)) return;
    out.push(`<rect x="${m.l}" y="${y + 4}" width="${(tx(b.y.median) - m.l).toFixed(1)}" height="${rowH - 8}" fill="${c}"/>`);
    if (b.y.max > b.y.min) out.push(`<line x1="${tx(b.y.min).toFixed(1)}" y1="${y + rowH / 2}" x2="${tx(b.y.max).toFixed(1)}" y2="${y + rowH / 2}" stroke="black"/>`);
    out.push(`<text x="${(tx(b.y.max) + 6).toFixed(1)}" y="${y + 16}">${si(b.y.median)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** Issue 13's targets over several side-by-side runs (`--combine`): each run's decision and the one over all of them. */
export function combinedReport(runs: { name: string; runs: ScenarioRun[] }[]): { md: string; rows: { figure: string; target: number; perRun: { name: string; capacity: Interval; decision: Verdict }[]; decision: Verdict }[] } {
  const decided = runs.map((r) => ({ name: r.name, targets: new Map(sideBySideReport(r.runs, {}).targets.map((t) => [t.figure, t])) }));
  const rows = ISSUE13_TARGETS.filter((t) => decided.every((d) => d.targets.has(t.figure))).map((t) => {
    const perRun = decided.map((d) => {
      const x = d.targets.get(t.figure)!;
      return { name: d.name, capacity: x.capacity.interval, decision: x.decision };
    });
    return { figure: t.figure, target: t.target, perRun, decision: acrossRuns(perRun.map((p) => p.decision)) };
  });
  const md = [
    `Issue 13's targets over ${runs.length} runs (receiver capacity ratio per run → that run's decision; over all runs: met or missed only when every run says so):\n`,
    markdownTable(
      ['figure', 'target', ...runs.map((r) => r.name), 'over all runs'],
      rows.map((r) => [r.figure, `≥ ${r.target}`, ...r.perRun.map((p) => `${fmtIv(p.capacity)} → ${p.decision}`), bold(r.decision)]),
    ),
  ].join('\n');
  return { md, rows };
}
