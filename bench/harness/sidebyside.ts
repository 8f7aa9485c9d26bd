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
 *   nft-netdev-set, nft-inet-ct   1 prefix and 100k /24s
 *
 * Writes its own section (table, target ratios, bar plot) into results.md.
 */
import type { FastpathConfig } from '../../src/fastpath/schema.js';
import type { FilterPath } from './paths.js';
import { markdownTable, fmtSI, si, summarize, type Summary } from './report.js';
import { ruleSet, type RuleSet } from './workload.js';
import { rules1024 as sharedRules1024 } from './rules.js';

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
  installDestination(address: string): Promise<number>;
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
  if (xf) out.push({ id: 'xdp-filter-1', label: 'xdp-filter (-f ipv4), 1 rule', path: xf, install: () => xf.installDestination(dst4) });
  const pt = by('xdp-patronus') as RuleListPath | undefined;
  if (pt) {
    out.push({ id: 'patronus-1', label: 'Patronus, 1 rule (1 prefix)', path: pt, install: () => pt.install(one) });
    out.push({ id: 'patronus-100k', label: 'Patronus, 1 rule, 100k-prefix alias', path: pt, install: () => pt.install(big) });
    out.push({ id: 'patronus-1024', label: 'Patronus, 1024 rules', path: pt, install: () => pt.installRules(rules1024()) });
  }
  for (const [id, name] of [['nft-netdev-set', 'nftables netdev ingress set'], ['nft-inet-ct', 'nftables inet + conntrack, set']] as const) {
    const p = by(id);
    if (!p) continue;
    out.push({ id: `${id}-1`, label: `${name}, 1 prefix`, path: p, install: () => p.install(one) });
    out.push({ id: `${id}-100k`, label: `${name}, 100k prefixes`, path: p, install: () => p.install(big) });
  }
  return out;
}

export interface ScenarioRun {
  scenario: string;
  rxPps: number;
  cpuNsPerPacket: number;
}

/** Table, the target ratios and a bar plot of the side-by-side runs. */
export function sideBySideReport(runs: ScenarioRun[], labels: Record<string, string>): { md: string; svg: string } {
  const ids = [...new Set(runs.map((r) => r.scenario))];
  const pps = (id: string) => summarize(runs.filter((r) => r.scenario === id).map((r) => r.rxPps));
  const cpu = (id: string) => summarize(runs.filter((r) => r.scenario === id).map((r) => r.cpuNsPerPacket / 1e9));
  const xf = pps('xdp-filter-1').median;
  const rows = ids.map((id) => [labels[id] ?? id, fmtSI(pps(id)), Number.isFinite(xf) ? `${(pps(id).median / xf).toFixed(2)}×` : '–', fmtSI(cpu(id), 's')]);
  const parts: string[] = [];
  parts.push('## Side by side (issue 13)\n');
  parts.push('Every frame dropped; 4096 distinct sources spread over the 100k-prefix rule set for every row; packets/s the receiver took.\n');
  parts.push(markdownTable(['path', 'packets/s', '× xdp-filter 1 rule', 'receiver CPU per packet'], rows));
  const ratio = (a: string, b: string) => pps(a).median / pps(b).median;
  const target = (what: string, v: number, want: string, ok: boolean) => [what, Number.isFinite(v) ? v.toFixed(2) : '–', want, Number.isFinite(v) ? (ok ? 'met' : '**missed**') : '–'];
  const t: string[][] = [];
  const r1 = ratio('patronus-1', 'xdp-filter-1');
  t.push(target('Patronus 1 rule / xdp-filter 1 rule', r1, '≥ 1.2', r1 >= 1.2));
  const r1024 = ratio('patronus-1024', 'xdp-filter-1');
  t.push(target('Patronus 1024 rules / xdp-filter 1 rule', r1024, '≥ 1.0', r1024 >= 1.0));
  for (const size of ['1', '100k'] as const) {
    const p = `patronus-${size}`;
    const a = ratio(p, `nft-netdev-set-${size}`);
    t.push(target(`Patronus ${size} / nftables netdev set ${size}`, a, '≥ 3', a >= 3));
    const b = ratio(p, `nft-inet-ct-${size}`);
    t.push(target(`Patronus ${size} / nftables inet + conntrack ${size}`, b, '≥ 5', b >= 5));
  }
  const f100k = ratio('patronus-100k', 'patronus-1');
  t.push(target('flatness: Patronus 100k prefixes / 1 prefix', f100k, '≥ 0.90', f100k >= 0.9));
  const f1024 = ratio('patronus-1024', 'patronus-1');
  t.push(target('flatness: Patronus 1024 rules / 1 rule', f1024, '≥ 0.90', f1024 >= 0.9));
  parts.push('\nTargets of issue 13 (ratios of medians):\n');
  parts.push(markdownTable(['figure', 'ratio', 'target', ''], t));
  parts.push('\n![side by side](side-by-side.svg)\n');
  return { md: parts.join('\n'), svg: barPlot('Packets/s at the receiver, every frame dropped (4096 sources)', ids.map((id) => ({ label: labels[id] ?? id, y: pps(id) }))) };
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
