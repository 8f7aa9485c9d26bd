/**
 * The document editor of the Configuration page: CodeMirror 6 with YAML
 * highlighting, completion of keys and enum values from the document's JSON
 * Schema (GET /schema.json, walked by the YAML path at the cursor) and the
 * server's validation issues shown inline at their line/column. Imported only
 * by pages/Config.tsx, so it lands in that page's lazily loaded chunk.
 */
import { EditorState, type Extension } from '@codemirror/state';
import { EditorView, keymap, lineNumbers, highlightActiveLine, drawSelection } from '@codemirror/view';
import { defaultKeymap, history, historyKeymap, indentWithTab } from '@codemirror/commands';
import { syntaxHighlighting, defaultHighlightStyle, indentUnit } from '@codemirror/language';
import { autocompletion, completionKeymap, type CompletionContext, type CompletionResult, type Completion } from '@codemirror/autocomplete';
import { lintGutter, setDiagnostics, type Diagnostic } from '@codemirror/lint';
import { yaml } from '@codemirror/lang-yaml';

export interface EditorIssue {
  line?: number;
  column?: number;
  message: string;
  path?: string;
}

type Schema = { [k: string]: unknown } | boolean;
type Segment = string | '[]';

let schemaPromise: Promise<Schema | undefined> | undefined;
function loadSchema(): Promise<Schema | undefined> {
  schemaPromise ??= fetch('/schema.json', { credentials: 'same-origin' })
    .then((r) => (r.ok ? (r.json() as Promise<Schema>) : undefined))
    .catch(() => undefined);
  return schemaPromise;
}

/** Every schema a node at `path` may match (refs resolved, anyOf/oneOf/allOf expanded). */
export function schemasAt(root: Schema, path: Segment[]): { [k: string]: unknown }[] {
  const resolve = (s: unknown, depth = 0): { [k: string]: unknown }[] => {
    if (!s || typeof s !== 'object' || depth > 20) return [];
    const o = s as { [k: string]: unknown };
    const out: { [k: string]: unknown }[] = [o];
    if (typeof o.$ref === 'string' && o.$ref.startsWith('#')) {
      let t: unknown = root;
      for (const p of o.$ref.slice(1).split('/').filter(Boolean)) t = (t as { [k: string]: unknown } | undefined)?.[decodeURIComponent(p.replace(/~1/g, '/').replace(/~0/g, '~'))];
      out.push(...resolve(t, depth + 1));
    }
    for (const k of ['anyOf', 'oneOf', 'allOf'])
      if (Array.isArray(o[k])) for (const sub of o[k] as unknown[]) out.push(...resolve(sub, depth + 1));
    return out;
  };
  let current = resolve(root);
  for (const seg of path) {
    const next: unknown[] = [];
    for (const s of current) {
      if (seg === '[]') {
        if (s.items && typeof s.items === 'object') next.push(s.items);
        if (Array.isArray(s.prefixItems)) next.push(...(s.prefixItems as unknown[]));
      } else {
        const props = s.properties as { [k: string]: unknown } | undefined;
        if (props && seg in props) next.push(props[seg]);
        else if (s.additionalProperties && typeof s.additionalProperties === 'object') next.push(s.additionalProperties);
      }
    }
    current = next.flatMap((n) => resolve(n));
    if (!current.length) break;
  }
  return current;
}

