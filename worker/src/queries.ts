// D1 queries: small functions with bound parameters. Times are epoch seconds; days are UTC.
// Ingest writes one row; every GET reads the aggregates the hourly job keeps (src/job.ts),
// so the rows a GET reads do not grow with the number of events.
import { DAY, dayNumber, dayString } from "./calendar";
import { DIMENSIONS, type Dimension, type TelemetryEvent } from "./event";
import { type StatsFigures, emptyFigures } from "./figures";

export const DEFAULT_RETENTION_DAYS = 90;
export const MIN_RETENTION_DAYS = 31; // above the 30-day window of /v1/stats
export const MAX_DAILY_DAYS = 400;
export const MAX_WEEKLY_WEEKS = 520;
export const MAX_COHORT_WEEKS = 104;
export const COHORT_WEEKS_LATER = 8;

export function insertStatement(db: D1Database, event: TelemetryEvent, receivedAt: number): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO events (session_id, install_id, version, python, os, arch, adapter, timestamp, received_at)
       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
       ON CONFLICT (session_id) DO NOTHING`,
    )
    .bind(
      event.session_id,
      event.install_id,
      event.version,
      event.python,
      event.os,
      event.arch,
      event.adapter,
      event.timestamp,
      receivedAt,
    );
}

/** Store one event; false when its session_id was already stored (a retried delivery). */
export async function insertEvent(db: D1Database, event: TelemetryEvent, receivedAt: number): Promise<boolean> {
  const result = await insertStatement(db, event, receivedAt).run();
  return result.meta.changes === 1;
}

/** What D1 bills a read: the sum of rows read over its statements. */
export type Metered<T> = T & { rows_read: number };

async function readBatch(db: D1Database, statements: D1PreparedStatement[]): Promise<Metered<{ results: D1Result[] }>> {
  const results = await db.batch(statements);
  return { results, rows_read: results.reduce((sum, r) => sum + (r.meta.rows_read ?? 0), 0) };
}

const AS_OF_SQL = "SELECT as_of FROM stats_snapshot WHERE id = 1";

function asOfOf(result: D1Result | undefined): number | null {
  const row = result?.results[0] as { as_of?: number } | undefined;
  return row?.as_of ?? null;
}

/** The figures of /v1/stats as of the job's last run; zeros and `as_of` null before it. */
export async function getStats(db: D1Database): Promise<Metered<{ as_of: number | null; figures: StatsFigures }>> {
  const { results, rows_read } = await readBatch(db, [
    db.prepare("SELECT as_of, figures FROM stats_snapshot WHERE id = 1"),
  ]);
  const row = results[0]?.results[0] as { as_of: number; figures: string } | undefined;
  if (row === undefined) return { as_of: null, figures: emptyFigures(), rows_read };
  return { as_of: row.as_of, figures: JSON.parse(row.figures) as StatsFigures, rows_read };
}

export type DailySessions = { as_of: number | null; days: { day: string; sessions: number }[] };

/**
 * Sessions per UTC day for the `days` days ending on the day of `as_of` (the last one counted
 * up to `as_of`), oldest first, days without sessions as 0. No days before the first run.
 */
export async function getDailySessions(db: D1Database, days: number): Promise<Metered<DailySessions>> {
  const lastDay = `((SELECT as_of FROM stats_snapshot WHERE id = 1) - 1)`;
  const { results, rows_read } = await readBatch(db, [
    db.prepare(AS_OF_SQL),
    db
      .prepare(
        `SELECT day, sessions + sessions_rolled_up AS sessions FROM sessions_daily
         WHERE day >= date(${lastDay} - (?1 - 1) * ${DAY}, 'unixepoch') AND day <= date(${lastDay}, 'unixepoch')`,
      )
      .bind(days),
  ]);
  const asOf = asOfOf(results[0]);
  if (asOf === null) return { as_of: null, days: [], rows_read };
  const rows = (results[1]?.results ?? []) as { day: string; sessions: number }[];
  const counts = new Map(rows.map((row) => [row.day, row.sessions]));
  const last = dayNumber(asOf - 1);
  const answer: DailySessions = { as_of: asOf, days: [] };
  for (let d = last - days + 1; d <= last; d++) {
    answer.days.push({ day: dayString(d), sessions: counts.get(dayString(d)) ?? 0 });
  }
  return { ...answer, rows_read };
}

export type ActiveReturning = { active: number; returning: number };
export type Week = {
  week: string;
  start: string;
  sessions: number;
  installs: { active: number; returning: number; new: number; one_shot: number | null };
  by: Record<Dimension, Record<string, ActiveReturning>>;
};

type WeeklyRow = {
  week: string;
  start: string;
  sessions: number;
  installs_active: number;
  installs_returning: number;
  installs_new: number;
  installs_one_shot: number | null;
};

/** The last `weeks` closed ISO weeks, oldest first, with their figures per dimension value. */
export async function getWeekly(db: D1Database, weeks: number): Promise<Metered<{ as_of: number | null; weeks: Week[] }>> {
  const { results, rows_read } = await readBatch(db, [
    db.prepare(AS_OF_SQL),
    db.prepare("SELECT * FROM (SELECT * FROM weekly ORDER BY week DESC LIMIT ?1) ORDER BY week").bind(weeks),
    db
      .prepare(
        `SELECT week, dimension, value, installs_active, installs_returning FROM weekly_by
         WHERE week IN (SELECT week FROM weekly ORDER BY week DESC LIMIT ?1)
         ORDER BY week, dimension, installs_active DESC, value`,
      )
      .bind(weeks),
  ]);
  const [asOf, weekly, by] = results;
  const result = new Map<string, Week>();
  for (const row of (weekly?.results ?? []) as WeeklyRow[]) {
    result.set(row.week, {
      week: row.week,
      start: row.start,
      sessions: row.sessions,
      installs: {
        active: row.installs_active,
        returning: row.installs_returning,
        new: row.installs_new,
        one_shot: row.installs_one_shot,
      },
      by: { version: {}, python: {}, os: {}, arch: {}, adapter: {} },
    });
  }
  // Cells collected as entries and made an object once: a value named __proto__ is a key like any other.
  type ByRow = { week: string; dimension: Dimension; value: string; installs_active: number; installs_returning: number };
  const cells = new Map<Week, Map<Dimension, [string, ActiveReturning][]>>();
  for (const row of (by?.results ?? []) as ByRow[]) {
    const week = result.get(row.week);
    if (week === undefined || !DIMENSIONS.includes(row.dimension)) continue;
    const ofWeek = cells.get(week) ?? new Map<Dimension, [string, ActiveReturning][]>();
    cells.set(week, ofWeek);
    const entries = ofWeek.get(row.dimension) ?? [];
    ofWeek.set(row.dimension, entries);
    entries.push([row.value, { active: row.installs_active, returning: row.installs_returning }]);
  }
  for (const [week, ofWeek] of cells) {
    for (const [dimension, entries] of ofWeek) week.by[dimension] = Object.fromEntries(entries);
  }
  return { as_of: asOfOf(asOf), weeks: [...result.values()], rows_read };
}

export type Cohort = { week: string; new: number; active_after: (number | null)[] };

/**
 * The last `weeks` closed weeks as cohorts of new installs: how many were active 1 to 8 weeks
 * later, null where that week has not closed.
 */
export async function getCohorts(
  db: D1Database,
  weeks: number,
): Promise<Metered<{ as_of: number | null; cohorts: Cohort[] }>> {
  const { results, rows_read } = await readBatch(db, [
    db.prepare(AS_OF_SQL),
    db
      .prepare("SELECT * FROM (SELECT week, installs_new FROM weekly ORDER BY week DESC LIMIT ?1) ORDER BY week")
      .bind(weeks),
    db
      .prepare(
        `SELECT week, weeks_later, installs_active FROM cohorts
         WHERE week IN (SELECT week FROM weekly ORDER BY week DESC LIMIT ?1)`,
      )
      .bind(weeks),
  ]);
  const [asOf, weekly, later] = results;
  const cohorts = ((weekly?.results ?? []) as { week: string; installs_new: number }[]).map((row) => ({
    week: row.week,
    new: row.installs_new,
    active_after: new Array<number | null>(COHORT_WEEKS_LATER).fill(null),
  }));
  const byWeek = new Map(cohorts.map((cohort) => [cohort.week, cohort]));
  for (const row of (later?.results ?? []) as { week: string; weeks_later: number; installs_active: number }[]) {
    const cohort = byWeek.get(row.week);
    if (cohort !== undefined && row.weeks_later >= 1 && row.weeks_later <= COHORT_WEEKS_LATER) {
      cohort.active_after[row.weeks_later - 1] = row.installs_active;
    }
  }
  return { as_of: asOfOf(asOf), cohorts, rows_read };
}

/** RETENTION_DAYS: unset means 90; an integer of at least 31 is used; anything else is null. */
export function parseRetentionDays(value: string | undefined): number | null {
  if (value === undefined || value.trim() === "") return DEFAULT_RETENTION_DAYS;
  if (!/^\d{1,6}$/.test(value.trim())) return null;
  const days = Number(value.trim());
  return days >= MIN_RETENTION_DAYS ? days : null;
}

