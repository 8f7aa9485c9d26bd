/**
 * Medians, spread, Markdown tables and hand-written SVG line plots (no
 * plotting dependency: a plot here is axes, polylines, error bars, a legend).
 */

export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function summarize(xs: readonly number[]): Summary {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  const mid = Math.floor(v.length / 2);
  const median = v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { median, min: v[0]!, max: v[v.length - 1]!, n: v.length };
}

/** "1.23 (1.10–1.31)": median and the min–max spread. */
export function fmt(s: Summary, scale = 1, digits = 2): string {
  if (!s.n) return '–';
  const f = (x: number) => (x / scale).toFixed(digits);
  return s.n === 1 ? f(s.median) : `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}

/** "1.69M (1.50M–1.80M)": SI-prefixed, three significant digits (packets/s from 300 to 3M in one column). */
export function fmtSI(s: Summary, unit = ''): string {
  if (!s.n) return '–';
  const f = (x: number) => si(x) + unit;
  return s.n === 1 ? f(s.median) : `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}

export function si(x: number): string {
  const a = Math.abs(x);
  const [d, p] = a >= 1e9 ? [1e9, 'G'] : a >= 1e6 ? [1e6, 'M'] : a >= 1e3 ? [1e3, 'k'] : a >= 1 || a === 0 ? [1, ''] : a >= 1e-3 ? [1e-3, 'm'] : a >= 1e-6 ? [1e-6, 'µ'] : [1e-9, 'n'];
  return `${+(x / d).toPrecision(3)}${p}`;
}

export function markdownTable(head: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n') + '\n';
}

export interface Series {
  label: string;
  points: { x: number; y: Summary }[];
}

export interface PlotSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  logX?: boolean;
  logY?: boolean;
  /** a horizontal reference line, e.g. the generator's limit */
  ref?: { y: number; label: string };
  series: Series[];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

export function svgPlot(p: PlotSpec): string {
  const W = 760;
  const H = 440;
  const m = { l: 70, r: 230, t: 40, b: 50 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const pts = p.series.flatMap((s) => s.points.filter((q) => Number.isFinite(q.y.median)));
  const xs = pts.map((q) => q.x);
  const ys = pts.flatMap((q) => [q.y.min, q.y.max]).concat(p.ref ? [p.ref.y] : []);
  const xmin = Math.min(...xs, p.logX ? 1 : 0);
  const xmax = Math.max(...xs, xmin + 1);
  const posYs = ys.filter((y) => y > 0);
  const ymin = p.logY ? 10 ** Math.floor(Math.log10(Math.min(...posYs, 1))) : 0;
  const ymax = niceCeil(Math.max(...ys, ymin > 0 ? ymin * 10 : 1e-9));
  const tx = (x: number) => m.l + (p.logX ? (Math.log10(x) - Math.log10(xmin)) / (Math.log10(xmax) - Math.log10(xmin) || 1) : (x - xmin) / (xmax - xmin)) * pw;
  const ty = (y: number) =>
    m.t + ph - (p.logY ? (Math.log10(Math.max(y, ymin)) - Math.log10(ymin)) / (Math.log10(ymax) - Math.log10(ymin)) : y / ymax) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${m.l}" y="22" font-size="15" font-weight="bold">${esc(p.title)}</text>`);
  // axes and ticks
  out.push(`<line x1="${m.l}" y1="${m.t + ph}" x2="${m.l + pw}" y2="${m.t + ph}" stroke="black"/>`);
  out.push(`<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${m.t + ph}" stroke="black"/>`);
  const xticks = p.logX ? decades(xmin, xmax) : linTicks(xmin, xmax);
  for (const x of xticks) {
    out.push(`<line x1="${tx(x)}" y1="${m.t + ph}" x2="${tx(x)}" y2="${m.t + ph + 5}" stroke="black"/>`);
    out.push(`<text x="${tx(x)}" y="${m.t + ph + 18}" text-anchor="middle">${short(x)}</text>`);
  }
  const yticks = p.logY ? decades(ymin, ymax) : linTicks(0, ymax);
  for (const y of yticks) {
    out.push(`<line x1="${m.l}" y1="${ty(y)}" x2="${m.l + pw}" y2="${ty(y)}" stroke="#ddd"/>`);
    out.push(`<text x="${m.l - 6}" y="${ty(y) + 4}" text-anchor="end">${short(y)}</text>`);
  }
  out.push(`<text x="${m.l + pw / 2}" y="${H - 10}" text-anchor="middle">${esc(p.xLabel)}</text>`);
  out.push(`<text transform="translate(16 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(p.yLabel)}</text>`);
  if (p.ref && Number.isFinite(p.ref.y)) {
    out.push(`<line x1="${m.l}" y1="${ty(p.ref.y)}" x2="${m.l + pw}" y2="${ty(p.ref.y)}" stroke="#555" stroke-dasharray="6 4"/>`);
    out.push(`<text x="${m.l + pw - 4}" y="${ty(p.ref.y) - 5}" text-anchor="end" fill="#555">${esc(p.ref.label)}</text>`);
  }
  p.series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length]!;
    const ok = s.points.filter((q) => Number.isFinite(q.y.median));
    if (ok.length > 1) out.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${ok.map((q) => `${tx(q.x).toFixed(1)},${ty(q.y.median).toFixed(1)}`).join(' ')}"/>`);
    for (const q of ok) {
      const x = tx(q.x);
      if (q.y.max > q.y.min) {
        out.push(`<line x1="${x}" y1="${ty(q.y.min)}" x2="${x}" y2="${ty(q.y.max)}" stroke="${c}"/>`);
        for (const y of [q.y.min, q.y.max]) out.push(`<line x1="${x - 4}" y1="${ty(y)}" x2="${x + 4}" y2="${ty(y)}" stroke="${c}"/>`);
      }
      out.push(`<circle cx="${x}" cy="${ty(q.y.median)}" r="3.5" fill="${c}"/>`);
    }
    const ly = m.t + 10 + i * 20;
    out.push(`<line x1="${m.l + pw + 15}" y1="${ly}" x2="${m.l + pw + 35}" y2="${ly}" stroke="${c}" stroke-width="3"/>`);
    out.push(`<text x="${m.l + pw + 40}" y="${ly + 4}">${esc(s.label)}</text>`);
  });
  out.push(`<text x="${m.l + pw + 15}" y="${m.t + 10 + p.series.length * 20 + 10}" fill="#555" font-size="11">dot: median; bar: min–max</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function niceCeil(v: number): number {
  const e = 10 ** Math.floor(Math.log10(v));
  for (const k of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (k * e >= v) return k * e;
  return 10 * e;
}

function decades(a: number, b: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(a)); 10 ** e <= b * 1.0001; e++) if (10 ** e >= a * 0.9999) out.push(10 ** e);
  return out;
}

function linTicks(a: number, b: number): number[] {
  const step = niceCeil((b - a) / 5);
  const out: number[] = [];
  for (let v = Math.ceil(a / step) * step; v <= b + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function short(v: number): string {
  if (v >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toPrecision(3)}k`;
  return `${+v.toPrecision(3)}`;
}
