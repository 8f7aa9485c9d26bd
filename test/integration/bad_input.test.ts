/**
 * The bad-input suite: one real server (in-process, real subsystems) managing
 * a test namespace with a committed configuration (addresses, nftables rules
 * and NAT, the XDP fast path). Every case below is sent to it over HTTP —
 * config values, whole documents, files a document names, REST requests —
 * and each must get a clear 4xx whose issues name the path (or line and
 * column), never a 5xx; the server must stay alive; and nothing may change:
 * the store's revisions and, after every apply-endpoint case, the kernel
 * (nft ruleset, addresses, XDP program) are compared with a snapshot.
 * A few CLI cases close it (exit 2, same messages).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { FastifyInstance } from 'fastify';
import { Engine } from '../../src/apply/engine.js';
import { Store } from '../../src/store/store.js';
import { buildServer } from '../../src/api/server.js';
import { createMetrics } from '../../src/metrics/metrics.js';
import { missing } from '../lib/skip.js';
import { controlLab, type ControlLab } from '../lib/control.js';
import { domains } from '../../src/domains.js';

const skip = missing('netns');
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

type Doc = Record<string, any>;

/** The committed document every case starts from. */
const base = (): Doc => ({
  interfaces: [{ name: 'wan0', zone: 'wan', addresses: ['10.10.0.1/24'] }],
  aliases: [
    { name: 'office', type: 'network', entries: ['198.51.100.0/24'] },
    { name: 'web', type: 'port', entries: ['80', '443'] },
  ],
  firewall: {
    rules: [{ name: 'ssh', direction: 'input', from: 'wan', action: 'accept', protocol: 'tcp', ports: [22], source: ['office'] }],
    portForwards: [{ name: 'www', interface: 'wan0', port: 8080, target: '10.10.0.5', targetPort: 80 }],
    outboundNat: [{ name: 'out', interface: 'wan0', source: ['10.10.0.0/24'] }],
  },
  fastpath: { interfaces: [{ name: 'wan0' }], rules: [{ name: 'drop-bad', source: '203.0.113.0/24', action: 'drop' }] },
});

const mutate = (fn: (d: Doc) => void): Doc => {
  const d = base();
  fn(d);
  return d;
};

interface Case {
  name: string;
  method?: string;
  /** default: each of validate, plan and apply */
  path?: string | string[];
  body?: unknown;
  /** raw text body with this content type */
  contentType?: string;
  status?: number;
  /** the error message */
  expect: RegExp;
  /** an issue with exactly this path (or matching this pattern) */
  issue?: string | RegExp;
}

const DOC_PATHS = ['/api/v1/config/validate', '/api/v1/config/plan', '/api/v1/config/apply'];

// --- config values ----------------------------------------------------------

