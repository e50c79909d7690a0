// The query functions and every reporting definition, on hand-built data sets whose answers are
// written out here, against real D1 with the real migrations.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { DAY, HOUR } from "../src/calendar";
import { SAFETY_MARGIN, chunkEnd, chunkStatements, readJobState, readWatermark, runJob } from "../src/job";
import {
  getCohorts,
  getDailySessions,
  getStats,
  getWeekly,
  insertEvent,
  insertStatement,
  parseRetentionDays,
} from "../src/queries";
import { AGGREGATES, NOW, at, jobTimeFor, jobUntilCaughtUp, makeEvent, rowCount, seed, snapshot, uuid4 } from "./helpers";

describe("insertEvent", () => {
  it("reports a new session and ignores a repeated one", async () => {
    const event = makeEvent();
    expect(await insertEvent(env.DB, event, NOW)).toBe(true);
    expect(await insertEvent(env.DB, event, NOW + 5)).toBe(false);
    expect(await rowCount()).toBe(1);
  });

  it("writes one row plus its index entry, reads none, and a repeat writes nothing", async () => {
    const event = makeEvent();
    const first = await insertStatement(env.DB, event, NOW).run();
    const again = await insertStatement(env.DB, event, NOW).run();
    expect(first.meta.changes).toBe(1);
    expect(first.meta.rows_written).toBeLessThanOrEqual(2);
    expect(again.meta.rows_written).toBe(0);
  });
});

