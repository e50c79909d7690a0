// The HTTP API, through the Worker's own fetch handler, against real D1.
import { env, exports } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import normalization from "../../contract/normalization.json";
import { EVENT_FIELDS } from "../src/event";
import {
  BASE,
  TOKEN,
  allRows,
  expectError,
  fetchWithEnv,
  get,
  makeEvent,
  post,
  postEvent,
  rowCount,
  snapshot,
  runJobNow,
  statsJson,
} from "./helpers";

const STATS_PATHS = ["/v1/stats", "/v1/stats/daily", "/v1/stats/weekly", "/v1/stats/cohorts"];

describe("POST /v1/events: the contract vectors", () => {
  it("has vectors to run", () => {
    expect(Object.keys(env.TEST_VECTORS.valid).length).toBeGreaterThanOrEqual(10);
    expect(Object.keys(env.TEST_VECTORS.invalid).length).toBeGreaterThanOrEqual(25);
  });

  for (const [name, text] of Object.entries(env.TEST_VECTORS.valid)) {
    it(`accepts valid/${name} and stores it`, async () => {
      const response = await post(text);
      expect(response.status).toBe(202);
      expect(await response.json()).toEqual({ ok: true });
      const event = JSON.parse(text) as Record<string, unknown>;
      const [row] = await allRows();
      const { received_at, ...fields } = row as Record<string, unknown>;
      expect(fields).toEqual(event);
      expect(received_at).toBeTypeOf("number");
    });
  }

  for (const [name, text] of Object.entries(env.TEST_VECTORS.invalid)) {
    it(`rejects invalid/${name} with 400 and stores nothing`, async () => {
      const before = await snapshot();
      const message = await expectError(await post(text), 400, "invalid_event");
      expect(message.length).toBeGreaterThan(0);
      expect(await snapshot()).toBe(before);
    });
  }
});

describe("POST /v1/events: messages name the field and the rule", () => {
  it.each([
    [{ version: "0.4.0\n" }, "version", "pattern"],
    [{ adapter: "CrewAI" }, "adapter", "pattern"],
    [{ timestamp: "1745891234" }, "timestamp", "type"],
    [{ timestamp: 1 }, "timestamp", "exclusiveMinimum"],
    [{ hostname: "box" }, "hostname", "additionalProperties"],
  ])("%j", async (change, field, rule) => {
    const message = await expectError(await postEvent({ ...makeEvent(), ...change }), 400, "invalid_event");
    expect(message).toContain(field);
    expect(message).toContain(rule);
  });

  it("names a missing field", async () => {
    const { os: _os, ...event } = makeEvent();
    expect(await expectError(await postEvent(event), 400, "invalid_event")).toBe("os: required");
  });

  it("says what a non-object is", async () => {
    expect(await expectError(await post("[1]"), 400, "invalid_event")).toBe("event: must be a JSON object (type)");
  });

  it("quotes the rule", async () => {
    const message = await expectError(await postEvent({ ...makeEvent(), timestamp: 1 }), 400, "invalid_event");
    expect(message).toBe("timestamp: must satisfy exclusiveMinimum 1500000000");
  });
});

describe("POST /v1/events: deduplication", () => {
  it("stores a repeated session id once and answers 202 each time", async () => {
    const event = makeEvent();
    for (let i = 0; i < 3; i++) {
      const response = await postEvent(event);
      expect(response.status).toBe(202);
      expect(await response.json()).toEqual({ ok: true });
    }
    expect(await rowCount()).toBe(1);
  });

  it("stores concurrent posts of one session id once", async () => {
    const event = makeEvent();
    const responses = await Promise.all(Array.from({ length: 20 }, () => postEvent(event)));
    expect(responses.map((r) => r.status)).toEqual(Array(20).fill(202));
    expect(await rowCount()).toBe(1);
  });

  it("keeps the first copy when a retry differs", async () => {
    const event = makeEvent();
    await postEvent(event);
    await postEvent({ ...event, version: "9.9.9" });
    expect((await allRows())[0]?.version).toBe("0.4.0");
  });
});

