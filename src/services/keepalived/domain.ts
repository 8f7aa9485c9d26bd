/** High availability: the `ha` section, conntrackd and keepalived, and the VRRP series. The domain's descriptor (src/apply/domain.ts). */
import type { Domain } from '../../apply/domain.js';
import { keepalivedSchema } from './schema.js';
import { keepalivedSubsystem, type HaMetrics } from './subsystem.js';
import { conntrackdSubsystem } from '../conntrackd/subsystem.js';

export const domain: Domain<'ha', typeof keepalivedSchema> = {
  name: 'ha',
  module: import.meta.url,
  section: { key: 'ha', schema: keepalivedSchema, describe: 'high availability (keepalived VRRP)' },
  subsystems: [
    // before keepalived: its notify script commits conntrackd's state when this node becomes master
    { phase: 'services', subsystem: conntrackdSubsystem },
    { phase: 'services', subsystem: keepalivedSubsystem },
  ],
  metrics({ gauge, counter }) {
    gauge<'instance', HaMetrics>('patronus_vrrp_state', 'VRRP instance state: 0 init, 1 backup, 2 master, 3 fault, 4 stopped', ['instance'], (g, s) => {
      for (const { m } of s) for (const v of m.vrrp ?? []) g.set({ instance: v.instance }, v.state);
    });
    counter<'instance' | 'to', HaMetrics>('patronus_vrrp_transitions_total', 'VRRP state transitions, by instance and target state', ['instance', 'to'], (c, s) => {
      for (const { m } of s) for (const v of m.vrrp ?? []) for (const t of v.transitions) c.inc({ instance: v.instance, to: t.to }, t.count);
    });
  },
};