describe("/v1/stats figures: rolling windows ending at as_of, from install states", () => {
  const a = uuid4(); // a person: three days in a row, then today; upgraded from 0.3.9
  const b = uuid4(); // a CI machine: many sessions, one day
  const c = uuid4(); // seen 5 days ago and 20 days ago
  const d = uuid4(); // only 40 days ago: outside every window
  const e = uuid4(); // twice today, within one UTC day

  async function seedAll(): Promise<void> {
    await seed([
      { install: a, ago: 2 * DAY + HOUR, version: "0.3.9", python: "3.12", adapter: "crewai" },
      { install: a, ago: 1 * DAY + HOUR, version: "0.4.0", python: "3.12", adapter: "crewai" },
      { install: a, ago: 1 * HOUR, version: "0.4.0", python: "3.12", adapter: "crewai" },
      { install: b, ago: 2 * HOUR, version: "0.4.0", python: "3.11", os: "linux" },
      { install: b, ago: 3 * HOUR, version: "0.4.0", python: "3.11", os: "linux" },
      { install: b, ago: 4 * HOUR, version: "0.4.0", python: "3.11", os: "linux" },
      { install: c, ago: 20 * DAY, version: "0.3.9", os: "darwin", arch: "arm64" },
      { install: c, ago: 5 * DAY, version: "0.3.9", os: "darwin", arch: "arm64" },
      { install: d, ago: 40 * DAY, version: "0.1.0", os: "win32" },
      { install: e, ago: 6 * HOUR, version: "0.4.0", adapter: "langgraph" },
      { install: e, ago: 5 * HOUR, version: "0.4.0", adapter: "langgraph" },
    ]);
  }

  it("counts installs and sessions over the 1, 7 and 30 x 24 h ending at as_of", async () => {
    await seedAll();
    await jobUntilCaughtUp(jobTimeFor(NOW));
    const stats = await getStats(env.DB);
    expect(stats.as_of).toBe(NOW);
    expect(stats.figures.installs).toEqual({ "1d": 3, "7d": 4, "30d": 4 });
    expect(stats.figures.sessions).toEqual({ "1d": 6, "7d": 9, "30d": 10 });
  });

  it("counts returning installs: seen on two or more UTC days in the window", async () => {
    await seedAll();
    await jobUntilCaughtUp(jobTimeFor(NOW));
    expect((await getStats(env.DB)).figures.returning_installs_30d).toBe(2); // a and c; not b, e (one day), d (old)
  });

  it("counts each install once per dimension, under its latest value", async () => {
    await seedAll();
    await jobUntilCaughtUp(jobTimeFor(NOW));
    const { by } = (await getStats(env.DB)).figures;
    expect(by.version).toEqual({ "0.4.0": 3, "0.3.9": 1 }); // a upgraded: counted under 0.4.0 only
    expect(by.python).toEqual({ "3.12": 3, "3.11": 1 });
    expect(by.os).toEqual({ linux: 3, darwin: 1 });
    expect(by.arch).toEqual({ x86_64: 3, arm64: 1 });
    expect(by.adapter).toEqual({ custom_python: 2, crewai: 1, langgraph: 1 });
  });

  it("window edges: exactly 24 h before as_of is inside, one second more is outside", async () => {
    await seed([
      { install: a, ago: DAY },
      { install: b, ago: DAY + 1 },
    ]);
    await jobUntilCaughtUp(jobTimeFor(NOW));
    const { installs } = (await getStats(env.DB)).figures;
    expect(installs["1d"]).toBe(1);
    expect(installs["7d"]).toBe(2);
  });

  it("returning means two UTC days, not 24 hours apart, and both inside the window", async () => {
    const midnight = Date.UTC(2026, 10, 25) / 1000;
    await insertEvent(env.DB, makeEvent({ install_id: a }), midnight - 60); // 23:59 the day before
    await insertEvent(env.DB, makeEvent({ install_id: a }), midnight + 60); // 00:01
    await insertEvent(env.DB, makeEvent({ install_id: b }), midnight - 20 * HOUR);
    await insertEvent(env.DB, makeEvent({ install_id: b }), midnight - 2 * HOUR);
    await insertEvent(env.DB, makeEvent({ install_id: c }), midnight - 30 * DAY - HOUR); // just outside
    await insertEvent(env.DB, makeEvent({ install_id: c }), midnight + 30 * 60);
    await jobUntilCaughtUp(jobTimeFor(midnight + HOUR));
    expect((await getStats(env.DB)).figures.returning_installs_30d).toBe(1);
  });

  it("is all zeros with as_of null before the first run, and zeros with an as_of on an empty database", async () => {
    expect(await getStats(env.DB)).toMatchObject({
      as_of: null,
      figures: { installs: { "1d": 0, "7d": 0, "30d": 0 }, returning_installs_30d: 0 },
    });
    await runJob(env.DB, jobTimeFor(NOW), 90);
    const stats = await getStats(env.DB);
    expect(stats.as_of).toBe(NOW);
    expect(stats.figures.by).toEqual({ version: {}, python: {}, os: {}, arch: {}, adapter: {} });
  });

  it("an event received after as_of waits for the next run; none is ever skipped", async () => {
    await insertEvent(env.DB, makeEvent({ install_id: a }), NOW + 10); // received 14:00:10
    await runJob(env.DB, NOW + SAFETY_MARGIN + 60, 90); // 14:06: 14:00-15:00 is not over
    expect((await getStats(env.DB)).figures.sessions["1d"]).toBe(0);
    await insertEvent(env.DB, makeEvent({ install_id: b }), NOW + HOUR - 1); // committed late, 14:59:59
    await runJob(env.DB, NOW + HOUR + SAFETY_MARGIN + 60, 90);
    const stats = await getStats(env.DB);
    expect(stats.as_of).toBe(NOW + HOUR);
    expect(stats.figures.sessions["1d"]).toBe(2);
  });
});

