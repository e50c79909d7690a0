"""The sender inside any host: a thread only while it has work, hooks made at import, a hand-off
a signal handler may re-enter, no thread in a subinterpreter, forks from two threads at once.
Real subinterpreters, forks and signals in fresh interpreters; each failed before the rework."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import SilentServer, read_state, run_python, write_known_state
from pytest_httpserver import HTTPServer

HOUR = 3600.0


@pytest.fixture
def collector(httpserver: HTTPServer) -> str:
    httpserver.expect_request("/v1/events").respond_with_json({"ok": True}, status=202)
    return str(httpserver.url_for("/v1/events"))


def test_a_legacy_subinterpreter_session_is_off_and_the_interpreter_ends_cleanly(
    collector: str, state_dir: Path
) -> None:
    write_known_state(state_dir)
    code = textwrap.dedent(
        """
        import _testcapi
        sub = (
            "import agentsonar_telemetry as at\\n"
            "s = at.start_session('0.4.0')\\n"
            "print('sub', s.enabled, s.rule, at.status().rule, flush=True)"
        )
        print("ran", _testcapi.run_in_subinterp(sub), flush=True)
        import agentsonar_telemetry as at
        print("main", at.start_session("0.4.0").wait(10), flush=True)
        """
    )
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=collector)
    # Before: "Fatal Python error: Py_EndInterpreter: not the last thread", exit 134.
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.split("\n")[:3] == ["sub False interpreter interpreter", "ran 0", "main True"]


def test_in_a_subinterpreter_the_opt_outs_answer_first_as_status_says(state_dir: Path) -> None:
    write_known_state(state_dir, telemetry_disabled=True)
    sub = "import agentsonar_telemetry as at\nprint(at.start_session('0.4.0').rule, at.status().rule, at.is_disabled())"
    result = run_python(f"import _testcapi; _testcapi.run_in_subinterp({sub!r})")
    # Before: the session said `interpreter` while status() and is_disabled() said the opt-out.
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "telemetry_disabled telemetry_disabled True\n")


@pytest.mark.skipif(sys.version_info < (3, 12), reason="isolated subinterpreters are 3.12+")
def test_an_isolated_subinterpreter_session_is_off_and_records_no_backoff(collector: str, state_dir: Path) -> None:
    write_known_state(state_dir)
    code = textwrap.dedent(
        """
        sub = "import agentsonar_telemetry as at\\nprint(at.start_session('0.4.0').rule, at.status().rule, flush=True)"
        try:
            import _interpreters as interpreters  # 3.13
            one = interpreters.create()
            interpreters.exec(one, sub)
        except ImportError:
            import _xxsubinterpreters as interpreters  # 3.12
            one = interpreters.create(isolated=True)
            interpreters.run_string(one, sub)
        interpreters.destroy(one)
        """
    )
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=collector)
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "interpreter interpreter\n"), result.stderr
    assert "backoff_seconds" not in read_state(state_dir)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_no_thread_of_ours_is_left_once_delivered_so_a_later_fork_warns_nothing(
    collector: str, state_dir: Path
) -> None:
    write_known_state(state_dir)
    code = textwrap.dedent(
        """
        import _thread, os, threading, warnings
        warnings.simplefilter("error")  # 3.12+: forking a multi-threaded process warns
        import agentsonar_telemetry as at
        print(at.start_session("0.4.0").wait(10), flush=True)
        for _ in range(30000):  # the thread ends once its queue is empty; wait for that, 30 s at most
            if _thread._count() == 0:
                break
            threading.Event().wait(0.001)
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), _thread._count(), flush=True)
        """
    )
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=collector, timeout=60)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.split() == ["True", "0", "0"]


def test_the_hooks_are_made_at_import_once_however_many_threads_start_first_sessions(
    collector: str, state_dir: Path
) -> None:
    write_known_state(state_dir)
    code = textwrap.dedent(
        """
        import atexit, os, threading
        calls = {"fork": 0, "atexit": 0}
        register_at_fork, register = os.register_at_fork, atexit.register
        def ours(function):  # other modules (random, threading) register hooks of their own
            return getattr(function, "__qualname__", "").startswith("_Sender.")
        def count_fork(**hooks):
            calls["fork"] += ours(hooks.get("before"))
            return register_at_fork(**hooks)
        def count_exit(function, *args, **kwargs):
            calls["atexit"] += ours(function)
            return register(function, *args, **kwargs)
        os.register_at_fork, atexit.register = count_fork, count_exit
        import agentsonar_telemetry as at
        at_import = dict(calls)
        start = threading.Barrier(16)
        sessions = []
        def first_session():
            start.wait()
            sessions.append(at.start_session("0.4.0"))
        threads = [threading.Thread(target=first_session) for _ in range(16)]
        for t in threads: t.start()
        for t in threads: t.join()
        print(at_import, calls, all(s.wait(10) for s in sessions), flush=True)
        """
    )
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=collector)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    hooks = "{'fork': 1, 'atexit': 1}"
    assert result.stdout.strip() == f"{hooks} {hooks} True"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_waits_while_the_sender_is_inside_the_fork_guard() -> None:
    """The fork guard, pinned: while the sender imports or builds a TLS context (here: a thread
    holding the guard), os.fork() waits until it is out. The fork goes ahead only once the forking
    thread has been seen waiting in the module's before-fork hook and the guard is released; with
    no guard it happens at once, while the guard is still held. No clock: a profile hook says when
    the hook is about to wait."""
    code = textwrap.dedent(
        """
        import os, sys, threading, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: "multi-threaded, use of fork()"
        import agentsonar_telemetry as at
        at._FORK_WAIT = 600  # the bound on a sender that never comes out: not what is tested here
        holding, release, order = threading.Event(), threading.Event(), []
        def sender_inside_the_guard():
            with at._Sender.fork_guard:
                holding.set()
                release.wait()
        waiting_or_forked = threading.Event()
        hook = at._Sender.before_fork.__func__.__code__
        def profile(frame, event, arg):  # the module's before-fork hook is about to wait for the guard
            if event == "c_call" and frame.f_code is hook and getattr(arg, "__name__", "") == "acquire":
                waiting_or_forked.set()
        def fork():
            sys.setprofile(profile)
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            sys.setprofile(None)
            order.append("forked")
            waiting_or_forked.set()
            os.waitpid(pid, 0)
        holder = threading.Thread(target=sender_inside_the_guard)
        holder.start()
        holding.wait()
        forker = threading.Thread(target=fork)
        forker.start()
        waiting_or_forked.wait()
        order.append("released")
        release.set()
        for thread in (holder, forker):
            thread.join()
        print(order, at._Sender.fork_guard.locked(), flush=True)
        """
    )
    result = run_python(code, timeout=60)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.strip() == "['released', 'forked'] False"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_two_threads_forking_at_once_leave_the_fork_guard_free(collector: str, state_dir: Path) -> None:
    write_known_state(state_dir)
    code = textwrap.dedent(
        """
        import os, threading, warnings
        warnings.simplefilter("ignore", DeprecationWarning)
        import agentsonar_telemetry as at
        start = threading.Barrier(2)
        def fork_once():
            start.wait()
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
        threads = [threading.Thread(target=fork_once) for _ in range(2)]
        for t in threads: t.start()
        for t in threads: t.join()
        free = at._Sender.fork_guard.acquire(False)  # nobody holds it once both forks are done
        if free:
            at._Sender.fork_guard.release()
        print(free, at.start_session("0.4.0").wait(10), flush=True)
        """
    )
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=collector)
    assert (result.returncode, result.stderr, result.stdout.strip()) == (0, "", "True True"), result.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_ctrl_c_during_fork_reaches_the_host_and_leaves_the_fork_guard_free(collector: str, state_dir: Path) -> None:
    """A SIGINT that comes while the kernel forks (Ctrl-C as a Pool starts) is handled at the first
    Python code after fork(): here made pending by a hook in C, registered before the module's, as
    the real one would be. Before: that code was the module's after-fork hook, so CPython printed
    "Exception ignored in: ...after_fork_in_parent", the host never saw its KeyboardInterrupt, and
    the guard stayed held (every later fork waited 2 s, the sender waited for it for ever)."""
    write_known_state(state_dir)
    code = textwrap.dedent(
        """
        import ctypes, functools, os, signal, warnings
        warnings.simplefilter("ignore", DeprecationWarning)
        os.register_at_fork(after_in_parent=functools.partial(ctypes.CDLL(None).kill, os.getpid(), signal.SIGINT))
        import agentsonar_telemetry as at
        interrupted = False
        try:
            if os.fork() == 0:
                os._exit(0)
        except KeyboardInterrupt:
            interrupted = True
        os.waitpid(-1, 0)
        free = at._Sender.fork_guard.acquire(False)
        if free:
            at._Sender.fork_guard.release()
        print(interrupted, free, at.start_session("0.4.0").wait(10), flush=True)
        """
    )
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=collector)
    assert (result.returncode, result.stderr, result.stdout.strip()) == (0, "", "True True True"), result.stderr


SIGNAL_WHILE_A_FORK_WAITS = textwrap.dedent(
    """
    import dis, os, signal, sys, threading, warnings
    warnings.simplefilter("ignore", DeprecationWarning)
    import agentsonar_telemetry as at
    handled = []
    if sys.argv[1] == "SIGTERM":  # a server's, one for both: log, then exit with the signal's status
        def on_signal(signum, frame):
            handled.append(signum)
            sys.exit(128 + signum)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
    signum = getattr(signal, sys.argv[1])
    hook = at._Sender.before_fork.__func__.__code__
    wait_at = min(i.offset for i in dis.get_instructions(hook) if i.opname.startswith("CALL"))
    main = threading.main_thread().ident
    def signal_once_the_fork_waits():
        while True:
            frame = sys._current_frames().get(main)
            if frame is not None and frame.f_code is hook and frame.f_lasti >= wait_at:
                break
        signal.pthread_kill(main, signum)  # to the thread that waits: only its wait is cut short
    at._Sender.fork_guard.acquire()  # the sender, inside the guard
    threading.Thread(target=signal_once_the_fork_waits).start()
    outcome = "nothing raised"
    try:
        if os.fork() == 0:
            os._exit(0)
        outcome = "raised after fork"
    except KeyboardInterrupt:
        outcome = "KeyboardInterrupt at fork"
    except SystemExit as exc:
        outcome = f"SystemExit({exc.code}) at fork"
    child, status = os.waitpid(-1, 0)  # the fork did happen, and its child exited
    free = at._Sender.fork_guard.acquire(False)
    if free:
        at._Sender.fork_guard.release()
    pid = os.fork()  # a later fork: nothing owed, nothing raised
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    print(outcome, status, handled, free, at.start_session("0.4.0").wait(10), flush=True)
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize(
    ("signal_name", "outcome"),
    [("SIGINT", "KeyboardInterrupt at fork 0 []"), ("SIGTERM", "SystemExit(143) at fork 0 [15, 15]")],
)
def test_a_signal_while_a_fork_waits_for_the_sender_reaches_the_host(
    collector: str, state_dir: Path, signal_name: str, outcome: str
) -> None:
    """Ctrl-C (Python's own handler), or SIGTERM to a host whose one handler for SIGINT and
    SIGTERM exits with the signal's status, while os.fork() waits in the module's hook for the
    sender to leave the fork guard. Before: CPython printed "Exception ignored in: ...before_fork"
    with a traceback through this module, and the host never saw its KeyboardInterrupt or
    SystemExit (the fork went on; a server told to stop went on too). Now the fork goes ahead and
    the host's code gets the exception as fork() returns, from the handler run again (so a Python
    handler runs twice) for the signal that came (SIGTERM, not the lower-numbered SIGINT its
    handler also serves); a later fork is not interrupted, and the guard is free. No clock: the
    signal is sent once the main thread is seen at the hook's wait (its frame at the call of
    acquire). Its outcome is the same wherever it lands: one that comes just before the wait
    blocks is handled as the wait ends, 2 s later, still inside the hook."""
    write_known_state(state_dir)
    code = f"import sys; sys.argv[1:] = [{signal_name!r}]\n" + SIGNAL_WHILE_A_FORK_WAITS
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=collector)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.strip() == f"{outcome} True True"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_that_gives_up_waiting_for_the_sender_leaves_it_sending(collector: str, state_dir: Path) -> None:
    """A fork that waited in vain (here at once: no wait at all) goes ahead and frees the guard
    the sender still holds; the sender, once out, goes on and delivers at its first attempt.
    urllib's build_opener, which the sender calls inside the guard, waits there until the fork is
    done: events, no clock. (Not an import hook: importlib holds the import lock there, and fork()
    waits for that.)"""
    write_known_state(state_dir)
    code = textwrap.dedent(
        """
        import os, threading, urllib.request, warnings
        warnings.simplefilter("ignore", DeprecationWarning)
        import agentsonar_telemetry as at
        at._FORK_WAIT = 0
        inside, proceed, calls = threading.Event(), threading.Event(), []
        build_opener = urllib.request.build_opener
        def build_opener_once_the_fork_is_done(*handlers):
            calls.append(1)
            inside.set()
            proceed.wait()
            return build_opener(*handlers)
        urllib.request.build_opener = build_opener_once_the_fork_is_done
        session = at.start_session("0.4.0")
        inside.wait()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        held_after_fork = at._Sender.fork_guard.locked()
        proceed.set()
        print(held_after_fork, session.wait(10), len(calls), flush=True)
        """
    )
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=collector)
    # One attempt: the guard the fork freed is no error when the sender leaves it (else a retry).
    assert (result.returncode, result.stderr, result.stdout.strip()) == (0, "", "False True 1"), result.stderr


