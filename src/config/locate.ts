/**
 * Line and column of a schema issue in the text the document came from:
 *   line 12, column 15: firewall.rules[0].action: Invalid option: expected one of "accept"|"drop"|...
 * parseConfigText remembers, for each document it returns, the text (and
 * the YAML node tree) it was parsed from; validation looks an issue's path
 * up in that tree (the yaml library keeps every node's offsets) and adds the
 * position. A document that did not come from text (a REST body's object)
 * has no positions; its issues keep only their paths.
 */
import { isAlias, isMap, isPair, isScalar, isSeq, parseDocument, type Document, type Node } from 'yaml';
import type { Issue, IssuePath } from './issues.js';
import { yamlNestingIssue } from './input.js';

interface Source {
  text: string;
  /** the YAML tree; for JSON text, built on first use (JSON is YAML's flow syntax) */
  doc?: Document | null;
}

const sources = new WeakMap<object, Source>();

/** JSON texts longer than this get no positions (see treeOf). */
const MAX_LOCATED_JSON = 4 << 20;

/** Called by parseConfigText: `value` was parsed from `text` (`doc` is its YAML tree when the text was YAML). */
export function rememberSource(value: unknown, text: string, doc?: Document): void {
  if (value && typeof value === 'object') sources.set(value, doc ? { text, doc } : { text });
}

/**
 * The issues with `line` and `column` added where `document` came from text
 * and the path leads to a node (or, for a missing field, to the nearest
 * node above it: the object that lacks it). An unknown key points at the key.
 */
export function locateIssues(document: unknown, issues: Issue[]): Issue[] {
  const src = document && typeof document === 'object' ? sources.get(document) : undefined;
  if (!src || !issues.length) return issues;
  const doc = treeOf(src);
  if (!doc) return issues;
  // line starts once, then a binary search per issue: a document with
  // 100k bad list entries must not rescan its text 100k times
  const starts = lineStarts(src.text);
  return issues.map((i) => {
    if (i.line !== undefined) return i;
    const offset = i.unknownKey !== undefined ? offsetOf(doc, [...i.path, i.unknownKey], true) : offsetOf(doc, i.path, false);
    if (offset === undefined) return i;
    const line = lineOf(starts, offset);
    return { ...i, line: line + 1, column: offset - starts[line]! + 1 };
  });
}

function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
  return starts;
}

/** 0-based index of the line holding `offset` */
function lineOf(starts: number[], offset: number): number {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid]! <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function treeOf(src: Source): Document | undefined {
  if (src.doc === undefined) {
    // JSON: parse again as YAML only now that an issue needs a position (the
    // depth guard keeps the recursive parser away from hostile nesting). Not for a JSON text of many
    // megabytes (a large REST body is passed on as text, src/config/parse-worker.ts): its YAML tree would
    // take seconds and gigabytes, and such a text is one line anyway; its issues keep their paths.
    const doc = src.text.length > MAX_LOCATED_JSON || yamlNestingIssue(src.text) ? null : parseDocument(src.text, { uniqueKeys: false });
    src.doc = doc && !doc.errors.length ? doc : null;
  }
  return src.doc ?? undefined;
}

/** Start offset of the deepest node along `path` (a map entry's key when the path ends at a key). */
function offsetOf(doc: Document, path: IssuePath, atKey: boolean): number | undefined {
  let node: unknown = doc.contents;
  let offset = rangeStart(node);
  for (const [n, seg] of path.entries()) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      // a key whose value is empty (`rules:`) has no value node: point at the key
      const last = n === path.length - 1;
      offset = (atKey && last ? rangeStart(pair.key) : (rangeStart(pair.value) ?? rangeStart(pair.key))) ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (item === undefined) break;
      offset = rangeStart(item) ?? offset;
      node = item;
    } else break;
  }
  return offset;
}

function rangeStart(node: unknown): number | undefined {
  const range = (node as Node | null | undefined)?.range;
  return Array.isArray(range) ? range[0] : undefined;
}
