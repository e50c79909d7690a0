// ?format=csv: the same figures as the JSON answers, one header row, RFC 4180 quoting.
import { DIMENSIONS } from "./event";
import type { PublicWeek } from "./public";
import type { Cohort, Week } from "./queries";

type Cell = string | number | null;

export function toCsv(header: string[], rows: Cell[][]): string {
  const line = (cells: Cell[]) => cells.map(quote).join(",");
  return [line(header), ...rows.map(line)].join("\r\n") + "\r\n";
}

function quote(cell: Cell): string {
  // A text cell a spreadsheet would evaluate (=, +, -, @, tab, CR first: OWASP's CSV injection)
  // gets a leading apostrophe; numbers are ours and stay as they are.
  const text = cell === null ? "" : typeof cell === "string" && /^[=+\-@\t\r]/.test(cell) ? `'${cell}` : String(cell);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export type StatsAnswer = {
  as_of: string | null;
  installs: Record<string, number>;
  sessions: Record<string, number>;
  returning_installs_30d: number;
  by: Record<string, Record<string, number>>;
};

/** One row per figure: `figure,key,value` (installs/sessions by window, by.<dimension> by value). */
export function statsCsv(stats: StatsAnswer): string {
  const rows: Cell[][] = [];
  for (const [window, n] of Object.entries(stats.installs)) rows.push([stats.as_of, "installs", window, n]);
  for (const [window, n] of Object.entries(stats.sessions)) rows.push([stats.as_of, "sessions", window, n]);
  rows.push([stats.as_of, "returning_installs_30d", "", stats.returning_installs_30d]);
  for (const [dimension, counts] of Object.entries(stats.by)) {
    for (const [value, n] of Object.entries(counts)) rows.push([stats.as_of, `by.${dimension}`, value, n]);
  }
  return toCsv(["as_of", "figure", "key", "value"], rows);
}

export function dailyCsv(days: { day: string; sessions: number }[]): string {
  return toCsv(["day", "sessions"], days.map((d) => [d.day, d.sessions]));
}

/** One row per week for all installs (dimension `all`), then one per dimension value. */
export function weeklyCsv(weeks: Week[]): string {
  const rows: Cell[][] = [];
  for (const w of weeks) {
    const i = w.installs;
    rows.push([w.week, w.start, "all", "", w.sessions, i.active, i.returning, i.new, i.one_shot]);
    for (const dimension of DIMENSIONS) {
      for (const [value, n] of Object.entries(w.by[dimension])) {
        rows.push([w.week, w.start, dimension, value, null, n.active, n.returning, null, null]);
      }
    }
  }
  const header = ["week", "start", "dimension", "value", "sessions", "active", "returning", "new", "one_shot"];
  return toCsv(header, rows);
}

export function cohortsCsv(cohorts: Cohort[]): string {
  const later = Array.from({ length: 8 }, (_, k) => `active_after_${k + 1}`);
  return toCsv(["week", "new", ...later], cohorts.map((c) => [c.week, c.new, ...c.active_after]));
}

/** The public figures: totals per week (`dimension` = `all`), then the cells of each dimension shown. */
export function publicCsv(weeks: PublicWeek[]): string {
  const rows: Cell[][] = [];
  for (const w of weeks) {
    rows.push([w.week, w.start, "all", "active", w.installs.active]);
    rows.push([w.week, w.start, "all", "returning", w.installs.returning]);
    rows.push([w.week, w.start, "all", "new", w.installs.new]);
    for (const dimension of DIMENSIONS) {
      for (const [value, cell] of Object.entries(w.by[dimension] ?? {})) {
        rows.push([w.week, w.start, dimension, value, cell]);
      }
    }
  }
  return toCsv(["week", "start", "dimension", "value", "installs"], rows);
}
