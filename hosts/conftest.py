"""The module inside real hosts: a recording collector on loopback and how to run a host against it.

Every host (gunicorn, uWSGI, a Jupyter kernel) runs as a subprocess with its own home, the
loopback guard of tests/_netguard loaded, and the collector below as its endpoint.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import agentsonar_telemetry as at

ROOT = Path(__file__).resolve().parent.parent
NETGUARD = ROOT / "tests" / "_netguard"
MODULE_DIR = Path(at.__file__).resolve().parent
HOSTS = Path(__file__).resolve().parent
DISCLOSURE = "AgentSonar collects anonymous usage telemetry"
PATIENCE = 60.0  # seconds a host may take to start, answer or stop before the test fails


class Collector:
    """An HTTP collector on 127.0.0.1 that answers 202 and keeps every event it was sent."""

    def __init__(self) -> None:
        self.events: list[dict[str, object]] = []
        self.arrived = threading.Condition()
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with collector.arrived:
                    collector.events.append(json.loads(body))
                    collector.arrived.notify_all()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int) -> list[dict[str, object]]:
        """The events once *count* have arrived; fails after PATIENCE seconds without them."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.events) >= count, PATIENCE):
                pytest.fail(f"{count} events expected, {len(self.events)} arrived: {self.events}")
            return list(self.events)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SilentCollector:
    """A port on 127.0.0.1 that accepts connections and never answers: every send is in flight
    until the module's own deadline ends it."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1/events"
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        try:
            while True:
                self.held.append(self.listener.accept()[0])
        except OSError:
            return  # closed

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept; close alone would not
        self.listener.close()
        self.thread.join(PATIENCE)
        for connection in self.held:
            connection.close()


@pytest.fixture
def silent_collector() -> Iterator[SilentCollector]:
    with contextlib.closing(SilentCollector()) as server:
        yield server


@pytest.fixture
def collector() -> Iterator[Collector]:
    with contextlib.closing(Collector()) as server:
        yield server


def _source_tree() -> list[str]:
    return sorted(str(p.relative_to(HOSTS)) for p in HOSTS.rglob("*") if "__pycache__" not in p.parts)


@pytest.fixture(autouse=True)
def leaves_the_tree_alone() -> Iterator[None]:
    """A host runs with hosts/ as its working directory: nothing it writes may land there."""
    before = _source_tree()
    yield
    assert _source_tree() == before, "a host wrote into hosts/"


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """The host's home; a test fails when anything in it tried to leave loopback."""
    path = tmp_path / "home"
    path.mkdir()
    yield path
    log = tmp_path / "net-violations.log"
    assert not log.exists(), f"a host tried to leave loopback: {log.read_text()}"


def host_env(home: Path, collector: Collector | SilentCollector, **extra: str) -> dict[str, str]:
    """A host's environment: its own HOME (so the default ~/.agentsonar), the collector, the guard."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTSONAR_", "DO_NOT_TRACK"))}
    env = {k: v for k, v in env.items() if not k.lower().endswith("_proxy")}
    env.update(
        HOME=str(home),
        PYTHONPATH=os.pathsep.join([str(NETGUARD), str(MODULE_DIR), str(HOSTS)]),
        AGENTSONAR_TELEMETRY_URL=collector.url,
        AGENTSONAR_TEST_NET_LOG=str(home.parent / "net-violations.log"),
    )
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_listening(process: subprocess.Popen[bytes], port: int) -> None:
    """Return once *process* accepts connections on *port*; fail if it exits or PATIENCE runs out."""
    ready = threading.Event()

    def poll() -> None:
        while process.poll() is None and not ready.is_set():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                ready.set()
            except OSError:
                ready.wait(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    poller.join(PATIENCE)
    if not ready.is_set():
        process.kill()
        pytest.fail(f"the host did not listen on {port} (exit status {process.poll()})")


def stop(process: subprocess.Popen[bytes], sig: int) -> int:
    """Send *sig* and wait for the exit status; fail (after killing it) when it does not exit."""
    process.send_signal(sig)
    try:
        return process.wait(PATIENCE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail("the host did not stop")


def kill_group(process: subprocess.Popen[bytes] | None) -> None:
    """A host started in its own session, and every process it forked, whatever state a test left them in."""
    if process is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def answer_of(port: int) -> tuple[str, str, str]:
    """One request to the application of wsgi_app.py or asgi_app.py, on a new connection: the
    answering process, its session's rule, and the rule of the session made at import."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
    try:
        connection.request("GET", "/")
        pid, rule, at_import = connection.getresponse().read().decode().split()
    finally:
        connection.close()
    return pid, rule, at_import


def state_of(home: Path) -> dict[str, object]:
    return dict(json.loads((home / ".agentsonar" / "state.json").read_text()))


def assert_one_machine(events: list[dict[str, object]], home: Path) -> None:
    """Every event of one host: distinct sessions, the one install id of its state, no backoff."""
    state = state_of(home)
    assert len({e["session_id"] for e in events}) == len(events)
    assert {e["install_id"] for e in events} == {state["install_id"]}
    assert state["disclosure_shown"] is True and "backoff_seconds" not in state


def python_bin(name: str) -> str:
    """A console script of the environment the tests run in (gunicorn, uwsgi)."""
    return str(Path(sys.executable).parent / name)
