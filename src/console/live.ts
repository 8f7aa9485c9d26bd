/**
 * The dashboard stream (GET /api/v1/stream/dashboard) shared by every page
 * that shows live counters: one connection, rates from the last two frames.
 */
import { useEffect, useState } from 'preact/hooks';
import { stream, type DashboardFrame } from './api';

export interface Live {
  frame?: DashboardFrame;
  /** per-second rates by key (interface:rx|tx:packets|bytes, rule:subsystem:rule:packets|bytes, verdict:…) */
  rates: Map<string, number>;
  connected: boolean;
  error?: string;
}

type Listener = (l: Live) => void;
const listeners = new Set<Listener>();
let current: Live = { rates: new Map(), connected: false };
let stop: (() => void) | undefined;

export const ruleKey = (r: { subsystem: string; rule: string }) => `${r.subsystem}\u0000${r.rule}`;

function counters(f: DashboardFrame): Map<string, number> {
  const m = new Map<string, number>();
  for (const i of f.interfaces) {
    m.set(`if:${i.interface}:rxp`, i.rxPackets);
    m.set(`if:${i.interface}:rxb`, i.rxBytes);
    m.set(`if:${i.interface}:txp`, i.txPackets);
    m.set(`if:${i.interface}:txb`, i.txBytes);
  }
  for (const r of f.rules) {
    m.set(`rule:${ruleKey(r)}:p`, r.packets);
    m.set(`rule:${ruleKey(r)}:b`, r.bytes);
  }
  for (const v of f.verdicts) m.set(`verdict:${v.subsystem}:${v.direction}:${v.verdict}:p`, v.packets);
  return m;
}

let previous: { time: number; values: Map<string, number> } | undefined;

function onFrame(f: DashboardFrame) {
  const values = counters(f);
  const rates = new Map<string, number>();
  if (previous && f.time > previous.time) {
    const dt = (f.time - previous.time) / 1000;
    for (const [k, v] of values) {
      const before = previous.values.get(k);
      // a counter that went down was reset (a new rule set): no rate for this interval
      if (before !== undefined && v >= before) rates.set(k, (v - before) / dt);
    }
  }
  previous = { time: f.time, values };
  publish({ frame: f, rates, connected: true });
}

function publish(l: Live) {
  current = l;
  for (const f of listeners) f(current);
}

export function useLive(): Live {
  const [live, setLive] = useState(current);
  useEffect(() => {
    listeners.add(setLive);
    if (!stop) {
      stop = stream(
        '/api/v1/stream/dashboard',
        (event, data) => {
          if (event === 'frame') onFrame(JSON.parse(data) as DashboardFrame);
          else if (event === 'failure') publish({ ...current, error: (JSON.parse(data) as { message: string }).message });
        },
        (connected, error) => publish({ ...current, connected, ...(error ? { error } : {}) }),
      );
    }
    return () => {
      listeners.delete(setLive);
    };
  }, []);
  return live;
}

/** Ends the stream (sign-out). */
export function stopLive(): void {
  stop?.();
  stop = undefined;
  previous = undefined;
  current = { rates: new Map(), connected: false };
}
