import { emptySubsystem } from '../../apply/empty.js';

export const keepalivedSubsystem = emptySubsystem('ha');
