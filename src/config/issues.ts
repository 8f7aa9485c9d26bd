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
  /** where the offending node starts in the document's text (1-based), when the document came from text */
  line?: number;
  column?: number;
  /** for an unknown key: the key (`path` is the object holding it); its position is the key's */
  unknownKey?: string;
}

export function formatPath(path: IssuePath): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${p}` : p;
  return out || '(document)';
}

/** `path: message` (the position, when known, is in `line`/`column`; see formatFileIssue). */
export function formatIssue(i: Issue): string {
  return `${formatPath(i.path)}: ${i.message}`;
}

/** Compiler style, for a document read from FILE: `FILE:L:C: path: message` (`FILE: path: message` without a position). */
export function formatFileIssue(file: string, i: { path: string; message: string; line?: number; column?: number }): string {
  if (i.line !== undefined) return `${file}:${i.line}:${i.column ?? 1}: ${i.path}: ${i.message}`;
  // a syntax error's "path" is its position
  const at = /^line (\d+), column (\d+)$/.exec(i.path);
  return at ? `${file}:${at[1]}:${at[2]}: ${i.message}` : `${file}: ${i.path}: ${i.message}`;
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
  return err.issues.map((i) => ({
    path: [...prefix, ...(i.path as (string | number)[])],
    message: i.message,
    ...(i.code === 'unrecognized_keys' && i.keys[0] !== undefined ? { unknownKey: i.keys[0] } : {}),
  }));
}
