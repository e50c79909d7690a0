// The public figures (GET /v1/public): rounded to 10, no name for a value under 10 installs, no
// breakdown for a week under 50, on data built by an attacker who knows the rules.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { DAY, HOUR, dayNumber, mondayOf } from "../src/calendar";
import type { Dimension } from "../src/event";
import { SAFETY_MARGIN, runJob } from "../src/job";
import { type PublicWeek, publicDimension, publicWeek, rounded } from "../src/public";
import type { Week } from "../src/queries";
import { BASE, fetchWithEnv, makeEvent, postEvent, uuid4 } from "./helpers";

const AGGREGATES = ["job_state", "installs", "sessions_hourly", "sessions_daily", "weekly", "weekly_by", "cohorts", "stats_snapshot"];
const python = (counts: Record<string, number>) => publicDimension("python", new Map(Object.entries(counts)));

function week(active: number, by: Partial<Record<Dimension, Record<string, number>>> = {}): Week {
  const cells = (counts: Record<string, number> = {}) =>
    Object.fromEntries(Object.entries(counts).map(([v, n]) => [v, { active: n, returning: 0 }]));
  return {
    week: "2026-W47",
    start: "2026-11-16",
    sessions: 1000,
    installs: { active, returning: 0, new: 0, one_shot: null },
    by: { version: cells(by.version), python: cells(by.python), os: cells(by.os), arch: cells(by.arch), adapter: cells(by.adapter) },
  };
}

/** Every number of a public week: totals and each cell. */
function numbers(published: PublicWeek): number[] {
  const cells = Object.values(published.by).flatMap((counts) => Object.values(counts ?? {}));
  return [...Object.values(published.installs), ...cells];
}

describe("rounding", () => {
  it("rounds to the nearest 10, 5 up", () => {
    expect([0, 1, 4, 5, 9, 10, 14, 15, 44, 45, 55, 1234].map(rounded)).toEqual([
      0, 0, 0, 10, 10, 10, 10, 20, 40, 50, 60, 1230,
    ]);
  });

  it("nested totals give nothing away: 55 active, 50 returning, 54 new", () => {
    const published = publicWeek({ ...week(55), installs: { active: 55, returning: 50, new: 54, one_shot: 3 } });
    // Exact, they said: 5 not returning, 1 seen before. Rounded, the differences are 10 and 10.
    expect(published.installs).toEqual({ active: 60, returning: 50, new: 50 });
  });
});

describe("published cells, from the cells alone", () => {
  it("3.12=40, 3.11=10, 3.9=1: the lone 3.9 has no key, and other is rounded", () => {
    expect(python({ "3.12": 40, "3.11": 10, "3.9": 1 })).toEqual({ "3.12": 40, "3.11": 10, other: 0 });
  });

  it("3.12=21, 3.11=21, 3.9=9: nothing is 'folded', nothing can be subtracted", () => {
    expect(python({ "3.12": 21, "3.11": 21, "3.9": 9 })).toEqual({ "3.12": 20, "3.11": 20, other: 10 });
  });

  it("one install on version 2024.11.5 is not named, and cannot fold the dominant value away", () => {
    const cells = publicDimension("version", new Map([["0.7.0", 55], ["2024.11.5", 1]]));
    expect(cells).toEqual({ "0.7": 60, other: 0 });
  });

  it("names documented values with 10 or more installs, largest first, then other", () => {
    const cells = publicDimension(
      "version",
      new Map([["0.7.0", 30], ["0.7.1", 12], ["0.6.2", 20], ["1.0.0rc1+local_build", 11], ["unknown", 4]]),
    );
    expect(Object.entries(cells)).toEqual([["0.7", 40], ["0.6", 20], ["1.0", 10], ["other", 0]]);
    expect(publicDimension("os", new Map([["linux", 40], ["freebsd", 12], ["sunos", 11]]))).toEqual({
      linux: 40,
      other: 20,
    });
  });

  it("counts values named like Object.prototype members as data", () => {
    const cells = publicDimension("adapter", new Map([["__proto__", 20], ["constructor", 30], ["crewai", 50]]));
    expect(Object.entries(cells)).toEqual([["crewai", 50], ["other", 50]]);
  });

  it("a week under 50 active installs has no breakdown", () => {
    const published = publicWeek(week(49, { python: { "3.12": 49 } }));
    expect(published.by).toEqual({ version: null, python: null, os: null, arch: null, adapter: null });
    expect(published.installs.active).toBe(50);
  });

  it("over a grid of inputs: every number a multiple of 10, no key for a value under 10", () => {
    // Three Pythons of 0 to 40 installs and 0 to 15 undocumented, every week of 50 or more.
    let inputs = 0;
    const counts = new Map<string, number>();
    for (let a = 0; a <= 40; a++) {
      for (let b = 0; b <= 40; b++) {
        for (let c = 0; c <= 40; c++) {
          for (let u = 0; u <= 15; u++) {
            if (a + b + c + u < 50) continue;
            inputs += 1;
            counts.set("3.12", a).set("3.11", b).set("3.9", c).set("2.7.18", u);
            const cells = publicDimension("python", counts);
            const keys = Object.keys(cells);
            const expected = [a >= 10, b >= 10, c >= 10, false, true].filter(Boolean).length;
            const named = [["3.12", a], ["3.11", b], ["3.9", c]] as const;
            if (
              keys.length !== expected ||
              named.some(([value, n]) => n >= 10 !== value in cells) ||
              Object.values(cells).some((n) => n % 10 !== 0) ||
              rounded(a + b + c + u) % 10 !== 0
            ) {
              throw new Error(`${JSON.stringify([...counts])} published ${JSON.stringify(cells)}`);
            }
          }
        }
      }
    }
    expect(inputs).toBe(877_441);
  }, 120_000);
});

