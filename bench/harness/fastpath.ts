/**
 * Patronus' own XDP fast path as a bench path. Until src/fastpath carries a
 * data-plane class (issue 3), this returns the reason it cannot run, and
 * the harness prints it and goes on with the other paths.
 */
import type { FilterPath, PathContext } from './paths.js';

export async function createPatronusPath(_ctx: PathContext): Promise<FilterPath | string> {
  return 'src/fastpath has no data-plane class yet (issue 3 lands it)';
}
