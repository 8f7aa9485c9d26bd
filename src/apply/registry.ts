/**
 * Every subsystem, in apply order: interface addressing and static routes,
 * then the data plane (so filtering is in place before services listen and
 * before kernel settings turn forwarding on), then routing, then services. Rollback runs
 * the same list backwards.
 */
import type { Subsystem } from './subsystem.js';
import { interfacesSubsystem } from '../interfaces/subsystem.js';
import { linksSubsystem } from '../interfaces/links.js';
import { sysctlSubsystem } from '../routing/sysctl.js';
import { routesSubsystem } from '../routing/routes.js';
import { fastpathSubsystem } from '../fastpath/subsystem.js';
import { nftSubsystem } from '../nft/subsystem.js';
import { multiwanSubsystem } from '../multiwan/subsystem.js';
import { frrSubsystem } from '../services/frr/subsystem.js';
import { wireguardSubsystem } from '../services/wireguard/subsystem.js';
import { openvpnSubsystem } from '../services/openvpn/subsystem.js';
import { ipsecSubsystem } from '../services/ipsec/subsystem.js';
import { unboundSubsystem } from '../services/unbound/subsystem.js';
import { keaSubsystem } from '../services/kea/subsystem.js';
import { conntrackdSubsystem } from '../services/conntrackd/subsystem.js';
import { keepalivedSubsystem } from '../services/keepalived/subsystem.js';
import { qosSubsystem } from '../services/qos/subsystem.js';
import { idsSubsystem } from '../services/ids/subsystem.js';
import { dhclientSubsystem } from '../services/dhclient/dhclient.js';
import { radvdSubsystem } from '../services/radvd/subsystem.js';
import { kea6Subsystem } from '../services/kea6/subsystem.js';
import { certificatesSubsystem } from '../certificates/subsystem.js';

export const subsystems: readonly Subsystem<any>[] = [
  // bridges, VLANs, bonds first: addresses, routes and zones name them
  linksSubsystem,
  interfacesSubsystem,
  routesSubsystem,
  fastpathSubsystem,
  nftSubsystem,
  // forwarding goes on only once the firewall is in place
  sysctlSubsystem,
  // WAN addresses by DHCP before anything that routes through them
  dhclientSubsystem,
  multiwanSubsystem,
  // ACME orders need the uplinks (and the challenge port open); services that serve TLS come after
  certificatesSubsystem,
  frrSubsystem,
  wireguardSubsystem,
  openvpnSubsystem,
  ipsecSubsystem,
  unboundSubsystem,
  keaSubsystem,
  kea6Subsystem,
  radvdSubsystem,
  // before keepalived: its notify script commits conntrackd's state when this node becomes master
  conntrackdSubsystem,
  keepalivedSubsystem,
  qosSubsystem,
  idsSubsystem,
];
