/** Plain-text tables and number formats for the CLI's human output. */

/** The terminal's width when output goes to one (set by the CLI); undefined: never wrap (pipes, scripts). */
let terminalWidth: number | undefined;
export function setOutputWidth(columns: number | undefined): void {
  terminalWidth = columns && columns >= 40 ? columns : undefined;
}

/**
 * Columns padded to their widest cell. When a width is set and the table is
 * wider, the widest left-aligned columns shrink (not below 12) and their
 * cells wrap at spaces onto continuation lines.
 */
export function table(headers: string[], rows: string[][], opts: { right?: number[]; header?: boolean; width?: number } = {}): string {
  const all = opts.header === false ? rows : [headers, ...rows];
  const widths = headers.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const limit = opts.width ?? terminalWidth;
  if (limit) {
    const total = () => widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1);
    const shrinkable = () => widths.map((w, i) => ({ w, i })).filter((c) => !opts.right?.includes(c.i) && c.w > 12);
    while (total() > limit && shrinkable().length) {
      const widest = shrinkable().sort((a, b) => b.w - a.w)[0]!;
      widths[widest.i] = Math.max(12, widest.w - (total() - limit));
    }
  }
  const fmt = (r: string[]) => {
    const cells = widths.map((w, i) => wrap(r[i] ?? '', w));
    const height = Math.max(...cells.map((c) => c.length));
    return Array.from({ length: height }, (_, line) =>
      cells
        .map((c, i) => (opts.right?.includes(i) ? (c[line] ?? '').padStart(widths[i]!) : (c[line] ?? '').padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    ).join('\n');
  };
  const lines = all.map(fmt);
  if (opts.header !== false) lines.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  return lines.join('\n');
}

/** Text in lines of at most width characters, broken at spaces where there are any. */
export function wrap(text: string, width: number): string[] {
  if (text.length <= width) return [text];
  const out: string[] = [];
  let rest = text;
  while (rest.length > width) {
    const space = rest.lastIndexOf(' ', width);
    const cut = space > width / 3 ? space : width;
    out.push(rest.slice(0, cut).trimEnd());
    rest = rest.slice(cut).trimStart();
  }
  if (rest) out.push(rest);
  return out;
}

/** Long lines of free text (a plan) wrapped to the terminal, continuation lines indented under the first. */
export function wrapLines(text: string, indent = 6): string {
  const limit = terminalWidth;
  if (!limit) return text;
  return text
    .split('\n')
    .flatMap((line) => {
      if (line.length <= limit) return [line];
      const [first, ...more] = wrap(line, limit);
      return [first!, ...more.flatMap((m) => wrap(m, limit - indent)).map((m) => ' '.repeat(indent) + m)];
    })
    .join('\n');
}

export function count(n: number): string {
  return n.toLocaleString('en-US');
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}