const BAD_NETWORKS: [string, RegExp][] = [
  [' 10.0.0.0/8', /leading or trailing whitespace/],
  ['10.0.0.0/8 ', /leading or trailing whitespace/],
  ['10.0.0.0/8\n', /line break/],
  ['\t10.0.0.0/8', /leading or trailing whitespace/],
  ['fe80::1%eth0/64', /IPv6 zone index \(%eth0\)/],
  ['fe80::1%eth0', /IPv6 zone index/],
  ['10.0.0.1/24', /host bits set: write the network 10\.0\.0\.0\/24/],
  ['2001:db8::1/64', /host bits set: write the network 2001:db8::\/64/],
  ['10.0.0.300/24', /not a valid IPv4 or IPv6 prefix/],
  ['10.0.0.0/33', /prefix length must be 0-32/],
  ['2001:db8::/129', /prefix length must be 0-128/],
  ['10.0.0.0/8/8', /is not a prefix/],
  ['10.0.0.0/', /prefix length must be 0-32/],
  ['10.0.0.0/-1', /prefix length/],
  ['::ffff:10.0.0.300', /not a valid IPv4 or IPv6 prefix/],
];
const NETWORK_FIELDS: { field: string; set: (d: Doc, v: string) => void; path: string }[] = [
  { field: 'alias entry', set: (d, v) => d.aliases[0].entries.push(v), path: 'aliases[0].entries[1]' },
  { field: 'fast-path source', set: (d, v) => (d.fastpath.rules[0].source = v), path: 'fastpath.rules[0].source' },
  { field: 'fast-path destination list', set: (d, v) => (d.fastpath.rules[0].destination = ['192.0.2.0/24', v]), path: 'fastpath.rules[0].destination[1]' },
  { field: 'firewall rule source', set: (d, v) => d.firewall.rules[0].source.push(v), path: 'firewall.rules[0].source[1]' },
  { field: 'firewall rule destination', set: (d, v) => (d.firewall.rules[0].destination = [v]), path: 'firewall.rules[0].destination[0]' },
  { field: 'outbound NAT source', set: (d, v) => (d.firewall.outboundNat[0].source = [v]), path: 'firewall.outboundNat[0].source[0]' },
  { field: 'port-forward source', set: (d, v) => (d.firewall.portForwards[0].source = [v]), path: 'firewall.portForwards[0].source[0]' },
];
// interface addresses: host bits are the point there, the rest is refused the same way
const BAD_INTERFACE_ADDRESSES: [string, RegExp][] = [
  [' 10.10.0.1/24', /leading or trailing whitespace/],
  ['10.10.0.1/24\n', /line break/],
  ['10.10.0.1/24 ', /leading or trailing whitespace/],
  ['fe80::1%eth0/64', /IPv6 zone index \(%eth0\)/],
  ['fe80::1%wan0/64', /IPv6 zone index \(%wan0\)/],
  ['10.10.0.1', /"10\.10\.0\.1" needs a prefix length, e\.g\. 10\.10\.0\.1\/24/],
  ['10.10.0.1/33', /prefix length must be 0-32/],
  ['10.10.0.256/24', /not an address with a prefix length/],
  ['2001:db8::1/129', /prefix length must be 0-128/],
];
const BAD_DHCP_SUBNETS: [string, RegExp][] = [
  ['10.10.0.0/24\n', /line break/],
  [' 10.10.0.0/24', /leading or trailing whitespace/],
  ['10.10.0.1/24', /host bits set/],
  ['10.10.0.0/33', /not an IPv4 network/],
  ['fe80::/64', /must be an IPv4 network/],
];
const BAD_PORTS: [string | number, RegExp][] = [
  ['70000', /ports are 0-65535/],
  ['80-70', /range end is below its start/],
  [' 80', /not a port or port range/],
  ['80 ', /not a port or port range/],
  ['1-2-3', /not a port or port range/],
  ['80\n', /not a port or port range/],
];

function valueCases(): Case[] {
  const out: Case[] = [];
  // every bad value in aliases; one of each kind in the other fields (same parser, different path)
  const kinds = new Set(['10.0.0.0/8 ', '10.0.0.0/8\n', 'fe80::1%eth0/64', '10.0.0.1/24', '2001:db8::1/64', '10.0.0.300/24', '10.0.0.0/33', '10.0.0.0/8/8']);
  for (const f of NETWORK_FIELDS) {
    for (const [v, msg] of BAD_NETWORKS.filter(([v]) => f === NETWORK_FIELDS[0] || kinds.has(v))) out.push({ name: `${f.field} ${JSON.stringify(v)}`, body: { config: mutate((d) => f.set(d, v)) }, expect: msg, issue: f.path });
  }
  for (const [v, msg] of BAD_INTERFACE_ADDRESSES) out.push({ name: `interface address ${JSON.stringify(v)}`, body: { config: mutate((d) => d.interfaces[0].addresses.push(v)) }, expect: msg, issue: 'interfaces[0].addresses[1]' });
  for (const [v, msg] of BAD_DHCP_SUBNETS) {
    out.push({ name: `DHCP subnet ${JSON.stringify(v)}`, body: { config: mutate((d) => (d.dhcp = { enabled: true, subnets: [{ subnet: v, interface: 'wan0' }] })) }, expect: msg, issue: 'dhcp.subnets[0].subnet' });
  }
  for (const [v, msg] of BAD_PORTS) {
    out.push({ name: `port alias entry ${JSON.stringify(v)}`, body: { config: mutate((d) => d.aliases[1].entries.push(v)) }, expect: msg, issue: 'aliases[1].entries[2]' });
    out.push({ name: `firewall rule port ${JSON.stringify(v)}`, body: { config: mutate((d) => d.firewall.rules[0].ports.push(v)) }, expect: msg, issue: 'firewall.rules[0].ports[1]' });
  }
  return out;
}

// --- whole documents --------------------------------------------------------

const dupJson = (extra: string) => JSON.stringify(base()).replace(/}$/, `,${extra}}`);

