/** The routing: section as a Subsystem (FRR, see module.ts). */
import { serviceSubsystem } from '../common/service.js';
import { frrModule } from './module.js';

export const frrSubsystem = serviceSubsystem(frrModule);
