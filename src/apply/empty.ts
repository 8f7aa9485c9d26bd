/**
 * A subsystem with nothing to do: the placeholder a domain uses until it has
 * its real implementation (kept so the registry's shape never changes).
 */
import { defineSubsystem, type Subsystem } from './subsystem.js';

export function emptySubsystem(name: string): Subsystem<null> {
  return defineSubsystem<null>({
    name,
    compile: () => ({ desired: null, issues: [] }),
    steps: async () => [],
  });
}
