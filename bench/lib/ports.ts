/**
 * A free TCP port on loopback for a server a test or bench starts. One
 * implementation for tests and benches.
 *
 * The port is picked at random below the kernel's ephemeral range
 * (net.ipv4.ip_local_port_range, 32768-60999 by default) and checked by
 * binding it. A port the OS hands out for `listen(0)` comes from that
 * ephemeral range, which every outgoing connection on the machine draws its
 * source port from as well: between the check and the server's own bind, any
 * connection (another test, a bench, etcd's clients) could take it. Below the
 * range only another explicit bind can, and ports handed out here are not
 * handed out again by this process.
 */
import { createServer } from 'node:net';
import { readFileSync } from 'node:fs';

const given = new Set<number>();

function ephemeralStart(): number {
  try {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return low && low > 0 ? low : 32768;
  } catch {
    return 32768;
  }
}

function bindable(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(undefined));
    s.listen(port, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

export async function freePort(): Promise<number> {
  const high = ephemeralStart() - 1;
  const low = Math.max(1024, high - 12_000);
  if (high - low >= 1000) {
    for (let i = 0; i < 50; i++) {
      const port = low + Math.floor(Math.random() * (high - low + 1));
      if (given.has(port)) continue;
      if ((await bindable(port)) !== undefined) {
        given.add(port);
        return port;
      }
    }
  }
  // no room below the ephemeral range (or all tries taken): let the OS pick
  const port = await bindable(0);
  if (port === undefined) throw new Error('freePort: cannot bind any port on 127.0.0.1');
  given.add(port);
  return port;
}
