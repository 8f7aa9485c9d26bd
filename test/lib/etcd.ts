/** Shared with bench/: the one implementation lives in bench/lib/etcd.ts (bench does not import test/lib). */
export * from '../../bench/lib/etcd.js';
