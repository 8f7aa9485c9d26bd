/**
 * How the side-by-side bench decides issue 13's live targets on a shared,
 * noisy machine. Pure: no I/O, no clock, no randomness (the unit test runs
 * the same code the bench does).
 *
 * - The scenarios run in rounds (every scenario once per round, in a shuffled
 *   order), and every target is a ratio of two scenarios taken within the same
 *   round: drift of the generator or of other tenants' load between rounds
 *   cancels in the ratio.
 * - The per-round ratios are summarised by their median and a distribution-
 *   free confidence interval for that median (order statistics of the
 *   binomial: with n rounds, the k-th smallest and k-th largest ratio bound
 *   the median with probability ≥ 95 %; min–max when n is too small for that).
 * - A target is met when the whole interval is on its side, missed when the
 *   whole interval is on the other side, undecided otherwise.
 * - Packets/s only measure the receiver when the receiver is the bottleneck
 *   (it refused frames: its ring overflowed). When a run was generator-bound
 *   the packet rate says only that the receiver kept up, and an observed
 *   ratio of rates lies between 1 and the true ratio of capacities: it can
 *   show a target met only when the interval is ≥ the target and ≥ 1, missed
 *   only when it is < the target and ≤ 1; else "undecided (generator-bound)".
 * - The receiver's own cost per packet (CPU time of the receive path per
 *   packet taken) does not depend on the generator: capacity = 1 / cost, so
 *   a capacity ratio is cost(denominator) / cost(numerator), per round.
 */

export type Verdict = 'met' | 'missed' | 'undecided';

export interface Interval {
  median: number;
  lo: number;
  hi: number;
  n: number;
  /** the interval's coverage of the median (0.95 or more, or that of min–max for small n) */
  coverage: number;
}

/** Median of a list (NaN when empty). */
export function median(xs: readonly number[]): number {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!v.length) return NaN;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

function binom(n: number, k: number): number {
  let r = 1;
  for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i;
  return r;
}

/**
 * Distribution-free interval for the median: the largest k such that
 * [x(k), x(n+1-k)] covers the median with probability ≥ `level`
 * (coverage = 1 - 2·P(Binomial(n, ½) < k)); k = 1 (min–max) when even that
 * does not reach `level`, with its coverage reported.
 */
export function medianInterval(xs: readonly number[], level = 0.95): Interval {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  const n = v.length;
  if (!n) return { median: NaN, lo: NaN, hi: NaN, n: 0, coverage: 0 };
  const tail = (k: number) => {
    let p = 0;
    for (let i = 0; i < k; i++) p += binom(n, i);
    return p / 2 ** n;
  };
  let k = 1;
  while (k + 1 <= Math.ceil(n / 2) && 1 - 2 * tail(k + 1) >= level) k++;
  return { median: median(v), lo: v[k - 1]!, hi: v[n - k]!, n, coverage: Math.max(0, 1 - 2 * tail(k)) };
}

/** One measured run of one scenario in one round. */
export interface RoundSample {
  round: number;
  scenario: string;
  /** packets/s the receiver took */
  rxPps: number;
  /** CPU time of the receive path per packet taken, ns */
  rxNsPerPacket: number;
  /** the attached XDP program's own run time per run (BPF stats), ns; NaN for paths without one */
  progNsPerPacket: number;
  /** the receiver refused frames (its ring overflowed): packets/s measured the receiver, not the generator */
  receiverBound: boolean;
}

/** Per-round ratio num/den of f (or den/num when `inverse`, for costs), over rounds that measured both. */
export function pairedRatios(samples: readonly RoundSample[], num: string, den: string, f: (s: RoundSample) => number, inverse = false): { round: number; ratio: number; bothReceiverBound: boolean }[] {
  const out: { round: number; ratio: number; bothReceiverBound: boolean }[] = [];
  const rounds = [...new Set(samples.map((s) => s.round))].sort((a, b) => a - b);
  for (const r of rounds) {
    const a = samples.find((s) => s.round === r && s.scenario === num);
    const b = samples.find((s) => s.round === r && s.scenario === den);
    if (!a || !b) continue;
    const ratio = inverse ? f(b) / f(a) : f(a) / f(b);
    if (Number.isFinite(ratio) && ratio > 0) out.push({ round: r, ratio, bothReceiverBound: a.receiverBound && b.receiverBound });
  }
  return out;
}

/** A target "num / den ≥ target" from an interval; `compressed`: the ratio is squeezed toward 1 (generator-bound runs). */
export function verdict(iv: Interval, target: number, compressed = false): Verdict {
  if (!iv.n) return 'undecided';
  if (!compressed) return iv.lo >= target ? 'met' : iv.hi < target ? 'missed' : 'undecided';
  // observed lies between 1 and the true ratio: a bound on the truth only on the far side of 1
  if (iv.lo >= target && iv.lo >= 1) return 'met';
  if (iv.hi < target && iv.hi <= 1) return 'missed';
  return 'undecided';
}

export interface TargetSpec {
  figure: string;
  num: string;
  den: string;
  /** the ratio num/den must be ≥ this */
  target: number;
}

export interface MetricResult {
  interval: Interval;
  verdict: Verdict;
  /** why the verdict is undecided or how it was reached, for the table */
  note?: string;
}

