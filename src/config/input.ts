/**
 * Guards at the edge where documents and the files they name come in. Each
 * one fails closed: a document that would tear everything down, a JSON key
 * given twice, a "file" that is a device, a FIFO or far too big is refused
 * with a message that says what and where, instead of being acted on.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import type { Issue, IssuePath } from './issues.js';

export type ConfigFormat = 'yaml' | 'json';

/** Guesses the format from a file name or the first non-blank character. */
export function detectFormat(text: string, fileName?: string): ConfigFormat {
  if (fileName?.endsWith('.json')) return 'json';
  if (fileName && /\.ya?ml$/.test(fileName)) return 'yaml';
  return /^\s*[[{]/.test(text) ? 'json' : 'yaml';
}

// --- empty documents --------------------------------------------------------

/**
 * True for a document that configures nothing: no content at all (empty
 * text, `null`, `---`, only comments) or an object with no section but
 * `version`. Applying it removes everything Patronus manages.
 */
export function isEmptyDocument(doc: unknown): boolean {
  if (doc === null || doc === undefined) return true;
  if (typeof doc === 'object' && !Array.isArray(doc)) return Object.keys(doc).every((k) => k === 'version');
  return false;
}

export const EMPTY_DOCUMENT_MESSAGE =
  'the document is empty: applying it would remove everything Patronus manages (XDP programs, nftables tables, daemons, addresses); ' +
  'if that is what you want, say so with allowEmpty: true (REST body), ?allowEmpty=true (raw YAML/JSON body) or --allow-empty (CLI)';

/** The refusal of an empty document, unless the caller asked for one explicitly. */
export function emptyDocumentIssues(doc: unknown, allowEmpty: boolean | undefined): Issue[] {
  return !allowEmpty && isEmptyDocument(doc) ? [{ path: [], message: EMPTY_DOCUMENT_MESSAGE }] : [];
}

// --- nesting depth ---------------------------------------------------------

/** Deepest nesting a YAML document may have (no configuration needs more than ~10). */
export const MAX_YAML_NESTING = 512;

/**
 * Refuses YAML text nested deeper than MAX_YAML_NESTING before the parser
 * sees it: the parser recurses per level and, near the stack limit, V8 can
 * abort the whole process (a regular-expression compile out of memory)
 * instead of throwing. Depth is over-estimated cheaply: flow brackets open at
 * a point plus the indentation (spaces and "- " markers) of its line.
 */
export function yamlNestingIssue(text: string): Issue | undefined {
  let flow = 0;
  let lead = 0;
  let line = 1;
  let lineStart = 0;
  let inLead = true;
  let quote = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0a) {
      line++;
      lineStart = i + 1;
      lead = 0;
      inLead = true;
      if (quote === 0x27) continue; // single-quoted scalars may span lines
      continue;
    }
    if (inLead) {
      if (c === 0x20 || (c === 0x2d /* - */ && text.charCodeAt(i + 1) === 0x20)) {
        lead++;
        if (lead + flow > MAX_YAML_NESTING) return deep(line, i - lineStart + 1);
        continue;
      }
      inLead = false;
    }
    if (quote) {
      if (c === quote && !(quote === 0x22 && text.charCodeAt(i - 1) === 0x5c)) quote = 0;
      continue;
    }
    const prev = i === lineStart ? 0x20 : text.charCodeAt(i - 1);
    const boundary = prev === 0x20 || prev === 0x09 || prev === 0x5b || prev === 0x7b || prev === 0x2c || prev === 0x3a;
    if ((c === 0x22 || c === 0x27) && boundary) quote = c;
    else if (c === 0x23 /* # */ && (prev === 0x20 || prev === 0x09 || i === lineStart)) {
      const nl = text.indexOf('\n', i);
      i = (nl === -1 ? text.length : nl) - 1;
    } else if (c === 0x5b || c === 0x7b) {
      flow++;
      if (lead + flow > MAX_YAML_NESTING) return deep(line, i - lineStart + 1);
    } else if ((c === 0x5d || c === 0x7d) && flow > 0) flow--;
  }
  return undefined;
}

