/**
 * The side-by-side bench's decision logic (bench/harness/decide.ts), the code
 * the bench runs: per-round paired ratios, the median's interval, and when a
 * target is met, missed or undecided. Pure: no timing, no kernel.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { acrossRuns, decideTarget, medianInterval, pairedRatios, roundOrder, verdict, type RoundSample } from '../../bench/harness/decide.js';

const sample = (round: number, scenario: string, rxPps: number, rxNsPerPacket: number, receiverBound = true, progNsPerPacket = NaN): RoundSample => ({
  round,
  scenario,
  rxPps,
  rxNsPerPacket,
  progNsPerPacket,
  receiverBound,
});

describe('side-by-side decisions (issue 13 live targets)', () => {
  it('interval for the median from order statistics: ≥ 95 % where n allows, min–max with its coverage below that', () => {
    const ten = [10, 1, 9, 2, 8, 3, 7, 4, 6, 5];
    const iv = medianInterval(ten);
    assert.deepEqual([iv.median, iv.lo, iv.hi, iv.n], [5.5, 2, 9, 10]); // 2nd smallest and 2nd largest
    assert.ok(Math.abs(iv.coverage - (1 - 2 * (11 / 1024))) < 1e-9);
    const five = medianInterval([3, 1, 2, 5, 4]);
    assert.deepEqual([five.lo, five.hi], [1, 5]);
    assert.ok(Math.abs(five.coverage - (1 - 2 / 32)) < 1e-9); // 93.75 %: reported, not hidden
    assert.equal(medianInterval([NaN]).n, 0);
  });

  it('pairs the two scenarios of each round, so generator drift between rounds cancels', () => {
    // the generator's rate doubles from round to round; A is always 1.25× B within a round
    const s: RoundSample[] = [];
    for (let r = 0; r < 8; r++) {
      const g = 2 ** r * 1e5;
      s.push(sample(r, 'A', 1.25 * g, 100 / 2 ** r), sample(r, 'B', g, 125 / 2 ** r));
    }
    s.push(sample(8, 'A', 1e6, 100)); // a round without B: not paired
    const p = pairedRatios(s, 'A', 'B', (x) => x.rxPps);
    assert.equal(p.length, 8);
    assert.ok(p.every((x) => Math.abs(x.ratio - 1.25) < 1e-12));
    // raw spreads overlap 100-fold, the paired decision is still clear
    const d = decideTarget({ figure: 'A / B', num: 'A', den: 'B', target: 1.2 }, s);
    assert.equal(d.pps.verdict, 'met');
    assert.equal(d.capacity.verdict, 'met'); // cost ratio inverted: 125/100
    assert.equal(d.decision, 'met');
  });

  it('met / missed / undecided from the interval; generator-bound rates only bound the ratio on the far side of 1', () => {
    const iv = (lo: number, hi: number) => ({ median: (lo + hi) / 2, lo, hi, n: 8, coverage: 0.99 });
    assert.equal(verdict(iv(1.21, 1.4), 1.2), 'met');
    assert.equal(verdict(iv(0.9, 1.19), 1.2), 'missed');
    assert.equal(verdict(iv(1.1, 1.3), 1.2), 'undecided');
    // compressed toward 1: 0.95 seen may be a true 0.5, so "≥ 0.9" cannot be met from it
    assert.equal(verdict(iv(0.92, 0.98), 0.9, true), 'undecided');
    assert.equal(verdict(iv(0.8, 0.85), 0.9, true), 'missed');
    assert.equal(verdict(iv(1.3, 1.5), 1.2, true), 'met');
    assert.equal(verdict(iv(1.05, 1.1), 1.2, true), 'undecided'); // the true ratio may be higher
    assert.equal(verdict({ median: NaN, lo: NaN, hi: NaN, n: 0, coverage: 0 }, 1), 'undecided');
  });

  it('the receiver cost decides; packets/s that were generator-bound do not, and disagreeing measures leave it undecided', () => {
    const s: RoundSample[] = [];
    for (let r = 0; r < 8; r++) {
      // both paths keep up with the generator (equal rates), but A costs half of B per packet
      s.push(sample(r, 'A', 1e6 + r, 50 + r, false, 20), sample(r, 'B', 1e6 - r, 100 + 2 * r, false, 40));
    }
    const d = decideTarget({ figure: 'A / B', num: 'A', den: 'B', target: 1.2 }, s);
    assert.equal(d.pps.verdict, 'undecided');
    assert.equal(d.pps.receiverBoundRounds, 0);
    assert.match(d.pps.note ?? '', /generator-bound in 8 of 8/);
    assert.equal(d.capacity.verdict, 'met');
    assert.equal(d.program?.interval.median, 2);
    assert.equal(d.decision, 'met');

    const clash: RoundSample[] = [];
    for (let r = 0; r < 8; r++) clash.push(sample(r, 'A', 2e6, 100), sample(r, 'B', 1e6, 100));
    const c = decideTarget({ figure: 'A / B', num: 'A', den: 'B', target: 1.2 }, clash);
    assert.equal(c.pps.verdict, 'met');
    assert.equal(c.capacity.verdict, 'missed');
    assert.equal(c.decision, 'undecided');
    assert.match(c.reason, /receiver cost says missed, packets\/s say met/);
  });

  it('over several runs, a target is met or missed only when every run says so', () => {
    assert.equal(acrossRuns(['met', 'met']), 'met');
    assert.equal(acrossRuns(['missed', 'missed', 'missed']), 'missed');
    assert.equal(acrossRuns(['missed', 'met']), 'undecided');
    assert.equal(acrossRuns(['met', 'undecided']), 'undecided');
    assert.equal(acrossRuns([]), 'undecided');
  });

  it('shuffles each round reproducibly', () => {
    const ids = ['a', 'b', 'c', 'd', 'e', 'f'];
    const orders = [0, 1, 2, 3].map((r) => roundOrder(ids, r));
    for (const o of orders) assert.deepEqual([...o].sort(), ids);
    assert.deepEqual(roundOrder(ids, 2), orders[2]);
    assert.ok(new Set(orders.map((o) => o.join())).size > 1);
  });
});
