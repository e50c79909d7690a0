# SPDX-License-Identifier: Apache-2.0
# Copyright 2026 The AgentSonar authors
"""Anonymous, opt-out usage telemetry for the AgentSonar SDK.

When the host SDK starts a session, :func:`start_session` sends one anonymous
event (install id, session id, SDK version, Python minor version, os, arch,
adapter, timestamp) from a daemon thread, prints a one-time disclosure on
stderr, and honours every opt-out: ``AGENTSONAR_TELEMETRY=off``,
``DO_NOT_TRACK=1``, ``config={"telemetry": False}`` and a persisted flag
(``python -m agentsonar_telemetry disable``); deleting the state file (or
``reset``) forgets the install id.

The module never raises into the host, never blocks on the network and prints
nothing but the disclosure.  It is a single standard-library file meant to be
copied into another package (for example as ``somepkg/_telemetry.py``); the
environment is read at call time, never at import, and everything heavier than
``os`` and ``sys`` is imported where it is first needed.
"""

import os
import sys

__version__ = "0.1.0"

__all__ = [
    "Session",
    "Status",
    "Telemetry",
    "__version__",
    "disable_persistently",
    "enable_persistently",
    "is_disabled",
    "main",
    "reset",
    "session_start",
    "start_session",
    "status",
]

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; the checker alone needs it
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, TextIO

    StateDict = dict[str, Any]


# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

DEFAULT_ENDPOINT = "https://t.agent-sonar.com/v1/events"
STATE_FILE_NAME = "state.json"
STATE_SCHEMA_VERSION = 1
LOGGER_NAME = "agentsonar.telemetry"

ENV_TELEMETRY = "AGENTSONAR_TELEMETRY"
ENV_DO_NOT_TRACK = "DO_NOT_TRACK"
ENV_ENDPOINT = "AGENTSONAR_TELEMETRY_ENDPOINT"  # the SDK's documented name; it wins over the alias
ENV_ENDPOINT_ALIAS = "AGENTSONAR_TELEMETRY_URL"
ENV_STATE_DIR = "AGENTSONAR_STATE_DIR"

_OFF_VALUES = frozenset({"off", "0", "false", "no", "disabled"})
_ON_VALUES = frozenset({"on", "1", "true", "yes", "enabled"})
_DEBUG_VALUE = "debug"
_DO_NOT_TRACK_UNSET = frozenset({"", "0", "false", "no", "off"})

SOCKET_TIMEOUT = 2.0  # seconds, per attempt
RETRY_DELAY = 0.1  # seconds before the one retry
EXIT_WAIT = 0.5  # seconds an in-flight send may delay interpreter exit
BACKOFF_INITIAL = 3600.0  # one hour after the first failed send
BACKOFF_MAX = 7 * 24 * 3600.0  # doubling stops at seven days

_MAX_STATE_BYTES = 64 * 1024
_MAX_BODY_BYTES = 1024
_MIN_TIMESTAMP = 1.5e9
_MAX_TIMESTAMP = 4.1e9
_LOCK_STALE_SECONDS = 30.0
_LOCK_WAIT_SECONDS = 0.25

_VERSION_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.+_-")
_NAME_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyz_")
_HEX = frozenset("0123456789abcdef")
# contract/normalization.json holds the same table; the collector applies it to what
# released SDKs send raw, and a test keeps these two lines equal to it.
_ARCH_ALIASES = {"aarch64": "arm64", "amd64": "x86_64", "x64": "x86_64"}
_OS_KEEPING_DIGITS = frozenset({"win32"})

#: The eight fields of the contract, in the order they are sent.
EVENT_FIELDS = ("install_id", "session_id", "version", "python", "os", "arch", "adapter", "timestamp")


# --------------------------------------------------------------------------
# The event's fields: validation without ``re`` (its ``$`` accepts a trailing
# newline, the contract does not) and normalisation
# --------------------------------------------------------------------------


def _is_version(value: object) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= 32 and set(value) <= _VERSION_CHARS


def _is_name(value: object) -> bool:
    """``^[a-z][a-z0-9_]{0,31}$``: the adapter's rule."""
    return isinstance(value, str) and 1 <= len(value) <= 32 and "a" <= value[0] <= "z" and set(value) <= _NAME_CHARS


def _is_token(value: str) -> bool:
    """``^[a-z0-9_]{1,16}$``: the rule for os and arch."""
    return 1 <= len(value) <= 16 and set(value) <= _NAME_CHARS


def _is_uuid4(value: object) -> bool:
    """Lowercase canonical UUID, version 4, RFC 4122 variant."""
    if not isinstance(value, str) or len(value) != 36:
        return False
    if value[8] != "-" or value[13] != "-" or value[18] != "-" or value[23] != "-":
        return False
    digits = value.replace("-", "")
    return len(digits) == 32 and set(digits) <= _HEX and value[14] == "4" and value[19] in "89ab"


