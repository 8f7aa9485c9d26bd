/** Shared with bench/: the one implementation lives in bench/lib/netns.ts (bench does not import test/lib). */
export * from '../../bench/lib/netns.js';
