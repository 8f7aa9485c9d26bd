/**
 * A Patronus instance started inside a network namespace without --netns,
 * as `nsenter --net=/var/run/netns/NS -- patronus serve --state-dir DIR`
 * would be: applies one document with the engine (fast path only), prints
 * one JSON line (pin root, report or error, program ids, rule names) and exits.
 *   nsenter --net=... node netns_instance_child.js STATE_DIR DOCUMENT_JSON [BPF_ROOT]
 */
import { join } from 'node:path';
import { Engine } from '../../src/apply/engine.js';
import { fastpathSubsystem, openFastpath } from '../../src/fastpath/subsystem.js';
import { Store } from '../../src/store/store.js';
import { Host } from '../../src/system/host.js';
import { domains } from '../../src/domains.js';

const [stateDir, documentJson, bpfRoot] = process.argv.slice(2) as [string, string, string | undefined];
const host = new Host({ stateDir, ...(bpfRoot ? { bpfRoot } : {}) });
const store = Store.open(join(stateDir, 'patronus.db'));
const engine = new Engine({ domains, host, store, subsystems: [fastpathSubsystem] });
const out: Record<string, unknown> = { bpfRoot: host.bpfRoot };
try {
  const report = await engine.apply({ document: JSON.parse(documentJson) }, { author: 'child', message: 'netns isolation' });
  out.state = report.state;
  using dp = await openFastpath(host);
  out.xdpProgId = dp.xdp.info.id;
  out.rules = dp.ruleCounters().map((r) => r.name);
} catch (e) {
  out.error = (e as Error).message;
}
process.stdout.write(`${JSON.stringify(out)}\n`);
store.close();