def _new_uuid4() -> str:
    # Same bits as uuid.uuid4(), without importing uuid (and its platform probing).
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def normalize_os(platform: str) -> str:
    """The ``sys.platform`` family: ``linux``, ``darwin``, ``win32``, ``freebsd`` ..."""
    value = platform.strip().lower()
    if value not in _OS_KEEPING_DIGITS:
        value = value.rstrip("0123456789")  # freebsd14 -> freebsd, linux2 -> linux
    return value if _is_token(value) else "unknown"


def normalize_arch(machine: str) -> str:
    """``arm64`` and ``x86_64`` under one name whatever the OS calls them."""
    value = machine.strip().lower()
    value = _ARCH_ALIASES.get(value, value)
    return value if _is_token(value) else "unknown"


def _machine() -> str:
    if hasattr(os, "uname"):
        return os.uname().machine
    import platform  # Windows: platform reads PROCESSOR_ARCHITECTURE for us

    return platform.machine()


def build_event(
    *,
    install_id: str,
    session_id: str,
    version: object,
    adapter: object,
    timestamp: float,
    platform: str | None = None,
    machine: str | None = None,
) -> dict[str, object]:
    """The contract's event; a bad ``version`` or ``adapter`` becomes ``unknown``."""
    return {
        "install_id": install_id,
        "session_id": session_id,
        "version": version if _is_version(version) else "unknown",
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "os": normalize_os(sys.platform if platform is None else platform),
        "arch": normalize_arch(_machine() if machine is None else machine),
        "adapter": adapter if _is_name(adapter) else "unknown",
        "timestamp": round(timestamp, 3),
    }


# --------------------------------------------------------------------------
# Decision: which rule turns telemetry off (DESIGN.md, first match wins)
# --------------------------------------------------------------------------

RULE_ENV = "AGENTSONAR_TELEMETRY"
RULE_DO_NOT_TRACK = "DO_NOT_TRACK"
RULE_CONFIG = "config"
RULE_PERSISTED = "telemetry_disabled"
RULE_STATE_ERROR = "state_error"
RULE_ENDPOINT = "endpoint"
RULE_DEBUG = "debug"
RULE_BACKOFF = "backoff"
RULE_SEND = "send"
RULE_ERROR = "error"
_OPT_OUT_RULES = frozenset({RULE_ENV, RULE_DO_NOT_TRACK, RULE_CONFIG, RULE_PERSISTED, RULE_STATE_ERROR})


def _shown(value: str) -> str:
    value = value.strip()
    return value if len(value) <= 40 else value[:37] + "..."


def env_decision(environ: "Mapping[str, str]") -> tuple[str, str] | None:
    """``(rule, reason)`` when the environment turns telemetry off, else None."""
    raw = environ.get(ENV_TELEMETRY, "")
    value = raw.strip().lower()
    if value and value not in _ON_VALUES and value != _DEBUG_VALUE:
        if value in _OFF_VALUES:
            return RULE_ENV, f"{ENV_TELEMETRY}={_shown(raw)}"
        return RULE_ENV, f"{ENV_TELEMETRY}={_shown(raw)} is not a recognised value, so off"
    dnt = environ.get(ENV_DO_NOT_TRACK, "")
    if dnt.strip().lower() not in _DO_NOT_TRACK_UNSET:
        return RULE_DO_NOT_TRACK, f"{ENV_DO_NOT_TRACK}={_shown(dnt)}"
    return None


def env_enables(environ: "Mapping[str, str]") -> bool:
    """An on-value of ``AGENTSONAR_TELEMETRY``: it overrides a persisted opt-out (rule 4)."""
    return environ.get(ENV_TELEMETRY, "").strip().lower() in _ON_VALUES


def is_debug(environ: "Mapping[str, str]") -> bool:
    return environ.get(ENV_TELEMETRY, "").strip().lower() == _DEBUG_VALUE


def config_choice(config: object) -> bool | None:
    """The host's ``config["telemetry"]``: True, False, or None when absent.

    Anything that is not a mapping with a bool there raises ValueError: the
    caller treats it as "off for this session" without persisting anything.
    """
    if config is None:
        return None
    get = getattr(config, "get", None)
    if get is None:
        raise ValueError("config must be a mapping")
    choice = get("telemetry", None)
    if choice is None or isinstance(choice, bool):
        return choice
    raise ValueError('config["telemetry"] must be True or False')


def _is_loopback_host(host: str) -> bool:
    if host in {"localhost", "::1"}:
        return True
    parts = host.split(".")
    return len(parts) == 4 and parts[0] == "127" and all(p.isdigit() and int(p) < 256 for p in parts)


