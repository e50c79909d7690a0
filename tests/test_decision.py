"""Who decides: every opt-out rule of DESIGN.md, every value, and their precedence."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import make_client
from pytest_httpserver import HTTPServer

import agentsonar_telemetry as at

OFF_VALUES = ["off", "0", "false", "no", "disabled", "OFF", " Off ", "False", "NO", "Disabled"]
UNKNOWN_VALUES = ["maybe", "2", "enable", "y", "debugx", "none"]
ON_VALUES = ["on", "1", "true", "yes", "enabled", "ON", " True ", "Yes"]
DNT_OFF = ["1", "true", "yes", "anything", " 1 ", "2"]
DNT_UNSET = ["", "0", "false", "no", "off", " FALSE ", "Off"]


@pytest.fixture
def collector(httpserver: HTTPServer, environ: dict[str, str]) -> HTTPServer:
    httpserver.expect_request("/v1/events", method="POST").respond_with_json({"ok": True}, status=202)
    environ["AGENTSONAR_TELEMETRY_URL"] = httpserver.url_for("/v1/events")
    return httpserver


def sent(server: HTTPServer) -> list[dict[str, object]]:
    return [json.loads(request.get_data()) for request, _ in server.log]


def start(environ: dict[str, str], config: object = None) -> tuple[at.Session, str]:
    client, err = make_client(environ)
    session = client.start_session("0.4.0", "custom_python", config)  # type: ignore[arg-type]
    session.wait(5)
    return session, err.getvalue()


@pytest.mark.parametrize("value", OFF_VALUES + UNKNOWN_VALUES)
def test_agentsonar_telemetry_off_values(
    collector: HTTPServer, environ: dict[str, str], state_dir: Path, value: str
) -> None:
    environ["AGENTSONAR_TELEMETRY"] = value
    session, err = start(environ)
    assert (session.enabled, session.rule, session.event) == (False, "AGENTSONAR_TELEMETRY", None)
    assert at._ENV_TELEMETRY in session.reason
    assert err == "" and sent(collector) == [] and not state_dir.exists()


@pytest.mark.parametrize("value", [*ON_VALUES, "", "   "])
def test_agentsonar_telemetry_on_values_send(collector: HTTPServer, environ: dict[str, str], value: str) -> None:
    environ["AGENTSONAR_TELEMETRY"] = value
    session, _ = start(environ)
    assert session.enabled and session.rule == "send"
    assert sent(collector) == [session.event]


@pytest.mark.parametrize("value", DNT_OFF)
def test_do_not_track(collector: HTTPServer, environ: dict[str, str], state_dir: Path, value: str) -> None:
    environ["DO_NOT_TRACK"] = value
    session, err = start(environ)
    assert (session.enabled, session.rule) == (False, "DO_NOT_TRACK")
    assert session.reason == f"DO_NOT_TRACK={value.strip()}"
    assert err == "" and sent(collector) == [] and not state_dir.exists()


@pytest.mark.parametrize("value", DNT_UNSET)
def test_do_not_track_unset_values(collector: HTTPServer, environ: dict[str, str], value: str) -> None:
    environ["DO_NOT_TRACK"] = value
    session, _ = start(environ)
    assert session.enabled
    assert len(sent(collector)) == 1


def test_agentsonar_telemetry_on_does_not_override_do_not_track(collector: HTTPServer, environ: dict[str, str]) -> None:
    environ.update(AGENTSONAR_TELEMETRY="on", DO_NOT_TRACK="1")
    session, _ = start(environ)
    assert session.rule == "DO_NOT_TRACK" and sent(collector) == []


def test_agentsonar_telemetry_off_wins_over_do_not_track_in_reason(environ: dict[str, str]) -> None:
    environ.update(AGENTSONAR_TELEMETRY="off", DO_NOT_TRACK="1")
    session, _ = start(environ)
    assert session.rule == "AGENTSONAR_TELEMETRY"


def test_config_false_persists_and_stays_off(collector: HTTPServer, environ: dict[str, str], state_dir: Path) -> None:
    session, err = start(environ, {"telemetry": False})
    assert (session.enabled, session.rule) == (False, "config")
    state = json.loads((state_dir / "state.json").read_text())
    assert state == {"schema_version": 1, "telemetry_disabled": True}  # no install id, ever
    assert err == ""
    session, err = start(environ)  # the next session, without config
    assert session.rule == "telemetry_disabled" and err == ""
    assert sent(collector) == []


def test_config_true_clears_persisted_opt_out(collector: HTTPServer, environ: dict[str, str], state_dir: Path) -> None:
    start(environ, {"telemetry": False})
    session, err = start(environ, {"telemetry": True})
    assert session.enabled
    state = json.loads((state_dir / "state.json").read_text())
    assert state["telemetry_disabled"] is False and state["install_id"] == session.event["install_id"]  # type: ignore[index]
    assert "AgentSonar collects anonymous usage telemetry" in err  # the id was created now
    assert len(sent(collector)) == 1


def test_config_without_telemetry_key_changes_nothing(collector: HTTPServer, environ: dict[str, str]) -> None:
    session, _ = start(environ, {"other": 1})
    assert session.enabled


@pytest.mark.parametrize("config", [{"telemetry": "no"}, {"telemetry": 0}, {"telemetry": 1}, ["telemetry"], "off"])
def test_config_invalid_is_off_for_the_session_only(
    collector: HTTPServer, environ: dict[str, str], state_dir: Path, config: object
) -> None:
    session, err = start(environ, config)
    assert (session.enabled, session.rule) == (False, "config")
    assert not state_dir.exists() and err == "" and sent(collector) == []


@pytest.mark.parametrize("env", [{"AGENTSONAR_TELEMETRY": "off"}, {"DO_NOT_TRACK": "1"}])
def test_env_opt_out_still_persists_config_choice(
    environ: dict[str, str], state_dir: Path, env: dict[str, str]
) -> None:
    environ.update(env)
    session, _ = start(environ, {"telemetry": False})
    assert not session.enabled and session.rule != "config"  # the environment decided first
    assert json.loads((state_dir / "state.json").read_text())["telemetry_disabled"] is True
    session, _ = start(environ, {"telemetry": True})
    assert not session.enabled
    assert json.loads((state_dir / "state.json").read_text())["telemetry_disabled"] is False


def test_env_opt_out_with_config_true_writes_nothing_new(environ: dict[str, str], state_dir: Path) -> None:
    environ["DO_NOT_TRACK"] = "1"
    start(environ, {"telemetry": True})
    assert not state_dir.exists()


def test_persisted_opt_out(collector: HTTPServer, environ: dict[str, str], state_dir: Path) -> None:
    client, _ = make_client(environ)
    client.disable_persistently()
    session, err = start(environ)
    assert session.rule == "telemetry_disabled" and err == "" and sent(collector) == []
    assert "telemetry_disabled" in session.reason
    # Opted out before its first session: this machine never got an install id.
    assert json.loads((state_dir / "state.json").read_text()) == {"schema_version": 1, "telemetry_disabled": True}


def test_state_error_beats_endpoint_and_debug(environ: dict[str, str], state_dir: Path) -> None:
    state_dir.mkdir()
    (state_dir / "state.json").write_text("{")
    environ.update(AGENTSONAR_TELEMETRY="debug", AGENTSONAR_TELEMETRY_URL="ftp://x")
    session, err = start(environ)
    assert session.rule == "state_error" and "reset" in session.reason and err == ""


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/v1/events",
        "http://10.0.0.1/v1/events",
        "ftp://127.0.0.1/v1/events",
        "file:///etc/passwd",
        "https://",
        "not a url",
        "https://user:secret@example.com/v1/events",
        "http://127.0.0.1:99999/v1/events",
        "http://127.0.0.1.example.com/v1/events",
        "http://localhost.evil.test/",
        "https://example.com/\nX-Injected: 1",
        "http://user@127.0.0.1/v1/events",
        "http://[::1/v1/events",
        "https://collector.example.org:abc/v1/events",
        "http://localhost:0/v1/events",
        "https://collector.exämple.org/v1/events",
        "//127.0.0.1/v1/events",
    ],
)
def test_endpoint_refused(environ: dict[str, str], state_dir: Path, url: str) -> None:
    environ["AGENTSONAR_TELEMETRY_URL"] = url
    session, err = start(environ)
    assert session.rule == "endpoint" and not session.enabled
    assert err == "" and not state_dir.exists()


@pytest.mark.parametrize(
    "url",
    [
        "https://collector.example.org/v1/events",
        "http://127.0.0.1:8787/v1/events",
        "http://127.3.4.5/v1/events",
        "http://localhost:8787/v1/events",
        "http://[::1]:8787/v1/events",
        "HTTP://LOCALHOST/v1/events",
    ],
)
def test_endpoint_accepted(url: str) -> None:
    assert at._endpoint_problem(url) is None


def test_empty_endpoint_means_default(environ: dict[str, str]) -> None:
    environ["AGENTSONAR_TELEMETRY_URL"] = "  "
    client, _ = make_client(environ)
    assert client.endpoint == at._DEFAULT_ENDPOINT == "https://t.agent-sonar.com/v1/events"


def test_debug_prints_event_and_sends_nothing(collector: HTTPServer, environ: dict[str, str], state_dir: Path) -> None:
    environ["AGENTSONAR_TELEMETRY"] = " Debug "
    session, err = start(environ)
    assert (session.enabled, session.rule) == (False, "debug")
    lines = err.splitlines()
    assert json.loads(lines[-1]) == session.event  # one JSON line, the exact event
    assert "AgentSonar collects anonymous usage telemetry" in err  # first run: disclosure too
    assert json.loads((state_dir / "state.json").read_text())["install_id"] == session.event["install_id"]  # type: ignore[index]
    session2, err2 = start(environ)
    assert err2.count("\n") == 1 and json.loads(err2) == session2.event
    assert sent(collector) == []


def test_debug_ignores_backoff(collector: HTTPServer, environ: dict[str, str], state_dir: Path) -> None:
    start(environ)
    state = json.loads((state_dir / "state.json").read_text())
    state.update(backoff_until=at.Telemetry().now() + 600, backoff_seconds=3600)
    (state_dir / "state.json").write_text(json.dumps(state))
    environ["AGENTSONAR_TELEMETRY"] = "debug"
    assert start(environ)[0].rule == "debug"
    del environ["AGENTSONAR_TELEMETRY"]
    assert start(environ)[0].rule == "backoff"
    assert len(sent(collector)) == 1


def test_status_names_each_rule(environ: dict[str, str]) -> None:
    client, _ = make_client(environ)
    assert client.status().rule == "send"
    for env, rule in [
        ({"DO_NOT_TRACK": "1"}, "DO_NOT_TRACK"),
        ({"AGENTSONAR_TELEMETRY": "no"}, "AGENTSONAR_TELEMETRY"),
        ({"AGENTSONAR_TELEMETRY": "debug"}, "debug"),
        ({"AGENTSONAR_TELEMETRY_URL": "http://example.com/"}, "endpoint"),
    ]:
        result, _ = make_client({**environ, **env})
        assert result.status().rule == rule
    client.disable_persistently()
    status = client.status()
    assert (status.enabled, status.rule) == (False, "telemetry_disabled")


def test_status_writes_nothing(environ: dict[str, str], state_dir: Path) -> None:
    client, err = make_client(environ)
    status = client.status()
    assert status.enabled and status.install_id is None and status.state_path == str(state_dir / "state.json")
    assert status.endpoint == environ["AGENTSONAR_TELEMETRY_URL"]
    assert not state_dir.exists() and err.getvalue() == ""


def test_environment_is_read_at_call_time(
    collector: HTTPServer, monkeypatch: pytest.MonkeyPatch, state_dir: Path
) -> None:
    monkeypatch.setenv("AGENTSONAR_TELEMETRY_URL", collector.url_for("/v1/events"))
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    assert at.status().rule == "DO_NOT_TRACK"
    monkeypatch.delenv("DO_NOT_TRACK")
    assert at.status().rule == "send"
    assert at.status().state_path == str(state_dir / "state.json")


def test_default_state_dir_is_under_home(hermetic: Path) -> None:
    client = at.Telemetry({"HOME": str(hermetic)})
    assert client.state_path == str(hermetic / ".agentsonar" / "state.json")


def test_a_tilde_in_the_state_dir_setting_is_the_home_passed_in(tmp_path: Path) -> None:
    """Not the process's HOME (os.path.expanduser reads os.environ, whatever mapping was passed)."""
    home = tmp_path / "passed-in"
    for setting, directory in (("~/state", home / "state"), ("~", home), ("~//state", home / "state")):
        client = at.Telemetry({"HOME": str(home), "AGENTSONAR_STATE_DIR": setting})
        assert client.state_path == os.path.join(directory, "state.json"), setting
