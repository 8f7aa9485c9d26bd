/**
 * Gives the C heap's free pages back to the kernel (glibc malloc_trim(0),
 * through the addon). A long-running server calls it after the work that
 * frees a lot of C-heap memory (an apply: its parse and compile worker
 * threads exit, leaving their malloc arenas full of free pages that glibc
 * would otherwise keep for the process's lifetime). Nothing in use is
 * touched; a page reused later is faulted in again. Without the addon (or
 * not on glibc) it does nothing and says so.
 */
import { addon, addonAvailable } from './addon.js';

/** Whether any memory went back to the kernel (false also when the addon cannot be loaded). */
export function releaseFreedMemory(): boolean {
  if (!addonAvailable()) return false;
  return addon().mallocTrim();
}

/**
 * One datagram to the service manager's notification socket (the addon's
 * sendto: node's dgram has no unix datagram sockets). Throws when the addon
 * cannot be loaded or the send fails, naming the socket.
 */
export function notifyServiceManager(socketPath: string, message: string): void {
  addon().notifyServiceManager(socketPath, message);
}
