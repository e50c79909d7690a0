// The query functions on a known data set, and the scheduled retention job, against real D1.
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import normalization from "../../contract/normalization.json";
import worker from "../src/index";
import {
  DAY,
  getDailySessions,
  getStats,
  insertEvent,
  parseRetentionDays,
  rollUpAndDelete,
  utcDay,
} from "../src/queries";
import { makeEvent, rowCount, snapshot, uuid4 } from "./helpers";

// 2026-11-25T14:00:00Z
const NOW = Date.UTC(2026, 10, 25, 14) / 1000;
const HOUR = 3600;

async function seed(rows: { install: string; ago: number; [field: string]: string | number }[]): Promise<void> {
  for (const { install, ago, ...fields } of rows) {
    await insertEvent(env.DB, makeEvent({ install_id: install, ...fields }), NOW - ago);
  }
}

describe("insertEvent", () => {
  it("reports a new session and ignores a repeated one", async () => {
    const event = makeEvent();
    expect(await insertEvent(env.DB, event, NOW)).toBe(true);
    expect(await insertEvent(env.DB, event, NOW + 5)).toBe(false);
    expect(await rowCount()).toBe(1);
  });

  it("writes one row (plus its index entry) per event", async () => {
    const result = await env.DB.prepare(
      `INSERT INTO events (session_id, install_id, version, python, os, arch, adapter, timestamp, received_at)
       VALUES (?1, ?2, '1', '3.12', 'linux', 'x86_64', 'x', 1745891234, ?3)`,
    )
      .bind(uuid4(), uuid4(), NOW)
      .run();
    expect(result.meta.changes).toBe(1);
    expect(result.meta.rows_written).toBeLessThanOrEqual(2);
  });
});

describe("getStats on a known data set", () => {
  const a = uuid4(); // a person: three days in a row, then today
  const b = uuid4(); // a CI machine: many sessions, one day
  const c = uuid4(); // seen 5 days ago and 20 days ago
  const d = uuid4(); // only 40 days ago: outside every window
  const e = uuid4(); // twice today, within one UTC day

  async function seedAll(): Promise<void> {
    await seed([
      { install: a, ago: 1 * HOUR, version: "0.4.0", python: "3.12", adapter: "crewai" },
      { install: a, ago: 1 * DAY + HOUR, version: "0.4.0", python: "3.12", adapter: "crewai" },
      { install: a, ago: 2 * DAY + HOUR, version: "0.3.9", python: "3.12", adapter: "crewai" },
      { install: b, ago: 2 * HOUR, version: "0.4.0", python: "3.11", os: "linux" },
      { install: b, ago: 3 * HOUR, version: "0.4.0", python: "3.11", os: "linux" },
      { install: b, ago: 4 * HOUR, version: "0.4.0", python: "3.11", os: "linux" },
      { install: c, ago: 5 * DAY, version: "0.3.9", os: "darwin", arch: "arm64" },
      { install: c, ago: 20 * DAY, version: "0.3.9", os: "darwin", arch: "arm64" },
      { install: d, ago: 40 * DAY, version: "0.1.0", os: "win32" },
      { install: e, ago: 5 * HOUR, version: "0.4.0", adapter: "langgraph" },
      { install: e, ago: 6 * HOUR, version: "0.4.0", adapter: "langgraph" },
    ]);
  }

  it("counts installs and sessions over rolling windows", async () => {
    await seedAll();
    const stats = await getStats(env.DB, NOW);
    expect(stats.generated_at).toBe("2026-11-25T14:00:00Z");
    expect(stats.installs).toEqual({ "1d": 3, "7d": 4, "30d": 4 });
    expect(stats.sessions).toEqual({ "1d": 6, "7d": 9, "30d": 10 });
  });

  it("counts returning installs: two or more distinct UTC days", async () => {
    await seedAll();
    expect((await getStats(env.DB, NOW)).returning_installs_30d).toBe(2); // a and c; not b, e (one day), d (old)
  });

  it("counts distinct installs per value over 30 days", async () => {
    await seedAll();
    const { by } = await getStats(env.DB, NOW);
    expect(by.version).toEqual({ "0.4.0": 3, "0.3.9": 2 });
    expect(by.python).toEqual({ "3.12": 3, "3.11": 1 });
    expect(by.os).toEqual({ linux: 3, darwin: 1 });
    expect(by.arch).toEqual({ x86_64: 3, arm64: 1 });
    expect(by.adapter).toEqual({ custom_python: 2, crewai: 1, langgraph: 1 });
  });

  it("window edges: exactly 24 h ago is inside, one second more is outside", async () => {
    await seed([
      { install: a, ago: DAY },
      { install: b, ago: DAY + 1 },
    ]);
    const stats = await getStats(env.DB, NOW);
    expect(stats.installs["1d"]).toBe(1);
    expect(stats.installs["7d"]).toBe(2);
  });

  it("returning means distinct UTC days, not 24 hours apart", async () => {
    const midnight = Date.UTC(2026, 10, 25) / 1000;
    const now = midnight + 10 * 60;
    await insertEvent(env.DB, makeEvent({ install_id: a }), midnight - 60); // 23:59 the day before
    await insertEvent(env.DB, makeEvent({ install_id: a }), midnight + 60); // 00:01
    await insertEvent(env.DB, makeEvent({ install_id: b }), midnight - 20 * HOUR);
    await insertEvent(env.DB, makeEvent({ install_id: b }), midnight - 2 * HOUR);
    expect((await getStats(env.DB, now)).returning_installs_30d).toBe(1);
  });

  it("is all zeros on an empty database", async () => {
    const stats = await getStats(env.DB, NOW);
    expect(stats.installs).toEqual({ "1d": 0, "7d": 0, "30d": 0 });
    expect(stats.returning_installs_30d).toBe(0);
    expect(stats.by).toEqual({ version: {}, python: {}, os: {}, arch: {}, adapter: {} });
  });

  it("reads only rows inside the 30-day window", async () => {
    await seed(Array.from({ length: 50 }, () => ({ install: uuid4(), ago: 60 * DAY })));
    await seed(Array.from({ length: 5 }, () => ({ install: uuid4(), ago: HOUR })));
    const statements = [
      env.DB.prepare("SELECT COUNT(DISTINCT install_id) FROM events WHERE received_at >= ?1").bind(NOW - 30 * DAY),
    ];
    const [result] = await env.DB.batch(statements);
    expect(result?.meta.rows_read).toBeLessThanOrEqual(6);
    const { results } = await env.DB.prepare(
      "EXPLAIN QUERY PLAN SELECT version, COUNT(DISTINCT install_id) FROM events WHERE received_at >= ?1 GROUP BY version",
    )
      .bind(NOW)
      .all<{ detail: string }>();
    expect(results.map((r) => r.detail).join(" ")).toContain("events_received_at");
  });
});

