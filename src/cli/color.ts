/**
 * Color for people, never for scripts: on when the stream is a terminal (or
 * FORCE_COLOR is set), off with NO_COLOR (https://no-color.org, it wins over
 * FORCE_COLOR), TERM=dumb, or --json. Applied after tables are laid out, so
 * escapes never change column widths.
 */
const SGR = { red: 31, green: 32, yellow: 33, bold: 1 } as const;
const paint = (code: number, s: string) => `\x1b[${code}m${s}\x1b[0m`;

export function colorEnabled(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0' && env.FORCE_COLOR !== 'false') return true;
  return !!stream.isTTY && env.TERM !== 'dumb';
}

/** Plan signs (+ add, - remove, ~ change), failures and stopped daemons. */
export function colorize(text: string): string {
  // a wrapped plan line's continuation (indented deeper) keeps its color
  let last: number | undefined;
  return text
    .split('\n')
    .map((line) => {
      const code = /^ {2}\+ /.test(line) ? SGR.green : /^ {2}- /.test(line) ? SGR.red : /^ {2}[~↻▶■] /.test(line) ? SGR.yellow : /^ {6}\S/.test(line) ? last : undefined;
      last = code;
      if (code !== undefined) return paint(code, line);
      if (/^Plan: /.test(line)) return paint(SGR.bold, line);
      return line.replace(/\b(FAILED|NOT RUNNING)\b/g, (m) => paint(SGR.red, m));
    })
    .join('\n');
}

export function colorizeError(text: string): string {
  return paint(SGR.red, text);
}
