/**
 * The document as YAML: edit, validate (errors at their line, from the
 * server's own validation), plan (per-subsystem changes), apply (optionally
 * with commit-confirm); revision history with a side-by-side diff and roll-back.
 */
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { stringify } from 'yaml';
import { ApiError, get, post, request, type Identity, type Post, type Get } from '../api';
import { Revision } from './Dashboard';
import { ago } from '../format';
import { sideBySide, type DiffRow } from '../diff';
import { createEditor, type DocumentEditor } from '../editor';
import { Scroll } from '../scroll';

type Issue = NonNullable<NonNullable<ApiError['body']>['issues']>[number];
type Plan = Post<'/api/v1/config/plan'>;
type ApplyReport = Post<'/api/v1/config/apply'>;
type Revisions = Get<'/api/v1/revisions'>;
type RevisionDoc = Get<'/api/v1/revisions/{id}'>;

const REDACTED = '[redacted]';
const SCHEMA_HEADER = '# yaml-language-server: $schema=/schema.json\n';

export function Config({ me }: { me: Identity }) {
  const canApply = me.role === 'admin' || me.role === 'operator';
  const [text, setText] = useState('');
  const [loadedRevision, setLoadedRevision] = useState<number | null>(null);
  const [issues, setIssues] = useState<Issue[]>([]);
  const [validState, setValidState] = useState<'unknown' | 'valid' | 'invalid' | 'checking'>('unknown');
  const [plan, setPlan] = useState<Plan>();
  const [result, setResult] = useState<ApplyReport | { error: string }>();
  const [busy, setBusy] = useState(false);
  const [confirm, setConfirm] = useState(true);
  const [confirmSeconds, setConfirmSeconds] = useState(120);
  const [message, setMessage] = useState('');
  const [history, setHistory] = useState(0);
  const host = useRef<HTMLDivElement>(null);
  const editor = useRef<DocumentEditor>();
  useEffect(() => {
    if (!host.current) return;
    editor.current = createEditor(host.current, {
      text: '',
      label: 'Configuration document (YAML)',
      describedBy: 'issues',
      onChange: (t) => {
        setText(t);
        setPlan(undefined);
      },
    });
    return () => editor.current?.destroy();
  }, []);
  useEffect(() => editor.current?.setIssues(issues), [issues]);
  useEffect(() => editor.current?.view.contentDOM.setAttribute('aria-invalid', String(validState === 'invalid')), [validState]);

  // a document from the server replaces the editor's; the editor's own edits come back through onChange
  const show = (t: string) => {
    setText(t);
    editor.current?.setText(t);
  };
  const load = async () => {
    try {
      const c = await get('/api/v1/config');
      const doc = c.pending?.config ?? c.config;
      show(SCHEMA_HEADER + stringify(doc ?? {}, { lineWidth: 0 }));
      setLoadedRevision(c.pending?.revision ?? c.revision);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) show(SCHEMA_HEADER);
      else setResult({ error: (e as Error).message });
    }
    setIssues([]);
    setPlan(undefined);
    setValidState('unknown');
  };
  useEffect(() => {
    void load();
  }, []);

  const body = () => ({ config: text, format: 'yaml' as const });
  const fail = (e: unknown) => {
    if (e instanceof ApiError && e.body?.issues?.length) {
      setIssues(e.body.issues);
      setValidState('invalid');
    } else setResult({ error: (e as Error).message });
  };
  const localIssues = (): Issue[] => {
    const out: Issue[] = [];
    text.split('\n').forEach((l, i) => {
      if (l.includes(REDACTED)) out.push({ path: '', line: i + 1, column: l.indexOf(REDACTED) + 1, message: 'a secret is redacted in this view: keep secrets in files (…File fields) to edit this document here, or put the secret back' });
    });
    return out;
  };

  // validation while typing, by the server (the same checks as apply), debounced
  useEffect(() => {
    if (!text) return;
    const t = setTimeout(async () => {
      setValidState('checking');
      try {
        await post('/api/v1/config/validate', body());
        const local = localIssues();
        setIssues(local);
        setValidState(local.length ? 'invalid' : 'valid');
      } catch (e) {
        if (e instanceof ApiError && e.body?.issues) {
          setIssues(e.body.issues);
          setValidState('invalid');
        } else setValidState('unknown');
      }
    }, 700);
    return () => clearTimeout(t);
  }, [text]);

  const run = async (what: () => Promise<void>) => {
    setBusy(true);
    setResult(undefined);
    try {
      await what();
    } catch (e) {
      fail(e);
    } finally {
      setBusy(false);
    }
  };

  const doPlan = () =>
    run(async () => {
      setPlan(await post('/api/v1/config/plan', body()));
      setIssues([]);
    });
  const doApply = () =>
    run(async () => {
      const local = localIssues();
      if (local.length) {
        setIssues(local);
        setValidState('invalid');
        return;
      }
      const r = await post('/api/v1/config/apply', { ...body(), message: message || 'from the console', ...(confirm ? { confirmWithin: confirmSeconds } : {}) });
      setResult(r);
      setPlan(undefined);
      setHistory((h) => h + 1);
    });

  const jump = (line?: number, column?: number) => editor.current?.jump(line, column);

  return (
    <>
      <h1 tabIndex={-1}>Configuration</h1>
      <Revision me={me} />
      <section aria-labelledby="h-editor" class="card">
        <h2 id="h-editor">
          Document{' '}
          <span class="muted">
            (revision {loadedRevision ?? 'none'}; schema <a href="/schema.json">/schema.json</a>)
          </span>
        </h2>
        <div class="editor" ref={host} />
        <p class="hint muted">Tab indents; Ctrl-Space completes keys and values from the schema; press Escape, then Tab, to leave the editor.</p>
        <div id="issues" aria-live="polite">
          <p data-testid="validity" class={validState === 'invalid' ? 'bad' : validState === 'valid' ? 'good' : 'muted'}>
            {validState === 'checking' ? 'Checking…' : validState === 'valid' ? 'Valid' : validState === 'invalid' ? `${issues.length} problem(s)` : ''}
          </p>
          {issues.length > 0 && (
            <ul class="issues">
              {issues.map((i, n) => (
                <li key={n}>
                  <button type="button" class="link" onClick={() => jump(i.line, i.column)}>
                    {i.line ? `line ${i.line}${i.column ? `:${i.column}` : ''}` : 'document'}
                  </button>{' '}
                  {i.path && <code>{i.path}</code>} {i.message}
                </li>
              ))}
            </ul>
          )}
        </div>
        <div class="actions">
          {canApply && (
            <>
              <button type="button" onClick={doPlan} disabled={busy}>
                Plan
              </button>
              <label for="apply-message">Message</label>
              <input id="apply-message" value={message} onInput={(e) => setMessage((e.target as HTMLInputElement).value)} placeholder="why this change" />
              <label class="inline">
                <input type="checkbox" checked={confirm} onChange={(e) => setConfirm((e.target as HTMLInputElement).checked)} /> Roll back unless confirmed within
              </label>
              <input aria-label="Confirmation window in seconds" type="number" min={1} max={86400} value={confirmSeconds} disabled={!confirm} onInput={(e) => setConfirmSeconds(Number((e.target as HTMLInputElement).value))} class="short" /> s
              <button type="button" class="primary" onClick={doApply} disabled={busy}>
                Apply
              </button>
            </>
          )}
          <button type="button" onClick={load} disabled={busy}>
            Reload
          </button>
        </div>
        {result && <ApplyResult result={result} />}
      </section>
      {plan && <PlanView plan={plan} />}
      <History me={me} refresh={history} onRolledBack={() => setHistory((h) => h + 1)} />
    </>
  );
}

