/**
 * The lab: a network namespace pair Patronus can manage without touching the
 * host. `patronus serve --lab` (the README's run command) creates it, so a
 * new operator can see the fast path work on a fresh machine:
 *   patronus-lab-wan (192.0.2.1, 2001:db8::1) <-veth-> patronus-lab (192.0.2.2, 2001:db8::2; "wan0")
 * Patronus manages interface wan0 inside patronus-lab.
 */
import { execa } from 'execa';
import { addNamespace, addVethPair, deleteNamespace, namespaceExists } from '../system/netns.js';

export const LAB_NS = 'patronus-lab';
export const LAB_PEER_NS = 'patronus-lab-wan';
export const LAB_DEV = 'wan0';

export async function ensureLab(): Promise<void> {
  if (namespaceExists(LAB_NS) && namespaceExists(LAB_PEER_NS)) {
    await detachDemoProgram();
    return;
  }
  await removeLab();
  await addNamespace(LAB_NS);
  await addNamespace(LAB_PEER_NS);
  await addVethPair({ netns: LAB_NS, dev: LAB_DEV, addresses: ['192.0.2.2/24', '2001:db8::2/64'] }, { netns: LAB_PEER_NS, dev: 'eth0', addresses: ['192.0.2.1/24', '2001:db8::1/64'] });
}

export async function removeLab(): Promise<void> {
  for (const ns of [LAB_NS, LAB_PEER_NS]) if (namespaceExists(ns)) await deleteNamespace(ns);
}

/**
 * Earlier versions of `serve --lab` attached a demo program (xdp_stats) to
 * wan0 themselves; the fast path refuses to replace an XDP program it does
 * not own, so a lab left by such a version is cleared of it here.
 */
async function detachDemoProgram(): Promise<void> {
  const r = await execa('ip', ['-n', LAB_NS, '-j', '-d', 'link', 'show', 'dev', LAB_DEV], { reject: false });
  if (r.exitCode !== 0) return;
  const [link] = JSON.parse(r.stdout) as { xdp?: { prog?: { name?: string } } }[];
  if (link?.xdp?.prog?.name === 'xdp_stats') await execa('ip', ['-n', LAB_NS, 'link', 'set', 'dev', LAB_DEV, 'xdp', 'off']);
}
