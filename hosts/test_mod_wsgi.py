"""Apache with mod_wsgi, the embedder the subinterpreter rule exists for (Debian's Python 3.11).

mod_wsgi runs each application in its own subinterpreter unless told otherwise, and ends it
with Py_EndInterpreter when the server stops: no thread of ours may be alive there, so sessions
are off (rule ``interpreter``) and nothing is written or sent. With ``WSGIApplicationGroup
%{GLOBAL}`` the application runs in the main interpreter of each Apache child (embedded, on
Apache's own threads) or of each daemon process, and every session is sent once under one
install id. A daemon process's HOME is its user's home from the password file (``/var/www`` for
www-data, ``/nonexistent`` for nobody), where nothing may be written: there sessions are
``state_error`` unless AGENTSONAR_STATE_DIR names a directory, as these tests do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    DISCLOSURE,
    HOSTS,
    MODULE_DIR,
    NETGUARD,
    Collector,
    answer_of,
    assert_one_machine,
    free_port,
    kill_group,
    wait_until_listening,
)
from conftest import stop as stop_process

APACHE = Path("/usr/sbin/apache2")
MOD_WSGI = Path("/usr/lib/apache2/modules/mod_wsgi.so")
NOBODY = 65534  # who Apache's children run as when it starts as root, as in CI
REQUESTS = 6

# The script mod_wsgi loads into each interpreter: the loopback guard (audit hooks belong to
# one interpreter), then the same application as the other servers.
SCRIPT = """\
import os, sys
here = os.path.dirname(__file__)
with open(os.path.join(here, "netguard.py")) as guard:
    exec(compile(guard.read(), guard.name, "exec"), {"__name__": "netguard"})
sys.path.insert(0, here)
from wsgi_app import app as application
"""

MODES = {
    # An interpreter per application, made by the first request's thread. Apache cannot stop
    # it: ending it from the child's main thread deadlocks in CPython (python/cpython#122517,
    # 3.9.8 to 3.11) with an application that never imports this module too, and Apache kills
    # the child after 10 s. The test ends it itself.
    "subinterpreter (the default)": "",
    # A named subinterpreter made when the child starts, on the thread that ends it.
    "subinterpreter, preloaded": (
        "WSGIApplicationGroup telemetry\n"
        "WSGIImportScript {root}/app.wsgi process-group=%{{GLOBAL}} application-group=telemetry"
    ),
    "main interpreter, embedded": "WSGIApplicationGroup %{{GLOBAL}}",
    "main interpreter, daemon processes": (
        "WSGIDaemonProcess telemetry processes=2 threads=4\n"
        "WSGIProcessGroup telemetry\n"
        "WSGIApplicationGroup %{{GLOBAL}}"
    ),
}


class Apache:
    """``apache2 -DFOREGROUND`` with its own server root, the application and this module copied
    into it (as an SDK vendors it); gone after the test, with every child."""

    def __init__(self) -> None:
        for needed in (APACHE, MOD_WSGI):
            assert needed.exists(), f"{needed} is missing: apt-get install apache2 libapache2-mod-wsgi-py3"
        # Readable by Apache's children: a test's tmp_path lies in a directory only root may enter.
        self.root = Path(tempfile.mkdtemp(prefix="agentsonar-mod-wsgi-"))
        self.home = self.root / "home"
        self.home.mkdir()
        shutil.copy(MODULE_DIR / "agentsonar_telemetry.py", self.root)
        shutil.copy(HOSTS / "wsgi_app.py", self.root)
        shutil.copy(NETGUARD / "sitecustomize.py", self.root / "netguard.py")
        (self.root / "app.wsgi").write_text(SCRIPT)
        self.log = self.root / "error.log"
        self.net_log = self.root / "net-violations.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, mode: str, collector: Collector) -> int:
        port = free_port()
        as_root = os.geteuid() == 0
        lines = [
            f"ServerRoot {self.root}",
            "ServerName localhost",
            f"Listen 127.0.0.1:{port}",
            f"PidFile {self.root}/apache.pid",
            f"DefaultRuntimeDir {self.root}",
            f"ErrorLog {self.log}",
            "LogLevel info",
            "LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so",
            "LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so",
            f"LoadModule wsgi_module {MOD_WSGI}",
            *([f"User #{NOBODY}", f"Group #{NOBODY}"] if as_root else []),
            f"WSGIScriptAlias / {self.root}/app.wsgi",
            f"<Directory {self.root}>\n  Require all granted\n</Directory>",
            MODES[mode].format(root=self.root),
        ]
        (self.root / "apache.conf").write_text("\n".join(lines) + "\n")
        if as_root:
            for path in (self.root, *self.root.rglob("*")):
                os.chown(path, NOBODY, NOBODY)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.home),
            "AGENTSONAR_STATE_DIR": str(self.home / ".agentsonar"),
            "AGENTSONAR_TELEMETRY_URL": collector.url,
            "AGENTSONAR_TEST_NET_LOG": str(self.net_log),
        }
        command = [str(APACHE), "-f", str(self.root / "apache.conf"), "-DFOREGROUND"]
        self.process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until_listening(self.process, port)
        return port

    def stop(self) -> int:
        """Apache's own stop (SIGTERM): its children end their interpreters, then it exits."""
        assert self.process is not None
        return stop_process(self.process, signal.SIGTERM)

    def close(self) -> None:
        kill_group(self.process)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def apache() -> Iterator[Apache]:
    with contextlib.closing(Apache()) as server:
        yield server


@pytest.mark.parametrize("mode", MODES)
def test_mod_wsgi_sends_from_main_interpreters_only_and_stops_cleanly(
    mode: str, apache: Apache, collector: Collector
) -> None:
    in_subinterpreter = mode.startswith("subinterpreter")
    port = apache.start(mode, collector)
    answers = [answer_of(port) for _ in range(REQUESTS)]
    expected = "interpreter" if in_subinterpreter else "send"
    assert {(rule, at_import) for _, rule, at_import in answers} == {(expected, expected)}
    processes = len({pid for pid, _, _ in answers})  # each imported the application once
    if not in_subinterpreter:
        collector.wait_for(processes + REQUESTS)
    if mode == "subinterpreter (the default)":
        kill_group(apache.process)
    else:
        assert apache.stop() == 0
        assert "still did not exit" not in apache.log.read_text(errors="replace")
    log = apache.log.read_text(errors="replace")
    for noise in ("Fatal Python error", "not the last thread", "Traceback", "agentsonar_telemetry.py"):
        assert noise not in log, log
    assert not apache.net_log.exists(), apache.net_log.read_text()
    events = collector.events  # Apache and its children are gone: nothing more can arrive
    if in_subinterpreter:
        assert events == []
        assert not (apache.home / ".agentsonar").exists()
        assert DISCLOSURE not in log
        return
    assert "Python has shutdown" in log, log
    assert Counter(e["adapter"] for e in events) == {"at_import": processes, "per_request": REQUESTS}
    assert_one_machine(events, apache.home)
    assert log.count(DISCLOSURE) == 1, log  # the notice reaches Apache's error log, once
