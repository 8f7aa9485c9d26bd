/**
 * A free TCP port on loopback for a server a test or bench starts (the OS
 * picks it; another process could take it before the caller binds, which on
 * a test machine is rare enough). One implementation for tests and benches.
 */
import { createServer } from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