function documentCases(): Case[] {
  const empty = /document is empty: applying it would remove everything/;
  const out: Case[] = [];
  for (const [name, text] of [
    ['empty text', ''],
    ['whitespace', ' \n\t\n'],
    ['null', 'null'],
    ['~', '~'],
    ['---', '---'],
    ['--- ...', '---\n...\n'],
    ['comments only', '# just a comment\n# another\n'],
    ['{}', '{}'],
    ['version only', 'version: 1\n'],
    ['JSON version only', '{"version": 1}'],
  ]) {
    out.push({ name: `empty document (${name}) as config text`, body: { config: text }, expect: empty, issue: '(document)' });
    out.push({ name: `empty document (${name}) as a raw YAML body`, body: text, contentType: 'application/yaml', expect: empty, issue: '(document)' });
  }
  out.push({ name: 'empty document as a JSON object', body: { config: {} }, expect: empty, issue: '(document)' });
  out.push({ name: 'empty document, allowEmpty false', body: { config: '', allowEmpty: false }, expect: empty });
  out.push({ name: 'empty document with format json', body: { config: ' ', format: 'json' }, expect: empty, issue: '(document)' });
  out.push({ name: 'empty raw body, ?allowEmpty=false', path: DOC_PATHS.map((p) => `${p}?allowEmpty=false`), body: '', contentType: 'application/yaml', expect: empty });
  out.push({ name: 'null config field', body: { config: null }, expect: /config/ });

  // JSON duplicate keys: text documents and the request body itself
  const dup = [
    ['a section given twice (firewall disabled last)', dupJson('"firewall": {"enabled": false}'), /duplicate key "firewall" at (config\.)?firewall /],
    ['a duplicate inside a rule', '{"interfaces": [{"name": "wan0", "name": "lan0"}]}', /duplicate key "name" at (config\.)?interfaces\[0\]\.name /],
    ['a duplicate in an alias', '{"aliases": [{"name": "a", "type": "network", "type": "port", "entries": []}]}', /duplicate key "type" at (config\.)?aliases\[0\]\.type /],
    ['an escaped duplicate', '{"interfaces": [], "interf\\u0061ces": []}', /duplicate key "interfaces"/],
    ['a duplicate on the third line', '{\n  "interfaces": [],\n  "interfaces": []\n}', /duplicate key "interfaces" .*first at line 2, column 3/],
  ] as const;
  for (const [name, text, msg] of dup) {
    out.push({ name: `JSON text: ${name}`, body: { config: text, format: 'json' }, expect: msg, issue: /^line \d+, column \d+$/ });
    out.push({ name: `JSON text (format detected): ${name}`, body: { config: text }, expect: msg, issue: /^line \d+, column \d+$/ });
    out.push({ name: `JSON request body: ${name}`, body: `{"config": ${text}}`, contentType: 'application/json', expect: msg, issue: /^line \d+, column \d+$/ });
  }
  out.push({ name: 'JSON request body: message given twice', path: '/api/v1/config/apply', body: `{"config": ${JSON.stringify(base())}, "message": "a", "message": "b"}`, contentType: 'application/json', expect: /duplicate key "message" at message/ });
  out.push({ name: 'JSON request body: config given twice', body: `{"config": "", "config": ${JSON.stringify(base())}}`, contentType: 'application/json', expect: /duplicate key "config"/ });
  out.push({ name: 'YAML duplicate key', body: { config: 'interfaces: []\ninterfaces: []\n' }, expect: /invalid YAML: .*unique/i, issue: /^line 2, column \d+$/ });

  // YAML resource attacks and syntax
  let bomb = 'a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n';
  for (let i = 1; i < 9; i++) bomb += `a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]\n`;
  out.push({ name: 'YAML alias bomb', body: { config: bomb }, expect: /invalid YAML: .*alias/i });
  out.push({ name: 'YAML alias bomb as a raw body', body: bomb, contentType: 'application/yaml', expect: /invalid YAML: .*alias/i });
  out.push({ name: 'YAML flow nesting 20000 deep', body: { config: `interfaces: ${'['.repeat(20_000)}${']'.repeat(20_000)}` }, expect: /nested more than 512 levels/, issue: /^line 1, column \d+$/ });
  out.push({ name: 'YAML compact sequence 20000 deep', body: { config: `${'- '.repeat(20_000)}x` }, expect: /nested more than 512 levels/ });
  out.push({ name: 'YAML mapping 2000 deep', body: { config: Array.from({ length: 2000 }, (_, i) => `${' '.repeat(i)}k:`).join('\n') }, expect: /nested more than 512 levels/ });
  out.push({ name: 'JSON nesting 100000 deep', body: { config: `{"interfaces": ${'['.repeat(100_000)}${']'.repeat(100_000)}}` }, expect: /interfaces/ });
  out.push({ name: 'unclosed YAML flow', body: { config: 'interfaces: [\n' }, expect: /invalid YAML/, issue: /^line \d+, column \d+$/ });
  out.push({ name: 'tab indentation', body: { config: 'interfaces:\n\t- name: wan0\n' }, expect: /invalid YAML/ });
  out.push({ name: 'trailing comma JSON', body: { config: '{"interfaces": [],}', format: 'json' }, expect: /invalid JSON/, issue: /^line 1, column \d+$/ });
  out.push({ name: 'JSON with a comment', body: { config: '{"interfaces": [] /* x */}', format: 'json' }, expect: /invalid JSON/ });
  out.push({ name: 'a list as the document', body: { config: '- a\n- b\n' }, expect: /expected object/i, issue: '(document)' });
  out.push({ name: 'a string as the document', body: { config: 'hello' }, expect: /expected object/i });
  out.push({ name: 'a number as the document', body: { config: '42' }, expect: /expected object/i });
  out.push({ name: 'unknown section', body: { config: mutate((d) => (d.firewal = {})) }, expect: /firewal/ });
  out.push({ name: 'version 2', body: { config: mutate((d) => (d.version = 2)) }, expect: /version/, issue: 'version' });
  out.push({ name: 'interfaces as a string', body: { config: mutate((d) => (d.interfaces = 'wan0')) }, expect: /interfaces/, issue: 'interfaces' });
  out.push({ name: 'firewall as a list', body: { config: mutate((d) => (d.firewall = [])) }, expect: /firewall/, issue: 'firewall' });
  out.push({ name: 'NUL byte in a name', body: { config: mutate((d) => (d.firewall.rules[0].name = 'ss\u0000h')) }, expect: /firewall\.rules\[0\]\.name/, issue: 'firewall.rules[0].name' });
  out.push({ name: 'newline in a rule name', body: { config: mutate((d) => (d.firewall.rules[0].name = 'ssh\n')) }, expect: /firewall\.rules\[0\]\.name/ });
  out.push({ name: 'nft syntax in a log prefix', body: { config: mutate((d) => (d.firewall.rules[0].log = 'x"; flush ruleset; "')) }, expect: /firewall\.rules\[0\]\.log/ });
  return out;
}

