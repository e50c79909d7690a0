// The hourly job: reads raw events once, an hour at a time in received_at order, into the
// aggregates of migration 0003; closes each ISO week as the watermark passes it; refreshes the
// /v1/stats snapshot; deletes raw rows and install ids past RETENTION_DAYS.
//
// Every step of a chunk is idempotent and the watermark moves in the chunk's last statement, so
// a run that stops anywhere (or a chunk run twice) is repaired by the next run. Chunks never
// cross a UTC midnight, so day and week boundaries fall between chunks.
import { DAY, HOUR, dayNumber, dayString, isoWeek, mondayOf } from "./calendar";
import { DIMENSIONS, type Dimension } from "./event";
import { type StatsFigures, emptyFigures, topValues } from "./figures";

/**
 * Events commit to D1 a little after their received_at: the job reads only hours that ended at
 * least this long before it runs. The cron runs at minute 7 (wrangler.jsonc), past this margin,
 * so each run reads the hour that has just ended.
 */
export const SAFETY_MARGIN = 300;
/** A run stops starting new chunks after this long; the next run goes on (D1: 30 s a query). */
export const CHUNK_BUDGET_MS = 6_000;
/** Retention's own share of every run, after the chunks: it never starves behind a catch-up. */
export const RETENTION_BUDGET_MS = 2_000;
/** A run's lease; a run that died leaves one that expires long before the next hourly run. */
export const LEASE_MS = 15 * 60_000;
/** Install states outlive any RETENTION_DAYS by this much at least: the 62-day mask, and the
 * cohorts of +1 to +8 weeks, need an install's first day for 8 weeks and more. */
export const MIN_INSTALL_STATE_DAYS = 62;
export const HOURLY_KEPT_DAYS = 32;
const DELETE_SLICE = 10_000;

export type JobOptions = {
  /** Milliseconds, for the budgets and the lease (tests count with it). */
  clock?: () => number;
  budgetMs?: number;
  retentionBudgetMs?: number;
  /** The run's lease holder id; random by default. */
  holder?: string;
};

export type StatementCost = { sql: string; ms: number; rows_read: number; rows_written: number };

export type JobReport = {
  /** false: another run held the lease, and this one changed nothing. */
  ran: boolean;
  watermark: number | null;
  caught_up: boolean;
  chunks: number;
  weeks_closed: string[];
  events_deleted: number;
  installs_deleted: number;
  rows_read: number;
  rows_written: number;
  slowest: StatementCost | null;
  ms: number;
};

type Meter = { report: JobReport; clock: () => number; holder: string };

/**
 * One D1 batch of the run, fenced: it starts by checking that the run still holds the lease and
 * ends by clearing the check (migration 0004's job_fence), so a run whose lease was taken over
 * fails the batch whole instead of writing over a later run.
 */
async function run(db: D1Database, meter: Meter, statements: D1PreparedStatement[]): Promise<D1Result[]> {
  if (statements.length === 0) return [];
  const fenced = [fenceStatement(db, meter.holder), ...statements, statement(db, "DELETE FROM job_fence")];
  const results = (await db.batch(fenced)).slice(1, -1);
  results.forEach((result, i) => {
    const cost = {
      sql: sqlOf(statements[i]),
      ms: result.meta.duration ?? 0,
      rows_read: result.meta.rows_read ?? 0,
      rows_written: result.meta.rows_written ?? 0,
    };
    meter.report.rows_read += cost.rows_read;
    meter.report.rows_written += cost.rows_written;
    if (meter.report.slowest === null || cost.ms > meter.report.slowest.ms) meter.report.slowest = cost;
  });
  return results;
}

export function fenceStatement(db: D1Database, holder: string): D1PreparedStatement {
  return statement(db, "INSERT INTO job_fence (lease_held) SELECT COUNT(*) FROM job_lease WHERE id = 1 AND holder = ?1", holder);
}

/** The SQL and parameters of each statement the job builds, for its report and its tests (D1
 * gives a prepared statement no getter). */
const WRITTEN = new WeakMap<D1PreparedStatement, { sql: string; params: unknown[] }>();

