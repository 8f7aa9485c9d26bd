/**
 * The JSON Schema of a configuration document (docs/patronus.schema.json,
 * also served at GET /schema.json), generated from the same zod schemas that
 * validate documents, for editors: with the modeline
 *   # yaml-language-server: $schema=../docs/patronus.schema.json
 * at the top of a YAML file, the YAML language server (VS Code's YAML
 * extension, Neovim, Helix...) completes keys and flags mistakes as you type.
 *
 * Draft-07, the draft the YAML language server implements (it warns that
 * 2020-12 schemas are "not yet fully supported"). It describes the
 * document's input (defaulted fields are optional). Checks
 * that JSON Schema cannot express (alias references, CIDR arithmetic,
 * cross-section rules) stay with `patronus validate`: a document can pass
 * this schema and still be rejected, never the other way round.
 *
 * Run: node dist/src/config/json-schema.js > docs/patronus.schema.json
 */
import { z } from 'zod';

/** Where the schema is published in the repository. */
export const SCHEMA_FILE = 'docs/patronus.schema.json';

/** documentSchema: the document of the domains Patronus runs (src/domains.ts), or an engine's (engine.document.schema). */
export function documentJsonSchema(documentSchema: z.ZodType): Record<string, unknown> {
  const generated = z.toJSONSchema(documentSchema, { io: 'input', unrepresentable: 'any', reused: 'inline', target: 'draft-7' }) as Record<string, unknown>;
  const { $schema, ...rest } = generated;
  return {
    $schema,
    title: 'Patronus configuration document',
    description: 'A Patronus configuration document (YAML or JSON); every section is optional. Generated from the zod schemas by src/config/json-schema.ts; reference: docs/configuration.md.',
    ...rest,
  };
}

/** The file's exact text (2-space JSON and a final newline), so a test can tell a stale copy. */
export function documentJsonSchemaText(documentSchema: z.ZodType): string {
  return `${JSON.stringify(documentJsonSchema(documentSchema), null, 2)}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) process.stdout.write(documentJsonSchemaText((await import('../domains.js')).documentSchema));
