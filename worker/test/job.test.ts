// The hourly job as the cron runs it, and on the open internet: whatever values are sent, however
// runs overlap or lag, it completes, its aggregates stay bounded, and no figure is corrupted.
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { DAY, HOUR, dayNumber, mondayOf } from "../src/calendar";
import { DIMENSIONS } from "../src/event";
import { OTHER_VALUES, TOP_VALUES } from "../src/figures";
import worker from "../src/index";
import {
  LEASE_MS,
  asWritten,
  chunkStatements,
  fenceStatement,
  readJobState,
  readWatermark,
  runJob,
  takeLease,
} from "../src/job";
import { getDailySessions, getStats, getWeekly, insertStatement, parseRetentionDays } from "../src/queries";
import { NOW, get, jobTimeFor, jobUntilCaughtUp, makeEvent, rowCount, seed, snapshot, uuid4 } from "./helpers";

const NEXT_MONDAY = (mondayOf(dayNumber(NOW)) + 7) * DAY;

async function insertAll(events: ReturnType<typeof makeEvent>[], receivedAt: (i: number) => number): Promise<void> {
  for (let i = 0; i < events.length; i += 500) {
    const slice = events.slice(i, i + 500);
    await env.DB.batch(slice.map((event, k) => insertStatement(env.DB, event, receivedAt(i + k))));
  }
}

/** A value of the maximal length the contract allows, distinct for each i. */
const maximal = (prefix: string, i: number, length: number) => `${prefix}${i}`.padEnd(length, "x");

describe("a flood of distinct, maximal values", () => {
  const FLOOD = 3_000;
  const flood = Array.from({ length: FLOOD }, (_, i) =>
    makeEvent({
      install_id: uuid4(),
      version: maximal("v", i, 32),
      os: maximal("o", i, 16),
      arch: maximal("a", i, 16),
      adapter: maximal("d", i, 32),
    }),
  );

  it("keeps the top 25 values per dimension and week, the rest under (other), in storage and answers", async () => {
    const honest = Array.from({ length: 40 }, () => makeEvent({ install_id: uuid4(), version: "0.7.0" }));
    await insertAll([...honest, ...flood], (i) => NOW - DAY + (i % 3000));
    await jobUntilCaughtUp(jobTimeFor(NEXT_MONDAY));

    const perWeek = await env.DB.prepare(
      "SELECT dimension, COUNT(*) AS n FROM weekly_by GROUP BY week, dimension ORDER BY dimension",
    ).all<{ dimension: string; n: number }>();
    for (const { dimension, n } of perWeek.results) {
      expect(n, dimension).toBeLessThanOrEqual(TOP_VALUES + 1);
    }
    const [week] = (await getWeekly(env.DB, 26)).weeks;
    expect(week?.installs.active).toBe(FLOOD + 40);
    for (const dimension of DIMENSIONS) {
      const cells = Object.entries(week?.by[dimension] ?? {});
      expect(cells.length).toBeLessThanOrEqual(TOP_VALUES + 1);
      expect(cells.reduce((sum, [, c]) => sum + c.active, 0)).toBe(FLOOD + 40); // every install counted once
    }
    expect(week?.by.version["0.7.0"]?.active).toBe(40); // the real version is still named
    expect(week?.by.version[OTHER_VALUES]?.active).toBe(FLOOD - (TOP_VALUES - 1));

    const stats = await getStats(env.DB);
    const snapshotBytes = await env.DB.prepare("SELECT LENGTH(figures) AS n FROM stats_snapshot").first<{ n: number }>();
    expect(snapshotBytes?.n).toBeLessThan(20_000); // 5 x 26 values at most, whatever the flood
    for (const dimension of DIMENSIONS) {
      expect(Object.keys(stats.figures.by[dimension]).length).toBeLessThanOrEqual(TOP_VALUES + 1);
    }
    const answer = await get("/v1/stats/weekly?weeks=26");
    expect(Number(answer.headers.get("X-D1-Rows-Read"))).toBeLessThan(26 * 5 * (TOP_VALUES + 1) + 100);
    expect((await answer.text()).length).toBeLessThan(256 * 1024);
  }, 120_000);
});