/** `db.prepare(sql).bind(...params)`, remembering both. */
function statement(db: D1Database, sql: string, ...params: unknown[]): D1PreparedStatement {
  const prepared = db.prepare(sql).bind(...params);
  WRITTEN.set(prepared, { sql, params });
  return prepared;
}

/** A statement the job built, as written: its SQL and the parameters bound to it. */
export function asWritten(prepared: D1PreparedStatement | undefined): { sql: string; params: unknown[] } {
  return (prepared && WRITTEN.get(prepared)) ?? { sql: "", params: [] };
}

function sqlOf(prepared: D1PreparedStatement | undefined): string {
  return asWritten(prepared).sql.replace(/\s+/g, " ").trim().slice(0, 80);
}

// -- the chunk: raw events [from, to) ---------------------------------------------------------

/**
 * Where the chunk starting at `from` ends: the next hour that has events, never past the next
 * UTC midnight or `target`. Runs of empty hours are skipped in one step.
 */
export async function chunkEnd(db: D1Database, from: number, target: number): Promise<number> {
  const limit = Math.min(target, (dayNumber(from) + 1) * DAY);
  const row = await db
    .prepare("SELECT MIN(received_at) AS next FROM events WHERE received_at >= ?1 AND received_at < ?2")
    .bind(from, limit)
    .first<{ next: number | null }>();
  if (row?.next === null || row?.next === undefined) return limit;
  const hour = Math.floor(row.next / HOUR) * HOUR;
  return hour > from ? hour : Math.min(from + HOUR, limit);
}

/**
 * The statements of one chunk, the watermark last. `from` and `to` are hour boundaries of one UTC
 * day; `startedAt` is where this build of the aggregates began (job_state.started_at).
 */
export function chunkStatements(db: D1Database, from: number, to: number, startedAt: number): D1PreparedStatement[] {
  const day = dayNumber(from);
  const statements: D1PreparedStatement[] = [];
  if (to - from <= HOUR) {
    statements.push(
      statement(
        db,
        `INSERT INTO sessions_hourly (hour, sessions)
         SELECT ?1, COUNT(*) FROM events WHERE received_at >= ?1 AND received_at < ?2
         ON CONFLICT (hour) DO UPDATE SET sessions = excluded.sessions`,
        from,
        to,
      ),
      // The day this build began in is partial (?4, started_at, after its midnight ?2): a rebuild
      // never lowers what an earlier build counted.
      statement(
        db,
        `INSERT INTO sessions_daily (day, sessions)
         SELECT ?1, COALESCE(SUM(sessions), 0) FROM sessions_hourly WHERE hour >= ?2 AND hour < ?3
         ON CONFLICT (day) DO UPDATE SET sessions =
           CASE WHEN ?4 > ?2 THEN MAX(sessions, excluded.sessions) ELSE excluded.sessions END`,
        dayString(day),
        day * DAY,
        (day + 1) * DAY,
        startedAt,
      ),
      installsStatement(db, from, to, day),
    );
  }
  const closed = weekClosedAt(to);
  if (closed !== null) {
    statements.push(...weekCloseStatements(db, closed, startedAt));
  }
  statements.push(watermarkStatement(db, to, startedAt));
  return statements;
}

/** The Monday of the week that a watermark at `to` has just closed, when `to` is a Monday midnight. */
function weekClosedAt(to: number): number | null {
  return to % DAY === 0 && mondayOf(dayNumber(to)) === dayNumber(to) ? dayNumber(to) - 7 : null;
}

function watermarkStatement(db: D1Database, watermark: number, startedAt: number): D1PreparedStatement {
  // MAX: whatever happens, the watermark never moves back.
  return statement(
    db,
    `INSERT INTO job_state (id, watermark, started_at) VALUES (1, ?1, ?2)
     ON CONFLICT (id) DO UPDATE SET watermark = MAX(job_state.watermark, excluded.watermark)`,
    watermark,
    startedAt,
  );
}

