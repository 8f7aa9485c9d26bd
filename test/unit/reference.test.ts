import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { configurationReference } from '../../src/config/reference.js';
import { documentSchema } from '../../src/domains.js';

describe('configuration reference', () => {
  it('is generated from the schemas and lists every section', () => {
    const md = configurationReference(documentSchema);
    for (const section of ['interfaces', 'aliases', 'fastpath', 'firewall', 'gateways', 'dns', 'dhcp', 'routing', 'ha', 'qos', 'ids', 'api']) {
      assert.match(md, new RegExp(`^## ${section}$`, 'm'), section);
    }
    assert.match(md, /`interfaces\[\]\.name` \| string \(pattern/);
    assert.match(md, /`aliases\[\]\.type` \| `"network"` \\\| `"port"` \\\| `"country"`/);
  });

  it('docs/configuration.md is the generated text (regenerate: node dist/src/config/reference.js > docs/configuration.md)', () => {
    // dist/test/unit -> repository root
    const file = join(import.meta.dirname, '..', '..', '..', 'docs', 'configuration.md');
    assert.equal(readFileSync(file, 'utf8'), configurationReference(documentSchema), 'docs/configuration.md is stale');
  });
});