def test_settling_many_pending_sends_is_linear_and_never_makes_the_host_wait(
    silent_server: SilentServer, state_dir: Path
) -> None:
    """Counted, not timed: settling 3,000 pending sends compares no two of them (the old list
    membership made that quadratic: 2.35 s of exit at 10,000), records one backoff step, and a
    session started while the sender holds its lock does not wait for it."""
    write_known_state(state_dir)
    code = textwrap.dedent(
        """
        import threading
        import agentsonar_telemetry as at
        compared = []
        at._Delivery.__eq__ = lambda self, other: compared.append(1) or self is other
        sessions = [at.start_session("0.4.0") for _ in range(3000)]  # the first is stuck: silent
        held, release = threading.Event(), threading.Event()
        def sender_bookkeeping():
            with at._Sender.lock:
                held.set()
                release.wait()
        busy = threading.Thread(target=sender_bookkeeping)
        busy.start()
        held.wait()
        during = at.start_session("0.4.0")  # a lock the host waited for would hang the process here
        release.set()
        busy.join()
        at._Sender.wait_at_exit(0)  # no budget: everything pending is settled as one failure
        print(during.rule, all(s.wait(0) is False for s in sessions), len(compared), flush=True)
        """
    )
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=silent_server.url, timeout=60)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout.split() == ["send", "True", "0"]
    assert read_state(state_dir)["backoff_seconds"] == 3600.0  # one episode, one step


@pytest.mark.skipif(not hasattr(__import__("signal"), "setitimer"), reason="POSIX interval timers")
def test_sessions_from_a_1_khz_signal_handler_never_deadlock(silent_server: SilentServer, state_dir: Path) -> None:
    write_known_state(state_dir)
    # Every handler call lands somewhere inside the host's own start_session calls, sooner or later
    # inside the hand-off itself. A deadlock would hang the child: its timeout fails the test.
    code = textwrap.dedent(
        """
        import signal
        import agentsonar_telemetry as at
        from_handler = []
        signal.signal(signal.SIGALRM, lambda *_: from_handler.append(at.start_session("0.4.0")))
        signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
        host = [at.start_session("0.4.0") for _ in range(3000)]
        signal.setitimer(signal.ITIMER_REAL, 0)
        print(sum(s.enabled for s in host) == len(host), len(from_handler) > 0, flush=True)
        """
    )
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=silent_server.url, timeout=120)
    assert (result.returncode, result.stderr, result.stdout.strip()) == (0, "", "True True"), result.stderr
    assert read_state(state_dir)["backoff_seconds"] == HOUR  # thousands pending: one failed episode
