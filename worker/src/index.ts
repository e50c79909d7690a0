// The AgentSonar telemetry collector. Routes validate, then call one query function each.
import { isAuthorized } from "./auth";
import { isoSeconds } from "./calendar";
import { type StatsAnswer, cohortsCsv, dailyCsv, publicCsv, statsCsv, weeklyCsv } from "./csv";
import { MAX_BODY_BYTES, validateEvent } from "./event";
import { csv, errorResponse, isJsonContentType, json, methodNotAllowed, readLimited, withSecurityHeaders } from "./http";
import { icon, page, script, stylesheet } from "./dashboard/page";
import { runJob } from "./job";
import { RATE_LIMIT_PERIOD_SECONDS, networkKey, overLimit } from "./limits";
import { type PublicWeek, publicWeek } from "./public";
import {
  type Cohort,
  type DailySessions,
  MAX_COHORT_WEEKS,
  MAX_DAILY_DAYS,
  MAX_WEEKLY_WEEKS,
  getCohorts,
  getDailySessions,
  getStats,
  getWeekly,
  insertEvent,
  parseRetentionDays,
  type Week,
} from "./queries";

type Route = {
  methods: string[];
  handle: (request: Request, env: Env, url: URL, ctx: ExecutionContext) => Promise<Response>;
};


function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

function tooManyRequests(what: string): Response {
  return errorResponse(429, "rate_limited", `too many events from this ${what}; retry later`, {
    "Retry-After": String(RATE_LIMIT_PERIOD_SECONDS),
  });
}

async function postEvent(request: Request, env: Env): Promise<Response> {
  // Per network first, before the body is read: a flood costs neither D1 nor parsing.
  const network = networkKey(request.headers.get("CF-Connecting-IP"));
  if (network !== null && (await overLimit(env.NETWORK_RATE_LIMIT, network))) return tooManyRequests("network");
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
  if (await overLimit(env.INSTALL_RATE_LIMIT, validation.event.install_id)) return tooManyRequests("install");
  await insertEvent(env.DB, validation.event, nowSeconds());
  return json({ ok: true }, 202);
}

function withStatsAuth(handle: Route["handle"]): Route["handle"] {
  return async (request, env, url, ctx) => {
    if (!(await isAuthorized(request.headers.get("Authorization"), env.STATS_TOKEN))) {
      return errorResponse(401, "unauthorized", "a valid Authorization: Bearer token is required", {
        "WWW-Authenticate": 'Bearer realm="agentsonar-telemetry"',
      });
    }
    return handle(request, env, url, ctx);
  };
}

type Parsed<T> = { ok: true; value: T } | { ok: false; response: Response };

/** `?name=N`: an integer from 1 to `max`, or `fallback` when absent. */
function integerParam(url: URL, name: string, fallback: number, max: number): Parsed<number> {
  const param = url.searchParams.get(name);
  if (param === null) return { ok: true, value: fallback };
  if (!/^[0-9]{1,6}$/.test(param) || Number(param) < 1 || Number(param) > max) {
    return {
      ok: false,
      response: errorResponse(400, "invalid_parameter", `${name} must be an integer from 1 to ${max}`),
    };
  }
  return { ok: true, value: Number(param) };
}

/** `?format=json` (the default) or `?format=csv`. */
function formatParam(url: URL): Parsed<"json" | "csv"> {
  const format = url.searchParams.get("format") ?? "json";
  if (format === "json" || format === "csv") return { ok: true, value: format };
  return { ok: false, response: errorResponse(400, "invalid_parameter", "format must be json or csv") };
}

/** What the answer cost in D1 rows read, for whoever watches the bill (and bench/reporting.py). */
function metered(response: Response, rowsRead: number): Response {
  response.headers.set("X-D1-Rows-Read", String(rowsRead));
  return response;
}

function asOfString(asOf: number | null): string | null {
  return asOf === null ? null : isoSeconds(asOf);
}

