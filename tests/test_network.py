"""Sending: real HTTP on loopback (pytest-httpserver and raw sockets), no mocked urllib.

Time bounds here are generous and only tell "bounded" from "hung"; the cost
figures live in bench/client.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import textwrap
import threading
import time
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
    write_known_state,
)
from pytest_httpserver import HTTPServer
from test_lifecycle import EXIT_CLOCK, exit_waits
from werkzeug import Request, Response

import agentsonar_telemetry as at

HOUR = 3600.0


@pytest.fixture
def known(state_dir: Path) -> dict[str, object]:
    return write_known_state(state_dir)


def events_of(server: HTTPServer) -> list[dict[str, object]]:
    return [json.loads(request.get_data()) for request, _ in server.log]


def send(environ: dict[str, str], url: str, **kwargs: object) -> tuple[at.Session, bool, float, str]:
    environ["AGENTSONAR_TELEMETRY_URL"] = url
    client, err = make_client(environ, **kwargs)
    began = time.monotonic()
    session = client.start_session("0.4.0", "langgraph")
    delivered = session.wait(15)
    return session, delivered, time.monotonic() - began, err.getvalue()


def test_success(httpserver: HTTPServer, environ: dict[str, str], state_dir: Path, known: dict[str, object]) -> None:
    httpserver.expect_request("/v1/events", method="POST").respond_with_json({"ok": True}, status=202)
    session, delivered, _, err = send(environ, httpserver.url_for("/v1/events"))
    assert session.enabled and delivered and err == ""
    [(request, _)] = httpserver.log
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"agentsonar-telemetry/{at.__version__}"
    assert "python" not in request.headers["User-Agent"].lower()
    assert json.loads(request.get_data()) == session.event
    assert tuple(json.loads(request.get_data())) == at._EVENT_FIELDS
    assert session.event["install_id"] == known["install_id"]  # type: ignore[index]
    assert read_state(state_dir) == known  # success with no backoff writes nothing


def test_refused_port_is_silent_bounded_and_backs_off(
    environ: dict[str, str], state_dir: Path, known: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agentsonar.telemetry")
    session, delivered, _, err = send(environ, f"http://127.0.0.1:{free_port()}/v1/events")
    assert session.enabled and not delivered and err == ""
    state = read_state(state_dir)
    assert state["backoff_seconds"] == HOUR and state["install_id"] == known["install_id"]
    assert any("failed" in r.getMessage() for r in caplog.records if r.name == "agentsonar.telemetry")


def test_never_answering_collector_is_bounded(
    silent_server: SilentServer, environ: dict[str, str], state_dir: Path, known: dict[str, object]
) -> None:
    _, delivered, _, err = send(environ, silent_server.url, timeout=0.3)
    assert not delivered and err == ""
    assert silent_server.connections() == 2  # the first attempt and exactly one retry
    assert read_state(state_dir)["backoff_seconds"] == HOUR


def test_slow_collector_within_timeout(
    httpserver: HTTPServer, environ: dict[str, str], known: dict[str, object]
) -> None:
    def slow(request: Request) -> Response:
        time.sleep(0.5)
        return Response('{"ok": true}', status=202, content_type="application/json")

    httpserver.expect_request("/v1/events").respond_with_handler(slow)
    # A 30 s socket timeout: the 0.5 s answer is within it on any machine.
    _, delivered, _, err = send(environ, httpserver.url_for("/v1/events"), timeout=30)
    assert delivered and err == "" and len(httpserver.log) == 1


@pytest.mark.parametrize("first", [500, 502, 503, 429])
def test_retry_once_on_5xx_and_429_with_same_body(
    httpserver: HTTPServer, environ: dict[str, str], state_dir: Path, known: dict[str, object], first: int
) -> None:
    write_known_state(state_dir, install_id=known["install_id"], backoff_seconds=2 * HOUR, backoff_until=1.0)
    httpserver.expect_oneshot_request("/v1/events").respond_with_data("busy", status=first)
    httpserver.expect_request("/v1/events").respond_with_json({"ok": True}, status=202)
    session, delivered, _, err = send(environ, httpserver.url_for("/v1/events"))
    assert delivered and err == ""
    bodies = [request.get_data() for request, _ in httpserver.log]
    assert len(bodies) == 2 and bodies[0] == bodies[1]
    assert json.loads(bodies[0])["session_id"] == session.session_id
    state = read_state(state_dir)
    assert "backoff_until" not in state and "backoff_seconds" not in state  # success clears it


def test_two_failures_give_up(
    httpserver: HTTPServer, environ: dict[str, str], state_dir: Path, known: dict[str, object]
) -> None:
    arrivals: list[float] = []

    def down(request: Request) -> Response:
        arrivals.append(time.monotonic())
        return Response("down", status=503)

    httpserver.expect_request("/v1/events").respond_with_handler(down)
    _, delivered, _, _ = send(environ, httpserver.url_for("/v1/events"))
    assert not delivered and len(httpserver.log) == 2
    assert arrivals[1] - arrivals[0] >= 0.09  # the retry waits RETRY_DELAY (0.1 s) first
    assert read_state(state_dir)["backoff_seconds"] == HOUR


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 415, 418])
def test_no_retry_on_other_4xx(
    httpserver: HTTPServer, environ: dict[str, str], state_dir: Path, known: dict[str, object], status: int
) -> None:
    httpserver.expect_request("/v1/events").respond_with_json({"ok": False}, status=status)
    _, delivered, _, err = send(environ, httpserver.url_for("/v1/events"))
    assert not delivered and len(httpserver.log) == 1 and err == ""
    assert read_state(state_dir)["backoff_seconds"] == HOUR


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed(
    httpserver: HTTPServer, environ: dict[str, str], known: dict[str, object], status: int
) -> None:
    httpserver.expect_request("/v1/events").respond_with_data("", status=status, headers={"Location": "/elsewhere"})
    httpserver.expect_request("/elsewhere").respond_with_json({"ok": True}, status=202)
    _, delivered, _, _ = send(environ, httpserver.url_for("/v1/events"))
    assert not delivered
    assert [request.path for request, _ in httpserver.log] == ["/v1/events"]


def test_2xx_with_odd_body_counts_as_delivered(
    httpserver: HTTPServer, environ: dict[str, str], known: dict[str, object]
) -> None:
    httpserver.expect_request("/v1/events").respond_with_data(b"\xff\x00 not json", status=200)
    assert send(environ, httpserver.url_for("/v1/events"))[1]


def test_2xx_with_truncated_body_counts_as_delivered(environ: dict[str, str], known: dict[str, object]) -> None:
    server = RawServer(b"HTTP/1.1 202 Accepted\r\nContent-Length: 99\r\n\r\n{}")
    try:
        assert send(environ, server.url, timeout=0.5)[1]  # the status line is the answer
    finally:
        server.close()


@pytest.mark.parametrize(
    ("answer", "connections"),
    [
        (b"", 2),
        (b"garbage\r\n\r\n", 2),
        (b"HTTP/1.1 abc Weird\r\n\r\n", 2),
        (b"HTTP/9.9 202 Accepted\r\n\r\n", 2),
        (b"HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n", 1),
        (b"\x00" * 70000, 2),
    ],
    ids=["empty", "garbage", "bad_status", "bad_protocol", "status_999", "binary_flood"],
)
def test_malformed_answers_are_silent_failures(
    environ: dict[str, str], state_dir: Path, known: dict[str, object], answer: bytes, connections: int
) -> None:
    # The policy: an answer that is not HTTP is retried once, like a dropped connection;
    # a well-formed status that is neither 2xx, 429 nor 5xx is final.
    server = RawServer(answer)
    try:
        _, delivered, _, err = send(environ, server.url, timeout=0.5)
    finally:
        server.close()
    assert not delivered and err == ""
    assert server.connections == connections
    assert read_state(state_dir)["backoff_seconds"] == HOUR


def test_backoff_is_honoured_then_expires(
    httpserver: HTTPServer, environ: dict[str, str], state_dir: Path, known: dict[str, object]
) -> None:
    httpserver.expect_request("/v1/events").respond_with_json({"ok": True}, status=202)
    url = httpserver.url_for("/v1/events")
    now = 1_800_000_000.0
    write_known_state(state_dir, install_id=known["install_id"], backoff_seconds=HOUR, backoff_until=now + HOUR)
    session, delivered, _, err = send(environ, url, clock=lambda: now)
    assert (session.enabled, session.rule, delivered, err) == (False, "backoff", False, "")
    assert httpserver.log == []
    session, delivered, _, _ = send(environ, url, clock=lambda: now + HOUR + 1)
    assert session.enabled and delivered and len(httpserver.log) == 1
    assert "backoff_until" not in read_state(state_dir)


def test_backoff_doubles_up_to_seven_days(environ: dict[str, str], state_dir: Path, known: dict[str, object]) -> None:
    refused = f"http://127.0.0.1:{free_port()}/v1/events"
    now = 1_800_000_000.0
    seen = []
    for _ in range(10):
        session, delivered, _, _ = send(environ, refused, clock=lambda now=now: now)
        assert session.enabled and not delivered
        state = read_state(state_dir)
        seen.append(state["backoff_seconds"])
        assert state["backoff_until"] == pytest.approx(now + state["backoff_seconds"])  # type: ignore[operator]
        now = state["backoff_until"] + 1  # type: ignore[operator]
    assert seen == [HOUR * 2**i for i in range(8)] + [7 * 24 * HOUR] * 2


def test_backoff_from_a_clock_that_went_back_is_ignored() -> None:
    now = 1_800_000_000.0
    assert at._in_backoff({"backoff_until": now + 60}, now)
    assert not at._in_backoff({"backoff_until": now - 60}, now)
    assert not at._in_backoff({"backoff_until": now + 8 * 24 * HOUR}, now)
    assert not at._in_backoff({}, now)


def test_proxy_from_environment_is_used(
    httpserver: HTTPServer, environ: dict[str, str], known: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    httpserver.expect_request("/v1/events").respond_with_json({"ok": True}, status=202)
    monkeypatch.setenv("http_proxy", httpserver.url_for("/").rstrip("/"))
    monkeypatch.delenv("no_proxy", raising=False)
    target = f"http://127.0.0.9:{free_port()}/v1/events"  # refused unless the proxy carries it
    _, delivered, _, _ = send(environ, target)
    assert delivered
    [(request, _)] = httpserver.log
    assert request.url.startswith("http://127.0.0.9:") or "127.0.0.9" in request.headers.get("Host", "")


def _https_server(ca_cert: str | None) -> tuple[HTTPServer, str]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.expect_request("/v1/events").respond_with_json({"ok": True}, status=202)
    server.start()
    path = ""
    if ca_cert is not None:
        path = ca_cert
        ca.cert_pem.write_to_path(path)
    return server, path


def test_tls_is_verified(
    environ: dict[str, str], known: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = _https_server(None)
    try:
        _, delivered, _, err = send(environ, f"https://127.0.0.1:{server.port}/v1/events")
        assert not delivered and err == "" and server.log == []  # untrusted certificate: nothing sent
    finally:
        server.clear()
        server.stop()
    write_known_state(tmp_path / "state", install_id=known["install_id"])  # forget the backoff it caused
    server, ca_file = _https_server(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    try:
        _, delivered, _, _ = send(environ, f"https://127.0.0.1:{server.port}/v1/events")
        assert delivered and len(server.log) == 1  # the same server, once its CA is trusted
    finally:
        server.clear()
        server.stop()


EXIT_AT_ONCE = EXIT_CLOCK + textwrap.dedent(
    """
    import agentsonar_telemetry as at
    s = at.start_session("0.4.0")
    print(s.rule, s.session_id, flush=True)
    mark_exit_start()
    """
)


def run_and_time(url: str, **env: str) -> tuple[float, list[str]]:
    """The module's own exit wait, measured inside the process, and what the session printed."""
    result = run_python(EXIT_AT_ONCE, AGENTSONAR_TELEMETRY_URL=url, **env)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    [exit_wait] = exit_waits(result.stdout).values()
    return exit_wait, result.stdout.splitlines()[0].split()


