"""pytest fixtures shared by the suites that run against `wrangler dev` (e2e/ and sdk/).

Loaded with `pytest_plugins = ["collector_fixtures"]` from their conftest.py (scripts/ on sys.path).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_collector import LocalCollector, ensure_npm_ci


@pytest.fixture(scope="session")
def collector() -> Iterator[LocalCollector]:
    """One collector for the session: wrangler dev on 127.0.0.1 with a fresh local D1; it stops by itself."""
    ensure_npm_ci()
    server = LocalCollector(lifetime=900)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(autouse=True)
def no_leaks(tmp_path: Path) -> Iterator[None]:
    """Subprocesses load tests/_netguard, which logs any address off loopback here: the test fails."""
    log = tmp_path / "net-violations.log"
    os.environ["AGENTSONAR_TEST_NET_LOG"] = str(log)
    yield
    assert not log.exists(), f"a test tried to leave loopback: {log.read_text()}"
