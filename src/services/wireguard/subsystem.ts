import { emptySubsystem } from '../../apply/empty.js';

export const wireguardSubsystem = emptySubsystem('wireguard');
