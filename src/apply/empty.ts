/**
 * A subsystem with nothing to do: the placeholder a domain uses until it has
 * its real implementation (kept so the registry's shape never changes).
 */
import type { Subsystem } from './subsystem.js';

export function emptySubsystem(name: string): Subsystem<null> {
  return {
    name,
    compile: () => ({ desired: null, issues: [] }),
    plan: async () => [],
    apply: async () => {},
  };
}
