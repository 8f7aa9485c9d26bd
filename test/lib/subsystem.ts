/**
 * Drives one Subsystem the way the engine does (document validation,
 * compile, validate, apply), for integration tests of a single domain. Any
 * issue throws a ConfigError before apply, i.e. before anything is touched.
 */
import { readFileSync } from 'node:fs';
import { validateDocument, type ConfigInput } from '../../src/config/document.js';
import { ConfigError } from '../../src/config/issues.js';
import type { Subsystem } from '../../src/apply/subsystem.js';
import type { Host } from '../../src/system/host.js';

export async function compileFor<D>(sub: Subsystem<D>, doc: ConfigInput): Promise<D> {
  const { validated, issues } = validateDocument(doc, (p) => readFileSync(p, 'utf8'));
  if (!validated) throw new ConfigError(issues);
  const compiled = sub.compile({ config: validated.config, aliases: validated.aliases, openings: [], readFile: (p) => readFileSync(p, 'utf8') });
  if (compiled.issues.length) throw new ConfigError(compiled.issues);
  return compiled.desired;
}

export async function applyDocument<D>(sub: Subsystem<D>, host: Host, doc: ConfigInput): Promise<D> {
  const desired = await compileFor(sub, doc);
  const issues = (await sub.validate?.(desired, host)) ?? [];
  if (issues.length) throw new ConfigError(issues);
  await sub.apply(desired, host);
  return desired;
}