def endpoint_problem(endpoint: str) -> str | None:
    """Why this endpoint may not be used, or None when it may.

    Parsed by hand: urllib.parse would cost the host's thread milliseconds of imports.
    """
    if endpoint == DEFAULT_ENDPOINT:
        return None
    if any(ch.isspace() or not 32 < ord(ch) < 127 for ch in endpoint) or len(endpoint) > 2048:
        return "contains white space, control or non-ASCII characters"
    scheme, separator, rest = endpoint.partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in ("https", "http"):
        return "must be https://, or http:// to a loopback host"
    authority = rest
    for delimiter in "/?#":
        authority = authority.partition(delimiter)[0]
    if "@" in authority:
        return "carries credentials"
    if authority.startswith("["):
        host, bracket, port = authority[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            return "is not a valid URL"
        port = port[1:]
    else:
        host, _, port = authority.partition(":")
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        return "is not a valid URL"
    host = host.lower()
    if not host:
        return "has no host"
    if scheme == "https" or _is_loopback_host(host):
        return None
    return "must be https://, or http:// to a loopback host"


# --------------------------------------------------------------------------
# State: ~/.agentsonar/state.json
# --------------------------------------------------------------------------


class StateError(Exception):
    """The state file exists but cannot be trusted (unreadable or corrupt)."""


def _validate_state(data: object) -> "StateDict":
    if not isinstance(data, dict):
        raise StateError(f"not a JSON object but {type(data).__name__}")
    for key in ("schema_version",):
        if key in data and (not isinstance(data[key], int) or isinstance(data[key], bool)):
            raise StateError(f"{key} is not an integer")
    if "install_id" in data and not _is_uuid4(data["install_id"]):
        raise StateError("install_id is not a lowercase UUID4")
    for key in ("disclosure_shown", "telemetry_disabled"):
        if key in data and not isinstance(data[key], bool):
            raise StateError(f"{key} is not true or false")
    for key in ("backoff_until", "backoff_seconds"):
        value = data.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e12:
            raise StateError(f"{key} is not a non-negative number")
    return data


def read_state(path: str) -> "StateDict | None":
    """The state at *path*, None when absent; StateError when not trustworthy."""
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_STATE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"unreadable ({exc.strerror or exc.__class__.__name__})") from None
    if len(raw) > _MAX_STATE_BYTES:
        raise StateError("larger than 64 KiB")
    import json

    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise StateError("not valid JSON") from None
    return _validate_state(data)


def _state_bytes(state: "Mapping[str, object]") -> bytes:
    import json

    return (json.dumps(dict(state), indent=2, sort_keys=True) + "\n").encode("utf-8")


