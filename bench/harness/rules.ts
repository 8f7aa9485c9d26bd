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

/**
 * Six rules, eight atoms for the constant-rule PROTOTYPE (bench/harness/constfilter.ts):
 * five rules no benchmark frame matches (two sources, two TCP port ranges, a
 * count rule on another source, a UDP destination, ICMP echo), then a drop
 * rule on `dropSource` named `dropName`.
 */
export function rulesSmall(dropSource: string, dropName: string): FastpathConfig['rules'] {
  const r = (x: Partial<FastpathConfig['rules'][number]> & Pick<FastpathConfig['rules'][number], 'name' | 'action'>) => ({ direction: 'in' as const, interfaces: [], ...x });
  return [
    r({ name: 'a', source: ['10.1.0.0/16', '10.2.0.0/16'], action: 'drop' }),
    r({ name: 'b', protocol: 'tcp', destinationPorts: [22, '8000-8100'], action: 'drop' }),
    r({ name: 'c', source: '192.0.2.0/24', action: 'count' }),
    r({ name: 'd', destination: '198.51.100.0/24', protocol: 'udp', action: 'pass' }),
    r({ name: 'e', protocol: 'icmp', icmpType: 8, action: 'drop' }),
    r({ name: dropName, source: dropSource, action: 'drop' }),
  ];
}
