"""Ingest load test: the collector against a bare D1-insert Worker, side by side.

    python3 bench/ingest.py [--events 10000] [--concurrency 8] [--rounds 1] [--json]

Each Worker runs under `wrangler dev --local` on 127.0.0.1 with a fresh local D1 and gets the
same request mix: 80% new valid events, 10% repeats of an earlier session id (a retried
delivery), 10% invalid events. Reported per Worker: events/s, p50/p99 latency, server errors,
lost and double-counted events (read back from D1), and, for the collector, D1 rows written per
event and read per stats call (after the hourly job). The goal (DESIGN.md): the collector does at least 0.9 of the
bare insert's events/s with 0 server errors, 0 lost and 0 double-counted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from local_collector import LocalCollector, ensure_npm_ci  # noqa: E402

BENCH = Path(__file__).resolve().parent
WORKERS = {
    "collector": ROOT / "worker" / "wrangler.jsonc",
    "bare_insert": BENCH / "wrangler.bare_insert.jsonc",
    "answer_only": BENCH / "wrangler.answer_only.jsonc",
}
INVALID_CHANGES = [
    {"version": "0.4.0\n"},
    {"adapter": "CrewAI"},
    {"timestamp": "soon"},
    {"hostname": "build-7"},
    {"install_id": "not-a-uuid"},
]


@dataclass
class Plan:
    bodies: list[bytes]
    kinds: list[str]  # "new", "repeat", "invalid"
    unique_valid: set[str]


def make_plan(events: int, seed: int = 7) -> Plan:
    rng = random.Random(seed)
    installs = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(max(1, events // 20))]
    n_invalid = events // 10
    n_repeat = events // 10
    n_new = events - n_invalid - n_repeat
    new = []
    for i in range(n_new):
        new.append(
            {
                "install_id": rng.choice(installs),
                "session_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "version": rng.choice(["0.4.0", "0.3.9", "0.5.0rc1"]),
                "python": rng.choice(["3.10", "3.11", "3.12", "3.13"]),
                "os": rng.choice(["linux", "darwin", "win32"]),
                "arch": rng.choice(["x86_64", "arm64"]),
                "adapter": rng.choice(["custom_python", "crewai", "langgraph", "oma_sidecar"]),
                "timestamp": 1_795_000_000 + i,
            }
        )
    items: list[tuple[str, dict[str, object]]] = [("new", e) for e in new]
    items += [("repeat", rng.choice(new)) for _ in range(n_repeat)]
    for i in range(n_invalid):
        broken = dict(rng.choice(new), session_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)))
        broken.update(INVALID_CHANGES[i % len(INVALID_CHANGES)])
        items.append(("invalid", broken))
    rng.shuffle(items)
    return Plan(
        bodies=[json.dumps(e, separators=(",", ":")).encode() for _, e in items],
        kinds=[k for k, _ in items],
        unique_valid={str(e["session_id"]) for e in new},
    )


@dataclass
class Result:
    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    wrong_answers: int = 0
    connection_errors: int = 0
    stored: int | None = None
    lost: int | None = None
    double_counted: int | None = None
    stored_invalid: int | None = None
    rows_written_per_event: float | None = None
    rows_read_per_stats_call: int | None = None

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, object]:
        lat = sorted(self.latencies)
        return {
            "events": len(lat),
            "events_per_s": round(self.rate, 1),
            "p50_ms": round(1000 * statistics.median(lat), 2) if lat else None,
            "p99_ms": round(1000 * lat[int(0.99 * (len(lat) - 1))], 2) if lat else None,
            "server_errors": sum(n for s, n in self.statuses.items() if s >= 500) + self.connection_errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "wrong_answers": self.wrong_answers,
            "stored": self.stored,
            "lost": self.lost,
            "double_counted": self.double_counted,
            "stored_invalid": self.stored_invalid,
            "rows_written_per_event": self.rows_written_per_event,
            "rows_read_per_stats_call": self.rows_read_per_stats_call,
        }


EXPECTED = {"new": 202, "repeat": 202, "invalid": 400}


def load(port: int, plan: Plan, concurrency: int, result: Result, check_answers: bool) -> None:
    next_index = iter(range(len(plan.bodies)))
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies, statuses, wrong, errors = [], {}, 0, 0
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                break
            began = time.perf_counter()
            try:
                conn.request("POST", "/v1/events", plan.bodies[i], {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            latencies.append(time.perf_counter() - began)
            statuses[response.status] = statuses.get(response.status, 0) + 1
            if check_answers and response.status != EXPECTED[plan.kinds[i]]:
                wrong += 1
        conn.close()
        with lock:
            result.latencies.extend(latencies)
            result.wrong_answers += wrong
            result.connection_errors += errors
            for status, n in statuses.items():
                result.statuses[status] = result.statuses.get(status, 0) + n

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.seconds = time.perf_counter() - began


def warm_up(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(20):
        conn.request("POST", "/v1/events", b"{}", {"Content-Type": "application/json"})
        conn.getresponse().read()
    conn.close()


def run_one(name: str, plan: Plan, concurrency: int) -> Result:
    result = Result(name)
    with LocalCollector(config=str(WORKERS[name]), lifetime=1200) as server:
        warm_up(server.port)
        load(server.port, plan, concurrency, result, check_answers=name == "collector")
        if name != "answer_only":
            rows = server.query("SELECT session_id FROM events")
            ids = [str(r["session_id"]) for r in rows]
            result.stored = len(ids)
            result.lost = len(plan.unique_valid - set(ids))
            result.stored_invalid = len(set(ids) - plan.unique_valid)
            result.double_counted = len(ids) - len(set(ids))
            if name == "collector":  # and the stats API, after the hourly job, counts each session once
                server.run_job()
                sessions = server.stats()["sessions"]["1d"]  # type: ignore[index]
                result.double_counted += max(0, int(sessions) - len(plan.unique_valid))
                result.rows_read_per_stats_call = stats_rows_read(server)
        if name == "collector":
            meter(server, result)
    return result


def stats_rows_read(server: LocalCollector) -> int:
    """D1 rows one GET /v1/stats read, as the collector reports them (X-D1-Rows-Read)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", "/v1/stats", headers={"Authorization": f"Bearer {server.token}"})
    response = conn.getresponse()
    response.read()
    conn.close()
    return int(response.headers["X-D1-Rows-Read"])


