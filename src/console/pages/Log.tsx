/**
 * The live firewall log: GET /api/v1/events?follow=1 (server-sent events),
 * fast-path drops sampled in BPF and nftables log/reject events, newest first,
 * filtered by rule, source and interface.
 */
import { useEffect, useMemo, useState } from 'preact/hooks';
import { stream, type FirewallEvent, type Identity } from '../api';

type FlowEvent = FirewallEvent;

const KEEP = 500;

export function Log(_: { me: Identity }) {
  const [events, setEvents] = useState<(FlowEvent & { seq: number })[]>([]);
  const [state, setState] = useState<{ connected: boolean; error?: string }>({ connected: false });
  const [paused, setPaused] = useState(false);
  const [lost, setLost] = useState(0);
  const [filter, setFilter] = useState({ rule: '', src: '', iface: '' });

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
      <div class="scroll">
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
      </div>
    </>
  );
}
