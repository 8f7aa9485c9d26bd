import { emptySubsystem } from '../../apply/empty.js';

export const unboundSubsystem = emptySubsystem('dns');
