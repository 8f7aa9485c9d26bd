/**
 * Live view: interface rates, drops by verdict and by rule, services, drift,
 * committed and pending revision with the commit-confirm countdown.
 */
import { useEffect, useState } from 'preact/hooks';
import { get, post, type Identity } from '../api';
import { useLive, ruleKey } from '../live';
import { bits, count, rate } from '../format';
import { Scroll } from '../scroll';

const DROPPING = /drop|reject|deny|limit|blocked/i;

export function Dashboard({ me }: { me: Identity }) {
  const live = useLive();
  const f = live.frame;
  const r = (k: string) => live.rates.get(k) ?? 0;
  const drops = (f?.rules ?? []).filter((x) => DROPPING.test(x.action ?? '') || x.rateLimited !== undefined);
  const [allVerdicts, setAllVerdicts] = useState(false);
  // the verdicts that saw packets (all of them on request)
  const verdicts = (f?.verdicts ?? []).filter((v) => allVerdicts || v.packets > 0);
  return (
    <>
      <h1 tabIndex={-1}>Dashboard</h1>
      <p class="live" aria-live="off">
        <span class={`dot ${live.connected ? 'on' : 'off'}`} aria-hidden="true" />
        {live.connected ? 'Live' : `Not connected${live.error ? `: ${live.error}` : ''}`}
        {f && <span class="muted"> · read {new Date(f.time).toLocaleTimeString()}</span>}
      </p>
      <Revision me={me} />
      <div class="grid">
        <section aria-labelledby="h-if" class="card">
          <h2 id="h-if">Interfaces</h2>
          <Scroll label="Interfaces">
            <table>
              <thead>
                <tr>
                  <th scope="col">Interface</th>
                  <th scope="col">State</th>
                  <th scope="col" class="num">In packets</th>
                  <th scope="col" class="num">In</th>
                  <th scope="col" class="num">Out packets</th>
                  <th scope="col" class="num">Out</th>
                </tr>
              </thead>
              <tbody>
                {(f?.interfaces ?? []).map((i) => (
                  <tr key={i.interface}>
                    <th scope="row">{i.interface}</th>
                    <td>{i.up ? 'up' : 'down'}</td>
                    <td class="num">{rate(r(`if:${i.interface}:rxp`), 'p/s')}</td>
                    <td class="num">{bits(r(`if:${i.interface}:rxb`))}</td>
                    <td class="num">{rate(r(`if:${i.interface}:txp`), 'p/s')}</td>
                    <td class="num">{bits(r(`if:${i.interface}:txb`))}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </Scroll>
        </section>
        <section aria-labelledby="h-verdicts" class="card">
          <h2 id="h-verdicts">Verdicts</h2>
          <label class="inline">
            <input type="checkbox" checked={allVerdicts} onChange={(e) => setAllVerdicts((e.target as HTMLInputElement).checked)} /> show verdicts with no packets
          </label>
          <Scroll label="Verdicts">
            <table>
              <thead>
                <tr>
                  <th scope="col">Where</th>
                  <th scope="col">Verdict</th>
                  <th scope="col" class="num">Packets</th>
                  <th scope="col" class="num">Rate</th>
                </tr>
              </thead>
              <tbody>
                {verdicts.map((v) => (
                  <tr key={`${v.subsystem}:${v.direction}:${v.verdict}`} data-verdict={v.verdict}>
                    <td>
                      {v.subsystem} {v.direction}
                    </td>
                    <th scope="row">{v.verdict}</th>
                    <td class="num">{count(v.packets)}</td>
                    <td class="num">{rate(r(`verdict:${v.subsystem}:${v.direction}:${v.verdict}:p`), 'p/s')}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </Scroll>
        </section>
        <section aria-labelledby="h-drops" class="card">
          <h2 id="h-drops">Drops by rule</h2>
          <Scroll label="Drops by rule">
            <table>
              <thead>
                <tr>
                  <th scope="col">Rule</th>
                  <th scope="col">Action</th>
                  <th scope="col" class="num">Dropped</th>
                  <th scope="col" class="num">Rate</th>
                </tr>
              </thead>
              <tbody>
                {drops
                  .slice()
                  .sort((a, b) => b.packets + (b.rateLimited ?? 0) - (a.packets + (a.rateLimited ?? 0)))
                  .slice(0, 20)
                  .map((x) => {
                    const dropped = x.rateLimited ?? x.packets;
                    return (
                      <tr key={ruleKey(x)} data-rule={x.rule}>
                        <th scope="row">
                          {x.rule} <span class="muted">({x.subsystem})</span>
                        </th>
                        <td>{x.action}</td>
                        <td class="num" data-testid="rule-drops">
                          {count(dropped)}
                        </td>
                        <td class="num">{rate(r(`rule:${ruleKey(x)}:p`), 'p/s')}</td>
                      </tr>
                    );
                  })}
              </tbody>
            </table>
            {!drops.length && <p class="muted">No drop rules.</p>}
          </Scroll>
        </section>
        <TopDropped />
        <section aria-labelledby="h-health" class="card">
          <h2 id="h-health">Services and drift</h2>
          <ul class="plain">
            {(f?.services ?? []).map((s) => (
              <li key={s.service}>
                <span class={`dot ${s.up ? 'on' : 'off'}`} aria-hidden="true" /> {s.service}: {s.up ? 'running' : 'down'}
              </li>
            ))}
            {f && !f.services.length && <li class="muted">No managed services.</li>}
          </ul>
          <p data-testid="drift">
            Drift:{' '}
            {!f?.drift ? (
              'not checked yet'
            ) : f.drift.items.length ? (
              <strong class="bad">
                {f.drift.items.length} object(s) differ from revision {f.drift.revision}
              </strong>
            ) : (
              <span class="good">none ({f.drift.state})</span>
            )}
          </p>
          {f?.drift?.items.length ? (
            <ul>
              {f.drift.items.map((i) => (
                <li key={`${i.subsystem}:${i.object}`}>
                  {i.subsystem} {i.object}: {i.reason}
                </li>
              ))}
            </ul>
          ) : null}
          {f?.errors.map((e) => (
            <p key={e.subsystem} class="bad">
              {e.subsystem}: {e.error}
            </p>
          ))}
        </section>
      </div>
    </>
  );
}

/** Committed and pending revision; the countdown and Confirm button while one awaits confirmation. */
export function Revision({ me }: { me: Identity }) {
  const { frame } = useLive();
  const [now, setNow] = useState(Date.now());
  const [message, setMessage] = useState<string>();
  const pending = frame?.status.pending;
  useEffect(() => {
    if (!pending) return;
    const t = setInterval(() => setNow(Date.now()), 250);
    return () => clearInterval(t);
  }, [pending?.id]);
  const left = pending?.deadline ? Math.max(0, Math.ceil((Date.parse(pending.deadline) - now) / 1000)) : undefined;
  const canConfirm = me.role === 'admin' || me.role === 'operator';
  return (
    <section aria-labelledby="h-rev" class={`card revision ${pending ? 'pending' : ''}`}>
      <h2 id="h-rev">Revision</h2>
      <p>
        Committed: <strong data-testid="committed">{frame?.status.committed ?? '–'}</strong>
        {frame?.status.applying && <span> · applying…</span>}
      </p>
      {pending && (
        <div role="status" data-testid="pending">
          Revision <strong>{pending.id}</strong> awaits confirmation: rolls back in <strong data-testid="countdown">{left ?? '?'}</strong> s
          {canConfirm && (
            <button
              type="button"
              class="primary"
              onClick={async () => {
                try {
                  await post('/api/v1/config/confirm');
                  setMessage(`Revision ${pending.id} confirmed`);
                } catch (e) {
                  setMessage((e as Error).message);
                }
              }}
            >
              Confirm
            </button>
          )}
        </div>
      )}
      {message && <p role="status">{message}</p>}
    </section>
  );
}

/**
 * Sources whose packets were dropped most, from the recent drop events of the
 * rules that log (GET /api/v1/events: sampled, each event standing for
 * sampleRate packets).
 */
function TopDropped() {
  const [top, setTop] = useState<{ src: string; packets: number; rules: string[] }[]>();
  const [error, setError] = useState<string>();
  useEffect(() => {
    const load = () =>
      get('/api/v1/events', '?limit=2000').then(
        (r) => {
          const by = new Map<string, { packets: number; rules: Set<string> }>();
          for (const e of r.events) {
            if (!/drop|reject|block/.test(e.verdict)) continue;
            const x = by.get(e.src) ?? { packets: 0, rules: new Set<string>() };
            x.packets += e.sampleRate;
            x.rules.add(e.rule);
            by.set(e.src, x);
          }
          setTop([...by].map(([src, x]) => ({ src, packets: x.packets, rules: [...x.rules] })).sort((a, b) => b.packets - a.packets).slice(0, 10));
          setError(undefined);
        },
        (e: Error) => setError(e.message),
      );
    void load();
    const t = setInterval(load, 2000);
    return () => clearInterval(t);
  }, []);
  return (
    <section aria-labelledby="h-top" class="card">
      <h2 id="h-top">Top dropped sources</h2>
      {error && <p class="bad">{error}</p>}
      {top && !top.length && <p class="muted">No drop events yet (rules report drops with log: true, or fastpath.log.drops).</p>}
      {top && top.length > 0 && (
        <Scroll label="Top dropped sources">
          <table data-testid="top-dropped">
            <thead>
              <tr>
                <th scope="col">Source</th>
                <th scope="col" class="num">
                  Packets
                </th>
                <th scope="col">Rules</th>
              </tr>
            </thead>
            <tbody>
              {top.map((t) => (
                <tr key={t.src}>
                  <th scope="row">{t.src}</th>
                  <td class="num">{count(t.packets)}</td>
                  <td>{t.rules.join(', ')}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </Scroll>
      )}
    </section>
  );
}