# The same, with the module's exit wait given 30 s (conftest.PATIENT_EXIT).
EXIT_AT_ONCE_PATIENT = EXIT_AT_ONCE.replace(
    "import agentsonar_telemetry as at\n", "import agentsonar_telemetry as at\n" + PATIENT_EXIT
)


def test_immediate_exit_still_delivers(httpserver: HTTPServer, state_dir: Path, known: dict[str, object]) -> None:
    httpserver.expect_request("/v1/events").respond_with_json({"ok": True}, status=202)
    url = httpserver.url_for("/v1/events")
    results = [run_python(EXIT_AT_ONCE_PATIENT, AGENTSONAR_TELEMETRY_URL=url) for _ in range(5)]
    assert all(r.returncode == 0 and r.stderr == "" for r in results), [r.stderr for r in results]
    sessions = [r.stdout.split()[1] for r in results]
    assert sorted(e["session_id"] for e in events_of(httpserver)) == sorted(sessions)


def test_exit_wait_is_bounded_and_records_backoff(
    silent_server: SilentServer, state_dir: Path, known: dict[str, object]
) -> None:
    elapsed, (rule, _) = run_and_time(silent_server.url)
    assert rule == "send"
    assert elapsed >= 0.45  # the budget was spent waiting (bench/client.py measures its upper bound)
    assert read_state(state_dir)["backoff_seconds"] == HOUR  # still in flight at exit: a failure
    elapsed, (rule, _) = run_and_time(silent_server.url)
    # One connection in all: no retry within the budget, none in backoff (and none at all where
    # the machine was too busy for the first to connect within the budget).
    assert rule == "backoff" and silent_server.connections() <= 1


