/**
 * Long operations answered as a stream (`Accept: application/x-ndjson`):
 * one JSON object a line, `{"progress": ProgressEvent}` as the engine goes,
 * `{"heartbeat": ISO time}` every 10 s while a step runs, and last either
 * `{"report": ApplyReport}` or `{"error": ErrorBody}` (the body a plain
 * request would have had, with its statusCode). The status line is 200 as
 * soon as the work starts, so a client's header and idle timeouts (undici:
 * 300 s) never cut off an apply the server is still running.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ApplyReport, Engine, ProgressEvent } from '../apply/engine.js';
import { errorBodyFor } from './errors.js';
import { trace } from '../system/trace.js';

export const NDJSON = 'application/x-ndjson';

export function wantsStream(req: FastifyRequest): boolean {
  return (req.headers.accept ?? '').split(',').some((t) => t.trim().split(';')[0] === NDJSON);
}

export function streamApply(reply: FastifyReply, engine: Engine, run: () => Promise<ApplyReport>, heartbeatMs = 10_000): FastifyReply {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { 'content-type': NDJSON, 'cache-control': 'no-store' });
  const line = (o: unknown) => res.write(`${JSON.stringify(o)}\n`);
  const onProgress = (e: ProgressEvent) => line({ progress: e });
  engine.on('progress', onProgress);
  const beat = setInterval(() => line({ heartbeat: new Date().toISOString() }), heartbeatMs);
  run()
    .then(
      (report) => (trace('server: report written'), line({ report })),
      (e: Error) => line({ error: errorBodyFor(e) }),
    )
    .finally(() => {
      clearInterval(beat);
      engine.off('progress', onProgress);
      res.end();
    });
  return reply;
}
