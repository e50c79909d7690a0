-- Migration number: 0002 	 One name per os and arch, as contract/normalization.json says.

-- Released SDKs (agentsonar 0.4.0-0.7.0) sent raw platform.machine().lower() and raw sys.platform,
-- so one machine type was stored under several names. The collector normalises at ingest now;
-- this brings rows stored before under the same names. Running it again changes nothing.

UPDATE events
SET arch = CASE arch WHEN 'aarch64' THEN 'arm64' WHEN 'amd64' THEN 'x86_64' WHEN 'x64' THEN 'x86_64' END
WHERE arch IN ('aarch64', 'amd64', 'x64');

UPDATE events
SET os = rtrim(os, '0123456789')
WHERE os <> 'win32' AND rtrim(os, '0123456789') NOT IN ('', os);

-- Rolled-up days: a normalised row may meet one already under that name, so add, then drop the alias rows.
INSERT INTO daily_counts (day, version, python, os, arch, adapter, sessions)
SELECT day, version, python,
       CASE WHEN os <> 'win32' AND rtrim(os, '0123456789') <> '' THEN rtrim(os, '0123456789') ELSE os END,
       CASE arch WHEN 'aarch64' THEN 'arm64' WHEN 'amd64' THEN 'x86_64' WHEN 'x64' THEN 'x86_64' ELSE arch END,
       adapter, sessions
FROM daily_counts
WHERE arch IN ('aarch64', 'amd64', 'x64') OR (os <> 'win32' AND rtrim(os, '0123456789') NOT IN ('', os))
ON CONFLICT (day, version, python, os, arch, adapter) DO UPDATE SET sessions = sessions + excluded.sessions;

DELETE FROM daily_counts
WHERE arch IN ('aarch64', 'amd64', 'x64') OR (os <> 'win32' AND rtrim(os, '0123456789') NOT IN ('', os));
