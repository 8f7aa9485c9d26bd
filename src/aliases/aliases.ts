/**
 * Aliases: named sets of networks, ports or countries (pfSense/OPNsense
 * style). Entries are literals or names of other aliases of the same type
 * (a network alias may also include country aliases); files add one entry a
 * line (`#` comments), like pfSense URL tables. Resolution is pure given a
 * file reader; unknown names, cycles and bad entries become path-qualified
 * issues, all reported together.
 */
import { z } from 'zod';
import { formatPrefix, ipv4ToNumber, parseNetwork, type Prefix } from '../net/address.js';
import type { Issue, IssuePath } from '../config/issues.js';

export const ALIAS_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** How deep aliases may include aliases (a -> b -> c is 3). */
export const MAX_ALIAS_DEPTH = 32;

export const aliasSchema = z
  .object({
    name: z.string().regex(ALIAS_NAME, 'must start with a letter or _ and hold only letters, digits and _ (max 63)'),
    type: z.enum(['network', 'port', 'country']),
    entries: z.array(z.string().min(1)).default([]).describe('literals (prefix, address, port, port range, ISO country code) or names of other aliases'),
    files: z.array(z.string().min(1)).default([]).describe('files with one entry a line; # starts a comment'),
    description: z.string().max(200).optional(),
  })
  .strict();

export const aliasesSchema = z.array(aliasSchema).default([]);

export type AliasConfig = z.infer<typeof aliasSchema>;

export interface PortRange {
  from: number;
  to: number;
}

export interface ResolvedAlias {
  name: string;
  type: AliasConfig['type'];
  prefixes: Prefix[];
  ports: PortRange[];
  /** ISO 3166 alpha-2 codes, upper case (country aliases, and network aliases that include them) */
  countries: string[];
}

export type AliasTable = Map<string, ResolvedAlias>;

export type FileReader = (path: string) => string;

export function parsePortRange(text: string): PortRange {
  const m = /^(\d{1,5})(?:[-:](\d{1,5}))?$/.exec(text);
  if (!m) throw new RangeError(`"${text}" is not a port or port range (e.g. 443 or 8000-8100)`);
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  if (from > 65535 || to > 65535) throw new RangeError(`"${text}": ports are 0-65535`);
  if (to < from) throw new RangeError(`"${text}": range end is below its start`);
  return { from, to };
}

export function parseCountry(text: string): string {
  const c = text.toUpperCase();
  if (!/^[A-Z]{2}$/.test(c)) throw new RangeError(`"${text}" is not an ISO 3166 two-letter country code`);
  return c;
}

/**
 * Resolves every alias. Returns the table and the issues; an alias with
 * issues is still present (possibly partial) so later checks can go on.
 */