type Metered = { rows_read: number };

/**
 * A reporting GET: an optional `?name=N` (1 to `max`), `?format=json|csv`, one query function,
 * the answer as JSON or CSV, and what it cost in D1 rows.
 */
function reportRoute<T extends Metered>(report: {
  param?: { name: string; fallback: number; max: number };
  read: (db: D1Database, n: number) => Promise<T>;
  answer: (result: T) => Record<string, unknown>;
  csv: (answer: ReturnType<typeof report.answer>) => string;
  filename: string;
  headers?: Record<string, string>;
}): Route["handle"] {
  return async (_request, env, url) => {
    let n = 0;
    if (report.param !== undefined) {
      const parsed = integerParam(url, report.param.name, report.param.fallback, report.param.max);
      if (!parsed.ok) return parsed.response;
      n = parsed.value;
    }
    const format = formatParam(url);
    if (!format.ok) return format.response;
    const result = await report.read(env.DB, n);
    const answer = report.answer(result);
    const response =
      format.value === "csv" ? csv(report.csv(answer), report.filename) : json(answer, 200, report.headers);
    return metered(response, result.rows_read);
  };
}

const getStatsRoute = reportRoute({
  read: (db) => getStats(db),
  answer: ({ as_of, figures }) => ({ generated_at: isoSeconds(nowSeconds()), as_of: asOfString(as_of), ...figures }),
  csv: (answer) => statsCsv(answer as StatsAnswer),
  filename: "stats.csv",
});

const getDailyRoute = reportRoute({
  param: { name: "days", fallback: 90, max: MAX_DAILY_DAYS },
  read: getDailySessions,
  answer: ({ as_of, days }) => ({ as_of: asOfString(as_of), days }),
  csv: (answer) => dailyCsv(answer.days as DailySessions["days"]),
  filename: "daily.csv",
});

const getWeeklyRoute = reportRoute({
  param: { name: "weeks", fallback: 26, max: MAX_WEEKLY_WEEKS },
  read: getWeekly,
  answer: ({ as_of, weeks }) => ({ as_of: asOfString(as_of), weeks }),
  csv: (answer) => weeklyCsv(answer.weeks as Week[]),
  filename: "weekly.csv",
});

const getCohortsRoute = reportRoute({
  param: { name: "weeks", fallback: 12, max: MAX_COHORT_WEEKS },
  read: getCohorts,
  answer: ({ as_of, cohorts }) => ({ as_of: asOfString(as_of), cohorts }),
  csv: (answer) => cohortsCsv(answer.cohorts as Cohort[]),
  filename: "cohorts.csv",
});

/** The public page and its JSON exist only when PUBLIC_DASHBOARD is "on"; otherwise they are unknown paths. */
function whenPublic(handle: Route["handle"]): Route["handle"] {
  return async (request, env, url, ctx) => {
    if (env.PUBLIC_DASHBOARD?.trim().toLowerCase() !== "on") return errorResponse(404, "not_found", "no such endpoint");
    return handle(request, env, url, ctx);
  };
}

const PUBLIC_CACHE_SECONDS = 300;
const CACHE_KEY_PARAMS = ["weeks", "format"];

/**
 * Anonymous readers are served from the Cache API for 5 minutes: they cost no D1 reads while
 * cached. The key keeps only the parameters the route reads, so `?x=random` cannot bust it.
 */
function cachedForAnyone(handle: Route["handle"]): Route["handle"] {
  return async (request, env, url, ctx) => {
    const key = new URL(url.origin + url.pathname);
    for (const name of CACHE_KEY_PARAMS) {
      const value = url.searchParams.get(name);
      if (value !== null) key.searchParams.set(name, value);
    }
    const cache = caches.default;
    const hit = await cache.match(key.toString());
    if (hit !== undefined) {
      const response = new Response(hit.body, hit);
      response.headers.set("X-D1-Rows-Read", "0");
      return response;
    }
    const response = await handle(request, env, url, ctx);
    if (response.status === 200) {
      response.headers.set("Cache-Control", `public, max-age=${PUBLIC_CACHE_SECONDS}`);
      ctx.waitUntil(cache.put(key.toString(), response.clone()));
    }
    return response;
  };
}

