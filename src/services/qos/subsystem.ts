import { emptySubsystem } from '../../apply/empty.js';

export const qosSubsystem = emptySubsystem('qos');