export function resolveAliases(aliases: readonly AliasConfig[], readFile: FileReader, base: IssuePath = ['aliases']): { table: AliasTable; issues: Issue[] } {
  const issues: Issue[] = [];
  const byName = new Map<string, { cfg: AliasConfig; index: number }>();
  aliases.forEach((cfg, index) => {
    if (byName.has(cfg.name)) issues.push({ path: [...base, index, 'name'], message: `alias "${cfg.name}" is defined twice` });
    else byName.set(cfg.name, { cfg, index });
  });

  const table: AliasTable = new Map();
  const visiting: string[] = [];

  const resolve = (name: string): ResolvedAlias | undefined => {
    const done = table.get(name);
    if (done) return done;
    const entry = byName.get(name);
    if (!entry) return undefined;
    const { cfg, index } = entry;
    const out: ResolvedAlias = { name, type: cfg.type, prefixes: [], ports: [], countries: [] };
    visiting.push(name);

    // paths are built only for issues (a 1M-entry alias must not allocate 1M of them): where the entry
    // being read is, as numbers; files are read first (their read errors come before the entries' issues)
    const contents: (string | undefined)[] = cfg.files.map((file, j) => {
      try {
        return readFile(file);
      } catch (e) {
        issues.push({ path: [...base, index, 'files', j], message: `cannot read "${file}": ${(e as Error).message}` });
        return undefined;
      }
    });
    let atFile = -1;
    let atIndex = 0;
    const path = (): IssuePath => (atFile < 0 ? [...base, index, 'entries', atIndex] : [...base, index, 'files', atFile, `line ${atIndex + 1}`]);
    const readEntry = (text: string): void => {
      if (ALIAS_NAME.test(text) && !(cfg.type === 'country' && /^[A-Za-z]{2}$/.test(text) && !byName.has(text))) {
        // a reference to another alias
        if (visiting.includes(text)) {
          issues.push({ path: path(), message: `alias cycle: ${[...visiting.slice(visiting.indexOf(text)), text].join(' -> ')}` });
          return;
        }
        if (!byName.has(text)) {
          issues.push({ path: path(), message: `unknown alias "${text}"` });
          return;
        }
        if (!table.has(text) && visiting.length >= MAX_ALIAS_DEPTH) {
          issues.push({ path: path(), message: `aliases nest more than ${MAX_ALIAS_DEPTH} deep (${visiting[0]} -> ... -> ${name} -> ${text})` });
          return;
        }
        const inner = resolve(text)!;
        const compatible = inner.type === cfg.type || (cfg.type === 'network' && inner.type === 'country');
        if (!compatible) {
          issues.push({ path: path(), message: `alias "${text}" is a ${inner.type} alias; a ${cfg.type} alias cannot include it` });
          return;
        }
        append(out.prefixes, inner.prefixes);
        append(out.ports, inner.ports);
        append(out.countries, inner.countries);
        return;
      }
      try {
        if (cfg.type === 'network') out.prefixes.push(parseNetwork(text));
        else if (cfg.type === 'port') out.ports.push(parsePortRange(text));
        else out.countries.push(parseCountry(text));
      } catch (e) {
        issues.push({ path: path(), message: (e as Error).message });
      }
    };
    for (let j = 0; j < cfg.entries.length; j++) {
      atIndex = j;
      readEntry(cfg.entries[j]!);
    }
    contents.forEach((content, j) => {
      if (content === undefined) return;
      content.split('\n').forEach((raw, lineNo) => {
        const text = raw.replace(/#.*/, '').trim();
        if (!text) return;
        atFile = j;
        atIndex = lineNo;
        readEntry(text);
      });
    });
    visiting.pop();
    out.prefixes = dedupePrefixes(out.prefixes);
    out.countries = [...new Set(out.countries)].sort();
    table.set(name, out);
    return out;
  };

  for (const name of byName.keys()) resolve(name);
  return { table, issues };
}

/** into.push(...from) without the argument-count limit (a spread of ~120k elements overflows the stack). */
export function append<T>(into: T[], from: readonly T[]): T[] {
  for (const x of from) into.push(x);
  return into;
}

function dedupePrefixes(list: Prefix[]): Prefix[] {
  // numeric keys for IPv4 (a Map of 1M string keys costs seconds)
  const v4 = new Set<number>();
  const v6 = new Set<string>();
  const out: Prefix[] = [];
  for (const p of list) {
    if (p.family === 4) {
      const key = ipv4ToNumber(p.address) * 64 + p.length;
      if (v4.has(key)) continue;
      v4.add(key);
    } else {
      const key = formatPrefix(p);
      if (v6.has(key)) continue;
      v6.add(key);
    }
    out.push(p);
  }
  return out;
}

/** What a rule field names: literal prefixes/ports/countries or an alias. */
export type NetworkRef = { prefixes: Prefix[]; countries: string[] };

/**
 * Resolves a rule's network field: a prefix/address literal, or an alias
 * name (network or country). Throws RangeError with a readable message.
 */
export function resolveNetworkRef(ref: string, table: AliasTable): NetworkRef {
  const alias = table.get(ref);
  if (alias) {
    if (alias.type === 'port') throw new RangeError(`alias "${ref}" is a port alias, not a network`);
    return { prefixes: alias.prefixes, countries: alias.countries };
  }
  if (ALIAS_NAME.test(ref) && !/^[0-9a-fA-F:]+$/.test(ref)) throw new RangeError(`unknown alias "${ref}"`);
  return { prefixes: [parseNetwork(ref)], countries: [] };
}

/** Resolves a rule's port field: "443", "8000-8100" or a port alias name. */
export function resolvePortRef(ref: string | number, table: AliasTable): PortRange[] {
  if (typeof ref === 'number') return [parsePortRange(String(ref))];
  const alias = table.get(ref);
  if (alias) {
    if (alias.type !== 'port') throw new RangeError(`alias "${ref}" is a ${alias.type} alias, not a port alias`);
    return alias.ports;
  }
  if (ALIAS_NAME.test(ref)) throw new RangeError(`unknown alias "${ref}"`);
  return [parsePortRange(ref)];
}
