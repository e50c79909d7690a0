"""The state file: creation, reuse, reset, corruption, permissions, concurrency."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_client, run_python, subprocess_env

import agentsonar_telemetry as at

DISCLOSURE = "AgentSonar collects anonymous usage telemetry"


def debug_env(environ: dict[str, str]) -> dict[str, str]:
    return {**environ, "AGENTSONAR_TELEMETRY": "debug"}  # everything but the network


def leftovers(state_dir: Path) -> list[str]:
    return sorted(p.name for p in state_dir.iterdir() if p.name != "state.json")


def test_first_run_creates_state_and_discloses_once(environ: dict[str, str], state_dir: Path) -> None:
    client, err = make_client(debug_env(environ))
    first = client.start_session("0.4.0")
    assert err.getvalue().count(DISCLOSURE) == 1
    state = json.loads((state_dir / "state.json").read_text())
    assert state == {
        "schema_version": 1,
        "install_id": first.event["install_id"],  # type: ignore[index]
        "disclosure_shown": True,
        "telemetry_disabled": False,
    }
    second = client.start_session("0.4.0")
    assert err.getvalue().count(DISCLOSURE) == 1
    assert second.event["install_id"] == first.event["install_id"]  # type: ignore[index]
    assert second.session_id != first.session_id
    assert leftovers(state_dir) == []


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_permissions(environ: dict[str, str], state_dir: Path) -> None:
    old = os.umask(0o022)
    try:
        make_client(debug_env(environ))[0].start_session("1")
    finally:
        os.umask(old)
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / "state.json").stat().st_mode) == 0o600
    make_client(environ)[0].disable_persistently()  # a rewrite keeps 0600
    assert stat.S_IMODE((state_dir / "state.json").stat().st_mode) == 0o600


def test_deleting_the_file_resets_id_and_disclosure(environ: dict[str, str], state_dir: Path) -> None:
    client, err = make_client(debug_env(environ))
    first = client.start_session("1").event
    (state_dir / "state.json").unlink()
    second = client.start_session("1").event
    assert first and second and first["install_id"] != second["install_id"]
    assert err.getvalue().count(DISCLOSURE) == 2


def test_reset_gives_new_id_and_keeps_an_opt_out(environ: dict[str, str], state_dir: Path) -> None:
    client, err = make_client(debug_env(environ))
    first = client.start_session("1").event
    client.reset()
    assert not (state_dir / "state.json").exists()
    second = client.start_session("1").event
    assert first and second and first["install_id"] != second["install_id"]
    client.disable_persistently()
    client.reset()
    assert json.loads((state_dir / "state.json").read_text()) == {"schema_version": 1, "telemetry_disabled": True}
    assert client.start_session("1").rule == "telemetry_disabled"
    client.reset()  # a reset with nothing to reset is fine
    assert err.getvalue().count(DISCLOSURE) == 2


CORRUPT = {
    "empty": b"",
    "truncated": b'{"schema_version": 1, "install_id": "8a4f',
    "null": b"null",
    "list": b"[]",
    "string": b'"state"',
    "number": b"42",
    "binary": bytes(range(256)),
    "bad_utf8": b'{"install_id": "\xff"}',
    "install_id_number": b'{"install_id": 5}',
    "install_id_not_uuid4": b'{"install_id": "8a4f3b29-1c2d-1e5f-9a6b-7c8d9e0f1a2b"}',
    "install_id_uppercase": b'{"install_id": "8A4F3B29-1C2D-4E5F-9A6B-7C8D9E0F1A2B"}',
    "telemetry_disabled_string": b'{"telemetry_disabled": "false"}',
    "telemetry_disabled_int": b'{"telemetry_disabled": 0}',
    "disclosure_shown_null": b'{"disclosure_shown": null}',
    "schema_version_string": b'{"schema_version": "1"}',
    "schema_version_bool": b'{"schema_version": true}',
    "backoff_until_string": b'{"backoff_until": "soon"}',
    "backoff_seconds_negative": b'{"backoff_seconds": -5}',
    "deeply_nested": b"[" * 32000 + b"]" * 32000,  # under the 64 KiB limit
    "too_large": b'{"pad": "' + b"x" * 70000 + b'"}',
}


@pytest.mark.parametrize("content", CORRUPT.values(), ids=CORRUPT.keys())
def test_corrupt_state_fails_closed_and_is_left_untouched(
    environ: dict[str, str], state_dir: Path, content: bytes
) -> None:
    state_dir.mkdir()
    path = state_dir / "state.json"
    path.write_bytes(content)
    before = path.stat().st_mtime_ns
    for env in (environ, debug_env(environ)):
        client, err = make_client(env)
        session = client.start_session("1")
        assert (session.enabled, session.rule, session.event) == (False, "state_error", None)
        assert err.getvalue() == ""
    status = client.status()
    assert status.rule == "state_error" and "reset" in status.reason and str(path) in status.reason
    assert path.read_bytes() == content and path.stat().st_mtime_ns == before
    assert leftovers(state_dir) == []


def test_corrupt_state_is_replaced_only_by_explicit_commands(environ: dict[str, str], state_dir: Path) -> None:
    state_dir.mkdir()
    path = state_dir / "state.json"
    client, _ = make_client(environ)
    path.write_text("garbage")
    client.start_session("1", config={"telemetry": True})  # True does not replace it
    assert path.read_text() == "garbage"
    client.start_session("1", config={"telemetry": False})
    assert json.loads(path.read_text()) == {"schema_version": 1, "telemetry_disabled": True}
    path.write_text("garbage")
    client.disable_persistently()
    assert json.loads(path.read_text()) == {"schema_version": 1, "telemetry_disabled": True}
    path.write_text("garbage")
    assert client.enable_persistently().rule == "send"
    assert json.loads(path.read_text()) == {"schema_version": 1, "telemetry_disabled": False}
    path.write_text("garbage")
    client.reset()
    assert not path.exists()


def test_unknown_keys_are_kept(environ: dict[str, str], state_dir: Path) -> None:
    client, _ = make_client(debug_env(environ))
    client.start_session("1")
    path = state_dir / "state.json"
    state = json.loads(path.read_text())
    state["future_key"] = {"nested": [1, 2]}
    path.write_text(json.dumps(state))
    client.disable_persistently()
    client.enable_persistently()
    kept = json.loads(path.read_text())
    assert kept["future_key"] == {"nested": [1, 2]} and kept["install_id"] == state["install_id"]


def test_id_added_to_a_state_without_one(environ: dict[str, str], state_dir: Path) -> None:
    client, err = make_client(debug_env(environ))
    client.disable_persistently()
    assert client.start_session("1").rule == "telemetry_disabled"
    client.enable_persistently()
    session = client.start_session("1")
    assert session.event is not None
    assert json.loads((state_dir / "state.json").read_text())["install_id"] == session.event["install_id"]
    assert err.getvalue().count(DISCLOSURE) == 1
    assert leftovers(state_dir) == []


def test_lock_fallback_where_links_are_unsupported(environ: dict[str, str], state_dir: Path) -> None:
    client, err = make_client(debug_env(environ), use_links=False)
    first = client.start_session("1").event
    second = client.start_session("1").event
    assert first and second and first["install_id"] == second["install_id"]
    assert err.getvalue().count(DISCLOSURE) == 1 and leftovers(state_dir) == []


def test_stale_lock_is_cleared_and_a_live_one_waited_for(environ: dict[str, str], state_dir: Path) -> None:
    state_dir.mkdir()
    lock = state_dir / "state.json.lock"
    lock.write_text("")
    client, err = make_client(debug_env(environ), use_links=False)
    assert client.start_session("1").rule == "state_error"  # held by a live process: give up quietly
    assert not (state_dir / "state.json").exists() and err.getvalue() == ""
    old = lock.stat().st_mtime - 3600
    os.utime(lock, (old, old))
    assert client.start_session("1").rule == "debug"
    assert not lock.exists()


def test_impossible_state_dir(environ: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    environ["AGENTSONAR_STATE_DIR"] = str(blocker / "state")
    for env in (environ, debug_env(environ)):
        client, err = make_client(env)
        session = client.start_session("1")
        assert (session.enabled, session.rule) == (False, "state_error") and err.getvalue() == ""
    assert blocker.read_text() == "not a directory"
    with pytest.raises(OSError):
        client.disable_persistently()


def test_state_path_is_a_directory(environ: dict[str, str], state_dir: Path) -> None:
    (state_dir / "state.json").mkdir(parents=True)
    client, err = make_client(debug_env(environ))
    assert client.start_session("1").rule == "state_error" and err.getvalue() == ""
    with pytest.raises(OSError):
        client.disable_persistently()
    assert leftovers(state_dir) == []  # the temp file was removed after the failed replace


def test_failed_write_removes_its_temp_file(state_dir: Path) -> None:
    state_dir.mkdir()
    (state_dir / "state.json").mkdir()
    with pytest.raises(OSError):
        at._write_state(str(state_dir / "state.json"), {"schema_version": 1})
    assert sorted(p.name for p in state_dir.iterdir()) == ["state.json"]


def _read_only(directory: Path, code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run *code* with *directory* read-only, as a real user would meet it.

    As root, permission bits do not stop writes, so the directory is bind-mounted
    read-only in a private mount namespace; otherwise chmod does it.
    """
    if os.geteuid() == 0:
        unshare = shutil.which("unshare")
        assert unshare, "unshare (util-linux) is needed to test a read-only home as root"
        script = (
            f'mount --bind "{directory}" "{directory}" && mount -o remount,bind,ro "{directory}" && exec "$0" -c "$1"'
        )
        cmd = [unshare, "-m", "--propagation", "private", "sh", "-c", script, sys.executable, code]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30, check=False)
    directory.chmod(0o500)
    try:
        return subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30, check=False
        )
    finally:
        directory.chmod(0o700)


