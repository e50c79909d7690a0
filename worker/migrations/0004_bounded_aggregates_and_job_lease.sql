-- Migration number: 0004 	 The collector on the open internet: bounded aggregates, one job run at a time.

-- A run of the hourly job holds this lease while it works: a run that finds a live lease leaves,
-- and a lease left by a run that died expires. holder: a random id per run.
CREATE TABLE job_lease (
  id         INTEGER PRIMARY KEY CHECK (id = 1),
  holder     TEXT    NOT NULL,
  expires_at INTEGER NOT NULL  -- epoch milliseconds
);

-- The fence: every batch a run writes starts with a row here saying whether the run still holds
-- the lease. A run whose lease expired and was taken over (a batch stuck behind a later run)
-- fails that CHECK, and D1 rolls its whole batch back: it can never rewrite a closed week or move
-- the watermark back. The batch's last statement empties the table again.
CREATE TABLE job_fence (
  lease_held INTEGER NOT NULL CHECK (lease_held = 1)
);

-- Weekly figures per value keep the top 25 values of each week and dimension by active installs;
-- the rest are one row, value '(other)', which no contract value can take (parentheses match no
-- field's pattern). Weeks written before this migration are folded the same way here (ranked
-- without an (other) row, so running these statements again changes nothing).
INSERT INTO weekly_by (week, dimension, value, installs_active, installs_returning)
SELECT week, dimension, '(other)', SUM(installs_active), SUM(installs_returning)
FROM (
  SELECT week, dimension, installs_active, installs_returning,
         ROW_NUMBER() OVER (PARTITION BY week, dimension ORDER BY installs_active DESC, value) AS rank
  FROM weekly_by WHERE value <> '(other)'
)
WHERE rank > 25
GROUP BY week, dimension;

DELETE FROM weekly_by
WHERE (week, dimension, value) IN (
  SELECT week, dimension, value FROM (
    SELECT week, dimension, value,
           ROW_NUMBER() OVER (PARTITION BY week, dimension ORDER BY installs_active DESC, value) AS rank
    FROM weekly_by WHERE value <> '(other)'
  )
  WHERE rank > 25
);