// --- semantics: aliases, forwards, scale ---------------------------------------

function semanticCases(files: { dir: string; fifo: string; big: string }): Case[] {
  const out: Case[] = [];
  const fileAlias = (path: string) => mutate((d) => d.aliases.push({ name: 'listed', type: 'network', files: [path] }));
  out.push({ name: 'file alias at /dev/zero', body: { config: fileAlias('/dev/zero') }, expect: /\/dev\/zero is a character device, not a regular file/, issue: 'aliases[2].files[0]' });
  out.push({ name: 'file alias at /dev/urandom', body: { config: fileAlias('/dev/urandom') }, expect: /character device/, issue: 'aliases[2].files[0]' });
  out.push({ name: 'file alias at a FIFO', body: { config: fileAlias(files.fifo) }, expect: /is a FIFO, not a regular file/, issue: 'aliases[2].files[0]' });
  out.push({ name: 'file alias at a directory', body: { config: fileAlias(files.dir) }, expect: /is a directory, not a regular file/, issue: 'aliases[2].files[0]' });
  out.push({ name: 'file alias at a 2 GiB file', body: { config: fileAlias(files.big) }, expect: /is 2147483648 bytes, more than the limit of 67108864 bytes/, issue: 'aliases[2].files[0]' });
  out.push({ name: 'file alias that does not exist', body: { config: fileAlias(join(files.dir, 'nope')) }, expect: /ENOENT/, issue: 'aliases[2].files[0]' });
  out.push({ name: 'file alias with a bad line', body: { config: fileAlias(join(files.dir, 'bad.txt')) }, expect: /host bits set/, issue: 'aliases[2].files[0].line 2' });
  out.push({ name: 'document file at /dev/zero named by a raw path', body: { config: fileAlias('/proc/self/mem') }, expect: /cannot read/, issue: 'aliases[2].files[0]' });

  const nested = Array.from({ length: 10_000 }, (_, i) => ({ name: `n${i}`, type: 'network', entries: [i === 9999 ? '10.0.0.0/8' : `n${i + 1}`] }));
  out.push({ name: '10000 nested aliases', body: { config: mutate((d) => d.aliases.push(...nested)) }, expect: /aliases nest more than 32 deep/, issue: 'aliases[33].entries[0]' });
  out.push({ name: 'alias cycle', body: { config: mutate((d) => d.aliases.push({ name: 'c1', type: 'network', entries: ['c2'] }, { name: 'c2', type: 'network', entries: ['c1'] })) }, expect: /alias cycle/ });
  out.push({ name: 'alias defined twice', body: { config: mutate((d) => d.aliases.push({ name: 'office', type: 'network', entries: [] })) }, expect: /defined twice/, issue: 'aliases[2].name' });
  out.push({ name: 'unknown alias in a rule', body: { config: mutate((d) => (d.firewall.rules[0].source = ['nosuch'])) }, expect: /unknown alias "nosuch"/, issue: 'firewall.rules[0].source[0]' });
  out.push({ name: 'port alias as a network', body: { config: mutate((d) => (d.firewall.rules[0].source = ['web'])) }, expect: /port alias, not a network/, issue: 'firewall.rules[0].source[0]' });
  const junk = Array.from({ length: 20_000 }, (_, i) => `x${i}.`);
  out.push({ name: '20k bad alias entries (error capped)', body: { config: mutate((d) => d.aliases.push({ name: 'junk', type: 'network', entries: junk })) }, expect: /20000 problems/, issue: 'aliases[2].entries[0]' });

  const pf = (extra: Doc) => ({ name: 'www2', interface: 'wan0', port: 8080, target: '10.10.0.6', ...extra });
  for (const [name, second, msg] of [
    ['same port', pf({}), /both forward tcp port 8080 arriving on wan0/],
    ['range covering the port', pf({ port: '8000-8100' }), /port 8080/],
    ['tcp_udp over tcp', pf({ protocol: 'tcp_udp' }), /both forward tcp port 8080/],
    ['with a destination', pf({ destination: '10.10.0.1' }), /for 10\.10\.0\.1/],
    ['different target port', pf({ targetPort: 81 }), /could never match/],
  ] as const) {
    out.push({ name: `overlapping port forward: ${name}`, body: { config: mutate((d) => d.firewall.portForwards.push(second)) }, expect: msg, issue: 'firewall.portForwards[1].port' });
  }
  out.push({ name: 'port forward on an unmanaged interface', body: { config: mutate((d) => (d.firewall.portForwards[0].interface = 'eth9')) }, expect: /not in interfaces/, issue: 'firewall.portForwards[0].interface' });
  out.push({ name: 'fast-path rule on an unknown interface', body: { config: mutate((d) => (d.fastpath.rules[0].interfaces = ['eth9'])) }, expect: /not a fastpath interface/, issue: 'fastpath.rules[0].interfaces[0]' });
  out.push({ name: 'fast-path rule capacity', body: { config: mutate((d) => (d.fastpath.capacity = { prefixes: 16 }) && (d.fastpath.rules[0].source = Array.from({ length: 40 }, (_, i) => `10.${i}.0.0/16`))) }, expect: /capacity|exceed/i });
  return out;
}

