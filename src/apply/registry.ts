/**
 * Every subsystem, in apply order: interface addressing, then the data plane (so filtering is in
 * place before services listen), then routing, then services. Rollback runs
 * the same list backwards.
 */
import type { Subsystem } from './subsystem.js';
import { interfacesSubsystem } from '../interfaces/subsystem.js';
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

export const subsystems: readonly Subsystem<any>[] = [
  interfacesSubsystem,
  fastpathSubsystem,
  nftSubsystem,
  multiwanSubsystem,
  frrSubsystem,
  wireguardSubsystem,
  openvpnSubsystem,
  ipsecSubsystem,
  unboundSubsystem,
  keaSubsystem,
  // before keepalived: its notify script commits conntrackd's state when this node becomes master
  conntrackdSubsystem,
  keepalivedSubsystem,
  qosSubsystem,
  idsSubsystem,
];
