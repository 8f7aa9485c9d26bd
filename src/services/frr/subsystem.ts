import { emptySubsystem } from '../../apply/empty.js';

export const frrSubsystem = emptySubsystem('routing');
