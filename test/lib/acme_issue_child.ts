/**
 * Orders (or renews) the certificates of a document's `certificates:`
 * section through the certificates subsystem, from inside the firewall's
 * namespace (the ACME server is only reachable there; the parent enters it
 * with nsenter), and prints one JSON line: each certificate in service, or
 * the error. What serves the certificates is driven by the parent test.
 *   nsenter --net=... node acme_issue_child.js STATE_DIR DOCUMENT_JSON
 */
import { readFileSync } from 'node:fs';
import { validateDocument } from '../../src/domains.js';
import { formatIssue } from '../../src/config/issues.js';
import { Host } from '../../src/system/host.js';
import { certificatesSubsystem } from '../../src/certificates/subsystem.js';
import { readCertificate } from '../../src/certificates/acme.js';

const [stateDir, documentJson] = process.argv.slice(2) as [string, string];
try {
  const { validated, issues } = validateDocument(JSON.parse(documentJson), (p) => readFileSync(p, 'utf8'));
  if (!validated) throw new Error(`the document: ${issues.map(formatIssue).join('; ')}`);
  const host = new Host({ stateDir });
  const { desired } = certificatesSubsystem.compile({ config: validated.config, aliases: validated.aliases, openings: [], readFile: (p) => readFileSync(p, 'utf8') });
  await certificatesSubsystem.apply(desired, host);
  process.stdout.write(`${JSON.stringify({ certs: desired.certs.map((c) => readCertificate(stateDir, c.name)) })}\n`);
} catch (e) {
  process.stdout.write(`${JSON.stringify({ error: (e as Error).stack ?? String(e) })}\n`);
}
// acme-client's HTTP agent keeps connections alive: do not wait for them
process.exit(0);