@pytest.mark.skipif(sys.platform != "linux", reason="read-only mounts are Linux-specific here")
@pytest.mark.parametrize("first_run", [True, False])
def test_read_only_home(tmp_path: Path, first_run: bool) -> None:
    home = tmp_path / "ro-home"
    home.mkdir()
    state_dir = home / ".agentsonar"
    if not first_run:
        state_dir.mkdir(mode=0o700)
        at._write_state(
            str(state_dir / "state.json"),
            {"schema_version": 1, "install_id": at._new_uuid4(), "disclosure_shown": True},
        )
    before = sorted(p.name for p in home.rglob("*"))
    code = textwrap.dedent(
        """
        import sys, agentsonar_telemetry as at
        s = at.start_session("1")
        print(s.rule, s.enabled, at.status().rule, flush=True)
        sys.exit(at.main(["disable"]))
        """
    )
    env = subprocess_env(HOME=str(home), AGENTSONAR_TELEMETRY="debug")
    env.pop("AGENTSONAR_STATE_DIR")
    result = _read_only(home if first_run else state_dir, code, env)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines()[0].split() == ["state_error", "False", "state_error"]
    assert result.stderr == f"error: disable failed: the state directory is not writable: {state_dir}\n"
    assert sorted(p.name for p in home.rglob("*")) == before


