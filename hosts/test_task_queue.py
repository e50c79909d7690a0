"""A real Celery worker (prefork pool, billiard) running tasks that start sessions.

A prefork worker recycled after its tasks (``worker_max_tasks_per_child``, common where agents
leak memory) reports its end to its parent, which kills it at once: neither atexit nor
multiprocessing's finalizers run, and the session of its last task was lost unsent and
unrecorded. The exit wait answers Celery's ``worker_process_shutdown`` there.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import (
    DISCLOSURE,
    HOSTS,
    PATIENCE,
    Collector,
    SilentCollector,
    assert_one_machine,
    host_env,
    kill_group,
    python_bin,
    state_of,
    stop,
)

HOUR = 3600.0


class Worker:
    """``celery worker`` with a prefork pool, and a way to queue tasks for it; gone after the test."""

    def __init__(self, home: Path, collector: Collector | SilentCollector) -> None:
        folder = home.parent / "broker"
        folder.mkdir()
        # C_FORCE_ROOT: CI runs as root, and Celery refuses to run a worker as root without it.
        self.env = host_env(home, collector, CELERY_FOLDER=str(folder), C_FORCE_ROOT="1")
        self.log = home.parent / "worker.err"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *options: str) -> None:
        command = [python_bin("celery"), "-A", "celery_tasks", "worker", "--pool=prefork", "--loglevel=warning"]
        with self.log.open("wb") as stderr:
            self.process = subprocess.Popen(
                [*command, *options], cwd=HOSTS, env=self.env, stderr=stderr, start_new_session=True
            )

    def queue(self, tasks: int) -> None:
        code = f"from celery_tasks import run_agent\nfor _ in range({tasks}): run_agent.delay()"
        subprocess.run([sys.executable, "-c", code], cwd=HOSTS, env=self.env, check=True, timeout=PATIENCE)

    def stop(self) -> int:
        assert self.process is not None
        return stop(self.process, signal.SIGTERM)


@pytest.fixture
def worker_of(home: Path) -> Iterator[Callable[[Collector | SilentCollector], Worker]]:
    started: list[Worker] = []

    def make(collector: Collector | SilentCollector) -> Worker:
        started.append(Worker(home, collector))
        return started[-1]

    try:
        yield make
    finally:
        for worker in started:
            kill_group(worker.process)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Return once *condition* holds; fail when it has not within PATIENCE seconds."""
    deadline = time.monotonic() + PATIENCE
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {PATIENCE} s")
        pause.wait(0.05)


def test_a_prefork_worker_delivers_every_task_session_under_one_install_id(
    worker_of: Callable[[Collector], Worker], home: Path, collector: Collector
) -> None:
    worker = worker_of(collector)
    worker.start("--concurrency=2")
    worker.queue(4)
    events = collector.wait_for(4)
    assert worker.stop() == 0
    assert [e["adapter"] for e in collector.events] == ["celery_task"] * 4
    assert_one_machine(events, home)
    text = worker.log.read_text(errors="replace")
    assert text.count(DISCLOSURE) == 1 and "Traceback" not in text, text  # the notice, as Celery logs it


def test_a_worker_recycled_after_its_task_waits_for_that_send_and_records_its_failure(
    worker_of: Callable[[SilentCollector], Worker], home: Path, silent_collector: SilentCollector
) -> None:
    """Against a collector that never answers, the send outlives the worker unless the worker
    waits for it: then the exit budget runs out and one failure is recorded, a one-hour backoff.
    Before, the worker was killed at once and nothing was recorded. No clock decides which."""
    state = home / ".agentsonar" / "state.json"
    worker = worker_of(silent_collector)
    worker.start("--concurrency=1", "--max-tasks-per-child=1")
    worker.queue(1)
    wait_until(lambda: state.exists() and "backoff_seconds" in json.loads(state.read_text()), "a recorded failure")
    assert worker.stop() == 0
    assert state_of(home)["backoff_seconds"] == HOUR
    assert "Traceback" not in worker.log.read_text(errors="replace")
