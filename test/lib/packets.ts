/** Shared with bench/: the one implementation lives in bench/lib/packets.ts (bench does not import test/lib). */
export * from '../../bench/lib/packets.js';
