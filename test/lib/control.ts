/** Shared with bench/: the one implementation lives in bench/lib/control.ts (bench does not import test/lib). */
export * from '../../bench/lib/control.js';
