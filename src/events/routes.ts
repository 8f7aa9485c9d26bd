/**
 * GET /api/v1/events: recent firewall events (JSON), or with ?follow=1 a
 * server-sent event stream (text/event-stream): one `data:` line of JSON per
 * event with its id, a comment line as heartbeat, and after a gap an
 * `event: dropped` message saying how many events this client missed.
 *
 * Backpressure: an event is written only while the socket takes it
 * (res.write returned true, or 'drain' came since). A client that cannot
 * keep up loses events — counted per client and in
 * patronus_events_dropped_total{stage="follower"} — so a slow reader costs
 * at most one socket buffer of memory, never a queue.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { eventFilterSchema, eventMatcher, firewallEventSchema, type EventHub, type FirewallEvent } from './hub.js';

const eventsQuery = eventFilterSchema
  .extend({
    limit: z.coerce.number().int().min(0).max(10_000).optional().describe('most recent events to return (default 100; with follow: how many recent ones to send first, default 0)'),
    after: z.coerce.number().int().min(0).optional().describe('only events with a larger id (resume; SSE clients may send Last-Event-ID instead)'),
    follow: z
      .enum(['1', '0', 'true', 'false'])
      .optional()
      .describe('1: keep the connection open and stream events as server-sent events (text/event-stream)'),
    heartbeat: z.coerce.number().min(0.1).max(300).default(15).describe('follow: seconds between heartbeat comments'),
  })
  .strict();

export function registerEventRoutes(app: FastifyInstance, hub: EventHub, prefix: string): void {
  // open streams end when the server closes (app.close() would otherwise wait for them)
  const streams = new Set<{ end(): void }>();
  app.addHook('preClose', async () => {
    for (const s of streams) s.end();
  });
  app.withTypeProvider<ZodTypeProvider>().get(
    `${prefix}/events`,
    {
      schema: {
        summary: 'Firewall events: fast-path drops (sampled per rule in BPF) and nftables log/reject (NFLOG); ?follow=1 streams them as server-sent events',
        querystring: eventsQuery,
        response: { 200: z.object({ events: z.array(firewallEventSchema), lastId: z.number().int() }) },
      },
      // the roles helper's per-route role: reading the log is a viewer's right (no secrets in events)
      config: { role: 'viewer' },
    },
    async (req, reply) => {
      const q = req.query;
      const filter = { ...(q.rule !== undefined ? { rule: q.rule } : {}), ...(q.src !== undefined ? { src: q.src } : {}), ...(q.iface !== undefined ? { iface: q.iface } : {}), ...(q.source !== undefined ? { source: q.source } : {}) };
      const lastEventId = Number(req.headers['last-event-id']);
      const after = q.after ?? (Number.isInteger(lastEventId) && lastEventId > 0 ? lastEventId : 0);
      if (q.follow !== '1' && q.follow !== 'true') return { events: hub.recent(filter, q.limit ?? 100, after), lastId: hub.lastId };

      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      const match = eventMatcher(filter);
      let writable = true;
      let missed = 0;
      const send = (text: string) => {
        writable = res.write(text);
      };
      const deliver = (e: FirewallEvent) => {
        if (!match(e)) return;
        if (!writable) {
          missed++;
          hub.counters.followerDropped++;
          return;
        }
        if (missed) {
          send(`event: dropped\ndata: ${JSON.stringify({ dropped: missed })}\n\n`);
          missed = 0;
        }
        send(`id: ${e.id}\ndata: ${JSON.stringify(e)}\n\n`);
      };
      res.on('drain', () => {
        writable = true;
      });
      send(`retry: 2000\n: patronus events, last id ${hub.lastId}\n\n`);
      // the backlog (at most 10 000 events of the ring) goes out as one write: it is bounded, and
      // dropping parts of what the client asked for explicitly would be wrong
      const backlog = q.limit ?? (after ? 10_000 : 0);
      if (backlog) {
        const text = hub.recent(filter, backlog, after).map((e) => `id: ${e.id}\ndata: ${JSON.stringify(e)}\n\n`).join('');
        if (text) send(text);
      }
      const unfollow = hub.follow(deliver);
      const beat = setInterval(() => {
        if (writable) send(`: heartbeat ${new Date().toISOString()}\n\n`);
      }, q.heartbeat * 1000);
      const done = () => {
        clearInterval(beat);
        unfollow();
      };
      streams.add(res);
      res.on('close', () => {
        done();
        streams.delete(res);
      });
      res.on('error', done);
    },
  );
}
