"""pytest plugin for running agentsonar 0.7.0's own tests/contract/test_telemetry.py against the vendored file.

Loaded with `-p sdk_contract_plugin` by test_sdk_own_tests.py. It runs the SDK's tests that use only
public names and deselects the rest, each with its reason; it changes no test.

The file's autouse fixture `_isolated_state` redirects the private `_state_path()` with
monkeypatch.setattr, which fails on a module that has no such function. This plugin's own
autouse fixture runs first and isolates the state through the environment, as any host can
(HOME and AGENTSONAR_STATE_DIR in tmp_path, a refused loopback collector); it then gives the
module a `_state_path` attribute naming that same file, only so that the fixture's setattr
succeeds. The vendored module never reads it.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

# A test that reaches into the module's private helpers is not a contract: the vendored file has other ones.
PRIVATE = re.compile(r"_telemetry\.(_\w+|threading)\b|setattr\(\s*_telemetry,\s*[\"'](_\w+)")


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True)
def _state_through_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    state_dir = tmp_path / ".agentsonar"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AGENTSONAR_STATE_DIR", str(state_dir))
    # The SDK's fixture clears AGENTSONAR_TELEMETRY_ENDPOINT; the alias keeps every send on loopback.
    monkeypatch.setenv("AGENTSONAR_TELEMETRY_URL", f"http://127.0.0.1:{_refused_port()}/v1/events")
    from agentsonar import _telemetry

    monkeypatch.setattr(_telemetry, "_state_path", lambda: state_dir / "state.json", raising=False)
    yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept: list[pytest.Item] = []
    left_out: dict[str, list[str]] = {}
    for item in items:
        source = inspect.getsource(item.obj) if isinstance(item, pytest.Function) else ""
        names = sorted({a or b for a, b in PRIVATE.findall(source)})
        if names:
            left_out[item.name] = names
        else:
            kept.append(item)
    config.hook.pytest_deselected(items=[item for item in items if item.name in left_out])
    items[:] = kept
    report = os.environ.get("AGENTSONAR_SDK_SELECTION")
    if report:
        Path(report).write_text(json.dumps({"ran": [i.name for i in kept], "left_out": left_out}, indent=2))
