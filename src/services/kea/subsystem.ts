import { serviceSubsystem } from '../common/service.js';
import { keaService } from './kea.js';

/** The `dhcp:` section as a Subsystem (see kea.ts). */
export const keaSubsystem = serviceSubsystem(keaService);
