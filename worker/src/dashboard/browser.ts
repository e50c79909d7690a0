// The dashboard in the browser: fetches the reporting endpoints of this origin (with the stats
// token from sessionStorage, as a Bearer header) or /v1/public, and draws SVG charts.
//
// Typechecked with the DOM library by tsconfig.browser.json (the Worker's own program sees only
// browser.d.ts). The Worker serves the source text of `dashboard` and of the functions of
// shares.ts (dashboard/script.ts), which it receives as `lib`: so everything here lives inside
// `dashboard`, and the module holds nothing else but types.
import type * as Shares from "./shares";
import type { Cell, Cells, Series } from "./shares";

type ActiveReturning = { active: number; returning: number };
type Week = {
  week: string;
  sessions: number;
  installs: { active: number; returning: number; new: number; one_shot: number | null };
  by: Record<string, Record<string, ActiveReturning>>;
};
type PublicWeek = {
  week: string;
  installs: { active: number; returning: number; new: number };
  by: Record<string, Cells | null>;
};
type Stats = { as_of: string | null; installs: Record<string, number>; sessions: Record<string, number> };
type Cohort = { week: string; new: number; active_after: (number | null)[] };
type Attrs = Record<string, string | number | null | undefined>;
type Child = Node | string;
type Line = { name: string; values: number[] };
type ShareOptions = {
  top: number;
  noun: string;
  title: string;
  csv?: string;
  csvName?: string;
  note?: string | null;
  summary?: (series: Series[], latest: { week: string }, total: number) => string;
};