function deep(line: number, column: number): Issue {
  return { path: [`line ${line}, column ${column}`], message: `invalid YAML: nested more than ${MAX_YAML_NESTING} levels deep` };
}

// --- JSON duplicate keys ----------------------------------------------------

export interface DuplicateKey {
  key: string;
  /** where in the document: the path of the duplicated member */
  path: (string | number)[];
  line: number;
  column: number;
  /** where the key was first given; absent for a forbidden key */
  first?: { line: number; column: number };
}

/**
 * Finds the first object key that appears twice in one JSON object
 * (JSON.parse keeps the last one silently), or a `__proto__`/`constructor`
 * key (prototype poisoning; no Patronus object has such a field). Expects text that JSON.parse
 * accepts; one linear pass with an explicit stack, so nesting depth cannot
 * overflow the call stack.
 */
export function findDuplicateJsonKey(text: string): DuplicateKey | undefined {
  type Frame = { obj: true; keys: Map<string, number>; expectKey: boolean; key: string } | { obj: false; index: number };
  const stack: Frame[] = [];
  const n = text.length;
  for (let i = 0; i < n; ) {
    const c = text.charCodeAt(i);
    if (c === 0x7b /* { */) {
      stack.push({ obj: true, keys: new Map(), expectKey: true, key: '' });
      i++;
    } else if (c === 0x5b /* [ */) {
      stack.push({ obj: false, index: 0 });
      i++;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      i++;
    } else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top?.obj) top.expectKey = true;
      else if (top) top.index++;
      i++;
    } else if (c === 0x22 /* " */) {
      let j = i + 1;
      let escaped = false;
      while (j < n) {
        const d = text.charCodeAt(j);
        if (d === 0x5c /* \ */) {
          escaped = true;
          j += 2;
          continue;
        }
        if (d === 0x22) break;
        j++;
      }
      const top = stack[stack.length - 1];
      if (top?.obj && top.expectKey) {
        const key = escaped ? (JSON.parse(text.slice(i, j + 1)) as string) : text.slice(i + 1, j);
        const first = top.keys.get(key);
        if (first !== undefined || key === '__proto__' || key === 'constructor') {
          const path = stack.slice(0, -1).map((f) => (f.obj ? f.key : f.index));
          return { key, path: [...path, key], ...lineColumn(text, i), ...(first !== undefined ? { first: lineColumn(text, first) } : {}) };
        }
        top.keys.set(key, i);
        top.key = key;
        top.expectKey = false;
      }
      i = j + 1;
    } else i++;
  }
  return undefined;
}

/**
 * Where JSON text stops being JSON (the offset of the offending character,
 * text.length when it ends early), or -1 when it is valid. Node 20's
 * JSON.parse errors often carry no position; this gives syntax errors a
 * line and column. Iterative: no recursion on nesting.
 */
export function jsonErrorOffset(text: string): number {
  const VALUE = 0, VALUE_OR_END = 1, KEY = 2, KEY_OR_END = 3, COLON = 4, AFTER = 5;
  const stack: number[] = [];
  const n = text.length;
  const number = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
  let state = VALUE;
  let i = 0;
  const string = (): number => {
    for (let j = i + 1; j < n; j++) {
      const c = text.charCodeAt(j);
      if (c === 0x22) return j + 1;
      if (c < 0x20) return -j - 1;
      if (c === 0x5c) {
        const e = text[j + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(j + 2, j + 6))) return -(j + 1) - 1;
          j += 5;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) j++;
        else return -(j + 1) - 1;
      }
    }
    return -n - 1;
  };
  for (;;) {
    while (i < n && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
    if (i >= n) return state === AFTER && stack.length === 0 ? -1 : n;
    const c = text[i]!;
    if (state === VALUE || state === VALUE_OR_END) {
      if (state === VALUE_OR_END && c === ']') {
        stack.pop();
        state = AFTER;
        i++;
      } else if (c === '{' || c === '[') {
        stack.push(c === '{' ? 1 : 2);
        state = c === '{' ? KEY_OR_END : VALUE_OR_END;
        i++;
      } else if (c === '"') {
        const end = string();
        if (end < 0) return -end - 1;
        i = end;
        state = AFTER;
      } else if (text.startsWith('true', i) || text.startsWith('null', i)) {
        i += 4;
        state = AFTER;
      } else if (text.startsWith('false', i)) {
        i += 5;
        state = AFTER;
      } else {
        number.lastIndex = i;
        const m = number.exec(text);
        if (!m) return i;
        i += m[0].length;
        state = AFTER;
      }
    } else if (state === KEY || state === KEY_OR_END) {
      if (state === KEY_OR_END && c === '}') {
        stack.pop();
        state = AFTER;
        i++;
      } else if (c === '"') {
        const end = string();
        if (end < 0) return -end - 1;
        i = end;
        state = COLON;
      } else return i;
    } else if (state === COLON) {
      if (c !== ':') return i;
      state = VALUE;
      i++;
    } else {
      const top = stack[stack.length - 1];
      if (top === undefined) return i;
      if (c === ',') state = top === 1 ? KEY : VALUE;
      else if ((c === '}' && top === 1) || (c === ']' && top === 2)) stack.pop();
      else return i;
      i++;
    }
  }
}

