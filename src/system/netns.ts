/**
 * Network namespace switching: runs a synchronous function with the calling
 * thread inside a namespace, so ifindexes, XDP/tc attachment and netlink
 * calls refer to it. The setns(2) call itself lives in the native addon
 * (it must wrap the call on the same thread); this is where the control
 * plane asks for it, next to Host, which uses it.
 */
import { addon } from '../bpf/addon.js';

/** The bind-mount path of a named namespace (a path is taken as it is). */
export function netnsPath(name: string): string {
  return name.includes('/') ? name : `/var/run/netns/${name}`;
}

/** Runs fn (synchronous) inside the network namespace NAME (/var/run/netns/NAME) or at a path. */
export function inNetns<T>(name: string, fn: () => T): T {
  return addon().inNetns(netnsPath(name), fn);
}