describe("an attacker who posts fake installs through POST /v1/events", () => {
  const REAL = { version: "0.4.0", python: "3.12", os: "linux", adapter: "custom_python" };
  const RARE = { version: "0.6.1", python: "3.9", os: "darwin", adapter: "claude_code" };

  /** The closed week the events posted now fall in, published with PUBLIC_DASHBOARD=on: the job
   * rebuilt from the raw events each time (the watermark would otherwise have passed them). */
  async function published(): Promise<PublicWeek> {
    await env.DB.batch(AGGREGATES.map((table) => env.DB.prepare(`DELETE FROM ${table}`)));
    // The week of the events as stored (the server's receive time), never the test's own clock:
    // a run that straddles Sunday midnight still looks at the week they fell in.
    const latest = await env.DB.prepare("SELECT MAX(received_at) AS at FROM events").first<{ at: number }>();
    const nextMonday = (mondayOf(dayNumber(latest?.at ?? 0)) + 7) * DAY;
    for (let i = 0; i < 50 && !(await runJob(env.DB, nextMonday + HOUR + SAFETY_MARGIN, 90)).caught_up; i++);
    await caches.default.delete(`${BASE}/v1/public`); // served from the cache for 5 minutes otherwise
    const on = { ...env, PUBLIC_DASHBOARD: "on" } as Env;
    const answer = (await (await fetchWithEnv(new Request(`${BASE}/v1/public`), on)).json()) as { weeks: PublicWeek[] };
    const last = answer.weeks.at(-1);
    if (last === undefined) throw new Error("no closed week");
    return last;
  }

  async function post(fields: Record<string, string>, installs: number): Promise<void> {
    for (let i = 0; i < installs; i++) {
      expect((await postEvent(makeEvent({ ...fields, install_id: uuid4() }))).status).toBe(202);
    }
  }

  it("10 fakes on the rare values publish the same figures with the one real rare install as without it", async () => {
    await post(REAL, 45);
    await post(RARE, 1);
    expect((await published()).by.python).toBeNull(); // 46 active: no breakdown
    await post(RARE, 10); // the attack: 10 fakes, then subtract 10
    const withLone = await published();
    expect(withLone.installs.active).toBe(60);
    expect(withLone.by.python).toEqual({ "3.12": 50, "3.9": 10, other: 0 });
    expect(withLone.by.os).toEqual({ linux: 50, darwin: 10, other: 0 });
    for (const n of numbers(withLone)) expect(n % 10).toBe(0);

    // The same week without the real rare install publishes exactly the same: it cannot be read off.
    await env.DB.prepare("DELETE FROM events WHERE install_id IN (SELECT install_id FROM events WHERE python = '3.9' LIMIT 1)").run();
    expect(await published()).toEqual(withLone);
  });
});
