/** The ha: section as a Subsystem (keepalived, see module.ts). */
import { serviceSubsystem } from '../common/service.js';
import { keepalivedModule } from './module.js';

export const keepalivedSubsystem = serviceSubsystem(keepalivedModule);
