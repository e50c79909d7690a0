// What the dashboard computes (src/dashboard/shares.ts), without a browser: the page itself is
// tested in Chromium (browser/). Linear work is checked by counting reads, never by a clock.
import { describe, expect, it } from "vitest";
import { type Cells, cohortRate, niceMax, shareSeries, shareTable, versionKey } from "../src/dashboard/shares";

function cells(entries: [string, number][]): Cells {
  const out: Cells = Object.create(null);
  for (const [v, n] of entries) out[v] = n;
  return out;
}

describe("shareSeries", () => {
  it("keeps the top values by the latest week, then by total, and folds the rest into other", () => {
    const weeks = [cells([["3.12", 5], ["3.11", 9], ["3.10", 1]]), cells([["3.12", 8], ["3.11", 2], ["3.13", 3]])];
    expect(shareSeries(weeks, 2)).toEqual([
      { name: "3.12", cls: "c0", values: [5, 8] },
      { name: "3.13", cls: "c1", values: [0, 3] },
      { name: "other", cls: "c7", values: [10, 2] },
    ]);
  });

  it("counts other and (other) from the answers in the rest, never as a value", () => {
    const weeks = [cells([["crewai", 50], ["other", 20], ["(other)", 5]])];
    expect(shareSeries(weeks, 6)).toEqual([
      { name: "crewai", cls: "c0", values: [50] },
      { name: "other", cls: "c7", values: [25] },
    ]);
  });

  it("counts values named like Object.prototype members as data", () => {
    const parsed = JSON.parse('{"__proto__": 3, "constructor": 2, "toString": 1}') as Cells; // as fetch() gives it
    const series = shareSeries([parsed], 6);
    expect(series.map((x) => [x.name, x.values[0]])).toEqual([["__proto__", 3], ["constructor", 2], ["toString", 1]]);
    expect(shareSeries([cells([["linux", 4]])], 6).map((x) => x.name)).toEqual(["linux"]); // no inherited constructor
  });

  it("reads each cell a bounded number of times: linear in weeks x values, whatever the values", () => {
    let reads = 0;
    const counted = (n: number) =>
      Array.from({ length: 26 }, (_, w) =>
        new Proxy(cells(Array.from({ length: n }, (_, i) => [`v${i}`, (i * 7 + w) % 13] as [string, number])), {
          get(target, key, receiver) {
            reads += 1;
            return Reflect.get(target, key, receiver);
          },
        }),
      );
    const readsFor = (n: number) => {
      reads = 0;
      shareSeries(counted(n), 6);
      return reads;
    };
    const small = readsFor(100);
    const large = readsFor(10_000);
    expect(large / small).toBeLessThan(100 * 1.2); // 100 times the values: about 100 times the reads
    expect(large).toBeLessThan(26 * 10_000 * 4);
  });
});

describe("shareTable", () => {
  it("lists the series drawn, then every value not drawn, with a dash where a week has none", () => {
    const picked = [cells([["a", 3], ["b", 1]]), cells([["a", 4], ["c", 2]])];
    const series = shareSeries(picked, 1);
    expect(shareTable(["W1", "W2"], picked, series)).toEqual({
      columns: ["a", "other", "b", "c"],
      rows: [
        ["W1", 3, 1, 1, "–"],
        ["W2", 4, 2, "–", 2],
      ],
    });
  });
});

describe("small helpers", () => {
  it("versionKey sorts 3.9 before 3.10", () => {
    expect(["3.10", "3.9", "3.13"].sort((a, b) => (versionKey(a) < versionKey(b) ? -1 : 1))).toEqual(["3.9", "3.10", "3.13"]);
  });

  it("niceMax gives 1, 2, 2.5 or 5 times a power of 10", () => {
    expect([0, 1, 3, 24, 25, 26, 700, 1001].map(niceMax)).toEqual([1, 1, 5, 25, 25, 50, 1000, 2000]);
  });

  it("cohortRate weighs cohorts by size and leaves out those with no closed week after", () => {
    expect(cohortRate([{ new: 10, active_after: [5] }, { new: 30, active_after: [3] }, { new: 5, active_after: [null] }])).toBe(0.2);
    expect(cohortRate([{ new: 5, active_after: [null] }])).toBeNull();
  });
});
