import { emptySubsystem } from '../../apply/empty.js';

export const keaSubsystem = emptySubsystem('dhcp');