describe("rollUpAndDelete and the scheduled job", () => {
  async function seedOld(): Promise<void> {
    await seed([
      { install: uuid4(), ago: 100 * DAY, version: "0.1.0" },
      { install: uuid4(), ago: 100 * DAY + HOUR, version: "0.1.0" },
      { install: uuid4(), ago: 95 * DAY, version: "0.2.0" },
      { install: uuid4(), ago: 89 * DAY, version: "0.3.0" },
      { install: uuid4(), ago: HOUR, version: "0.4.0" },
    ]);
  }

  it("rolls old rows into daily counts, deletes them, and is idempotent", async () => {
    await seedOld();
    const first = await rollUpAndDelete(env.DB, NOW, 90);
    expect(first.deleted).toBe(3);
    expect(await rowCount()).toBe(2);
    const { results } = await env.DB.prepare("SELECT * FROM daily_counts ORDER BY day").all();
    expect(results).toEqual([
      {
        day: utcDay(NOW - 100 * DAY - HOUR),
        version: "0.1.0",
        python: "3.12",
        os: "linux",
        arch: "x86_64",
        adapter: "custom_python",
        sessions: 2,
      },
      {
        day: utcDay(NOW - 95 * DAY),
        version: "0.2.0",
        python: "3.12",
        os: "linux",
        arch: "x86_64",
        adapter: "custom_python",
        sessions: 1,
      },
    ]);
    const before = await snapshot();
    expect(await rollUpAndDelete(env.DB, NOW, 90)).toEqual({ rolledUp: 0, deleted: 0 });
    expect(await snapshot()).toBe(before);
  });

  it("no install id survives the window", async () => {
    await seedOld();
    await rollUpAndDelete(env.DB, NOW, 90);
    const { results } = await env.DB.prepare("SELECT MIN(received_at) AS oldest FROM events").all<{ oldest: number }>();
    expect(results[0]?.oldest).toBeGreaterThanOrEqual(NOW - 90 * DAY);
    const columns = await env.DB.prepare("SELECT name FROM pragma_table_info('daily_counts')").all<{ name: string }>();
    expect(columns.results.map((c) => c.name)).not.toContain("install_id");
  });

  it("adds to a day already rolled up when its later rows age out", async () => {
    const day = Date.UTC(2026, 7, 1) / 1000;
    await insertEvent(env.DB, makeEvent(), day + HOUR);
    await insertEvent(env.DB, makeEvent(), day + 20 * HOUR);
    await rollUpAndDelete(env.DB, day + 10 * HOUR + 90 * DAY, 90);
    await rollUpAndDelete(env.DB, day + 21 * HOUR + 90 * DAY, 90);
    const row = await env.DB.prepare("SELECT day, sessions FROM daily_counts").first();
    expect(row).toEqual({ day: "2026-08-01", sessions: 2 });
  });

  it("daily sessions read raw and rolled-up rows alike", async () => {
    await seedOld();
    const before = await getDailySessions(env.DB, NOW, 120);
    await rollUpAndDelete(env.DB, NOW, 90);
    const after = await getDailySessions(env.DB, NOW, 120);
    expect(after).toEqual(before);
    expect(after.days).toHaveLength(120);
    expect(after.days.at(-1)).toEqual({ day: "2026-11-25", sessions: 1 });
    expect(after.days.find((d) => d.day === utcDay(NOW - 95 * DAY))?.sessions).toBe(1);
    expect(after.days.reduce((sum, d) => sum + d.sessions, 0)).toBe(5);
  });

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

  it("the scheduled handler runs the job at the controller's time", async () => {
    await seedOld();
    const controller = createScheduledController({ scheduledTime: NOW * 1000, cron: "17 3 * * *" });
    const ctx = createExecutionContext();
    await worker.scheduled(controller, env, ctx);
    await waitOnExecutionContext(ctx);
    expect(await rowCount()).toBe(2);
    expect(await rowCount("daily_counts")).toBe(2);
  });

  it.each(["30", "abc", "7"])("RETENTION_DAYS=%s is a configuration error that changes nothing", async (value) => {
    await seedOld();
    const before = await snapshot();
    const controller = createScheduledController({ scheduledTime: NOW * 1000, cron: "17 3 * * *" });
    const ctx = createExecutionContext();
    await worker.scheduled(controller, { ...env, RETENTION_DAYS: value }, ctx);
    await waitOnExecutionContext(ctx);
    expect(await snapshot()).toBe(before);
  });
});

