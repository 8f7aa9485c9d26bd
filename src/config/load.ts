/**
 * Reading a configuration document from text (YAML or JSON) and validating
 * it. Syntax errors carry line and column; schema and alias problems carry
 * the document path. Every problem is reported at once.
 */
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { validateDocument, type Validated } from './document.js';
import type { Issue } from './issues.js';
import type { FileReader } from '../aliases/aliases.js';

export type ConfigFormat = 'yaml' | 'json';

/** Guesses the format from a file name or the first non-blank character. */
export function detectFormat(text: string, fileName?: string): ConfigFormat {
  if (fileName?.endsWith('.json')) return 'json';
  if (fileName && /\.ya?ml$/.test(fileName)) return 'yaml';
  return /^\s*[[{]/.test(text) ? 'json' : 'yaml';
}

/**
 * Parses document text. Syntax errors become issues whose path is
 * `line L, column C` so they read like every other issue.
 */
export function parseConfigText(text: string, format: ConfigFormat = detectFormat(text)): { value?: unknown; issues: Issue[] } {
  if (format === 'json') {
    try {
      return { value: JSON.parse(text), issues: [] };
    } catch (e) {
      const msg = (e as Error).message;
      const pos = /at position (\d+)/.exec(msg);
      const where = pos ? lineColumn(text, Number(pos[1])) : undefined;
      const path = where ? [`line ${where.line}, column ${where.column}`] : [];
      return { issues: [{ path, message: `invalid JSON: ${msg.replace(/ in JSON at position \d+.*$/, '').replace(/ \(line \d+ column \d+\)$/, '')}` }] };
    }
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    return {
      issues: doc.errors.map((err) => {
        const at = err.linePos?.[0];
        return { path: at ? [`line ${at.line}, column ${at.col}`] : [], message: `invalid YAML: ${err.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}` };
      }),
    };
  }
  return { value: doc.toJS({ maxAliasCount: 100 }) ?? {}, issues: [] };
}

export interface LoadedConfig {
  validated?: Validated;
  /** the parsed (not yet defaulted) document, kept as the revision's content */
  input?: unknown;
  issues: Issue[];
}

/** Parse + validate (schema, cross-section checks, aliases). */
export function loadConfigText(text: string, readFile: FileReader = readTextFile, format?: ConfigFormat): LoadedConfig {
  const parsed = parseConfigText(text, format);
  if (parsed.issues.length) return { issues: parsed.issues };
  return { ...validateDocument(parsed.value, readFile), input: parsed.value };
}

export function loadConfigFile(path: string, readFile: FileReader = readTextFile): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    return { issues: [{ path: [], message: `cannot read ${path}: ${(e as Error).message}` }] };
  }
  return loadConfigText(text, readFile, detectFormat(text, path));
}

export function readTextFile(path: string): string {
  return readFileSync(path, 'utf8');
}

function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let last = -1;
  for (let i = 0; i < Math.min(offset, text.length); i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      last = i;
    }
  }
  return { line, column: offset - last };
}