CONCURRENT = textwrap.dedent(
    """
    import sys, time, agentsonar_telemetry as at
    start = float(sys.argv[1])
    while time.time() < start:
        pass
    s = at.Telemetry(use_links=sys.argv[2] == "links").start_session("0.4.0")
    print(s.event["install_id"] if s.event else s.rule)
    """
)


@pytest.mark.parametrize("mode", ["links", "lock"])
def test_many_processes_on_a_fresh_state_dir(state_dir: Path, mode: str) -> None:
    import time

    env = subprocess_env(AGENTSONAR_TELEMETRY="debug")
    start = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, str(start), mode],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(16)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    ids = {out.strip() for out, _ in outputs}
    disclosures = sum(err.count(DISCLOSURE) for _, err in outputs)
    state = json.loads((state_dir / "state.json").read_text())
    assert ids == {state["install_id"]}, outputs
    assert disclosures == 1
    assert leftovers(state_dir) == []


def test_real_home_is_the_default(hermetic: Path) -> None:
    result = run_python("import agentsonar_telemetry as at; print(at.status().state_path)", AGENTSONAR_STATE_DIR="")
    assert result.stdout.strip() == str(hermetic / ".agentsonar" / "state.json")


def test_a_replace_refused_for_a_moment_is_tried_again_on_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What Windows does while another process holds state.json open: os.replace raises
    # PermissionError until the reader closes it. This machine cannot make a real one, so the
    # refusal is os.replace's and the number of tries Windows'.
    assert (10 if os.name == "nt" else 1) == at._REPLACE_TRIES
    real_replace = os.replace
    calls = []

    def busy(times: int) -> Callable[[str, str], None]:
        def replace(src: str, dst: str) -> None:
            calls.append(src)
            if len(calls) <= times:
                raise PermissionError(13, "in use")
            real_replace(src, dst)

        return replace

    monkeypatch.setattr(at, "_REPLACE_TRIES", 10)
    path = tmp_path / "state" / "state.json"
    monkeypatch.setattr(os, "replace", busy(2))
    at._write_state(str(path), {"schema_version": 1})
    assert len(calls) == 3 and json.loads(path.read_text()) == {"schema_version": 1}
    calls.clear()
    monkeypatch.setattr(os, "replace", busy(10))
    with pytest.raises(PermissionError):
        at._write_state(str(path), {"schema_version": 2})
    assert len(calls) == 10  # then it gives up, and removes its temp file
    assert json.loads(path.read_text()) == {"schema_version": 1} and leftovers(path.parent) == []