describe("what D1 bills", () => {
  async function statsRowsRead(): Promise<number> {
    const { statsStatements } = await import("../src/queries");
    const results = await env.DB.batch(statsStatements(env.DB, NOW));
    return results.reduce((sum, r) => sum + r.meta.rows_read, 0);
  }

  it("stats reads do not grow with history outside the 30-day window", async () => {
    await seed(Array.from({ length: 20 }, () => ({ install: uuid4(), ago: HOUR })));
    await seed(Array.from({ length: 100 }, () => ({ install: uuid4(), ago: 45 * DAY })));
    const before = await statsRowsRead();
    await seed(Array.from({ length: 300 }, () => ({ install: uuid4(), ago: 60 * DAY })));
    expect(await statsRowsRead()).toBe(before);
    expect(before).toBeLessThan(20 * 20); // on the order of the recent rows, never the old ones
  });

  it("a repeated event writes no row", async () => {
    const { insertStatement } = await import("../src/queries");
    const event = makeEvent();
    const first = await insertStatement(env.DB, event, NOW).run();
    const again = await insertStatement(env.DB, event, NOW).run();
    expect(first.meta.rows_written).toBeGreaterThan(0);
    expect(again.meta.rows_written).toBe(0);
  });
});

describe("migration 0002: rows stored before ingest normalised os and arch", () => {
  const migration = env.TEST_MIGRATIONS.find((m) => m.name.startsWith("0002_"));

  async function runMigration(): Promise<void> {
    if (migration === undefined) throw new Error("migration 0002 is missing");
    await env.DB.batch(migration.queries.map((sql) => env.DB.prepare(sql)));
  }

  it("normalises every case of contract/normalization.json in events, and again changes nothing", async () => {
    for (const { field, sent } of normalization.cases) {
      await insertEvent(env.DB, makeEvent({ [field]: sent, adapter: field === "os" ? "os_case" : "arch_case" }), NOW);
    }
    await runMigration();
    const { results } = await env.DB.prepare("SELECT os, arch, adapter FROM events").all<Record<string, string>>();
    const stored = (field: string) =>
      results.filter((r) => r.adapter === `${field}_case`).map((r) => r[field]).sort();
    for (const field of ["os", "arch"]) {
      const expected = normalization.cases.filter((c) => c.field === field).map((c) => c.stored).sort();
      expect(stored(field)).toEqual(expected);
    }
    const before = await snapshot();
    await runMigration();
    expect(await snapshot()).toBe(before);
  });

  it("merges rolled-up days stored under an alias into the normalised row", async () => {
    const insert = env.DB.prepare(
      "INSERT INTO daily_counts (day, version, python, os, arch, adapter, sessions) VALUES ('2026-01-05', '0.7.0', '3.12', ?1, ?2, 'custom_python', ?3)",
    );
    await env.DB.batch([
      insert.bind("win32", "amd64", 3),
      insert.bind("win32", "x64", 4),
      insert.bind("win32", "x86_64", 5),
      insert.bind("freebsd14", "amd64", 2),
      insert.bind("freebsd", "x86_64", 1),
      insert.bind("linux", "aarch64", 7),
    ]);
    await runMigration();
    const { results } = await env.DB.prepare(
      "SELECT os, arch, sessions FROM daily_counts ORDER BY os, arch",
    ).all();
    expect(results).toEqual([
      { os: "freebsd", arch: "x86_64", sessions: 3 },
      { os: "linux", arch: "arm64", sessions: 7 },
      { os: "win32", arch: "x86_64", sessions: 12 },
    ]);
  });
});
