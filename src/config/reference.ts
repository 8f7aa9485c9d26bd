/**
 * Generates the configuration reference (docs/configuration.md) from the
 * same zod schemas that validate documents, so the reference cannot drift
 * from what Patronus accepts. Run: node dist/src/config/reference.js > docs/configuration.md
 */
import { z } from 'zod';
import { documentSchema } from './document.js';

type Json = Record<string, any>;

export function configurationReference(): string {
  const root = z.toJSONSchema(documentSchema, { io: 'input', unrepresentable: 'any', reused: 'inline' }) as Json;
  const out: string[] = [
    '# Configuration reference',
    '',
    'Generated from the zod schemas in `src/**/schema.ts` by `src/config/reference.ts`; do not edit by hand.',
    'A document is YAML or JSON. Every section is optional; an omitted section means the feature is off.',
    'Paths use `[]` for list items. Validation reports every problem at once, each with its path.',
    '',
  ];
  const sections = Object.entries((root.properties ?? {}) as Record<string, Json>);
  out.push('| section | what |', '|---|---|');
  for (const [name, s] of sections) out.push(`| [\`${name}\`](#${name}) | ${oneLine(s.description ?? '')} |`);
  out.push('');
  for (const [name, s] of sections) {
    out.push(`## ${name}`, '');
    if (s.description) out.push(`${s.description}`, '');
    const rows: string[] = [];
    walk(s, name, rows, root);
    if (rows.length) out.push('| path | type | default | description |', '|---|---|---|---|', ...rows, '');
  }
  return `${out.join('\n')}\n`;
}

function resolve(s: Json, root: Json): Json {
  if (s && typeof s.$ref === 'string') {
    const parts = s.$ref.replace(/^#\//, '').split('/');
    let cur: any = root;
    for (const p of parts) cur = cur?.[p];
    return { ...(cur ?? {}), ...Object.fromEntries(Object.entries(s).filter(([k]) => k !== '$ref')) };
  }
  return s;
}

function typeOf(s: Json, root: Json): string {
  s = resolve(s, root);
  if (s.enum) return s.enum.map((v: unknown) => `\`${JSON.stringify(v)}\``).join(' \\| ');
  if (s.const !== undefined) return `\`${JSON.stringify(s.const)}\``;
  if (s.anyOf || s.oneOf) return (s.anyOf ?? s.oneOf).map((x: Json) => typeOf(x, root)).join(' \\| ');
  if (s.type === 'array') return `list of ${typeOf(s.items ?? {}, root)}`;
  if (s.type === 'object') return 'object';
  if (Array.isArray(s.type)) return s.type.join(' \\| ');
  let t = s.type ?? 'any';
  if (s.pattern) t += ` (pattern \`${s.pattern}\`)`;
  if (s.minimum !== undefined || s.maximum !== undefined) t += ` (${s.minimum ?? ''}..${s.maximum ?? ''})`;
  return t;
}

function walk(s: Json, path: string, rows: string[], root: Json, depth = 0): void {
  s = resolve(s, root);
  if (depth > 12) return;
  if (s.anyOf || s.oneOf) {
    for (const alt of s.anyOf ?? s.oneOf) walk(alt, path, rows, root, depth + 1);
    return;
  }
  if (s.type === 'array' && s.items) {
    walk(s.items, `${path}[]`, rows, root, depth + 1);
    return;
  }
  if (s.type !== 'object' || !s.properties) return;
  const required = new Set<string>(s.required ?? []);
  for (const [k, raw] of Object.entries(s.properties as Record<string, Json>)) {
    const p = resolve(raw, root);
    const def = p.default !== undefined ? `\`${oneLine(JSON.stringify(p.default))}\`` : required.has(k) ? '**required**' : '';
    rows.push(`| \`${path}.${k}\` | ${typeOf(p, root)} | ${def} | ${oneLine(p.description ?? '')} |`);
    walk(p, `${path}.${k}`, rows, root, depth + 1);
  }
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').replace(/\|/g, '\\|').slice(0, 300);
}

if (import.meta.url === `file://${process.argv[1]}`) process.stdout.write(configurationReference());
