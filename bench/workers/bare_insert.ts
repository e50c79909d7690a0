// Benchmark baseline: the collector's single D1 insert with no checks at all.
type Env = { DB: D1Database };

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    try {
      const e = (await request.json()) as Record<string, string | number>;
      await env.DB.prepare(
        `INSERT INTO events (session_id, install_id, version, python, os, arch, adapter, timestamp, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (session_id) DO NOTHING`,
      )
        .bind(e.session_id, e.install_id, e.version, e.python, e.os, e.arch, e.adapter, e.timestamp, Math.floor(Date.now() / 1000))
        .run();
      return new Response('{"ok":true}', { status: 202 });
    } catch {
      return new Response('{"ok":false}', { status: 400 }); // a NOT NULL column refused a broken event
    }
  },
};
