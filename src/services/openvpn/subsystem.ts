import { emptySubsystem } from '../../apply/empty.js';

export const openvpnSubsystem = emptySubsystem('openvpn');