/**
 * The day mask of an install state (migration 0003): bit i set means seen on UTC day
 * `mask_day - i`, for the DAY_MASK_DAYS days up to mask_day; 4611686018427387903 is
 * 2^DAY_MASK_DAYS - 1 (SQLite integers are signed 64-bit). The weekly figures read 28 days of it
 * (returning), the one-shot figure 14 from the first day, so states are kept at least 62 days.
 */
export const DAY_MASK_DAYS = 62;

/**
 * Each install seen in the chunk [?1, ?2) of UTC day ?3, merged into its state. SET reads the row
 * as it was, so the order of the assignments does not matter; applying the same chunk twice
 * changes nothing. One MAX() and bare columns: SQLite takes the values from the row with the
 * latest received_at.
 */
function installsStatement(db: D1Database, from: number, to: number, day: number): D1PreparedStatement {
  return statement(
    db,
    `INSERT INTO installs (install_id, first_day, last_seen, prev_day_last_seen, mask_day, days_mask,
                           version, python, os, arch, adapter)
     SELECT install_id, ?3, MAX(received_at), NULL, ?3, 1, version, python, os, arch, adapter
     FROM events WHERE received_at >= ?1 AND received_at < ?2 GROUP BY install_id
     ON CONFLICT (install_id) DO UPDATE SET
       prev_day_last_seen = CASE WHEN ?3 > installs.last_seen / 86400 THEN installs.last_seen
                                 ELSE installs.prev_day_last_seen END,
       days_mask = CASE WHEN ?3 >= installs.mask_day
                        THEN ((installs.days_mask << (?3 - installs.mask_day)) | 1) & 4611686018427387903
                        ELSE installs.days_mask | (1 << (installs.mask_day - ?3)) END,
       mask_day = MAX(installs.mask_day, ?3),
       version = CASE WHEN excluded.last_seen >= installs.last_seen THEN excluded.version ELSE installs.version END,
       python = CASE WHEN excluded.last_seen >= installs.last_seen THEN excluded.python ELSE installs.python END,
       os = CASE WHEN excluded.last_seen >= installs.last_seen THEN excluded.os ELSE installs.os END,
       arch = CASE WHEN excluded.last_seen >= installs.last_seen THEN excluded.arch ELSE installs.arch END,
       adapter = CASE WHEN excluded.last_seen >= installs.last_seen THEN excluded.adapter ELSE installs.adapter END,
       last_seen = MAX(installs.last_seen, excluded.last_seen)`,
    from,
    to,
    day,
  );
}

// -- closing a week ---------------------------------------------------------------------------

/**
 * The week that starts on Monday `monday` has just closed: its row, its rows per dimension value,
 * the one-shot installs of the week two before it (whose 14 days are now over), and the cohorts
 * it is week 1 to 8 of. Run with the install states as of the week's end.
 *
 * One rule for a figure that reaches back before `startedAt` (where this build of the
 * aggregates began): it saw only part of its data, so it is written only where none is stored.
 * Each statement takes it as one parameter, `whole` (1 or 0).
 *
 * Returning (seen on two or more UTC days in the 28 days ending on the week's Sunday) and one-shot
 * (seen on exactly one UTC day in the 14 days from its first day) read the day mask: with `days`
 * the mask bits of a window, `(days & (days - 1)) <> 0` says two bits or more, `= 0` one at most.
 */