describe("POST /v1/events: what is stored", () => {
  it("has exactly the contract's fields and the receive time as columns", async () => {
    const { results } = await env.DB.prepare("SELECT name FROM pragma_table_info('events') ORDER BY cid").all<{
      name: string;
    }>();
    expect(results.map((r) => r.name).sort()).toEqual([...EVENT_FIELDS, "received_at"].sort());
  });

  it("stores nothing from the request but the event", async () => {
    const event = makeEvent();
    const before = Math.floor(Date.now() / 1000);
    await post(JSON.stringify(event), {
      "User-Agent": "agentsonar-telemetry/0.1.0",
      "CF-Connecting-IP": "203.0.113.7",
      "X-Forwarded-For": "203.0.113.7",
    });
    const rows = await allRows();
    expect(rows).toHaveLength(1);
    const { received_at, ...fields } = rows[0] as Record<string, unknown>;
    expect(fields).toEqual(event);
    expect(received_at as number).toBeGreaterThanOrEqual(before);
    expect(received_at as number).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
    const everything = JSON.stringify(await env.DB.prepare("SELECT * FROM events").all());
    expect(everything).not.toContain("203.0.113.7");
    expect(everything).not.toContain("agentsonar-telemetry/");
  });
});

describe("POST /v1/events: status codes and the error shape", () => {
  it("404 for an unknown path, whatever the method", async () => {
    for (const method of ["GET", "POST", "DELETE"]) {
      await expectError(await exports.default.fetch(`${BASE}/v1/nope`, { method }), 404, "not_found");
    }
    await expectError(await exports.default.fetch(`${BASE}/`), 404, "not_found");
  });

  it.each(["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])("405 with Allow for %s", async (method) => {
    const response = await exports.default.fetch(`${BASE}/v1/events`, { method });
    expect(response.headers.get("Allow")).toBe("POST");
    await expectError(response, 405, "method_not_allowed");
  });

  it("405 with Allow on the stats routes", async () => {
    for (const path of STATS_PATHS) {
      const response = await exports.default.fetch(`${BASE}${path}`, { method: "POST", body: "{}" });
      expect(response.headers.get("Allow")).toBe("GET");
      await expectError(response, 405, "method_not_allowed");
    }
  });

  it.each([
    ["missing", undefined],
    ["text/plain", "text/plain"],
    ["form", "application/x-www-form-urlencoded"],
    ["json with latin-1", "application/json; charset=latin1"],
    ["json-ish", "application/jsonx"],
    ["problem+json", "application/problem+json"],
  ])("415 for content type %s", async (_name, type) => {
    const before = await snapshot();
    const headers = new Headers(type === undefined ? {} : { "Content-Type": type });
    const response = await exports.default.fetch(`${BASE}/v1/events`, {
      method: "POST",
      headers,
      body: type === undefined ? new Blob([JSON.stringify(makeEvent())]).stream() : JSON.stringify(makeEvent()),
    });
    await expectError(response, 415, "unsupported_media_type");
    expect(await snapshot()).toBe(before);
  });

  it.each(["application/json; charset=utf-8", "Application/JSON;charset=UTF-8", 'application/json; charset="utf-8"'])(
    "accepts %s",
    async (type) => {
      expect((await post(JSON.stringify(makeEvent()), { "Content-Type": type })).status).toBe(202);
    },
  );

  it("415 is checked before 413", async () => {
    const response = await post("x".repeat(5000), { "Content-Type": "text/plain" });
    await expectError(response, 415, "unsupported_media_type");
  });

  it("413 for a declared length over 1 KiB", async () => {
    const body = JSON.stringify({ ...makeEvent(), pad: "x".repeat(1100) });
    await expectError(await post(body), 413, "payload_too_large");
    expect(await rowCount()).toBe(0);
  });

  it("413 for a chunked body over 1 KiB, with no declared length", async () => {
    const chunk = new TextEncoder().encode("x".repeat(400));
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent++ < 10) controller.enqueue(chunk);
        else controller.close();
      },
    });
    await expectError(await post(stream), 413, "payload_too_large");
    expect(await rowCount()).toBe(0);
  });

  it("exactly 1 KiB is accepted as a size", async () => {
    const event = makeEvent();
    const text = JSON.stringify(event);
    const padded = text + " ".repeat(1024 - text.length); // trailing white space is valid JSON
    expect(new TextEncoder().encode(padded).byteLength).toBe(1024);
    expect((await post(padded)).status).toBe(202);
    await expectError(await post(padded + " "), 413, "payload_too_large");
  });

  it.each([
    ["empty", ""],
    ["not json", "hello"],
    ["truncated", '{"install_id": "'],
    ["trailing garbage", '{"a":1} x'],
  ])("400 invalid_json for %s", async (_name, body) => {
    await expectError(await post(body), 400, "invalid_json");
    expect(await rowCount()).toBe(0);
  });

  it("400 invalid_json for bytes that are not UTF-8", async () => {
    const text = JSON.stringify(makeEvent()).replace("linux", "lin\u00ffx");
    const bytes = new TextEncoder().encode(text).map((b) => (b === 0xc3 ? 0xff : b));
    await expectError(await post(bytes), 400, "invalid_json");
  });
});

