/**
 * A control plane in a child process, for the restart test: applies the
 * fast-path section of a document to a lab namespace, prints one JSON line
 * (was a data plane pinned before, program id), then stays alive like a
 * daemon until it is killed.
 *   node fastpath_child.js NETNS STATE_DIR BPF_ROOT DOCUMENT_JSON
 */
import { validateDocument } from '../../src/domains.js';
import { FastpathDataPlane } from '../../src/fastpath/dataplane.js';
import { fastpathPinDir, fastpathSubsystem, compileFastpathSection, observeFastpath } from '../../src/fastpath/subsystem.js';
import { Host } from '../../src/system/host.js';

const [netns, stateDir, bpfRoot, documentJson] = process.argv.slice(2) as [string, string, string, string];
const host = new Host({ netns, stateDir, bpfRoot });
const { validated, issues } = validateDocument(JSON.parse(documentJson), () => '');
if (!validated) throw new Error(JSON.stringify(issues));
const pinnedBefore = FastpathDataPlane.isPinned(fastpathPinDir(host));
const { desired, issues: ci } = compileFastpathSection(validated.config.fastpath, validated);
if (ci.length) throw new Error(JSON.stringify(ci));
await fastpathSubsystem.apply(desired, host);
const dp = observeFastpath(host);
process.stdout.write(`${JSON.stringify({ pinnedBefore, progId: dp.xdp.info.id, generation: dp.generation })}\n`);
// a control plane keeps running (and reading counters) until it is stopped
setInterval(() => dp.ruleCounters(), 200);
