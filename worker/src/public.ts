// GET /v1/public (and the /public page): the weekly figures anyone may see, when PUBLIC_DASHBOARD
// is on. Closed weeks only; one dimension per chart; values reduced to the documented ones; no
// cell under MIN_CELL installs, and none that subtraction could recover.
import type { Dimension } from "./event";
import type { Week } from "./queries";

export const MIN_CELL = 10;
export const MIN_WEEK_ACTIVE = 50;
const OTHER = "other";

/** The values a public chart may name (TELEMETRY.md); anything else is "other". */
const DOCUMENTED: Record<Dimension, (value: string) => string | null> = {
  version: (v) => /^(\d+\.\d+)(\.|$)/.exec(v)?.[1] ?? null, // major.minor
  python: (v) => (/^3\.\d{1,2}$/.test(v) ? v : null),
  os: (v) => (["linux", "darwin", "win32"].includes(v) ? v : null),
  arch: (v) => (["x86_64", "arm64"].includes(v) ? v : null),
  adapter: (v) => (["custom_python", "crewai", "langgraph", "oma_sidecar", "claude_code"].includes(v) ? v : null),
};

/** A shown count, "<10" for a cell folded into "other" because it is small, or "folded" for one
 * folded only so that "other" cannot be subtracted out. */
export type PublicCell = number | "<10" | "folded";
export type PublicWeek = {
  week: string;
  start: string;
  installs: { active: number | "<10"; returning: number | "<10"; new: number | "<10" };
  by: Record<Dimension, Record<string, PublicCell> | null>;
};

function small(n: number): number | "<10" {
  return n < MIN_CELL ? "<10" : n;
}

/**
 * One dimension of one week, by active installs. Cells under 10 are folded into "other"; while
 * "other" holds fewer than 10 installs (so that a single small cell could be read off as the
 * total minus the shown cells), the next-smallest shown cell is folded too.
 */
export function suppressDimension(dimension: Dimension, counts: Record<string, number>): Record<string, PublicCell> {
  const reduced = new Map<string, number>();
  let other = 0;
  for (const [value, n] of Object.entries(counts)) {
    const shown = DOCUMENTED[dimension](value);
    if (shown === null) other += n;
    else reduced.set(shown, (reduced.get(shown) ?? 0) + n);
  }
  const cells: Record<string, PublicCell> = {};
  const kept = [...reduced.entries()].filter(([value, n]) => {
    if (n >= MIN_CELL) return true;
    cells[value] = "<10";
    other += n;
    return false;
  });
  kept.sort(([a, x], [b, y]) => x - y || (a < b ? -1 : 1)); // smallest first
  while (other > 0 && other < MIN_CELL && kept.length > 0) {
    const [value, n] = kept.shift() as [string, number];
    cells[value] = "folded";
    other += n;
  }
  for (const [value, n] of kept.reverse()) cells[value] = n;
  if (other > 0) cells[OTHER] = other;
  return Object.fromEntries(
    Object.entries(cells).sort(([a, x], [b, y]) => rank(y) - rank(x) || (a < b ? -1 : 1)),
  );
}

function rank(cell: PublicCell): number {
  return typeof cell === "number" ? cell : -1;
}

export function publicWeek(week: Week): PublicWeek {
  const hidden = week.installs.active < MIN_WEEK_ACTIVE;
  const by = {} as Record<Dimension, Record<string, PublicCell> | null>;
  for (const dimension of Object.keys(week.by) as Dimension[]) {
    const counts = Object.fromEntries(Object.entries(week.by[dimension]).map(([v, c]) => [v, c.active]));
    by[dimension] = hidden ? null : suppressDimension(dimension, counts);
  }
  return {
    week: week.week,
    start: week.start,
    installs: {
      active: small(week.installs.active),
      returning: small(week.installs.returning),
      new: small(week.installs.new),
    },
    by,
  };
}
