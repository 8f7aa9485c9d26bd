/**
 * The live firewall log: GET /api/v1/events?follow=1 (server-sent events),
 * fast-path drops sampled in BPF and nftables log/reject events, newest first,
 * filtered by rule, source and interface.
 */
import { useEffect, useMemo, useState } from 'preact/hooks';
import { get, stream, type FirewallEvent, type Get, type Identity } from '../api';
import { Scroll } from '../scroll';

/** The document's fast-path sampling (fastpath.log): events per second per rule, and the burst. */
type JsonSchema = { properties?: Record<string, JsonSchema>; default?: unknown };
type Sampling = NonNullable<NonNullable<Get<'/api/v1/config'>['config']>['fastpath']>['log'];

type FlowEvent = FirewallEvent;

const KEEP = 500;

export function Log(_: { me: Identity }) {
  const [events, setEvents] = useState<(FlowEvent & { seq: number })[]>([]);
  const [state, setState] = useState<{ connected: boolean; error?: string }>({ connected: false });
  const [paused, setPaused] = useState(false);
  const [lost, setLost] = useState(0);
  const [filter, setFilter] = useState({ rule: '', src: '', iface: '' });
  const [sampling, setSampling] = useState<Sampling>();

  useEffect(() => {
    // the running document's fastpath.log, its unset fields from the document's JSON Schema defaults
    Promise.all([get('/api/v1/config').catch(() => undefined), fetch('/schema.json').then((r) => (r.ok ? (r.json() as Promise<JsonSchema>) : undefined))]).then(
      ([c, schema]) => {
        const defaults = schema?.properties?.fastpath?.properties?.log?.default as Sampling | undefined;
        const given = (c?.pending?.config ?? c?.config)?.fastpath?.log;
        if (given || defaults) setSampling({ ...defaults, ...given } as Sampling);
      },
      () => undefined,
    );
  }, []);

  useEffect(() => {
    if (paused) return;
    let seq = 0;
    const buffer: (FlowEvent & { seq: number })[] = [];
    let scheduled = false;
    const stop = stream(
      '/api/v1/events?follow=1',
      (event, data) => {
        if (event === 'dropped') {
          setLost((n) => n + ((JSON.parse(data) as { dropped?: number }).dropped ?? 0));
          return;
        }
        if (event !== 'message') return;
        try {
          buffer.push({ ...(JSON.parse(data) as FlowEvent), seq: seq++ });
        } catch {
          return;
        }
        // batch what arrives within a frame into one render
        if (!scheduled) {
          scheduled = true;
          requestAnimationFrame(() => {
            scheduled = false;
            const batch = buffer.splice(0).reverse();
            setEvents((old) => [...batch, ...old].slice(0, KEEP));
          });
        }
      },
      (connected, error) => setState({ connected, ...(error ? { error } : {}) }),
    );
    return stop;
  }, [paused]);

  const shown = useMemo(
    () =>
      events.filter(
        (e) =>
          (!filter.rule || (e.rule ?? '').toLowerCase().includes(filter.rule.toLowerCase())) &&
          (!filter.src || (e.src ?? '').startsWith(filter.src)) &&
          (!filter.iface || (e.iface ?? '') === filter.iface),
      ),
    [events, filter],
  );
  const set = (k: keyof typeof filter) => (e: Event) => setFilter({ ...filter, [k]: (e.target as HTMLInputElement).value });

  return (
    <>
      <h1 tabIndex={-1}>Live log</h1>
      <p class="live">
        <span class={`dot ${state.connected ? 'on' : 'off'}`} aria-hidden="true" />
        {state.connected ? (paused ? 'Paused' : 'Following') : `Not connected${state.error ? `: ${state.error}` : ''}`}
        <button type="button" onClick={() => setPaused(!paused)}>
          {paused ? 'Resume' : 'Pause'}
        </button>
        <button type="button" onClick={() => setEvents([])}>
          Clear
        </button>
      </p>
      {sampling?.rate !== undefined && (
        <p class="muted" data-testid="sampling">
          Fast-path drops are sampled in the kernel: at most {sampling.rate} events per second per rule (bursts of {sampling.burst ?? sampling.rate}); an event's Packets
          column says how many drops it stands for. nftables log events are not sampled.
        </p>
      )}
      <form class="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <label for="log-rule">Rule</label>
        <input id="log-rule" value={filter.rule} onInput={set('rule')} />
        <label for="log-src">Source</label>
        <input id="log-src" value={filter.src} onInput={set('src')} placeholder="address prefix" />
        <label for="log-iface">Interface</label>
        <input id="log-iface" value={filter.iface} onInput={set('iface')} />
        <span class="muted">
          {shown.length} of {events.length} events (newest {KEEP} kept)
          {lost > 0 && `; ${lost} not delivered to this page (it fell behind)`}
        </span>
      </form>
      <Scroll label="Events">
        <table data-testid="log">
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Source</th>
              <th scope="col">Rule</th>
              <th scope="col">Verdict</th>
              <th scope="col">Interface</th>
              <th scope="col">From</th>
              <th scope="col">To</th>
              <th scope="col">Protocol</th>
              <th scope="col" class="num">
                Packets
              </th>
            </tr>
          </thead>
          <tbody>
            {shown.map((e) => (
              <tr key={e.seq} data-rule={e.rule} data-verdict={e.verdict}>
                <td>{new Date(e.time).toLocaleTimeString()}</td>
                <td>{e.source}</td>
                <td>{e.rule}</td>
                <td>{e.verdict}</td>
                <td>{e.iface}</td>
                <td>
                  {e.src}
                  {e.sport ? `:${e.sport}` : ''}
                </td>
                <td>
                  {e.dst}
                  {e.dport && e.proto !== 'icmp' && e.proto !== 'icmpv6' ? `:${e.dport}` : ''}
                </td>
                <td>{e.proto}</td>
                <td class="num" title="packets this event stands for (the rest were sampled away)">
                  {e.sampleRate}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </Scroll>
    </>
  );
}
