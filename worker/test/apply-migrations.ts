// Every test file starts from the real migrations, applied to real (local) D1.
import { applyD1Migrations } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach } from "vitest";

await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);

export const TABLES = [
  "events",
  "daily_counts",
  "job_state",
  "installs",
  "sessions_hourly",
  "sessions_daily",
  "weekly",
  "weekly_by",
  "cohorts",
  "stats_snapshot",
  "job_lease",
  "job_fence",
] as const;

beforeEach(async () => {
  await env.DB.batch(TABLES.map((table) => env.DB.prepare(`DELETE FROM ${table}`)));
});
