import { emptySubsystem } from '../../apply/empty.js';

export const idsSubsystem = emptySubsystem('ids');