// --- REST requests ------------------------------------------------------------

function requestCases(): Case[] {
  const ok = { config: base() };
  const out: Case[] = [
    { name: 'malformed JSON body', body: '{"config": {', contentType: 'application/json', expect: /JSON/ },
    { name: 'empty JSON body', body: '', contentType: 'application/json', expect: /the request body is empty/, issue: 'body' },
    { name: 'JSON body with a syntax error on line 3', body: '{\n  "config": {},\n  "message": x\n}', contentType: 'application/json', expect: /invalid JSON request body/, issue: /^line 3, column \d+$/ },
    { name: 'JSON body null', body: 'null', contentType: 'application/json', expect: /body|config/i },
    { name: 'JSON body a list', body: '[]', contentType: 'application/json', expect: /body|config/i },
    { name: 'JSON body a string', body: '"interfaces: []"', contentType: 'application/json', expect: /body|config/i },
    { name: 'JSON body a number', body: '1', contentType: 'application/json', expect: /body|config/i },
    { name: 'prototype poisoning', body: `{"config": {"interfaces": []}, "__proto__": {"x": 1}}`, contentType: 'application/json', expect: /key "__proto__" at __proto__ is refused \(prototype poisoning\)/, issue: 'line 1, column 32' },
    { name: 'constructor poisoning', body: `{"config": {"interfaces": []}, "constructor": {"prototype": {"x": 1}}}`, contentType: 'application/json', expect: /key "constructor" at constructor is refused/ },
    { name: 'prototype poisoning inside the document', body: `{"config": {"interfaces": [{"name": "wan0", "__proto__": {"zone": "x"}}]}}`, contentType: 'application/json', expect: /key "__proto__" at config\.interfaces\[0\]\.__proto__ is refused/ },
    { name: 'prototype poisoning in document text', body: { config: '{"interfaces": [], "__proto__": {}}' }, expect: /key "__proto__" at __proto__ is refused/, issue: 'line 1, column 20' },
    { name: 'config a number', body: { config: 5 }, expect: /config/ },
    { name: 'config a list', body: { config: [] }, expect: /config/ },
    { name: 'config a boolean', body: { config: true }, expect: /config/ },
    { name: 'config missing', body: {}, expect: /config/ },
    { name: 'unknown request field', body: { ...ok, force: true }, expect: /force|unrecognized/i },
    { name: 'format xml', body: { ...ok, format: 'xml' }, expect: /format/ },
    { name: 'allowEmpty a string', body: { ...ok, allowEmpty: 'yes' }, expect: /allowEmpty/ },
    { name: 'allowEmpty in a raw body query not a boolean', path: DOC_PATHS.map((p) => `${p}?allowEmpty=maybe`), body: '', contentType: 'application/yaml', expect: /allowEmpty: must be true or false/ },
    { name: 'confirmWithin negative', path: '/api/v1/config/apply', body: { ...ok, confirmWithin: -1 }, expect: /confirmWithin/ },
    { name: 'confirmWithin a year', path: '/api/v1/config/apply', body: { ...ok, confirmWithin: 365 * 86400 }, expect: /confirmWithin/ },
    { name: 'confirmWithin a word', path: '/api/v1/config/apply', body: { ...ok, confirmWithin: 'soon' }, expect: /confirmWithin/ },
    { name: 'message too long', path: '/api/v1/config/apply', body: { ...ok, message: 'x'.repeat(501) }, expect: /message/ },
    { name: 'raw YAML with confirmWithin a word', path: '/api/v1/config/apply?confirmWithin=soon', body: 'interfaces: []\n', contentType: 'application/yaml', expect: /confirmWithin/ },
    { name: 'text/plain body', body: 'interfaces: []', contentType: 'text/plain', expect: /expected object, received string/ },
    { name: 'form body', body: 'config=x', contentType: 'application/x-www-form-urlencoded', status: 415, expect: /content.type|unsupported/i },
    { name: 'oversized body', body: { config: mutate((d) => (d.interfaces[0].description = 'x'.repeat(9 << 20))) }, status: 413, expect: /too large/i },
    { name: 'rollback to a word', path: '/api/v1/config/rollback', body: { to: 'x' }, expect: /to/ },
    { name: 'rollback to -1', path: '/api/v1/config/rollback', body: { to: -1 }, expect: /to/ },
    { name: 'rollback with an unknown field', path: '/api/v1/config/rollback', body: { to: 1, force: true }, expect: /force|unrecognized/i },
    { name: 'rollback to a revision that does not exist', path: '/api/v1/config/rollback', body: { to: 99999 }, status: 409, expect: /revision 99999 does not exist/ },
    { name: 'confirm with nothing pending', path: '/api/v1/config/confirm', body: {}, status: 409, expect: /no revision awaits confirmation/ },
    { name: 'revision id a word', method: 'GET', path: '/api/v1/revisions/abc', expect: /id/ },
    { name: 'revision id 0', method: 'GET', path: '/api/v1/revisions/0', expect: /id/ },
    { name: 'revision id -5', method: 'GET', path: '/api/v1/revisions/-5', expect: /id/ },
    { name: 'revision that does not exist', method: 'GET', path: '/api/v1/revisions/424242', status: 404, expect: /does not exist/ },
    { name: 'revisions limit 0', method: 'GET', path: '/api/v1/revisions?limit=0', expect: /limit/ },
    { name: 'revisions limit a word', method: 'GET', path: '/api/v1/revisions?limit=all', expect: /limit/ },
    { name: 'revisions limit huge', method: 'GET', path: '/api/v1/revisions?limit=100000000', expect: /limit/ },
    { name: 'leases subnet junk', method: 'GET', path: '/api/v1/dhcp/leases?subnet=10.0.0.0/99', expect: /subnet/ },
    { name: 'leases state junk', method: 'GET', path: '/api/v1/dhcp/leases?state=gone', expect: /state/ },
    { name: 'alerts limit junk', method: 'GET', path: '/api/v1/ids/alerts?limit=-1', expect: /limit/ },
    { name: 'unknown route', method: 'GET', path: '/api/v1/nope', status: 404, expect: /no route GET \/api\/v1\/nope/ },
    { name: 'wrong method on apply', method: 'GET', path: '/api/v1/config/apply', status: 404, expect: /no route/ },
  ];
  return out;
}

