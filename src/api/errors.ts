/**
 * Every error leaves the API as the same JSON shape:
 *   { statusCode, error, message, issues?: [{ path, message, line?, column? }], report? }
 * (line and column: where the issue's node starts in a document sent as text)
 * so a script can tell bad input (400/413), missing auth (401), a conflict
 * (409: apply running, confirmation pending) and a failed apply (500 with the
 * step that failed and what the rollback did) apart.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { ApplyError, ConflictError } from '../apply/engine.js';
import { ConfigError, formatPath, type Issue } from '../config/issues.js';

export interface ErrorBody {
  statusCode: number;
  error: string;
  message: string;
  issues?: { path: string; message: string; line?: number; column?: number }[];
  report?: unknown;
}

const REASONS: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 409: 'Conflict', 413: 'Payload Too Large', 415: 'Unsupported Media Type', 429: 'Too Many Requests', 500: 'Internal Server Error' };

export function errorBody(statusCode: number, message: string, extra: Partial<ErrorBody> = {}): ErrorBody {
  return { statusCode, error: REASONS[statusCode] ?? 'Error', message, ...extra };
}

/** An issue as JSON: its path as text, and its position when known. */
export function issueJson(i: Issue): { path: string; message: string; line?: number; column?: number } {
  return { path: formatPath(i.path), message: i.message, ...(i.line !== undefined ? { line: i.line, column: i.column ?? 1 } : {}) };
}

export function errorHandler(err: FastifyError | Error, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (hasZodFastifySchemaValidationErrors(err)) {
    // an issue about the whole body has instancePath "/" (or ""): its path is "body", not "body."
    const issues = err.validation.map((v) => ({ path: [err.validationContext ?? 'body', ...v.instancePath.split('/').filter(Boolean)].join('.'), message: v.message ?? 'invalid' }));
    return reply.code(400).send(errorBody(400, `invalid request: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, { issues }));
  }
  const body = errorBodyFor(err);
  if (body.statusCode === 500 && !(err instanceof ApplyError)) req.log.error({ err }, 'request failed');
  return reply.code(body.statusCode).send(body);
}

/** The error body (and its status) for an error a handler threw; also what a streamed answer ends with. */
export function errorBodyFor(err: Error): ErrorBody {
  if (err instanceof ConfigError) return errorBody(400, `invalid configuration: ${err.message}`, { issues: err.issues.map(issueJson) });
  if (err instanceof ConflictError) return errorBody(409, err.message);
  if (err instanceof ApplyError) return errorBody(500, err.message, { report: err.report });
  const status = (err as FastifyError).statusCode;
  if (status && status >= 400 && status < 500) return errorBody(status, err.message);
  return errorBody(500, err.message);
}