JSON_TEXTS = [
    "{}",
    ' \n{"a": 1, "b": [1, 2.5, {"c": null}], "d": "\\u00e9\\n\\"", "e": true, "f": false} \t',
    '{"a": 1, "a": 2}',
    '{"deep": ' + "[" * 30 + "]" * 30 + "}",
    "[1, 2]",
    '"text"',
    "-0.0",
    "1e400",
    '{"schema_version": 1, "install_id": "8a4f3b29-1c2d-4e5f-9a6b-7c8d9e0f1a2b"}',
]
NOT_JSON = ["", " ", "{", '{"a": 1} x', '{"a": 1}{}', "{'a': 1}", '{"a": 01}', '{"a": "\t"}', "[1,]", "\ufeff{}"]


@pytest.mark.parametrize("text", JSON_TEXTS)
def test_state_json_is_read_as_json_reads_it(text: str) -> None:
    assert at._parse_json(text) == json.loads(text)


@pytest.mark.parametrize("text", [*NOT_JSON, '{"a": NaN}', '{"a": -Infinity}'])
def test_what_is_not_json_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        at._parse_json(text)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"schema_version": 1, "install_id": at._new_uuid4(), "disclosure_shown": True, "telemetry_disabled": False},
        {"backoff_seconds": 7200.0, "backoff_until": 1800003600.125, "zeta": None, "alpha": -3, "big": 10**30},
        {"text": 'é\u2028\x00"\\/\n', "emoji": "\U0001f600", "float": 1e-7, "neg": -0.0},
        {"nested": {"b": [1, {"c": "d"}]}, "inf": float("inf"), "flag": True},  # json's own way
    ],
)
def test_state_and_event_are_written_as_json_writes_them(data: dict[str, object]) -> None:
    assert at._json_text(data, indent=True) == json.dumps(data, indent=2, sort_keys=True)
    assert at._json_text(data) == json.dumps(data, separators=(",", ":"))
    event = at._build_event({}, at._new_uuid4(), "0.4.0+é", "custom_python", 1_800_000_000.123456)
    assert at._json_text(event) == json.dumps(event, separators=(",", ":"))
