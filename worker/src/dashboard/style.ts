// The dashboard's stylesheet, served as /dashboard.css (the CSP allows no inline style).
export const STYLE_CSS = `
:root {
  --ink: #1d2433; --muted: #5b6475; --line: #d9dde5; --bg: #f6f7f9; --card: #ffffff; --accent: #2456c9;
  --c0: #2456c9; --c1: #e07b24; --c2: #9aa3b5; --c3: #2e9e6b; --c4: #b5479b; --c5: #c9a227; --c6: #5c4bc4; --c7: #7a8699;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: var(--ink); background: var(--bg);
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 0.25rem 1rem; padding: 1rem 1.25rem 0.5rem; }
h1 { font-size: 1.35rem; margin: 0; }
#as-of { margin: 0; color: var(--muted); font-size: 0.9rem; flex: 1 1 12rem; }
main { padding: 0 1.25rem 2rem; max-width: 1180px; }
.lede { color: var(--muted); max-width: 60rem; }
#sections { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 520px), 1fr)); gap: 1rem; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 0.9rem 1rem 1rem; min-width: 0; }
#platform, #cohorts { grid-column: 1 / -1; }  /* two charts side by side, each as wide as a card */
h2 { font-size: 1.05rem; margin: 0 0 0.35rem; }
h3 { font-size: 0.95rem; margin: 0.2rem 0 0.3rem; }
.summary { margin: 0 0 0.6rem; font-size: 0.95rem; }
.empty { color: var(--muted); font-style: italic; }
svg.chart { width: 100%; height: auto; display: block; overflow: visible; }
svg .axis { stroke: var(--line); stroke-width: 1; }
svg text { fill: var(--muted); font-size: 11px; }
svg .line { fill: none; stroke: var(--ink); stroke-width: 2; }
svg .dot { fill: var(--ink); }
.c0 { fill: var(--c0); background: var(--c0); } .c1 { fill: var(--c1); background: var(--c1); }
.c2 { fill: var(--c2); background: var(--c2); } .c3 { fill: var(--c3); background: var(--c3); }
.c4 { fill: var(--c4); background: var(--c4); } .c5 { fill: var(--c5); background: var(--c5); }
.c6 { fill: var(--c6); background: var(--c6); } .c7 { fill: var(--c7); background: var(--c7); }
.legend { display: flex; flex-wrap: wrap; gap: 0.25rem 0.9rem; list-style: none; padding: 0; margin: 0.5rem 0 0; font-size: 0.85rem; }
.legend li { display: flex; align-items: center; gap: 0.35rem; }
.swatch { width: 0.8rem; height: 0.8rem; border-radius: 2px; display: inline-block; }
.swatch.line-swatch { height: 0.2rem; background: var(--ink); }
.tools { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: flex-start; margin-top: 0.6rem; }
details { flex: 1 1 100%; }
summary { cursor: pointer; color: var(--accent); font-size: 0.9rem; }
.table-wrap { overflow-x: auto; margin-top: 0.4rem; }
table { border-collapse: collapse; font-size: 0.82rem; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 0.25rem 0.5rem; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
button { font: inherit; font-size: 0.9rem; padding: 0.35rem 0.8rem; border-radius: 6px; border: 1px solid var(--accent);
  background: var(--card); color: var(--accent); cursor: pointer; }
button[type="submit"] { background: var(--accent); color: #fff; }
button:focus-visible, summary:focus-visible, input:focus-visible, a:focus-visible { outline: 3px solid #f0b429; outline-offset: 2px; }
form#login { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 1rem; max-width: 28rem;
  display: grid; gap: 0.5rem; margin: 1rem 0; }
form#login input { font: inherit; padding: 0.4rem 0.5rem; border: 1px solid var(--line); border-radius: 6px; }
#login-error { color: #b3261e; margin: 0; min-height: 1.2em; }
#status { color: var(--muted); min-height: 1.2em; }
#status.error { color: #b3261e; }
.cohort td.cell { min-width: 2.8rem; padding: 0.25rem 0.35rem; }
.heat0 { background: #f3f5f9; } .heat1 { background: #dce6fa; } .heat2 { background: #b9ccf4; }
.heat3 { background: #8eaaea; } .heat4 { background: #5f86dd; color: #fff; } .heat5 { background: #2456c9; color: #fff; }
.note { color: var(--muted); font-size: 0.8rem; margin: 0.4rem 0 0; }
.pair { display: grid; grid-template-columns: 1fr; gap: 0.75rem; }
@media (min-width: 700px) { .pair { grid-template-columns: 1fr 1fr; } }
`;
