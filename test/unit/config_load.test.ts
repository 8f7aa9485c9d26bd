import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigText } from '../../src/config/load.js';
import { loadConfigText } from '../../src/domains.js';
import { formatIssue } from '../../src/config/issues.js';

const noFiles = (p: string): string => {
  throw new Error(`ENOENT: ${p}`);
};

describe('config loading', () => {
  it('reports YAML syntax errors with line and column', () => {
    const { issues } = parseConfigText('interfaces:\n  - name: wan0\n    zone: [wan\n', 'yaml');
    assert.ok(issues.length >= 1);
    assert.match(formatIssue(issues[0]!), /^line \d+, column \d+: invalid YAML: /);
  });

  it('reports duplicate YAML keys', () => {
    const { issues } = parseConfigText('version: 1\nversion: 1\n', 'yaml');
    assert.match(formatIssue(issues[0]!), /line 2, column 1: invalid YAML: Map keys must be unique/);
  });

  it('reports JSON syntax errors with a position', () => {
    const { issues } = parseConfigText('{\n  "interfaces": [,]\n}', 'json');
    assert.equal(issues.length, 1);
    assert.match(formatIssue(issues[0]!), /invalid JSON/);
  });

  it('detects JSON by its first character', () => {
    const r = loadConfigText('{"interfaces": [{"name": "wan0", "zone": "wan"}]}', noFiles);
    assert.deepEqual(r.issues, []);
    assert.equal(r.validated!.config.interfaces[0]!.zone, 'wan');
  });

  it('reports every problem at once, each with its path', () => {
    const text = [
      'interfaces:',
      '  - name: wan0',
      '    addresses: ["192.0.2.300/24", "10.0.0.1/33"]',
      '    mtu: "big"',
      '  - name: wan0',
      'aliases:',
      '  - { name: a, type: network, entries: [b] }',
      '  - { name: b, type: network, entries: [a] }',
      '  - { name: c, type: network, entries: [nope] }',
      'bogus: 1',
    ].join('\n');
    const { issues } = loadConfigText(text, noFiles);
    const lines = issues.map(formatIssue);
    const expect = [
      /^interfaces\[0\]\.addresses\[0\]: "192\.0\.2\.300\/24" is not an address/,
      /^interfaces\[0\]\.addresses\[1\]: "10\.0\.0\.1\/33": prefix length must be 0-32/,
      /^interfaces\[0\]\.mtu: /,
      /^\(document\): Unrecognized key: "bogus"|bogus/,
      /^aliases\[\d\]\.entries\[0\]: alias cycle: /,
      /^aliases\[2\]\.entries\[0\]: unknown alias "nope"/,
    ];
    for (const re of expect) assert.ok(lines.some((l) => re.test(l)), `missing ${re} in:\n${lines.join('\n')}`);
  });
});
