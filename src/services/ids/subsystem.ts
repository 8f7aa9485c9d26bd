/**
 * IDS as a Subsystem: the Suricata service module through serviceSubsystem(),
 * plus the in-process engine (eve.json ingestion, auto-block) started and
 * stopped with it.
 */
import { defineSubsystem, type Subsystem, type SubsystemMetrics } from '../../apply/subsystem.js';
import type { Host } from '../../system/host.js';
import { instancePaths, serviceSubsystem } from '../common/service.js';
import { IDS_FILES, suricataModule, type IdsModel } from './suricata.js';
import { idsEngine, stopEngine, syncEngine } from './engine.js';

export { setBlockListProvider, idsEngine, IdsEngine } from './engine.js';
export type { BlockList } from './autoblock.js';
export type { EveAlert } from './eve.js';

type Desired = { model: IdsModel | null };

const base = serviceSubsystem(suricataModule);

function files(host: Host) {
  const paths = instancePaths(host.stateDir, suricataModule.name);
  return { eveFile: paths.file(IDS_FILES.eve), positionFile: paths.file(IDS_FILES.position) };
}

/** IDS series (declared in domain.ts): alerts since the control plane started, by signature (patronus_ids_alerts_total); sources auto-block added to the fast-path block list (patronus_ids_blocks_total) */
export interface IdsMetrics extends SubsystemMetrics {
  alerts?: { signatureId: number; signature: string; severity: number; count: number }[];
  blocks?: number;
}

export const idsSubsystem: Subsystem<Desired, IdsMetrics> = defineSubsystem<Desired, {}, IdsMetrics>({
  ...base,
  async steps(d, host) {
    // the in-process ingester follows its daemon: bookkeeping in this process, nothing plan would print
    return [...(await base.steps(d, host)), { changes: [], run: async () => void (await syncEngine(host, d.model, files(host))) }];
  },
  async teardown(host) {
    stopEngine(host);
    await base.teardown!(host);
  },
  async status(host) {
    const s = (await base.status!(host)) as Record<string, unknown>;
    const e = idsEngine(host);
    return { ...s, ...(e ? { ingest: e.summary() } : {}) };
  },
  async metrics(host) {
    const e = idsEngine(host);
    const running = (await base.status!(host)) as { running: boolean };
    return {
      services: [{ service: 'suricata', up: running.running }],
      ...(e
        ? {
            alerts: e.store.signatures().map((s) => ({ signatureId: s.signatureId, signature: s.signature, severity: s.severity, count: s.count })),
            blocks: e.blocker.blocks,
          }
        : {}),
    };
  },
});
