import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { SCHEMA_FILE, documentJsonSchema, documentJsonSchemaText } from '../../src/config/json-schema.js';
import { documentSchema } from '../../src/domains.js';

// dist/test/unit -> repository root
const root = join(import.meta.dirname, '..', '..', '..');

function yamlFiles(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && /\.ya?ml$/.test(e.name))
    .map((e) => join(e.parentPath, e.name).slice(root.length + 1))
    .sort();
}

/** ajv (draft-07, strict) over the generated schema: a maintained validator, not zod checking itself. */
function validator() {
  const ajv = new Ajv({ allErrors: true, strict: true });
  addFormats.default(ajv);
  return ajv.compile(documentJsonSchema(documentSchema));
}

const MODELINE = /^# yaml-language-server: \$schema=(\S+)$/m;

describe('docs/patronus.schema.json', () => {
  it('is the generated schema (regenerate: node dist/src/config/json-schema.js > docs/patronus.schema.json)', () => {
    assert.equal(readFileSync(join(root, SCHEMA_FILE), 'utf8'), documentJsonSchemaText(documentSchema), `${SCHEMA_FILE} is stale`);
  });

  it('compiles under ajv strict mode and accepts every example and config/default.yaml', () => {
    // draft-07: what the YAML language server implements
    assert.equal(documentJsonSchema(documentSchema).$schema, 'http://json-schema.org/draft-07/schema#');
    const validate = validator();
    const files = [...yamlFiles('examples'), 'config/default.yaml'];
    assert.ok(files.length >= 8, `examples found: ${files.join(', ')}`);
    for (const f of files) {
      const ok = validate(parse(readFileSync(join(root, f), 'utf8')) ?? {});
      assert.ok(ok, `${f}: ${JSON.stringify(validate.errors, null, 2)}`);
    }
  });

  it('every example names the schema in a yaml-language-server modeline that resolves to the file', () => {
    for (const f of [...yamlFiles('examples'), 'config/default.yaml']) {
      const m = MODELINE.exec(readFileSync(join(root, f), 'utf8'));
      assert.ok(m, `${f} has no "# yaml-language-server: $schema=..." line`);
      assert.equal(join(root, f, '..', m[1]!), join(root, SCHEMA_FILE), `${f}: the modeline points at ${m[1]}`);
    }
  });

  it('rejects known-bad documents, naming where', () => {
    const validate = validator();
    const bad: [string, unknown, string][] = [
      ['unknown section', { firewal: {} }, ''],
      ['unknown field in a rule', { firewall: { rules: [{ name: 'r', direction: 'input', action: 'accept', colour: 'red' }] } }, '/firewall/rules/0'],
      ['action outside its enum', { firewall: { rules: [{ name: 'r', direction: 'input', action: 'maybe' }] } }, '/firewall/rules/0/action'],
      ['interface without a name', { interfaces: [{ zone: 'wan' }] }, '/interfaces/0'],
      ['interfaces not a list', { interfaces: { name: 'wan0' } }, '/interfaces'],
      ['version 2', { version: 2 }, '/version'],
    ];
    for (const [what, doc, at] of bad) {
      assert.equal(validate(doc), false, `${what} passed the schema`);
      assert.ok(
        validate.errors!.some((e) => e.instancePath === at),
        `${what}: no error at "${at}": ${JSON.stringify(validate.errors)}`,
      );
    }
  });
});