def meter(server: LocalCollector, result: Result) -> None:
    """D1's own row counts for the collector's statements, on the database just loaded."""
    server.stop()
    metered = LocalCollector(config=str(BENCH / "wrangler.meter.jsonc"), persist_dir=server.persist_dir, lifetime=300)
    try:
        metered.start()
        conn = http.client.HTTPConnection("127.0.0.1", metered.port, timeout=30)
        event = {
            "install_id": str(uuid.uuid4()), "session_id": str(uuid.uuid4()), "version": "0.4.0", "python": "3.12",
            "os": "linux", "arch": "x86_64", "adapter": "custom_python", "timestamp": 1_795_000_000.5,
        }  # fmt: skip
        written = []
        for _ in range(2):  # a new session, then its retry
            conn.request("POST", "/insert", json.dumps(event).encode(), {"Content-Type": "application/json"})
            written.append(json.loads(conn.getresponse().read())["rows_written"])
        conn.close()
        result.rows_written_per_event = written[0]
        print(f"  D1 rows written: new event {written[0]}, repeated event {written[1]}; "
              f"rows read per /v1/stats call: {result.rows_read_per_stats_call} "
              f"({result.stored} events stored)", file=sys.stderr)  # fmt: skip
    finally:
        metered.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of collector and bare insert")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    ensure_npm_ci()
    plan = make_plan(args.events)
    order = []
    for _ in range(args.rounds):
        order += ["collector", "bare_insert"]
    order.append("answer_only")
    results: dict[str, list[Result]] = {}
    for name in order:
        print(f"running {name}: {args.events} events at concurrency {args.concurrency} ...", file=sys.stderr)
        results.setdefault(name, []).append(run_one(name, plan, args.concurrency))

    best = {name: max(runs, key=lambda r: r.rate) for name, runs in results.items()}
    ours, bare, answer = best["collector"], best["bare_insert"], best["answer_only"]
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "events": args.events,
        "concurrency": args.concurrency,
        "mix": "80% new, 10% repeated session ids, 10% invalid",
        "workers": {name: r.summary() for name, r in best.items()},
        "ratio_collector_to_bare_insert": round(ours.rate / bare.rate, 3),
        "ratio_collector_to_answer_only": round(ours.rate / answer.rate, 3),
        "ratio_bare_insert_to_answer_only": round(bare.rate / answer.rate, 3),
    }
    goal_met = (
        report["ratio_collector_to_bare_insert"] >= 0.9
        and ours.summary()["server_errors"] == 0
        and ours.lost == 0
        and ours.double_counted == 0
        and ours.stored_invalid == 0
        and ours.wrong_answers == 0
    )
    report["goal_met"] = goal_met
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"\nIngest, {args.events} events, concurrency {args.concurrency}, {report['mix']} ({report['date']})")
        print(f"{'worker':<12} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'5xx':>5} {'lost':>5} {'double':>7} "
              f"{'invalid stored':>15}")  # fmt: skip
        for name, r in best.items():
            s = r.summary()
            print(f"{name:<12} {s['events_per_s']:>9} {s['p50_ms']:>8} {s['p99_ms']:>8} {s['server_errors']:>5} "
                  f"{s['lost'] if s['lost'] is not None else '-':>5} "
                  f"{s['double_counted'] if s['double_counted'] is not None else '-':>7} "
                  f"{s['stored_invalid'] if s['stored_invalid'] is not None else '-':>15}")  # fmt: skip
        print(f"collector / bare insert: {report['ratio_collector_to_bare_insert']} (goal >= 0.9)")
        print(f"collector / answer only: {report['ratio_collector_to_answer_only']}; "
              f"bare insert / answer only: {report['ratio_bare_insert_to_answer_only']}")  # fmt: skip
        print(f"collector wrong answers (202 for valid and repeats, 400 for invalid): {ours.wrong_answers}")
        print(f"D1 rows written per new event: {ours.rows_written_per_event}; "
              f"rows read per /v1/stats call: {ours.rows_read_per_stats_call}")  # fmt: skip
        print(f"goal met: {goal_met}")
    return 0 if goal_met else 1


if __name__ == "__main__":
    sys.exit(main())