const KEY = /^(\s*)(-\s+)?("[^"]*"|'[^']*'|[^\s#:'"][^:#]*?)?\s*:(\s|$)/;
const unquote = (k: string) => k.replace(/^["']|["']$/g, '');

/**
 * The YAML path of the mapping that holds a key written at column `want` on
 * line `lineNo` (0-based), from indentation: good enough for block-style
 * documents (the ones this console writes), not for flow style.
 */
export function pathAbove(lines: string[], lineNo: number, want: number): Segment[] {
  const path: Segment[] = [];
  for (let i = lineNo - 1; i >= 0 && want > 0; i--) {
    const l = lines[i]!;
    if (!l.trim() || /^\s*#/.test(l) || /^---|^\.\.\./.test(l)) continue;
    const dash = /^(\s*)(-\s+)?/.exec(l)!;
    const lineIndent = dash[1]!.length;
    const keyStart = lineIndent + (dash[2]?.length ?? 0);
    const m = KEY.exec(l);
    if (dash[2] && lineIndent < want) {
      if (keyStart < want && m?.[3]) path.unshift(unquote(m[3].trim()));
      path.unshift('[]');
      want = lineIndent;
    } else if (!dash[2] && keyStart < want && m?.[3]) {
      path.unshift(unquote(m[3].trim()));
      want = keyStart;
    }
  }
  return path;
}

function describe(s: { [k: string]: unknown }): string | undefined {
  return typeof s.description === 'string' ? s.description.split('\n')[0] : undefined;
}

async function complete(ctx: CompletionContext): Promise<CompletionResult | null> {
  const line = ctx.state.doc.lineAt(ctx.pos);
  const before = line.text.slice(0, ctx.pos - line.from);
  const lines = ctx.state.doc.toString().split('\n');
  const lineNo = line.number - 1;
  const keyPos = /^(\s*)(-\s+)?([\w.-]*)$/.exec(before);
  const valuePos = /^(\s*)(-\s+)?("[^"]*"|[\w.-]+)\s*:\s+([\w.-]*)$/.exec(before);
  if (!keyPos && !valuePos) return null;
  if (keyPos && !keyPos[3] && !ctx.explicit) return null;
  const schema = await loadSchema();
  if (!schema) return null;
  const m = (keyPos ?? valuePos)!;
  const indent = m[1]!.length;
  const want = indent + (m[2]?.length ?? 0);
  const path = pathAbove(lines, lineNo, m[2] ? indent : want);
  if (m[2]) path.push('[]');
  if (keyPos) {
    const options = new Map<string, Completion>();
    for (const s of schemasAt(schema, path)) {
      const props = s.properties as { [k: string]: unknown } | undefined;
      if (!props) continue;
      for (const [k, sub] of Object.entries(props)) if (!options.has(k)) options.set(k, { label: k, type: 'property', apply: `${k}: `, detail: schemasAt(schema, [...path, k]).map(describe).find(Boolean) });
    }
    if (!options.size) return null;
    return { from: ctx.pos - keyPos[3]!.length, options: [...options.values()], validFor: /^[\w.-]*$/ };
  }
  const key = unquote(valuePos![3]!);
  const values = new Set<string>();
  for (const s of schemasAt(schema, [...path, key])) {
    if (Array.isArray(s.enum)) for (const v of s.enum) values.add(String(v));
    if ('const' in s && s.const !== undefined) values.add(String(s.const));
    if (s.type === 'boolean') ['true', 'false'].forEach((v) => values.add(v));
  }
  if (!values.size) return null;
  return { from: ctx.pos - valuePos![4]!.length, options: [...values].map((v) => ({ label: v, type: 'enum' })), validFor: /^[\w.-]*$/ };
}

function diagnostics(state: EditorState, issues: EditorIssue[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const i of issues) {
    if (!i.line || i.line > state.doc.lines) continue;
    const l = state.doc.line(i.line);
    const from = Math.min(l.to, l.from + Math.max(0, (i.column ?? 1) - 1));
    out.push({ from, to: Math.max(from, l.to), severity: 'error', message: i.path ? `${i.path}: ${i.message}` : i.message });
  }
  return out;
}

export interface DocumentEditor {
  view: EditorView;
  setText(text: string): void;
  setIssues(issues: EditorIssue[]): void;
  jump(line?: number, column?: number): void;
  destroy(): void;
}

export function createEditor(parent: HTMLElement, opts: { text: string; label: string; describedBy: string; onChange: (text: string) => void }): DocumentEditor {
  const extensions: Extension[] = [
    lineNumbers(),
    lintGutter(),
    history(),
    drawSelection(),
    highlightActiveLine(),
    indentUnit.of('  '),
    EditorState.tabSize.of(2),
    yaml(),
    syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
    autocompletion({ override: [complete], activateOnTyping: true }),
    keymap.of([...completionKeymap, ...defaultKeymap, ...historyKeymap, indentWithTab]),
    EditorView.contentAttributes.of({ id: 'document', tabindex: '0', 'aria-label': opts.label, 'aria-describedby': opts.describedBy, spellcheck: 'false' }),
    EditorView.updateListener.of((u) => {
      if (u.docChanged) opts.onChange(u.state.doc.toString());
    }),
  ];
  const view = new EditorView({ parent, state: EditorState.create({ doc: opts.text, extensions }) });
  // the browser test (and anyone scripting the page) reads the document from here
  (view.contentDOM as HTMLElement & { patronusEditor?: EditorView }).patronusEditor = view;
  void loadSchema();
  return {
    view,
    setText(text) {
      if (text !== view.state.doc.toString()) view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
    },
    setIssues(issues) {
      view.dispatch(setDiagnostics(view.state, diagnostics(view.state, issues)));
    },
    jump(line, column) {
      if (!line || line > view.state.doc.lines) return;
      const l = view.state.doc.line(line);
      const anchor = Math.min(l.to, l.from + Math.max(0, (column ?? 1) - 1));
      view.dispatch({ selection: { anchor, head: l.to }, scrollIntoView: true });
      view.focus();
    },
    destroy() {
      view.destroy();
    },
  };
}
