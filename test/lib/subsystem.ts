/**
 * Drives one Subsystem the way the engine does, for integration tests of a
 * single domain: through an Engine of that one subsystem (the engine's own
 * document validation and compile; apply adds its validate), never a copy
 * of them. Any issue throws a ConfigError before apply, i.e. before
 * anything is touched.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { domains, type ConfigInput } from '../../src/domains.js';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { Host } from '../../src/system/host.js';
import { ConfigError } from '../../src/config/issues.js';
import type { Subsystem } from '../../src/apply/subsystem.js';

const readFile = (p: string) => readFileSync(p, 'utf8');

/** An engine of `sub` alone, on `host` (or one that runs nothing), with an in-memory store; closed after `fn`. */
async function withEngine<T>(sub: Subsystem, host: Host | undefined, fn: (engine: Engine) => Promise<T>): Promise<T> {
  const dir = host ? undefined : mkdtempSync(join(tmpdir(), 'pt-compile-'));
  const store = Store.open(':memory:');
  const engine = new Engine({ domains, subsystems: [sub], store, host: host ?? new Host({ netns: `pt-${process.pid}-compile-only`, stateDir: dir! }), readFile, confirmGuard: false });
  try {
    return await fn(engine);
  } finally {
    engine.close();
    store.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

/** The document's schema, aliases and `sub`'s compile (Engine.compileDocument): `sub`'s desired state. */
export async function compileFor<D>(sub: Subsystem<D>, doc: ConfigInput): Promise<D> {
  return withEngine(sub, undefined, async (engine) => {
    const { compiled, issues } = engine.compileDocument(doc);
    if (!compiled) throw new ConfigError(issues);
    return compiled.desired.of(sub);
  });
}

/** Engine.check (schema, aliases, compile, `sub`'s validate on `host`), then `sub`'s apply. */
export async function applyDocument<D>(sub: Subsystem<D>, host: Host, doc: ConfigInput): Promise<D> {
  const desired = await withEngine(sub, host, async (engine) => {
    const { compiled, issues } = await engine.check({ document: doc, allowEmpty: true });
    if (!compiled) throw new ConfigError(issues);
    return compiled.desired.of(sub);
  });
  await sub.apply(desired, host);
  return desired;
}
