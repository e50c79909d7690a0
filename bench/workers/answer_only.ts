// Benchmark context: a Worker that only answers 202, the stack's ceiling with no database.
export default {
  async fetch(): Promise<Response> {
    return new Response('{"ok":true}', { status: 202 });
  },
};