def _write_temp(directory: str, data: bytes) -> str:
    """A fsynced 0600 file beside the state file; removed again on failure."""
    name = os.path.join(directory, f".{STATE_FILE_NAME}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _unlink_quietly(name)
        raise
    return name


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _replace(
    src: str,
    dst: str,
    attempts: int = 10 if os.name == "nt" else 1,
    replace: "Callable[[str, str], None]" = os.replace,
) -> None:
    # On Windows a reader holding the file open makes os.replace fail for a moment.
    for attempt in range(attempts):
        try:
            replace(src, dst)
            return
        except PermissionError:
            if attempt == attempts - 1:
                raise
            import time

            time.sleep(0.01 * (attempt + 1))


def write_state(path: str, state: "Mapping[str, object]") -> None:
    """Atomically replace the state file (temp file, fsync, os.replace)."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = _write_temp(directory, _state_bytes(state))
    try:
        _replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _link_unsupported(exc: OSError) -> bool:
    import errno

    return exc.errno in {errno.EPERM, errno.EXDEV, errno.ENOSYS, errno.EMLINK, errno.EOPNOTSUPP, errno.EACCES}


def create_state(path: str, state: "Mapping[str, object]", *, use_links: bool = True) -> bool:
    """Create *path* only if absent; True when this call created it.

    The complete, fsynced file is hard-linked into place, so other processes
    never see a half-written state.  Where links are unsupported an O_EXCL lock
    file beside it serialises creators instead.
    """
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    if use_links and hasattr(os, "link"):
        tmp = _write_temp(directory, _state_bytes(state))
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if not _link_unsupported(exc):
                raise
        finally:
            _unlink_quietly(tmp)
    with _StateLock(path) as locked:
        if not locked or os.path.lexists(path):
            return False
        write_state(path, state)
        return True


class _StateLock:
    """O_EXCL lock file ``state.json.lock``; never taken on state.json itself."""

    def __init__(self, path: str) -> None:
        self.lock_path = path + ".lock"
        self.path = path
        self.acquired = False

    def __enter__(self) -> bool:
        import time

        deadline = time.monotonic() + _LOCK_WAIT_SECONDS
        while time.monotonic() <= deadline:
            try:
                fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                try:
                    if time.time() - os.stat(self.lock_path).st_mtime > _LOCK_STALE_SECONDS:
                        _unlink_quietly(self.lock_path)  # its owner died holding it
                        continue
                except OSError:
                    continue  # released meanwhile: try again at once
                time.sleep(0.005)
                continue
            os.close(fd)
            self.acquired = True
            return True
        return False

    def __exit__(self, *exc_info: object) -> None:
        if self.acquired:
            _unlink_quietly(self.lock_path)


def _dir_writable(directory: str) -> bool:
    """Whether files can be created in *directory*, or it can be made."""
    probe = directory
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return False
        probe = parent
    return os.path.isdir(probe) and os.access(probe, os.W_OK | os.X_OK)


def in_backoff(state: "Mapping[str, object] | None", now: float) -> bool:
    if not state:
        return False
    until = state.get("backoff_until", 0)
    # A deadline further off than the longest backoff means the clock moved back.
    return isinstance(until, (int, float)) and 0 < until - now <= BACKOFF_MAX


def next_backoff(state: "Mapping[str, object]", now: float) -> dict[str, object]:
    previous = state.get("backoff_seconds", 0)
    seconds = BACKOFF_INITIAL
    if isinstance(previous, (int, float)) and previous >= BACKOFF_INITIAL:
        seconds = min(float(previous) * 2, BACKOFF_MAX)
    return {"backoff_seconds": seconds, "backoff_until": round(now + seconds, 3)}


# --------------------------------------------------------------------------
# Disclosure
# --------------------------------------------------------------------------


def _module_name() -> str:
    spec = globals().get("__spec__")
    name = getattr(spec, "name", None) or __name__
    return "agentsonar_telemetry" if name == "__main__" else str(name)


def disclosure_text(state_path: str) -> str:
    cli = f"python -m {_module_name()}"
    return (
        "AgentSonar collects anonymous usage telemetry: one event per session with a random\n"
        "install id, a session id, the SDK version, Python version, OS, CPU architecture and\n"
        "adapter name. It never sends code, prompts, agent data, file paths, host or user\n"
        "names, and the collector stores no IP address.\n"
        f"Turn it off with {ENV_TELEMETRY}=off or {ENV_DO_NOT_TRACK}=1, with\n"
        f'config={{"telemetry": False}}, or `{cli} disable`. Delete {state_path}\n'
        f"(or `{cli} reset`) to forget this install id. This notice is shown once.\n"
    )


# --------------------------------------------------------------------------
# Sending
# --------------------------------------------------------------------------


def _log(message: str, *args: object) -> None:
    import logging

    logging.getLogger(LOGGER_NAME).debug(message, *args)


def post_event(endpoint: str, body: bytes, timeout: float) -> int:
    """POST *body* once; the HTTP status, or an exception for no answer.

    Redirects are not followed (a 3xx comes back as its status); proxies from
    the environment are honoured and TLS is verified by urllib's defaults.
    """
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: "Any", **kwargs: "Any") -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(
        endpoint,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"agentsonar-telemetry/{__version__}"},
    )
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read(4096)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


def _retryable(status: int) -> bool:
    return status == 429 or 500 <= status <= 599


class _Delivery:
    """One event on its way: one retry, the outcome recorded once."""

    def __init__(
        self,
        endpoint: str,
        body: bytes,
        state_path: str,
        clock: "Callable[[], float]",
        timeout: float,
        post: "Callable[[str, bytes, float], int]",
    ) -> None:
        import threading

        self.endpoint = endpoint
        self.body = body
        self.state_path = state_path
        self.clock = clock
        self.timeout = timeout
        self.post = post
        self.delivered = False
        self.done = threading.Event()
        self.hurry = threading.Event()  # set at exit: retry without the pause
        self._lock = threading.Lock()
        self._settled = False

    def start(self) -> None:
        _PENDING.add(self)
        _register_exit_wait()
        _sender().submit(self)

    def _attempt(self) -> tuple[bool, bool]:
        """(delivered, worth a retry)."""
        try:
            status = self.post(self.endpoint, self.body, self.timeout)
        except Exception as exc:  # noqa: BLE001 - refused, timed out, malformed: all mean "not delivered"
            _log("telemetry send to %s failed: %r", self.endpoint, exc)
            return False, True
        if 200 <= status <= 299:
            return True, False
        _log("telemetry send to %s answered %s", self.endpoint, status)
        return False, _retryable(status)

    def run(self) -> None:
        if self._settled:
            return  # the exit wait gave up on it before its turn came
        delivered = False
        try:
            delivered, retry = self._attempt()
            if not delivered and retry:
                self.hurry.wait(RETRY_DELAY)
                delivered, _ = self._attempt()
        except BaseException as exc:  # noqa: BLE001 - the host must never see it
            _log("telemetry sender crashed: %r", exc)
        self.settle(delivered)

    def settle(self, delivered: bool) -> None:
        """Record the outcome once: the sender's, or the exit wait's timeout."""
        with self._lock:
            if self._settled:
                return
            self._settled = True
        try:
            _record_outcome(self.state_path, delivered, self.clock())
        except Exception as exc:  # noqa: BLE001
            _log("could not record telemetry outcome: %r", exc)
        finally:
            self.delivered = delivered
            _PENDING.discard(self)
            self.done.set()


def _record_outcome(path: str, delivered: bool, now: float) -> None:
    try:
        state = read_state(path)
    except StateError:
        return  # never overwrite a file we cannot read
    if state is None:
        return  # reset while we were sending: do not bring the file back
    if delivered:
        if "backoff_until" not in state and "backoff_seconds" not in state:
            return  # the common case writes nothing
        state.pop("backoff_until", None)
        state.pop("backoff_seconds", None)
    else:
        state.update(next_backoff(state, now))
    write_state(path, state)


class _Sender:
    """The one daemon thread that delivers this process's events, one after another.

    Started by the first session; later sessions only queue their event, so they pay
    for no thread start and do not wait for the GIL while a new thread builds a request.
    """

    def __init__(self) -> None:
        import threading

        self.pid = os.getpid()
        self._ready = threading.Condition()
        self._queue: list[_Delivery] = []
        self._thread: threading.Thread | None = None

    def submit(self, delivery: _Delivery) -> None:
        import threading

        with self._ready:
            self._queue.append(delivery)
            if self._thread is not None and self._thread.is_alive():
                self._ready.notify()
                return
            self._thread = threading.Thread(target=self._loop, name="agentsonar-telemetry", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        # Give the GIL back first: the host thread is waiting in Thread.start() and should
        # return at once, not after this thread has built its first request.
        import time

        time.sleep(0.001)
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                delivery = self._queue.pop(0)
            delivery.run()


_SENDERS: "list[_Sender]" = []
_PENDING: "set[_Delivery]" = set()
_EXIT_WAIT_REGISTERED: list[bool] = []


def _sender() -> _Sender:
    # A forked child has no sender thread and may have inherited a held lock: it gets its own.
    if not _SENDERS or _SENDERS[-1].pid != os.getpid():
        _SENDERS.append(_Sender())
    return _SENDERS[-1]


def _register_exit_wait() -> None:
    if not _EXIT_WAIT_REGISTERED:
        _EXIT_WAIT_REGISTERED.append(True)
        import atexit

        atexit.register(_wait_at_exit)


def _wait_at_exit(budget: float = EXIT_WAIT) -> None:
    """Give in-flight sends *budget* seconds in all, then record them as failed."""
    import time

    deadline = time.monotonic() + budget
    pending = list(_PENDING)
    for delivery in pending:
        delivery.hurry.set()
    for delivery in pending:
        delivery.done.wait(max(0.0, deadline - time.monotonic()))
    for delivery in pending:
        delivery.settle(False)  # no-op for those that finished


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


class Session:
    """What :func:`start_session` did.

    ``enabled`` is True when an event is on its way to the collector;
    ``event`` is the exact dict sent (or printed, in debug mode), else None.
    """

    __slots__ = ("_delivery", "enabled", "event", "reason", "rule", "session_id")

    def __init__(
        self,
        enabled: bool,
        rule: str,
        reason: str,
        event: dict[str, object] | None = None,
        delivery: "_Delivery | None" = None,
    ) -> None:
        self.enabled = enabled
        self.rule = rule
        self.reason = reason
        self.event = event
        self.session_id: str | None = None if event is None else str(event["session_id"])
        self._delivery = delivery

    def wait(self, timeout: float | None = None) -> bool:
        """Block up to *timeout* seconds; True once the collector answered 2xx."""
        delivery = self._delivery
        if delivery is None:
            return False
        try:
            delivery.done.wait(timeout)
        except Exception:  # noqa: BLE001
            return False
        return delivery.delivered

    def __repr__(self) -> str:
        return f"Session(enabled={self.enabled!r}, rule={self.rule!r}, session_id={self.session_id!r})"


class Status:
    """What a session would do now, and which rule decided it."""

    __slots__ = ("enabled", "endpoint", "event", "install_id", "reason", "rule", "state_path")

    def __init__(
        self,
        enabled: bool,
        rule: str,
        reason: str,
        state_path: str,
        install_id: str | None,
        endpoint: str,
        event: dict[str, object] | None,
    ) -> None:
        self.enabled = enabled
        self.rule = rule
        self.reason = reason
        self.state_path = state_path
        self.install_id = install_id
        self.endpoint = endpoint
        self.event = event

    def as_dict(self) -> dict[str, object]:
        return {
            name: getattr(self, name)
            for name in ("enabled", "rule", "reason", "state_path", "install_id", "endpoint", "event")
        }

    def __repr__(self) -> str:
        return f"Status(enabled={self.enabled!r}, rule={self.rule!r}, reason={self.reason!r})"


class _Decision:
    __slots__ = ("endpoint", "path", "reason", "rule", "state")

    def __init__(self, rule: str, reason: str, path: str, endpoint: str, state: "StateDict | None") -> None:
        self.rule = rule
        self.reason = reason
        self.path = path
        self.endpoint = endpoint
        self.state = state


class Telemetry:
    """The module's behaviour with every input passed in.

    The module-level functions use one built from the process environment at
    call time; tests and embedders pass their own *environ*, *state_dir*,
    *endpoint*, *stderr* and *clock*.
    """

    def __init__(
        self,
        environ: "Mapping[str, str] | None" = None,
        *,
        state_dir: str | None = None,
        endpoint: str | None = None,
        stderr: "TextIO | None" = None,
        clock: "Callable[[], float] | None" = None,
        timeout: float = SOCKET_TIMEOUT,
        use_links: bool = True,
        post: "Callable[[str, bytes, float], int]" = post_event,
    ) -> None:
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self._state_dir = state_dir
        self._endpoint = endpoint
        self._stderr = stderr
        self.clock = clock
        self.timeout = timeout
        self.use_links = use_links
        self.post = post

    # -- inputs ------------------------------------------------------------

    @property
    def state_dir(self) -> str:
        if self._state_dir is not None:
            return self._state_dir
        configured = self.environ.get(ENV_STATE_DIR, "")
        if configured.strip():
            return os.path.abspath(os.path.expanduser(configured))
        home = self.environ.get("USERPROFILE" if os.name == "nt" else "HOME", "")
        return os.path.join(home or os.path.expanduser("~"), ".agentsonar")

    @property
    def state_path(self) -> str:
        return os.path.join(self.state_dir, STATE_FILE_NAME)

    @property
    def endpoint(self) -> str:
        if self._endpoint is not None:
            return self._endpoint
        return self._endpoint_setting()[1] or DEFAULT_ENDPOINT

    def _endpoint_setting(self) -> tuple[str, str]:
        """``(variable, value)`` of the endpoint override; the SDK's own name wins."""
        for name in (ENV_ENDPOINT, ENV_ENDPOINT_ALIAS):
            value = self.environ.get(name, "").strip()
            if value:
                return name, value
        return ENV_ENDPOINT, ""

    @property
    def stderr(self) -> "TextIO":
        return sys.stderr if self._stderr is None else self._stderr

    def now(self) -> float:
        if self.clock is not None:
            return self.clock()
        import time

        return time.time()

    def _print(self, text: str) -> None:
        try:
            stream = self.stderr
            stream.write(text)
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed or missing stderr is the host's business
            pass

    # -- decision (no side effects) -----------------------------------------

    def _decide(self, env_off: tuple[str, str] | None, config_off: str | None) -> "_Decision":
        path = self.state_path
        endpoint = self.endpoint

        def decided(rule: str, reason: str, state: "StateDict | None" = None) -> "_Decision":
            return _Decision(rule, reason, path, endpoint, state)

        if env_off is not None:
            return decided(*env_off)
        if config_off is not None:
            return decided(RULE_CONFIG, config_off)
        try:
            state = read_state(path)
        except StateError as exc:
            return decided(
                RULE_STATE_ERROR,
                f"state file {path} is {exc}; run `python -m {_module_name()} reset` to start afresh",
            )
        enabled = "enabled"
        if state is not None and state.get("telemetry_disabled") is True:
            if not env_enables(self.environ):
                return decided(RULE_PERSISTED, f"telemetry_disabled: true in {path}", state)
            raw = self.environ.get(ENV_TELEMETRY, "")
            enabled = f"enabled: {ENV_TELEMETRY}={_shown(raw)} overrides telemetry_disabled: true in {path}"
        if not _dir_writable(os.path.dirname(path)):
            return decided(RULE_STATE_ERROR, f"state directory {os.path.dirname(path)} is not writable", state)
        problem = endpoint_problem(endpoint)
        if problem is not None:
            variable = ENV_ENDPOINT if self._endpoint is not None else self._endpoint_setting()[0]
            return decided(RULE_ENDPOINT, f"{variable}={_shown(endpoint)} {problem}", state)
        if is_debug(self.environ):
            return decided(RULE_DEBUG, f"{ENV_TELEMETRY}=debug: the event is printed, not sent", state)
        if in_backoff(state, self.now()):
            import time

            until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(state["backoff_until"])))  # type: ignore[index]
            return decided(RULE_BACKOFF, f"in backoff after failed sends, until {until}", state)
        return decided(RULE_SEND, enabled, state)

    def status(self) -> "Status":
        """What :meth:`start_session` would do now; reads, never writes."""
        decision = self._decide(env_decision(self.environ), None)
        state = decision.state or {}
        install_id = state.get("install_id") if _is_uuid4(state.get("install_id")) else None
        event = None
        if decision.rule in (RULE_SEND, RULE_DEBUG, RULE_BACKOFF):
            # The fields this machine decides; the rest are the host's, and per session.
            event = build_event(install_id="", session_id="", version="", adapter="", timestamp=self.now())
            event.update(
                install_id=install_id or "(assigned at the first session)",
                session_id="(new for each session)",
                version="(the host SDK's version)",
                adapter="(the host SDK's adapter, custom_python by default)",
                timestamp="(when the session starts)",
            )
        return Status(
            decision.rule == RULE_SEND,
            decision.rule,
            decision.reason,
            decision.path,
            install_id,
            decision.endpoint,
            event,
        )

    # -- sessions -------------------------------------------------------------

    def start_session(
        self, version: str, adapter: str = "custom_python", config: "Mapping[str, object] | None" = None
    ) -> "Session":
        """Start a session: decide, maybe disclose, maybe send. Never raises."""
        try:
            return self._start_session(version, adapter, config)
        except Exception as exc:  # noqa: BLE001 - never hurt the host
            try:
                _log("telemetry session failed: %r", exc)
            except Exception:  # noqa: BLE001
                pass
            return Session(False, RULE_ERROR, f"internal error: {exc.__class__.__name__}")

    def _start_session(self, version: object, adapter: object, config: object) -> "Session":
        env_off = env_decision(self.environ)
        if env_off is not None and config is None:
            return Session(False, *env_off)  # the fast path: no file, no thread, no import
        config_off = None
        try:
            choice = config_choice(config)
        except ValueError as exc:
            choice, config_off = None, f"{exc}; off for this session"
        if choice is not None:
            try:
                self._persist(disabled=not choice, replace_corrupt=not choice)
            except (OSError, StateError) as exc:
                _log("could not persist the telemetry choice: %r", exc)
            if not choice:
                config_off = 'config={"telemetry": False}'
        decision = self._decide(env_off, config_off)
        if decision.rule not in (RULE_SEND, RULE_DEBUG):  # backoff included: no event is built
            return Session(False, decision.rule, decision.reason)
        timestamp = self.now()
        if not _MIN_TIMESTAMP < timestamp < _MAX_TIMESTAMP:
            return Session(False, RULE_ERROR, "the system clock is out of range")
        state = decision.state
        if state is None or "install_id" not in state:
            state = self._claim_install_id(decision.path)
            if state is None:
                return Session(False, RULE_STATE_ERROR, f"could not create {decision.path}")
        event = build_event(
            install_id=str(state["install_id"]),
            session_id=_new_uuid4(),
            version=version,
            adapter=adapter,
            timestamp=timestamp,
        )
        import json

        body = json.dumps(event, separators=(",", ":")).encode("utf-8")
        if len(body) > _MAX_BODY_BYTES:
            return Session(False, RULE_ERROR, "event larger than 1 KiB")
        if decision.rule == RULE_DEBUG:
            self._print(body.decode("utf-8") + "\n")
            return Session(False, RULE_DEBUG, decision.reason, event)
        delivery = _Delivery(decision.endpoint, body, decision.path, self.now, self.timeout, self.post)
        delivery.start()
        return Session(True, RULE_SEND, decision.reason, event, delivery)

    def _claim_install_id(self, path: str) -> "StateDict | None":
        """The state with an install id; prints the disclosure if this call made it."""
        override = env_enables(self.environ)

        def opted_out(state: "StateDict") -> bool:
            return state.get("telemetry_disabled") is True and not override

        try:
            try:
                current = read_state(path)
            except StateError:
                return None
            if current is None:
                fresh: StateDict = {
                    "schema_version": STATE_SCHEMA_VERSION,
                    "install_id": _new_uuid4(),
                    "disclosure_shown": True,
                    "telemetry_disabled": False,
                }
                created = create_state(path, fresh, use_links=self.use_links)
                state = fresh if created else read_state(path)
            else:
                # A state without an id (written by `disable` or `enable`): only
                # one process may add it, so it is done under the lock file.
                created = False
                with _StateLock(path) as locked:
                    state = read_state(path)
                    if locked and state is not None and "install_id" not in state and not opted_out(state):
                        state.update(install_id=_new_uuid4(), disclosure_shown=True)
                        write_state(path, state)
                        created = True
        except (OSError, StateError) as exc:
            _log("could not create the telemetry state: %r", exc)
            return None
        if state is None or not _is_uuid4(state.get("install_id")) or opted_out(state):
            return None
        if created:
            self._print(disclosure_text(path))
        return state

    # -- explicit commands (these report failure) ----------------------------------

    def _persist(self, *, disabled: bool, replace_corrupt: bool) -> None:
        path = self.state_path
        try:
            state = read_state(path)
        except StateError:
            if not replace_corrupt:
                raise
            state = None
            replacing = True
        else:
            replacing = False
        if state is None:
            if not disabled and not replacing:
                return  # nothing persisted means enabled: no file to write
            state = {"schema_version": STATE_SCHEMA_VERSION}
        if not replacing and state.get("telemetry_disabled", False) is disabled:
            return
        state["telemetry_disabled"] = disabled
        write_state(path, state)

    def disable_persistently(self) -> "Status":
        """Record ``telemetry_disabled: true`` (replacing a corrupt file)."""
        self._persist(disabled=True, replace_corrupt=True)
        return self.status()

    def enable_persistently(self) -> "Status":
        """Clear a persisted opt-out (a corrupt file becomes a fresh state)."""
        self._persist(disabled=False, replace_corrupt=True)
        return self.status()

    def reset(self) -> "Status":
        """Delete the state file: a new install id and the disclosure next time.

        A persisted opt-out survives: the file is rewritten holding only it.
        """
        path = self.state_path
        try:
            kept_opt_out = (read_state(path) or {}).get("telemetry_disabled") is True
        except StateError:
            kept_opt_out = False
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        if kept_opt_out:
            write_state(path, {"schema_version": STATE_SCHEMA_VERSION, "telemetry_disabled": True})
        return self.status()


