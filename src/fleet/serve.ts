/**
 * `patronus serve --fleet ...`: joins the fleet after start-up
 * reconciliation (so the node runs its last committed revision whether or
 * not etcd answers), serves /api/v1/fleet/*, and stops the agent when the
 * server closes. Nothing here can keep the server from starting: an
 * unreachable etcd is logged and retried by the agent.
 */
import { hostname } from 'node:os';
import type { FastifyInstance } from 'fastify';
import type { Engine } from '../apply/engine.js';
import type { DriftMonitor } from '../drift/monitor.js';
import type { Metrics } from '../metrics/metrics.js';
import { buildInfo } from '../metrics/build-info.js';
import { FleetAgent } from './agent.js';
import { etcdClient, describeFleet, type FleetConnection } from './connect.js';
import { FleetController } from './controller.js';
import { EngineDriver } from './driver.js';
import { checkName, FleetKeys } from './model.js';
import { fleetRoutes } from './routes.js';
import { centralValidator } from './validate.js';
import { domains } from '../domains.js';

export interface FleetServeOptions extends FleetConnection {
  node?: string;
  group?: string;
  labels?: Record<string, string>;
  leaseTtlSeconds?: number;
  retryMs?: number;
}

export async function joinFleet(o: FleetServeOptions, ctx: { app: FastifyInstance; engine: Engine; drift: DriftMonitor; metrics?: Metrics }): Promise<FleetAgent> {
  const node = checkName('node', o.node ?? hostname().split('.')[0]!);
  const group = checkName('group', o.group ?? 'default');
  const client = etcdClient(o);
  const keys = new FleetKeys(o.prefix);
  const agent = new FleetAgent({
    client,
    keys,
    node,
    group,
    labels: o.labels ?? {},
    version: buildInfo().version,
    driver: new EngineDriver(ctx.engine, ctx.drift, ctx.metrics),
    ...(o.leaseTtlSeconds ? { leaseTtlSeconds: o.leaseTtlSeconds, heartbeatMs: Math.max(500, (o.leaseTtlSeconds * 1000) / 4) } : {}),
    ...(o.retryMs ? { retryMs: o.retryMs } : {}),
    log: (l) => console.log(`patronus: ${l}`),
  });
  agent.on('error', (e) => console.error(`patronus: fleet: ${e.message}`));
  agent.on('connected', () => console.log(`patronus: fleet: node ${node} registered in group ${group} at ${describeFleet(o.url)}`));
  const controller = new FleetController(client, centralValidator(domains), { keys });
  await ctx.app.register(fleetRoutes, { controller });
  ctx.app.addHook('onClose', async () => {
    await agent.stop();
    client.close();
  });
  return agent;
}