describe("daily sessions", () => {
  it("counts sessions per UTC day up to as_of, oldest first, zeros filled in", async () => {
    await seed([
      { install: uuid4(), ago: 10 * DAY },
      { install: uuid4(), ago: HOUR },
      { install: uuid4(), ago: 2 * HOUR },
    ]);
    expect((await getDailySessions(env.DB, 5)).days).toEqual([]); // before the first run
    await jobUntilCaughtUp(jobTimeFor(NOW));
    const { days, as_of } = await getDailySessions(env.DB, 12);
    expect(as_of).toBe(NOW);
    expect(days).toHaveLength(12);
    expect(days.at(-1)).toEqual({ day: "2026-11-25", sessions: 2 });
    expect(days[1]).toEqual({ day: "2026-11-15", sessions: 1 });
    expect(days.reduce((sum, d) => sum + d.sessions, 0)).toBe(3);
  });

  it("adds the days rolled up before the upgrade (migration 0003) to the days the job counts", async () => {
    await env.DB.prepare("INSERT INTO sessions_daily (day, sessions_rolled_up) VALUES ('2026-11-24', 7)").run();
    await seed([{ install: uuid4(), ago: 20 * HOUR }]); // 2026-11-24 18:00
    await jobUntilCaughtUp(jobTimeFor(NOW));
    expect((await getDailySessions(env.DB, 2)).days).toEqual([
      { day: "2026-11-24", sessions: 8 },
      { day: "2026-11-25", sessions: 0 },
    ]);
  });
});

// The weekly data set: ISO weeks 2026-W49 (Mon 11-30) to 2027-W05 (Mon 02-01), across 2026-W53.
const P = "00000000-0000-4000-8000-00000000000a"; // a person: W49, two days in W50 (upgrade mid-week), W53 across the new year
const C = "00000000-0000-4000-8000-00000000000b"; // a CI-like install: one session, ever
const R = "00000000-0000-4000-8000-00000000000c"; // seen 12-01 and 12-11: returning in W50 across weeks
const O = "00000000-0000-4000-8000-00000000000d"; // seen 11-10 and 12-12: 31 days apart, not returning
const N2 = "00000000-0000-4000-8000-00000000000e"; // new 12-12, again within 14 days and later
const N3 = "00000000-0000-4000-8000-00000000000f"; // new 12-13 (Sunday), again on day 15: one-shot

const WEEKLY_DATA: [string, string, number, Partial<Record<string, string>>?][] = [
  [O, "2026-11-10", 9],
  [R, "2026-12-01", 9],
  [P, "2026-12-03", 9],
  [P, "2026-12-08", 10],
  [C, "2026-12-09", 3, { adapter: "ci_runner" }],
  [P, "2026-12-10", 9],
  [P, "2026-12-10", 15, { version: "0.5.0" }], // upgraded mid-week
  [R, "2026-12-11", 8],
  [O, "2026-12-12", 8],
  [N2, "2026-12-12", 20],
  [N3, "2026-12-13", 23],
  [N2, "2026-12-20", 11], // W51
  [N3, "2026-12-27", 7], // W52; day 15 from its first day
  [N2, "2026-12-30", 9], // 2026-W53
  [P, "2026-12-31", 23, { version: "0.5.0" }], // 2026-W53, the old year
  [P, "2027-01-02", 1, { version: "0.5.0" }], // 2026-W53, the new year
  [N3, "2027-01-13", 12], // 2027-W02
  [N2, "2027-02-03", 12], // 2027-W05
];

async function seedWeekly(): Promise<void> {
  for (const [install, day, hour, fields] of WEEKLY_DATA) {
    await insertEvent(env.DB, makeEvent({ install_id: install, ...fields }), at(day, hour, 17));
  }
}

const THROUGH_W05 = jobTimeFor(at("2027-02-08", 0)); // Monday: 2027-W05 has closed

