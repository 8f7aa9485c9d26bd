import { serviceSubsystem } from '../common/service.js';
import { ipsecModule } from './ipsec.js';

export const ipsecSubsystem = serviceSubsystem(ipsecModule);
