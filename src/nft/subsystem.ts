import { emptySubsystem } from '../apply/empty.js';

export const nftSubsystem = emptySubsystem('nftables');
