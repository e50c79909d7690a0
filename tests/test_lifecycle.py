"""The client under real host lifecycles: forked workers, many sessions in one process, writes that race
an opt-out, Windows, the disclosure of a state an older SDK wrote, TLS failures, directory modes."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import CodeType, FrameType

import pytest
from conftest import RawServer, SilentServer, make_client, read_state, run_python, subprocess_env, write_known_state
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

import agentsonar_telemetry as at

HOUR = 3600.0
DISCLOSURE = "AgentSonar collects anonymous usage telemetry"

# Measures the module's exit wait from inside the process: a handler registered before the
# module's runs after it (atexit is last in, first out), one registered after runs before it.
# Also the waits the module asks for on the main thread meanwhile (a delivery's wait timeouts):
# their sum is the budget it gave itself, a fact about the code, not about the machine's speed.
EXIT_CLOCK = textwrap.dedent(
    """
    import atexit, os, sys, threading, time
    _marks = {}
    _asked = []
    def _exit_end():
        if "start" in _marks:
            sys.stdout.write(f"exit_wait {os.getpid()} {time.monotonic() - _marks['start']:.3f}\\n")
            sys.stdout.write(f"exit_budget {os.getpid()} {sum(t or 0 for t in _asked):.3f}\\n")
            sys.stdout.flush()
    atexit.register(_exit_end)  # before the module registers its exit wait: runs after it
    import agentsonar_telemetry
    _delivery_wait = agentsonar_telemetry._Delivery.wait
    def _counted_wait(self, timeout):
        if "start" in _marks and threading.current_thread() is threading.main_thread() and not self.settled:
            _asked.append(timeout)  # a wait on a settled delivery returns at once: it asks for nothing
        return _delivery_wait(self, timeout)
    agentsonar_telemetry._Delivery.wait = _counted_wait
    def mark_exit_start():
        atexit.register(lambda: _marks.setdefault("start", time.monotonic()))
    """
)


def exit_waits(stdout: str, kind: str = "exit_wait") -> dict[int, float]:
    """Per process: the exit wait as measured (`exit_wait`), or the time it asked to wait (`exit_budget`)."""
    return {
        int(p): float(s)
        for k, p, s in (line.split() for line in stdout.splitlines() if line.startswith("exit_"))
        if k == kind
    }


@pytest.fixture
def known(state_dir: Path) -> dict[str, object]:
    return write_known_state(state_dir)


@pytest.fixture
def release() -> Iterator[socket.socket]:
    """A loopback port the parent connects to once its forked child has exited."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(60)  # the bound on a parent that never says so: the test fails then
    yield server
    server.close()


@pytest.fixture
def slow_collector(httpserver: HTTPServer, release: socket.socket) -> Iterator[HTTPServer]:
    """Answers the parent's event only once the parent says its forked child has exited (it
    connects to `release`): that send is in flight for the child's whole life, whatever the
    machine's speed. The child's own session goes to `child_collector`."""

    def answer(request: Request) -> Response:
        with contextlib.suppress(OSError):
            release.accept()[0].close()
        return Response('{"ok": true}', status=202, content_type="application/json")

    httpserver.expect_request("/v1/events").respond_with_handler(answer)
    yield httpserver
    with contextlib.suppress(OSError):  # a handler still waiting (a failed test) is let go
        socket.create_connection(release.getsockname(), timeout=5).close()


@pytest.fixture
def child_collector() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0)
    server.expect_request("/v1/events").respond_with_json({"ok": True}, status=202)
    server.start()
    yield server
    server.clear()
    server.stop()