/** The issue for a duplicate key, `line L, column C` first like every syntax error. */
export function duplicateKeyIssue(d: DuplicateKey, prefix: IssuePath = []): Issue {
  const where = [...prefix, ...d.path]
    .map((p, k) => (typeof p === 'number' ? `[${p}]` : k ? `.${p}` : p))
    .join('');
  return {
    path: [`line ${d.line}, column ${d.column}`],
    message: d.first
      ? `invalid JSON: duplicate key "${d.key}" at ${where} (first at line ${d.first.line}, column ${d.first.column}); JSON keys must be unique`
      : `invalid JSON: key "${d.key}" at ${where} is refused (prototype poisoning)`,
  };
}

export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let last = -1;
  const end = Math.min(offset, text.length);
  for (let i = text.indexOf('\n'); i !== -1 && i < end; i = text.indexOf('\n', i + 1)) {
    line++;
    last = i;
  }
  return { line, column: offset - last };
}

// --- files a document names -------------------------------------------------

/** Default ceiling for a file a document names (alias lists, blocklists, keys). */
export const DEFAULT_MAX_FILE_BYTES = 64 << 20;

/** The ceiling in force: $PATRONUS_MAX_FILE_BYTES or 64 MiB. */
export function maxFileBytes(): number {
  const v = process.env.PATRONUS_MAX_FILE_BYTES;
  const n = v === undefined || v === '' ? NaN : Number(v);
  return Number.isInteger(n) && n > 0 ? n : DEFAULT_MAX_FILE_BYTES;
}

/**
 * Reads a regular file as UTF-8, never more than `limit` bytes. Devices
 * (/dev/zero), FIFOs, sockets and directories are refused before a byte is
 * read, and the open itself cannot wait for a FIFO writer (O_NONBLOCK), so
 * a bad path costs a refusal, not a hung event loop or an exhausted heap.
 */
export function readRegularFile(path: string, limit = maxFileBytes()): string {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`${path} is ${kindOf(st)}, not a regular file`);
    if (st.size > limit) throw new Error(`${path} is ${st.size} bytes, more than the limit of ${limit} bytes (PATRONUS_MAX_FILE_BYTES)`);
    // read at most limit + 1 bytes: a file that grows while read is caught too
    const buf = Buffer.allocUnsafe(Math.min(limit + 1, Math.max(st.size, 0) + 65536));
    let got = 0;
    for (;;) {
      if (got === buf.length) {
        if (got > limit) break;
        throw new Error(`${path} grew while being read`);
      }
      const r = readSync(fd, buf, got, buf.length - got, null);
      if (r === 0) break;
      got += r;
    }
    if (got > limit) throw new Error(`${path} is more than the limit of ${limit} bytes (PATRONUS_MAX_FILE_BYTES)`);
    return buf.toString('utf8', 0, got);
  } finally {
    closeSync(fd);
  }
}

function kindOf(st: import('node:fs').Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}
