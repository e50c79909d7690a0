import { env, exports } from "cloudflare:workers";
import { expect } from "vitest";
import type { TelemetryEvent } from "../src/event";

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

export function post(body: string | Uint8Array | ReadableStream | null, headers: Record<string, string> = {}) {
  return exports.default.fetch(`${BASE}/v1/events`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...headers },
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
export async function snapshot(): Promise<string> {
  const events = await env.DB.prepare("SELECT * FROM events ORDER BY session_id").all();
  const daily = await env.DB.prepare("SELECT * FROM daily_counts ORDER BY day, version, python, os, arch, adapter").all();
  return JSON.stringify([events.results, daily.results]);
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
  return worker.fetch(request as unknown as Request<unknown, IncomingRequestCfProperties>, modified);
}