# -- 1. forked workers ---------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_neither_waits_for_nor_records_its_parents_send(
    slow_collector: HTTPServer,
    child_collector: HTTPServer,
    release: socket.socket,
    state_dir: Path,
    known: dict[str, object],
) -> None:
    code = EXIT_CLOCK + textwrap.dedent(
        """
        import warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: "multi-threaded, use of fork()"
        import agentsonar_telemetry as at
        parent = at.start_session("0.4.0", "parent")
        pid = os.fork()
        if pid == 0:  # a worker: its own session works, the parent's is not its business
            mark_exit_start()
            os.environ["AGENTSONAR_TELEMETRY_URL"] = sys.argv[1]  # read at call time
            own = at.start_session("0.4.0", "child")
            # Settled in the child before it asks: wait() answers at once, never after its 5 s.
            print("child", parent._delivery.settled, parent.wait(5), own.wait(10), flush=True)
            sys.exit(0)  # a normal exit: atexit handlers run
        _, status = os.waitpid(pid, 0)
        import socket
        socket.create_connection(("127.0.0.1", int(sys.argv[2]))).close()  # the child is gone: answer now
        print("parent", parent.wait(30), os.waitstatus_to_exitcode(status), flush=True)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code, child_collector.url_for("/v1/events"), str(release.getsockname()[1])],
        env=subprocess_env(AGENTSONAR_TELEMETRY_URL=slow_collector.url_for("/v1/events")),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = sorted(line for line in result.stdout.splitlines() if not line.startswith("exit_"))
    assert lines == ["child True False True", "parent True 0"]
    [child_budget] = exit_waits(result.stdout, "exit_budget").values()
    assert child_budget == 0  # nothing of its own was pending: it asked to wait for nothing
    assert "backoff_seconds" not in read_state(state_dir)  # the parent's 202 stands
    adapters = [
        json.loads(request.get_data())["adapter"]
        for server in (slow_collector, child_collector)
        for request, _ in server.log
    ]
    assert adapters == ["parent", "child"]  # each event once: the child did not resend the parent's


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_while_the_sender_holds_its_locks_does_not_hang(
    httpserver: HTTPServer, state_dir: Path, known: dict[str, object]
) -> None:
    httpserver.expect_request("/v1/events").respond_with_json({"ok": True}, status=202)
    code = textwrap.dedent(
        """
        import os, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: "multi-threaded, use of fork()"
        import agentsonar_telemetry as at
        sessions = [at.start_session("0.4.0") for _ in range(30)]
        for _ in range(20):  # fork over and over while the sender imports, then works through its queue
            pid = os.fork()
            if pid == 0:
                os._exit(0 if at.start_session("0.4.0").wait(10) else 3)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
        print(all(s.wait(10) for s in sessions))
        """
    )
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=httpserver.url_for("/v1/events"), timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "True", result.stderr
    assert len(httpserver.log) == 50


# -- 2. many sessions in one process: one failure episode --------------------------------------


def test_twenty_sessions_against_a_silent_collector_are_one_episode(
    silent_server: SilentServer, state_dir: Path, known: dict[str, object]
) -> None:
    code = EXIT_CLOCK + textwrap.dedent(
        """
        import agentsonar_telemetry as at
        sessions = [at.start_session("0.4.0") for _ in range(20)]
        print(sum(s.enabled for s in sessions), flush=True)
        mark_exit_start()
        """
    )
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=silent_server.url)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.splitlines()[0] == "20"
    [asked] = exit_waits(result.stdout, "exit_budget").values()
    assert 0.4 < asked <= at._EXIT_WAIT  # one budget for all twenty, not one each (that would be 10 s)
    state = read_state(state_dir)
    assert state["backoff_seconds"] == HOUR  # one step, not 2**20 hours capped at 7 days
    # The other nineteen stayed off the network (the first may not have connected within the
    # budget on a busy machine).
    assert silent_server.connections() <= 1


def test_processes_failing_in_one_outage_move_the_backoff_one_step(
    silent_server: SilentServer, state_dir: Path, known: dict[str, object]
) -> None:
    """A server's workers (gunicorn's, pytest-xdist's) against a collector that is down: each
    process is an episode of its own, and three of them made the backoff 4 hours, eight of
    them 5 days. A failure while another process's backoff runs is the same outage."""
    code = textwrap.dedent(
        """
        import sys
        import agentsonar_telemetry as at
        print(at.Telemetry(timeout=600).start_session("0.4.0").rule, flush=True)
        sys.stdin.readline()  # exit, and fail at the end of the exit wait
        """
    )
    env = subprocess_env(AGENTSONAR_TELEMETRY_URL=silent_server.url)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    try:
        # Every session is in flight before any process records a failure.
        assert [p.stdout.readline().strip() for p in processes] == ["send"] * 3  # type: ignore[union-attr]
        for p in processes:
            p.stdin.close()  # type: ignore[union-attr]
        assert [p.wait(30) for p in processes] == [0] * 3
    finally:
        for p in processes:
            p.kill()
            p.wait()
            p.stdout.close()  # type: ignore[union-attr]
    assert read_state(state_dir)["backoff_seconds"] == HOUR


def test_two_hundred_pending_sessions_share_one_exit_budget(
    silent_server: SilentServer, state_dir: Path, known: dict[str, object]
) -> None:
    code = EXIT_CLOCK + textwrap.dedent(
        """
        import agentsonar_telemetry as at
        for _ in range(200):
            at.start_session("0.4.0")
        mark_exit_start()
        """
    )
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=silent_server.url)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    [asked] = exit_waits(result.stdout, "exit_budget").values()
    assert 0.4 < asked <= at._EXIT_WAIT  # one budget for two hundred
    assert read_state(state_dir)["backoff_seconds"] == HOUR


