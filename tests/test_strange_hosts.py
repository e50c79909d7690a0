"""The module in the strangest hosts: stalled answers, gevent, forks without Python's hooks,
multiprocessing workers, faked clocks, state files that are not files, a stderr that cannot be
written, Ctrl-C and atexit during the exit wait, a CLI with undecodable paths, locks of the dead,
of other pid namespaces and of a Ctrl-C.
Each case failed before its fix; none depends on how fast the machine is."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    PATIENT_EXIT,
    RawServer,
    SilentServer,
    free_port,
    make_client,
    read_state,
    run_python,
    subprocess_env,
    write_known_state,
)
from pytest_httpserver import HTTPServer

import agentsonar_telemetry as at

HOUR = 3600.0
DISCLOSURE = "AgentSonar collects anonymous usage telemetry"
STALLED_202 = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"


def server_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, trusted: bool = True) -> ssl.SSLContext:
    """A server context for 127.0.0.1 whose CA this process and its children trust (SSL_CERT_FILE),
    or, when not *trusted*, one no client trusts."""
    import trustme

    ca, tls = trustme.CA(), ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    if trusted:
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    return tls


# -- the answer ------------------------------------------------------------------------------


def test_a_202_whose_body_stalls_is_a_delivery(environ: dict[str, str], state_dir: Path) -> None:
    """The status line is the answer: a body that never comes is not a failure, and no retry."""
    write_known_state(state_dir)
    server = RawServer(STALLED_202, hold_open=True)
    try:
        environ["AGENTSONAR_TELEMETRY_URL"] = server.url
        client, _ = make_client(environ, timeout=30)  # a body read would wait out all of this
        assert client.start_session("0.4.0").wait(20)
    finally:
        server.close()
    assert server.connections == 1
    assert "backoff_seconds" not in read_state(state_dir)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_collector_that_trickles_bytes_cannot_hold_a_send_open(
    environ: dict[str, str], state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    """One deadline per attempt, not one per receive: a byte every 0.05 s never lets a 0.5 s
    receive time out, so without it the status line would take 55 minutes to give up on."""
    write_known_state(state_dir)
    tls = server_tls(tmp_path, monkeypatch) if scheme == "https" else None
    server = RawServer(b"HTTP/1.1 202 ", tls=tls, drip=b"x" * 100_000)
    try:
        environ["AGENTSONAR_TELEMETRY_URL"] = server.url
        client, _ = make_client(environ, timeout=0.5)
        session = client.start_session("0.4.0")
        assert session.wait(60) is False
        assert session._delivery is not None and session._delivery.settled  # given up, not still reading
    finally:
        server.close()
    assert server.connections == 2  # the attempt and its one retry, each cut at its deadline
    assert read_state(state_dir)["backoff_seconds"] == HOUR


@pytest.mark.parametrize(
    "after",
    [
        "headers_trickle",
        pytest.param(
            "connection_reset",
            marks=pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads Linux's socket queues"),
        ),
    ],
)
def test_a_2xx_status_line_is_a_delivery_whatever_follows(environ: dict[str, str], state_dir: Path, after: str) -> None:
    write_known_state(state_dir)
    if after == "headers_trickle":
        server = RawServer(b"HTTP/1.1 202 Accepted\r\nX-Slow: ", drip=b"a" * 100_000)
    else:
        server = RawServer(b"HTTP/1.1 202 Accepted\r\nContent-Type: appl", reset=True)
    try:
        environ["AGENTSONAR_TELEMETRY_URL"] = server.url
        client, _ = make_client(environ, timeout=0.5)
        assert client.start_session("0.4.0").wait(60) is True
    finally:
        server.close()
    assert server.connections == 1  # a delivery: no retry
    assert "backoff_seconds" not in read_state(state_dir)


def test_a_process_that_exits_after_a_stalled_202_records_no_failure(state_dir: Path) -> None:
    write_known_state(state_dir)
    server = RawServer(STALLED_202, hold_open=True)
    try:
        code = "import agentsonar_telemetry as at; print(at.start_session('0.4.0').wait(20))"
        result = run_python(code, AGENTSONAR_TELEMETRY_URL=server.url)
    finally:
        server.close()
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "True", "")
    assert "backoff_seconds" not in read_state(state_dir)


# -- a host monkeypatched by gevent (gunicorn's gevent worker, Locust) -----------------------------

GEVENT_HOST = """
from gevent import monkey
if {patch_first}:
    monkey.patch_all()