describe("GET /healthz", () => {
  it("answers 200", async () => {
    const response = await exports.default.fetch(`${BASE}/healthz`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ ok: true });
  });
});

describe("stats auth", () => {
  it.each([
    ["no header", {}],
    ["wrong token", { Authorization: "Bearer nope" }],
    ["token prefix", { Authorization: `Bearer ${TOKEN.slice(0, -1)}` }],
    ["token with extra", { Authorization: `Bearer ${TOKEN}x` }],
    ["basic scheme", { Authorization: `Basic ${btoa(`x:${TOKEN}`)}` }],
    ["bare token", { Authorization: TOKEN }],
    ["empty bearer", { Authorization: "Bearer " }],
  ])("401 for %s", async (_name, headers) => {
    for (const path of STATS_PATHS) {
      const response = await get(path, headers as Record<string, string>);
      expect(response.headers.get("WWW-Authenticate")).toContain("Bearer");
      await expectError(response, 401, "unauthorized");
    }
  });

  it.each(["Bearer", "bearer", "BEARER"])("the %s scheme is case-insensitive", async (scheme) => {
    expect((await get("/v1/stats", { Authorization: `${scheme} ${TOKEN}` })).status).toBe(200);
  });

  it("no token configured means 401 for everyone", async () => {
    const noToken = { ...env, STATS_TOKEN: undefined } as Env;
    for (const token of ["", "undefined", TOKEN]) {
      const request = new Request(`${BASE}/v1/stats`, { headers: { Authorization: `Bearer ${token}` } });
      const response = await fetchWithEnv(request, noToken);
      await expectError(response, 401, "unauthorized");
    }
    const empty = { ...env, STATS_TOKEN: "" } as Env;
    const request = new Request(`${BASE}/v1/stats`, { headers: { Authorization: "Bearer " } });
    await expectError(await fetchWithEnv(request, empty), 401, "unauthorized");
  });
});

