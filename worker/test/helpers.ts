import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { expect } from "vitest";
import type { TelemetryEvent } from "../src/event";
import { HOUR } from "../src/calendar";
import { SAFETY_MARGIN, runJob } from "../src/job";
import { insertEvent } from "../src/queries";
import { TABLES } from "./apply-migrations";

export const BASE = "http://collector.test";
export const TOKEN = "test-stats-token";

let counter = 0;

/** A random lowercase UUID4. */
export function uuid4(): string {
  return crypto.randomUUID();
}

export function makeEvent(overrides: Partial<TelemetryEvent> = {}): TelemetryEvent {
  counter += 1;
  return {
    install_id: uuid4(),
    session_id: uuid4(),
    version: "0.4.0",
    python: "3.12",
    os: "linux",
    arch: "x86_64",
    adapter: "custom_python",
    timestamp: 1_745_891_234.5 + counter,
    ...overrides,
  };
}

/** A random address of TEST-NET-3 (RFC 5737): each call its own network, under any limit. */
export function someNetwork(): string {
  const byte = () => Math.floor(Math.random() * 256);
  return `203.0.${byte()}.${byte()}`;
}

export function post(body: string | Uint8Array | ReadableStream | null, headers: Record<string, string> = {}) {
  return exports.default.fetch(`${BASE}/v1/events`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "CF-Connecting-IP": someNetwork(), ...headers },
    body,
  });
}

export function postEvent(event: unknown) {
  return post(JSON.stringify(event));
}

export function get(path: string, headers: Record<string, string> = { Authorization: `Bearer ${TOKEN}` }) {
  return exports.default.fetch(`${BASE}${path}`, { headers });
}

export async function allRows(): Promise<Record<string, unknown>[]> {
  const { results } = await env.DB.prepare("SELECT * FROM events ORDER BY session_id").all();
  return results;
}

export async function rowCount(table = "events"): Promise<number> {
  const row = await env.DB.prepare(`SELECT COUNT(*) AS n FROM ${table}`).first<{ n: number }>();
  return row?.n ?? 0;
}

/** Whole-database fingerprint: what "left the database unchanged" means. */
export async function snapshot(tables: readonly string[] = TABLES): Promise<string> {
  const contents = [];
  for (const table of tables) {
    // Every table, ordered by all its columns: the same rows give the same text.
    const columns = await env.DB.prepare(`SELECT COUNT(*) AS n FROM pragma_table_info('${table}')`).first<{ n: number }>();
    const order = Array.from({ length: columns?.n ?? 1 }, (_, i) => i + 1).join(", ");
    const { results } = await env.DB.prepare(`SELECT * FROM ${table} ORDER BY ${order}`).all();
    contents.push([table, results]);
  }
  return JSON.stringify(contents);
}

export async function expectError(response: Response, status: number, code: string): Promise<string> {
  expect(response.status).toBe(status);
  expect(response.headers.get("Content-Type")).toBe("application/json; charset=utf-8");
  const body = (await response.json()) as { ok: boolean; error: { code: string; message: string } };
  expect(Object.keys(body).sort()).toEqual(["error", "ok"]);
  expect(body.ok).toBe(false);
  expect(Object.keys(body.error).sort()).toEqual(["code", "message"]);
  expect(body.error.code).toBe(code);
  expect(typeof body.error.message).toBe("string");
  return body.error.message;
}

/** Call the Worker's fetch handler directly, with a modified env (no token, no database ...). */
export async function fetchWithEnv(request: Request, modified: Env): Promise<Response> {
  const { default: worker } = await import("../src/index");
  const ctx = createExecutionContext();
  const response = await worker.fetch(request as unknown as Request<unknown, IncomingRequestCfProperties>, modified, ctx);
  await waitOnExecutionContext(ctx);
  return response;
}

/** The hourly job, run as if an hour had passed: everything posted so far is in the aggregates. */
export async function runJobNow(): Promise<void> {
  const now = Math.floor(Date.now() / 1000) + HOUR + SAFETY_MARGIN;
  for (let i = 0; i < 20; i++) {
    if ((await runJob(env.DB, now, 90)).caught_up) return;
  }
  throw new Error("the job did not catch up");
}

export async function statsJson(): Promise<{ as_of: string | null } & Record<string, unknown>> {
  return (await (await get("/v1/stats")).json()) as { as_of: string | null } & Record<string, unknown>;
}

// -- hand-built data sets -----------------------------------------------------------------

// 2026-11-25T14:00:00Z
export const NOW = Date.UTC(2026, 10, 25, 14) / 1000;
/** The tables the job writes: clearing them makes the job rebuild from the raw events. */
export const AGGREGATES = ["job_state", "installs", "sessions_hourly", "sessions_daily", "weekly", "weekly_by", "cohorts", "stats_snapshot"];

/** Epoch seconds of a UTC day and hour: at("2026-12-08", 10). */
export function at(day: string, hour = 12, minute = 0): number {
  return Date.parse(`${day}T00:00:00Z`) / 1000 + hour * HOUR + minute * 60;
}

export async function seed(rows: { install: string; ago: number; [field: string]: string | number }[]): Promise<void> {
  for (const { install, ago, ...fields } of rows) {
    await insertEvent(env.DB, makeEvent({ install_id: install, ...fields }), NOW - ago);
  }
}

/** Run the job as the cron would at `now`, as many times as it takes to catch up. */
export async function jobUntilCaughtUp(now: number, retentionDays = 90): Promise<void> {
  for (let i = 0; i < 50; i++) {
    if ((await runJob(env.DB, now, retentionDays)).caught_up) return;
  }
  throw new Error("the job did not catch up in 50 runs");
}

/** The job's time for an `as_of` of `asOf`: the cron a few minutes into the next hour. */
export function jobTimeFor(asOf: number): number {
  return asOf + SAFETY_MARGIN + 120;
}