import agentsonar_telemetry as at
{patient_exit}monkey.patch_all()  # the second time a no-op; after our import, the order of a lazy host
first = at.Telemetry(timeout={timeout}).start_session("0.4.0")
print(first.rule, first.wait(30))
at.start_session("0.4.0")  # left to the exit wait
"""


def gevent_collector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheme: str, **server: object) -> RawServer:
    """A RawServer in this process, which gevent never patches; for https, its CA trusted by the host."""
    tls = server_tls(tmp_path, monkeypatch) if scheme == "https" else None
    return RawServer(tls=tls, **server)  # type: ignore[arg-type]


@pytest.mark.parametrize("patch_first", [True, False], ids=["patched-before-import", "patched-after-import"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_gevent_host_delivers_and_records_no_failure(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheme: str, patch_first: bool
) -> None:
    """gevent's sendall calls send(data, flags, timeout=...): a socket of ours that took no
    keywords made every send a TypeError, and every gevent host a false one-hour backoff."""
    write_known_state(state_dir)
    accepted = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
    server = gevent_collector(tmp_path, monkeypatch, scheme, answer=accepted)
    try:
        code = GEVENT_HOST.format(patch_first=patch_first, timeout=at._SOCKET_TIMEOUT, patient_exit=PATIENT_EXIT)
        result = run_python(code, AGENTSONAR_TELEMETRY_URL=server.url)
    finally:
        server.close()
    assert (result.returncode, result.stdout, result.stderr) == (0, "send True\n", "")
    assert server.connections == 2  # both sessions, the second during the exit wait; no retry
    assert "backoff_seconds" not in read_state(state_dir)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_gevent_host_is_held_by_a_trickling_collector_no_longer_than_the_deadline(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    write_known_state(state_dir)
    server = gevent_collector(tmp_path, monkeypatch, scheme, answer=b"HTTP/1.1 202 ", drip=b"x" * 100_000)
    try:
        code = GEVENT_HOST.format(patch_first=True, timeout=0.5, patient_exit=PATIENT_EXIT).replace(
            "first.wait(30)", "first.wait(60)"
        )
        result = run_python(code, AGENTSONAR_TELEMETRY_URL=server.url, timeout=60)
    finally:
        server.close()
    assert (result.returncode, result.stdout, result.stderr) == (0, "send False\n", "")
    assert server.connections == 2  # the attempt and its retry, each cut at its deadline; then backoff
    assert read_state(state_dir)["backoff_seconds"] == HOUR


def test_a_python_without_ssl_settles_its_send_as_a_failure_at_once(state_dir: Path) -> None:
    """A CPython built without OpenSSL: the sender thread's first import failed and it ended with
    the event still queued, so wait() ran out its timeout and the backoff waited for the exit."""
    write_known_state(state_dir)
    code = textwrap.dedent(
        """
        import sys
        sys.modules["ssl"] = None  # what `import ssl` finds in such a build: ImportError
        import json, os, agentsonar_telemetry as at
        session = at.start_session("0.4.0")
        settled = session._delivery.wait(None)  # no timeout: only settling ends it
        state = json.load(open(os.path.join(os.environ["AGENTSONAR_STATE_DIR"], "state.json")))
        print(session.rule, settled, session._delivery.delivered, state["backoff_seconds"])
        """
    )
    result = run_python(code, AGENTSONAR_TELEMETRY_URL="https://127.0.0.1:9/v1/events")
    assert (result.stdout, result.stderr) == ("send True False 3600.0\n", "")


# -- a host's own processes: out of threads, forked without Python's hooks, multiprocessing -------


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS is enforced on Linux")
def test_a_host_out_of_threads_gets_error_and_that_event_is_never_sent(httpserver: HTTPServer, state_dir: Path) -> None:
    """No thread can start (1 GiB stacks under a 512 MiB address-space limit): the session is
    `error`, and its event is dropped. It stayed queued: the next session's thread sent it too,
    an event whose session had answered "not enabled"."""
    write_known_state(state_dir)
    httpserver.expect_request("/v1/events").respond_with_json({"ok": True}, status=202)
    code = textwrap.dedent(
        """
        import resource, threading
        import agentsonar_telemetry as at
        threading.stack_size(1 << 30)
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (512 << 20, hard))
        first = at.start_session("0.4.0")
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        threading.stack_size(0)
        again = at.start_session("0.4.0")
        print(first.rule, first.enabled, again.rule, again.wait(30), again.session_id)
        """
    )
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=httpserver.url_for("/v1/events"))
    assert result.stderr == "" and result.returncode == 0, result.stderr
    first_rule, first_enabled, again_rule, delivered, session_id = result.stdout.split()
    assert (first_rule, first_enabled, again_rule, delivered) == ("error", "False", "send", "True")
    assert [json.loads(request.get_data())["session_id"] for request, _ in httpserver.log] == [session_id]
    assert "backoff_seconds" not in read_state(state_dir)


SMALL_STACK_HOST = """
import threading
import agentsonar_telemetry as at
{patient_exit}threading.stack_size(32768)  # the smallest allowed
session = at.start_session("0.4.0")
print(session.wait(30), threading.stack_size())
"""


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_host_that_sets_the_smallest_thread_stack_sends_from_a_stack_of_its_own(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    """Servers with many threads set small stacks (threading.stack_size): the sender thread took
    the host's 32 KiB too, and segfaulted the host in its imports or its TLS handshake (3.10, 3.12,
    3.13). It starts with a stack of its own, and the host's setting stays as the host left it."""
    write_known_state(state_dir)
    tls = server_tls(tmp_path, monkeypatch) if scheme == "https" else None
    server = RawServer(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", tls=tls)
    try:
        result = run_python(SMALL_STACK_HOST.format(patient_exit=PATIENT_EXIT), AGENTSONAR_TELEMETRY_URL=server.url)
    finally:
        server.close()
    assert (result.returncode, result.stdout, result.stderr) == (0, "True 32768\n", "")
    assert server.connections == 1


RAW_FORK_HOST = """
import ctypes, os, sys
import encodings.idna, http.client, ssl, urllib.request  # the sender's imports: none in flight at the fork
import agentsonar_telemetry as at
parent = at.Telemetry({**os.environ, "AGENTSONAR_TELEMETRY_URL": sys.argv[1]}, timeout=30).start_session("0.4.0")
pid = ctypes.PyDLL(None).fork()  # C's fork with the GIL held, as uWSGI forks workers: no at-fork hook runs
if pid == 0:
    child = at.Telemetry({**os.environ, "AGENTSONAR_TELEMETRY_URL": sys.argv[2]}).start_session("0.4.0")
    print("child", child.rule, at.status().rule, child.enabled, parent.wait(None), flush=True)  # inherited: at once
    sys.exit(0)
os.waitpid(pid, 0)
print("parent", parent.rule, flush=True)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="C's fork through ctypes")
def test_a_child_forked_without_the_at_fork_hooks_starts_no_thread_and_records_nothing(
    state_dir: Path, silent_server: SilentServer
) -> None:
    """The parent's send is in flight (a collector that never answers) when C code forks. The
    child inherited "a thread runs" with no thread: its sessions were queued for ever, and its
    exit waited for the parent's send and recorded it failed, a second backoff step; waiting on
    the inherited session never returned. A thread started there instead hung at times on 3.13
    (the interpreter's locks as the fork left them), so the child's sessions are off, rule `fork`,
    inherited sessions answer wait() at once, and its exit leaves the parent's sends alone."""
    write_known_state(state_dir)
    healthy = RawServer(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
    try:
        result = subprocess.run(
            [sys.executable, "-c", RAW_FORK_HOST, silent_server.url, healthy.url],
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        healthy.close()
    assert (result.returncode, result.stdout, result.stderr) == (0, "child fork fork False False\nparent send\n", "")
    assert healthy.connections == 0
    assert read_state(state_dir)["backoff_seconds"] == HOUR  # the parent's own failure, one step


class UwsgiModule:
    """What uWSGI puts in sys.modules as ``uwsgi``, as far as the module asks it (hosts/ runs the real one)."""

    def __init__(self, worker_id: int, **options: bool) -> None:
        self.opt = options
        self.worker_id = lambda: worker_id


@pytest.mark.parametrize(
    ("uwsgi", "rule"),
    [
        (UwsgiModule(0), "fork"),  # the master, loading the app before it forks the workers
        (UwsgiModule(0, **{"py-call-uwsgi-fork-hooks": True}), "send"),  # Python's hooks around its forks
        (UwsgiModule(1), "send"),  # a worker: forked with the hooks (no-hook ones are caught by pid)
        (object(), "send"),  # a module of that name that is not uWSGI's
    ],
    ids=["master", "master-with-fork-hooks", "worker", "not-uwsgi"],
)
def test_the_uwsgi_process_that_forks_workers_without_python_hooks_starts_no_thread(
    uwsgi: object, rule: str, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uwsgi", uwsgi)
    client, _ = make_client(environ)
    assert client.status().rule == rule
    session = client.start_session("0.4.0")
    assert (session.rule, session.enabled) == (rule, rule == "send")


MULTIPROCESSING_HOST = """
import multiprocessing, sys
import agentsonar_telemetry as at

def work():
    return at.start_session("0.4.0").rule

if __name__ == "__main__":
    with multiprocessing.get_context(sys.argv[1]).Pool(1) as pool:
        print(pool.apply(work), flush=True)
        pool.close()
        pool.join()  # the worker ends as a Pool's worker does: multiprocessing's finalizers, then os._exit
"""


@pytest.mark.skipif(sys.platform == "win32", reason="fork and forkserver")
@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
def test_a_multiprocessing_worker_waits_for_its_send_at_exit_and_records_it(
    start_method: str, state_dir: Path, tmp_path: Path, silent_server: SilentServer
) -> None:
    """A worker started by fork or forkserver never runs atexit: its send in flight was dropped,
    neither waited for nor recorded, and the next session sent to a dead collector again. Now its
    exit wait runs among multiprocessing's finalizers and the failure is one backoff step."""
    write_known_state(state_dir)
    script = tmp_path / "host.py"  # forkserver finds work() by the main module's file
    script.write_text(MULTIPROCESSING_HOST)
    result = subprocess.run(
        [sys.executable, str(script), start_method],
        env=subprocess_env(AGENTSONAR_TELEMETRY_URL=silent_server.url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "send\n", "")
    assert read_state(state_dir)["backoff_seconds"] == HOUR


NOT_THE_STANDARD_ONES = {
    # no parent_process, no Finalize
    "multiprocessing": 'sys.modules["multiprocessing.process"] = types.ModuleType("multiprocessing.process")\n'
    'sys.modules["multiprocessing.util"] = types.ModuleType("multiprocessing.util")',
    "celery": 'sys.modules["celery.signals"] = types.ModuleType("celery.signals")',  # no worker_process_shutdown
}


@pytest.mark.parametrize("name", NOT_THE_STANDARD_ONES)
def test_a_module_named_multiprocessing_or_celery_that_is_not_the_standard_one_changes_nothing(
    name: str, httpserver: HTTPServer, state_dir: Path
) -> None:
    write_known_state(state_dir)
    httpserver.expect_request("/v1/events").respond_with_data("", status=202)
    code = textwrap.dedent(
        """
        import sys, types
        {modules}
        import agentsonar_telemetry as at
        session = at.start_session("0.4.0")
        print(session.rule, session.wait(30))
        """
    ).format(modules=NOT_THE_STANDARD_ONES[name])
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=httpserver.url_for("/v1/events"))
    assert (result.returncode, result.stdout, result.stderr) == (0, "send True\n", "")
    assert len(httpserver.log) == 1


# -- a host that starts sessions faster than the collector answers (a session per request) --------


def test_sessions_faster_than_the_collector_answers_hold_at_most_max_pending_events(
    state_dir: Path, silent_server: SilentServer
) -> None:
    """A server starting a session per request, its collector slower than its requests: every
    event waited in memory, without bound, until exit. Now at most _MAX_PENDING wait, and the
    sessions beyond them say `backlog`, as status() does."""
    write_known_state(state_dir)
    code = textwrap.dedent(
        """
        import agentsonar_telemetry as at
        at._MAX_PENDING = 3
        client = at.Telemetry(timeout=60)  # the first send is in flight for the whole test
        print(*[client.start_session("0.4.0").rule for _ in range(5)], client.status().rule, at.is_disabled())
        """
    )
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=silent_server.url)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "send send send backlog backlog backlog False\n"
    assert read_state(state_dir)["backoff_seconds"] == HOUR  # the three, one failed episode at exit


# -- a host whose tests fake its network or its files (vcrpy, httpretty, a mock, pyfakefs) --------

ACCEPTED = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"

INTERCEPTED_HOST = """
import os, warnings
warnings.simplefilter("ignore")  # an interceptor's own deprecations are not ours
import agentsonar_telemetry as at
{setup}
{patient_exit}before = None
if {send_later}:  # decided before the interception, sent while it is on
    at._Sender.fork_guard.acquire()  # the sender waits here before its first send
    before = at.start_session("0.4.0")
with {intercept}:
    if before is None:
        session = at.start_session("0.4.0")
        print(session.rule, session.enabled, at.status().rule)
    else:
        at._Sender.fork_guard.release()
        print(before.rule, before._delivery.wait(30), before.wait(0))
    {seen}
"""

INTERCEPTORS = {
    "vcrpy": (
        "import vcr\ncassette = os.path.join(os.environ['AGENTSONAR_STATE_DIR'], '..', 'cassette.yaml')",
        "vcr.use_cassette(cassette, record_mode='all')",
        "pass",
    ),
    "httpretty": (
        "import httpretty",
        "httpretty.enabled(allow_net_connect=True)",
        "print(len(httpretty.latest_requests()))",
    ),
    "mock": (
        "import http.client\nfrom unittest import mock",
        "mock.patch('http.client.HTTPConnection', wraps=http.client.HTTPConnection)",
        "pass",
    ),
}


@pytest.mark.parametrize("send_later", [False, True], ids=["session-inside", "sent-inside"])
@pytest.mark.parametrize("interceptor", sorted(INTERCEPTORS))
def test_a_host_whose_http_is_intercepted_in_its_tests_never_sends_through_it(
    state_dir: Path, tmp_path: Path, interceptor: str, send_later: bool
) -> None:
    """vcrpy recorded the event, install id and all, into the host's cassette (kept in git, and
    rewritten at every run); httpretty's requests of a test, and a mock's calls, had ours among
    them. While the host's sockets or HTTP connections are replaced, nothing is sent through them:
    a session is `intercepted`; one decided before is settled unsent, and records no failure."""
    write_known_state(state_dir)
    setup, intercept, seen = INTERCEPTORS[interceptor]
    server = RawServer(ACCEPTED)
    try:
        code = INTERCEPTED_HOST.format(
            setup=setup, intercept=intercept, seen=seen, send_later=send_later, patient_exit=PATIENT_EXIT
        )
        result = run_python(code, AGENTSONAR_TELEMETRY_URL=server.url)
    finally:
        server.close()
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == ("send True False" if send_later else "intercepted False intercepted")
    assert lines[1:] == (["0"] if interceptor == "httpretty" else [])
    assert server.connections == 0
    assert not (tmp_path / "cassette.yaml").exists()
    assert "backoff_seconds" not in read_state(state_dir)


HALF_IMPORTED_SOCKET_HOST = """
import sys, threading
import agentsonar_telemetry as at
{patient_exit}arrived, go = threading.Event(), threading.Event()

class HoldSocketHalfMade:  # socket.py imports selectors after `from _socket import *`, before its own classes
    def find_spec(self, name, path=None, target=None):
        if name == "selectors" and "socket" in sys.modules and not arrived.is_set():
            arrived.set()
            go.wait(30)
        return None

sys.meta_path.insert(0, HoldSocketHalfMade())
first = at.start_session("0.4.0")  # its sender imports http.client, and so socket
arrived.wait(30)
during = at.start_session("0.4.0")
print(sys.modules["socket"].socket.__module__, at.status().rule, during.rule, flush=True)
go.set()
print(first.wait(30), during.wait(30))
"""


def test_a_session_while_the_sender_imports_socket_is_not_intercepted(state_dir: Path) -> None:
    """A module being imported is half made: socket.socket is still _socket's, and a session then
    answered `intercepted` (one in a thousand under a 1 kHz signal handler's sessions)."""
    write_known_state(state_dir)
    server = RawServer(ACCEPTED)
    try:
        result = run_python(
            HALF_IMPORTED_SOCKET_HOST.format(patient_exit=PATIENT_EXIT), AGENTSONAR_TELEMETRY_URL=server.url
        )
    finally:
        server.close()
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "_socket send send\nTrue True\n"
    assert server.connections == 2


FAKE_FILE_SYSTEM_HOST = """
import agentsonar_telemetry as at
from pyfakefs.fake_filesystem_unittest import Patcher
with Patcher():  # what pyfakefs's fs fixture does around each of the host's tests
    session = at.start_session("0.4.0")
    print(session.rule, session.enabled, at.is_disabled(), flush=True)
print(at.status().rule)
"""


@pytest.mark.parametrize("opted_out", [True, False], ids=["opted-out", "no-state-yet"])
def test_a_host_whose_file_system_is_faked_in_its_tests_neither_sends_nor_shows_the_notice(
    state_dir: Path, opted_out: bool
) -> None:
    """pyfakefs replaces os in every module: the real state.json was out of sight, so a persisted
    opt-out was ignored, and each of the host's tests was a new machine (a new install id, the
    notice, a send). A faked file system is a state that cannot be read: off, and in doubt."""
    if opted_out:
        write_known_state(state_dir, telemetry_disabled=True)
    server = RawServer(ACCEPTED)
    try:
        result = run_python(FAKE_FILE_SYSTEM_HOST, AGENTSONAR_TELEMETRY_URL=server.url)
    finally:
        server.close()
    assert (result.returncode, result.stderr) == (0, "")
    expected_after = "telemetry_disabled" if opted_out else "send"
    assert result.stdout == f"state_error False True\n{expected_after}\n"
    assert server.connections == 0
    assert (state_dir / "state.json").exists() is opted_out  # nothing written to the real one either


# -- a host whose warnings are errors (python -X dev -W error, pytest's filterwarnings = error) --


DEV_MODE_COLLECTORS = {
    "accepts over https": dict(answer=b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", tls="trusted"),
    "answers 500": dict(answer=b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"),
    "answers garbage": dict(answer=b"garbage\r\n\r\n"),
    "stalls after a 202": dict(answer=STALLED_202, hold_open=True),
    "trickles over https": dict(answer=b"HTTP/1.1 202 ", tls="trusted", drip=b"x" * 100_000),
    "has an untrusted certificate": dict(answer=b"HTTP/1.1 202 Accepted\r\n\r\n", tls="untrusted"),
}


@pytest.mark.parametrize("collector", DEV_MODE_COLLECTORS.values(), ids=DEV_MODE_COLLECTORS.keys())
def test_a_host_whose_warnings_are_errors_sees_nothing_of_ours(
    state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collector: dict[str, object]
) -> None:
    """Dev mode shows every ResourceWarning (a socket or file of ours left unclosed) and -W error
    turns each warning into an exception, printed on stderr from a destructor: none may come."""
    write_known_state(state_dir)
    server = dict(collector)
    if server.get("tls"):
        server["tls"] = server_tls(tmp_path, monkeypatch, trusted=server["tls"] == "trusted")
    collector_server = RawServer(**server)  # type: ignore[arg-type]
    code = "import gc, agentsonar_telemetry as at\nat.Telemetry(timeout=0.5).start_session('0.4.0').wait(30)\n"
    code += "at.start_session('0.4.0')  # left to the exit wait\ngc.collect()\n"
    try:
        result = subprocess.run(
            [sys.executable, "-X", "dev", "-W", "error", "-c", code],
            env=subprocess_env(AGENTSONAR_TELEMETRY_URL=collector_server.url),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        collector_server.close()
    assert (result.returncode, result.stderr) == (0, "")


LOGGING_THAT_RAISES = """
import logging
class Broken(logging.Filter):
    def filter(self, record):
        raise RuntimeError("the host's own bug")
handler = logging.StreamHandler()
handler.addFilter(Broken())
logging.basicConfig(level=logging.DEBUG, handlers=[handler])
import agentsonar_telemetry as at
print(at.start_session("0.4.0").wait(10), at.status().rule)
"""


def test_a_host_whose_logging_raises_sees_no_traceback_and_the_failure_is_recorded(state_dir: Path) -> None:
    """A filter of the host's that raises made every debug line of ours raise: the sender thread
    died printing "Exception ignored in thread started by" with a traceback through this module,
    the failure was never recorded (the next session sent again), and wait() ran out its timeout."""
    write_known_state(state_dir)
    result = run_python(LOGGING_THAT_RAISES, AGENTSONAR_TELEMETRY_URL=f"http://127.0.0.1:{free_port()}/v1/events")
    assert (result.returncode, result.stdout, result.stderr) == (0, "False backoff\n", "")


# -- a host whose clock is faked (freezegun in its tests) ------------------------------------------

FROZEN_HOST = """
import freezegun
import agentsonar_telemetry as at
freezegun.freeze_time("{frozen_at}").start()  # never stopped, as a session-wide fixture leaves it
{session}
"""


@pytest.mark.parametrize("frozen_at", ["2020-01-01", "2099-01-01"])
def test_a_frozen_clock_neither_hangs_a_session_on_a_live_lock_nor_breaks_it(state_dir: Path, frozen_at: str) -> None:
    """freezegun replaces time.monotonic and time.time: frozen, the 0.25 s wait for a live lock
    never ran out (the session hung for ever), and frozen in the future, the live lock looked
    decades old and was broken. The module reads the system's clocks through clock_gettime."""
    write_known_state(state_dir)
    lock = state_dir / "state.json.lock"
    holder = f"{os.getpid()} {at._pid_space()} 0.000\n"  # this live process, this host, now
    lock.write_text(holder)
    session = 'print(at.start_session("0.4.0", config={"telemetry": False}).rule)'
    result = run_python(FROZEN_HOST.format(frozen_at=frozen_at, session=session))
    assert (result.stdout, result.stderr) == ("config\n", "")  # off; persisting it waited, then gave up
    assert lock.read_text() == holder  # never broken
    assert read_state(state_dir)["telemetry_disabled"] is False


def test_a_frozen_clock_is_not_the_time_of_the_session(state_dir: Path) -> None:
    """The event's timestamp (and a backoff's) is the machine's time, not the host's frozen one:
    the collector refuses an event from 2020, and a backoff recorded until 2020 is none."""
    write_known_state(state_dir)
    session = "print(at.start_session('0.4.0').event['timestamp'])"
    before = time.time()
    result = run_python(FROZEN_HOST.format(frozen_at="2020-01-01", session=session), AGENTSONAR_TELEMETRY="debug")
    after = time.time()
    assert result.returncode == 0, result.stderr
    assert before - 1 <= float(result.stdout) <= after + 1  # the event printed, not sent, in debug mode


def test_a_frozen_clock_cannot_hold_a_send_open(state_dir: Path) -> None:
    """The one deadline per attempt runs on the system's clock: frozen, a collector trickling a
    byte every 0.05 s held the attempt open for the 83 minutes of its drip."""
    write_known_state(state_dir)
    server = RawServer(b"HTTP/1.1 202 ", drip=b"x" * 100_000)
    session = "s = at.Telemetry(timeout=0.5).start_session('0.4.0')\nprint(s._delivery.wait(None), s.wait(0))"
    try:
        result = run_python(
            FROZEN_HOST.format(frozen_at="2026-06-01", session=session), AGENTSONAR_TELEMETRY_URL=server.url
        )
    finally:
        server.close()
    assert (result.stdout, result.stderr) == ("True False\n", "")
    assert server.connections == 2  # the attempt and its retry, each cut at its deadline


# -- state files that are not what they seem -------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "state_path"),
    [
        ({"HOME": "relative-home"}, os.path.join("relative-home", ".agentsonar", "state.json")),
        ({"AGENTSONAR_STATE_DIR": ".agentsonar"}, os.path.join(".agentsonar", "state.json")),
        ({"AGENTSONAR_STATE_DIR": " state "}, os.path.join("state", "state.json")),
        ({"AGENTSONAR_STATE_DIR": "~/s", "HOME": "relative-home"}, os.path.join("relative-home", "s", "state.json")),
    ],
)
def test_a_state_directory_that_is_not_absolute_keeps_no_state_and_sends_nothing(
    httpserver: HTTPServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], state_path: str
) -> None:
    """HOME unset (or relative) with no passwd entry leaves "~" as it is, and a relative
    AGENTSONAR_STATE_DIR was made absolute against the working directory: the state was a path
    relative to the host's working directory, where `disable` wrote ./~/.agentsonar/state.json
    (or ./.agentsonar/state.json) and said it was persisted (from any other directory it was not there)."""
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    client, err = make_client({**settings, "AGENTSONAR_TELEMETRY_URL": httpserver.url_for("/v1/events")})
    assert client.state_path == state_path
    status = client.status()
    assert status.rule == "state_error" and "AGENTSONAR_STATE_DIR, or HOME when it is unset, must be" in status.reason
    assert client.start_session("0.4.0").rule == "state_error"
    for command in (client.disable_persistently, client.enable_persistently, client.reset):
        with pytest.raises(PermissionError, match="not absolute: AGENTSONAR_STATE_DIR, or HOME when it is unset, must"):
            command()
    assert sorted(os.listdir(tmp_path)) == before and err.getvalue() == ""
    assert httpserver.log == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="root, in another user's home")
def test_root_in_another_users_home_keeps_no_state_there_and_honours_their_opt_out(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    """`sudo` keeping HOME (macOS's does): root made ~/.agentsonar and state.json its own, and the
    user was locked out of their own state, even of `disable`. A real chown (CI runs as root)."""
    home = tmp_path / "user-home"
    home.mkdir()
    os.chown(home, 54321, 54321)
    client, err = make_client({"HOME": str(home), "AGENTSONAR_TELEMETRY_URL": httpserver.url_for("/v1/events")})
    status = client.status()
    assert status.rule == "state_error" and "54321" in status.reason and "sudo" in status.reason
    assert client.start_session("0.4.0").rule == "state_error"
    with pytest.raises(PermissionError, match="sudo -H"):
        client.disable_persistently()
    assert os.listdir(home) == [] and err.getvalue() == "" and httpserver.log == []
    (home / ".agentsonar").mkdir()
    write_known_state(home / ".agentsonar", telemetry_disabled=True)
    for path in (home / ".agentsonar", home / ".agentsonar" / "state.json"):
        os.chown(path, 54321, 54321)
    assert client.status().rule == "telemetry_disabled"  # the user's opt-out holds under sudo


NO_HOME_USER = """
import argparse, json, os, sys
import agentsonar_telemetry as at
# What the CLI imports, argparse's lazy imports too, read while the interpreter's files are root's.
parser = argparse.ArgumentParser()
parser.add_subparsers(dest="command").add_parser("disable")
parser.parse_args(["disable"])
os.setgid(54321)
os.setuid(54321)  # a user with no passwd entry, as a container's --user 54321
print(os.path.expanduser("~"), at.status().rule)
sys.exit(at.main(["disable"]))
"""


@pytest.mark.skipif(not hasattr(os, "setuid") or os.geteuid() != 0, reason="becoming a user with no home")
@pytest.mark.parametrize("state_dir_setting", [None, "~/.agentsonar"])  # as Docker's ENV leaves it: unexpanded
def test_a_user_with_no_passwd_entry_and_no_home_gets_one_error_line_and_no_litter(
    state_dir_setting: str | None,
) -> None:
    """The real case: HOME unset and a uid unknown to the system (CI runs as root, so it runs there)."""
    import pwd
    import tempfile

    with pytest.raises(KeyError):
        pwd.getpwuid(54321)
    with tempfile.TemporaryDirectory() as cwd:
        os.chmod(cwd, 0o777)
        env = subprocess_env()
        for name in ("HOME", "USERPROFILE", "AGENTSONAR_STATE_DIR"):
            env.pop(name, None)
        if state_dir_setting is not None:
            env["AGENTSONAR_STATE_DIR"] = state_dir_setting
        result = subprocess.run(
            [sys.executable, "-c", NO_HOME_USER], env=env, cwd=cwd, capture_output=True, text=True, check=False
        )
        assert (result.returncode, result.stdout) == (1, "~ state_error\n"), result.stderr
        expected = "error: disable failed: the state directory is not absolute: AGENTSONAR_STATE_DIR, or HOME"
        assert result.stderr.startswith(expected)
        assert result.stderr.count("\n") == 1
        assert os.listdir(cwd) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_a_fifo_named_state_json_is_a_state_error_not_a_hang(state_dir: Path) -> None:
    state_dir.mkdir(mode=0o700)
    os.mkfifo(state_dir / "state.json")
    # A blocking open() would wait for a writer for ever: the subprocess timeout would fail the test.
    code = "import agentsonar_telemetry as at; s = at.start_session('0.4.0'); print(s.rule, s.reason)"
    result = run_python(code, timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith("state_error ") and "not a regular file" in result.stdout
    assert (state_dir / "state.json").is_fifo()  # left as it was


def test_a_directory_named_state_json_is_a_state_error(environ: dict[str, str], state_dir: Path) -> None:
    (state_dir / "state.json").mkdir(parents=True)
    client, err = make_client(environ)
    session = client.start_session("0.4.0")
    assert (session.rule, err.getvalue()) == ("state_error", "")


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_a_symlinked_state_json_is_written_through_and_stays_a_link(
    httpserver: HTTPServer, environ: dict[str, str], state_dir: Path, tmp_path: Path
) -> None:
    httpserver.expect_request("/v1/events").respond_with_json({"ok": True}, status=202)
    target = tmp_path / "dotfiles" / "agentsonar-state.json"
    target.parent.mkdir()
    state_dir.mkdir(mode=0o700)
    (state_dir / "state.json").symlink_to(target)  # dangling until the first session
    write_known_state(state_dir)  # through the link, as a dotfiles manager would have it
    environ["AGENTSONAR_TELEMETRY_URL"] = httpserver.url_for("/v1/events")
    client, _ = make_client(environ)
    assert client.start_session("0.4.0").wait(10)
    client.disable_persistently()
    assert (state_dir / "state.json").is_symlink()
    assert json.loads(target.read_text())["telemetry_disabled"] is True
    client.reset()  # forgets the install id through the link, keeps the opt-out
    client.enable_persistently()
    client.reset()
    assert (state_dir / "state.json").is_symlink()
    assert "install_id" not in json.loads(target.read_text())
    assert client.start_session("0.4.0").enabled  # a new install id, through the link
    assert "install_id" in json.loads(target.read_text())


def test_json_nested_too_deep_is_corrupt_and_disable_replaces_it(state_dir: Path) -> None:
    state_dir.mkdir(mode=0o700)
    deep = '{"schema_version": 1, "x": ' + "[" * 1200 + "]" * 1200 + "}"
    (state_dir / "state.json").write_text(deep)
    status = run_python("import agentsonar_telemetry as at; print(at.status().rule)")
    assert (status.stdout.strip(), status.stderr) == ("state_error", "")
    result = run_python("import sys, agentsonar_telemetry as at; sys.exit(at.main(['disable']))")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith("telemetry disabled:")
    assert read_state(state_dir) == {"schema_version": 1, "telemetry_disabled": True}


def test_json_nested_32000_deep_in_a_small_thread_stack_is_corrupt_not_a_crash(state_dir: Path) -> None:
    """The C scanner recurses on the C stack: a host thread of 128 KiB (threading.stack_size, as
    servers set it; 1 MiB is enough on 3.13) segfaulted reading this file before a RecursionError."""
    state_dir.mkdir(mode=0o700)
    deep = '{"schema_version": 1, "x": ' + "[" * 32000 + "]" * 32000 + "}"  # under the 64 KiB limit
    (state_dir / "state.json").write_text(deep)
    code = textwrap.dedent(
        """
        import sys, threading
        import agentsonar_telemetry as at
        answers = []
        def host():
            answers.extend([at.status().rule, at.start_session("0.4.0").rule, at.main(["disable"])])
        threading.stack_size(128 * 1024)
        thread = threading.Thread(target=host)
        thread.start()
        thread.join()
        print(answers)
        """
    )
    result = run_python(code)
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert result.stdout.splitlines()[-1] == "['state_error', 'state_error', 0]" and result.stderr == ""
    assert read_state(state_dir) == {"schema_version": 1, "telemetry_disabled": True}


@pytest.mark.parametrize(
    "text",
    [
        '{"a": "' + "[" * 100 + '"}',  # brackets in a string are not nesting
        '{"a": "\\\\", "b": "' + "{" * 100 + '"}',  # an escaped backslash ends before its quote
        '{"a": [' + "[]," * 100 + "[]]}",  # many arrays, two deep
    ],
)
def test_brackets_that_do_not_nest_are_not_too_deep(text: str) -> None:
    assert not at._nests_deeper_than(text, at._MAX_STATE_DEPTH)
    assert at._parse_json(text) == json.loads(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": ' + "[" * 33 + "]" * 33 + "}",
        '{"a": "\\\\", "b": ' + "{" * 40,  # an escaped backslash, the string closed, then nesting
        '{"a": "x\\"' + "[" * 5 + '", "b": ' + "[" * 40,  # an escaped quote keeps the string open
    ],
)
def test_nesting_deeper_than_the_limit_is_seen_before_parsing(text: str) -> None:
    assert at._nests_deeper_than(text, at._MAX_STATE_DEPTH)


def test_a_state_directory_1500_levels_deep_is_made_without_recursion(tmp_path: Path) -> None:
    """Each missing parent made 0700 in a loop: recursing made this a RecursionError (and a
    segfault in a 256 KiB thread on 3.10)."""
    deep = tmp_path.joinpath(*["d"] * 1500)
    made = [deep, *deep.parents[:1499]]
    try:
        client, err = make_client({"AGENTSONAR_STATE_DIR": str(deep), "AGENTSONAR_TELEMETRY": "debug"})
        assert client.start_session("0.4.0").rule == "debug"
        assert json.loads((deep / "state.json").read_text())["disclosure_shown"] is True
        assert DISCLOSURE in err.getvalue()
        assert {oct(directory.stat().st_mode & 0o777) for directory in made} == {"0o700"}
    finally:  # bottom up, here: shutil.rmtree recurses too, and pytest's cleanup would fail on 3.10 and 3.11
        (deep / "state.json").unlink(missing_ok=True)
        for directory in made:
            if directory.exists():
                directory.rmdir()


# -- a disclosure that really reached the person -------------------------------------------------


def test_no_send_while_stderr_is_none_then_the_notice_and_the_send(httpserver: HTTPServer, state_dir: Path) -> None:
    httpserver.expect_request("/v1/events").respond_with_json({"ok": True}, status=202)
    url = httpserver.url_for("/v1/events")
    code = (
        "import sys; sys.stderr = None\nimport agentsonar_telemetry as at\ns = at.start_session('0.4.0')\nprint(s.rule)"
    )
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=url)  # a pythonw or daemon host
    assert result.stdout.strip() == "stderr"
    assert read_state(state_dir)["disclosure_shown"] is False
    assert len(httpserver.log) == 0  # nothing left the machine unannounced
    result = run_python(
        "import agentsonar_telemetry as at; print(at.start_session('0.4.0').wait(10))", AGENTSONAR_TELEMETRY_URL=url
    )
    assert result.stdout.strip() == "True" and result.stderr.count(DISCLOSURE) == 1
    assert read_state(state_dir)["disclosure_shown"] is True and len(httpserver.log) == 1


INTERRUPTED_BEFORE_THE_NOTICE = """
import os, signal, sys, agentsonar_telemetry as at

def profile(frame, event, arg):
    if event == "call" and frame.f_code.co_name == "_disclosure_text":
        sys.setprofile(None)
        os.kill(os.getpid(), signal.SIGINT)

sys.setprofile(profile)
try:
    at.start_session("0.4.0")
except KeyboardInterrupt:
    print("interrupted")
sys.setprofile(None)
print(at.start_session("0.4.0").wait(10))
"""


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_ctrl_c_between_recording_the_notice_and_showing_it_leaves_it_owed(
    httpserver: HTTPServer, state_dir: Path
) -> None:
    """A real SIGINT at the moment the first session, its state written with ``disclosure_shown:
    true``, is about to print the notice (a profile hook on that call). Before: the flag stayed
    true, and the next session sent with the notice never shown."""
    httpserver.expect_request("/v1/events").respond_with_json({"ok": True}, status=202)
    result = run_python(INTERRUPTED_BEFORE_THE_NOTICE, AGENTSONAR_TELEMETRY_URL=httpserver.url_for("/v1/events"))
    assert result.stdout == "interrupted\nTrue\n"
    assert result.stderr.count(DISCLOSURE) == 1  # shown by the next session, which then sent
    assert read_state(state_dir)["disclosure_shown"] is True and len(httpserver.log) == 1


class WriteOnlyStream:
    """A host's own stderr object with write() and nothing else: no flush(), no encoding."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)


def test_a_stderr_that_only_writes_shows_the_notice_once_and_sends(
    httpserver: HTTPServer, environ: dict[str, str]
) -> None:
    """A write() that returned is the notice shown: there was no flush() to call, so every session
    printed the notice again and none was ever sent."""
    httpserver.expect_request("/v1/events").respond_with_json({"ok": True}, status=202)
    stream = WriteOnlyStream()
    client = at.Telemetry({**environ, "AGENTSONAR_TELEMETRY_URL": httpserver.url_for("/v1/events")}, stderr=stream)  # type: ignore[arg-type]
    sessions = [client.start_session("0.4.0") for _ in range(2)]
    assert [session.rule for session in sessions] == ["send", "send"]
    assert all(session.wait(10) for session in sessions)
    assert stream.text.count(DISCLOSURE) == 1 and len(httpserver.log) == 2


def test_a_closed_stderr_sends_nothing(httpserver: HTTPServer, state_dir: Path) -> None:
    url = httpserver.url_for("/v1/events")
    code = "import os, sys; os.close(2)\nimport agentsonar_telemetry as at\nprint(at.start_session('0.4.0').rule)"
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=url)
    assert result.stdout.strip() == "stderr" and len(httpserver.log) == 0


@pytest.mark.skipif(sys.platform == "win32", reason="O_NONBLOCK pipes")
@pytest.mark.parametrize("buffering", ["unbuffered", "buffered"])
def test_a_non_blocking_stderr_that_cannot_take_the_notice_sends_nothing_until_it_is_shown(
    httpserver: HTTPServer, state_dir: Path, buffering: str
) -> None:
    """A stderr whose file is non-blocking (a pipe or terminal shared with Node.js, which sets
    O_NONBLOCK) and full. Unbuffered (PYTHONUNBUFFERED, as container images set it), Python's
    stderr drops what the file cannot take without a word: the notice was recorded shown, never
    seen, and every session sent. Buffered, it kept the notice, and the host exited with status
    120 when its stderr could not be flushed at exit."""
    httpserver.expect_request("/v1/events").respond_with_json({"ok": True}, status=202)
    code = "import agentsonar_telemetry as at\ns = at.start_session('0.4.0')\nprint(s.rule, s.wait(30))"
    read_end, write_end = os.pipe()
    try:
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        filler = 0
        try:
            while True:
                filler += os.write(write_end, b"." * 4096)
        except BlockingIOError:
            pass  # full: the next byte written to it would block
        env = subprocess_env(AGENTSONAR_TELEMETRY_URL=httpserver.url_for("/v1/events"), PYTHONUNBUFFERED="1")
        if buffering == "buffered":
            del env["PYTHONUNBUFFERED"]
        full = subprocess.run([sys.executable, "-c", code], stderr=write_end, stdout=subprocess.PIPE, env=env,
                              text=True, timeout=60, check=False)  # fmt: skip
        drained = b""
        with contextlib.suppress(BlockingIOError):
            while len(drained) < filler + 65536:
                drained += os.read(read_end, 65536)
        assert (full.returncode, full.stdout.strip(), drained) == (0, "stderr False", b"." * filler)
        assert len(httpserver.log) == 0 and read_state(state_dir)["disclosure_shown"] is False  # owed
        room = subprocess.run([sys.executable, "-c", code], stderr=write_end, stdout=subprocess.PIPE, env=env,
                              text=True, timeout=60, check=False)  # fmt: skip
        shown = b""
        with contextlib.suppress(BlockingIOError):
            while True:
                shown += os.read(read_end, 65536)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert (room.returncode, room.stdout.strip()) == (0, "send True")
    assert shown.decode().count(DISCLOSURE) == 1 and shown.decode().endswith("This notice is shown once.\n")
    assert len(httpserver.log) == 1 and read_state(state_dir)["disclosure_shown"] is True


@pytest.mark.skipif(sys.platform == "win32", reason="the null device of POSIX")
def test_a_notice_due_while_stderr_is_the_null_device_is_not_shown_and_nothing_is_sent_or_written(
    httpserver: HTTPServer, state_dir: Path, tmp_path: Path
) -> None:
    """A daemon's stderr, or ``2>/dev/null``: the notice went to the null device, reaching nobody,
    and was recorded shown; every later session sent. A file (``2>>app.log``) is read by a person,
    so a session there shows the notice and sends, as before."""
    httpserver.expect_request("/v1/events").respond_with_json({"ok": True}, status=202)
    env = subprocess_env(AGENTSONAR_TELEMETRY_URL=httpserver.url_for("/v1/events"))
    code = textwrap.dedent(
        """
        import agentsonar_telemetry as at
        for _ in range(2):
            session = at.start_session("0.4.0")
            print(session.rule, session.wait(30))
        """
    )

    def run(stderr: object) -> str:
        result = subprocess.run([sys.executable, "-c", code], stderr=stderr, stdout=subprocess.PIPE, env=env,
                                text=True, timeout=60, check=True)  # fmt: skip
        return result.stdout

    assert run(subprocess.DEVNULL) == "stderr False\n" * 2
    assert len(httpserver.log) == 0 and not state_dir.exists()  # no install id, and no write at each session
    log = tmp_path / "app.log"
    with log.open("a") as stderr:
        assert run(stderr) == "send True\n" * 2
    assert log.read_text().count(DISCLOSURE) == 1 and len(httpserver.log) == 2


def test_a_notice_due_inside_pytests_capture_is_not_shown_and_nothing_is_sent_or_written(
    httpserver: HTTPServer, environ: dict[str, str], state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A host's first session inside its own test suite: the notice went to pytest's capture,
    which nobody sees unless the test fails, and was recorded shown; every later session sent."""
    environ["AGENTSONAR_TELEMETRY_URL"] = httpserver.url_for("/v1/events")
    sessions = [at.Telemetry(environ).start_session("0.4.0") for _ in range(2)]  # stderr: capsys's
    assert [(s.rule, s.enabled) for s in sessions] == [("stderr", False)] * 2
    assert "pytest's capture" in sessions[0].reason
    assert capsys.readouterr().err == "" and len(httpserver.log) == 0
    assert not state_dir.exists()  # no install id, and no write at every session


@pytest.mark.parametrize("stream", ["tee", "shown before"])
def test_inside_pytest_a_notice_shown_or_teed_to_the_terminal_lets_sessions_send(
    httpserver: HTTPServer, environ: dict[str, str], state_dir: Path, stream: str
) -> None:
    from _pytest.capture import CaptureIO, TeeCaptureIO

    httpserver.expect_request("/v1/events").respond_with_json({"ok": True}, status=202)
    environ["AGENTSONAR_TELEMETRY_URL"] = httpserver.url_for("/v1/events")
    terminal = io.StringIO()
    if stream == "shown before":
        write_known_state(state_dir)  # disclosure_shown: true
    capture = TeeCaptureIO(terminal) if stream == "tee" else CaptureIO()  # type: ignore[arg-type]
    session = at.Telemetry(environ, stderr=capture).start_session("0.4.0")
    assert (session.rule, session.wait(10)) == ("send", True)
    assert terminal.getvalue().count(DISCLOSURE) == (1 if stream == "tee" else 0)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file names as bytes")
def test_a_strict_utf8_stderr_and_an_undecodable_state_path_still_show_the_notice(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request("/v1/events").respond_with_json({"ok": True}, status=202)
    state = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"st\xffte"))
    code = textwrap.dedent(
        """
        import io, sys
        sys.stderr = io.TextIOWrapper(sys.stderr.buffer, encoding="utf-8", errors="strict")  # as some hosts rewrap it
        import agentsonar_telemetry as at
        print(at.start_session('0.4.0').wait(10))
        """
    )
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=httpserver.url_for("/v1/events"), AGENTSONAR_STATE_DIR=state)
    assert result.stdout.strip() == "True"
    assert result.stderr.count(DISCLOSURE) == 1 and "\\udcff" in result.stderr


# -- exit: Ctrl-C, and sessions from atexit handlers ---------------------------------------------------


def test_ctrl_c_during_the_exit_wait_prints_nothing_and_counts_one_failed_episode(
    silent_server: object, state_dir: Path
) -> None:
    write_known_state(state_dir)
    # A real SIGINT, sent as the main thread, inside the module's exit wait, is about to block on a
    # lock: a profile hook says when, no clock.
    code = textwrap.dedent(
        """
        import os, signal, sys
        import agentsonar_telemetry as at
        at.start_session("0.4.0")
        sent = []
        def interrupt(frame, event, arg):
            if event != "c_call" or getattr(arg, "__name__", "") != "acquire" or sent:
                return
            while frame is not None and frame.f_code.co_name != "wait_at_exit":
                frame = frame.f_back
            if frame is not None:
                sent.append(1)
                os.kill(os.getpid(), signal.SIGINT)
        sys.setprofile(interrupt)
        """
    )
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=silent_server.url)  # type: ignore[attr-defined]
    assert (result.returncode, result.stderr) == (0, "")
    assert read_state(state_dir)["backoff_seconds"] == HOUR


