// GET /v1/public (and the /public page): the weekly figures anyone may see, when PUBLIC_DASHBOARD
// is on. Closed weeks only; one dimension per chart; values reduced to the documented ones.
//
// The ingest is open, so no threshold alone protects a small count: anyone can add k fake
// installs to a cell and subtract k, or bound a folded cell from the others. So every number
// published is the exact count rounded to the nearest 10 (as statistics offices do), a value
// with fewer than 10 installs is not named at all (it is counted in "other"), and a week with
// fewer than 50 active installs has no breakdown. Every published number, and so every sum or
// difference of them, is a multiple of 10: none equals a count of 1 to 9.
import type { Dimension } from "./event";
import type { Week } from "./queries";

export const ROUND_TO = 10;
export const MIN_NAMED = 10;
export const MIN_WEEK_ACTIVE = 50;
export const OTHER = "other";

/** The values a public chart may name (TELEMETRY.md); anything else is "other". */
const DOCUMENTED: Record<Dimension, (value: string) => string | null> = {
  version: (v) => /^(\d+\.\d+)(\.|$)/.exec(v)?.[1] ?? null, // major.minor
  python: (v) => (/^3\.\d{1,2}$/.test(v) ? v : null),
  os: (v) => (["linux", "darwin", "win32"].includes(v) ? v : null),
  arch: (v) => (["x86_64", "arm64"].includes(v) ? v : null),
  adapter: (v) => (["custom_python", "crewai", "langgraph", "oma_sidecar", "claude_code"].includes(v) ? v : null),
};

export type PublicWeek = {
  week: string;
  start: string;
  installs: { active: number; returning: number; new: number };
  /** Installs per value, rounded; `other` is always there, so its presence says nothing. */
  by: Record<Dimension, Record<string, number> | null>;
};

/** The nearest multiple of 10; 5 rounds up. */
export function rounded(n: number): number {
  return Math.floor((n + ROUND_TO / 2) / ROUND_TO) * ROUND_TO;
}

/**
 * One dimension of one week, by active installs: documented values with at least 10 installs,
 * largest first, then `other` with everything else; every count rounded.
 */
export function publicDimension(dimension: Dimension, counts: ReadonlyMap<string, number>): Record<string, number> {
  const reduced = new Map<string, number>();
  let other = 0;
  for (const [value, n] of counts) {
    const shown = DOCUMENTED[dimension](value);
    if (shown === null) other += n;
    else reduced.set(shown, (reduced.get(shown) ?? 0) + n);
  }
  const named = [...reduced].filter(([, n]) => n >= MIN_NAMED);
  for (const [, n] of reduced) if (n < MIN_NAMED) other += n;
  named.sort(([a, x], [b, y]) => y - x || (a < b ? -1 : 1));
  return Object.fromEntries([...named.map(([value, n]) => [value, rounded(n)]), [OTHER, rounded(other)]]);
}

export function publicWeek(week: Week): PublicWeek {
  const hidden = week.installs.active < MIN_WEEK_ACTIVE;
  const by = {} as Record<Dimension, Record<string, number> | null>;
  for (const dimension of Object.keys(week.by) as Dimension[]) {
    const counts = new Map(Object.entries(week.by[dimension]).map(([v, c]) => [v, c.active]));
    by[dimension] = hidden ? null : publicDimension(dimension, counts);
  }
  return {
    week: week.week,
    start: week.start,
    installs: {
      active: rounded(week.installs.active),
      returning: rounded(week.installs.returning),
      new: rounded(week.installs.new),
    },
    by,
  };
}
