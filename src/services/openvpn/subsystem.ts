import { serviceSubsystem } from '../common/service.js';
import { openvpnModule } from './openvpn.js';

export const openvpnSubsystem = serviceSubsystem(openvpnModule);
