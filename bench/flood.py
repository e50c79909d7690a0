"""A one-client flood, end to end: what it gets in, and what it costs the job, the GETs and the page.

    python3 bench/flood.py [--events 20000] [--connections 8] [--json]

Against `wrangler dev --local` on 127.0.0.1 (PUBLIC_DASHBOARD on), in one run:

1. honest data: --events events from a few hundred installs over the last 8 weeks, written
   straight into the local D1; the job; every GET (bytes, D1 rows read, median ms);
2. the flood through HTTP: one client (one network, `CF-Connecting-IP` set as Cloudflare's
   edge sets it) posts --events events with distinct, maximal-length values on --connections
   connections: accepted, refused (429), stored;
3. the same volume written straight into D1, as a distributed attacker would get it in (each
   install under its rate limit); the job rebuilt: each run's time, slowest statement and the
   snapshot row's bytes; every GET again;
4. the dashboard's drawing time in Debian's Chromium, if playwright is installed (tox -e flood).

Goals (DESIGN.md, "On the open internet"): every job run completes; every GET's rows read and
bytes bounded by weeks x dimensions x 26 values (/v1/stats/weekly?weeks=26: a few thousand rows,
well under 256 KB); the dashboard draws in under 1 s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sqlite3
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "scripts")]
from local_collector import LocalCollector, ensure_npm_ci  # noqa: E402
from reporting import DAY, HOUR, Population, database_file, fill, job_runs, summarize_runs, uuid4  # noqa: E402

GETS = [
    "/v1/stats",
    "/v1/stats?format=csv",
    "/v1/stats/daily",
    "/v1/stats/weekly?weeks=26",
    "/v1/stats/weekly?weeks=26&format=csv",
    "/v1/stats/cohorts",
]
FLOOD_NETWORK = "198.51.100.7"  # TEST-NET-2: the one client


def maximal(prefix: str, i: int, length: int) -> str:
    return f"{prefix}{i}".ljust(length, "x")


def flood_event(rng: random.Random, i: int) -> dict[str, object]:
    return {
        "install_id": uuid4(rng),
        "session_id": uuid4(rng),
        "version": maximal("v", i, 32),
        "python": f"3.{i}",
        "os": maximal("o", i, 16),
        "arch": maximal("a", i, 16),
        "adapter": maximal("d", i, 32),
        "timestamp": 1_745_891_234.5,
    }


def post_all(port: int, events: list[dict[str, object]], connections: int) -> dict[int, int]:
    """POST every event from one network on `connections` keep-alive connections; status counts."""
    slices = [events[i::connections] for i in range(connections)]

    def worker(part: list[dict[str, object]]) -> dict[int, int]:
        counts: dict[int, int] = {}
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for event in part:
            body = json.dumps(event).encode()
            headers = {"Content-Type": "application/json", "CF-Connecting-IP": FLOOD_NETWORK}
            conn.request("POST", "/v1/events", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            counts[response.status] = counts.get(response.status, 0) + 1
        conn.close()
        return counts

    total: dict[int, int] = {}
    with ThreadPoolExecutor(connections) as pool:
        for counts in pool.map(worker, slices):
            for status, n in counts.items():
                total[status] = total.get(status, 0) + n
    return total


def measure_gets(collector: LocalCollector, calls: int, public: str) -> dict[str, dict[str, float]]:
    """Each GET's median ms, bytes and D1 rows read; `public` is a /v1/public URL not yet cached."""
    out: dict[str, dict[str, float]] = {}
    for path in [*GETS, public]:
        samples = []
        for _ in range(calls + 1):
            conn = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=60)
            began = time.perf_counter()
            conn.request("GET", path, headers={"Authorization": f"Bearer {collector.token}"})
            response = conn.getresponse()
            body = response.read()
            samples.append(((time.perf_counter() - began) * 1000, len(body), response.headers.get("X-D1-Rows-Read")))
            conn.close()
            if response.status != 200:
                raise SystemExit(f"GET {path}: {response.status}")
        first = samples[0]  # /v1/public: the call that filled the cache read D1; later ones did not
        out[path] = {
            "median_ms": round(statistics.median(ms for ms, _, _ in samples[1:]), 1),
            "bytes": first[1],
            "rows_read": int(first[2] or 0),
        }
    return out


