// GET /dashboard.js: the source text of shares.ts's functions and of browser.ts's `dashboard`,
// as wrangler bundled them (types stripped, names as in the bundle), then a call of `dashboard`
// with the functions it uses. One script from this origin, no build step of its own.
import { dashboard } from "#dashboard/browser";
import { cohortRate, fmt, niceMax, num, own, pct, shareSeries, shareTable, sum, versionKey } from "./shares";

const LIB = { cohortRate, fmt, niceMax, num, own, pct, shareSeries, shareTable, sum, versionKey };

/** The name a function is declared under in the bundle (esbuild may rename it). */
function declaredName(fn: (...args: never[]) => unknown): string {
  const name = /^function\s*([\w$]+)/.exec(String(fn))?.[1];
  if (name === undefined) throw new Error("a dashboard function is not a function declaration");
  return name;
}

export const CLIENT_JS = [
  '"use strict";',
  // esbuild's keepNames helper (wrangler's default): the names it would set are the declared ones.
  "var __name = function (target) { return target; };",
  ...Object.values(LIB).map(String),
  `(${String(dashboard)})({ ${Object.entries(LIB)
    .map(([key, fn]) => `${key}: ${declaredName(fn)}`)
    .join(", ")} });`,
  "",
].join("\n");
