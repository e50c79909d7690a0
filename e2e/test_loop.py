"""The whole loop: module -> wrangler dev -> local D1, read back through /v1/stats and d1 execute."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DISCLOSURE, run_cli, run_session, session_env
from local_collector import LocalCollector

import agentsonar_telemetry as at


def stored(collector: LocalCollector, where: str) -> list[dict[str, object]]:
    return collector.query(f"SELECT * FROM events WHERE {where}")


def wait_stored(collector: LocalCollector, session_id: str, timeout: float = 10) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        rows = stored(collector, f"session_id = '{session_id}'")
        if rows or time.monotonic() > deadline:
            assert len(rows) == 1, f"session {session_id} stored {len(rows)} times"
            return rows[0]
        time.sleep(0.2)


def count(collector: LocalCollector) -> int:
    return int(collector.query("SELECT COUNT(*) AS n FROM events")[0]["n"])  # type: ignore[arg-type]


def test_first_session_second_session_and_reset(collector: LocalCollector, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = run_session(state, collector.events_url)
    assert first.rule == "send" and first.stderr.count(DISCLOSURE) == 1
    row = wait_stored(collector, str(first.session_id))
    received_at = row.pop("received_at")
    assert row == first.event  # exactly the eight fields, as sent
    assert set(row) == set(at._EVENT_FIELDS)
    assert isinstance(received_at, int) and abs(received_at - time.time()) < 120

    second = run_session(state, collector.events_url)
    assert second.stderr == ""
    assert wait_stored(collector, str(second.session_id))["install_id"] == row["install_id"]

    assert run_cli(state, collector.events_url, "reset").returncode == 0
    third = run_session(state, collector.events_url)
    assert third.stderr.count(DISCLOSURE) == 1
    assert wait_stored(collector, str(third.session_id))["install_id"] != row["install_id"]

    collector.run_job(rebuild=True)
    stats = collector.stats()
    assert stats["sessions"]["1d"] >= 3  # type: ignore[index]


@pytest.mark.parametrize(
    ("config", "env"),
    [(None, {"AGENTSONAR_TELEMETRY": "off"}), (None, {"DO_NOT_TRACK": "1"}), ({"telemetry": False}, {})],
    ids=["AGENTSONAR_TELEMETRY=off", "DO_NOT_TRACK=1", "config-telemetry-false"],
)
def test_opt_outs_store_nothing_now_or_next_time(
    collector: LocalCollector, tmp_path: Path, config: dict[str, object] | None, env: dict[str, str]
) -> None:
    state = tmp_path / "state"
    connections = tmp_path / "connections.log"
    before = count(collector)
    now = run_session(state, collector.events_url, config, AGENTSONAR_TEST_CONNECT_LOG=str(connections), **env)
    later = run_session(state, collector.events_url, None, AGENTSONAR_TEST_CONNECT_LOG=str(connections), **env)
    assert "send" not in (now.rule, later.rule)
    assert now.stderr == later.stderr == ""
    assert not connections.exists()  # neither process opened a connection: nothing can be in flight
    assert count(collector) == before
    if config is not None:
        assert later.rule == "telemetry_disabled"


def test_session_that_exits_at_once_is_stored(collector: LocalCollector, tmp_path: Path) -> None:
    state = tmp_path / "state"
    runs = [run_session(state, collector.events_url) for _ in range(5)]
    for run in runs:
        assert run.rule == "send"
        wait_stored(collector, str(run.session_id))


def test_twenty_processes_on_one_fresh_state_dir(collector: LocalCollector, tmp_path: Path) -> None:
    # They run until delivered: twenty interpreters starting at once on two cores can outlast
    # the 0.5 s exit wait (then the backoff silences the rest), which is the design; exiting at
    # once is test_session_that_exits_at_once_is_stored's subject.
    from conftest import SESSION_CODE

    state = tmp_path / "state"
    env = session_env(state, collector.events_url)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SESSION_CODE, "null", "wait"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(20)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    sessions = [json.loads(out)["session_id"] for out, _ in outputs]
    assert sum(err.count(DISCLOSURE) for _, err in outputs) == 1
    install_id = json.loads((state / "state.json").read_text())["install_id"]
    deadline = time.monotonic() + 15
    while True:
        rows = stored(collector, f"install_id = '{install_id}'")
        if len(rows) >= 20 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert sorted(str(r["session_id"]) for r in rows) == sorted(sessions)
    assert {r["install_id"] for r in rows} == {install_id}


class FlakyProxy:
    """Forwards every request to the collector, but answers the first one 503: a lost answer."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.forwarded = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = urllib.request.Request(
                    proxy.upstream, data=body, method="POST", headers={"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=10) as response:
                    status = response.status
                proxy.forwarded += 1
                self.send_response(503 if proxy.forwarded == 1 else status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky_proxy(collector: LocalCollector) -> Iterator[FlakyProxy]:
    proxy = FlakyProxy(collector.events_url)
    yield proxy
    proxy.close()


def test_retried_delivery_is_stored_once(collector: LocalCollector, flaky_proxy: FlakyProxy, tmp_path: Path) -> None:
    run = run_session(tmp_path / "state", flaky_proxy.url)
    assert run.rule == "send"
    assert flaky_proxy.forwarded == 2  # the first answer was lost, so the module retried
    wait_stored(collector, str(run.session_id))  # asserts exactly one row
    state = json.loads((tmp_path / "state" / "state.json").read_text())
    assert "backoff_until" not in state


def test_collector_stopped_midway(tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = LocalCollector(lifetime=300)
    server.start()
    try:
        first = run_session(state, server.events_url)
        wait_stored(server, str(first.session_id))
        server.stop()
        second = run_session(state, server.events_url)  # a refused port: bench/client.py times the exit
        assert second.rule == "send" and second.stderr == ""
        saved = json.loads((state / "state.json").read_text())
        assert saved["backoff_seconds"] == at._BACKOFF_INITIAL
        third = run_session(state, server.events_url)
        assert third.rule == "backoff" and third.stderr == ""
    finally:
        server.close()


def test_stats_through_http(collector: LocalCollector, tmp_path: Path) -> None:
    run = run_session(tmp_path / "state", collector.events_url)
    wait_stored(collector, str(run.session_id))
    collector.run_job(rebuild=True)
    stats = collector.stats()
    assert stats["installs"]["30d"] >= 1  # type: ignore[index]
    assert stats["by"]["version"]["0.4.0"] >= 1  # type: ignore[index]
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"{collector.base_url}/v1/stats", timeout=10)
    assert error.value.code == 401
    error.value.close()


def test_the_hourly_job_through_wrangler_dev(collector: LocalCollector, tmp_path: Path) -> None:
    """The cron's handler: weeks of events (one 100 days old) become weekly figures and cohorts;
    the old raw row goes once it is counted; every reporting GET answers as of the run."""
    now = int(time.time())
    person, old_session = str(uuid.uuid4()), str(uuid.uuid4())
    rows = [(old_session, str(uuid.uuid4()), now - 100 * 86400)]
    rows += [(str(uuid.uuid4()), person, now - days * 86400) for days in (20, 19, 12, 5)]
    collector.query(
        "INSERT INTO events VALUES "
        + ", ".join(
            f"('{sid}', '{iid}', '0.0.1', '3.10', 'linux', 'x86_64', 'e2e_job', 1745891234, {received})"
            for sid, iid, received in rows
        )
    )
    report = collector.run_job(rebuild=True)
    assert report["caught_up"] is True and report["events_deleted"] >= 1
    assert stored(collector, f"session_id = '{old_session}'") == []  # past RETENTION_DAYS, once counted
    assert len(stored(collector, f"install_id = '{person}'")) == 4
    daily = collector.get_json("/v1/stats/daily?days=120")
    assert sum(d["sessions"] for d in daily["days"]) >= 5  # type: ignore[index,misc]
    weekly = collector.get_json("/v1/stats/weekly?weeks=20")
    assert weekly["as_of"] == collector.stats()["as_of"]
    assert sum(w["by"]["adapter"].get("e2e_job", {}).get("active", 0) for w in weekly["weeks"]) >= 3  # type: ignore[index,union-attr,attr-defined]
    cohorts = collector.get_json("/v1/stats/cohorts?weeks=20")["cohorts"]
    assert any(c["new"] >= 1 and (c["active_after"][0] or 0) + (c["active_after"][1] or 0) >= 1 for c in cohorts)  # type: ignore[index,union-attr,operator]
    request = urllib.request.Request(
        f"{collector.base_url}/v1/stats/weekly?format=csv", headers={"Authorization": f"Bearer {collector.token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert response.read().decode().startswith("week,start,dimension,value,")
