"""The real SDK: agentsonar 0.7.0 from PyPI, as released and with this module vendored, against wrangler dev."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NETGUARD = ROOT / "tests" / "_netguard"
MODULE = ROOT / "agentsonar_telemetry.py"
sys.path.insert(0, str(ROOT / "scripts"))

pytest_plugins = ["collector_fixtures"]

# README.md, "Vendoring into AgentSonar": the one copy command, run here as written.
COPY_COMMAND = (
    "cp agentsonar_telemetry.py "
    "\"$(python -c 'import agentsonar, os; print(os.path.dirname(agentsonar.__file__))')/_telemetry.py\""
)


@pytest.fixture(scope="session")
def released_sdk() -> Path:
    """The agentsonar package installed from PyPI, untouched."""
    import agentsonar

    package = Path(agentsonar.__file__).resolve().parent
    assert agentsonar.__version__ == "0.7.0", agentsonar.__version__
    assert "t.agent-sonar.com/event" in (package / "_telemetry.py").read_text()  # the SDK's own file
    return package


@pytest.fixture(scope="session")
def vendored_sdk(released_sdk: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the released package with this module copied over _telemetry.py by the README's command."""
    site = tmp_path_factory.mktemp("vendored")
    shutil.copytree(released_sdk, site / "agentsonar", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(site)}
    subprocess.run(["sh", "-c", COPY_COMMAND], cwd=ROOT, env=env, check=True, timeout=60)
    assert (site / "agentsonar" / "_telemetry.py").read_bytes() == MODULE.read_bytes()
    return site


@dataclass
class Host:
    """One host program run of the SDK, with its own home."""

    home: Path
    stderr: str

    @property
    def state_path(self) -> Path:
        return self.home / ".agentsonar" / "state.json"

    def state(self) -> dict[str, object] | None:
        return json.loads(self.state_path.read_text()) if self.state_path.exists() else None


# What a user of the SDK writes: its public API, and a script that ends right after.
HOST_CODE = textwrap.dedent(
    """
    import atexit, json, sys, threading
    extra = json.loads(sys.argv[1])
    if extra.get("machine"):  # a released SDK reads platform.machine(): simulate another machine
        import platform
        platform.machine = lambda: extra["machine"]
    from agentsonar import monitor_orchestrator
    import agentsonar._telemetry as telemetry
    if hasattr(telemetry, "_Sender"):  # this file vendored: its exit wait given 30 s, not 0.5 s, so
        atexit.unregister(telemetry._Sender.wait_at_exit)  # a busy machine delivers too (bench/ times 0.5 s)
        atexit.register(telemetry._Sender.wait_at_exit, 30)
    config = {"file_output": False, "console_output": False, **extra.get("config", {})}
    sonar = monitor_orchestrator(config=config)
    sonar.delegation("orchestrator", "generator")
    sonar.delegation("generator", "orchestrator")
    sonar.shutdown()
    if extra.get("join_sender"):  # the released file's daemon thread dies at exit unless the host lingers
        for thread in threading.enumerate():
            if thread.name == "agentsonar-telemetry":
                thread.join(30)
    """
)


def subprocess_env(home: Path, *paths: Path, **extra: str) -> dict[str, str]:
    """A child's environment: no telemetry setting of ours, the loopback guard first on its path, its own home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTSONAR_", "DO_NOT_TRACK"))}
    env.update(
        PYTHONPATH=os.pathsep.join(str(p) for p in (NETGUARD, *paths)),
        HOME=str(home),
        AGENTSONAR_TEST_NET_LOG=os.environ["AGENTSONAR_TEST_NET_LOG"],
        **extra,
    )
    return env


def run_host(
    home: Path, site: Path | None, endpoint: str, *, env: dict[str, str] | None = None, **extra: object
) -> Host:
    """Run the SDK's public API in a fresh interpreter: vendored when *site* is given, else as released."""
    paths = [site] if site is not None else []
    clean = subprocess_env(home, *paths, AGENTSONAR_TELEMETRY_ENDPOINT=endpoint, **(env or {}))
    home.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-c", HOST_CODE, json.dumps(extra)],
        cwd=home,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return Host(home, result.stderr)