describe("values named like Object.prototype members", () => {
  it("are counted like any other value, in /v1/stats, the weekly figures and the CSV", async () => {
    const versions = ["__proto__", "constructor", "toString", "hasOwnProperty", "0.7.0"];
    const events = versions.map((version, i) =>
      makeEvent({ install_id: uuid4(), version, os: i === 0 ? "__proto__" : "linux" }),
    );
    await insertAll(events, (i) => NOW - DAY + i);
    await jobUntilCaughtUp(jobTimeFor(NEXT_MONDAY));
    const stats = (await (await get("/v1/stats")).json()) as { by: Record<string, Record<string, number>> };
    expect(stats.by.version).toEqual(Object.fromEntries(versions.map((v) => [v, 1])));
    expect(Object.getOwnPropertyNames(stats.by.os).sort()).toEqual(["__proto__", "linux"]);
    expect(stats.by.os?.linux).toBe(4);
    const weekly = (await (await get("/v1/stats/weekly")).json()) as {
      weeks: { installs: { active: number }; by: Record<string, Record<string, { active: number }>> }[];
    };
    const [week] = weekly.weeks;
    for (const dimension of DIMENSIONS) {
      const cells = week?.by[dimension] ?? {};
      expect(Object.values(cells).reduce((sum, c) => sum + c.active, 0), dimension).toBe(5);
    }
    expect(Object.hasOwn(week?.by.version ?? {}, "__proto__")).toBe(true);
    const csv = await (await get("/v1/stats?format=csv")).text();
    for (const version of versions) expect(csv).toContain(`,by.version,${version},1\r\n`);
    expect(csv).not.toContain("native code");
  });
});

describe("runs that overlap or lag", () => {
  it("a run that finds a live lease leaves; a lease left by a dead run expires", async () => {
    await insertAll([makeEvent()], () => NOW - HOUR);
    const t0 = 1_000_000;
    expect(await takeLease(env.DB, "a run that died", t0)).toBe(true);
    const blocked = await runJob(env.DB, jobTimeFor(NOW), 90, { clock: () => t0 + 1 });
    expect(blocked.ran).toBe(false);
    expect(await readJobState(env.DB)).toBeNull();
    const later = await runJob(env.DB, jobTimeFor(NOW), 90, { clock: () => t0 + LEASE_MS });
    expect(later.ran).toBe(true);
    expect(later.caught_up).toBe(true);
    expect(await rowCount("job_lease")).toBe(0); // released at the end
  });

  it("a lagging batch of a run whose lease was taken over fails whole: no closed week rewritten, no watermark moved back", async () => {
    // Week W48 (Monday 2026-11-23) with two installs, closed by run B.
    await insertAll([makeEvent(), makeEvent()], (i) => NOW - DAY + i);
    const t0 = 5_000_000;
    expect(await takeLease(env.DB, "A", t0)).toBe(true); // run A starts, then stalls
    await runJob(env.DB, jobTimeFor(NEXT_MONDAY), 90, { clock: () => t0 + LEASE_MS, holder: "B" });
    const weekly = (await getWeekly(env.DB, 26)).weeks;
    const state = await readJobState(env.DB);
    expect(weekly[0]?.installs.active).toBe(2);
    // Three more installs arrive, and A's batch that closes W48 lands at last.
    await insertAll([makeEvent(), makeEvent(), makeEvent()], (i) => NOW - DAY + 10 + i);
    const from = NEXT_MONDAY - HOUR;
    const lagging = [
      fenceStatement(env.DB, "A"),
      ...chunkStatements(env.DB, from, NEXT_MONDAY, state?.started_at ?? 0),
      env.DB.prepare("DELETE FROM job_fence"),
    ];
    await expect(env.DB.batch(lagging)).rejects.toThrow(/CHECK constraint failed/);
    expect((await getWeekly(env.DB, 26)).weeks).toEqual(weekly);
    expect(await readJobState(env.DB)).toEqual(state);
  });

  it("the watermark never moves back, even when a statement says so", async () => {
    await insertAll([makeEvent()], () => NOW - HOUR);
    await jobUntilCaughtUp(jobTimeFor(NOW));
    const before = await readJobState(env.DB);
    await env.DB.batch(chunkStatements(env.DB, NOW - 3 * HOUR, NOW - 2 * HOUR, before?.started_at ?? 0));
    expect(await readJobState(env.DB)).toEqual(before);
  });
});

describe("retention", () => {
  it("has its own share of every run: a long catch-up does not starve it", async () => {
    // Read up to 10 days ago; raw rows from 100 days ago are still there; 10 days of backlog.
    await insertAll([makeEvent(), makeEvent()], (i) => NOW - 100 * DAY + i);
    await insertAll(
      Array.from({ length: 240 }, () => makeEvent()),
      (i) => NOW - 10 * DAY + i * HOUR,
    );
    await env.DB.prepare("INSERT INTO job_state (id, watermark, started_at) VALUES (1, ?1, ?2)")
      .bind(NOW - 10 * DAY, NOW - 101 * DAY)
      .run();
    let ticks = 0;
    const report = await runJob(env.DB, jobTimeFor(NOW), 90, { clock: () => ++ticks, budgetMs: 5, retentionBudgetMs: 100 });
    expect(report.caught_up).toBe(false); // the chunks ran out of their budget ...
    expect(report.chunks).toBeLessThan(10);
    expect(report.events_deleted).toBe(2); // ... and retention still had its own
  });

  it("keeps install states 62 days whatever RETENTION_DAYS is (the day mask, cohorts +1 to +8)", async () => {
    const kept = uuid4();
    const gone = uuid4();
    await insertAll([makeEvent({ install_id: gone }), makeEvent({ install_id: kept })], (i) =>
      i === 0 ? NOW - 63 * DAY : NOW - 40 * DAY,
    );
    await jobUntilCaughtUp(jobTimeFor(NOW), 31);
    const installs = await env.DB.prepare("SELECT install_id FROM installs").all<{ install_id: string }>();
    expect(installs.results.map((r) => r.install_id)).toEqual([kept]);
    expect(await rowCount("events")).toBe(0); // raw rows go after 31 days
  });
});