def start_session(
    version: str, adapter: str = "custom_python", config: "Mapping[str, object] | None" = None
) -> "Session":
    """Start a telemetry session for the host SDK; never raises, never blocks."""
    return Telemetry().start_session(version, adapter, config)


def session_start(adapter: str, version: str, config_pref: bool | None = None) -> "Session":
    """The call of the SDK that exists (agentsonar 0.4.0-0.7.0); never raises.

    ``config_pref`` is the host's ``config.get("telemetry")``: False persists the
    opt-out and sends nothing, True clears it and goes on, None follows the rules.
    """
    config = None if config_pref is None else {"telemetry": config_pref}
    return Telemetry().start_session(version, adapter, config)


def is_disabled() -> bool:
    """True when an opt-out decides (environment, persisted flag, untrusted state)."""
    try:
        return Telemetry().status().rule in _OPT_OUT_RULES
    except Exception:  # noqa: BLE001 - fail closed: in doubt, nothing is sent
        return True


def status() -> "Status":
    """What a session would do now, and which rule decided it."""
    return Telemetry().status()


def disable_persistently() -> "Status":
    """Turn telemetry off for this machine; raises OSError when it cannot."""
    return Telemetry().disable_persistently()


def enable_persistently() -> "Status":
    """Clear a persisted opt-out; raises OSError when it cannot."""
    return Telemetry().enable_persistently()