const getPublicRoute = reportRoute({
  param: { name: "weeks", fallback: 26, max: MAX_COHORT_WEEKS },
  read: getWeekly,
  answer: ({ as_of, weeks }) => ({ as_of: asOfString(as_of), weeks: weeks.map(publicWeek) }),
  csv: (answer) => publicCsv(answer.weeks as PublicWeek[]),
  filename: "public.csv",
});

/** The hourly job; a RETENTION_DAYS that is not an integer of at least 31 changes nothing. */
export async function scheduledJob(env: Env, now: number): Promise<void> {
  const retentionDays = parseRetentionDays(env.RETENTION_DAYS);
  if (retentionDays === null) {
    console.error("configuration error: RETENTION_DAYS must be an integer of at least 31; nothing was changed");
    return;
  }
  try {
    const report = await runJob(env.DB, now, retentionDays);
    console.log(`job: ${JSON.stringify(report)}`);
  } catch (error) {
    // One line, the error's kind and D1's message (never data): the next run repairs.
    const kind = error instanceof Error ? error.name : typeof error;
    const message = error instanceof Error ? error.message.slice(0, 200) : "";
    console.error(`job: ${JSON.stringify({ ran: false, error: kind, message })}`);
  }
}

const ROUTES: Record<string, Route> = {
  "/v1/events": { methods: ["POST"], handle: postEvent },
  // Every released SDK (agentsonar 0.4.0-0.7.0) posts here.
  "/event": { methods: ["POST"], handle: postEvent },
  "/v1/stats": { methods: ["GET"], handle: withStatsAuth(getStatsRoute) },
  "/v1/stats/daily": { methods: ["GET"], handle: withStatsAuth(getDailyRoute) },
  "/v1/stats/weekly": { methods: ["GET"], handle: withStatsAuth(getWeeklyRoute) },
  "/v1/stats/cohorts": { methods: ["GET"], handle: withStatsAuth(getCohortsRoute) },
  "/v1/public": { methods: ["GET"], handle: whenPublic(cachedForAnyone(getPublicRoute)) },
  "/dashboard": { methods: ["GET"], handle: async () => page("private") },
  "/dashboard.js": { methods: ["GET"], handle: async () => script() },
  "/dashboard.css": { methods: ["GET"], handle: async () => stylesheet() },
  "/favicon.svg": { methods: ["GET"], handle: async () => icon() },
  "/public": { methods: ["GET"], handle: whenPublic(cachedForAnyone(async () => page("public"))) },
  "/healthz": { methods: ["GET"], handle: async () => json({ ok: true }) },
};

async function route(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
  try {
    const url = new URL(request.url);
    const route = Object.hasOwn(ROUTES, url.pathname) ? ROUTES[url.pathname] : undefined;
    if (route === undefined) {
      return errorResponse(404, "not_found", "no such endpoint");
    }
    if (!route.methods.includes(request.method)) {
      return methodNotAllowed(route.methods);
    }
    return await route.handle(request, env, url, ctx);
  } catch (error) {
    // The error's kind only: never the request, its body or its headers.
    console.error("internal error:", error instanceof Error ? error.name : typeof error);
    return errorResponse(500, "internal_error", "internal error");
  }
}

export default {
  async fetch(request, env, ctx): Promise<Response> {
    return withSecurityHeaders(await route(request, env, ctx));
  },

  async scheduled(controller, env, ctx): Promise<void> {
    ctx.waitUntil(scheduledJob(env, Math.floor(controller.scheduledTime / 1000)));
  },
} satisfies ExportedHandler<Env>;
