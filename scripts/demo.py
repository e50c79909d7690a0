"""The whole loop on this machine, in one command: python3 scripts/demo.py [--serve]

Installs the collector's npm packages (once), starts it with a fresh local D1 on 127.0.0.1,
seeds eight weeks of made-up but realistic usage (people who come back, CI machines seen once,
an upgrade wave, Python 3.10 fading), sends one real session event with the Python module,
runs the hourly job, and prints what the collector answers: the stored row, /v1/stats and the
weekly figures. It prints the dashboard's address and token; with --serve it keeps the
collector up until Ctrl-C so that you can open them, else it stops. Your own ~/.agentsonar is
not touched: the session uses a temporary state dir.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_collector import ROOT, LocalCollector, check_node, ensure_npm_ci

DAY = 86400
WEEKS = 8


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def seed_rows(now: int, rng: random.Random) -> list[str]:
    """Eight weeks of usage: 150 people on 1-4 days a week, 60 CI machines a week seen once."""
    start = now - WEEKS * 7 * DAY
    rows = []

    def row(install: str, fields: tuple[str, str, str, str, str], t: int) -> str:
        version, python, os_, arch, adapter = fields
        return f"('{uuid.uuid4()}', '{install}', '{version}', '{python}', '{os_}', '{arch}', '{adapter}', {t}, {t})"

    people = []
    for _ in range(150):
        python = rng.choices(["3.10", "3.11", "3.12", "3.13"], [2, 4, 6, 2])[0]
        os_, arch = rng.choice([("linux", "x86_64"), ("darwin", "arm64"), ("linux", "arm64"), ("win32", "x86_64")])
        adapter = rng.choices(["crewai", "langgraph", "custom_python", "claude_code"], [4, 3, 3, 1])[0]
        people.append((str(uuid.uuid4()), python, os_, arch, adapter, rng.randrange(0, WEEKS * 7)))
    for install, first_python, os_, arch, adapter, joined in people:
        python = first_python
        for day in range(joined, WEEKS * 7):
            if rng.random() < 0.35:
                t = start + day * DAY + rng.randrange(8 * 3600, 20 * 3600)
                # 0.7.0 came out three weeks ago; people upgrade over the following fortnight.
                upgraded = day > WEEKS * 7 - 21 + rng.randrange(0, 14)
                if python == "3.10" and day > WEEKS * 7 - 28 and rng.random() < 0.5:
                    python = "3.12"  # Python 3.10 fades
                fields = ("0.7.0" if upgraded else "0.6.2", python, os_, arch, adapter)
                rows.append(row(install, fields, min(t, now - 3600)))
    for week in range(WEEKS):
        for _ in range(60):
            t = start + week * 7 * DAY + rng.randrange(0, 7 * DAY)
            rows.append(
                row(str(uuid.uuid4()), ("0.7.0", "3.11", "linux", "x86_64", "custom_python"), min(t, now - 3600))
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help="keep the collector up until Ctrl-C")
    args = parser.parse_args(argv)
    check_node()
    step("installing the collector's npm packages (npm ci, once)")
    ensure_npm_ci()
    step("starting the collector: wrangler dev --local on 127.0.0.1, migrations applied to a fresh local D1")
    lifetime = 24 * 3600 if args.serve else 300
    with LocalCollector(lifetime=lifetime) as collector, tempfile.TemporaryDirectory() as state_dir:
        print(f"collector at {collector.base_url}")
        step(f"seeding {WEEKS} weeks of made-up usage straight into the local D1")
        rows = seed_rows(int(time.time()), random.Random(2026))
        for i in range(0, len(rows), 500):
            collector.query("INSERT INTO events VALUES " + ", ".join(rows[i : i + 500]))
        print(f"{len(rows)} sessions")
        step("a host program starts a session: agentsonar_telemetry.start_session('0.4.0', 'custom_python')")
        env = dict(
            os.environ,
            AGENTSONAR_TELEMETRY_ENDPOINT=collector.events_url,
            AGENTSONAR_STATE_DIR=state_dir,
            PYTHONPATH=str(ROOT),
        )
        for name in ("AGENTSONAR_TELEMETRY", "DO_NOT_TRACK", "AGENTSONAR_TELEMETRY_URL"):
            env.pop(name, None)
        code = (
            "import agentsonar_telemetry as at\n"
            "s = at.start_session('0.4.0', 'custom_python')\n"
            "print('session:', s.reason, s.session_id)\n"
            "print('delivered:', s.wait(10))\n"
        )
        # The disclosure goes to stderr, as it would in a real host program: shown here as is.
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
        step("what the collector stored for it (wrangler d1 execute --local)")
        for row in collector.query("SELECT * FROM events WHERE version = '0.4.0'"):
            print(json.dumps(row, indent=2))
        step("the hourly job, run now through /cdn-cgi/handler/scheduled as if an hour had passed")
        report = collector.run_job()
        print(
            f"read up to {report['watermark']} in {report['chunks']} chunks, closed {len(report['weeks_closed'])} weeks"
        )
        step("GET /v1/stats with the bearer token")
        print(json.dumps(collector.stats(), indent=2))
        step("GET /v1/stats/weekly?weeks=3: the last closed weeks")
        for week in collector.get_json("/v1/stats/weekly?weeks=3")["weeks"]:  # type: ignore[union-attr]
            installs = week["installs"]
            print(
                f"{week['week']}: {week['sessions']} sessions, {installs['active']} active installs, "
                f"{installs['returning']} returning, {installs['new']} new, "
                f"one-shot {'not settled yet' if installs['one_shot'] is None else installs['one_shot']}"
            )
        step("the dashboard")
        print(f"open {collector.base_url}/dashboard and enter the token: {collector.token}")
        if args.serve:
            print("the collector stays up until Ctrl-C", flush=True)
            try:
                while collector.process is not None and collector.process.poll() is None:
                    time.sleep(1)
            except KeyboardInterrupt:
                print()
        else:
            print("(run with --serve to keep the collector up and open it)")
        step("stopping the collector")
    print("done: the collector is stopped and its temporary database removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