export function weekCloseStatements(db: D1Database, monday: number, startedAt: number): D1PreparedStatement[] {
  const week = isoWeek(monday);
  const start = monday * DAY;
  const sunday = monday + 6;
  const whole = (firstDay: number) => (firstDay * DAY >= startedAt ? 1 : 0);
  const twoWeeksBefore = monday - 14;
  const statements = [
    statement(
      db,
      `WITH week_installs AS (
         SELECT first_day, days_mask & ((1 << (28 - (?5 - mask_day))) - 1) AS last_28_days
         FROM installs WHERE last_seen >= ?4
       )
       INSERT INTO weekly (week, start, sessions, installs_active, installs_returning, installs_new, installs_one_shot)
       SELECT ?1, ?2,
              (SELECT COALESCE(SUM(sessions + sessions_rolled_up), 0) FROM sessions_daily WHERE day >= ?2 AND day <= ?3),
              COUNT(*),
              COALESCE(SUM((last_28_days & (last_28_days - 1)) <> 0), 0),
              COALESCE(SUM(first_day >= ?6), 0),
              NULL
       FROM week_installs WHERE true
       ON CONFLICT (week) DO UPDATE SET
         sessions = excluded.sessions, installs_active = excluded.installs_active,
         installs_returning = excluded.installs_returning, installs_new = excluded.installs_new,
         installs_one_shot = NULL
       WHERE ?7`,
      week,
      dayString(monday),
      dayString(sunday),
      start,
      sunday,
      monday,
      whole(monday),
    ),
    // A whole week replaces its rows per value; a partial one keeps those it has (INSERT OR IGNORE).
    statement(db, "DELETE FROM weekly_by WHERE week = ?1 AND ?2", week, whole(monday)),
    // Per dimension, the top values by active installs; the rest as one row, '(other)' (OTHER_VALUES).
    statement(
      db,
      `WITH week_installs AS (
         SELECT version, python, os, arch, adapter,
                days_mask & ((1 << (28 - (?3 - mask_day))) - 1) AS last_28_days
         FROM installs WHERE last_seen >= ?2
       ),
       sightings AS (
         SELECT dimension.name AS dimension,
                CASE dimension.name WHEN 'version' THEN version WHEN 'python' THEN python WHEN 'os' THEN os
                                    WHEN 'arch' THEN arch ELSE adapter END AS value,
                (last_28_days & (last_28_days - 1)) <> 0 AS is_returning
         FROM week_installs
         CROSS JOIN (SELECT 'version' AS name UNION ALL SELECT 'python' UNION ALL SELECT 'os'
                     UNION ALL SELECT 'arch' UNION ALL SELECT 'adapter') AS dimension
       ),
       ranked AS (
         SELECT dimension, value, COUNT(*) AS active, SUM(is_returning) AS returning_installs,
                ROW_NUMBER() OVER (PARTITION BY dimension ORDER BY COUNT(*) DESC, value) AS rank
         FROM sightings GROUP BY dimension, value
       )
       INSERT OR IGNORE INTO weekly_by (week, dimension, value, installs_active, installs_returning)
       SELECT ?1, dimension, CASE WHEN rank <= 25 THEN value ELSE '(other)' END AS folded,
              SUM(active), SUM(returning_installs)
       FROM ranked GROUP BY dimension, folded`,
      week,
      start,
      sunday,
    ),
    statement(
      db,
      `UPDATE weekly SET installs_one_shot = (
         SELECT COUNT(*) FROM (
           SELECT (days_mask >> MAX(0, mask_day - first_day - 13))
                    & ((1 << (MIN(mask_day - first_day, 13) + 1)) - 1) AS first_14_days
           FROM installs WHERE first_day >= ?2 AND first_day < ?2 + 7
         )
         WHERE (first_14_days & (first_14_days - 1)) = 0
       )
       WHERE week = ?1 AND (?3 OR installs_one_shot IS NULL)`,
      isoWeek(twoWeeksBefore),
      twoWeeksBefore,
      whole(twoWeeksBefore),
    ),
  ];
  for (let later = 1; later <= 8; later++) {
    const cohortMonday = monday - 7 * later;
    statements.push(
      statement(
        db,
        `INSERT INTO cohorts (week, weeks_later, installs_active)
         SELECT ?1, ?2, n FROM
           (SELECT COUNT(*) AS n FROM installs WHERE first_day >= ?3 AND first_day < ?3 + 7 AND last_seen >= ?4)
         WHERE EXISTS (SELECT 1 FROM weekly WHERE week = ?1)
         ON CONFLICT (week, weeks_later) DO UPDATE SET installs_active = excluded.installs_active WHERE ?5`,
        isoWeek(cohortMonday),
        later,
        cohortMonday,
        start,
        whole(cohortMonday),
      ),
    );
  }
  return statements;
}

// -- the /v1/stats snapshot -----------------------------------------------------------------

type InstallGroup = Record<Dimension, string> & { d30: number; d7: number; d1: number; returning_30d: number };

