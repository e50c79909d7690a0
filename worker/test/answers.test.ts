// What every answer carries, and what the open ingest cannot make an answer do: sniffed
// content, spreadsheet formulas in a CSV, anonymous readers costing D1 reads.
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { DAY, dayNumber, mondayOf } from "../src/calendar";
import { SAFETY_MARGIN, runJob } from "../src/job";
import { insertEvent } from "../src/queries";
import { BASE, fetchWithEnv, get, makeEvent, post, uuid4 } from "./helpers";

const NOW = Date.UTC(2026, 10, 25, 14) / 1000;
const NEXT_MONDAY = (mondayOf(dayNumber(NOW)) + 7) * DAY;

async function closedWeekOf(versions: string[]): Promise<void> {
  for (const [i, version] of versions.entries()) {
    await insertEvent(env.DB, makeEvent({ install_id: uuid4(), version }), NOW - DAY + i);
  }
  for (let i = 0; i < 20 && !(await runJob(env.DB, NEXT_MONDAY + 3600 + SAFETY_MARGIN, 90)).caught_up; i++);
}

describe("headers on every answer", () => {
  const on = { ...env, PUBLIC_DASHBOARD: "on" } as Env;
  it.each([
    ["GET", "/healthz"],
    ["GET", "/v1/stats"],
    ["GET", "/v1/stats?format=csv"],
    ["GET", "/v1/stats/weekly?weeks=0"],
    ["GET", "/dashboard"],
    ["GET", "/dashboard.js"],
    ["GET", "/public"],
    ["GET", "/v1/public"],
    ["GET", "/no/such/path"],
    ["GET", "/__proto__"],
    ["PUT", "/v1/events"],
    ["POST", "/v1/events"],
  ])("%s %s: nosniff and HSTS", async (method, path) => {
    const response = await fetchWithEnv(
      new Request(`${BASE}${path}`, { method, headers: { Authorization: "Bearer test-stats-token" } }),
      on,
    );
    expect(response.headers.get("X-Content-Type-Options")).toBe("nosniff");
    expect(response.headers.get("Strict-Transport-Security")).toBe("max-age=31536000; includeSubDomains");
  });

  it("a 202 carries them too", async () => {
    const response = await post(JSON.stringify(makeEvent()));
    expect(response.status).toBe(202);
    expect(response.headers.get("X-Content-Type-Options")).toBe("nosniff");
  });

  it("an unknown path named like an Object.prototype member is a 404, not a crash", async () => {
    for (const path of ["/__proto__", "/constructor", "/toString", "/hasOwnProperty"]) {
      const response = await exports.default.fetch(`${BASE}${path}`);
      expect(response.status, path).toBe(404);
    }
  });
});

describe("CSV cells a spreadsheet would evaluate", () => {
  it("versions +A1+B1, -2+3, =1+1, @SUM(1) get a leading apostrophe; numbers stay numbers", async () => {
    const versions = ["+A1+B1", "-2+3", "=1+1", "@SUM", "0.7.0"];
    await closedWeekOf(versions);
    const stats = await (await get("/v1/stats?format=csv")).text();
    const weekly = await (await get("/v1/stats/weekly?format=csv")).text();
    for (const csv of [stats, weekly]) {
      for (const version of versions.slice(0, 4)) expect(csv).toContain(`,'${version},`);
      expect(csv).toContain(",0.7.0,");
      expect(csv.split("\r\n").some((line) => /(^|,)[=+\-@]/.test(line))).toBe(false);
    }
  });
});

describe("/v1/public and /public from the Cache API", () => {
  const on = { ...env, PUBLIC_DASHBOARD: "on" } as Env;
  const off = { ...env, PUBLIC_DASHBOARD: "off" } as Env;

  it("serves anonymous readers for 5 minutes without a D1 read, whatever parameters they add", async () => {
    await caches.default.delete(`${BASE}/v1/public`);
    await closedWeekOf(Array.from({ length: 60 }, () => "0.7.0"));
    const first = await fetchWithEnv(new Request(`${BASE}/v1/public`), on);
    expect(first.headers.get("Cache-Control")).toBe("public, max-age=300");
    expect(Number(first.headers.get("X-D1-Rows-Read"))).toBeGreaterThan(0);
    const body = await first.text();
    await env.DB.prepare("DELETE FROM weekly").run(); // what a D1 read would now see
    for (const path of ["/v1/public", "/v1/public?cache-buster=1", "/v1/public?x=__proto__"]) {
      const again = await fetchWithEnv(new Request(`${BASE}${path}`), on);
      expect(again.headers.get("X-D1-Rows-Read")).toBe("0");
      expect(await again.text()).toBe(body);
    }
    // A parameter the route reads is another answer; and turning the page off takes effect at once.
    const csv = await fetchWithEnv(new Request(`${BASE}/v1/public?format=csv`), on);
    expect(Number(csv.headers.get("X-D1-Rows-Read"))).toBeGreaterThan(0);
    expect((await fetchWithEnv(new Request(`${BASE}/v1/public`), off)).status).toBe(404);
    await caches.default.delete(`${BASE}/v1/public`);
    await caches.default.delete(`${BASE}/v1/public?format=csv`);
  });

  it("does not cache an error", async () => {
    await caches.default.delete(`${BASE}/v1/public?weeks=0`);
    const bad = await fetchWithEnv(new Request(`${BASE}/v1/public?weeks=0`), on);
    expect(bad.status).toBe(400);
    expect(await caches.default.match(`${BASE}/v1/public?weeks=0`)).toBeUndefined();
  });
});
