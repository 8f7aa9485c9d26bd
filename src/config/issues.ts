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

/** Thrown by validation; carries every issue found. */
export class ConfigError extends Error {
  constructor(readonly issues: Issue[]) {
    super(issues.length === 1 ? formatIssue(issues[0]!) : `${issues.length} problems:\n${issues.map((i) => `  ${formatIssue(i)}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export function fromZod(err: z.ZodError, prefix: IssuePath = []): Issue[] {
  return err.issues.map((i) => ({ path: [...prefix, ...(i.path as (string | number)[])], message: i.message }));
}