OUTCOME_WRITTEN_AT_THE_DEADLINE = """
import atexit, json, os, sys, threading
def checked():  # registered before the module's exit wait, so it runs after it
    state = json.load(open(os.path.join(os.environ["AGENTSONAR_STATE_DIR"], "state.json")))
    print(session._delivery.settled, "backoff_seconds" in state, flush=True)
atexit.register(checked)
import agentsonar_telemetry as at
main, main_settled, main_waits_again = threading.main_thread(), [], threading.Event()
record_outcome = at._record_outcome
def slow_record(*args):  # the thread's write of the failure: held until the exit's budget ran out
    if threading.current_thread() is not main:
        main_waits_again.wait(30)
    record_outcome(*args)
at._record_outcome = slow_record
settle = at._Sender.settle.__func__
def settle_then_note(cls, deliveries, delivered):
    settle(cls, deliveries, delivered)
    if threading.current_thread() is main:
        main_settled.append(True)
at._Sender.settle = classmethod(settle_then_note)
def profile(frame, event, arg):  # the main thread waits on a delivery after its own settle
    if event == "c_call" and getattr(arg, "__name__", "") == "acquire" and main_settled:
        main_waits_again.set()
sys.setprofile(profile)
session = at.start_session("0.4.0")  # a refused port: the thread settles it at once, then writes
"""