def test_a_failed_episode_in_a_running_process_settles_the_queue_without_the_network(
    silent_server: SilentServer, environ: dict[str, str], state_dir: Path, known: dict[str, object]
) -> None:
    environ["AGENTSONAR_TELEMETRY_URL"] = silent_server.url
    client, err = make_client(environ, timeout=0.3)
    sessions = [client.start_session("0.4.0") for _ in range(10)]
    assert all(s.enabled for s in sessions)
    assert [s.wait(10) for s in sessions] == [False] * 10
    assert read_state(state_dir)["backoff_seconds"] == HOUR
    assert silent_server.connections() == 2  # the first event and its one retry; nine never left
    assert client.start_session("0.4.0").rule == "backoff" and err.getvalue() == ""


def test_after_the_backoff_a_running_process_sends_again(
    httpserver: HTTPServer, environ: dict[str, str], state_dir: Path, known: dict[str, object]
) -> None:
    now = [1_800_000_000.0]
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    environ["AGENTSONAR_TELEMETRY_URL"] = f"http://127.0.0.1:{refused.getsockname()[1]}/v1/events"
    refused.close()
    client, _ = make_client(environ, clock=lambda: now[0])
    assert not client.start_session("0.4.0").wait(10)
    assert read_state(state_dir)["backoff_seconds"] == HOUR
    now[0] += HOUR + 1
    httpserver.expect_request("/v1/events").respond_with_json({"ok": True}, status=202)
    environ["AGENTSONAR_TELEMETRY_URL"] = httpserver.url_for("/v1/events")
    assert client.start_session("0.4.0").wait(10)  # a new episode: the process is not silenced for good
    assert "backoff_seconds" not in read_state(state_dir)


# -- 3. writes that race an opt-out: forced interleavings ----------------------------------


def run_once_at(
    function: Callable[..., object],
    action: Callable[[], None],
    *,
    after: bool = False,
    caller: CodeType | None = None,
) -> Callable[[FrameType, str, object], None]:
    """A profile hook that runs *action* once, when this thread calls (or returns from) *function*
    (from *caller*'s code, when given)."""
    fired: list[bool] = []
    wanted = "c_return" if after else "c_call"

    def hook(frame: FrameType, event: str, arg: object) -> None:
        if event == wanted and arg is function and not fired and (caller is None or frame.f_code is caller):
            fired.append(True)
            action()

    hook.fired = fired  # type: ignore[attr-defined]
    return hook


def in_another_thread(work: Callable[[], object], results: list[object]) -> Callable[[], None]:
    """Start *work* beside the hooked thread and let it run until it has finished, or sleeps in
    the wait for the state lock that the hooked thread holds (seen by a profile hook of its own,
    not by its frames: a thread taking a free lock is in the same frame, and must not count)."""
    import agentsonar_telemetry as at

    waiting = at._StateLock.__enter__.__code__

    def action() -> None:
        stopped = threading.Event()  # finished, or waiting for the lock

        def sleeps_waiting(frame: FrameType, event: str, arg: object) -> None:
            if event == "c_call" and arg is time.sleep and frame.f_code is waiting:
                stopped.set()

        def target() -> None:
            sys.setprofile(sleeps_waiting)  # type: ignore[arg-type]
            try:
                results.append(work())
            except Exception as exc:  # noqa: BLE001 - recorded for the assertion
                results.append(exc)
            finally:
                sys.setprofile(None)
                stopped.set()

        thread = threading.Thread(target=target)
        results.append(thread)  # results[0]; what *work* returned or raised follows it
        thread.start()
        stopped.wait(30)  # a safety net: either comes at once

    return action


@pytest.fixture
def profiled_threads() -> Iterator[None]:
    yield
    threading.setprofile(None)  # type: ignore[arg-type]
    sys.setprofile(None)