/** The figures of /v1/stats for the N x 24 h ending at `asOf`, from install states and hourly sessions. */
async function computeFigures(db: D1Database, meter: Meter, asOf: number): Promise<StatsFigures> {
  const since = (days: number) => asOf - days * DAY;
  const [groups, sessions] = await run(db, meter, [
    statement(
      db,
      `SELECT version, python, os, arch, adapter, COUNT(*) AS d30, SUM(last_seen >= ?2) AS d7, SUM(last_seen >= ?3) AS d1,
              SUM(COALESCE(prev_day_last_seen, 0) >= ?1) AS returning_30d
       FROM installs WHERE last_seen >= ?1 AND last_seen < ?4
       GROUP BY version, python, os, arch, adapter`,
      since(30),
      since(7),
      since(1),
      asOf,
    ),
    statement(
      db,
      `SELECT COALESCE(SUM(sessions), 0) AS d30, COALESCE(SUM(CASE WHEN hour >= ?2 THEN sessions END), 0) AS d7,
              COALESCE(SUM(CASE WHEN hour >= ?3 THEN sessions END), 0) AS d1
       FROM sessions_hourly WHERE hour >= ?1 AND hour < ?4`,
      since(30),
      since(7),
      since(1),
      asOf,
    ),
  ]);
  const figures = emptyFigures();
  const counts = new Map(DIMENSIONS.map((dimension) => [dimension, new Map<string, number>()]));
  for (const group of (groups?.results ?? []) as InstallGroup[]) {
    figures.installs["30d"] += group.d30;
    figures.installs["7d"] += group.d7;
    figures.installs["1d"] += group.d1;
    figures.returning_installs_30d += group.returning_30d;
    for (const [dimension, byValue] of counts) {
      byValue.set(group[dimension], (byValue.get(group[dimension]) ?? 0) + group.d30);
    }
  }
  for (const [dimension, byValue] of counts) figures.by[dimension] = topValues(byValue);
  const s = (sessions?.results[0] ?? {}) as Partial<InstallGroup>;
  figures.sessions = { "1d": s.d1 ?? 0, "7d": s.d7 ?? 0, "30d": s.d30 ?? 0 };
  return figures;
}

// -- retention ------------------------------------------------------------------------------

/**
 * Raw events older than `eventsCutoff` and install states unseen since `installsCutoff` go, a
 * slice at a time, until done or `deadline`.
 */
async function deleteExpired(
  db: D1Database,
  meter: Meter,
  eventsCutoff: number,
  installsCutoff: number,
  deadline: number,
): Promise<void> {
  for (;;) {
    const oldest = await db.prepare("SELECT MIN(received_at) AS t FROM events").first<{ t: number | null }>();
    if (oldest?.t === null || oldest?.t === undefined || oldest.t >= eventsCutoff || meter.clock() > deadline) break;
    const sliceEnd = Math.min(eventsCutoff, Math.floor(oldest.t / HOUR) * HOUR + HOUR);
    const [deleted] = await run(db, meter, [statement(db, "DELETE FROM events WHERE received_at < ?1", sliceEnd)]);
    meter.report.events_deleted += deleted?.meta.changes ?? 0;
  }
  for (;;) {
    if (meter.clock() > deadline) break;
    const [deleted] = await run(db, meter, [
      statement(
        db,
        `DELETE FROM installs WHERE install_id IN
           (SELECT install_id FROM installs WHERE last_seen < ?1 LIMIT ?2)`,
        installsCutoff,
        DELETE_SLICE,
      ),
    ]);
    const changes = deleted?.meta.changes ?? 0;
    meter.report.installs_deleted += changes;
    if (changes < DELETE_SLICE) break;
  }
}

// -- the run --------------------------------------------------------------------------------

export async function readJobState(db: D1Database): Promise<{ watermark: number; started_at: number } | null> {
  return db.prepare("SELECT watermark, started_at FROM job_state WHERE id = 1").first();
}

export async function readWatermark(db: D1Database): Promise<number | null> {
  return (await readJobState(db))?.watermark ?? null;
}

