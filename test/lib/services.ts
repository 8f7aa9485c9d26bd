/**
 * Helpers for service tests: a document through the real validation and a
 * subsystem's compile, as the engine does it.
 */
import { readFileSync } from 'node:fs';
import { validateDocument } from '../../src/domains.js';
import type { Issue } from '../../src/config/issues.js';
import type { Subsystem } from '../../src/apply/subsystem.js';

export const readFile = (p: string) => readFileSync(p, 'utf8');

/** Validates a document and compiles one subsystem; issues from either step. */
export function compileWith<D>(sub: Subsystem<D>, input: unknown, read: (p: string) => string = readFile): { desired?: D; issues: Issue[] } {
  const { validated, issues } = validateDocument(input, read);
  if (!validated) return { issues };
  const r = sub.compile({ openings: [], config: validated.config, aliases: validated.aliases, readFile: read });
  return r.issues.length ? { issues: r.issues } : { desired: r.desired, issues: [] };
}

/** compileWith that must succeed. */
export function mustCompile<D>(sub: Subsystem<D>, input: unknown, read: (p: string) => string = readFile): D {
  const r = compileWith(sub, input, read);
  if (!r.desired || r.issues.length) throw new Error(`config does not compile: ${JSON.stringify(r.issues)}`);
  return r.desired;
}