describe('bad input: clear 4xx with a path, server alive, nothing changed', { timeout: 540_000, skip }, () => {
  let L: ControlLab;
  let store: Store;
  let engine: Engine;
  let app: FastifyInstance;
  let base_: string;
  let token: string;
  // the cases are built now, the files made in before()
  const dir = mkdtempSync(join(tmpdir(), 'pt-badinput-'));
  const files = { dir, fifo: join(dir, 'fifo'), big: join(dir, 'big') };
  let kernel0: string;
  let store0: string;
  let count = 0;

  const call = async (method: string, path: string, body?: unknown, contentType?: string) => {
    const res = await fetch(`${base_}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': contentType ?? 'application/json' } : {}) },
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, json, text };
  };

  /** nft ruleset (counters stripped), addresses, the XDP program on wan0 */
  const kernelState = async () => {
    const [nft, ip] = await Promise.all([L.fw.exec('nft', ['list', 'ruleset']), L.fw.ip('-j', 'addr', 'show', 'dev', 'wan0')]);
    const link = JSON.parse(ip.stdout)[0] as { xdp?: { prog?: { id?: number } }; addr_info: { local: string; prefixlen: number }[] };
    return JSON.stringify({ nft: nft.stdout.replace(/packets \d+ bytes \d+/g, ''), addresses: link.addr_info.map((a) => `${a.local}/${a.prefixlen}`).sort(), xdp: link.xdp?.prog?.id ?? null });
  };
  const storeState = () => JSON.stringify({ list: store.list({ limit: 1000, withConfig: false }).map((r) => [r.id, r.state]), current: store.current()?.id });

  before(async () => {
    L = await controlLab();
    execFileSync('mkfifo', [files.fifo]);
    writeFileSync(files.big, '');
    truncateSync(files.big, 2 * 2 ** 30); // sparse
    writeFileSync(join(files.dir, 'bad.txt'), '192.0.2.0/24\n192.0.2.1/24\n');
    store = Store.open(join(L.stateDir, 'patronus.db'));
    engine = new Engine({ domains, host: L.host, store });
    const r = await engine.reconcile({ document: base() });
    assert.equal(r.error, undefined);
    token = store.addToken('tester');
    app = await buildServer({ engine, store, metrics: createMetrics(engine) });
    await app.listen({ host: '127.0.0.1', port: 0 });
    base_ = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    kernel0 = await kernelState();
    store0 = storeState();
    assert.match(kernel0, /table inet patronus/);
    assert.notEqual(JSON.parse(kernel0).xdp, null, 'the fast path is attached');
  });
  after(async () => {
    await app?.close();
    engine?.close();
    store?.close();
    await L?.teardown();
    rmSync(dir, { recursive: true, force: true });
  });

  const run = (c: Case) => {
    const paths = c.path === undefined ? DOC_PATHS : Array.isArray(c.path) ? c.path : [c.path];
    for (const path of paths) {
      const method = c.method ?? 'POST';
      it(`${c.name} -> ${method} ${path.replace('/api/v1', '')}`, async () => {
        count++;
        const r = await call(method, path, c.body, c.contentType);
        const want = c.status ?? 400;
        assert.equal(r.status, want, r.text.slice(0, 2000));
        assert.equal(r.json?.statusCode, want, `JSON error body: ${r.text.slice(0, 500)}`);
        assert.match(r.json.message, c.expect);
        if (c.issue !== undefined) {
          const paths = (r.json.issues ?? []).map((i: { path: string }) => i.path);
          const hit = paths.some((p: string) => (typeof c.issue === 'string' ? p === c.issue : c.issue!.test(p)));
          assert.ok(hit, `issue at ${c.issue}; got ${JSON.stringify(r.json.issues?.slice(0, 5))}`);
        }
        const h = await fetch(`${base_}/healthz`);
        assert.ok(h.status < 500 || h.status === 503, `server alive (${h.status})`);
        assert.equal(storeState(), store0, 'no revision recorded or changed');
        if (path.includes('/apply') || path.includes('/rollback')) assert.equal(await kernelState(), kernel0, 'kernel unchanged');
      });
    }
  };

  // values go through validate (the same checks plan runs) and apply (kernel compared after each)
  describe('config values', () => valueCases().forEach((c) => run({ ...c, path: ['/api/v1/config/validate', '/api/v1/config/apply'] })));
  describe('whole documents', () => documentCases().forEach(run));
  describe('aliases, files, forwards', () => semanticCases(files).forEach(run));
  describe('REST requests', () => requestCases().forEach(run));

  describe('allowEmpty', () => {
    it('plan of an empty document, when asked for, says it removes everything and changes nothing', async () => {
      for (const [body, ct, path] of [
        [{ config: '', allowEmpty: true }, undefined, '/api/v1/config/plan'],
        ['# nothing\n', 'application/yaml', '/api/v1/config/plan?allowEmpty=true'],
      ] as const) {
        const r = await call('POST', path, body, ct);
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.removesEverything, true);
        assert.match(r.json.text, /^The document is empty: applying it removes everything Patronus manages/);
        assert.ok(r.json.summary.remove > 0, 'the plan removes what runs');
      }
      const v = await call('POST', '/api/v1/config/validate', { config: 'null', allowEmpty: true });
      assert.equal(v.status, 200, v.text);
      assert.equal(storeState(), store0);
      assert.equal(await kernelState(), kernel0);
    });
  });

  describe('CLI', () => {
    const cliRun = (...args: string[]) => execa('node', [cli, '--server', base_, '--token', token, ...args], { reject: false, timeout: 120_000 });
    const direct = (...args: string[]) => execa('node', [cli, '--direct', '--netns', L.fw.name, '--state-dir', join(L.stateDir, 'direct'), ...args], { reject: false, timeout: 120_000 });
    const file = (name: string, text: string) => {
      const p = join(L.stateDir, name);
      writeFileSync(p, text);
      return p;
    };
    it('refuses an empty file (REST and --direct), exit 2, nothing changed', async () => {
      for (const [text, modes] of [
        ['', [cliRun, direct]],
        ['# nothing\n---\n', [cliRun]],
      ] as const) {
        const f = file('empty.yaml', text);
        for (const mode of modes) {
          const r = await mode('apply', f);
          assert.equal(r.exitCode, 2, r.stderr);
          assert.match(r.stderr, /document is empty: applying it would remove everything .*--allow-empty/);
        }
      }
      assert.equal(storeState(), store0);
      assert.equal(await kernelState(), kernel0);
    });
    it('plan --allow-empty says it removes everything', async () => {
      const r = await cliRun('plan', '--allow-empty', file('empty.yaml', ''));
      assert.equal(r.exitCode, 0, r.stderr);
      assert.match(r.stdout, /^The document is empty: applying it removes everything Patronus manages/);
      assert.match(r.stdout, /- .*table inet patronus|remove/);
    });
    it('refuses duplicate JSON keys with line and column, exit 2', async () => {
      const f = file('dup.json', '{\n  "interfaces": [],\n  "interfaces": []\n}\n');
      for (const r of [await cliRun('validate', f), await direct('validate', f)]) {
        assert.equal(r.exitCode, 2, r.stderr);
        assert.match(r.stderr, /dup\.json:3:3: invalid JSON: duplicate key "interfaces"/);
      }
    });
    it('refuses a document that is not a regular file, exit 2', async () => {
      for (const r of [await cliRun('apply', '/dev/zero'), await direct('apply', '/dev/zero')]) {
        assert.equal(r.exitCode, 2, r.stderr);
        assert.match(r.stderr, /cannot read \/dev\/zero: \/dev\/zero is a character device, not a regular file/);
      }
      assert.equal(storeState(), store0);
      assert.equal(await kernelState(), kernel0);
    });
    it(`ran at least 300 bad-input cases against one live server`, () => {
      assert.ok(count >= 300, `${count} cases`);
    });
  });
});
