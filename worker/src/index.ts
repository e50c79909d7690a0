// The AgentSonar telemetry collector. Routes validate, then call one query function each.
import { isAuthorized } from "./auth";
import { MAX_BODY_BYTES, validateEvent } from "./event";
import { errorResponse, isJsonContentType, json, methodNotAllowed, readLimited } from "./http";
import {
  MAX_DAILY_DAYS,
  getDailySessions,
  getStats,
  insertEvent,
  parseRetentionDays,
  rollUpAndDelete,
} from "./queries";

type Route = { methods: string[]; handle: (request: Request, env: Env, url: URL) => Promise<Response> };

const ROUTES: Record<string, Route> = {
  "/v1/events": { methods: ["POST"], handle: postEvent },
  // Every released SDK (agentsonar 0.4.0-0.7.0) posts here.
  "/event": { methods: ["POST"], handle: postEvent },
  "/v1/stats": { methods: ["GET"], handle: withStatsAuth(getStatsRoute) },
  "/v1/stats/daily": { methods: ["GET"], handle: withStatsAuth(getDailyRoute) },
  "/healthz": { methods: ["GET"], handle: async () => json({ ok: true }) },
};

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

async function postEvent(request: Request, env: Env): Promise<Response> {
  if (!isJsonContentType(request.headers.get("Content-Type"))) {
    return errorResponse(415, "unsupported_media_type", "Content-Type must be application/json");
  }
  const body = await readLimited(request, MAX_BODY_BYTES);
  if (body === null) {
    return errorResponse(413, "payload_too_large", `the body must be at most ${MAX_BODY_BYTES} bytes`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(body));
  } catch {
    return errorResponse(400, "invalid_json", "the body is not valid UTF-8 JSON");
  }
  const validation = validateEvent(parsed);
  if (!validation.ok) {
    return errorResponse(400, "invalid_event", validation.message);
  }
  await insertEvent(env.DB, validation.event, nowSeconds());
  return json({ ok: true }, 202);
}

function withStatsAuth(handle: Route["handle"]): Route["handle"] {
  return async (request, env, url) => {
    if (!(await isAuthorized(request.headers.get("Authorization"), env.STATS_TOKEN))) {
      return errorResponse(401, "unauthorized", "a valid Authorization: Bearer token is required", {
        "WWW-Authenticate": 'Bearer realm="agentsonar-telemetry"',
      });
    }
    return handle(request, env, url);
  };
}

async function getStatsRoute(_request: Request, env: Env): Promise<Response> {
  return json(await getStats(env.DB, nowSeconds()));
}

async function getDailyRoute(_request: Request, env: Env, url: URL): Promise<Response> {
  const param = url.searchParams.get("days");
  let days = 90;
  if (param !== null) {
    if (!/^\d{1,3}$/.test(param) || Number(param) < 1 || Number(param) > MAX_DAILY_DAYS) {
      return errorResponse(400, "invalid_parameter", `days must be an integer from 1 to ${MAX_DAILY_DAYS}`);
    }
    days = Number(param);
  }
  return json(await getDailySessions(env.DB, nowSeconds(), days));
}

async function runRetention(env: Env, now: number): Promise<void> {
  const retentionDays = parseRetentionDays(env.RETENTION_DAYS);
  if (retentionDays === null) {
    console.error("configuration error: RETENTION_DAYS must be an integer of at least 31; nothing was changed");
    return;
  }
  const { rolledUp, deleted } = await rollUpAndDelete(env.DB, now, retentionDays);
  console.log(`retention: ${deleted} raw events older than ${retentionDays} days rolled into ${rolledUp} daily rows`);
}

export default {
  async fetch(request, env): Promise<Response> {
    try {
      const url = new URL(request.url);
      const route = ROUTES[url.pathname];
      if (route === undefined) {
        return errorResponse(404, "not_found", "no such endpoint");
      }
      if (!route.methods.includes(request.method)) {
        return methodNotAllowed(route.methods);
      }
      return await route.handle(request, env, url);
    } catch (error) {
      // The error's kind only: never the request, its body or its headers.
      console.error("internal error:", error instanceof Error ? error.name : typeof error);
      return errorResponse(500, "internal_error", "internal error");
    }
  },

  async scheduled(controller, env, ctx): Promise<void> {
    ctx.waitUntil(runRetention(env, Math.floor(controller.scheduledTime / 1000)));
  },
} satisfies ExportedHandler<Env>;
