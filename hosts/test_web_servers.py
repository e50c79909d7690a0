"""Real web servers: gunicorn's sync, gthread and gevent workers, preloaded or not, uvicorn, uWSGI.

A server that forks its workers from a master that already started a session (``--preload``,
uWSGI's default) must not hang, warn or send twice; workers that race at their first session
must show the disclosure once between them and share one install id; where uWSGI forks
without Python's at-fork hooks (its default), neither its master nor its workers send; stopping
gunicorn or uvicorn loses nothing.
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    DISCLOSURE,
    HOSTS,
    Collector,
    answer_of,
    assert_one_machine,
    free_port,
    host_env,
    kill_group,
    python_bin,
    stop,
    wait_until_listening,
)

WORKERS = 2
REQUESTS = 6


def get(port: int) -> tuple[str, str]:
    """The rules of the worker's session and of the one at import."""
    return answer_of(port)[1:]


class Server:
    """A server process started by a test; whatever happens in the test, it is gone after it."""

    def __init__(self, home: Path, collector: Collector) -> None:
        self.home, self.collector = home, collector
        self.log = home.parent / "server.err"
        self.process: subprocess.Popen[bytes] | None = None

    def requests(self, command: list[str], port: int) -> list[tuple[str, str]]:
        """Start the server and answer REQUESTS requests, each on a new connection."""
        with self.log.open("wb") as stderr:
            env = host_env(self.home, self.collector)
            self.process = subprocess.Popen(command, cwd=HOSTS, env=env, stderr=stderr, start_new_session=True)
        wait_until_listening(self.process, port)
        return [get(port) for _ in range(REQUESTS)]

    def stop(self) -> int:
        assert self.process is not None
        return stop(self.process, signal.SIGTERM)


@pytest.fixture
def server(home: Path, collector: Collector) -> Iterator[Server]:
    started = Server(home, collector)
    try:
        yield started
    finally:
        kill_group(started.process)


def check_stderr(log: Path, disclosures: int = 1) -> None:
    """The notice as often as expected (once per machine), and nothing else of ours."""
    text = log.read_text(errors="replace")
    assert text.count(DISCLOSURE) == disclosures, text
    for noise in ("Traceback", "Warning:", "agentsonar_telemetry.py"):
        assert noise not in text, text


@pytest.mark.parametrize("worker_class", ["sync", "gthread", "gevent"])
@pytest.mark.parametrize("preload", [True, False], ids=["preload", "import-per-worker"])
def test_gunicorn_delivers_every_session_once_under_one_install_id(
    worker_class: str, preload: bool, server: Server, home: Path, collector: Collector
) -> None:
    port = free_port()
    command = [python_bin("gunicorn"), "-k", worker_class, "-w", str(WORKERS), "-b", f"127.0.0.1:{port}"]
    answers = server.requests([*command, *(["--preload"] if preload else []), "wsgi_app:app"], port)
    assert set(answers) == {("send", "send")}
    imports = 1 if preload else WORKERS  # the master's own, or each worker's
    collector.wait_for(imports + REQUESTS)
    assert server.stop() == 0
    events = collector.events
    assert Counter(e["adapter"] for e in events) == {"at_import": imports, "per_request": REQUESTS}
    assert_one_machine(events, home)
    check_stderr(server.log)


@pytest.mark.parametrize("workers", [1, WORKERS])
def test_uvicorn_delivers_every_session_once_under_one_install_id(
    workers: int, server: Server, home: Path, collector: Collector
) -> None:
    """Its workers are spawned (multiprocessing), so each imports the app itself; requests are
    served on an asyncio loop in the main thread. (uvicorn ends by raising SIGTERM again with
    the default action, so it runs no exit handler: what is in flight then is lost.)"""
    port = free_port()
    command = [python_bin("uvicorn"), "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    answers = server.requests([*command, "asgi_app:app"], port)
    assert set(answers) == {("send", "send")}
    collector.wait_for(workers + REQUESTS)
    # One process re-raises the SIGTERM it handled; a supervisor of workers exits 0.
    assert server.stop() == (-signal.SIGTERM if workers == 1 else 0)
    events = collector.events
    assert Counter(e["adapter"] for e in events) == {"at_import": workers, "per_request": REQUESTS}
    assert_one_machine(events, home)
    check_stderr(server.log)


UWSGI_MODES = {
    # The master imports the app and forks its workers in C, without Python's at-fork hooks: a
    # thread of ours alive then left a worker the GIL held by nobody, and it never answered. So
    # sessions are off in the master and in its workers alike (rule "fork").
    "default": ([], "fork", 0, 0),
    # Python's hooks on both sides of the fork: the master's session is sent too.
    "fork-hooks": (["--py-call-uwsgi-fork-hooks"], "send", 1, REQUESTS),
    "lazy-apps": (["--lazy-apps"], "send", WORKERS, REQUESTS),
}


@pytest.mark.parametrize("mode", UWSGI_MODES)
def test_uwsgi_sends_from_workers_only_when_python_saw_the_fork(
    mode: str, server: Server, home: Path, collector: Collector
) -> None:
    options, rule, imports, requests = UWSGI_MODES[mode]
    at_import = "send" if imports else "fork"
    port = free_port()
    command = [python_bin("uwsgi"), "--master", "--processes", str(WORKERS), "--http-socket", f"127.0.0.1:{port}"]
    command += ["--wsgi-file", "wsgi_app.py", "--callable", "app", "--die-on-term", *options]
    answers = server.requests(command, port)
    assert set(answers) == {(rule, at_import)}
    collector.wait_for(imports + requests)
    # uWSGI's own stop is not what is tested: with an app that never imports this module it at
    # times kept a worker past its 60 s mercy, or printed a worker's KeyboardInterrupt traceback.
    kill_group(server.process)
    events = collector.events
    assert Counter(e["adapter"] for e in events) == +Counter(at_import=imports, per_request=requests)
    if events:
        assert_one_machine(events, home)
    else:
        assert not (home / ".agentsonar").exists()
    check_stderr(server.log, 1 if events else 0)
