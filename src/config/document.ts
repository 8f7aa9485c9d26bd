/**
 * The one declarative document, assembled from the domains an entry point
 * hands over (src/domains.ts): `version` first, then each domain's section
 * (src/<domain>/domain.ts) in list order, then the sections of the control
 * plane itself (api, drift, health). This file runs the checks that cross
 * sections (alias references); each section's schema lives with its domain.
 */
import { z } from 'zod';
import { aliasesSchema, resolveAliases, type AliasTable, type FileReader } from '../aliases/aliases.js';
import { apiSchema } from '../api/schema.js';
import { driftSchema } from '../drift/schema.js';
import { healthSchema } from '../fleet/schema.js';
import type { Domain } from '../apply/domain.js';
import { fromZod, type Issue } from './issues.js';
import { locateIssues } from './locate.js';

/**
 * The validated document of the domains Patronus runs (src/domains.ts).
 * Type-only: the core never loads the list, it is handed it at run time.
 */
export type { Config, ConfigInput } from '../domains.js';
import type { Config } from '../domains.js';

const head = {
  version: z.literal(1).default(1).describe('document format version'),
};
const tail = {
  api: apiSchema.describe('REST API and metrics endpoint'),
  drift: driftSchema.describe('drift checks against the running revision and self-repair'),
  health: healthSchema.describe('health probes a fleet node runs before it confirms a revision from a rollout'),
};

type AnyDomain = Domain<any, any>;
type SectionKey<X> = X extends Domain<infer K, any> ? ([K] extends [never] ? never : K) : never;
type SectionSchema<X> = X extends Domain<any, infer S> ? S : never;
/** The sections of a list of domains, by key. */
export type SectionsShape<D extends readonly AnyDomain[]> = { [X in D[number] as SectionKey<X>]: SectionSchema<X> };
export type DocumentShape<D extends readonly AnyDomain[]> = typeof head & SectionsShape<D> & typeof tail;
export type DocumentSchema<D extends readonly AnyDomain[]> = z.ZodObject<DocumentShape<D>, z.core.$strict>;
export type DocumentConfig<D extends readonly AnyDomain[]> = z.infer<DocumentSchema<D>>;
export type DocumentInput<D extends readonly AnyDomain[]> = z.input<DocumentSchema<D>>;

export interface Validated<C = Config> {
  config: C;
  aliases: AliasTable;
}

export interface DocumentModel<D extends readonly AnyDomain[] = readonly AnyDomain[]> {
  readonly domains: D;
  readonly schema: DocumentSchema<D>;
  /**
   * Validates a parsed document: schema, then alias resolution. Returns every
   * issue found, with line and column when the document was parsed from text;
   * `validated` is set only when there are none.
   */
  validate(input: unknown, readFile: FileReader): { validated?: Validated<DocumentConfig<D>>; issues: Issue[] };
  /**
   * validate() in two stages (schema, then aliases): an async caller lets its
   * event loop run at the `yield` (each is seconds for a document with a
   * million prefixes; src/apply/engine.ts).
   */
  validateStages(input: unknown, readFile: FileReader): Generator<void, { validated?: Validated<DocumentConfig<D>>; issues: Issue[] }, void>;
}

const models = new WeakMap<readonly AnyDomain[], DocumentModel<any>>();

/** The document of these domains (built once per list). */
export function documentOf<const D extends readonly AnyDomain[]>(domains: D): DocumentModel<D> {
  const known = models.get(domains);
  if (known) return known as DocumentModel<D>;
  const sections: Record<string, z.ZodType> = {};
  for (const d of domains) {
    if (!d.section) continue;
    const key = d.section.key;
    if (key in head || key in tail || key in sections) throw new Error(`domain ${d.name}: section "${key}" is taken`);
    sections[key] = d.section.schema.describe(d.section.describe);
  }
  const schema = z.object({ ...head, ...sections, ...tail }).strict() as unknown as DocumentSchema<D>;
  type Result = { validated?: Validated<DocumentConfig<D>>; issues: Issue[] };
  function* validateStages(input: unknown, readFile: FileReader): Generator<void, Result, void> {
    const parsed = schema.safeParse(input ?? {});
    yield;
    if (!parsed.success) {
      // report alias problems together with schema problems elsewhere
      const issues = fromZod(parsed.error);
      const raw = input && typeof input === 'object' ? (input as { aliases?: unknown }).aliases : undefined;
      const aliases = aliasesSchema.safeParse(raw);
      if (aliases.success) issues.push(...resolveAliases(aliases.data, readFile).issues);
      return { issues: locateIssues(input, issues) };
    }
    const config = parsed.data as DocumentConfig<D>;
    const { table, issues } = resolveAliases(((config as { aliases?: z.infer<typeof aliasesSchema> }).aliases ?? []), readFile);
    if (issues.length) return { issues: locateIssues(input, issues) };
    return { validated: { config, aliases: table }, issues: [] };
  }
  const validate = (input: unknown, readFile: FileReader): Result => {
    const stages = validateStages(input, readFile);
    for (;;) {
      const step = stages.next();
      if (step.done) return step.value;
    }
  };
  const model: DocumentModel<D> = { domains, schema, validate, validateStages };
  models.set(domains, model);
  return model;
}