def snapshot_bytes(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT LENGTH(figures) FROM stats_snapshot").fetchone()
        return int(row[0]) if row else 0
    finally:
        db.close()


def rebuild(path: Path) -> None:
    db = sqlite3.connect(path, timeout=60)
    with db:
        for table in ("job_state", "installs", "sessions_hourly", "sessions_daily", "weekly", "weekly_by", "cohorts"):
            db.execute(f"DELETE FROM {table}")
    db.close()


def dashboard_ms(collector: LocalCollector) -> float | None:
    """Milliseconds from the token's Enter to every chart drawn, in Chromium; None without playwright."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[*args, "--no-first-run"])
        page = browser.new_page()
        page.goto(f"{collector.base_url}/dashboard")
        page.get_by_label("Stats token").fill(collector.token)
        began = time.perf_counter()
        page.get_by_label("Stats token").press("Enter")
        page.locator("#cohorts table").first.wait_for(timeout=120_000)
        page.locator("#version svg").first.wait_for(timeout=120_000)
        elapsed = (time.perf_counter() - began) * 1000
        browser.close()
    return round(elapsed, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    ensure_npm_ci()
    rng = random.Random(15)
    now = int(time.time())
    report: dict[str, Any] = {"events": args.events}
    collector = LocalCollector(lifetime=3600, variables={"PUBLIC_DASHBOARD": "on"})
    try:
        collector.migrate()
        path = database_file(collector)
        honest = Population(max(50, args.events // 40), rng).rows(args.events, now - 56 * DAY, now - HOUR)
        fill(path, honest)
        collector.start()
        job_runs(collector, now + HOUR)
        gets = measure_gets(collector, args.calls, "/v1/public")
        report["honest"] = {"gets": gets, "dashboard_ms": dashboard_ms(collector)}

        print(f"posting {args.events:,} flood events from one network ...", file=sys.stderr)
        before = int(collector.query("SELECT COUNT(*) AS n FROM events")[0]["n"])  # type: ignore[call-overload]
        began = time.monotonic()
        statuses = post_all(collector.port, [flood_event(rng, i) for i in range(args.events)], args.connections)
        stored = int(collector.query("SELECT COUNT(*) AS n FROM events")[0]["n"]) - before  # type: ignore[call-overload]
        report["http_flood"] = {
            "seconds": round(time.monotonic() - began, 1),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "stored": stored,
        }

        print(f"writing {args.events:,} more straight into D1, then rebuilding ...", file=sys.stderr)
        rows = []
        for i in range(args.events):
            e = flood_event(rng, args.events + i)
            received = now - 56 * DAY + (i * 56 * DAY) // args.events
            rows.append((e["session_id"], e["install_id"], e["version"], e["python"], e["os"], e["arch"],
                         e["adapter"], e["timestamp"], received))  # fmt: skip
        fill(path, rows)
        rebuild(path)
        runs = job_runs(collector, now + 2 * HOUR)
        report["job"] = {**summarize_runs(runs), "snapshot_bytes": snapshot_bytes(path)}
        public = "/v1/public?weeks=26"  # a cache key of its own: the honest answer is still cached
        gets = measure_gets(collector, args.calls, public)
        report["flooded"] = {"gets": gets, "dashboard_ms": dashboard_ms(collector)}
    finally:
        collector.close()

    weekly = report["flooded"]["gets"]["/v1/stats/weekly?weeks=26"]
    draw = report["flooded"]["dashboard_ms"]
    goals = {
        "every job run completed": True,  # job_runs raises otherwise
        "/v1/stats/weekly?weeks=26 under 5,000 rows read": weekly["rows_read"] < 5_000,
        "/v1/stats/weekly?weeks=26 under 256 KB": weekly["bytes"] < 256 * 1024,
        "snapshot under 100 KB": report["job"]["snapshot_bytes"] < 100_000,
        "dashboard draws in under 1 s": draw is None or draw < 1000,
    }
    report["goals"] = goals
    print(json.dumps(report, indent=2 if not args.json else None))
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
