"""The command line: python -m agentsonar_telemetry status|enable|disable|reset|send."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port, read_state, subprocess_env, write_known_state
from pytest_httpserver import HTTPServer

import agentsonar_telemetry as at


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentsonar_telemetry", *args],
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_status_text(state_dir: Path) -> None:
    state = write_known_state(state_dir)
    result = cli("status")
    assert result.returncode == 0 and result.stderr == ""
    assert "telemetry:  on (enabled)" in result.stdout
    assert str(state_dir / "state.json") in result.stdout and str(state["install_id"]) in result.stdout
    assert "http://127.0.0.1:9/v1/events" in result.stdout and '"python"' in result.stdout


@pytest.mark.parametrize(
    ("env", "rule", "words"),
    [
        ({"DO_NOT_TRACK": "1"}, "DO_NOT_TRACK", "DO_NOT_TRACK=1"),
        ({"AGENTSONAR_TELEMETRY": "off"}, "AGENTSONAR_TELEMETRY", "AGENTSONAR_TELEMETRY=off"),
        ({"AGENTSONAR_TELEMETRY": "debug"}, "debug", "printed, not sent"),
    ],
)
def test_status_json_names_the_rule(env: dict[str, str], rule: str, words: str) -> None:
    result = cli("status", "--json", **env)
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert {"enabled", "reason", "state_path", "install_id", "endpoint"} <= set(data)
    assert data["rule"] == rule and words in data["reason"] and data["enabled"] is False


def test_status_on_corrupt_state_names_reset(state_dir: Path) -> None:
    state_dir.mkdir()
    (state_dir / "state.json").write_text("[")
    data = json.loads(cli("status", "--json").stdout)
    assert data["rule"] == "state_error" and "reset" in data["reason"]


def test_disable_enable_reset(state_dir: Path) -> None:
    result = cli("disable")
    assert result.returncode == 0 and "telemetry disabled" in result.stdout
    assert read_state(state_dir) == {"schema_version": 1, "telemetry_disabled": True}
    assert json.loads(cli("status", "--json").stdout)["rule"] == "telemetry_disabled"
    result = cli("enable")
    assert result.returncode == 0 and read_state(state_dir)["telemetry_disabled"] is False
    write_known_state(state_dir)
    result = cli("reset")
    assert result.returncode == 0 and not (state_dir / "state.json").exists()


@pytest.mark.parametrize("command", ["disable", "enable", "reset"])
def test_failures_print_one_line_and_exit_1(tmp_path: Path, command: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    (tmp_path / "state").mkdir()
    target = blocker if command != "reset" else tmp_path / "state"
    if command == "reset":
        (tmp_path / "state" / "state.json").mkdir()  # unlink() of a directory fails
    result = cli(command, AGENTSONAR_STATE_DIR=str(target if command == "reset" else blocker / "sub"))
    assert result.returncode == 1
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [[], ["bogus"], ["status", "--nope"], ["send", "--timeout", "x"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = cli(*args)
    assert result.returncode == 2 and "usage" in result.stderr.lower()


def test_help_exits_0() -> None:
    result = cli("--help")
    assert result.returncode == 0 and "status" in result.stdout


def test_send_delivers(httpserver: HTTPServer, state_dir: Path) -> None:
    httpserver.expect_request("/v1/events", method="POST").respond_with_json({"ok": True}, status=202)
    result = cli(
        "send",
        "--sdk-version",
        "9.9.9",
        "--adapter",
        "crewai",
        AGENTSONAR_TELEMETRY_URL=httpserver.url_for("/v1/events"),
    )
    assert result.returncode == 0, result.stderr
    [(request, _)] = httpserver.log
    event = json.loads(request.get_data())
    assert (event["version"], event["adapter"]) == ("9.9.9", "crewai")
    assert f"sent session {event['session_id']}" in result.stdout
    assert "AgentSonar collects anonymous usage telemetry" in result.stderr  # first run discloses


def test_send_failure_exits_1(state_dir: Path) -> None:
    write_known_state(state_dir)
    result = cli("send", "--timeout", "5", AGENTSONAR_TELEMETRY_URL=f"http://127.0.0.1:{free_port()}/v1/events")
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1 and "did not accept" in result.stderr


def test_send_when_opted_out_says_why(state_dir: Path) -> None:
    result = cli("send", DO_NOT_TRACK="1")
    assert result.returncode == 0 and result.stdout.strip() == "not sent: DO_NOT_TRACK=1"
    assert not state_dir.exists()


def test_main_in_process(environ: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert at.main(["status", "--json"], at.Telemetry(environ)) == 0
    assert json.loads(capsys.readouterr().out)["enabled"] is True
    assert at.main(["nope"]) == 2


def test_console_script_entry_point_is_main() -> None:
    from importlib.metadata import PackageNotFoundError, entry_points

    try:
        scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    except PackageNotFoundError:  # pragma: no cover
        pytest.skip("not installed")
    if "agentsonar-telemetry" not in scripts:
        pytest.skip("running from a source checkout")
    assert scripts["agentsonar-telemetry"] == "agentsonar_telemetry:main"
