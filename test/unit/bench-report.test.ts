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

describe('side-by-side report (issue 13 table)', () => {
  it('ratios against xdp-filter, target verdicts and a bar plot; 1 prefix covers the 100k workload', async () => {
    const { sideBySideReport, rules1024, COVER_ALL } = await import('../../bench/harness/sidebyside.js');
    const scen: [string, number, number][] = [
      ['xdp-filter-1', 1e6, 300],
      ['patronus-1', 1.3e6, 200],
      ['patronus-100k', 1.25e6, 210],
      ['patronus-1024', 1.0e6, 280],
      ['nft-netdev-set-1', 0.4e6, 700],
      ['nft-netdev-set-100k', 0.1e6, 2000],
      ['nft-inet-ct-1', 0.2e6, 1100],
      ['nft-inet-ct-100k', 0.1e6, 2500],
    ];
    const runs = [0, 1, 2, 3, 4, 5].flatMap((round) =>
      scen.map(([scenario, rxPps, ns]) => ({ round, scenario, rxPps: rxPps * (1 + round / 10), cpuNsPerPacket: ns, rxNsPerPacket: ns, progNsPerPacket: scenario.startsWith('nft') ? NaN : ns / 4, receiverBound: true })),
    );
    const { md, svg, targetsSvg, targets } = sideBySideReport(runs, { 'patronus-1': 'Patronus, 1 rule' });
    assert.match(md, /\| Patronus, 1 rule \| 1\.63M \(1\.3M–1\.95M\) \| 6\/6 \| 200ns \(200ns–200ns\) \| 50ns \(50ns–50ns\) \| 1\.30 \(1\.30–1\.30\) \| 1\.50 \(1\.50–1\.50\) \|/);
    assert.match(md, /Patronus 1 rule \/ xdp-filter 1 rule \| ≥ 1\.2 \| 1\.30 \(1\.30–1\.30\) → met \| 1\.50 \(1\.50–1\.50\) → met \| 1\.50 \(1\.50–1\.50\) → met \| met \|/);
    assert.match(md, /flatness: Patronus 1024 rules \/ 1 rule \| ≥ 0\.9 \| 0\.77 .* \| \*\*missed\*\* \|/);
    assert.equal(targets.length, 8);
    assert.match(svg, /^<svg/);
    assert.match(targetsSvg, /^<svg/);
    // older results (no round field) pair the n-th run of each scenario
    const old = sideBySideReport(runs.map(({ round: _r, ...x }) => x), {});
    assert.equal(old.targets[0]!.capacity.interval.n, 6);
    assert.equal(rules1024().length, 1024);
    // every source of the 100k-prefix workload lies inside the one-prefix rule
    const last = ruleSet(4, 100_000).prefixes.at(-1)!;
    assert.ok(Number(last.split('.')[0]) < 20 && COVER_ALL === '16.0.0.0/6', last);
  });
});
