import { emptySubsystem } from '../../apply/empty.js';

export const ipsecSubsystem = emptySubsystem('ipsec');