def reset() -> "Status":
    """Forget this machine's install id; raises OSError when it cannot."""
    return Telemetry().reset()


# --------------------------------------------------------------------------
# CLI: python -m agentsonar_telemetry status|enable|disable|reset|send
# --------------------------------------------------------------------------


def _format_status(result: "Status") -> str:
    import json

    lines = [
        f"telemetry:  {'on' if result.enabled else 'off'} ({result.reason})",
        f"rule:       {result.rule}",
        f"state file: {result.state_path}",
        f"install id: {result.install_id or '(none)'}",
        f"endpoint:   {result.endpoint}",
    ]
    if result.event is not None:
        lines.append(f"event:      {json.dumps(result.event)}")
    return "\n".join(lines)


def main(argv: "Sequence[str] | None" = None, telemetry: "Telemetry | None" = None) -> int:
    """The command line; returns the exit status (0 ok, 1 failure, 2 usage)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog=f"python -m {_module_name()}",
        description="Inspect and control AgentSonar's anonymous usage telemetry.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    status_parser = commands.add_parser("status", help="what would happen now, and why")
    status_parser.add_argument("--json", action="store_true", help="one JSON object")
    commands.add_parser("enable", help="clear a persisted opt-out")
    commands.add_parser("disable", help="turn telemetry off for this machine")
    commands.add_parser("reset", help="forget the install id (a persisted opt-out is kept)")
    send_parser = commands.add_parser("send", help="start one session as the SDK would and wait for delivery")
    send_parser.add_argument("--sdk-version", default=__version__, help="the version field (default: %(default)s)")
    send_parser.add_argument("--adapter", default="custom_python", help="the adapter field (default: %(default)s)")
    send_parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default: %(default)s)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    if args.command is None:
        parser.print_usage(sys.stderr)
        return 2
    client = telemetry or Telemetry()
    out = sys.stdout
    try:
        if args.command == "status":
            result = client.status()
            print(json.dumps(result.as_dict()) if args.json else _format_status(result), file=out)
            return 0
        if args.command in ("enable", "disable", "reset"):
            action = {
                "enable": client.enable_persistently,
                "disable": client.disable_persistently,
                "reset": client.reset,
            }
            result = action[args.command]()
            done = {"enable": "persisted opt-out cleared", "disable": "telemetry disabled", "reset": "state reset"}
            print(
                f"{done[args.command]}: {result.state_path}; now {'on' if result.enabled else 'off'} ({result.reason})",
                file=out,
            )
            return 0
        session = client.start_session(args.sdk_version, args.adapter)
        if not session.enabled:
            print(f"not sent: {session.reason}", file=out)
            return 0 if session.rule != RULE_ERROR else 1
        if session.wait(args.timeout):
            print(f"sent session {session.session_id} to {client.endpoint}", file=out)
            return 0
        print(
            f"error: the collector at {client.endpoint} did not accept the event (see backoff in status)",
            file=sys.stderr,
        )
        return 1
    except (OSError, StateError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        where = getattr(exc, "filename", None) or client.state_path
        print(f"error: {args.command} failed: {detail}: {where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
