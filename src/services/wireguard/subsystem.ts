import { serviceSubsystem } from '../common/service.js';
import { wireguardModule } from './wireguard.js';

export const wireguardSubsystem = serviceSubsystem(wireguardModule);
