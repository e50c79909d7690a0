-- Migration number: 0003 	 Aggregates the hourly job maintains, so that every GET reads a few stored rows.

-- Raw events stay the source of truth (events: the eight fields and received_at). The job reads
-- them once, an hour at a time, in received_at order, and keeps what each figure needs:
-- nothing here holds more than an install id and when and where it was seen.

-- How far the job has read: every event with received_at < watermark is in the aggregates.
-- No row until the first run, which starts at the oldest raw event, so an upgraded deployment
-- (or one whose aggregates were cleared to rebuild them) catches up by itself.
-- started_at: where this build of the aggregates began. A week that began before it is partial:
-- its rows are written only where none exist, so a rebuild never overwrites a week it cannot see whole.
CREATE TABLE job_state (
  id         INTEGER PRIMARY KEY CHECK (id = 1),
  watermark  INTEGER NOT NULL,  -- epoch seconds, an hour boundary
  started_at INTEGER NOT NULL
);

-- One row per install seen in the last RETENTION_DAYS (deleted after that long unseen).
--   first_day           UTC day number (epoch seconds / 86400) of its first session
--   last_seen           received_at of its latest session
--   prev_day_last_seen  received_at of its latest session on an earlier UTC day than last_seen's
--                       (so "seen on two UTC days within a window ending now" is last_seen and
--                       prev_day_last_seen both inside it)
--   days_mask           bit i set: seen on UTC day mask_day - i (62 days)
--   version ... adapter the values of its latest session
CREATE TABLE installs (
  install_id         TEXT    NOT NULL PRIMARY KEY,
  first_day          INTEGER NOT NULL,
  last_seen          INTEGER NOT NULL,
  prev_day_last_seen INTEGER,
  mask_day           INTEGER NOT NULL,
  days_mask          INTEGER NOT NULL,
  version            TEXT    NOT NULL,
  python             TEXT    NOT NULL,
  os                 TEXT    NOT NULL,
  arch               TEXT    NOT NULL,
  adapter            TEXT    NOT NULL
) WITHOUT ROWID;

-- Cohorts and one-shot installs select by first day; the job never changes it once set.
CREATE INDEX installs_first_day ON installs (first_day);

-- Sessions per hour (epoch seconds of the hour), for the rolling windows of /v1/stats; 32 days kept.
CREATE TABLE sessions_hourly (
  hour     INTEGER NOT NULL PRIMARY KEY,
  sessions INTEGER NOT NULL
);

-- Sessions per UTC day, kept forever. sessions_rolled_up holds what the retention job of
-- migration 0001 had rolled into daily_counts before this upgrade; the job never writes it.
CREATE TABLE sessions_daily (
  day                TEXT    NOT NULL PRIMARY KEY,  -- YYYY-MM-DD
  sessions           INTEGER NOT NULL DEFAULT 0,
  sessions_rolled_up INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

INSERT INTO sessions_daily (day, sessions_rolled_up)
SELECT day, SUM(sessions) FROM daily_counts GROUP BY day;

-- One row per closed ISO week, written when the week closes, kept forever.
-- installs_one_shot stays NULL until the 14 days from the first day of every new install are over.
CREATE TABLE weekly (
  week               TEXT    NOT NULL PRIMARY KEY,  -- 2026-W47
  start              TEXT    NOT NULL,              -- its Monday, YYYY-MM-DD
  sessions           INTEGER NOT NULL,
  installs_active    INTEGER NOT NULL,
  installs_returning INTEGER NOT NULL,
  installs_new       INTEGER NOT NULL,
  installs_one_shot  INTEGER
) WITHOUT ROWID;

-- Active and returning installs per dimension value in a closed week, each install under its
-- latest value that week.
CREATE TABLE weekly_by (
  week               TEXT    NOT NULL,
  dimension          TEXT    NOT NULL,  -- version, python, os, arch, adapter
  value              TEXT    NOT NULL,
  installs_active    INTEGER NOT NULL,
  installs_returning INTEGER NOT NULL,
  PRIMARY KEY (week, dimension, value)
) WITHOUT ROWID;

-- Of the installs new in `week`, how many were active `weeks_later` (1 to 8) weeks later;
-- written when that later week closes.
CREATE TABLE cohorts (
  week            TEXT    NOT NULL,
  weeks_later     INTEGER NOT NULL,
  installs_active INTEGER NOT NULL,
  PRIMARY KEY (week, weeks_later)
) WITHOUT ROWID;

-- GET /v1/stats, as of the job's last run: one row, its figures as JSON.
CREATE TABLE stats_snapshot (
  id      INTEGER PRIMARY KEY CHECK (id = 1),
  as_of   INTEGER NOT NULL,
  figures TEXT    NOT NULL
);