def test_a_disable_between_a_sends_read_and_write_is_kept(state_dir: Path, known: dict[str, object]) -> None:
    # A fresh process, so that its sender thread starts with the profile hook in place.
    code = textwrap.dedent(
        """
        import _thread, os, sys
        import agentsonar_telemetry as at
        from test_lifecycle import in_another_thread, run_once_at
        results = []
        # The sender reads the state, then replaces it with the backoff: disable lands just before the replace.
        hook = run_once_at(os.replace, in_another_thread(at.disable_persistently, results))
        start_new_thread = _thread.start_new_thread
        def profiled(function, args):  # the sender is a _thread thread: give it the hook itself
            def run():
                sys.setprofile(hook)
                function(*args)
            return start_new_thread(run, ())
        _thread.start_new_thread = profiled
        session = at.start_session("0.4.0")
        delivered = session.wait(10)
        results[0].join(5)
        print(delivered, bool(hook.fired), type(results[1]).__name__)
        """
    )
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{refused.getsockname()[1]}/v1/events"
    refused.close()
    env = subprocess_env(AGENTSONAR_TELEMETRY_URL=url)
    env["PYTHONPATH"] += os.pathsep + str(Path(__file__).parent)
    result = run_python(code, env=env)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.split()[:3] == ["False", "True", "Status"], result.stdout
    state = read_state(state_dir)
    assert state["telemetry_disabled"] is True  # the opt-out survived the outcome's write
    assert state["backoff_seconds"] == HOUR  # and so did the outcome


@pytest.mark.parametrize("step", [os.unlink, os.replace, os.link], ids=["unlink", "replace", "link"])
def test_no_session_sees_the_opt_out_gone_during_reset(
    environ: dict[str, str], state_dir: Path, known: dict[str, object], profiled_threads: None, step: object
) -> None:
    client, err = make_client({**environ, "AGENTSONAR_TELEMETRY": "debug"})
    client.disable_persistently()
    sessions: list[at.Session] = []

    def session_now() -> None:
        sys.setprofile(None)
        sessions.append(client.start_session("0.4.0"))

    sys.setprofile(run_once_at(step, session_now, after=True))  # type: ignore[arg-type]
    client.reset()
    sys.setprofile(None)
    sessions.append(client.start_session("0.4.0"))
    assert [s.rule for s in sessions] == ["telemetry_disabled"] * len(sessions)
    assert read_state(state_dir) == {"schema_version": 1, "telemetry_disabled": True}
    assert DISCLOSURE not in err.getvalue()


def test_a_disable_racing_the_install_id_claim_leaves_no_install_id(
    environ: dict[str, str], state_dir: Path, profiled_threads: None
) -> None:
    client, err = make_client(environ)
    client.disable_persistently()
    client.enable_persistently()  # a state with no install id: the next session claims one, under the lock
    results: list[object] = []
    # Disable lands just before the session takes the lock to claim an install id.
    disable = in_another_thread(make_client(environ)[0].disable_persistently, results)
    hook = run_once_at(os.open, disable, caller=at._create_file.__code__)  # the lock file's: the first it makes
    sys.setprofile(hook)  # type: ignore[arg-type]
    session = client.start_session("0.4.0")
    sys.setprofile(None)
    assert hook.fired  # type: ignore[attr-defined]
    results[0].join(5)  # type: ignore[union-attr]
    assert isinstance(results[1], at.Status), results
    assert (session.enabled, session.rule) == (False, "telemetry_disabled")
    assert read_state(state_dir) == {"schema_version": 1, "telemetry_disabled": True}  # never an install id
    assert err.getvalue() == ""


def test_a_live_lock_is_waited_for(environ: dict[str, str], state_dir: Path, known: dict[str, object]) -> None:
    lock = state_dir / "state.json.lock"
    lock.write_text("")
    # The holder lets go the moment the command pauses for it (its first sleep), not after a guess.
    hook = run_once_at(time.sleep, lock.unlink)
    sys.setprofile(hook)
    try:
        status = make_client(environ)[0].disable_persistently()
    finally:
        sys.setprofile(None)
    assert status.rule == "telemetry_disabled" and not lock.exists()
    assert hook.fired == [True]  # type: ignore[attr-defined]  # it waited, then went in


# -- 4. Windows -------------------------------------------------------------------------


