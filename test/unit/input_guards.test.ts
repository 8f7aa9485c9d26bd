/**
 * The input guards (src/config/input.ts, address text rules, alias limits,
 * minimalPrefixes): empty documents, JSON duplicate keys, YAML alias bombs,
 * files that are not regular files, deep and wide aliases, zone indexes,
 * whitespace and host bits, overlapping port forwards.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isEmptyDocument, emptyDocumentIssues, findDuplicateJsonKey, readRegularFile } from '../../src/config/input.js';
import { parseConfigText } from '../../src/config/load.js';
import { loadConfigText, loadConfigFile } from '../../src/domains.js';
import { validateDocument } from '../../src/domains.js';
import { ConfigError, formatIssue, MAX_ISSUES } from '../../src/config/issues.js';
import { compileFirewall } from '../../src/nft/compile.js';
import { compileFastpath } from '../../src/fastpath/compile.js';
import { minimalPrefixes, parsePrefix, parseNetwork, formatPrefix, type Prefix } from '../../src/net/address.js';
import { formatPlan } from '../../src/apply/plan.js';

const issuesOf = (doc: unknown, readFile: (p: string) => string = () => '') => validateDocument(doc, readFile).issues.map(formatIssue);

describe('empty documents', () => {
  const empties: [string, string | undefined][] = [
    ['empty text', ''],
    ['whitespace', '  \n\n'],
    ['YAML null', 'null'],
    ['YAML ~', '~'],
    ['document marker', '---'],
    ['document marker and end', '---\n...\n'],
    ['only comments', '# nothing here\n# at all\n'],
    ['JSON {}', '{}'],
    ['JSON null', 'null'],
    ['version only', 'version: 1\n'],
  ];
  for (const [name, text] of empties) {
    it(`"${name}" is empty and refused unless allowed`, () => {
      const parsed = parseConfigText(text!);
      assert.deepEqual(parsed.issues, []);
      assert.equal(isEmptyDocument(parsed.value), true);
      const refused = emptyDocumentIssues(parsed.value, false);
      assert.equal(refused.length, 1);
      assert.match(refused[0]!.message, /document is empty: applying it would remove everything .*allowEmpty: true .*--allow-empty/);
      assert.deepEqual(emptyDocumentIssues(parsed.value, true), []);
    });
  }
  it('empty text is an empty document in JSON too', () => {
    for (const text of ['', ' \n']) {
      const r = parseConfigText(text, 'json');
      assert.deepEqual(r.issues, []);
      assert.equal(isEmptyDocument(r.value), true);
    }
  });
  it('a document with any section is not empty', () => {
    for (const d of [{ interfaces: [] }, { firewall: { enabled: false } }, { version: 1, aliases: [] }, 'x', [], 0]) assert.equal(isEmptyDocument(d), false, JSON.stringify(d));
  });
  it('the plan of an empty document says it removes everything', () => {
    const text = formatPlan({ removesEverything: true, subsystems: [{ subsystem: 'nftables', changes: [{ action: 'remove', object: 'table inet patronus' }] }], summary: { add: 0, remove: 1, change: 0, reload: 0, restart: 0, start: 0, stop: 0 } });
    assert.match(text, /^The document is empty: applying it removes everything/);
    const none = formatPlan({ removesEverything: true, subsystems: [], summary: { add: 0, remove: 0, change: 0, reload: 0, restart: 0, start: 0, stop: 0 } });
    assert.match(none, /removes everything[\s\S]*No changes/);
  });
});

describe('JSON duplicate keys', () => {
  const cases: [string, string, RegExp, string][] = [
    ['top level', '{"firewall": {"enabled": true},\n "firewall": {"enabled": false}}', /duplicate key "firewall" at firewall \(first at line 1, column 2\)/, 'line 2, column 2'],
    ['nested', '{"a": {"b": 1, "b": 2}}', /duplicate key "b" at a\.b/, 'line 1, column 16'],
    ['in a list item', '{"l": [{"x": 1}, {"x": 1, "x": 2}]}', /at l\[1\]\.x/, 'line 1, column 27'],
    ['escaped spelling of the same key', '{"ab": 1, "a\\u0062": 2}', /duplicate key "ab"/, 'line 1, column 11'],
    ['after strings holding braces and quotes', '{"s": "{\\"x\\": [", "t": 1, "t": 2}', /duplicate key "t"/, 'line 1, column 28'],
  ];
  for (const [name, text, msg, where] of cases) {
    it(name, () => {
      const r = parseConfigText(text, 'json');
      assert.equal(r.issues.length, 1, JSON.stringify(r));
      assert.match(r.issues[0]!.message, msg);
      assert.deepEqual(r.issues[0]!.path, [where]);
    });
  }
  it('refuses __proto__ and constructor keys (prototype poisoning)', () => {
    assert.match(parseConfigText('{"interfaces": [{"__proto__": {"zone": "x"}}]}', 'json').issues[0]!.message, /key "__proto__" at interfaces\[0\]\.__proto__ is refused \(prototype poisoning\)/);
    assert.match(parseConfigText('{"constructor": {"prototype": {}}}', 'json').issues[0]!.message, /key "constructor" at constructor is refused/);
  });
  it('syntax errors carry line and column even where JSON.parse gives no position', () => {
    for (const [text, where] of [
      ['{\n  "a": 1,\n  "b": x\n}', 'line 3, column 8'],
      ['{"a": 1,}', 'line 1, column 9'],
      ['[1 2]', 'line 1, column 4'],
      ['{"a": "b\nc"}', 'line 1, column 9'],
      ['{"a": 1} x', 'line 1, column 10'],
      ['{"a": [', 'line 1, column 8'],
    ] as const) {
      const r = parseConfigText(text, 'json');
      assert.deepEqual(r.issues[0]?.path, [where], `${JSON.stringify(text)}: ${JSON.stringify(r.issues)}`);
      assert.match(r.issues[0]!.message, /^invalid JSON: /);
      assert.doesNotMatch(r.issues[0]!.message, /is not valid JSON/);
    }
  });
  it('equal keys in different objects are fine', () => {
    assert.equal(findDuplicateJsonKey('{"a": {"x": 1}, "b": {"x": 1}, "c": [{"x": 1}, {"x": 2}], "x": "x"}'), undefined);
  });
  it('scans deep nesting without recursion', () => {
    const deep = `${'['.repeat(50_000)}${']'.repeat(50_000)}`;
    assert.equal(findDuplicateJsonKey(deep), undefined);
  });
  it('YAML duplicates stay refused with a line', () => {
    const r = parseConfigText('firewall:\n  enabled: true\nfirewall:\n  enabled: false\n', 'yaml');
    assert.match(r.issues[0]!.message, /invalid YAML: .*unique/i);
    assert.match(String(r.issues[0]!.path[0]), /^line 3, column \d+$/);
  });
});

describe('YAML resource bombs', () => {
  it('an alias bomb is an issue, not an exception', () => {
    let text = 'a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n';
    for (let i = 1; i < 9; i++) text += `a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]\n`;
    const r = loadConfigText(text);
    assert.equal(r.validated, undefined);
    assert.match(r.issues[0]!.message, /invalid YAML: .*alias/i);
  });
  it('deep nesting is refused before the parser recurses (flow, block, compact sequences)', () => {
    let block = '';
    for (let i = 0; i < 3000; i++) block += `${' '.repeat(i)}k${i}:\n`;
    for (const text of [`interfaces: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`, block, `${'- '.repeat(20_000)}x\n`, `a: ${'{a: '.repeat(5000)}1${'}'.repeat(5000)}\n`]) {
      const r = loadConfigText(text);
      assert.equal(r.validated, undefined);
      assert.match(formatIssue(r.issues[0]!), /^line \d+, column \d+: invalid YAML: nested more than 512 levels deep$/);
    }
    // brackets in quoted strings and comments are not nesting
    assert.deepEqual(parseConfigText(`a: "${'['.repeat(2000)}"\nb: '${'{'.repeat(2000)}'\n# ${'['.repeat(3000)}\n`).issues, []);
  });
});

describe('files a document names', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'pt-input-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const aliasIssues = (file: string) => issuesOf({ aliases: [{ name: 'f', type: 'network', files: [file] }] }, (p) => readRegularFile(p, 1 << 20));

  it('reads a regular file', () => {
    writeFileSync(join(dir, 'ok.txt'), '10.0.0.0/8\n# comment\n192.0.2.0/24 # trailing\r\n');
    assert.deepEqual(aliasIssues(join(dir, 'ok.txt')), []);
  });
  it('refuses /dev/zero, a directory and a FIFO at once (no read, no hang)', () => {
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    mkdirSync(join(dir, 'sub'));
    const t0 = performance.now();
    assert.match(aliasIssues('/dev/zero')[0]!, /aliases\[0\]\.files\[0\]: cannot read "\/dev\/zero": \/dev\/zero is a character device, not a regular file/);
    assert.match(aliasIssues(fifo)[0]!, /aliases\[0\]\.files\[0\]: .* is a FIFO, not a regular file/);
    assert.match(aliasIssues(join(dir, 'sub'))[0]!, /is a directory, not a regular file/);
    assert.ok(performance.now() - t0 < 2000);
  });
  it('refuses a file over the size limit, before reading it', () => {
    const big = join(dir, 'big');
    writeFileSync(big, '');
    truncateSync(big, 3 * 2 ** 30); // sparse 3 GiB
    assert.match(aliasIssues(big)[0]!, /is 3221225472 bytes, more than the limit of 1048576 bytes/);
    assert.throws(() => readRegularFile(big), /more than the limit of 67108864 bytes/);
  });
  it('a missing file names the path', () => {
    assert.match(aliasIssues(join(dir, 'nope'))[0]!, /aliases\[0\]\.files\[0\]: cannot read ".*nope": ENOENT/);
  });
  it('the document file itself is read the same way', () => {
    assert.match(formatIssue(loadConfigFile('/dev/zero').issues[0]!), /cannot read \/dev\/zero: \/dev\/zero is a character device/);
  });
});

describe('address text: one rule everywhere', () => {
  const where = (value: string) => ({
    alias: { aliases: [{ name: 'a', type: 'network', entries: [value] }] },
    interface: { interfaces: [{ name: 'lan0', addresses: [value.includes('/') ? value : `${value}/24`] }] },
  });
  const refused: [string, RegExp][] = [
    [' 10.0.0.0/8', /leading or trailing whitespace/],
    ['10.0.0.0/8 ', /leading or trailing whitespace/],
    ['10.0.0.0/8\n', /leading or trailing whitespace or a line break/],
    ['\t10.0.0.0/8', /leading or trailing whitespace/],
    ['fe80::1%eth0/64', /IPv6 zone index \(%eth0\)/],
    ['fe80::1%1', /IPv6 zone index \(%1\)/],
  ];
  for (const [value, msg] of refused) {
    it(`${JSON.stringify(value)} is refused in aliases and interfaces alike`, () => {
      const w = where(value);
      const a = issuesOf(w.alias);
      assert.equal(a.length, 1, a.join('\n'));
      assert.match(a[0]!, /^aliases\[0\]\.entries\[0\]: /);
      assert.match(a[0]!, msg);
      const i = issuesOf(w.interface);
      assert.match(i[0]!, /^interfaces\[0\]\.addresses\[0\]: /);
      assert.match(i[0]!, msg);
    });
  }
  it('host bits: refused where a network is meant, kept where an interface address is meant', () => {
    assert.match(issuesOf(where('10.0.0.1/24').alias)[0]!, /"10\.0\.0\.1\/24" has host bits set: write the network 10\.0\.0\.0\/24, or 10\.0\.0\.1\/32 for the one address/);
    assert.deepEqual(issuesOf(where('10.0.0.1/24').interface), []);
    assert.match(issuesOf({ interfaces: [{ name: 'lan0' }], dhcp: { enabled: true, subnets: [{ subnet: '10.0.0.1/24', interface: 'lan0' }] } })[0]!, /dhcp\.subnets\[0\]\.subnet: "10\.0\.0\.1\/24" has host bits set/);
    assert.match(issuesOf({ interfaces: [{ name: 'lan0' }], dhcp: { enabled: true, subnets: [{ subnet: '10.0.0.0/24\n', interface: 'lan0' }] } })[0]!, /dhcp\.subnets\[0\]\.subnet: .*line break/);
    assert.throws(() => parseNetwork('2001:db8::1/64'), /host bits set: write the network 2001:db8::\/64/);
    assert.equal(formatPrefix(parseNetwork('10.0.0.1')), '10.0.0.1/32');
    // internal derivation of a network from an interface address still clears host bits
    assert.equal(formatPrefix(parsePrefix('10.0.0.1/24')), '10.0.0.0/24');
  });
  it('fast-path and firewall rule literals follow the same rule, at the rule path', () => {
    const doc = (src: string) => ({
      interfaces: [{ name: 'wan0', zone: 'wan' }],
      fastpath: { interfaces: [{ name: 'wan0' }], rules: [{ name: 'r', source: src, action: 'drop' }] },
      firewall: { rules: [{ name: 'x', action: 'drop', source: [src] }] },
    });
    for (const [value, msg] of [...refused, ['10.0.0.1/24', /host bits set/] as [string, RegExp]]) {
      const v = validateDocument(doc(value), () => '');
      assert.ok(v.validated, JSON.stringify(v.issues));
      const fp = compileFastpath({ fastpath: v.validated.config.fastpath, aliases: v.validated.aliases });
      assert.match(fp.issues.map(formatIssue).join('\n'), new RegExp(`^fastpath\\.rules\\[0\\]\\.source: .*${msg.source}`, 'm'));
      const fw = compileFirewall({ openings: [], config: v.validated.config, aliases: v.validated.aliases, readFile: () => '' });
      assert.match(fw.issues.map(formatIssue).join('\n'), new RegExp(`^firewall\\.rules\\[0\\]\\.source\\[0\\]: .*${msg.source}`, 'm'));
    }
  });
});

describe('aliases at scale', () => {
  it('10000 nested aliases: a path-qualified depth issue, no stack overflow', () => {
    const aliases = Array.from({ length: 10_000 }, (_, i) => ({ name: `a${i}`, type: 'network', entries: [i === 9999 ? '10.0.0.0/8' : `a${i + 1}`] }));
    const issues = issuesOf({ aliases });
    assert.ok(issues.length > 0);
    assert.match(issues[0]!, /^aliases\[31\]\.entries\[0\]: aliases nest more than 32 deep \(a0 -> \.\.\. -> a31 -> a32\)/);
  });
  it('a 150k-entry alias fits a fast-path rule (capacity 262144) and a firewall rule', () => {
    const entries = Array.from({ length: 150_000 }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    const v = validateDocument(
      {
        interfaces: [{ name: 'wan0', zone: 'wan' }],
        aliases: [
          { name: 'big', type: 'network', entries },
          { name: 'outer', type: 'network', entries: ['big'] },
        ],
        fastpath: { interfaces: [{ name: 'wan0' }], rules: [{ name: 'r', source: 'outer', action: 'drop' }] },
        firewall: { rules: [{ name: 'x', action: 'drop', source: ['outer'] }] },
      },
      () => '',
    );
    assert.ok(v.validated, JSON.stringify(v.issues.slice(0, 3)));
    const fp = compileFastpath({ fastpath: v.validated.config.fastpath, aliases: v.validated.aliases });
    assert.deepEqual(fp.issues, []);
    const fw = compileFirewall({ openings: [], config: v.validated.config, aliases: v.validated.aliases, readFile: () => '' });
    assert.deepEqual(fw.issues, []);
  });
  it('a flood of bad entries is capped in the error', () => {
    const e = new ConfigError(Array.from({ length: 5000 }, (_, i) => ({ path: ['aliases', 0, 'entries', i], message: 'bad' })));
    assert.equal(e.issues.length, MAX_ISSUES + 1);
    assert.match(e.issues.at(-1)!.message, /and 4000 more problems/);
    assert.match(e.message, /^5000 problems:/);
  });
});

describe('minimalPrefixes', () => {
  const brute = (list: Prefix[]) => {
    const bits = (p: Prefix) => BigInt(`0x${Buffer.from(p.family === 4 ? p.address.split('.').map(Number) : []).toString('hex') || '0'}`);
    const covers = (o: Prefix, i: Prefix) => o.family === i.family && o.length <= i.length && bits(o) >> BigInt(32 - o.length) === bits(i) >> BigInt(32 - o.length);
    const kept = list.filter((p, k) => !list.some((o, m) => m !== k && covers(o, p) && (o.length < p.length || m < k)));
    return [...new Set(kept.map(formatPrefix))].sort();
  };
  it('matches a brute-force reference on random IPv4 prefixes', () => {
    let seed = 7;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    for (let round = 0; round < 30; round++) {
      const list = Array.from({ length: 200 }, () => parsePrefix(`10.${rnd(4)}.${rnd(8)}.${rnd(256)}/${8 + rnd(25)}`));
      assert.deepEqual(minimalPrefixes(list).map(formatPrefix).sort(), brute(list));
    }
  });
  it('keeps families apart and sorts by address', () => {
    const out = minimalPrefixes(['2001:db8:1::/48', '10.1.0.0/16', '::/0', '10.0.0.0/8', '192.168.1.1', '2001:db8::/32'].map(parsePrefix)).map(formatPrefix);
    assert.deepEqual(out, ['10.0.0.0/8', '192.168.1.1/32', '::/0']);
  });
  it('150k prefixes in well under the old minutes (sanity bound, not a benchmark)', () => {
    const list: Prefix[] = [];
    for (let i = 0; i < 150_000; i++) list.push(parsePrefix(`${10 + (i % 50)}.${(i >> 8) & 255}.${i & 255}.0/${24 + (i % 9)}`.replace(/\/(2[5-9]|3[0-2])$/, '/24')));
    for (let i = 0; i < 1000; i++) list.push(parsePrefix(`2001:db8:${i.toString(16)}::/48`));
    const t0 = performance.now();
    const out = minimalPrefixes(list);
    const ms = performance.now() - t0;
    assert.ok(out.length > 0);
    assert.ok(ms < 5000, `${ms.toFixed(0)} ms`);
  });
});

describe('port forwards', () => {
  const fw = (forwards: unknown[]) => {
    const v = validateDocument({ interfaces: [{ name: 'wan0', zone: 'wan' }, { name: 'wan1', zone: 'wan' }], firewall: { portForwards: forwards } }, () => '');
    assert.ok(v.validated, JSON.stringify(v.issues));
    return compileFirewall({ openings: [], config: v.validated.config, aliases: v.validated.aliases, readFile: () => '' }).issues.map(formatIssue);
  };
  const pf = (name: string, extra: Record<string, unknown>) => ({ name, interface: 'wan0', port: 8080, target: '10.0.0.2', ...extra });
  it('refuses the second of two forwards that catch the same packets, at its path', () => {
    assert.match(fw([pf('a', {}), pf('b', { target: '10.0.0.3' })])[0]!, /^firewall\.portForwards\[1\]\.port: overlaps portForwards\[0\] \("a"\): both forward tcp port 8080 arriving on wan0/);
    assert.match(fw([pf('a', { port: '8000-8100' }), pf('b', { port: 8050 })])[0]!, /portForwards\[1\]\.port: overlaps portForwards\[0\].*port 8050/);
    assert.match(fw([pf('a', { protocol: 'tcp_udp' }), pf('b', { protocol: 'udp' })])[0]!, /both forward udp port 8080/);
    assert.match(fw([pf('a', {}), pf('b', { destination: '198.51.100.1' })])[0]!, /portForwards\[1\]\.port: overlaps/);
    assert.match(fw([pf('a', { source: ['192.0.2.0/24'] }), pf('b', { source: ['192.0.2.0/24'] })])[0]!, /portForwards\[1\]\.port: overlaps/);
  });
  it('allows forwards that can both match', () => {
    assert.deepEqual(fw([pf('a', {}), pf('b', { port: 8081 })]), []);
    assert.deepEqual(fw([pf('a', {}), pf('b', { interface: 'wan1' })]), []);
    assert.deepEqual(fw([pf('a', {}), pf('b', { protocol: 'udp' })]), []);
    assert.deepEqual(fw([pf('a', { destination: '198.51.100.1' }), pf('b', { destination: '198.51.100.2' })]), []);
    assert.deepEqual(fw([pf('a', { source: ['192.0.2.0/24'] }), pf('b', {})]), []);
  });
});