describe("a run that fails", () => {
  it("logs one job: line with the error's kind, and the next run repairs", async () => {
    await insertAll([makeEvent()], () => NOW - HOUR);
    const errors = vi.spyOn(console, "error").mockImplementation(() => {});
    const controller = createScheduledController({ scheduledTime: jobTimeFor(NOW) * 1000, cron: "7 * * * *" });
    await env.DB.prepare("ALTER TABLE stats_snapshot RENAME TO stats_snapshot_away").run();
    let lines: string[] = [];
    try {
      const ctx = createExecutionContext();
      await worker.scheduled(controller, env, ctx);
      await waitOnExecutionContext(ctx);
      lines = errors.mock.calls.map((call) => String(call[0]));
    } finally {
      await env.DB.prepare("ALTER TABLE stats_snapshot_away RENAME TO stats_snapshot").run();
      errors.mockRestore();
    }
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^job: \{"ran":false,"error":"Error","message":".*stats_snapshot/);
    expect(await rowCount("job_lease")).toBe(0); // the lease went with it
    const ctx = createExecutionContext();
    await worker.scheduled(controller, env, ctx);
    await waitOnExecutionContext(ctx);
    expect((await getStats(env.DB)).figures.installs["30d"]).toBe(1);
  });
});

describe("the scheduled handler and RETENTION_DAYS", () => {
  it.each([
    [undefined, 90],
    ["", 90],
    ["90", 90],
    ["31", 31],
    [" 365 ", 365],
    ["30", null],
    ["0", null],
    ["-5", null],
    ["90.5", null],
    ["ninety", null],
    ["1e2", null],
  ])("RETENTION_DAYS=%j -> %j", (value, expected) => {
    expect(parseRetentionDays(value)).toBe(expected);
  });

  it("runs the job at the controller's time and deletes raw rows past the retention only", async () => {
    await seed([
      { install: uuid4(), ago: 100 * DAY },
      { install: uuid4(), ago: 95 * DAY },
      { install: uuid4(), ago: 89 * DAY },
      { install: uuid4(), ago: HOUR },
    ]);
    const controller = createScheduledController({ scheduledTime: jobTimeFor(NOW) * 1000, cron: "7 * * * *" });
    for (let i = 0; i < 5; i++) {
      const ctx = createExecutionContext();
      await worker.scheduled(controller, env, ctx);
      await waitOnExecutionContext(ctx);
    }
    expect(await readWatermark(env.DB)).toBe(NOW);
    expect(await rowCount("events")).toBe(2);
    expect(await rowCount("installs")).toBe(2);
    const daily = await getDailySessions(env.DB, 120);
    expect(daily.days.reduce((sum, d) => sum + d.sessions, 0)).toBe(4); // counted before they were deleted
  });

  it.each(["30", "abc", "7"])("RETENTION_DAYS=%s is a configuration error that changes nothing", async (value) => {
    await seed([{ install: uuid4(), ago: 100 * DAY }]);
    const before = await snapshot();
    const controller = createScheduledController({ scheduledTime: jobTimeFor(NOW) * 1000, cron: "7 * * * *" });
    const ctx = createExecutionContext();
    await worker.scheduled(controller, { ...env, RETENTION_DAYS: value }, ctx);
    await waitOnExecutionContext(ctx);
    expect(await snapshot()).toBe(before);
  });
});

describe("the job's SQL, as written", () => {
  it("every statement of an hour's chunk and of a week's close runs under EXPLAIN exactly as its text reads", async () => {
    const statements = chunkStatements(env.DB, NEXT_MONDAY - HOUR, NEXT_MONDAY, 0);
    expect(statements.length).toBeGreaterThan(10); // the hour, the install merge, the week close, the watermark
    for (const prepared of statements) {
      const { sql, params } = asWritten(prepared);
      expect(sql, "each statement's text is known").not.toBe("");
      await env.DB.prepare(`EXPLAIN ${sql}`).bind(...params).all(); // compiles as written
    }
  });
});
