import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigText } from '../../src/config/load.js';
import { loadConfigText } from '../../src/domains.js';
import { validateDocument } from '../../src/domains.js';
import { ConfigError, formatFileIssue, formatPath, type Issue } from '../../src/config/issues.js';
import { describeError } from '../../src/cli/client.js';
import { errorJson } from '../../src/cli/errors.js';

const noFiles = (p: string): string => {
  throw new Error(`ENOENT: ${p}`);
};

/** "path @ line:column" for each issue, to compare whole sets at once */
const at = (issues: Issue[]) => issues.map((i) => `${formatPath(i.path)} @ ${i.line}:${i.column}`).sort();

describe('schema issues carry line and column', () => {
  const yaml = [
    'interfaces:', //                                    1
    '  - name: wan0', //                                 2
    '    zone: wan', //                                  3
    '    mtu: "big"', //                                 4  value at col 10
    'firewall:', //                                      5
    '  rules:', //                                       6
    '    - name: r1', //                                 7
    '      direction: input', //                         8
    '      action: maybe', //                            9  value at col 15
    '      colour: red', //                              10 unknown key at col 7
    '    - { name: r2, action: accept, direction: up }', // 11 "up" at col 46
    'dns:', //                                           12
    '  enabled: yes-please', //                          13 col 12
    'bogus: 1', //                                       14 unknown section at col 1
  ].join('\n');

  it('YAML: each issue points at its node; an unknown key at the key itself', () => {
    const { issues } = loadConfigText(yaml, noFiles);
    const got = at(issues);
    for (const want of ['interfaces[0].mtu @ 4:10', 'firewall.rules[0].action @ 9:15', 'firewall.rules[0] @ 10:7', 'firewall.rules[1].direction @ 11:46', 'dns.enabled @ 13:12', '(document) @ 14:1']) {
      assert.ok(got.includes(want), `missing ${want} in:\n${got.join('\n')}`);
    }
  });

  it('a missing required field points at the object that lacks it', () => {
    const { issues } = loadConfigText('interfaces:\n  - zone: wan\n    mtu: 1500\n', noFiles);
    assert.deepEqual(at(issues), ['interfaces[0].name @ 2:5']);
  });

  it('through YAML anchors and aliases, at the anchored node', () => {
    const { issues } = loadConfigText('x-base: &base { name: wan0, mtu: huge }\ninterfaces:\n  - *base\n', noFiles);
    assert.ok(at(issues).includes('interfaces[0].mtu @ 1:34'), at(issues).join('\n'));
  });

  it('JSON text: positions too (the JSON is re-read as YAML only when there are issues)', () => {
    const json = '{\n  "interfaces": [\n    {"name": "wan0", "mtu": "big"}\n  ],\n  "bogus": true\n}';
    const { issues } = loadConfigText(json, noFiles, 'json');
    assert.deepEqual(at(issues), ['(document) @ 5:3', 'interfaces[0].mtu @ 3:29']);
  });

  it('alias problems are located as well', () => {
    const { issues } = loadConfigText('aliases:\n  - name: a\n    type: network\n    entries: [10.0.0.0/8, nope]\n', noFiles);
    assert.deepEqual(at(issues), ['aliases[0].entries[1] @ 4:27']);
  });

  it('many issues in a long document: located in one pass, not one rescan each', () => {
    const n = 40_000;
    const text = `aliases:\n  - name: big\n    type: network\n    entries:\n${Array.from({ length: n }, (_, k) => `      - not-an-address-${k}\n`).join('')}`;
    const t0 = performance.now();
    const { issues } = loadConfigText(text, noFiles);
    const ms = performance.now() - t0;
    assert.ok(issues.length >= 1000, `${issues.length} issues`);
    const last = issues.find((i) => formatPath(i.path) === `aliases[0].entries[${n - 1}]`);
    if (last) assert.deepEqual([last.line, last.column], [n + 4, 9]);
    assert.equal(issues[0]!.line, 5);
    // generous for a loaded 2-core machine; rescanning the text per issue took minutes
    assert.ok(ms < 20_000, `${ms.toFixed(0)} ms`);
  });

  it('a document that did not come from text keeps paths only', () => {
    const { issues } = validateDocument({ interfaces: [{ name: 'wan0', mtu: 'big' }] }, noFiles);
    assert.equal(issues.length, 1);
    assert.equal(issues[0]!.line, undefined);
  });

  it('a valid document parsed from text validates as before', () => {
    const r = loadConfigText('interfaces:\n  - name: wan0\n    zone: wan\n', noFiles);
    assert.deepEqual(r.issues, []);
    assert.ok(r.validated);
  });
});

describe('the CLI prints FILE:LINE:COL: path: message', () => {
  it('for schema issues, syntax errors and issues without a position', () => {
    const parsed = parseConfigText('interfaces:\n  - name: wan0\n    mtu: "big"\n', 'yaml');
    const { issues } = validateDocument(parsed.value, noFiles);
    const syntax = parseConfigText('interfaces: [wan\n', 'yaml').issues;
    const err = new ConfigError([...issues, ...syntax, { path: ['dns'], message: 'no position here' }]);
    const lines = describeError(err, 'office.yaml').split('\n');
    assert.equal(lines[0], 'invalid configuration:');
    assert.match(lines[1]!, /^office\.yaml:3:10: interfaces\[0\]\.mtu: /);
    assert.match(lines[2]!, /^office\.yaml:\d+:\d+: invalid YAML: /);
    assert.equal(lines[3], 'office.yaml: dns: no position here');
    // without a file name: the familiar indented form
    assert.match(describeError(err).split('\n')[1]!, /^ {2}interfaces\[0\]\.mtu: /);
    // --json carries the position as numbers
    assert.deepEqual(
      { line: errorJson(err, 2).error.issues![0]!.line, column: errorJson(err, 2).error.issues![0]!.column },
      { line: 3, column: 10 },
    );
  });

  it('formats a server-reported issue the same way', () => {
    assert.equal(formatFileIssue('-', { path: 'fastpath', message: 'bad', line: 7, column: 3 }), '-:7:3: fastpath: bad');
  });
});
