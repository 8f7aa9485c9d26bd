/**
 * Exit codes and the machine-readable form of a failure. Scripts branch on
 * the code; with --json they also get {"error": {...}} on stdout.
 *   0 ok · 1 error · 2 rejected (invalid document, bad request or flag, a
 *   name that exists) · 3 not confirmed in time (rolled back)
 *   plan --detailed-exitcode: 0 no changes · 1 error · 2 changes
 */
import { CommanderError } from 'commander';
import { ConfigError, formatPath } from '../config/issues.js';
import { RemoteError } from './client.js';

export const EXIT = { ok: 0, error: 1, rejected: 2, changes: 2, unconfirmed: 3 } as const;

/** A request refused before anything changed (an operator mistake, not a failure of the system). */
export class RejectedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RejectedError';
  }
}

export function exitCodeFor(e: unknown): number {
  if (e instanceof ConfigError || e instanceof RejectedError) return EXIT.rejected;
  if (e instanceof RemoteError) return e.statusCode === 400 || e.statusCode === 409 || e.statusCode === 422 ? EXIT.rejected : EXIT.error;
  // a usage error: unknown option, missing argument, unknown command
  if (e instanceof CommanderError) return EXIT.rejected;
  return EXIT.error;
}

export interface ErrorJson {
  error: {
    kind: 'rejected' | 'error';
    message: string;
    /** the document's problems, each with its path (as in the human output) and, when known, line and column */
    issues?: { path: string; message: string; line?: number; column?: number }[];
    /** the server's HTTP status, for errors the server reported */
    status?: number;
    /** commander's code for usage errors, e.g. commander.unknownOption */
    code?: string;
  };
}

export function errorJson(e: unknown, exitCode: number): ErrorJson {
  const kind = exitCode === EXIT.rejected ? 'rejected' : 'error';
  if (e instanceof ConfigError) return { error: { kind, message: 'invalid configuration', issues: e.issues.map((i) => ({ path: formatPath(i.path), message: i.message, ...(i.line !== undefined ? { line: i.line, column: i.column ?? 1 } : {}) })) } };
  if (e instanceof RemoteError) return { error: { kind, message: e.message, status: e.statusCode, ...(e.body.issues?.length ? { issues: e.body.issues } : {}) } };
  // commander's messages start with "error: "
  if (e instanceof CommanderError) return { error: { kind, message: e.message.replace(/^error: /, ''), code: e.code } };
  return { error: { kind, message: e instanceof Error ? e.message : String(e) } };
}