export function dashboard(lib: typeof Shares): void {
  const { cohortRate, fmt, niceMax, num, pct, shareSeries, shareTable, sum, versionKey } = lib;
  const SVG = "http://www.w3.org/2000/svg";
  const KEY = "agentsonar.statsToken";
  const MODE = document.body.getAttribute("data-mode");
  const WEEKS = 26;

  class Refused extends Error {}

  function byId<T extends HTMLElement = HTMLElement>(id: string): T {
    const node = document.getElementById(id);
    if (node === null) throw new Error(`#${id} is missing from the page`);
    return node as T;
  }
  function setAll(node: Element, attrs: Attrs): void {
    for (const [name, value] of Object.entries(attrs)) {
      if (value !== null && value !== undefined) node.setAttribute(name, String(value));
    }
  }
  function append(node: Node, children: readonly Child[]): void {
    for (const child of children) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
  function h(tag: string, attrs: Attrs = {}, children: readonly Child[] = []): HTMLElement {
    const node = document.createElement(tag);
    setAll(node, attrs);
    append(node, children);
    return node;
  }
  function s(tag: string, attrs: Attrs = {}, children: readonly Child[] = []): SVGElement {
    const node = document.createElementNS(SVG, tag);
    setAll(node, attrs);
    append(node, children);
    return node;
  }

  // -- talking to the collector -------------------------------------------------------------

  function token(): string | null {
    return sessionStorage.getItem(KEY);
  }
  async function request(path: string): Promise<Response> {
    const headers: Record<string, string> = MODE === "private" ? { Authorization: `Bearer ${token() ?? ""}` } : {};
    const response = await fetch(path, { headers, cache: "no-store" });
    if (response.status === 401) throw new Refused("refused");
    if (!response.ok) throw new Error(`${path} answered ${response.status}`);
    return response;
  }
  async function getJson<T>(path: string): Promise<T> {
    return (await (await request(path)).json()) as T;
  }
  function downloadButton(path: string, filename: string): HTMLElement {
    const button = h("button", { type: "button", class: "csv" }, ["Download CSV"]);
    button.addEventListener("click", () => {
      request(path)
        .then((response) => response.blob())
        .then((blob) => {
          const url = URL.createObjectURL(blob);
          const link = h("a", { href: url, download: filename, hidden: "" });
          document.body.appendChild(link);
          link.click();
          link.remove();
          setTimeout(() => URL.revokeObjectURL(url), 1000);
        })
        .catch(showError);
    });
    return button;
  }

  // -- charts -----------------------------------------------------------------------------

  /** Stacked weekly bars; percent: each bar is 100% of its total. line: a second series on its own axis. */
  function stackedBars(
    title: string,
    labels: readonly string[],
    series: readonly Series[],
    options: { percent?: boolean; line?: Line } = {},
  ): SVGElement {
    // A narrower drawing on a phone keeps the 11px labels readable once scaled to the screen.
    const narrow = window.innerWidth < 600;
    const W = narrow ? 360 : 640;
    const H = narrow ? 220 : 240;
    const L = 40;
    const R = options.line ? 40 : 8;
    const T = 10;
    const B = 30;
    const pw = W - L - R;
    const ph = H - T - B;
    const n = labels.length;
    const totals = labels.map((_, i) => sum(series.map((x) => x.values[i] ?? 0)));
    const max = options.percent ? 1 : niceMaxOf(totals);
    const chart = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
    for (let t = 0; t <= 4; t++) {
      const y = T + ph - (ph * t) / 4;
      chart.appendChild(s("line", { class: "axis", x1: L, x2: L + pw, y1: y, y2: y }));
      const tick = options.percent ? `${25 * t}%` : fmt(Math.round((max * t) / 4));
      chart.appendChild(s("text", { x: L - 6, y: y + 4, "text-anchor": "end" }, [tick]));
    }
    const band = pw / Math.max(n, 1);
    const barWidth = Math.max(2, band * 0.72);
    const every = Math.max(1, Math.ceil(n / Math.floor(pw / 40)));
    labels.forEach((label, i) => {
      const x = L + band * i + (band - barWidth) / 2;
      let base = T + ph;
      for (const one of series) {
        const value = one.values[i] ?? 0;
        const total = totals[i] ?? 0;
        const share = options.percent ? (total ? value / total : 0) : value / max;
        const height = share * ph;
        if (height <= 0) continue;
        const shown = options.percent ? `${pct(share)} (${fmt(value)})` : fmt(value);
        chart.appendChild(
          s("rect", { class: one.cls, x, y: base - height, width: barWidth, height }, [
            s("title", {}, [`${label}, ${one.name}: ${shown}`]),
          ]),
        );
        base -= height;
      }
      if ((n - 1 - i) % every === 0) {
        chart.appendChild(s("text", { x: x + barWidth / 2, y: H - 10, "text-anchor": "middle" }, [label.slice(5)]));
      }
    });
    const line = options.line;
    if (line) {
      const lineMax = niceMaxOf(line.values);
      const points = line.values.map((v, i) => [L + band * i + band / 2, T + ph - (v / lineMax) * ph] as const);
      chart.appendChild(s("path", { class: "line", d: points.map(([x, y], i) => `${i ? "L" : "M"}${x} ${y}`).join(" ") }));
      points.forEach(([cx, cy], i) => {
        chart.appendChild(
          s("circle", { class: "dot", cx, cy, r: 2.5 }, [s("title", {}, [`${labels[i]}, ${line.name}: ${fmt(line.values[i])}`])]),
        );
      });
      for (let u = 0; u <= 4; u++) {
        chart.appendChild(s("text", { x: L + pw + 6, y: T + ph - (ph * u) / 4 + 4 }, [fmt(Math.round((lineMax * u) / 4))]));
      }
    }
    return chart;
  }

  function niceMaxOf(values: readonly number[]): number {
    let max = 0;
    for (const v of values) if (v > max) max = v; // no spread: thousands of weeks stay one call
    return niceMax(max);
  }

  function legend(series: readonly Series[], line?: Line): HTMLElement {
    const items = series.map((one) => h("li", {}, [h("span", { class: `swatch ${one.cls}`, "aria-hidden": "true" }), one.name]));
    if (line) items.push(h("li", {}, [h("span", { class: "swatch line-swatch", "aria-hidden": "true" }), `${line.name} (right axis)`]));
    return h("ul", { class: "legend" }, items);
  }

  function numbersTable(header: readonly string[], rows: readonly Cell[][]): HTMLElement {
    const table = h("table", {}, [
      h("thead", {}, [h("tr", {}, header.map((c) => h("th", { scope: "col" }, [c])))]),
      h(
        "tbody",
        {},
        rows.map((row) => h("tr", {}, row.map((c, i) => h(i ? "td" : "th", i ? {} : { scope: "row" }, [fmt(c)])))),
      ),
    ]);
    return h("details", { class: "numbers" }, [h("summary", {}, ["Show the numbers"]), h("div", { class: "table-wrap" }, [table])]);
  }

  function fill(id: string, nodes: readonly Node[]): void {
    const body = document.querySelector(`#${id} .body`);
    if (body !== null) body.replaceChildren(...nodes);
  }
  function emptyState(id: string, text: string): void {
    fill(id, [h("p", { class: "empty" }, [text])]);
  }
  function tools(table: HTMLElement, csvPath?: string, csvName?: string): HTMLElement {
    const parts: Node[] = [table];
    if (csvPath && csvName) parts.unshift(downloadButton(csvPath, csvName));
    return h("div", { class: "tools" }, parts);
  }

  function shareSection<W extends { week: string }>(weeks: readonly W[], pick: (w: W) => Cells | null, options: ShareOptions): Node[] {
    const picked = weeks.map((w) => pick(w) ?? Object.create(null));
    const series = shareSeries(picked, options.top);
    const labels = weeks.map((w) => w.week);
    const latest = weeks[weeks.length - 1];
    const lastOf = (x: Series) => x.values[x.values.length - 1] ?? 0;
    const latestTotal = sum(series.map(lastOf));
    const lead = [...series].sort((a, b) => lastOf(b) - lastOf(a))[0];
    if (!latest || !lead || !latestTotal) {
      return [h("p", { class: "empty" }, [`No ${options.noun} in the closed weeks shown.`])];
    }
    const summary = options.summary
      ? options.summary(series, latest, latestTotal)
      : `${lead.name} leads with ${pct(lastOf(lead) / latestTotal)} of ${options.noun} in ${latest.week}.`;
    const table = shareTable(labels, picked, series);
    const nodes: Node[] = [
      h("p", { class: "summary" }, [summary]),
      stackedBars(options.title, labels, series, { percent: true }),
      legend(series),
    ];
    if (options.note) nodes.push(h("p", { class: "note" }, [options.note]));
    nodes.push(tools(numbersTable(["week", ...table.columns], table.rows), options.csv, options.csvName));
    return nodes;
  }

  function valuesOf(cells: Record<string, ActiveReturning> | undefined, key: keyof ActiveReturning): Cells {
    const out: Cells = Object.create(null);
    for (const [v, c] of Object.entries(cells ?? {})) out[v] = c[key];
    return out;
  }

  // -- the maintainers' page ----------------------------------------------------------------

  function renderPrivate(stats: Stats, weeks: Week[], cohorts: Cohort[]): void {
    byId("as-of").textContent =
      stats.as_of === null
        ? "The hourly job has not run yet: no figures."
        : `Figures as of ${stats.as_of.replace("T", " ").replace(":00Z", " UTC")} · ${fmt(stats.installs["30d"])} installs and ${fmt(stats.sessions["30d"])} sessions in the last 30 days`;
    const none =
      "No closed week yet. The first week closes the Monday after the collector's first event; the hourly job fills this in.";
    if (!weeks.length) {
      for (const id of ["humans", "python", "adapter", "version", "platform", "cohorts"]) emptyState(id, none);
      return;
    }
    const labels = weeks.map((w) => w.week);
    const humans: Series[] = [
      { name: "returning", cls: "c0", values: weeks.map((w) => w.installs.returning) },
      { name: "one-shot", cls: "c1", values: weeks.map((w) => num(w.installs.one_shot)) },
      {
        name: "other active",
        cls: "c2",
        values: weeks.map((w) => Math.max(0, w.installs.active - w.installs.returning - num(w.installs.one_shot))),
      },
    ];
    const sessions: Line = { name: "sessions", values: weeks.map((w) => w.sessions) };
    const last = weeks[weeks.length - 1] as Week;
    const csv = `/v1/stats/weekly?weeks=${WEEKS}&format=csv`;
    const settled = weeks.filter((w) => w.installs.one_shot !== null).at(-1);
    const returningShare = pct(last.installs.active ? last.installs.returning / last.installs.active : 0);
    const humanSummary =
      `${last.week}: ${fmt(last.installs.active)} active installs, ${fmt(last.installs.returning)} returning ` +
      `(${returningShare}), ${fmt(last.installs.new)} new; ${fmt(last.sessions)} sessions.` +
      (settled ? ` One-shot in ${settled.week}: ${fmt(settled.installs.one_shot)}.` : "");
    fill("humans", [
      h("p", { class: "summary" }, [humanSummary]),
      stackedBars("Active installs per week: returning, one-shot and other; sessions", labels, humans, { line: sessions }),
      legend(humans, sessions),
      h("p", { class: "note" }, [
        "Returning: seen on 2 or more days in the 28 days to the week's end. One-shot: new, seen on one day in its first 14 (settled two weeks later).",
      ]),
      tools(
        numbersTable(
          ["week", "active", "returning", "one-shot", "new", "sessions"],
          weeks.map((w) => [w.week, w.installs.active, w.installs.returning, w.installs.one_shot, w.installs.new, w.sessions]),
        ),
        csv,
        "weekly.csv",
      ),
    ]);

    fill(
      "python",
      shareSection(weeks, (w) => valuesOf(w.by.python, "returning"), {
        top: 6,
        noun: "returning installs",
        csv,
        csvName: "weekly.csv",
        title: "Share of returning installs per Python version, per week",
        summary: (series, latest, total) => {
          const versions = series.filter((x) => x.name !== "other").map((x) => x.name);
          versions.sort((a, b) => (versionKey(a) < versionKey(b) ? -1 : 1));
          const oldest = series.find((x) => x.name === versions[0]);
          if (!oldest) return "No Python version stands out of “other” yet.";
          const now = (oldest.values[oldest.values.length - 1] ?? 0) / total;
          const shares = oldest.values.map((v, i) => {
            const weekTotal = sum(series.map((x) => x.values[i] ?? 0));
            return weekTotal ? v / weekTotal : 0;
          });
          let peak = 0;
          shares.forEach((share, i) => {
            if (share > (shares[peak] ?? 0)) peak = i;
          });
          const peakShare = shares[peak] ?? 0;
          return `Python ${oldest.name}, the oldest seen, is ${pct(now)} of returning installs in ${latest.week}${
            peakShare <= now ? "." : ` (${pct(peakShare)} at its peak, ${labels[peak]}).`
          }`;
        },
      }),
    );
    const active = (dimension: string) => (w: Week) => valuesOf(w.by[dimension], "active");
    fill("adapter", shareSection(weeks, active("adapter"), {
      top: 5, noun: "active installs", csv, csvName: "weekly.csv", title: "Share of active installs per adapter, per week",
    }));
    fill("version", shareSection(weeks, active("version"), {
      top: 6, noun: "active installs", csv, csvName: "weekly.csv", title: "Share of active installs per SDK version, per week",
    }));
    const os = shareSection(weeks, active("os"), {
      top: 4, noun: "active installs", title: "Share of active installs per operating system, per week",
    });
    const arch = shareSection(weeks, active("arch"), {
      top: 3, noun: "active installs", title: "Share of active installs per CPU architecture, per week",
    });
    fill("platform", [
      h("div", { class: "pair" }, [
        h("div", {}, [h("h3", {}, ["Operating system"]), ...os]),
        h("div", {}, [h("h3", {}, ["CPU architecture"]), ...arch]),
      ]),
      h("div", { class: "tools" }, [downloadButton(csv, "weekly.csv")]), // one for the card, under both columns
    ]);
    renderCohorts(cohorts);
  }

  function renderCohorts(list: Cohort[]): void {
    if (!list.length) return emptyState("cohorts", "No closed week yet.");
    const rate = cohortRate(list);
    const header = h("tr", {}, [
      h("th", { scope: "col" }, ["new in"]),
      h("th", { scope: "col" }, ["new"]),
      ...[1, 2, 3, 4, 5, 6, 7, 8].map((k) => h("th", { scope: "col" }, [`+${k} wk`])),
    ]);
    const rows = list.map((c) =>
      h("tr", {}, [
        h("th", { scope: "row" }, [c.week]),
        h("td", {}, [fmt(c.new)]),
        ...c.active_after.map((n, k) => {
          if (n === null) return h("td", { class: "cell", title: `week ${k + 1} after has not closed` }, ["·"]);
          const share = c.new ? n / c.new : 0;
          const heat = `cell heat${Math.min(5, Math.ceil(share * 5))}`;
          return h("td", { class: heat, title: `${fmt(n)} of ${fmt(c.new)}` }, [c.new ? pct(share) : "–"]);
        }),
      ]),
    );
    fill("cohorts", [
      h("p", { class: "summary" }, [
        rate === null
          ? "No cohort has a closed week after it yet."
          : `${pct(rate)} of new installs came back the week after (cohorts shown, weighted by size).`,
      ]),
      h("div", { class: "table-wrap" }, [h("table", { class: "cohort" }, [h("thead", {}, [header]), h("tbody", {}, rows)])]),
      h("p", { class: "note" }, ["Share of each week's new installs active 1 to 8 weeks later; · where that week has not closed."]),
      tools(
        numbersTable(
          ["new in", "new", "+1", "+2", "+3", "+4", "+5", "+6", "+7", "+8"],
          list.map((c) => [c.week, c.new, ...c.active_after]),
        ),
        "/v1/stats/cohorts?weeks=12&format=csv",
        "cohorts.csv",
      ),
    ]);
  }

  // -- the public page ------------------------------------------------------------------------

  function renderPublic(data: { as_of: string | null; weeks: PublicWeek[] }): void {
    const weeks = data.weeks;
    const last = weeks[weeks.length - 1];
    byId("as-of").textContent = data.as_of === null ? "No figures yet." : `Closed weeks through ${last ? last.week : "–"}.`;
    const ids = ["humans", "python", "adapter", "version", "os", "arch"];
    if (!last) {
      for (const id of ids) emptyState(id, "No closed week yet.");
      return;
    }
    const labels = weeks.map((w) => w.week);
    const active: Series[] = [{ name: "active installs", cls: "c0", values: weeks.map((w) => w.installs.active) }];
    const returning: Line = { name: "returning installs", values: weeks.map((w) => w.installs.returning) };
    fill("humans", [
      h("p", { class: "summary" }, [`${last.week}: ${fmt(last.installs.active)} active installs, ${fmt(last.installs.returning)} returning.`]),
      stackedBars("Active installs per week, and returning installs", labels, active, { line: returning }),
      legend(active, returning),
      tools(
        numbersTable(
          ["week", "active", "returning", "new"],
          weeks.map((w) => [w.week, w.installs.active, w.installs.returning, w.installs.new]),
        ),
        "/v1/public?format=csv",
        "public.csv",
      ),
    ]);
    for (const dimension of ids.slice(1)) {
      const shown = weeks.filter((w) => w.by[dimension] !== null && w.by[dimension] !== undefined);
      if (!shown.length) {
        emptyState(dimension, "Hidden: no closed week had 50 or more active installs.");
        continue;
      }
      fill(dimension, shareSection(shown, (w) => w.by[dimension] ?? null, {
        top: 6,
        noun: "active installs",
        title: `Share of active installs per ${dimension}, per week`,
        csv: "/v1/public?format=csv",
        csvName: "public.csv",
        note: shown.length < weeks.length ? "Weeks with fewer than 50 active installs are not shown." : null,
      }));
    }
  }

  // -- starting up ------------------------------------------------------------------------------

  function status(text: string, isError = false): void {
    const node = byId("status");
    node.textContent = text;
    node.className = isError ? "error" : "";
  }
  function showError(error: unknown): void {
    if (error instanceof Refused) return askForToken("That token was refused. Check the STATS_TOKEN of this collector.");
    status(`Could not load the figures: ${error instanceof Error ? error.message : String(error)}`, true);
  }
  function askForToken(message: string): void {
    sessionStorage.removeItem(KEY);
    byId("sections").hidden = true;
    byId("sign-out").hidden = true;
    byId("login").hidden = false;
    byId("login-error").textContent = message;
    status("");
    byId("token").focus();
  }
  function loadPrivate(): void {
    status("Loading…");
    Promise.all([
      getJson<Stats>("/v1/stats"),
      getJson<{ weeks: Week[] }>(`/v1/stats/weekly?weeks=${WEEKS}`),
      getJson<{ cohorts: Cohort[] }>("/v1/stats/cohorts?weeks=12"),
    ])
      .then(([stats, weekly, cohorts]) => {
        byId("login").hidden = true;
        byId("sign-out").hidden = false;
        byId("sections").hidden = false;
        renderPrivate(stats, weekly.weeks, cohorts.cohorts);
        status("");
      })
      .catch(showError);
  }

  if (MODE === "private") {
    byId("login").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = byId<HTMLInputElement>("token");
      sessionStorage.setItem(KEY, input.value.trim());
      input.value = "";
      loadPrivate();
    });
    byId("sign-out").addEventListener("click", () => askForToken("Token forgotten."));
    if (token()) loadPrivate();
    else askForToken("");
  } else {
    status("Loading…");
    getJson<{ as_of: string | null; weeks: PublicWeek[] }>(`/v1/public?weeks=${WEEKS}`)
      .then((data) => {
        renderPublic(data);
        status("");
      })
      .catch(showError);
  }
}
