/**
 * Child process for the crash test: applies one document with the engine
 * and the test's subsystems, printing a line at each step so the parent can
 * kill -9 it at a chosen moment.
 *   node apply_child.js STATE_DIR NETNS DOCUMENT_JSON [MESSAGE [BPF_ROOT]]
 * Subsystems: interfaces, fast path, nftables and the test's fault injector.
 */
import { join } from 'node:path';
import { Engine } from '../../src/apply/engine.js';
import { interfacesSubsystem } from '../../src/interfaces/subsystem.js';
import { fastpathSubsystem } from '../../src/fastpath/subsystem.js';
import { nftSubsystem } from '../../src/nft/subsystem.js';
import { Store } from '../../src/store/store.js';
import { Host } from '../../src/system/host.js';
import { faultSubsystem } from './control.js';
import { domains } from '../../src/domains.js';

/** what the crash test's child and its restarts drive, in apply order (test/integration/crash.test.ts uses the same list) */
const crashSubsystems = () => [interfacesSubsystem, fastpathSubsystem, nftSubsystem, faultSubsystem()];

const [stateDir, netns, documentJson, message, bpfRoot] = process.argv.slice(2);
const store = Store.open(join(stateDir!, 'patronus.db'));
const engine = new Engine({ domains, host: new Host({ netns: netns!, stateDir: stateDir!, ...(bpfRoot ? { bpfRoot } : {}) }), store, subsystems: crashSubsystems() });
engine.on('progress', (e) => {
  if (e.phase === 'apply') process.stdout.write(`step ${e.subsystem}\n`);
});
process.stdout.write('ready\n');
await engine.apply({ document: JSON.parse(documentJson!) }, { author: 'child', message: message ?? 'crash me' });
process.stdout.write('done\n');