describe("weekly figures on a hand-built data set", () => {
  it("active, returning, new, one-shot and sessions of 2026-W50, written out", async () => {
    await seedWeekly();
    await jobUntilCaughtUp(THROUGH_W05);
    const { weeks } = await getWeekly(env.DB, 520);
    const w50 = weeks.find((w) => w.week === "2026-W50");
    expect(w50?.start).toBe("2026-12-07");
    expect(w50?.sessions).toBe(8); // P 3, C, R, O, N2, N3
    // active: P C R O N2 N3; returning: P (12-08, 12-10), R (12-01, 12-11); O's 11-10 is 33 days before 12-13.
    // new: C N2 N3; one-shot: C, N3 (its second day is day 15); N2 came back on day 9.
    expect(w50?.installs).toEqual({ active: 6, returning: 2, new: 3, one_shot: 2 });
  });

  it("counts each install under its latest value that week (an upgrade mid-week)", async () => {
    await seedWeekly();
    await jobUntilCaughtUp(THROUGH_W05);
    const w50 = (await getWeekly(env.DB, 520)).weeks.find((w) => w.week === "2026-W50");
    expect(w50?.by.version).toEqual({ "0.4.0": { active: 5, returning: 1 }, "0.5.0": { active: 1, returning: 1 } });
    expect(w50?.by.adapter).toEqual({
      custom_python: { active: 5, returning: 2 },
      ci_runner: { active: 1, returning: 0 },
    });
    expect(w50?.by.python).toEqual({ "3.12": { active: 6, returning: 2 } });
  });

  it("runs across the year boundary: 2026-W53 holds 12-28 to 01-03, then 2027-W01", async () => {
    await seedWeekly();
    await jobUntilCaughtUp(THROUGH_W05);
    const { weeks } = await getWeekly(env.DB, 520);
    expect(weeks.map((w) => [w.week, w.start])).toEqual([
      ["2026-W46", "2026-11-09"],
      ["2026-W47", "2026-11-16"],
      ["2026-W48", "2026-11-23"],
      ["2026-W49", "2026-11-30"],
      ["2026-W50", "2026-12-07"],
      ["2026-W51", "2026-12-14"],
      ["2026-W52", "2026-12-21"],
      ["2026-W53", "2026-12-28"],
      ["2027-W01", "2027-01-04"],
      ["2027-W02", "2027-01-11"],
      ["2027-W03", "2027-01-18"],
      ["2027-W04", "2027-01-25"],
      ["2027-W05", "2027-02-01"],
    ]);
    const w53 = weeks.find((w) => w.week === "2026-W53");
    // N2 12-30 and P 12-31, 01-02: both returning (P two days this week; N2 12-12, 12-20, 12-30).
    expect(w53?.sessions).toBe(3);
    expect(w53?.installs).toEqual({ active: 2, returning: 2, new: 0, one_shot: 0 });
    // No one in 2027-W01; its one-shot figure was settled when 2027-W03 closed.
    expect(weeks.find((w) => w.week === "2027-W01")?.installs).toEqual({ active: 0, returning: 0, new: 0, one_shot: 0 });
  });

  it("one_shot is null until the 14 days from every new install's first day are over", async () => {
    await seedWeekly();
    await jobUntilCaughtUp(jobTimeFor(at("2026-12-21", 0))); // W51 closed: W50's new installs still counting
    let w50 = (await getWeekly(env.DB, 520)).weeks.find((w) => w.week === "2026-W50");
    expect(w50?.installs.one_shot).toBeNull();
    await jobUntilCaughtUp(jobTimeFor(at("2026-12-28", 0))); // W52 closed: N3's 14 days ended 12-26
    w50 = (await getWeekly(env.DB, 520)).weeks.find((w) => w.week === "2026-W50");
    expect(w50?.installs.one_shot).toBe(2);
  });

  it("follows the cohort of 2026-W50 for 8 weeks", async () => {
    await seedWeekly();
    await jobUntilCaughtUp(THROUGH_W05);
    const { cohorts } = await getCohorts(env.DB, 104);
    const w50 = cohorts.find((c) => c.week === "2026-W50");
    // C N2 N3: N2 in W51, N3 in W52, N2 in W53, nobody in W01, N3 in W02, nobody in W03 and W04, N2 in W05.
    expect(w50).toEqual({ week: "2026-W50", new: 3, active_after: [1, 1, 1, 0, 1, 0, 0, 1] });
    const w03 = cohorts.find((c) => c.week === "2027-W03");
    expect(w03?.active_after).toEqual([0, 0, null, null, null, null, null, null]); // W06 onwards not closed
    expect(cohorts.at(-1)?.week).toBe("2027-W05");
  });

  it("keeps the weekly figures and cohorts when raw rows and install ids are deleted", async () => {
    await seedWeekly();
    await jobUntilCaughtUp(jobTimeFor(at("2027-02-22", 0))); // W07 closed: every one-shot figure is settled
    const weekly = await getWeekly(env.DB, 520);
    const cohorts = await getCohorts(env.DB, 104);
    const later = jobTimeFor(at("2027-06-07", 0)); // 120 days later, no events since
    await jobUntilCaughtUp(later, 90);
    expect(await rowCount("events")).toBe(0);
    expect(await rowCount("installs")).toBe(0);
    // Every figure that was settled before the deletion (one-shot of weeks through W05; cohorts
    // whose 8 later weeks had closed) is the same after it.
    const settled = <T extends { week: string }>(rows: T[], last: string) => rows.filter((r) => r.week <= last);
    const after = await getWeekly(env.DB, 520);
    expect(settled(after.weeks, "2027-W05")).toEqual(settled(weekly.weeks, "2027-W05"));
    expect(settled(weekly.weeks, "2027-W05")).toHaveLength(13);
    const cohortsAfter = (await getCohorts(env.DB, 104)).cohorts;
    expect(settled(cohortsAfter, "2026-W52")).toEqual(settled(cohorts.cohorts, "2026-W52"));
  });

  it("running the job again changes nothing", async () => {
    await seedWeekly();
    await jobUntilCaughtUp(THROUGH_W05);
    const before = await snapshot(AGGREGATES);
    await runJob(env.DB, THROUGH_W05, 90);
    await runJob(env.DB, THROUGH_W05, 90);
    expect(await snapshot(AGGREGATES)).toBe(before);
  });

  it("a chunk applied twice changes nothing", async () => {
    await seedWeekly();
    await jobUntilCaughtUp(jobTimeFor(at("2026-12-10", 16)));
    const state = await readJobState(env.DB);
    const watermark = state?.watermark ?? 0;
    const before = await snapshot(AGGREGATES);
    // the hour that just went in (P's upgrade at 15:17) once more, with its watermark
    await env.DB.batch(chunkStatements(env.DB, watermark - HOUR, watermark, state?.started_at ?? 0));
    expect(await snapshot(AGGREGATES)).toBe(before);
  });

  it("a run stopped after any statement is repaired by the next", async () => {
    // The chunk that ends at Monday 2026-12-14 00:00 holds the most statements: it closes W50.
    await seedWeekly();
    await jobUntilCaughtUp(THROUGH_W05);
    const expected = await snapshot(AGGREGATES);
    const from = at("2026-12-13", 23);
    const startedAt = (await readJobState(env.DB))?.started_at ?? 0;
    const statements = chunkStatements(env.DB, from, from + HOUR, startedAt);
    expect(statements.length).toBeGreaterThan(15);
    for (let stop = 1; stop < statements.length; stop++) {
      await env.DB.batch(AGGREGATES.map((table) => env.DB.prepare(`DELETE FROM ${table}`)));
      await jobUntilCaughtUp(jobTimeFor(from));
      expect(await readWatermark(env.DB)).toBe(from);
      expect(await chunkEnd(env.DB, from, from + HOUR)).toBe(from + HOUR);
      for (const statement of chunkStatements(env.DB, from, from + HOUR, startedAt).slice(0, stop)) {
        await statement.run(); // one at a time, no transaction: the worst a crash can leave
      }
      await jobUntilCaughtUp(THROUGH_W05);
      expect(await snapshot(AGGREGATES), `stopped after statement ${stop}`).toBe(expected);
    }
  }, 120_000);

  it("rebuilds from the raw rows it still has, never overwriting a week or day it cannot see whole", async () => {
    await seedWeekly();
    await jobUntilCaughtUp(THROUGH_W05);
    const weekly = (await getWeekly(env.DB, 520)).weeks;
    const cohorts = (await getCohorts(env.DB, 104)).cohorts;
    const daily = (await getDailySessions(env.DB, 120)).days;
    // Retention took everything before Thursday 2026-12-10 10:00; then a fix calls for a rebuild:
    // worker/README.md's recipe clears the job's state, the install states and the hourly counts.
    await env.DB.prepare("DELETE FROM events WHERE received_at < ?1").bind(at("2026-12-10", 10)).run();
    await env.DB.batch(
      ["job_state", "installs", "sessions_hourly"].map((table) => env.DB.prepare(`DELETE FROM ${table}`)),
    );
    await jobUntilCaughtUp(THROUGH_W05);
    expect((await readJobState(env.DB))?.started_at).toBe(at("2026-12-10", 15));
    expect((await getWeekly(env.DB, 520)).weeks).toEqual(weekly);
    expect((await getCohorts(env.DB, 104)).cohorts).toEqual(cohorts);
    expect((await getDailySessions(env.DB, 120)).days).toEqual(daily);
  });

  it("a deployment upgraded from raw events alone catches up in runs within the budget", async () => {
    await seedWeekly();
    // A clock that moves one "millisecond" each time the job looks at it: the budget is a count
    // of chunks, whatever the machine's speed.
    let ticks = 0;
    const clock = () => ++ticks;
    const reports = [];
    for (let i = 0; i < 50; i++) {
      const report = await runJob(env.DB, THROUGH_W05, 90, { budgetMs: 10, clock });
      reports.push(report);
      if (report.caught_up) break;
    }
    expect(reports.length).toBeGreaterThan(1); // the budget split the catch-up
    expect(reports.at(-1)?.caught_up).toBe(true);
    const expected = (await getWeekly(env.DB, 520)).weeks;
    await env.DB.batch(AGGREGATES.map((table) => env.DB.prepare(`DELETE FROM ${table}`)));
    await jobUntilCaughtUp(THROUGH_W05);
    expect((await getWeekly(env.DB, 520)).weeks).toEqual(expected);
  });
});

