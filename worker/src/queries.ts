// D1 queries: small functions with bound parameters. Times are epoch seconds; days are UTC.
import type { TelemetryEvent } from "./event";

export const DAY = 86_400;
export const DEFAULT_RETENTION_DAYS = 90;
export const MIN_RETENTION_DAYS = 31; // above the 30-day stats window, which reads raw rows only
export const MAX_DAILY_DAYS = 400;
export const DIMENSIONS = ["version", "python", "os", "arch", "adapter"] as const;
export type Dimension = (typeof DIMENSIONS)[number];

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

export type Windowed = { "1d": number; "7d": number; "30d": number };
export type Stats = {
  generated_at: string;
  installs: Windowed;
  sessions: Windowed;
  returning_installs_30d: number;
  by: Record<Dimension, Record<string, number>>;
};

type Totals = {
  installs_1d: number;
  installs_7d: number;
  installs_30d: number;
  sessions_1d: number;
  sessions_7d: number;
  sessions_30d: number;
};

/**
 * The statements behind getStats. Each reads only the last 30 days of rows, through the
 * (received_at, install_id) index, so reads grow with recent traffic, not with history.
 */
export function statsStatements(db: D1Database, now: number): D1PreparedStatement[] {
  const since1 = now - DAY;
  const since7 = now - 7 * DAY;
  const since30 = now - 30 * DAY;
  return [
    db
      .prepare(
        `SELECT COUNT(DISTINCT CASE WHEN received_at >= ?1 THEN install_id END) AS installs_1d,
                COUNT(DISTINCT CASE WHEN received_at >= ?2 THEN install_id END) AS installs_7d,
                COUNT(DISTINCT install_id) AS installs_30d,
                COUNT(CASE WHEN received_at >= ?1 THEN 1 END) AS sessions_1d,
                COUNT(CASE WHEN received_at >= ?2 THEN 1 END) AS sessions_7d,
                COUNT(*) AS sessions_30d
         FROM events WHERE received_at >= ?3`,
      )
      .bind(since1, since7, since30),
    db
      .prepare(
        `SELECT COUNT(*) AS installs FROM (
           SELECT install_id FROM events WHERE received_at >= ?1
           GROUP BY install_id HAVING COUNT(DISTINCT received_at / ${DAY}) >= 2)`,
      )
      .bind(since30),
    // Column names come from DIMENSIONS, never from a request.
    ...DIMENSIONS.map((dimension) =>
      db
        .prepare(
          `SELECT ${dimension} AS value, COUNT(DISTINCT install_id) AS installs
           FROM events WHERE received_at >= ?1 GROUP BY ${dimension} ORDER BY installs DESC, value`,
        )
        .bind(since30),
    ),
  ];
}

/**
 * Installs and sessions over rolling 1/7/30-day windows by receive time, installs seen on
 * two or more UTC days, and distinct installs per dimension value over 30 days.
 */
export async function getStats(db: D1Database, now: number): Promise<Stats> {
  const [totals, returning, ...by] = await db.batch<Record<string, unknown>>(statsStatements(db, now));
  const t = (totals?.results[0] ?? {}) as Partial<Totals>;
  const byDimension = Object.fromEntries(
    DIMENSIONS.map((dimension, i) => [
      dimension,
      Object.fromEntries((by[i]?.results ?? []).map((row) => [String(row.value), Number(row.installs)])),
    ]),
  ) as Record<Dimension, Record<string, number>>;
  return {
    generated_at: isoSeconds(now),
    installs: { "1d": t.installs_1d ?? 0, "7d": t.installs_7d ?? 0, "30d": t.installs_30d ?? 0 },
    sessions: { "1d": t.sessions_1d ?? 0, "7d": t.sessions_7d ?? 0, "30d": t.sessions_30d ?? 0 },
    returning_installs_30d: Number(returning?.results[0]?.installs ?? 0),
    by: byDimension,
  };
}

export type DailySessions = { days: { day: string; sessions: number }[] };

/** Sessions per UTC day for the last `days` days (today included), raw and rolled-up rows alike. */
export async function getDailySessions(db: D1Database, now: number, days: number): Promise<DailySessions> {
  const today = Math.floor(now / DAY);
  const first = today - days + 1;
  const [raw, rolled] = await db.batch<{ day: string; sessions: number }>([
    db
      .prepare(
        `SELECT strftime('%Y-%m-%d', received_at, 'unixepoch') AS day, COUNT(*) AS sessions
         FROM events WHERE received_at >= ?1 GROUP BY received_at / ${DAY}`,
      )
      .bind(first * DAY),
    db
      .prepare(`SELECT day, SUM(sessions) AS sessions FROM daily_counts WHERE day >= ?1 GROUP BY day`)
      .bind(utcDay(first * DAY)),
  ]);
  const counts = new Map<string, number>();
  for (const row of [...(raw?.results ?? []), ...(rolled?.results ?? [])]) {
    counts.set(row.day, (counts.get(row.day) ?? 0) + Number(row.sessions));
  }
  const result: DailySessions = { days: [] };
  for (let d = first; d <= today; d++) {
    const day = utcDay(d * DAY);
    result.days.push({ day, sessions: counts.get(day) ?? 0 });
  }
  return result;
}

/**
 * Roll raw events older than the retention window into daily_counts and delete them, in one
 * transaction. A second run finds nothing left to move, so running twice changes nothing.
 */
export async function rollUpAndDelete(
  db: D1Database,
  now: number,
  retentionDays: number,
): Promise<{ rolledUp: number; deleted: number }> {
  const cutoff = now - retentionDays * DAY;
  const [rollup, deletion] = await db.batch([
    db
      .prepare(
        `INSERT INTO daily_counts (day, version, python, os, arch, adapter, sessions)
         SELECT strftime('%Y-%m-%d', received_at, 'unixepoch'), version, python, os, arch, adapter, COUNT(*)
         FROM events WHERE received_at < ?1
         GROUP BY 1, 2, 3, 4, 5, 6
         ON CONFLICT (day, version, python, os, arch, adapter) DO UPDATE SET sessions = sessions + excluded.sessions`,
      )
      .bind(cutoff),
    db.prepare(`DELETE FROM events WHERE received_at < ?1`).bind(cutoff),
  ]);
  return { rolledUp: rollup?.meta.changes ?? 0, deleted: deletion?.meta.changes ?? 0 };
}

/** RETENTION_DAYS: unset means 90; an integer of at least 31 is used; anything else is null. */
export function parseRetentionDays(value: string | undefined): number | null {
  if (value === undefined || value.trim() === "") return DEFAULT_RETENTION_DAYS;
  if (!/^\d{1,6}$/.test(value.trim())) return null;
  const days = Number(value.trim());
  return days >= MIN_RETENTION_DAYS ? days : null;
}

export function utcDay(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString().slice(0, 10);
}

export function isoSeconds(epochSeconds: number): string {
  return new Date(Math.floor(epochSeconds) * 1000).toISOString().replace(".000Z", "Z");
}