function ApplyResult({ result }: { result: ApplyReport | { error: string } }) {
  if ('error' in result)
    return (
      <p role="alert" class="error">
        {result.error}
      </p>
    );
  return (
    <div role="status" class={result.state === 'failed' ? 'error' : 'ok'} data-testid="apply-result">
      {result.unchanged ? 'Nothing to change: the document is the committed one.' : `Revision ${result.revision}: ${result.state}${result.confirmDeadline ? ` — confirm before ${new Date(result.confirmDeadline).toLocaleTimeString()}` : ''} (${Math.round(result.durationMs)} ms)`}
      {result.error && <p>{result.error}</p>}
    </div>
  );
}

function PlanView({ plan }: { plan: Plan }) {
  const changed = plan.subsystems.filter((s) => s.changes.length);
  return (
    <section aria-labelledby="h-plan" class="card" data-testid="plan">
      <h2 id="h-plan">Plan</h2>
      {plan.removesEverything && <p class="bad">This document removes everything Patronus manages.</p>}
      {!changed.length && <p>No changes.</p>}
      {changed.map((s) => (
        <details open key={s.subsystem}>
          <summary>
            {s.subsystem} <span class="muted">({s.changes.length})</span>
          </summary>
          <ul class="changes">
            {s.changes.map((c, i) => (
              <li key={i} class={`chg chg-${c.action}`}>
                <span class="action">{c.action}</span> {c.object}
                {c.detail && <span class="muted"> — {c.detail}</span>}
              </li>
            ))}
          </ul>
        </details>
      ))}
    </section>
  );
}

