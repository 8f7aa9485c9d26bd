/**
 * TCP health probe, run inside the gateway's namespace by the monitor:
 *   node probe-tcp.js TARGET PORT INTERVAL_MS INTERFACE
 * Every interval it connects to TARGET:PORT from the interface's IPv4
 * address (an ip rule `from ADDR lookup <gateway table>` sends it through
 * that gateway) and prints "ok <ms>" or "fail <ms> <reason>". A connection
 * not established before the next probe is due counts as failed.
 */
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';

const [target, portText, intervalText, iface] = process.argv.slice(2) as [string, string, string, string];
const port = Number(portText);
const interval = Number(intervalText);

function localAddress(): string | undefined {
  return networkInterfaces()[iface]?.find((a) => a.family === 'IPv4')?.address;
}

function probe(): void {
  const t0 = performance.now();
  const local = localAddress();
  if (!local) {
    console.log(`fail 0 ${iface} has no IPv4 address`);
    return;
  }
  const sock = connect({ host: target, port, localAddress: local, timeout: interval });
  let finished = false;
  const done = (ok: boolean, why = '') => {
    if (finished) return;
    finished = true;
    sock.destroy();
    console.log(`${ok ? 'ok' : 'fail'} ${(performance.now() - t0).toFixed(3)}${why ? ` ${why}` : ''}`);
  };
  sock.once('connect', () => done(true));
  sock.once('timeout', () => done(false, 'timeout'));
  sock.on('error', (e) => done(false, e.message));
}

probe();
setInterval(probe, interval);
