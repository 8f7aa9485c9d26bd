/**
 * Validation issues: every problem in a document is reported at once, each
 * with the path of the value it is about, e.g.
 *   fastpath.rules[3].source: "10.0.0.300/24" is not a valid IPv4 or IPv6 prefix
 */
import type { z } from 'zod';

export type IssuePath = readonly (string | number)[];

export interface Issue {
  path: IssuePath;
  message: string;
}

export function formatPath(path: IssuePath): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${p}` : p;
  return out || '(document)';
}

export function formatIssue(i: Issue): string {
  return `${formatPath(i.path)}: ${i.message}`;
}

/** At most this many issues are carried (a 150k-line alias file of garbage must not make a 20 MB error). */
export const MAX_ISSUES = 1000;

/** Thrown by validation; carries every issue found (up to MAX_ISSUES, then a count of the rest). */
export class ConfigError extends Error {
  readonly issues: Issue[];
  constructor(issues: Issue[]) {
    const shown = issues.length > MAX_ISSUES ? [...issues.slice(0, MAX_ISSUES), { path: [], message: `... and ${issues.length - MAX_ISSUES} more problems` }] : issues;
    super(shown.length === 1 ? formatIssue(shown[0]!) : `${issues.length} problems:\n${shown.map((i) => `  ${formatIssue(i)}`).join('\n')}`);
    this.issues = shown;
    this.name = 'ConfigError';
  }
}

export function fromZod(err: z.ZodError, prefix: IssuePath = []): Issue[] {
  return err.issues.map((i) => ({ path: [...prefix, ...(i.path as (string | number)[])], message: i.message }));
}
