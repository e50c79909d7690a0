// Migrations on data stored before them: each one applied again to rows written the old way.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import normalization from "../../contract/normalization.json";
import { OTHER_VALUES, TOP_VALUES } from "../src/figures";
import { insertEvent } from "../src/queries";
import { NOW, makeEvent, snapshot } from "./helpers";

/** Run a migration's statements again (only those that `touch` a table, when given). */
async function runMigration(prefix: string, touch?: string): Promise<void> {
  const migration = env.TEST_MIGRATIONS.find((m) => m.name.startsWith(prefix));
  if (migration === undefined) throw new Error(`migration ${prefix} is missing`);
  const queries = migration.queries.filter((sql) => touch === undefined || sql.includes(touch));
  await env.DB.batch(queries.map((sql) => env.DB.prepare(sql)));
}

describe("migration 0002: rows stored before ingest normalised os and arch", () => {
  it("normalises every case of contract/normalization.json in events, and again changes nothing", async () => {
    for (const { field, sent } of normalization.cases) {
      await insertEvent(env.DB, makeEvent({ [field]: sent, adapter: field === "os" ? "os_case" : "arch_case" }), NOW);
    }
    await runMigration("0002_");
    const { results } = await env.DB.prepare("SELECT os, arch, adapter FROM events").all<Record<string, string>>();
    const stored = (field: string) =>
      results.filter((r) => r.adapter === `${field}_case`).map((r) => r[field]).sort();
    for (const field of ["os", "arch"]) {
      const expected = normalization.cases.filter((c) => c.field === field).map((c) => c.stored).sort();
      expect(stored(field)).toEqual(expected);
    }
    const before = await snapshot();
    await runMigration("0002_");
    expect(await snapshot()).toBe(before);
  });

  it("merges rolled-up days stored under an alias into the normalised row", async () => {
    const insert = env.DB.prepare(
      "INSERT INTO daily_counts (day, version, python, os, arch, adapter, sessions) VALUES ('2026-01-05', '0.7.0', '3.12', ?1, ?2, 'custom_python', ?3)",
    );
    await env.DB.batch([
      insert.bind("win32", "amd64", 3),
      insert.bind("win32", "x64", 4),
      insert.bind("win32", "x86_64", 5),
      insert.bind("freebsd14", "amd64", 2),
      insert.bind("freebsd", "x86_64", 1),
      insert.bind("linux", "aarch64", 7),
    ]);
    await runMigration("0002_");
    const { results } = await env.DB.prepare(
      "SELECT os, arch, sessions FROM daily_counts ORDER BY os, arch",
    ).all();
    expect(results).toEqual([
      { os: "freebsd", arch: "x86_64", sessions: 3 },
      { os: "linux", arch: "arm64", sessions: 7 },
      { os: "win32", arch: "x86_64", sessions: 12 },
    ]);
  });
});

describe("migration 0004: weekly figures stored before values were bounded", () => {
  it("folds each week and dimension past the top 25 values into (other), keeping every install counted", async () => {
    const insert = env.DB.prepare(
      "INSERT INTO weekly_by (week, dimension, value, installs_active, installs_returning) VALUES (?1, ?2, ?3, ?4, ?5)",
    );
    const rows = [];
    for (let i = 0; i < 40; i++) rows.push(insert.bind("2026-W47", "version", `0.${i}.0`, 100 - i, i % 2));
    rows.push(insert.bind("2026-W47", "os", "linux", 50, 5), insert.bind("2026-W48", "version", "0.7.0", 3, 1));
    await env.DB.batch(rows);
    await runMigration("0004_", "weekly_by");
    const { results } = await env.DB.prepare(
      "SELECT week, dimension, value, installs_active AS active, installs_returning AS back FROM weekly_by ORDER BY week, dimension, active DESC",
    ).all<{ week: string; dimension: string; value: string; active: number; back: number }>();
    const w47 = results.filter((r) => r.week === "2026-W47" && r.dimension === "version");
    expect(w47).toHaveLength(TOP_VALUES + 1);
    expect(w47.filter((r) => r.value !== OTHER_VALUES).map((r) => r.value)).toEqual(Array.from({ length: TOP_VALUES }, (_, i) => `0.${i}.0`));
    const other = w47.find((r) => r.value === OTHER_VALUES);
    // 0.25.0 to 0.39.0: active 75 down to 61, returning 1 for each odd i.
    expect(other).toMatchObject({ active: (75 + 61) * 15 / 2, back: 8 });
    expect(results.filter((r) => r.dimension === "os" || r.week === "2026-W48")).toHaveLength(2); // small weeks untouched
    const before = await snapshot();
    await runMigration("0004_", "weekly_by"); // applied again (a rebuilt week folded already): nothing changes
    expect(await snapshot()).toBe(before);
  });
});