def test_windows_arch_comes_from_the_environment_and_platform_is_never_imported(state_dir: Path) -> None:
    code = textwrap.dedent(
        """
        import json, sys
        sys.platform = "win32"  # a simulated Windows: what the module sees at call time
        import agentsonar_telemetry as at
        s = at.start_session("0.4.0")
        print(json.dumps([s.event["os"], s.event["arch"], "platform" in sys.modules]))
        """
    )
    # x86 Python emulated on ARM64 Windows: PROCESSOR_ARCHITECTURE says x86, W6432 the machine.
    result = run_python(
        code, AGENTSONAR_TELEMETRY="debug", PROCESSOR_ARCHITECTURE="x86", PROCESSOR_ARCHITEW6432="ARM64"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["win32", "arm64", False]


# -- 5. disclosure of an older state, TLS failures, directory modes ---------------------------------------


@pytest.mark.parametrize(
    "state",
    [
        {"install_id": "8a4f3b29-1c2d-4e5f-9a6b-7c8d9e0f1a2b", "disclosure_shown": False},
        {"install_id": "8a4f3b29-1c2d-4e5f-9a6b-7c8d9e0f1a2b"},  # what an older SDK left before it disclosed
        {"schema_version": 1, "telemetry_disabled": False},  # disable, then enable
    ],
    ids=["false", "absent", "after_enable"],
)
def test_a_state_without_the_disclosure_shown_gets_it_once(
    environ: dict[str, str], state_dir: Path, state: dict[str, object]
) -> None:
    at._write_state(str(state_dir / "state.json"), state)
    client, err = make_client({**environ, "AGENTSONAR_TELEMETRY": "debug"})
    first = client.start_session("0.4.0")
    client.start_session("0.4.0")
    assert err.getvalue().count(DISCLOSURE) == 1
    saved = read_state(state_dir)
    assert saved["disclosure_shown"] is True and saved["install_id"] == first.event["install_id"]  # type: ignore[index]
    if "install_id" in state:
        assert saved["install_id"] == state["install_id"]


def test_many_processes_on_a_state_without_the_disclosure_show_it_once(state_dir: Path) -> None:
    import subprocess

    install_id = at._new_uuid4()
    at._write_state(str(state_dir / "state.json"), {"install_id": install_id, "disclosure_shown": False})
    code = textwrap.dedent(
        """
        import sys, time
        while time.time() < float(sys.argv[1]):
            pass
        import agentsonar_telemetry as at
        at.start_session("1")
        """
    )
    start = time.time() + 1.5
    env = subprocess_env(AGENTSONAR_TELEMETRY="debug")
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(start)], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert sum(e.count(DISCLOSURE) for e in errors) == 1, errors
    assert read_state(state_dir)["install_id"] == install_id


def test_no_retry_after_a_tls_verification_failure(
    environ: dict[str, str], state_dir: Path, known: dict[str, object]
) -> None:
    import trustme

    untrusted = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(untrusted)  # a CA no client trusts
    server = RawServer(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", tls=untrusted)
    try:
        environ["AGENTSONAR_TELEMETRY_URL"] = server.url
        client, err = make_client(environ)
        assert not client.start_session("0.4.0").wait(10)  # settled: after any retry there would be
    finally:
        server.close()
    assert server.connections == 1 and err.getvalue() == ""
    assert read_state(state_dir)["backoff_seconds"] == HOUR  # still a failure: it backs off


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_directories_the_module_creates_are_0700_others_keep_their_mode(tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    state_dir = existing / "a" / "b" / "state"
    old = os.umask(0o022)
    try:
        make_client({"AGENTSONAR_STATE_DIR": str(state_dir)})[0].disable_persistently()
    finally:
        os.umask(old)
    modes = {
        p.name: stat.S_IMODE(p.stat().st_mode) for p in (existing, state_dir.parent.parent, state_dir.parent, state_dir)
    }
    assert modes == {"existing": 0o755, "a": 0o700, "b": 0o700, "state": 0o700}
    assert stat.S_IMODE((state_dir / "state.json").stat().st_mode) == 0o600


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
@pytest.mark.parametrize("use_links", [True, False], ids=["linked into place", "under the lock file"])
def test_files_the_module_writes_are_0600_whatever_the_hosts_umask(tmp_path: Path, use_links: bool) -> None:
    """A host with umask 0o777 (a daemon making a private socket) gave the state file mode 0: every
    later session, under any umask, was state_error (unreadable) until a reset; a lock file of mode 0
    names its holder to nobody, so a dead holder's lock could never be broken."""
    state_dir = tmp_path / "state"
    environ = {"AGENTSONAR_STATE_DIR": str(state_dir), "AGENTSONAR_TELEMETRY": "debug"}
    modes = {}
    old = os.umask(0o777)
    try:
        assert make_client(environ, use_links=use_links)[0].start_session("0.4.0").rule == "debug"
        modes["created"] = stat.S_IMODE((state_dir / "state.json").stat().st_mode)
        make_client(environ)[0].disable_persistently()  # a rewrite: temp file and os.replace
        modes["rewritten"] = stat.S_IMODE((state_dir / "state.json").stat().st_mode)
        with at._StateLock(str(state_dir / "state.json")):
            modes["lock"] = stat.S_IMODE((state_dir / "state.json.lock").stat().st_mode)
    finally:
        os.umask(old)
    assert modes == {"created": 0o600, "rewritten": 0o600, "lock": 0o600}
    assert sorted(p.name for p in state_dir.iterdir()) == ["state.json"]