describe("the reporting GETs over HTTP, after the hourly job", () => {
  it("/v1/stats serves the documented shape with as_of", async () => {
    await postEvent(makeEvent());
    let stats = (await (await get("/v1/stats")).json()) as Record<string, unknown>;
    expect(stats.as_of).toBeNull(); // before the first run
    await runJobNow();
    const response = await get("/v1/stats");
    expect(response.status).toBe(200);
    expect(response.headers.get("Content-Type")).toBe("application/json; charset=utf-8");
    expect(response.headers.get("X-D1-Rows-Read")).toBe("1");
    stats = (await response.json()) as Record<string, unknown>;
    expect(Object.keys(stats).sort()).toEqual([
      "as_of",
      "by",
      "generated_at",
      "installs",
      "returning_installs_30d",
      "sessions",
    ]);
    expect(stats.generated_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(stats.as_of).toMatch(/^\d{4}-\d\d-\d\dT\d\d:00:00Z$/);
    expect(stats.installs).toEqual({ "1d": 1, "7d": 1, "30d": 1 });
    expect(stats.sessions).toEqual({ "1d": 1, "7d": 1, "30d": 1 });
    expect(stats.by).toEqual({
      version: { "0.4.0": 1 },
      python: { "3.12": 1 },
      os: { linux: 1 },
      arch: { x86_64: 1 },
      adapter: { custom_python: 1 },
    });
  });

  it("daily defaults to 90 days ending on the day of as_of", async () => {
    await postEvent(makeEvent());
    expect(await (await get("/v1/stats/daily")).json()).toEqual({ as_of: null, days: [] });
    await runJobNow();
    const { days, as_of } = (await (await get("/v1/stats/daily")).json()) as {
      as_of: string;
      days: { day: string; sessions: number }[];
    };
    expect(days).toHaveLength(90);
    expect(days.reduce((sum, d) => sum + d.sessions, 0)).toBe(1);
    expect(days.at(-1)?.day).toBe(new Date(Date.parse(as_of) - 1000).toISOString().slice(0, 10));
  });

  it("weekly and cohorts answer their documented shapes", async () => {
    await runJobNow();
    const weekly = (await (await get("/v1/stats/weekly")).json()) as Record<string, unknown>;
    expect(Object.keys(weekly).sort()).toEqual(["as_of", "weeks"]);
    const cohorts = (await (await get("/v1/stats/cohorts")).json()) as Record<string, unknown>;
    expect(Object.keys(cohorts).sort()).toEqual(["as_of", "cohorts"]);
  });

  it.each([
    ["/v1/stats/daily", "days", ["0", "401", "-1", "abc", "1.5", "", "1e2", "0x10"]],
    ["/v1/stats/weekly", "weeks", ["0", "521", "-1", "abc", "2.0", ""]],
    ["/v1/stats/cohorts", "weeks", ["0", "105", "x", " 3"]],
  ])("%s rejects %s out of range or not an integer", async (path, name, values) => {
    for (const value of values as string[]) {
      const message = await expectError(await get(`${path}?${name}=${encodeURIComponent(value)}`), 400, "invalid_parameter");
      expect(message).toContain(name);
    }
  });

  it.each([
    ["/v1/stats/daily", "days", [1, 400]],
    ["/v1/stats/weekly", "weeks", [1, 520]],
    ["/v1/stats/cohorts", "weeks", [1, 104]],
  ])("%s accepts %s at both ends of its range", async (path, name, values) => {
    for (const value of values as number[]) {
      expect((await get(`${path}?${name}=${value}`)).status).toBe(200);
    }
  });

  it.each(STATS_PATHS)("%s rejects an unknown format", async (path) => {
    for (const format of ["xml", "CSV", "", "json,csv"]) {
      await expectError(await get(`${path}?format=${format}`), 400, "invalid_parameter");
    }
  });

  it("serves the same figures as CSV with a header row", async () => {
    await postEvent(makeEvent());
    await runJobNow();
    const stats = await get("/v1/stats?format=csv");
    expect(stats.headers.get("Content-Type")).toBe("text/csv; charset=utf-8");
    expect(stats.headers.get("Content-Disposition")).toBe('attachment; filename="stats.csv"');
    const lines = (await stats.text()).trimEnd().split("\r\n");
    expect(lines[0]).toBe("as_of,figure,key,value");
    expect(lines).toContain(`${(await statsJson()).as_of},installs,30d,1`);
    expect(lines.some((l) => l.endsWith(",by.version,0.4.0,1"))).toBe(true);
    const daily = (await (await get("/v1/stats/daily?days=3&format=csv")).text()).trimEnd().split("\r\n");
    expect(daily[0]).toBe("day,sessions");
    expect(daily).toHaveLength(4);
    const weekly = (await (await get("/v1/stats/weekly?format=csv")).text()).split("\r\n");
    expect(weekly[0]).toBe("week,start,dimension,value,sessions,active,returning,new,one_shot");
    const cohorts = (await (await get("/v1/stats/cohorts?format=csv")).text()).split("\r\n");
    expect(cohorts[0]).toBe("week,new,active_after_1,active_after_2,active_after_3,active_after_4,active_after_5,active_after_6,active_after_7,active_after_8");
  });

  it("checks auth before parameters", async () => {
    await expectError(await get("/v1/stats/daily?days=0", {}), 401, "unauthorized");
    await expectError(await get("/v1/stats/weekly?format=xml", {}), 401, "unauthorized");
  });
});

describe("internal errors", () => {
  it("answer a generic 500 in the one error shape, and log no request content", async () => {
    const broken = { ...env, DB: undefined } as unknown as Env;
    const event = makeEvent();
    const request = new Request(`${BASE}/v1/events`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Secret-Header": "do-not-log" },
      body: JSON.stringify(event),
    });
    const logged = vi.spyOn(console, "error").mockImplementation(() => {});
    const response = await fetchWithEnv(request, broken);
    const message = await expectError(response, 500, "internal_error");
    expect(message).toBe("internal error");
    expect(logged).toHaveBeenCalledTimes(1);
    const text = JSON.stringify(logged.mock.calls);
    for (const secret of [event.session_id, event.install_id, "do-not-log", BASE]) {
      expect(text).not.toContain(secret);
    }
    logged.mockRestore();
  });
});

