/**
 * The benchmark's pure helpers: medians and spread, the frame table's
 * matching share and sizes, and the hand-written SVG plots.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { summarize, fmt, fmtSI, si, svgPlot, markdownTable } from '../../bench/harness/report.js';
import { frameTable, ruleSet, prefixAt, FRAME_LEN } from '../../bench/harness/workload.js';

const ep = { srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', dst4: '10.99.0.2', dst6: 'fd00:99::2' };

describe('bench report helpers', () => {
  it('summarizes with median and min-max, ignoring non-finite values', () => {
    assert.deepEqual(summarize([3, 1, 2]), { median: 2, min: 1, max: 3, n: 3 });
    assert.deepEqual(summarize([4, 1, NaN, 2, 3]), { median: 2.5, min: 1, max: 4, n: 4 });
    assert.equal(fmt(summarize([1e6, 2e6, 3e6]), 1e6, 1), '2.0 (1.0–3.0)');
    assert.equal(fmt(summarize([])), '–');
  });

  it('formats rates and times with SI prefixes, three significant digits', () => {
    assert.equal(si(1_694_000), '1.69M');
    assert.equal(si(271.4), '271');
    assert.equal(si(0), '0');
    assert.equal(si(135e-9), '135n');
    assert.equal(si(3.94e-3), '3.94m');
    assert.equal(fmtSI(summarize([2.5e-6, 3e-6, 4e-6]), 's'), '3µs (2.5µs–4µs)');
    assert.equal(fmtSI(summarize([1.2e6, 0.9e6, 1e6])), '1M (900k–1.2M)');
  });

  it('writes a Markdown table', () => {
    assert.equal(markdownTable(['a', 'b'], [['1', '2']]), '| a | b |\n| --- | --- |\n| 1 | 2 |\n');
  });

  it('draws an SVG with one polyline per series and a reference line', () => {
    const s = (m: number) => ({ median: m, min: m * 0.9, max: m * 1.1, n: 3 });
    const svg = svgPlot({
      title: 'a <b>',
      xLabel: 'x',
      yLabel: 'y',
      logX: true,
      logY: true,
      ref: { y: 5e6, label: 'limit' },
      series: [
        { label: 'one', points: [1, 100, 10000].map((x) => ({ x, y: s(1e6 / (1 + Math.log10(x))) })) },
        { label: 'two', points: [1, 100].map((x) => ({ x, y: s(2e5) })) },
      ],
    });
    assert.match(svg, /^<svg xmlns/);
    assert.equal(svg.match(/<polyline/g)?.length, 2);
    assert.match(svg, /a &lt;b&gt;/);
    assert.match(svg, /stroke-dasharray/);
    assert.doesNotMatch(svg, /NaN|Infinity/);
  });

  it('builds frame tables with the requested matching share, all FRAME_LEN bytes', () => {
    for (const family of [4, 6] as const) {
      const rules = ruleSet(family, 1000);
      const t = frameTable(rules, 4096, 0.5, ep);
      assert.equal(t.matching, 2048);
      assert.equal(t.data.length, 4096 * FRAME_LEN);
      assert.ok(t.sampleMatch && t.sampleMiss);
      assert.equal(frameTable(rules, 100, 0, ep).matching, 0);
      assert.equal(frameTable(rules, 100, 1, ep).matching, 100);
    }
    assert.equal(prefixAt(4, 0), '16.0.0.0/24');
    assert.equal(prefixAt(4, 257), '16.1.1.0/24');
    assert.equal(prefixAt(6, 65537), '2a00:1:1::/48');
    assert.deepEqual(ruleSet(4, 2, 2).prefixes, ['16.0.4.0/24', '16.0.6.0/24']);
  });
});