describe("what D1 bills", () => {
  async function readsOfEveryGet(): Promise<number[]> {
    return [
      (await getStats(env.DB)).rows_read,
      (await getDailySessions(env.DB, 90)).rows_read,
      (await getWeekly(env.DB, 26)).rows_read,
      (await getCohorts(env.DB, 12)).rows_read,
    ];
  }

  it("GET reads do not grow with the number of events", async () => {
    await seed(Array.from({ length: 20 }, () => ({ install: uuid4(), ago: 3 * DAY })));
    await jobUntilCaughtUp(jobTimeFor(NOW));
    const few = await readsOfEveryGet();
    await env.DB.batch(AGGREGATES.map((table) => env.DB.prepare(`DELETE FROM ${table}`)));
    await seed(Array.from({ length: 400 }, () => ({ install: uuid4(), ago: 3 * DAY })));
    await jobUntilCaughtUp(jobTimeFor(NOW));
    expect(await readsOfEveryGet()).toEqual(few);
    expect(few[0]).toBe(1);
  });

  it("an hourly run reads the hour's events and the install states, never the older raw events", async () => {
    async function hourlyRunReads(oldEvents: number): Promise<number> {
      await env.DB.batch(["events", ...AGGREGATES].map((table) => env.DB.prepare(`DELETE FROM ${table}`)));
      const regulars = [uuid4(), uuid4(), uuid4()];
      await seed(Array.from({ length: oldEvents }, (_, i) => ({ install: regulars[i % 3] ?? "", ago: 10 * DAY + i })));
      await jobUntilCaughtUp(jobTimeFor(NOW - HOUR));
      await seed(Array.from({ length: 30 }, (_, i) => ({ install: uuid4(), ago: HOUR - i })));
      const report = await runJob(env.DB, jobTimeFor(NOW), 90);
      expect(report.chunks).toBe(1);
      return report.rows_read;
    }
    const few = await hourlyRunReads(30);
    expect(await hourlyRunReads(900)).toBe(few); // 870 more raw rows in the window: not one more row read
    expect(few).toBeLessThan(10 * 33); // a few reads per new event and per install, nothing more
  });
});
