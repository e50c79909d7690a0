-- Migration number: 0001 	 The raw events and their daily rollups.

-- One row per session: the contract's eight fields and the server's receive time, nothing else.
-- session_id is the key, so a retried delivery is stored once.
CREATE TABLE events (
  session_id  TEXT    NOT NULL PRIMARY KEY,
  install_id  TEXT    NOT NULL,
  version     TEXT    NOT NULL,
  python      TEXT    NOT NULL,
  os          TEXT    NOT NULL,
  arch        TEXT    NOT NULL,
  adapter     TEXT    NOT NULL,
  timestamp   REAL    NOT NULL,
  received_at INTEGER NOT NULL  -- epoch seconds, set by the collector
) WITHOUT ROWID;

-- Every stats query and the retention job read a range of receive times; covering the
-- install id lets the windowed counts skip the table.
CREATE INDEX events_received_at ON events (received_at, install_id);

-- Session counts per UTC day and dimension, for events past the retention window.
CREATE TABLE daily_counts (
  day      TEXT    NOT NULL,  -- YYYY-MM-DD, UTC
  version  TEXT    NOT NULL,
  python   TEXT    NOT NULL,
  os       TEXT    NOT NULL,
  arch     TEXT    NOT NULL,
  adapter  TEXT    NOT NULL,
  sessions INTEGER NOT NULL,
  PRIMARY KEY (day, version, python, os, arch, adapter)
) WITHOUT ROWID;
