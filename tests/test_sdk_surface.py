"""The call surface of the SDK that exists (agentsonar 0.4.0-0.7.0): session_start, is_disabled,
AGENTSONAR_TELEMETRY_ENDPOINT, on-values over a persisted opt-out, the os/arch alias table."""

from __future__ import annotations

import json
import os
from contextlib import redirect_stderr
from io import StringIO
from pathlib import Path

import pytest
from conftest import CONTRACT, run_python, subprocess_env
from pytest_httpserver import HTTPServer

import agentsonar_telemetry as at

NORMALIZATION = json.loads((CONTRACT / "normalization.json").read_text())
ON_VALUES = ["on", "1", "true", "yes", "enabled", " ON ", "Yes"]


@pytest.fixture
def collector(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> HTTPServer:
    httpserver.expect_request("/v1/events", method="POST").respond_with_json({"ok": True}, status=202)
    monkeypatch.setenv("AGENTSONAR_TELEMETRY_ENDPOINT", httpserver.url_for("/v1/events"))
    return httpserver


def as_a_terminal() -> redirect_stderr[StringIO]:
    """The host's stderr as a person's would be, for a session whose notice is due: under pytest's
    capture (which each test's call sets again) it is never shown, and nothing is sent."""
    return redirect_stderr(StringIO())


def sent(server: HTTPServer) -> list[dict[str, object]]:
    return [json.loads(request.get_data()) for request, _ in server.log]


def state(state_dir: Path) -> dict[str, object]:
    return dict(json.loads((state_dir / "state.json").read_text()))


def test_session_start_with_the_sdk_keywords_sends_one_event(collector: HTTPServer) -> None:
    with as_a_terminal() as terminal:
        session = at.session_start(adapter="claude_code", version="0.7.0", config_pref=None)
    assert session.wait(5)
    [event] = sent(collector)
    assert (event["adapter"], event["version"]) == ("claude_code", "0.7.0")
    assert "AgentSonar collects anonymous usage telemetry" in terminal.getvalue()


def test_session_start_positional_order_is_adapter_then_version(collector: HTTPServer) -> None:
    with as_a_terminal():
        assert at.session_start("crewai", "0.5.1").wait(5)
    assert [(e["adapter"], e["version"]) for e in sent(collector)] == [("crewai", "0.5.1")]


def test_session_start_config_pref_false_persists_and_sends_nothing(
    collector: HTTPServer, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = at.session_start(adapter="custom_python", version="0.7.0", config_pref=False)
    assert (session.enabled, session.rule) == (False, "config")
    assert state(state_dir) == {"schema_version": 1, "telemetry_disabled": True}
    assert at.is_disabled()
    later = at.session_start(adapter="custom_python", version="0.7.0")
    assert later.rule == "telemetry_disabled"
    assert sent(collector) == [] and capsys.readouterr().err == ""


def test_session_start_config_pref_true_clears_the_opt_out(collector: HTTPServer, state_dir: Path) -> None:
    at.disable_persistently()
    with as_a_terminal():
        assert at.session_start(adapter="custom_python", version="0.7.0", config_pref=True).wait(5)
    assert state(state_dir)["telemetry_disabled"] is False
    assert len(sent(collector)) == 1


@pytest.mark.parametrize("config_pref", ["yes", 1, 0, [], "False"])
def test_session_start_config_pref_not_a_bool_is_off_for_the_session(
    collector: HTTPServer, state_dir: Path, config_pref: object
) -> None:
    session = at.session_start(adapter="custom_python", version="0.7.0", config_pref=config_pref)  # type: ignore[arg-type]
    assert (session.enabled, session.rule) == (False, "config")
    assert not state_dir.exists() and sent(collector) == []


@pytest.mark.parametrize(
    ("adapter", "version"), [(None, None), (42, b"0.7"), ("Bad Adapter", "0.7.0\n"), (object(), object())]
)
def test_session_start_never_raises_on_odd_arguments(collector: HTTPServer, adapter: object, version: object) -> None:
    with as_a_terminal():
        session = at.session_start(adapter=adapter, version=version)  # type: ignore[arg-type]
    assert session.wait(5)
    [event] = sent(collector)
    assert (event["adapter"], event["version"]) == ("unknown", "unknown")


def test_session_start_never_raises_on_a_broken_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("AGENTSONAR_STATE_DIR", str(blocker / "state"))
    for pref in (None, True, False):
        session = at.session_start(adapter="custom_python", version="0.7.0", config_pref=pref)
        assert not session.enabled


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"AGENTSONAR_TELEMETRY": "off"}, True),
        ({"AGENTSONAR_TELEMETRY": "maybe"}, True),
        ({"AGENTSONAR_TELEMETRY": "on"}, False),
        ({"AGENTSONAR_TELEMETRY": "debug"}, False),
        ({"DO_NOT_TRACK": "1"}, True),
        ({"DO_NOT_TRACK": "2"}, True),
        ({"DO_NOT_TRACK": "0"}, False),
        ({"DO_NOT_TRACK": "1", "AGENTSONAR_TELEMETRY": "on"}, True),
        ({"AGENTSONAR_TELEMETRY_ENDPOINT": "http://example.com/"}, False),  # not an opt-out: a bad endpoint
    ],
)
def test_is_disabled_follows_the_opt_outs(
    monkeypatch: pytest.MonkeyPatch, state_dir: Path, env: dict[str, str], expected: bool
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert at.is_disabled() is expected
    assert not state_dir.exists()  # a question writes nothing


def test_is_disabled_for_a_persisted_opt_out_and_an_untrusted_state(state_dir: Path) -> None:
    at.disable_persistently()
    assert at.is_disabled() is True
    (state_dir / "state.json").write_text('{"telemetry_disabled": tru')
    assert at.is_disabled() is True  # corrupt: fail closed


@pytest.mark.parametrize("value", ON_VALUES)
def test_on_value_overrides_a_persisted_opt_out(
    collector: HTTPServer, monkeypatch: pytest.MonkeyPatch, state_dir: Path, value: str
) -> None:
    at.disable_persistently()
    monkeypatch.setenv("AGENTSONAR_TELEMETRY", value)
    assert at.is_disabled() is False
    status = at.status()
    assert (status.enabled, status.rule) == (True, "send")
    assert f"AGENTSONAR_TELEMETRY={value.strip()} overrides telemetry_disabled" in status.reason
    with as_a_terminal():
        session = at.session_start(adapter="custom_python", version="0.7.0")
    assert session.wait(5) and len(sent(collector)) == 1
    assert state(state_dir)["telemetry_disabled"] is True  # overridden for the run, not cleared
    monkeypatch.delenv("AGENTSONAR_TELEMETRY")
    assert at.session_start(adapter="custom_python", version="0.7.0").rule == "telemetry_disabled"


@pytest.mark.parametrize(
    ("env", "config_pref", "rule"),
    [
        ({"DO_NOT_TRACK": "1"}, None, "DO_NOT_TRACK"),
        ({"AGENTSONAR_TELEMETRY": "debug"}, None, "telemetry_disabled"),
        ({}, False, "config"),
    ],
)
def test_what_an_on_value_never_overrides(
    collector: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    config_pref: bool | None,
    rule: str,
) -> None:
    at.disable_persistently()
    monkeypatch.setenv("AGENTSONAR_TELEMETRY", "on")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert at.session_start(adapter="custom_python", version="0.7.0", config_pref=config_pref).rule == rule
    assert sent(collector) == []


def test_on_value_does_not_override_a_corrupt_state(
    collector: HTTPServer, monkeypatch: pytest.MonkeyPatch, state_dir: Path
) -> None:
    state_dir.mkdir()
    (state_dir / "state.json").write_text('{"telemetry_disabled": true')  # truncated opt-out
    monkeypatch.setenv("AGENTSONAR_TELEMETRY", "on")
    assert at.session_start(adapter="custom_python", version="0.7.0").rule == "state_error"
    assert (state_dir / "state.json").read_text() == '{"telemetry_disabled": true'
    assert sent(collector) == [] and at.is_disabled()


def test_endpoint_variable_and_its_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTSONAR_TELEMETRY_URL", raising=False)
    monkeypatch.delenv("AGENTSONAR_TELEMETRY_ENDPOINT", raising=False)
    assert at.status().endpoint == at._DEFAULT_ENDPOINT
    monkeypatch.setenv("AGENTSONAR_TELEMETRY_URL", "http://127.0.0.1:1/alias")
    assert at.status().endpoint == "http://127.0.0.1:1/alias"
    monkeypatch.setenv("AGENTSONAR_TELEMETRY_ENDPOINT", "http://127.0.0.1:2/event")
    assert at.status().endpoint == "http://127.0.0.1:2/event"  # the SDK's name wins
    monkeypatch.setenv("AGENTSONAR_TELEMETRY_ENDPOINT", " ")
    assert at.status().endpoint == "http://127.0.0.1:1/alias"  # empty means unset


@pytest.mark.parametrize("variable", ["AGENTSONAR_TELEMETRY_ENDPOINT", "AGENTSONAR_TELEMETRY_URL"])
def test_a_refused_endpoint_names_the_variable_that_set_it(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.delenv("AGENTSONAR_TELEMETRY_URL", raising=False)
    monkeypatch.setenv(variable, "http://example.com/event")
    status = at.status()
    assert status.rule == "endpoint" and status.reason.startswith(f"{variable}=http://example.com/event ")


def test_the_client_alias_table_is_the_contract_table() -> None:
    assert NORMALIZATION["arch_aliases"] == at._ARCH_ALIASES
    assert sorted(at._OS_KEEPING_DIGITS) == NORMALIZATION["os_keeping_trailing_digits"]


@pytest.mark.parametrize("case", NORMALIZATION["cases"], ids=lambda c: f"{c['field']}-{c['sent']}")
def test_the_client_normalises_every_contract_case(case: dict[str, str]) -> None:
    normalize = at._normalize_arch if case["field"] == "arch" else at._normalize_os
    assert normalize(case["sent"]) == case["stored"]


def test_vendored_as_a_private_module_of_a_package(tmp_path: Path, collector: HTTPServer) -> None:
    """Copied over agentsonar/_telemetry.py, the SDK's two import styles work."""
    package = tmp_path / "vendor" / "agentsonar"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "_telemetry.py").write_bytes(Path(at.__file__).read_bytes())
    code = (
        "from agentsonar import _telemetry\n"
        "from agentsonar._telemetry import session_start\n"
        "s = session_start(adapter='claude_code', version='0.7.0')\n"
        "assert s.wait(5), s.reason\n"
        "print(_telemetry.is_disabled())\n"
    )
    env = subprocess_env(
        AGENTSONAR_STATE_DIR=str(tmp_path / "state"), AGENTSONAR_TELEMETRY_ENDPOINT=collector.url_for("/v1/events")
    )
    env["PYTHONPATH"] += os.pathsep + str(tmp_path / "vendor")
    result = run_python(code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    assert "python -m agentsonar._telemetry disable" in result.stderr  # the disclosure names the vendored module
    assert [e["adapter"] for e in sent(collector)] == ["claude_code"]
