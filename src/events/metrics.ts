/**
 * Counters of the event pipeline in userspace (the kernel side, per rule,
 * comes through the fast path's metrics: patronus_log_events_*):
 *   patronus_events_published_total {source}
 *   patronus_events_dropped_total {source, stage}  stage reader: lost between the kernel and the
 *     event log (the reader's queue towards JS, a netlink overflow); follower: not sent to a slow client
 *   patronus_events_followers  (open ?follow=1 streams)
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { EVENT_SOURCES, type EventHub } from './hub.js';

export function registerEventMetrics(registry: Registry, hub: EventHub): void {
  if (registry.getSingleMetric('patronus_events_published_total')) return;
  new Counter({
    name: 'patronus_events_published_total',
    help: 'Firewall events that reached the event log, by source (xdp, nft)',
    labelNames: ['source'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of EVENT_SOURCES) this.inc({ source: s }, hub.counters.published[s]);
    },
  });
  new Counter({
    name: 'patronus_events_dropped_total',
    help: 'Firewall events lost in userspace: stage reader (before the event log), follower (not sent to a client that could not keep up)',
    labelNames: ['source', 'stage'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of EVENT_SOURCES) this.inc({ source: s, stage: 'reader' }, hub.counters.readerDropped[s]);
      this.inc({ source: 'any', stage: 'follower' }, hub.counters.followerDropped);
    },
  });
  new Gauge({
    name: 'patronus_events_followers',
    help: 'Open event streams (GET /api/v1/events?follow=1)',
    registers: [registry],
    collect() {
      this.set(hub.followerCount);
    },
  });
}