def test_exit_against_refused_port_records_backoff(state_dir: Path, known: dict[str, object]) -> None:
    _, (rule, _) = run_and_time(f"http://127.0.0.1:{free_port()}/v1/events")
    assert rule == "send"
    assert read_state(state_dir)["backoff_seconds"] == HOUR


def test_one_sender_thread_at_a_time_serves_every_session_and_none_is_left(
    httpserver: HTTPServer, state_dir: Path, known: dict[str, object]
) -> None:
    httpserver.expect_request("/v1/events").respond_with_json({"ok": True}, status=202)
    code = textwrap.dedent(
        """
        import _thread, threading
        alive, most, gone = [0], [0], threading.Condition()
        start_new_thread = _thread.start_new_thread
        def counted(function, args):
            def run():
                with gone:
                    alive[0] += 1
                    most[0] = max(most[0], alive[0])
                try:
                    function(*args)
                finally:
                    with gone:
                        alive[0] -= 1
                        gone.notify_all()
            return start_new_thread(run, ())
        _thread.start_new_thread = counted
        import agentsonar_telemetry as at
        sessions = [at.start_session("0.4.0") for _ in range(5)]
        delivered = all(s.wait(10) for s in sessions)
        with gone:
            gone.wait_for(lambda: alive[0] == 0, timeout=30)  # the thread ends once its queue is empty
        print(delivered, most[0], alive[0], " ".join(s.session_id for s in sessions))
        """
    )
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=httpserver.url_for("/v1/events"))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    delivered, most, alive, *sessions = result.stdout.split()
    assert (delivered, most, alive) == ("True", "1", "0")
    assert sorted(e["session_id"] for e in events_of(httpserver)) == sorted(sessions)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_sender(httpserver: HTTPServer, state_dir: Path, known: dict[str, object]) -> None:
    httpserver.expect_request("/v1/events").respond_with_json({"ok": True}, status=202)
    code = textwrap.dedent(
        """
        import os, agentsonar_telemetry as at
        assert at.start_session("0.4.0").wait(10)
        pid = os.fork()
        if pid == 0:
            os._exit(0 if at.start_session("0.4.0").wait(10) else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """
    )
    result = run_python(code, AGENTSONAR_TELEMETRY_URL=httpserver.url_for("/v1/events"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0" and len(httpserver.log) == 2


def test_the_socket_timeout_applies_to_each_attempt(
    silent_server: SilentServer, environ: dict[str, str], known: dict[str, object]
) -> None:
    # Default client: each attempt gives up after SOCKET_TIMEOUT (2 s), then the one retry.
    # Without a timeout the first attempt would hang and the retry would never connect.
    session, delivered, elapsed, err = send(environ, silent_server.url)
    assert session.enabled and not delivered and err == ""
    assert silent_server.connections() == 2
    assert elapsed >= 2 * at._SOCKET_TIMEOUT  # both attempts waited out their timeout


class ConnectProxy:
    """A loopback HTTP proxy that only tunnels (CONNECT), as https_proxy points to."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.sock.accept()
                threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with client, contextlib.suppress(OSError):
            head = b""
            while b"\r\n\r\n" not in head:
                head += client.recv(4096)
            self.requests.append(head.split(b"\r\n")[0])
            host, port = head.split()[1].decode().rsplit(":", 1)
            with socket.create_connection((host, int(port))) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                pump = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
                pump.start()
                self._pump(client, upstream)
                pump.join(10)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept(); a close alone would not
        self.sock.close()
        self.thread.join(5)


def test_https_through_a_connect_proxy_from_the_environment(
    environ: dict[str, str], known: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tunnel goes through the connection whose sockets the deadline bounds: the proxy's
    "200 Connection established" is not taken for the collector's answer."""
    server, ca_file = _https_server(str(tmp_path / "ca.pem"))
    proxy = ConnectProxy()
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    monkeypatch.setenv("https_proxy", proxy.url)
    try:
        _, delivered, _, err = send(environ, f"https://127.0.0.1:{server.port}/v1/events")
        assert delivered and err == "" and len(server.log) == 1
        [request] = proxy.requests
        assert request.startswith(f"CONNECT 127.0.0.1:{server.port} HTTP/1.".encode())
    finally:
        proxy.close()
        server.clear()
        server.stop()