export interface TargetResult extends TargetSpec {
  /** packets/s ratio per round */
  pps: MetricResult & { receiverBoundRounds: number };
  /** receiver capacity ratio (1 / receive-path CPU per packet) per round */
  capacity: MetricResult;
  /** XDP program cost ratio (BPF stats) per round, both sides XDP only */
  program?: MetricResult;
  /** the decision: the capacity verdict, unless the packet rates decide the other way */
  decision: Verdict;
  reason: string;
}

/**
 * Decides one target. The receiver's capacity (1 / its CPU per packet)
 * decides: it is what packets/s would show with the receiver as the
 * bottleneck, and it does not move with the generator. Packets/s, when both
 * sides were receiver-bound in every round, must agree, or the target stays
 * undecided; generator-bound rates only bound the ratio (see above).
 */
export function decideTarget(spec: TargetSpec, samples: readonly RoundSample[], level = 0.95): TargetResult {
  const pr = pairedRatios(samples, spec.num, spec.den, (s) => s.rxPps);
  const ppsIv = medianInterval(pr.map((x) => x.ratio), level);
  const bound = pr.filter((x) => x.bothReceiverBound).length;
  const compressed = bound < pr.length;
  const ppsVerdict = verdict(ppsIv, spec.target, compressed);
  const pps = {
    interval: ppsIv,
    verdict: ppsVerdict,
    receiverBoundRounds: bound,
    ...(compressed ? { note: `generator-bound in ${pr.length - bound} of ${pr.length} rounds: rates only bound the ratio` } : {}),
  };
  const capIv = medianInterval(pairedRatios(samples, spec.num, spec.den, (s) => s.rxNsPerPacket, true).map((x) => x.ratio), level);
  const capacity: MetricResult = { interval: capIv, verdict: verdict(capIv, spec.target) };
  const progRatios = pairedRatios(samples, spec.num, spec.den, (s) => s.progNsPerPacket, true).map((x) => x.ratio);
  const program = progRatios.length ? (() => {
    const iv = medianInterval(progRatios, level);
    return { interval: iv, verdict: verdict(iv, spec.target) };
  })() : undefined;
  let decision: Verdict = capacity.verdict;
  let reason: string;
  if (capacity.verdict === 'undecided') reason = capIv.n ? 'the receiver-cost interval straddles the target' : 'no receiver-cost figures';
  else if (ppsVerdict !== 'undecided' && ppsVerdict !== capacity.verdict) {
    decision = 'undecided';
    reason = `receiver cost says ${capacity.verdict}, packets/s say ${ppsVerdict}`;
  } else reason = ppsVerdict === capacity.verdict ? 'receiver cost and packets/s agree' : 'receiver cost (packets/s undecided)';
  return { ...spec, pps, capacity, ...(program ? { program } : {}), decision, reason };
}

/** Issue 13's live targets over the side-by-side scenario ids. */
export const ISSUE13_TARGETS: TargetSpec[] = [
  { figure: 'Patronus 1 rule / xdp-filter 1 rule', num: 'patronus-1', den: 'xdp-filter-1', target: 1.2 },
  { figure: 'Patronus 1024 rules / xdp-filter 1 rule', num: 'patronus-1024', den: 'xdp-filter-1', target: 1.0 },
  { figure: 'Patronus 1 / nftables netdev set 1', num: 'patronus-1', den: 'nft-netdev-set-1', target: 3 },
  { figure: 'Patronus 100k / nftables netdev set 100k', num: 'patronus-100k', den: 'nft-netdev-set-100k', target: 3 },
  { figure: 'Patronus 1 / nftables inet + conntrack 1', num: 'patronus-1', den: 'nft-inet-ct-1', target: 5 },
  { figure: 'Patronus 100k / nftables inet + conntrack 100k', num: 'patronus-100k', den: 'nft-inet-ct-100k', target: 5 },
  { figure: 'flatness: Patronus 100k prefixes / 1 prefix', num: 'patronus-100k', den: 'patronus-1', target: 0.9 },
  { figure: 'flatness: Patronus 1024 rules / 1 rule', num: 'patronus-1024', den: 'patronus-1', target: 0.9 },
  // PROTOTYPE (bench/harness/constfilter.ts): the rule set as load-time constants
  { figure: 'PROTOTYPE constant rules, 1 rule / xdp-filter 1 rule', num: 'const-1', den: 'xdp-filter-1', target: 1.2 },
  { figure: 'PROTOTYPE constant rules, 8 atoms / xdp-filter 1 rule', num: 'const-8', den: 'xdp-filter-1', target: 1.2 },
];

/** A shuffled order of `ids` for round `round` (seeded, reproducible from the JSON). */
export function roundOrder<T>(ids: readonly T[], round: number, seed = 13): T[] {
  let a = (seed * 2654435761 + round * 40503) | 0;
  const rnd = () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = [...ids];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/**
 * One verdict over several independent runs: a run-level factor (here: where
 * the host placed the two vCPUs, which sets the cost of a frame crossing
 * from the generator's CPU to the receiver's) shifts every ratio of a run
 * alike and no pairing within the run can cancel it. A target is met or
 * missed only when every run says so; otherwise undecided.
 */
export function acrossRuns(verdicts: readonly Verdict[]): Verdict {
  if (!verdicts.length) return 'undecided';
  return verdicts.every((v) => v === verdicts[0]) ? verdicts[0]! : 'undecided';
}
