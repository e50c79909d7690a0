// Benchmark meter: runs the collector's own insert statement and reports D1's row counts for it.
import type { TelemetryEvent } from "../../worker/src/event";
import { insertStatement } from "../../worker/src/queries";

type Env = { DB: D1Database };

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const event = (await request.json()) as TelemetryEvent;
    const result = await insertStatement(env.DB, event, Math.floor(Date.now() / 1000)).run();
    return Response.json({ rows_written: result.meta.rows_written, rows_read: result.meta.rows_read });
  },
};
