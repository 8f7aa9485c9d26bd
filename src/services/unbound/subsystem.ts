import { serviceSubsystem } from '../common/service.js';
import { unboundService } from './unbound.js';

/** The `dns:` section as a Subsystem (see unbound.ts). */
export const unboundSubsystem = serviceSubsystem(unboundService);
