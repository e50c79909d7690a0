// Test-only bindings, defined in vitest.config.ts.
declare namespace Cloudflare {
  interface Env {
    TEST_MIGRATIONS: import("cloudflare:test").D1Migration[];
    TEST_VECTORS: { valid: Record<string, string>; invalid: Record<string, string> };
  }
}
