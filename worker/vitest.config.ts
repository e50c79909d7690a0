import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// The contract's example events, read here (Node) and handed to the tests (workerd) as a binding.
function readVectors(kind: "valid" | "invalid"): Record<string, string> {
  const dir = path.join(import.meta.dirname, "..", "contract", "vectors", kind);
  return Object.fromEntries(
    readdirSync(dir)
      .filter((name) => name.endsWith(".json"))
      .sort()
      .map((name) => [name.replace(/\.json$/, ""), readFileSync(path.join(dir, name), "utf8")]),
  );
}

export default defineConfig(async () => {
  const migrations = await readD1Migrations(path.join(import.meta.dirname, "migrations"));
  return {
    plugins: [
      cloudflareTest({
        wrangler: { configPath: "./wrangler.jsonc" },
        miniflare: {
          bindings: {
            TEST_MIGRATIONS: migrations,
            TEST_VECTORS: { valid: readVectors("valid"), invalid: readVectors("invalid") },
            STATS_TOKEN: "test-stats-token",
          },
        },
      }),
    ],
    test: {
      setupFiles: ["./test/apply-migrations.ts"],
    },
  };
});
