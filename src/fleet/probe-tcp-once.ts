/**
 * One TCP connect, run inside the node's network namespace by the fleet
 * health check (src/fleet/health.ts):  node probe-tcp-once.js HOST PORT TIMEOUT_MS
 * Exits 0 when the connection is established, 1 with the reason on stderr.
 */
import { connect } from 'node:net';

const [host, port, timeout] = process.argv.slice(2) as [string, string, string];
const sock = connect({ host, port: Number(port), timeout: Number(timeout) });
sock.once('connect', () => {
  sock.destroy();
  process.exit(0);
});
sock.once('timeout', () => {
  console.error(`no answer within ${timeout} ms`);
  process.exit(1);
});
sock.once('error', (e) => {
  console.error(e.message);
  process.exit(1);
});
