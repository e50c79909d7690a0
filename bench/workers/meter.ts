// Benchmark meter: runs the collector's own statements and reports D1's row counts for them.
import type { TelemetryEvent } from "../../worker/src/event";
import { insertStatement, statsStatements } from "../../worker/src/queries";

type Env = { DB: D1Database };

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const now = Math.floor(Date.now() / 1000);
    if (new URL(request.url).pathname === "/insert") {
      const event = (await request.json()) as TelemetryEvent;
      const result = await insertStatement(env.DB, event, now).run();
      return Response.json({ rows_written: result.meta.rows_written, rows_read: result.meta.rows_read });
    }
    const results = await env.DB.batch(statsStatements(env.DB, now));
    return Response.json({
      rows_read: results.reduce((sum, r) => sum + r.meta.rows_read, 0),
      statements: results.length,
    });
  },
};
