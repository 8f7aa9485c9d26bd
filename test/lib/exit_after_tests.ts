/**
 * Preloaded into every test file's process by scripts/test.sh (NODE_OPTIONS
 * --import), in place of node's --test-force-exit.
 *
 * A file whose tests leak a child, socket or timer must still end when its
 * tests have (a hang of its own otherwise). --test-force-exit does that, but
 * on Node 20 (and later, nodejs/node#64833) it calls process.exit() while the
 * file's last results are still buffered on their way to the runner: the
 * runner then reports fewer tests than ran, with exit code 0 (seen here: the
 * tail of test/unit/input_guards.test.ts missing in one run of three).
 *
 * Instead: after the file's last test (a root-level `after` hook), an unref'd
 * timer exits the process GRACE_MS later. A file that leaks nothing ends at
 * once as usual; one that leaks ends GRACE_MS later, its results delivered.
 * process.exit() without a code keeps the runner's exit code (1 when a test
 * failed). Only in a test file's own process (NODE_TEST_CONTEXT=child-v8 and a
 * *.test.js main module, main thread): never in the runner that starts the
 * files, nor in the processes and workers a test starts (they inherit
 * NODE_OPTIONS and NODE_TEST_CONTEXT, and must not load node:test at all).
 */
import { isMainThread } from 'node:worker_threads';

export const GRACE_MS = 2000;

if (process.env.NODE_TEST_CONTEXT === 'child-v8' && isMainThread && /\.test\.[cm]?js$/.test(process.argv[1] ?? '')) {
  const { after } = await import('node:test');
  after(() => {
    setTimeout(() => process.exit(), GRACE_MS).unref();
  });
}
