// What the dashboard computes from the answers, with no DOM: formatting, the share series of a
// dimension, the numbers table, the cohort rate. Runs in the browser (served by
// dashboard/script.ts) and is unit-tested in workerd (test/dashboard.test.ts).
//
// Each export is a self-contained top-level function: the Worker serves their source text, so a
// function here may call the others and nothing else (no module constants, no imports).

/** A count per value of one dimension in one week (prototype-less when built here). */
export type Cells = Record<string, number>;
export type Series = { name: string; cls: string; values: number[] };
export type Cell = string | number | null | undefined;

export function fmt(n: Cell): string {
  if (n === null || n === undefined) return "–";
  return typeof n === "number" ? n.toLocaleString("en-US") : String(n);
}

export function pct(x: number): string {
  return `${(Math.round(x * 1000) / 10).toLocaleString("en-US")}%`;
}

export function num(cell: unknown): number {
  return typeof cell === "number" ? cell : 0;
}

export function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** `3.9` before `3.10`: each part zero-padded. */
export function versionKey(v: string): string {
  return v
    .split(".")
    .map((p) => `00000${parseInt(p, 10) || 0}`.slice(-5))
    .join(".");
}

/** The value's own count, never one inherited from Object.prototype (`constructor`, ...). */
export function own(cells: Cells, name: string): number | undefined {
  return Object.prototype.hasOwnProperty.call(cells, name) ? cells[name] : undefined;
}

/** An axis maximum at or above `value`: 1, 2, 2.5 or 5 times a power of 10. */
export function niceMax(value: number): number {
  if (value <= 0) return 1;
  const magnitude = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

/**
 * Shares of one dimension over the weeks: the `top` values by their latest week (then by their
 * total), the rest as one "other" series. Linear in weeks x values: each week's cells are read
 * once, counted in prototype-less objects, so `__proto__` is a value like any other.
 */
export function shareSeries(picked: readonly Cells[], top: number): Series[] {
  const last = picked[picked.length - 1] ?? Object.create(null);
  const totals: Cells = Object.create(null);
  for (const cells of picked) {
    for (const v of Object.keys(cells)) totals[v] = (totals[v] ?? 0) + num(cells[v]);
  }
  // "other" (public page) and "(other)" (values past the collector's top 25) join the rest.
  const names = Object.keys(totals).filter((v) => v !== "other" && v !== "(other)" && (totals[v] ?? 0) > 0);
  names.sort(
    (a, b) => num(own(last, b)) - num(own(last, a)) || (totals[b] ?? 0) - (totals[a] ?? 0) || (a < b ? -1 : 1),
  );
  const shown = names.slice(0, top);
  const isShown: Record<string, boolean> = Object.create(null);
  for (const v of shown) isShown[v] = true;
  const series = shown.map((v, i) => ({ name: v, cls: `c${i % 7}`, values: picked.map((cells) => num(own(cells, v))) }));
  const rest = picked.map((cells) => sum(Object.keys(cells).filter((v) => !isShown[v]).map((v) => num(cells[v]))));
  if (sum(rest) > 0) series.push({ name: "other", cls: "c7", values: rest });
  return series;
}

/** The numbers table of a share chart: the series drawn, then every value not drawn. */
export function shareTable(
  labels: readonly string[],
  picked: readonly Cells[],
  series: readonly Series[],
): { columns: string[]; rows: Cell[][] } {
  const columns = series.map((x) => x.name);
  const seen: Record<string, boolean> = Object.create(null);
  for (const v of columns) seen[v] = true;
  for (const cells of picked) {
    for (const v of Object.keys(cells)) {
      if (!seen[v]) {
        seen[v] = true;
        columns.push(v);
      }
    }
  }
  const rows = labels.map((label, i) => {
    const cells = picked[i] ?? Object.create(null);
    const values = columns.map((name, k): Cell => {
      if (k < series.length) return series[k]?.values[i];
      return own(cells, name) ?? "–";
    });
    return [label, ...values];
  });
  return { columns, rows };
}

/** Of the new installs of the cohorts that have a closed week after them, the share active then. */
export function cohortRate(cohorts: readonly { new: number; active_after: readonly (number | null)[] }[]): number | null {
  const settled = cohorts.filter((c) => c.new > 0 && c.active_after[0] !== null && c.active_after[0] !== undefined);
  if (!settled.length) return null;
  return sum(settled.map((c) => c.active_after[0] ?? 0)) / sum(settled.map((c) => c.new));
}