def test_an_outcome_the_sender_is_writing_when_the_exit_budget_ends_is_written(state_dir: Path) -> None:
    """The thread took the failure to record it; the exit's budget ran out while it wrote (an
    fsync on a busy disk). The exit found nothing left to settle and the interpreter ended,
    cutting the write: no backoff, so the next process sent again, and a lock and a temp file were
    left. Now the exit waits a moment for an outcome being written. Forced with hooks, no clock."""
    write_known_state(state_dir)
    result = run_python(OUTCOME_WRITTEN_AT_THE_DEADLINE, AGENTSONAR_TELEMETRY_URL="http://127.0.0.1:9/v1/events")
    assert (result.returncode, result.stdout, result.stderr) == (0, "True True\n", "")
    assert read_state(state_dir)["backoff_seconds"] == HOUR
    assert sorted(p.name for p in state_dir.iterdir()) == ["state.json"]


def test_a_session_started_by_an_atexit_handler_after_the_exit_wait_is_off(state_dir: Path) -> None:
    write_known_state(state_dir)
    # Registered before the module's own handler, so it runs after it (atexit is last in, first out).
    code = textwrap.dedent(
        """
        import atexit
        def late():
            s = at.start_session("0.4.0")
            print(s.enabled, s.rule, at.status().rule, flush=True)
        atexit.register(late)
        import agentsonar_telemetry as at
        at.start_session("0.4.0")
        """
    )
    result = run_python(code, AGENTSONAR_TELEMETRY_URL="http://127.0.0.1:9/v1/events")
    assert (result.stdout.strip(), result.stderr) == ("False shutdown shutdown", "")


