"""scripts/smoke.py against wrangler dev: it passes on a healthy collector, names what is wrong on
one whose job never ran, ran long ago, or whose token differs, and stores nothing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from local_collector import ROOT, WORKER_DIR, LocalCollector, ensure_npm_ci

SMOKE = ROOT / "scripts" / "smoke.py"


@pytest.fixture(scope="module")
def fresh_collector() -> Iterator[LocalCollector]:
    """A collector of its own: the smoke checks look at as_of, which other tests move."""
    ensure_npm_ci()
    with LocalCollector(lifetime=600, token="smoke-token") as server:
        yield server


def smoke(url: str, token: str) -> tuple[int, str]:
    env = {**os.environ, "STATS_TOKEN": token}
    result = subprocess.run(
        [sys.executable, str(SMOKE), url], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.stderr == ""
    return result.returncode, result.stdout


def stored_events(collector: LocalCollector) -> int:
    return int(collector.query("SELECT COUNT(*) AS n FROM events")[0]["n"])  # type: ignore[call-overload]


def test_smoke_names_each_problem_then_passes(fresh_collector: LocalCollector) -> None:
    url = fresh_collector.base_url
    code, out = smoke(url, "smoke-token")  # the job has never run
    assert code == 1
    assert re.search(r"^ok    GET /healthz: 200$", out, re.M)
    assert re.search(r"^ok    POST /event: 400 invalid_event, nothing stored$", out, re.M)
    assert re.search(r"^ok    POST /v1/events: 400 invalid_event, nothing stored$", out, re.M)
    assert re.search(r"^ok    GET /dashboard: 200 text/html", out, re.M)
    assert re.search(r"^FAIL  GET /v1/stats: as_of is null", out, re.M)
    assert out.rstrip().endswith("smoke: 1 of 5 checks failed")

    fresh_collector.run_job_once(time.time() - 5 * 3600)  # a job that stopped running hours ago
    code, out = smoke(url, "smoke-token")
    assert code == 1 and re.search(r"^FAIL  GET /v1/stats: as_of is .* h old", out, re.M), out

    fresh_collector.run_job_once(time.time())
    code, out = smoke(url, "smoke-token")
    assert code == 0, out
    assert out.rstrip().endswith("smoke: all checks passed")

    code, out = smoke(url, "not-the-token")
    assert code == 1 and re.search(r"^FAIL  GET /v1/stats: answered 401", out, re.M)
    assert stored_events(fresh_collector) == 0  # four runs of the smoke test added nothing


def test_smoke_reports_an_unreachable_collector(fresh_collector: LocalCollector) -> None:
    from local_collector import free_port

    code, out = smoke(f"http://127.0.0.1:{free_port()}", "smoke-token")
    assert code == 1 and out.count("FAIL") == 5


def test_the_deploy_serves_every_path() -> None:
    """worker/wrangler.jsonc routes the whole host to the Worker: a pattern with a path (the old
    `t.agent-sonar.com/v1/*`) would drop /event, /dashboard and /public."""
    text = (WORKER_DIR / "wrangler.jsonc").read_text()
    config = json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.M))
    routes = config["routes"]
    assert routes, "no route: `wrangler deploy` would serve nothing on the domain"
    for route in routes:
        assert route.get("custom_domain") is True and "/" not in route["pattern"], route
