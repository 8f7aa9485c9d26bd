/**
 * `patronus log [-f]`: the firewall event log of the running server
 * (GET /api/v1/events; with -f the server-sent event stream). The events
 * live in the server (it owns the only reader of the kernel's ring and the
 * NFLOG group), so there is no --direct form.
 */
import { RemoteError } from './client.js';

export interface LogOptions {
  follow: boolean;
  rule?: string;
  src?: string;
  iface?: string;
  source?: string;
  limit?: number;
  json: boolean;
}

export interface LogEvent {
  id: number;
  time: string;
  source: string;
  rule: string;
  verdict: string;
  iface: string;
  direction?: string;
  src: string;
  dst: string;
  proto: string;
  sport: number;
  dport: number;
  sampleRate: number;
  prefix?: string;
}

/** One line per event: time, source, rule, verdict, interface, flow, and the sample rate when it is not 1. */
export function eventLine(e: LogEvent): string {
  const host = (a: string, p: number) => (p ? (a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`) : a);
  const icmp = e.proto === 'icmp' || e.proto === 'icmpv6';
  const flow = icmp ? `${e.src} -> ${e.dst} ${e.proto} type ${e.dport >> 8} code ${e.dport & 0xff}` : `${host(e.src, e.sport)} -> ${host(e.dst, e.dport)} ${e.proto}`;
  return `${e.time.replace('T', ' ').replace('Z', '')} ${e.source.padEnd(3)} ${e.verdict.padEnd(12)} ${e.rule} ${e.iface} ${flow}${e.sampleRate > 1 ? ` (1 of ${e.sampleRate})` : ''}`;
}

export async function runLog(server: string, token: string | undefined, o: LogOptions, write: (line: string) => void, signal?: AbortSignal): Promise<void> {
  const q = new URLSearchParams();
  if (o.rule) q.set('rule', o.rule);
  if (o.src) q.set('src', o.src);
  if (o.iface) q.set('iface', o.iface);
  if (o.source) q.set('source', o.source);
  if (o.limit !== undefined) q.set('limit', String(o.limit));
  if (o.follow) q.set('follow', '1');
  const url = new URL(`/api/v1/events?${q}`, server);
  let res: Response;
  try {
    res = await fetch(url, { headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), accept: o.follow ? 'text/event-stream' : 'application/json' }, ...(signal ? { signal } : {}) });
  } catch (e) {
    if (signal?.aborted) return;
    const cause = (e as { cause?: { code?: string } }).cause?.code;
    throw new Error(`cannot reach the Patronus server at ${server} (${cause ?? (e as Error).message}); is \`patronus serve\` running?`);
  }
  if (!res.ok) {
    const text = await res.text();
    let json: unknown = {};
    try {
      json = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    throw new RemoteError(res.status, json as never);
  }
  const show = (e: LogEvent) => write(o.json ? JSON.stringify(e) : eventLine(e));
  if (!o.follow) {
    const body = (await res.json()) as { events: LogEvent[] };
    if (!body.events.length && !o.json) write('no events (fast-path drops log with fastpath.log.drops or a rule\'s log: true; nftables rules with log)');
    for (const e of body.events) show(e);
    return;
  }
  // text/event-stream: blocks separated by a blank line; data: lines carry the JSON
  const decoder = new TextDecoder();
  let buf = '';
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        let event = 'message';
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
        }
        if (!data.length) continue;
        const payload = JSON.parse(data.join('\n'));
        if (event === 'dropped') {
          if (!o.json) process.stderr.write(`patronus log: the server dropped ${payload.dropped} events this client did not read fast enough\n`);
          continue;
        }
        show(payload as LogEvent);
      }
    }
  } catch (e) {
    if (signal?.aborted) return;
    throw e;
  }
}
