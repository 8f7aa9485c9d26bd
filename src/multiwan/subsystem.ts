import { emptySubsystem } from '../apply/empty.js';

export const multiwanSubsystem = emptySubsystem('gateways');
