"""End-to-end: the real module in real subprocesses, the real Worker under `wrangler dev`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import agentsonar_telemetry as at

ROOT = Path(__file__).resolve().parent.parent
NETGUARD = ROOT / "tests" / "_netguard"
sys.path.insert(0, str(ROOT / "scripts"))

pytest_plugins = ["collector_fixtures"]

MODULE_DIR = Path(at.__file__).resolve().parent
DISCLOSURE = "AgentSonar collects anonymous usage telemetry"


@dataclass
class Run:
    rule: str
    session_id: str | None
    event: dict[str, object] | None
    stderr: str
    returncode: int


SESSION_CODE = textwrap.dedent(
    """
    import atexit, json, sys
    import agentsonar_telemetry as at
    # The module's exit wait given 30 s, not 0.5 s: that a process exiting at once delivers is
    # then a fact of the code, not of how busy the machine is (bench/client.py shows 10 of 10
    # delivered within the real 0.5 s).
    atexit.unregister(at._Sender.wait_at_exit)
    atexit.register(at._Sender.wait_at_exit, 30)
    config = json.loads(sys.argv[1])
    s = at.start_session("0.4.0", "custom_python", config)
    if sys.argv[2:] == ["wait"]:  # a host that keeps running, instead of exiting at once
        s.wait(30)
    print(json.dumps({"rule": s.rule, "session_id": s.session_id, "event": s.event}), flush=True)
    """
)


def session_env(state_dir: Path, url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTSONAR_TELEMETRY", "DO_NOT_TRACK"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(NETGUARD), str(MODULE_DIR)]),
        AGENTSONAR_STATE_DIR=str(state_dir),
        AGENTSONAR_TELEMETRY_URL=url,
        AGENTSONAR_TEST_NET_LOG=os.environ["AGENTSONAR_TEST_NET_LOG"],
        HOME=str(state_dir.parent),
    )
    env.update(extra)
    return env


def run_session(state_dir: Path, url: str, config: dict[str, object] | None = None, **extra: str) -> Run:
    """One host process: start_session() and exit at once, as a short script would."""
    result = subprocess.run(
        [sys.executable, "-c", SESSION_CODE, json.dumps(config)],
        env=session_env(state_dir, url, **extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    return Run(data["rule"], data["session_id"], data["event"], result.stderr, result.returncode)


def run_cli(state_dir: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentsonar_telemetry", *args],
        env=session_env(state_dir, url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
