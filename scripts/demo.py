"""The whole loop on this machine, in one command: python3 scripts/demo.py

Installs the collector's npm packages (once), starts it with a fresh local D1 on 127.0.0.1,
sends one real session event with the Python module, prints what the collector stored and
its stats, and stops. Your own ~/.agentsonar is not touched: the demo uses a temporary
state dir.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_collector import ROOT, LocalCollector, check_node, ensure_npm_ci


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main() -> int:
    check_node()
    step("installing the collector's npm packages (npm ci, once)")
    ensure_npm_ci()
    step("starting the collector: wrangler dev --local on 127.0.0.1, migrations applied to a fresh local D1")
    with LocalCollector(lifetime=300) as collector, tempfile.TemporaryDirectory() as state_dir:
        print(f"collector at {collector.base_url}")
        step("a host program starts a session: agentsonar_telemetry.start_session('0.4.0', 'custom_python')")
        env = dict(
            os.environ,
            AGENTSONAR_TELEMETRY_URL=collector.events_url,
            AGENTSONAR_STATE_DIR=state_dir,
            PYTHONPATH=str(ROOT),
        )
        for name in ("AGENTSONAR_TELEMETRY", "DO_NOT_TRACK"):
            env.pop(name, None)
        code = (
            "import agentsonar_telemetry as at\n"
            "s = at.start_session('0.4.0', 'custom_python')\n"
            "print('session:', s.reason, s.session_id)\n"
            "print('delivered:', s.wait(10))\n"
        )
        # The disclosure goes to stderr, as it would in a real host program: shown here as is.
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
        step("what the collector stored (wrangler d1 execute --local)")
        for row in collector.query("SELECT * FROM events"):
            print(json.dumps(row, indent=2))
        step("GET /v1/stats with the bearer token")
        print(json.dumps(collector.stats(), indent=2))
        step("stopping the collector")
    print("done: the collector is stopped and its temporary database removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