/** Take the lease for `holder` unless another run holds a live one; true when taken. */
export async function takeLease(db: D1Database, holder: string, nowMs: number): Promise<boolean> {
  const row = await db
    .prepare(
      `INSERT INTO job_lease (id, holder, expires_at) VALUES (1, ?1, ?2)
       ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE job_lease.expires_at <= ?3
       RETURNING holder`,
    )
    .bind(holder, nowMs + LEASE_MS, nowMs)
    .first<{ holder: string }>();
  return row?.holder === holder;
}

export async function releaseLease(db: D1Database, holder: string): Promise<void> {
  await db.prepare("DELETE FROM job_lease WHERE id = 1 AND holder = ?1").bind(holder).run();
}

function emptyReport(): JobReport {
  return {
    ran: false,
    watermark: null,
    caught_up: false,
    chunks: 0,
    weeks_closed: [],
    events_deleted: 0,
    installs_deleted: 0,
    rows_read: 0,
    rows_written: 0,
    slowest: null,
    ms: 0,
  };
}

/**
 * One run of the job at time `now` (epoch seconds), under the lease: chunks until caught up to
 * the last full hour before `now - SAFETY_MARGIN` or out of their budget, then the snapshot as of
 * the watermark, then retention with its own budget. A run that finds another's live lease
 * changes nothing (`ran: false`).
 */
export async function runJob(
  db: D1Database,
  now: number,
  retentionDays: number,
  options: JobOptions = {},
): Promise<JobReport> {
  const clock = options.clock ?? Date.now;
  const holder = options.holder ?? crypto.randomUUID();
  const began = clock();
  const meter: Meter = { clock, holder, report: emptyReport() };
  if (!(await takeLease(db, holder, began))) return meter.report;
  try {
    await runChunksSnapshotRetention(db, meter, now, retentionDays, options);
  } finally {
    await releaseLease(db, holder);
  }
  meter.report.ran = true;
  meter.report.ms = clock() - began;
  return meter.report;
}

async function runChunksSnapshotRetention(
  db: D1Database,
  meter: Meter,
  now: number,
  retentionDays: number,
  options: JobOptions,
): Promise<void> {
  const { clock } = meter;
  const chunksDeadline = clock() + (options.budgetMs ?? CHUNK_BUDGET_MS);
  const target = Math.floor((now - SAFETY_MARGIN) / HOUR) * HOUR;
  const state = await readJobState(db);
  let watermark = state?.watermark ?? null;
  if (watermark === null) {
    const oldest = await db.prepare("SELECT MIN(received_at) AS t FROM events").first<{ t: number | null }>();
    watermark = oldest?.t == null ? target : Math.min(target, Math.floor(oldest.t / HOUR) * HOUR);
  }
  const startedAt = state?.started_at ?? watermark;
  while (watermark < target && clock() < chunksDeadline) {
    const to = await chunkEnd(db, watermark, target);
    await run(db, meter, chunkStatements(db, watermark, to, startedAt));
    const closed = weekClosedAt(to);
    if (closed !== null) meter.report.weeks_closed.push(isoWeek(closed));
    meter.report.chunks += 1;
    watermark = to;
  }
  const figures = await computeFigures(db, meter, watermark);
  await run(db, meter, [
    statement(db, "INSERT OR REPLACE INTO stats_snapshot (id, as_of, figures) VALUES (1, ?1, ?2)", watermark, JSON.stringify(figures)),
    watermarkStatement(db, watermark, startedAt),
    statement(db, "DELETE FROM sessions_hourly WHERE hour < ?1", watermark - HOURLY_KEPT_DAYS * DAY),
  ]);
  // Only what the aggregates already hold may go: nothing at or past the watermark.
  const counted = Math.min(now, watermark);
  const retentionDeadline = clock() + (options.retentionBudgetMs ?? RETENTION_BUDGET_MS);
  await deleteExpired(
    db,
    meter,
    counted - retentionDays * DAY,
    counted - Math.max(retentionDays, MIN_INSTALL_STATE_DAYS) * DAY,
    retentionDeadline,
  );
  meter.report.watermark = watermark;
  meter.report.caught_up = watermark >= target;
}
