/**
 * Central validation of fleet documents: the schema, aliases and every
 * subsystem's compile (what `patronus validate` checks), without the
 * machine probes, which only the node itself can answer (it runs the full
 * check again before it applies). The engine here never acts: its Host
 * names no real namespace and no command is run.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../apply/engine.js';
import { emptyDocumentIssues } from '../config/input.js';
import type { Issue } from '../config/issues.js';
import { Store } from '../store/store.js';
import { Host } from '../system/host.js';
import type { DocumentValidator } from './controller.js';
import type { Domain } from '../apply/domain.js';

/** domains: those Patronus runs (src/domains.ts), handed in by the entry point. */
export function centralValidator(domains: readonly Domain<any, any>[]): DocumentValidator {
  let engine: Engine | undefined;
  return (document: unknown): Issue[] => {
    const empty = emptyDocumentIssues(document, false);
    if (empty.length) return empty;
    engine ??= new Engine({
      host: new Host({ netns: 'patronus-fleet-validate', stateDir: join(tmpdir(), 'patronus-fleet-validate') }),
      store: Store.open(':memory:'),
      domains,
      confirmGuard: false,
    });
    return engine.compileDocument(document).issues;
  };
}