# -- the CLI -----------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file names as bytes")
@pytest.mark.parametrize("command", ["status", "disable", "enable", "reset"])
def test_the_cli_never_prints_a_traceback_for_an_undecodable_path(command: str, tmp_path: Path) -> None:
    state = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"st\xffte"))
    code = f"import sys, agentsonar_telemetry as at; sys.exit(at.main([{command!r}]))"
    result = run_python(code, AGENTSONAR_STATE_DIR=state, PYTHONIOENCODING="utf-8:strict")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "\\udcff" in result.stdout


def test_the_cli_with_an_undecodable_setting_prints_it_escaped(tmp_path: Path) -> None:
    code = "import sys, agentsonar_telemetry as at; sys.exit(at.main(['status']))"
    env_value = os.fsdecode(b"\xffoff")
    result = run_python(code, AGENTSONAR_TELEMETRY=env_value, PYTHONIOENCODING="utf-8:strict")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "AGENTSONAR_TELEMETRY" in result.stdout


# -- a lock left by a process that died holding it ---------------------------------------------------


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_a_lock_left_by_a_killed_process_is_broken_at_once_with_its_temp_file(
    environ: dict[str, str], state_dir: Path
) -> None:
    write_known_state(state_dir)
    # A process takes the lock, starts a write, and is killed in the middle of it (OOM, SIGKILL).
    code = textwrap.dedent(
        """
        import os, signal, agentsonar_telemetry as at
        path = os.path.join(os.environ["AGENTSONAR_STATE_DIR"], "state.json")
        at._StateLock(path).__enter__()
        at._write_temp(os.path.dirname(path), {"half": True})
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    assert run_python(code).returncode == -9
    names = sorted(p.name for p in state_dir.iterdir())
    assert "state.json.lock" in names and any(n.endswith(".tmp") for n in names)
    client, err = make_client(environ)
    session = client.start_session("0.4.0", "custom_python", {"telemetry": False})
    assert session.rule == "config"
    assert read_state(state_dir)["telemetry_disabled"] is True  # persisted now, not 30 s later
    assert sorted(p.name for p in state_dir.iterdir()) == ["state.json"]  # the lock and its temp file gone
    assert err.getvalue() == ""


# A real Ctrl-C (SIGINT, whose handler raises at once in os.kill) landing after the lock file was
# made and before it names its holder: a notebook's interrupt, in a kernel that then lives on.
INTERRUPTED_WHILE_LOCKING = """
import os, signal, sys, agentsonar_telemetry as at

def profile(frame, event, arg):
    if event == "c_call" and arg is os.write and frame.f_code.co_name == "__enter__":
        sys.setprofile(None)
        os.kill(os.getpid(), signal.SIGINT)

sys.setprofile(profile)
try:
    at.disable_persistently()
except KeyboardInterrupt:
    print("interrupted")
sys.setprofile(None)
print(sorted(os.listdir(os.environ["AGENTSONAR_STATE_DIR"])))
print(at.disable_persistently().rule)
"""


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
@pytest.mark.parametrize(
    ("call", "caller"),
    [("close", "__enter__"), ("open", "_write_temp"), ("fchmod", "__enter__"), ("fchmod", "_write_temp")],
    ids=[
        "as the named lock is closed",
        "as the temp file is opened",
        "as the lock file's mode is set",
        "as the temp file's mode is set",
    ],
)
def test_ctrl_c_as_a_file_of_ours_is_made_leaves_nothing_behind(call: str, caller: str, state_dir: Path) -> None:
    """The SIGINT handled as the call returns, where CPython runs handlers. Before: the lock,
    naming this live process, stayed (every later change of the state in it waited 0.25 s and
    failed with "held by another process" for as long as it lived); the temp file stayed."""
    write_known_state(state_dir)
    callers = "(frame.f_code.co_name, frame.f_back.f_code.co_name)"  # or the helper it makes files with
    condition = f'event == "c_return" and arg is os.{call} and "{caller}" in {callers}'
    code = INTERRUPTED_WHILE_LOCKING.replace(
        'event == "c_call" and arg is os.write and frame.f_code.co_name == "__enter__"', condition
    )
    assert code != INTERRUPTED_WHILE_LOCKING
    result = run_python(code, AGENTSONAR_STATE_DIR=str(state_dir))
    assert (result.stdout, result.stderr) == ("interrupted\n['state.json']\ntelemetry_disabled\n", "")


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_ctrl_c_between_taking_the_lock_and_naming_its_holder_leaves_no_lock(state_dir: Path) -> None:
    """The unnamed lock was left behind: judged by its age, every change waited on it, and for
    30 s the same process's next ``disable`` failed with "held by another process"."""
    write_known_state(state_dir)
    result = run_python(INTERRUPTED_WHILE_LOCKING, AGENTSONAR_STATE_DIR=str(state_dir))
    assert (result.stdout, result.stderr) == ("interrupted\n['state.json']\ntelemetry_disabled\n", "")
    assert read_state(state_dir)["telemetry_disabled"] is True


def test_a_lock_whose_holder_lives_is_never_broken(environ: dict[str, str], state_dir: Path) -> None:
    write_known_state(state_dir)
    lock = state_dir / "state.json.lock"
    lock.write_text(f"{os.getpid()} {at._pid_space()} 1.0\n")  # this process: alive
    client, _ = make_client(environ)
    with pytest.raises(TimeoutError):
        client.disable_persistently()  # waited for, then a clear failure, never two holders
    assert lock.exists() and read_state(state_dir)["telemetry_disabled"] is False


IN_A_CONTAINER = """
import agentsonar_telemetry as at
try:
    at.disable_persistently()
    print("disabled")
except TimeoutError:
    print("waited for the holder, then gave up")
"""


@pytest.mark.skipif(sys.platform != "linux" or shutil.which("unshare") is None, reason="Linux pid namespaces")
def test_a_live_lock_is_never_broken_from_another_pid_namespace_of_the_same_host(state_dir: Path) -> None:
    """A container that shares the host's name and home (docker run --network host -v $HOME...)
    numbers processes apart: the holder's pid did not exist in there, so it broke a live lock of
    the host's, and two processes were inside at once. A real pid namespace (unshare)."""
    if subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True, check=False).returncode != 0:
        pytest.skip("not allowed to make a pid namespace here")
    write_known_state(state_dir)
    path = str(state_dir / "state.json")
    with at._StateLock(path):
        holder = Path(path + ".lock").read_text()
        result = subprocess.run(
            ["unshare", "--pid", "--fork", sys.executable, "-c", IN_A_CONTAINER],
            env=subprocess_env(AGENTSONAR_STATE_DIR=str(state_dir)),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert Path(path + ".lock").read_text() == holder
    assert (result.stdout, result.stderr) == ("waited for the holder, then gave up\n", "")
    assert read_state(state_dir)["telemetry_disabled"] is False


@pytest.mark.skipif(os.name == "nt", reason="POSIX process ids")
def test_a_breaker_that_read_the_dead_holder_late_never_breaks_the_lock_of_a_live_one(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race that breaking must survive: B reads the lock of a dead holder and, before it
    breaks it, A breaks it and goes in. B then re-reads inside the one-breaker section, sees a
    live holder and waits; it goes in only after A came out. Forced with a profile hook on B's
    liveness check of the dead pid, then on its first pause; no clock."""
    write_known_state(state_dir)
    path = str(state_dir / "state.json")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: no process has this pid now
    Path(path + ".lock").write_text(f"{dead.pid} {at._pid_space()} 1.0\n")
    monkeypatch.setattr(at, "_LOCK_WAIT_SECONDS", 60.0)  # B's wait for A is not what is tested
    order: list[str] = []
    a_inside, a_may_leave = threading.Event(), threading.Event()

    def change_of(name: str, inside: threading.Event | None = None) -> Callable[[object], None]:
        def change(current: object) -> None:
            order.append(f"{name} in")
            if inside is not None:
                inside.set()
                a_may_leave.wait(60)
            order.append(f"{name} out")

        return change

    a = threading.Thread(target=at._update_state, args=(path, change_of("A", a_inside)))
    kill, sleep = os.kill, time.sleep

    def profile(frame: object, event: str, arg: object) -> None:
        if event != "c_call":
            return
        if arg is kill and not a.is_alive() and not a_may_leave.is_set():  # B about to find the pid dead
            a.start()
            a_inside.wait(60)
        elif arg is sleep and a_inside.is_set() and not a_may_leave.is_set():  # B waits for A
            a_may_leave.set()
            a.join(60)

    sys.setprofile(profile)
    try:
        at._update_state(path, change_of("B"))
    finally:
        sys.setprofile(None)
        a_may_leave.set()
        if a.is_alive():
            a.join(60)
    assert order == ["A in", "A out", "B in", "B out"]
    assert sorted(p.name for p in state_dir.iterdir()) == ["state.json"]  # no lock, no .break left
