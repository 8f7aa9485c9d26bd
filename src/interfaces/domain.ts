/** Interfaces: links (bridges, VLANs, bonds, PPPoE), their addresses, their counters and GET /api/v1/interfaces. The domain's descriptor (src/apply/domain.ts). */
import type { Domain } from '../apply/domain.js';
import { anyObject, type Operation } from '../api/operation.js';
import { interfacesSchema } from './schema.js';
import { linksSubsystem } from './links.js';
import { interfacesSubsystem, type InterfaceMetrics } from './subsystem.js';

type Live = NonNullable<InterfaceMetrics['interfaces']>[number];

export const domain: Domain<'interfaces', typeof interfacesSchema> = {
  name: 'interfaces',
  module: import.meta.url,
  section: { key: 'interfaces', schema: interfacesSchema, describe: 'interfaces Patronus manages' },
  subsystems: [{ phase: 'links', subsystem: linksSubsystem }, { phase: 'addresses', subsystem: interfacesSubsystem }],
  metrics({ counter, gauge }) {
    const ifc = (name: string, help: string, pick: (x: Live) => number) =>
      counter<'interface', InterfaceMetrics>(name, help, ['interface'], (c, s) => {
        for (const { m } of s) for (const x of m.interfaces ?? []) c.inc({ interface: x.interface }, pick(x));
      });
    ifc('patronus_interface_receive_packets_total', 'Packets received by an interface', (x) => x.rxPackets);
    ifc('patronus_interface_receive_bytes_total', 'Bytes received by an interface', (x) => x.rxBytes);
    ifc('patronus_interface_transmit_packets_total', 'Packets sent by an interface', (x) => x.txPackets);
    ifc('patronus_interface_transmit_bytes_total', 'Bytes sent by an interface', (x) => x.txBytes);
    gauge<'interface', InterfaceMetrics>('patronus_interface_up', 'Whether an interface is up', ['interface'], (g, s) => {
      for (const { m } of s) for (const x of m.interfaces ?? []) g.set({ interface: x.interface }, x.up ? 1 : 0);
    });
  },
  routes(app, { engine, metrics, prefix }) {
    app.get(`${prefix}/interfaces`, { config: { role: 'viewer' }, schema: { summary: 'Managed interfaces: configured zone, live state and counters' } }, async () => {
      const zones = new Map((engine.committedConfig()?.interfaces ?? []).map((i) => [i.name, i.zone]));
      const s = await metrics.snapshot();
      const live = s.bySubsystem.flatMap((x) => (x.metrics as InterfaceMetrics | undefined)?.interfaces ?? []);
      return live.map((l) => ({ ...l, managed: zones.has(l.interface), zone: zones.get(l.interface) ?? null }));
    });
  },
  operations: (P): Record<string, Operation> => ({
    [`GET ${P}/interfaces`]: { operationId: 'listInterfaces', tag: 'counters', ok: { type: 'array', items: anyObject('live state and counters of an interface, with its configured zone') }, errors: [401, 500] },
  }),
};
