// The shapes of the reported figures, shared by the job that writes them and the queries that
// read them; and the one rule that bounds them, whatever values the open ingest is sent.
import type { Dimension } from "./event";

/** Values kept per dimension in every stored aggregate and every answer, by installs. */
export const TOP_VALUES = 25;
/** The key the other values fold into: parentheses match no contract pattern, so no sent value
 * can take it (`other`, say, is a valid adapter name). */
export const OTHER_VALUES = "(other)";

export type Windowed = { "1d": number; "7d": number; "30d": number };
export type StatsFigures = {
  installs: Windowed;
  sessions: Windowed;
  returning_installs_30d: number;
  by: Record<Dimension, Record<string, number>>;
};

export function emptyFigures(): StatsFigures {
  return {
    installs: { "1d": 0, "7d": 0, "30d": 0 },
    sessions: { "1d": 0, "7d": 0, "30d": 0 },
    returning_installs_30d: 0,
    by: { version: {}, python: {}, os: {}, arch: {}, adapter: {} },
  };
}

/**
 * The top TOP_VALUES values by count (ties by value), largest first, then OTHER_VALUES with the
 * sum of the rest. Counted in a Map and returned through Object.fromEntries, so a value named
 * `__proto__` or `constructor` is a key like any other.
 */
export function topValues(counts: ReadonlyMap<string, number>): Record<string, number> {
  const sorted = [...counts].sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0));
  const kept: [string, number][] = sorted.slice(0, TOP_VALUES);
  const rest = sorted.slice(TOP_VALUES).reduce((sum, [, n]) => sum + n, 0);
  if (sorted.length > TOP_VALUES) kept.push([OTHER_VALUES, rest]);
  return Object.fromEntries(kept);
}
