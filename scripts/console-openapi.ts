/**
 * Prints the server's /openapi.json without a kernel or a listening socket
 * (an in-memory store, a server that is built but never listens). The console
 * build feeds it to openapi-typescript (src/console/generated/api.d.ts), so
 * the console's API types come from the same route schemas the server validates with.
 *   node dist/scripts/console-openapi.js > FILE
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine } from '../src/apply/engine.js';
import { Store } from '../src/store/store.js';
import { Host } from '../src/system/host.js';
import { buildServer } from '../src/api/server.js';
import { createMetrics } from '../src/metrics/metrics.js';
import { domains } from '../src/domains.js';

const stateDir = mkdtempSync(join(tmpdir(), 'patronus-openapi-'));
try {
  const store = Store.open(':memory:');
  const engine = new Engine({ domains, host: new Host({ stateDir }), store });
  const app = await buildServer({ engine, store, metrics: createMetrics(engine, { processMetrics: false }) });
  await app.ready();
  process.stdout.write(`${JSON.stringify(app.swagger(), null, 2)}\n`);
  await app.close();
  store.close();
} finally {
  rmSync(stateDir, { recursive: true, force: true });
}
