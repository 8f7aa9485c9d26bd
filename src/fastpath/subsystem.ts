import { emptySubsystem } from '../apply/empty.js';

export const fastpathSubsystem = emptySubsystem('fastpath');
