import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { resolveAliases, resolveNetworkRef, resolvePortRef, type AliasConfig } from '../../src/aliases/aliases.js';
import { formatPrefix } from '../../src/net/address.js';
import { formatIssue } from '../../src/config/issues.js';
import { validateDocument } from '../../src/domains.js';

const a = (name: string, type: AliasConfig['type'], entries: string[], files: string[] = []): AliasConfig => ({ name, type, entries, files });
const files: Record<string, string> = { '/t/block.txt': '# blocklist\n203.0.113.0/24\n198.51.100.7 # one host\n\n2001:db8:bad::/48\n' };
const read = (p: string) => {
  const f = files[p];
  if (f === undefined) throw new Error('ENOENT: no such file');
  return f;
};

describe('aliases', () => {
  it('resolves nested aliases, files and countries', () => {
    const { table, issues } = resolveAliases(
      [
        a('inner', 'network', ['10.0.0.0/8']),
        a('outer', 'network', ['inner', '192.168.1.1', 'eu', 'blocked']),
        a('blocked', 'network', [], ['/t/block.txt']),
        a('eu', 'country', ['de', 'FR']),
        a('web', 'port', ['80', '443', '8000-8100']),
      ],
      read,
    );
    assert.deepEqual(issues, []);
    const outer = table.get('outer')!;
    assert.deepEqual(outer.prefixes.map(formatPrefix).sort(), ['10.0.0.0/8', '192.168.1.1/32', '198.51.100.7/32', '2001:db8:bad::/48', '203.0.113.0/24']);
    assert.deepEqual(outer.countries, ['DE', 'FR']);
    assert.deepEqual(table.get('web')!.ports, [{ from: 80, to: 80 }, { from: 443, to: 443 }, { from: 8000, to: 8100 }]);
    assert.deepEqual(resolveNetworkRef('inner', table).prefixes.map(formatPrefix), ['10.0.0.0/8']);
    assert.deepEqual(resolveNetworkRef('2001:db8::/32', table).prefixes.map(formatPrefix), ['2001:db8::/32']);
    assert.deepEqual(resolvePortRef('web', table).length, 3);
    assert.throws(() => resolveNetworkRef('nope', table), /unknown alias "nope"/);
    assert.throws(() => resolvePortRef('inner', table), /network alias, not a port alias/);
  });

  it('reports every problem with its path', () => {
    const { issues } = resolveAliases(
      [
        a('x', 'network', ['y']),
        a('y', 'network', ['x', '10.0.0.300/24']),
        a('p', 'port', ['70000', 'x', 'ghost']),
        a('f', 'network', [], ['/t/missing.txt']),
        a('x', 'network', []),
      ],
      read,
    );
    const text = issues.map(formatIssue);
    assert.ok(text.includes('aliases[4].name: alias "x" is defined twice'), text.join('\n'));
    assert.ok(text.some((t) => /^aliases\[1\]\.entries\[0\]: alias cycle: x -> y -> x$/.test(t)), text.join('\n'));
    assert.ok(text.includes('aliases[1].entries[1]: "10.0.0.300/24" is not a valid IPv4 or IPv6 prefix'), text.join('\n'));
    assert.ok(text.includes('aliases[2].entries[0]: "70000": ports are 0-65535'), text.join('\n'));
    assert.ok(text.includes('aliases[2].entries[1]: alias "x" is a network alias; a port alias cannot include it'), text.join('\n'));
    assert.ok(text.includes('aliases[2].entries[2]: unknown alias "ghost"'), text.join('\n'));
    assert.ok(text.some((t) => t.startsWith('aliases[3].files[0]: cannot read "/t/missing.txt"')), text.join('\n'));
  });

  it('the document reports schema problems with paths', () => {
    const { issues } = validateDocument({ interfaces: [{ name: 'this-name-is-far-too-long' }, { name: 'eth0', zone: 'Bad Zone' }], bogus: 1 }, read);
    const text = issues.map(formatIssue);
    assert.ok(text.some((t) => t.startsWith('interfaces[0].name:')), text.join('\n'));
    assert.ok(text.some((t) => t.startsWith('interfaces[1].zone:')), text.join('\n'));
    assert.ok(text.some((t) => /bogus/.test(t)), text.join('\n'));
  });
});