function History({ me, refresh, onRolledBack }: { me: Identity; refresh: number; onRolledBack: () => void }) {
  const canApply = me.role === 'admin' || me.role === 'operator';
  const [list, setList] = useState<Revisions>([]);
  const [left, setLeft] = useState<number>();
  const [right, setRight] = useState<number>();
  const [docs, setDocs] = useState<{ left?: string; right?: string }>({});
  const [status, setStatus] = useState<string>();
  const reload = () => get('/api/v1/revisions', '?limit=50').then(setList, (e: Error) => setStatus(e.message));
  useEffect(() => {
    void reload();
    const t = setInterval(reload, 3000);
    return () => clearInterval(t);
  }, [refresh]);
  useEffect(() => {
    const text = async (id?: number) => (id ? stringify(((await request<RevisionDoc>('GET', `/api/v1/revisions/${id}`)).config ?? {}) as unknown, { lineWidth: 0 }) : undefined);
    Promise.all([text(left), text(right)]).then(([l, r]) => setDocs({ left: l, right: r }), (e: Error) => setStatus(e.message));
  }, [left, right]);

  const rollback = async (id: number) => {
    setStatus(`Rolling back to revision ${id}…`);
    try {
      const r = await post('/api/v1/config/rollback', { to: id });
      setStatus(`Rolled back: revision ${r.revision} ${r.state}`);
      onRolledBack();
    } catch (e) {
      setStatus((e as Error).message);
    }
  };

  return (
    <section aria-labelledby="h-history" class="card">
      <h2 id="h-history">History</h2>
      {status && (
        <p role="status" data-testid="history-status">
          {status}
        </p>
      )}
      <Scroll label="History">
        <table data-testid="history">
          <thead>
            <tr>
              <th scope="col">Revision</th>
              <th scope="col">State</th>
              <th scope="col">When</th>
              <th scope="col">Author</th>
              <th scope="col">Message</th>
              <th scope="col">Compare</th>
              {canApply && <th scope="col">Roll back</th>}
            </tr>
          </thead>
          <tbody>
            {list.map((r) => (
              <tr key={r.id} data-revision={r.id} data-state={r.state}>
                <th scope="row">{r.id}</th>
                <td>{r.state}</td>
                <td>{ago(r.createdAt)}</td>
                <td>{r.author}</td>
                <td>{r.message}</td>
                <td>
                  <label class="inline">
                    <input type="radio" name="left" checked={left === r.id} onChange={() => setLeft(r.id)} /> old
                  </label>{' '}
                  <label class="inline">
                    <input type="radio" name="right" checked={right === r.id} onChange={() => setRight(r.id)} /> new
                  </label>
                </td>
                {canApply && (
                  <td>
                    {r.state === 'committed' && r.id !== list.find((x) => x.state === 'committed')?.id ? (
                      <button type="button" onClick={() => rollback(r.id)}>
                        Roll back to revision {r.id}
                      </button>
                    ) : null}
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      </Scroll>
      {docs.left !== undefined && docs.right !== undefined && <DiffView left={docs.left} right={docs.right} names={[`revision ${left}`, `revision ${right}`]} />}
    </section>
  );
}

function DiffView({ left, right, names }: { left: string; right: string; names: [string, string] }) {
  const [all, setAll] = useState(false);
  const rows = useMemo(() => {
    const full = sideBySide(left.split('\n'), right.split('\n'));
    if (all) return full;
    // unchanged runs longer than the context fold into one row
    const CONTEXT = 3;
    const near = full.map((_, i) => full.slice(Math.max(0, i - CONTEXT), i + CONTEXT + 1).some((r) => r.kind !== 'same'));
    const out: (DiffRow | { fold: number })[] = [];
    for (let i = 0; i < full.length; i++) {
      if (near[i]) out.push(full[i]!);
      else {
        let j = i;
        while (j < full.length && !near[j]) j++;
        out.push({ fold: j - i });
        i = j - 1;
      }
    }
    return out;
  }, [left, right, all]);
  return (
    <Scroll label="Differences between the two revisions">
      <table class="diff" data-testid="diff">
        <caption>
          {names[0]} → {names[1]}
        </caption>
        <thead>
          <tr>
            <th scope="col">{names[0]}</th>
            <th scope="col">{names[1]}</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((r, i) =>
            'fold' in r ? (
              <tr key={i} class="fold">
                <td colSpan={2}>
                  <button type="button" class="link" onClick={() => setAll(true)}>
                    {r.fold} unchanged line(s)
                  </button>
                </td>
              </tr>
            ) : (
            <tr key={i} class={r.kind}>
              <td class={r.kind === 'removed' || r.kind === 'changed' ? 'del' : ''}>
                <code>{r.left ?? ''}</code>
              </td>
              <td class={r.kind === 'added' || r.kind === 'changed' ? 'ins' : ''}>
                <code>{r.right ?? ''}</code>
              </td>
            </tr>
            ),
          )}
        </tbody>
      </table>
    </Scroll>
  );
}
