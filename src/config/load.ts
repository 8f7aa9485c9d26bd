/**
 * Reading a configuration document from text (YAML or JSON) and validating
 * it. Syntax errors carry line and column; schema and alias problems carry
 * the document path and, for text, the line and column of the node they are
 * about (src/config/locate.ts). Every problem is reported at once.
 */
import { parseDocument } from 'yaml';
import type { DocumentModel, Validated } from './document.js';
import type { Issue } from './issues.js';
import type { ConfigFormat } from './input.js';
import type { FileReader } from '../aliases/aliases.js';
import { rememberSource } from './locate.js';
import { detectFormat, duplicateKeyIssue, findDuplicateJsonKey, jsonErrorOffset, lineColumn, readRegularFile, yamlNestingIssue } from './input.js';

export type { ConfigFormat };

export { detectFormat };

/**
 * Parses document text. Syntax errors become issues whose path is
 * `line L, column C` so they read like every other issue.
 */
export function parseConfigText(text: string, format: ConfigFormat = detectFormat(text)): { value?: unknown; issues: Issue[] } {
  // no text at all is an empty document in either format (refused as such, src/config/input.ts)
  if (!text.trim()) return { value: null, issues: [] };
  if (format === 'json') {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      const msg = (e as Error).message;
      const pos = /at position (\d+)/.exec(msg);
      const offset = pos ? Number(pos[1]) : jsonErrorOffset(text);
      const where = offset >= 0 ? lineColumn(text, offset) : undefined;
      const path = where ? [`line ${where.line}, column ${where.column}`] : [];
      // Node 20 quotes the whole text in some messages ("..." is not valid JSON): keep the first clause
      const reason = msg.replace(/ in JSON at position \d+.*$/, '').replace(/ \(line \d+ column \d+\)$/, '').replace(/, (?:\.\.\.)?"[\s\S]*" is not valid JSON$/, '').replace(/ at position \d+$/, '');
      return { issues: [{ path, message: `invalid JSON: ${reason}` }] };
    }
    // JSON.parse keeps the last of two equal keys: refuse, like YAML does
    const dup = findDuplicateJsonKey(text);
    if (dup) return { issues: [duplicateKeyIssue(dup)] };
    rememberSource(value, text);
    return { value, issues: [] };
  }
  const deep = yamlNestingIssue(text);
  if (deep) return { issues: [deep] };
  let doc: ReturnType<typeof parseDocument>;
  try {
    doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  } catch (e) {
    return { issues: [{ path: [], message: `invalid YAML: ${(e as Error).message}` }] };
  }
  if (doc.errors.length) {
    return {
      issues: doc.errors.map((err) => {
        const at = err.linePos?.[0];
        return { path: at ? [`line ${at.line}, column ${at.col}`] : [], message: `invalid YAML: ${err.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}` };
      }),
    };
  }
  try {
    const value = doc.toJS({ maxAliasCount: 100 }) ?? {};
    rememberSource(value, text, doc);
    return { value, issues: [] };
  } catch (e) {
    // an alias bomb ("excessive alias count") or a document too deep to build
    return { issues: [{ path: [], message: `invalid YAML: ${(e as Error).message}` }] };
  }
}

export interface LoadedConfig {
  validated?: Validated;
  /** the parsed (not yet defaulted) document, kept as the revision's content */
  input?: unknown;
  issues: Issue[];
}

/** Parse + validate (schema, cross-section checks, aliases) against a document (src/domains.ts has them for its domains). */
export function loadConfigTextOf(document: Pick<DocumentModel, 'validate'>, text: string, readFile: FileReader = readTextFile, format?: ConfigFormat): LoadedConfig {
  const parsed = parseConfigText(text, format);
  if (parsed.issues.length) return { issues: parsed.issues };
  return { ...(document.validate(parsed.value, readFile) as Omit<LoadedConfig, 'input'>), input: parsed.value };
}

export function loadConfigFileOf(document: Pick<DocumentModel, 'validate'>, path: string, readFile: FileReader = readTextFile): LoadedConfig {
  let text: string;
  try {
    text = readRegularFile(path);
  } catch (e) {
    return { issues: [{ path: [], message: `cannot read ${path}: ${(e as Error).message}` }] };
  }
  return loadConfigTextOf(document, text, readFile, detectFormat(text, path));
}

/** The file reader documents use: regular files only, at most $PATRONUS_MAX_FILE_BYTES (64 MiB). */
export function readTextFile(path: string): string {
  return readRegularFile(path);
}