describe("POST /event: the path of released SDKs (agentsonar 0.4.0-0.7.0)", () => {
  function postTo(path: string, body: string, headers: Record<string, string> = {}) {
    return exports.default.fetch(`${BASE}${path}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...headers },
      body,
    });
  }

  it("stores a valid event exactly as /v1/events does, once per session id", async () => {
    const event = makeEvent();
    for (let i = 0; i < 2; i++) {
      const response = await postTo("/event", JSON.stringify(event));
      expect(response.status).toBe(202);
      expect(await response.json()).toEqual({ ok: true });
    }
    expect((await postTo("/v1/events", JSON.stringify(event))).status).toBe(202);
    const rows = await allRows();
    expect(rows).toHaveLength(1);
    const { received_at: _, ...fields } = rows[0] as Record<string, unknown>;
    expect(fields).toEqual(event);
  });

  it("answers every error as /v1/events does", async () => {
    const event = makeEvent();
    for (const path of ["/event", "/v1/events"]) {
      await expectError(await postTo(path, JSON.stringify(event), { "Content-Type": "text/plain" }), 415, "unsupported_media_type");
      await expectError(await postTo(path, "x".repeat(2048)), 413, "payload_too_large");
      await expectError(await postTo(path, "{"), 400, "invalid_json");
      await expectError(await postTo(path, JSON.stringify({ ...event, hostname: "h" })), 400, "invalid_event");
      const wrongMethod = await exports.default.fetch(`${BASE}${path}`);
      await expectError(wrongMethod, 405, "method_not_allowed");
      expect(wrongMethod.headers.get("Allow")).toBe("POST");
    }
    expect(await rowCount()).toBe(0);
  });

  it("runs every contract vector with the same answer as /v1/events", async () => {
    for (const [kind, vectors] of Object.entries(env.TEST_VECTORS)) {
      for (const text of Object.values(vectors)) {
        expect((await postTo("/event", text)).status, text).toBe(kind === "valid" ? 202 : 400);
      }
    }
  });
});

describe("os and arch aliases are normalised at ingest (contract/normalization.json)", () => {
  it("has a case for every arch alias", () => {
    const covered = new Set(normalization.cases.filter((c) => c.field === "arch").map((c) => c.sent));
    for (const alias of Object.keys(normalization.arch_aliases)) expect(covered).toContain(alias);
  });

  for (const { field, sent, stored } of normalization.cases) {
    it(`stores ${field} ${sent} as ${stored}`, async () => {
      const event = makeEvent({ [field]: sent });
      expect((await postEvent(event)).status).toBe(202);
      const [row] = await allRows();
      expect(row?.[field]).toBe(stored);
    });
  }

  it("an old SDK's raw amd64/win32 and a new client's x86_64 count as one arch", async () => {
    const install = makeEvent().install_id;
    await postEvent(makeEvent({ install_id: install, arch: "amd64", os: "win32" }));
    await postEvent(makeEvent({ install_id: makeEvent().install_id, arch: "x86_64", os: "win32" }));
    await runJobNow();
    const stats = (await (await get("/v1/stats")).json()) as { by: Record<string, Record<string, number>> };
    expect(stats.by.arch).toEqual({ x86_64: 2 });
  });

  it("does not turn an invalid value valid: the contract still decides after the aliases", async () => {
    await expectError(await postEvent(makeEvent({ arch: "AMD64" })), 400, "invalid_event");
    await expectError(await postEvent(makeEvent({ os: "FreeBSD14" })), 400, "invalid_event");
    expect(await rowCount()).toBe(0);
  });
});

describe("the dashboard and the public page", () => {
  it("/dashboard is one HTML page with a strict CSP, its script and stylesheet from this origin", async () => {
    const response = await exports.default.fetch(`${BASE}/dashboard`);
    expect(response.status).toBe(200);
    expect(response.headers.get("Content-Type")).toBe("text/html; charset=utf-8");
    const csp = response.headers.get("Content-Security-Policy") ?? "";
    expect(csp).toContain("default-src 'self'");
    expect(csp).not.toContain("unsafe-inline");
    expect(csp).toContain("frame-ancestors 'none'");
    const html = await response.text();
    expect(html).not.toMatch(/<script>|<style>| style=|https?:\/\/(?!www\.w3\.org)/);
    for (const [path, type] of [
      ["/dashboard.js", "text/javascript; charset=utf-8"],
      ["/dashboard.css", "text/css; charset=utf-8"],
    ]) {
      const asset = await exports.default.fetch(`${BASE}${path}`);
      expect(asset.headers.get("Content-Type")).toBe(type);
      expect(await asset.text()).not.toMatch(/https?:\/\/(?!www\.w3\.org)/); // nothing from elsewhere
    }
  });

  it("/public and /v1/public are unknown paths unless PUBLIC_DASHBOARD is on", async () => {
    for (const value of [undefined, "off", "", "yes"]) {
      const off = { ...env, PUBLIC_DASHBOARD: value } as Env;
      for (const path of ["/public", "/v1/public"]) {
        await expectError(await fetchWithEnv(new Request(`${BASE}${path}`), off), 404, "not_found");
      }
    }
    const on = { ...env, PUBLIC_DASHBOARD: "on" } as Env;
    expect((await fetchWithEnv(new Request(`${BASE}/public`), on)).status).toBe(200);
    const answer = await fetchWithEnv(new Request(`${BASE}/v1/public`), on);
    expect(answer.status).toBe(200);
    expect(await answer.json()).toEqual({ as_of: null, weeks: [] });
  });
});
