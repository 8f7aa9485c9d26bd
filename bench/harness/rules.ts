/**
 * Rule sets shared by the benches (bench/classify.ts in the kernel, the
 * side-by-side harness on the wire), so both measure the same 1024 rules.
 */
import type { FastpathConfig } from '../../src/fastpath/schema.js';

/**
 * 1023 rules no benchmark frame matches (prefixes in 10/8, TCP ports, UDP
 * ports from 10/8, UDP source ports to 192.168/16), then a drop rule on
 * `dropSource` named `dropName`.
 */
export function rules1024(dropSource: string, dropName: string): FastpathConfig['rules'] {
  const rules: FastpathConfig['rules'] = [];
  for (let i = 0; i < 1023; i++) {
    const name = `r${i}`;
    const net = `10.${(i >> 8) & 255}.${i & 255}.0/24`;
    if (i % 4 === 0) rules.push({ name, source: net, action: 'drop', direction: 'in', interfaces: [] });
    else if (i % 4 === 1) rules.push({ name, protocol: 'tcp', destinationPorts: 1000 + i, action: 'drop', direction: 'in', interfaces: [] });
    else if (i % 4 === 2) rules.push({ name, source: net, protocol: 'udp', destinationPorts: 20000 + i, action: 'pass', direction: 'in', interfaces: [] });
    else rules.push({ name, destination: `192.168.${i & 255}.0/24`, protocol: 'udp', sourcePorts: `${30000 + i}-${30010 + i}`, action: 'drop', direction: 'in', interfaces: [] });
  }
  rules.push({ name: dropName, source: dropSource, action: 'drop', direction: 'in', interfaces: [] });
  return rules;
}
