"""Never hurt the host: lazy imports, the vendored copy, no exceptions, the hermetic guard."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import MODULE_DIR, make_client, read_state, run_python, subprocess_env

import agentsonar_telemetry as at

HEAVY = ("urllib.request", "http.client", "ssl", "email", "json", "threading", "logging", "uuid", "platform", "typing")


def bare_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A bare interpreter (-S: no site, so no .pth file imports anything first)."""
    return subprocess.run(
        [sys.executable, "-S", "-c", code],
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_import_loads_no_heavy_module() -> None:
    code = f"import sys; import agentsonar_telemetry; print([m for m in {HEAVY!r} if m in sys.modules])"
    result = bare_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_opted_out_session_imports_and_reads_nothing(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        opened = []
        sys.addaudithook(lambda event, args: opened.append(args[0]) if event == "open" else None)
        import agentsonar_telemetry as at
        before = set(sys.modules)
        s = at.start_session("1")
        print(s.rule, sorted(set(sys.modules) - before), [p for p in opened if "state" in str(p)])
        """
    )
    result = bare_python(code, AGENTSONAR_TELEMETRY="off")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["AGENTSONAR_TELEMETRY", "[]", "[]"]  # no import (so no thread), no file


def test_urllib_request_is_imported_by_the_sender_only(state_dir: Path) -> None:
    code = textwrap.dedent(
        """
        import _thread, sys
        main, importers = _thread.get_ident(), set()
        def hook(event, args):
            if event == "import" and args[0] in ("urllib.request", "urllib.parse", "http.client", "ssl"):
                importers.add("host" if _thread.get_ident() == main else "sender")
        sys.addaudithook(hook)
        import agentsonar_telemetry as at
        s = at.start_session("1")
        s.wait(5)
        print(s.rule, sorted(importers))
        """
    )
    result = bare_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "send ['sender']"


def test_vendored_copy_works(tmp_path: Path, state_dir: Path) -> None:
    package = tmp_path / "vendor" / "somepkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    shutil.copy(Path(at.__file__), package / "_telemetry.py")
    code = textwrap.dedent(
        """
        import sys
        from somepkg import _telemetry as t
        assert "agentsonar_telemetry" not in sys.modules
        s = t.start_session("0.4.0", "oma_sidecar")
        print(s.rule, s.event["adapter"])
        """
    )
    env = subprocess_env(AGENTSONAR_TELEMETRY="debug")
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"].split(os.pathsep)[0], str(tmp_path / "vendor")])
    result = run_python(code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["debug", "oma_sidecar"]
    assert "python -m somepkg._telemetry disable" in result.stderr  # the disclosure names the vendored CLI
    cli = run_python("import runpy; runpy.run_module('somepkg._telemetry', run_name='__main__')", env=env)
    assert cli.returncode == 2 and "python -m somepkg._telemetry" in cli.stderr


def test_module_is_standard_library_only() -> None:
    import ast
    import sys

    tree = ast.parse(Path(at.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import: the file must stay vendorable"
            imported.add((node.module or "").split(".")[0])
    assert imported - {"__future__"} <= set(sys.stdlib_module_names)


class Explodes:
    def get(self, *args: object) -> object:
        raise RuntimeError("boom")


@pytest.mark.parametrize(
    "environ_factory",
    [Explodes, lambda: {"AGENTSONAR_STATE_DIR": "\x00bad"}, lambda: {"AGENTSONAR_STATE_DIR": "/\x00bad"}],
)
def test_start_session_never_raises(environ_factory: object, capsys: pytest.CaptureFixture[str]) -> None:
    client = at.Telemetry(environ_factory())  # type: ignore[operator]
    session = client.start_session("1")
    assert not session.enabled
    assert capsys.readouterr() == ("", "")


def test_a_state_path_with_a_nul_is_a_state_error_for_status_and_sessions(tmp_path: Path) -> None:
    """Only a mapping passed in can hold a NUL (a real environment cannot): status() raised
    ValueError from os.open, and a session said "error" where the state is what is wrong. The
    commands, documented to raise OSError, raised ValueError from mkdir."""
    client, err = make_client({"AGENTSONAR_STATE_DIR": f"{tmp_path}/st\x00te"})
    status = client.status()
    assert status.rule == "state_error" and "is unreadable (" in status.reason and "null" in status.reason
    assert client.start_session("1").rule == "state_error" and err.getvalue() == ""
    for command in (client.disable_persistently, client.enable_persistently, client.reset):
        with pytest.raises(PermissionError, match="holds a NUL"):
            command()
    assert [p.name for p in tmp_path.iterdir()] == ["home"]  # the hermetic home alone: nothing made


def test_broken_stderr_does_not_hurt(environ: dict[str, str]) -> None:
    class Closed:
        def write(self, text: str) -> int:
            raise ValueError("I/O operation on closed file")

        def flush(self) -> None:
            raise ValueError("closed")

    environ["AGENTSONAR_TELEMETRY"] = "debug"
    session = at.Telemetry(environ, stderr=Closed()).start_session("1")  # type: ignore[arg-type]
    # The notice could not reach the person: nothing is sent (or printed), and it is owed still.
    assert (session.enabled, session.rule, session.event) == (False, "stderr", None)
    assert read_state(Path(environ["AGENTSONAR_STATE_DIR"]))["disclosure_shown"] is False


def test_public_api() -> None:
    assert set(at.__all__) >= {
        "start_session",
        "status",
        "disable_persistently",
        "enable_persistently",
        "reset",
        "main",
        "Session",
        "Status",
        "__version__",
    }
    assert all(hasattr(at, name) for name in at.__all__)
    assert at.__version__.count(".") == 2


def test_installed_wheel_is_under_test() -> None:
    if not os.environ.get("TOX_ENV_NAME", "").startswith("py3"):
        pytest.skip("only tox installs the wheel")
    assert "site-packages" in str(MODULE_DIR)


def test_guard_stops_a_test_leaving_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "guard.log"
    monkeypatch.setenv("AGENTSONAR_TEST_NET_LOG", str(log))
    with pytest.raises(RuntimeError, match="leave loopback"):
        socket.getaddrinfo("collector.example.invalid", 443)
    with pytest.raises(RuntimeError, match="leave loopback"), socket.socket() as s:
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: refused by the guard before any packet
    assert log.read_text().splitlines() == [
        "socket.getaddrinfo 'collector.example.invalid'",
        "socket.connect '192.0.2.1'",
    ]
    result = run_python(
        "import socket; socket.create_connection(('192.0.2.1', 9), timeout=0.1)", AGENTSONAR_TEST_NET_LOG=str(log)
    )
    assert result.returncode != 0 and "test tried to leave loopback" in result.stderr
    assert len(log.read_text().splitlines()) == 3
    log.unlink()  # the autouse check would otherwise (rightly) fail this test


def test_json_roundtrip_of_status(environ: dict[str, str]) -> None:
    assert json.loads(json.dumps(make_client(environ)[0].status().as_dict()))["rule"] == "send"


def test_a_first_session_imports_nothing_heavy_on_the_hosts_thread(state_dir: Path) -> None:
    """No state yet (so the install id, the file and the disclosure): json (whose decoder imports
    re), threading and the network stack stay off the host's thread; the sender imports its own."""
    code = textwrap.dedent(
        f"""
        import _thread, sys
        main, on_host = _thread.get_ident(), set()
        sys.addaudithook(lambda event, args: on_host.add(args[0])
                         if event == "import" and _thread.get_ident() == main else None)
        import agentsonar_telemetry as at
        on_host.clear()
        s = at.start_session("1")
        print(s.rule, sorted(on_host & {set(HEAVY) | {"re", "json.decoder"}!r}))
        """
    )
    result = bare_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "send []"
    assert read_state(state_dir)["disclosure_shown"] is True
