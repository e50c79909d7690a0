"""Hermetic test set-up: a private state dir, loopback-only networking, helpers."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import agentsonar_telemetry as at

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "contract"
NETGUARD = Path(__file__).resolve().parent / "_netguard"
MODULE_DIR = Path(at.__file__).resolve().parent


def _install_guard() -> None:
    """This process gets the same audit hook as the subprocesses."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_agentsonar_netguard", NETGUARD / "sitecustomize.py")
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


_install_guard()


def _real_state_dir() -> Path:
    if os.name == "nt":
        return Path(os.environ.get("USERPROFILE", "C:/")) / ".agentsonar"
    import pwd

    return Path(pwd.getpwuid(os.getuid()).pw_dir) / ".agentsonar"


REAL_STATE_DIR = _real_state_dir()


def pytest_sessionstart(session: pytest.Session) -> None:
    # Nothing a test does may see the developer's real home or proxies.
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name.startswith(("AGENTSONAR_", "DO_NOT_TRACK")):
            del os.environ[name]


@pytest.fixture(autouse=True)
def hermetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test: HOME and the state dir in tmp, an unroutable default endpoint."""
    home = tmp_path / "home"
    home.mkdir()
    net_log = tmp_path / "net-violations.log"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    monkeypatch.setenv("AGENTSONAR_STATE_DIR", str(tmp_path / "state"))
    # Port 9 (discard) on loopback: a test that forgets its endpoint gets "refused".
    monkeypatch.setenv("AGENTSONAR_TELEMETRY_URL", "http://127.0.0.1:9/v1/events")
    monkeypatch.setenv("AGENTSONAR_TEST_NET_LOG", str(net_log))
    before = _snapshot(REAL_STATE_DIR)
    yield home
    assert not net_log.exists(), f"a test tried to leave loopback: {net_log.read_text()}"
    assert _snapshot(REAL_STATE_DIR) == before, "a test touched the real ~/.agentsonar"


def _snapshot(directory: Path) -> list[tuple[str, int]] | None:
    if not directory.is_dir():
        return None
    return sorted((p.name, p.stat().st_mtime_ns) for p in directory.iterdir())


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def environ(state_dir: Path) -> dict[str, str]:
    """A minimal environment mapping for Telemetry(environ=...)."""
    return {"AGENTSONAR_STATE_DIR": str(state_dir), "AGENTSONAR_TELEMETRY_URL": "http://127.0.0.1:9/v1/events"}


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    return ("127.0.0.1", 0)


def make_client(environ: dict[str, str], **kwargs: object) -> tuple[at.Telemetry, io.StringIO]:
    err = io.StringIO()
    return at.Telemetry(environ, stderr=err, **kwargs), err  # type: ignore[arg-type]


def subprocess_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(NETGUARD), str(MODULE_DIR)])
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(overrides)
    return env


# Gives the module's exit wait 30 s instead of 0.5 s, through atexit's own API, in a host that
# imported it as `at`: that the exit waits for a send in flight is then a fact of the code, not
# of how busy the machine is. bench/client.py shows 10 of 10 delivered within the real 0.5 s.
PATIENT_EXIT = (
    "import atexit\natexit.unregister(at._Sender.wait_at_exit)\natexit.register(at._Sender.wait_at_exit, 30)\n"
)


def run_python(
    code: str, *, timeout: float = 30, env: dict[str, str] | None = None, **overrides: str
) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter with the loopback guard loaded."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env or subprocess_env(**overrides),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class SilentServer:
    """A loopback port that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1/events"
        self.accepted: list[socket.socket] = []
        self.peers: list[object] = []  # each accepted connection's client address, as accept() gave it
        self._accepted = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                conn, peer = self.sock.accept()
                with self._accepted:
                    self.accepted.append(conn)
                    self.peers.append(peer)
                    self._accepted.notify_all()

    def connections(self) -> int:
        """The connections made so far, every one of them accepted: a sentinel connection goes
        through the same backlog after them, so once it is accepted, so are they."""
        with socket.create_connection(("127.0.0.1", self.port)) as sentinel:
            me = sentinel.getsockname()
            with self._accepted:
                self._accepted.wait_for(lambda: me in self.peers, timeout=30)
                return sum(1 for peer in self.peers if peer != me)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def free_port() -> int:
    """A loopback port with nothing listening: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RawServer:
    """A loopback port that answers every connection with fixed bytes, then closes; counts them.

    With *tls* (a server-side SSLContext) each connection first goes through a TLS handshake.
    With *hold_open* each connection stays open after the answer, until close(); with *drip*
    the answer is followed by those bytes one at a time, each *drip_every* seconds (well within
    any socket timeout), until the client hangs up or close(); with *reset* the connection is
    then reset (RST) instead of closed.
    """

    def __init__(
        self,
        answer: bytes,
        tls: ssl.SSLContext | None = None,
        *,
        hold_open: bool = False,
        drip: bytes = b"",
        drip_every: float = 0.05,
        reset: bool = False,
    ) -> None:
        self.answer = answer
        self.tls = tls
        self.hold_open = hold_open
        self.drip = drip
        self.drip_every = drip_every
        self.reset = reset
        self.held: list[socket.socket] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.sock.getsockname()[1]}/v1/events"
        self.connections = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._serve, daemon=True)]
        self._threads[0].start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.settimeout(1)
            if self.hold_open:
                with contextlib.suppress(OSError):
                    read_request(conn)
                    conn.sendall(self.answer)
                self.held.append(conn)
                continue
            if self.drip:  # each in its own thread: a retry is not kept waiting behind the first
                thread = threading.Thread(target=self._answer, args=(conn,), daemon=True)
                self._threads.append(thread)
                thread.start()
                continue
            self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        with contextlib.ExitStack() as stack:
            stack.enter_context(conn)
            stack.enter_context(contextlib.suppress(OSError))  # ssl.SSLError is an OSError
            channel = stack.enter_context(self.tls.wrap_socket(conn, server_side=True)) if self.tls else conn
            read_request(channel)
            channel.sendall(self.answer)
            for byte in self.drip:
                if self._stop.wait(self.drip_every):
                    break
                channel.sendall(bytes([byte]))  # raises once the client has hung up
            if self.reset:
                # A reset discards what the client has not read yet: only once it has read the
                # answer (its receive queue is empty) does the reset come after the answer.
                while unread_by_peer(conn) and not self._stop.wait(0.005):
                    pass
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2)
        for conn in self.held:
            conn.close()
        self.sock.close()


def read_request(channel: socket.socket) -> None:
    """Read a whole request, its headers then Content-Length bytes of body: answering before the
    body came and closing would reset the connection (unread data), and lose the answer."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = channel.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = channel.recv(65536)
        if not chunk:
            return
        body += chunk


def unread_by_peer(conn: socket.socket) -> int:
    """The bytes the loopback peer of *conn* has received but not read yet (Linux's /proc/net/tcp)."""
    host, port = conn.getpeername()[:2]
    me = f"{socket.htonl(int.from_bytes(socket.inet_aton(host), 'big')):08X}:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == me:
            return int(fields[4].split(":")[1], 16)
    return 0


def write_known_state(state_dir: Path, **extra: object) -> dict[str, object]:
    """A state as a previous session left it (id assigned, disclosure shown)."""
    state: dict[str, object] = {
        "schema_version": 1,
        "install_id": at._new_uuid4(),
        "disclosure_shown": True,
        "telemetry_disabled": False,
        **extra,
    }
    at._write_state(str(state_dir / "state.json"), state)
    return state


def read_state(state_dir: Path) -> dict[str, object]:
    import json

    return dict(json.loads((state_dir / "state.json").read_text()))
