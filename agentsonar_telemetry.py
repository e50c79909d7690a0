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
copied into another package (for example over ``agentsonar/_telemetry.py``,
whose ``session_start`` and ``is_disabled`` it keeps); the environment is read
at call time, never at import, and everything heavier than ``os`` and ``sys``
is imported where it is first needed.
"""

import _thread  # built in, loaded by every interpreter; not threading, a first session's milliseconds
import os
import sys

__version__ = "0.1.0"

__all__ = [
    "Session", "Status", "Telemetry", "__version__", "disable_persistently", "enable_persistently", "is_disabled",
    "main", "reset", "session_start", "start_session", "status",
]  # fmt: skip

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs milliseconds at import; the checker alone needs it
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, ClassVar, Literal, TextIO

    StateDict = dict[str, Any]
    # Session.rule and Status.rule: which rule decided (README.md, "Who decides").
    Rule = Literal[
        "AGENTSONAR_TELEMETRY", "DO_NOT_TRACK", "config", "telemetry_disabled", "state_error", "endpoint", "debug",
        "backoff", "backlog", "send", "error", "shutdown", "interpreter", "fork", "intercepted", "stderr",
    ]  # fmt: skip
    # What a change to state.json returns: the state to write, None to leave the file alone,
    # or "delete" to remove it.
    StateChange = Callable[[StateDict | None], "StateDict | Literal['delete'] | None"]


# ---- Constants -----------------------------------------------------------------------------------

_DEFAULT_ENDPOINT = "https://t.agent-sonar.com/v1/events"
_STATE_FILE_NAME = "state.json"
_STATE_SCHEMA_VERSION = 1
_LOGGER_NAME = "agentsonar.telemetry"

_ENV_TELEMETRY = "AGENTSONAR_TELEMETRY"
_ENV_DO_NOT_TRACK = "DO_NOT_TRACK"
_ENV_ENDPOINT = "AGENTSONAR_TELEMETRY_ENDPOINT"  # the SDK's documented name; it wins over the alias
_ENV_ENDPOINT_ALIAS = "AGENTSONAR_TELEMETRY_URL"
_ENV_STATE_DIR = "AGENTSONAR_STATE_DIR"

_OFF_VALUES = frozenset({"off", "0", "false", "no", "disabled"})
_ON_VALUES = frozenset({"on", "1", "true", "yes", "enabled"})
_DEBUG_VALUE = "debug"
_DO_NOT_TRACK_UNSET = frozenset({"", "0", "false", "no", "off"})

_OPT_OUT_RULES = frozenset({"AGENTSONAR_TELEMETRY", "DO_NOT_TRACK", "config", "telemetry_disabled", "state_error"})

_SOCKET_TIMEOUT = 2.0  # seconds: one deadline for each attempt's whole exchange
_RETRY_DELAY = 0.1  # seconds before the one retry
_EXIT_WAIT = 0.5  # seconds pending sends may delay interpreter exit, all of them together
_EXIT_WRITE_WAIT = 0.25  # seconds more for an outcome being written when that budget runs out
_FORK_WAIT = 2.0  # seconds os.fork() waits for the sender to leave what a child must not inherit
_MAX_PENDING = 10_000  # events a process holds unsent: sessions faster than the collector never grow it
_SENDER_STACK = 256 * 1024  # bytes of stack the sender thread has at least: TLS takes over 40 KiB on 3.13
_BACKOFF_INITIAL = 3600.0  # one hour after the first failed episode
_BACKOFF_MAX = 7 * 24 * 3600.0  # doubling stops at seven days

_MAX_STATE_BYTES = 64 * 1024
_MAX_STATE_DEPTH = 32  # JSON nested deeper is corrupt: rewriting it would recurse past the stack
_MIN_TIMESTAMP = 1.5e9
_MAX_TIMESTAMP = 4.1e9
_LOCK_STALE_SECONDS = 30.0
_LOCK_WAIT_SECONDS = 0.25
_REPLACE_TRIES = 10 if os.name == "nt" else 1  # a Windows reader holding the file blocks a replace

_VERSION_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.+_-")
_NAME_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyz_")
_HEX = frozenset("0123456789abcdef")
_JSON_SPACE = " \t\n\r"
# contract/normalization.json holds the same table; the collector applies it to what
# released SDKs send raw, and a test keeps these two lines equal to it.
_ARCH_ALIASES = {"aarch64": "arm64", "amd64": "x86_64", "x64": "x86_64"}
_OS_KEEPING_DIGITS = frozenset({"win32"})
# Where the sockets and HTTP connections a send goes through may come from (_transport_replaced).
_TRANSPORT_MODULES = frozenset({"socket", "http.client", "gevent.socket", "gevent._socket3"})

# The eight fields of the contract, in the order they are sent.
_EVENT_FIELDS = ("install_id", "session_id", "version", "python", "os", "arch", "adapter", "timestamp")


# ---- The event's fields, checked without ``re`` (its ``$`` accepts a trailing newline; the contract does not) ----


def _is_version(value: object) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= 32 and set(value) <= _VERSION_CHARS


def _is_adapter(value: object) -> bool:
    """``^[a-z][a-z0-9_]{0,31}$``."""
    return isinstance(value, str) and 1 <= len(value) <= 32 and "a" <= value[0] <= "z" and set(value) <= _NAME_CHARS


def _is_os_or_arch(value: str) -> bool:
    """``^[a-z0-9_]{1,16}$``."""
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


def _normalize_os(platform: str) -> str:
    """The ``sys.platform`` family: ``linux``, ``darwin``, ``win32``, ``freebsd`` ..."""
    value = platform.strip().lower()
    if value not in _OS_KEEPING_DIGITS:
        value = value.rstrip("0123456789")  # freebsd14 -> freebsd, linux2 -> linux
    return value if _is_os_or_arch(value) else "unknown"


def _normalize_arch(machine: str) -> str:
    """``arm64`` and ``x86_64`` under one name whatever the OS calls them."""
    value = machine.strip().lower()
    value = _ARCH_ALIASES.get(value, value)
    return value if _is_os_or_arch(value) else "unknown"


def _machine(environ: "Mapping[str, str]", platform: str) -> str:
    if platform == "win32":
        # Never platform.machine(): on Windows it runs `cmd /c ver` or WMI queries on the
        # host's thread (seconds without WMI rights, cpython#112278). W6432 is the real
        # machine when a 32-bit Python runs on a 64-bit Windows.
        return environ.get("PROCESSOR_ARCHITEW6432", "") or environ.get("PROCESSOR_ARCHITECTURE", "")
    uname = getattr(os, "uname", None)
    return uname().machine if uname is not None else ""


def _platform_fields(environ: "Mapping[str, str]", platform: str | None = None) -> dict[str, object]:
    """The fields this machine decides: python, os and arch (*platform*: ``sys.platform``)."""
    platform = sys.platform if platform is None else platform
    return {
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "os": _normalize_os(platform),
        "arch": _normalize_arch(_machine(environ, platform)),
    }


def _build_event(
    environ: "Mapping[str, str]", install_id: str, version: object, adapter: object, timestamp: float
) -> dict[str, object]:
    """The contract's event; a bad ``version`` or ``adapter`` becomes ``unknown``."""
    return {
        "install_id": install_id,
        "session_id": _new_uuid4(),
        "version": version if _is_version(version) else "unknown",
        **_platform_fields(environ),
        "adapter": adapter if _is_adapter(adapter) else "unknown",
        "timestamp": round(timestamp, 3),
    }


# ---- JSON without ``json``: its decoder imports ``re``, 8 ms of a first session ------------------


def _json_text(data: "Mapping[str, object]", *, indent: bool = False) -> str:
    """What ``json.dumps(data)`` gives (``indent=2, sort_keys=True`` when *indent*, else compact),
    written here for the flat objects this module writes; anything else goes to ``json`` itself."""
    from _json import encode_basestring_ascii as quote

    items = []
    for key in sorted(data) if indent else data:
        value = data[key]
        if isinstance(value, bool) or value is None:
            text = {True: "true", False: "false", None: "null"}[value]
        elif isinstance(value, str):
            text = quote(value)
        elif type(value) in (int, float) and value - value == 0:  # type: ignore[operator]  # finite
            text = repr(value)
        else:  # nested, non-finite or unusual: only a state another program wrote holds these
            import json

            separators = None if indent else (",", ":")
            return json.dumps(dict(data), indent=2 if indent else None, sort_keys=indent, separators=separators)
        items.append(f"{quote(key)}{': ' if indent else ':'}{text}")
    if not indent:
        return "{" + ",".join(items) + "}"
    return "{\n  " + ",\n  ".join(items) + "\n}" if items else "{}"


def _nests_deeper_than(text: str, limit: int) -> bool:
    """Whether JSON *text* nests arrays and objects more than *limit* deep, counted before it is
    parsed: the C scanner recurses on the C stack, and on 3.13 JSON nested 32,000 deep (64 KiB) overflows
    a thread stack of 1 MiB (a segfault) before any RecursionError."""
    if text.count("[") + text.count("{") <= limit:
        return False  # every state this module writes: one flat object
    depth = 0
    in_string = False
    for piece in text.split('"'):
        if in_string:  # still inside when this quote was escaped (an odd run of backslashes)
            in_string = (len(piece) - len(piece.rstrip("\\"))) % 2 == 1
            continue
        for char in piece:
            if char in "[{":
                depth += 1
                if depth > limit:
                    return True
            elif char in "]}":
                depth -= 1
        in_string = True
    return False


def _parse_json(text: str) -> object:
    """``json.loads(text)`` through the C scanner ``json`` itself uses, NaN and Infinity refused;
    ValueError or RecursionError when it is not JSON."""
    if not _JSON_SCANNER:
        from _json import make_scanner

        class Rules:  # what json.JSONDecoder hands its scanner
            strict = True
            object_hook = object_pairs_hook = None
            parse_float, parse_int = float, int

            @staticmethod
            def parse_constant(name: str) -> float:
                raise ValueError(f"{name} is not a number")

        _JSON_SCANNER.append(make_scanner(Rules))  # type: ignore[arg-type]  # it reads attributes
    start = len(text) - len(text.lstrip(_JSON_SPACE))
    try:
        value, end = _JSON_SCANNER[0](text, start)
    except StopIteration:
        raise ValueError("no JSON value") from None
    if text[end:].strip(_JSON_SPACE):
        raise ValueError("more after the JSON value")
    return value


_JSON_SCANNER: "list[Callable[[str, int], tuple[object, int]]]" = []  # made by the first read


# ---- Decision: which rule turns telemetry off (DESIGN.md, first match wins) ----------------------


def _abbreviated(value: str) -> str:
    """A setting as reasons quote it: stripped, at most 40 characters."""
    value = value.strip()
    return value if len(value) <= 40 else value[:37] + "..."


def _env_decision(environ: "Mapping[str, str]") -> "tuple[Rule, str] | None":
    """``(rule, reason)`` when the environment turns telemetry off, else None."""
    raw = environ.get(_ENV_TELEMETRY, "")
    value = raw.strip().lower()
    if value and value not in _ON_VALUES and value != _DEBUG_VALUE:
        if value in _OFF_VALUES:
            return "AGENTSONAR_TELEMETRY", f"{_ENV_TELEMETRY}={_abbreviated(raw)}"
        return "AGENTSONAR_TELEMETRY", f"{_ENV_TELEMETRY}={_abbreviated(raw)} is not a recognised value, so off"
    dnt = environ.get(_ENV_DO_NOT_TRACK, "")
    if dnt.strip().lower() not in _DO_NOT_TRACK_UNSET:
        return "DO_NOT_TRACK", f"{_ENV_DO_NOT_TRACK}={_abbreviated(dnt)}"
    return None


def _env_overrides_opt_out(environ: "Mapping[str, str]") -> bool:
    """An on-value of ``AGENTSONAR_TELEMETRY`` overrides a persisted opt-out (rule 4)."""
    return environ.get(_ENV_TELEMETRY, "").strip().lower() in _ON_VALUES


def _is_debug(environ: "Mapping[str, str]") -> bool:
    return environ.get(_ENV_TELEMETRY, "").strip().lower() == _DEBUG_VALUE


def _config_choice(config: object) -> bool | None:
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


def _endpoint_problem(endpoint: str) -> str | None:
    """Why this endpoint may not be used, or None when it may.

    Parsed by hand: urllib.parse would cost the host's thread milliseconds of imports.
    """
    if endpoint == _DEFAULT_ENDPOINT:
        return None
    if not (endpoint.isascii() and endpoint.isprintable()) or " " in endpoint or len(endpoint) > 2048:
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


# ---- State: ~/.agentsonar/state.json -------------------------------------------------------------


class _StateError(Exception):
    """The state file exists but cannot be trusted (unreadable or corrupt)."""


def _validate_state(data: object) -> "StateDict":
    if not isinstance(data, dict):
        raise _StateError(f"not a JSON object but {type(data).__name__}")
    version = data.get("schema_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise _StateError("schema_version is not an integer")
    if "install_id" in data and not _is_uuid4(data["install_id"]):
        raise _StateError("install_id is not a lowercase UUID4")
    for key in ("disclosure_shown", "telemetry_disabled"):
        if key in data and not isinstance(data[key], bool):
            raise _StateError(f"{key} is not true or false")
    for key in ("backoff_until", "backoff_seconds"):
        value = data.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e12:
            raise _StateError(f"{key} is not a non-negative number")
    return data


def _read_state(path: str) -> "StateDict | None":
    """The state at *path*, None when absent; _StateError when not trustworthy."""
    import stat

    # O_NONBLOCK: a FIFO or a device named state.json must not block the host in open().
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # ValueError: a NUL, which only a mapping passed in can hold
        detail = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise _StateError(f"unreadable ({detail or exc.__class__.__name__})") from None
    raw = b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _StateError("not a regular file")
        while len(raw) <= _MAX_STATE_BYTES:
            chunk = os.read(fd, _MAX_STATE_BYTES + 1 - len(raw))
            if not chunk:
                break
            raw += chunk
    except OSError as exc:
        raise _StateError(f"unreadable ({exc.strerror or exc.__class__.__name__})") from None
    finally:
        os.close(fd)
    if len(raw) > _MAX_STATE_BYTES:
        raise _StateError("larger than 64 KiB")
    try:
        text = raw.decode("utf-8")
        if _nests_deeper_than(text, _MAX_STATE_DEPTH):
            raise _StateError(f"nested more than {_MAX_STATE_DEPTH} levels deep")
        data = _parse_json(text)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise _StateError("not valid JSON") from None
    return _validate_state(data)


def _make_dirs(directory: str) -> None:
    """Create *directory* and missing parents; each one this creates is 0700, others keep their mode.

    A loop, not recursion: a path of 1,500 parts would recurse past the limit, and past a small
    thread stack on 3.10 (a segfault with 256 KiB)."""
    missing = []
    while directory and not os.path.isdir(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        directory = "" if parent == directory else parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue
        os.chmod(directory, 0o700)  # the umask may have taken bits away; it may never add any


def _create_file(path: str) -> int:
    """A new file of mode 0600 open for writing (FileExistsError when *path* exists), whatever the
    host's umask: one taking the owner's bits (0o777, while a daemon makes a private socket) left a
    state file nobody could read again, and a lock naming its holder to nobody."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
    except (AttributeError, OSError):  # no fchmod (Windows before 3.13); a file system without modes
        pass
    except BaseException:  # Ctrl-C, say: the file is this call's, named by nobody yet
        os.close(fd)
        _unlink_quietly(path)
        raise
    return fd


def _write_temp(directory: str, state: "Mapping[str, object]") -> str:
    """A fsynced 0600 file with *state* beside the state file; removed again on failure."""
    name = os.path.join(directory, f".{_STATE_FILE_NAME}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:  # the open too: a Ctrl-C as it returns would leave the file (the name is this call's alone)
        fd = _create_file(name)
        with os.fdopen(fd, "wb") as f:
            f.write((_json_text(state, indent=True) + "\n").encode("utf-8"))
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


def _write_state(path: str, state: "Mapping[str, object]") -> None:
    """Atomically replace the state file (temp file, fsync, os.replace); a symlinked state.json
    is written through to its target, and stays a link."""
    if os.path.islink(path):
        path = os.path.realpath(path)
    directory = os.path.dirname(path)
    _make_dirs(directory)
    tmp = _write_temp(directory, state)
    try:
        for attempt in range(1, _REPLACE_TRIES + 1):
            try:
                os.replace(tmp, path)
                break
            except PermissionError:
                if attempt == _REPLACE_TRIES:
                    raise
                import time

                time.sleep(0.01 * attempt)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _create_state(path: str, state: "Mapping[str, object]", *, use_links: bool) -> bool:
    """Create *path* only if absent; True when this call created it.

    The complete, fsynced file is hard-linked into place, so other processes
    never see a half-written state.  Where links are unsupported an O_EXCL lock
    file beside it serialises creators instead.
    """
    directory = os.path.dirname(path)
    _make_dirs(directory)
    if use_links and hasattr(os, "link"):
        import errno

        tmp = _write_temp(directory, state)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in {errno.EPERM, errno.EXDEV, errno.ENOSYS, errno.EMLINK, errno.EOPNOTSUPP, errno.EACCES}:
                raise  # a failure, not a file system without hard links
        finally:
            _unlink_quietly(tmp)
    try:
        with _StateLock(path):
            if os.path.lexists(path):
                return False
            _write_state(path, state)
            return True
    except TimeoutError:
        return False  # another process is creating it


def _system_clock(monotonic: bool = True) -> float:
    """Seconds on the system's monotonic (or wall) clock, through time.clock_gettime where there
    is one: freezegun replaces time.monotonic and time.time in a host's tests, and a frozen clock
    would make our bounded waits unbounded and a live lock look abandoned."""
    import time

    if not hasattr(time, "clock_gettime"):  # Windows
        return time.monotonic() if monotonic else time.time()
    return time.clock_gettime(time.CLOCK_MONOTONIC if monotonic else time.CLOCK_REALTIME)


def _pid_space() -> str:
    """Where a pid names one process: the host name, and on Linux the pid namespace too (a
    container that shares the host's name, as under ``docker run --network host``, numbers its
    processes apart, and a live holder's pid would look dead from there)."""
    if os.name == "nt":
        return os.environ.get("COMPUTERNAME", "")
    try:
        return f"{os.uname().nodename}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return os.uname().nodename


class _StateLock:
    """O_EXCL lock file ``state.json.lock`` naming its holder (pid, pid space, time); never taken on
    state.json itself.

    A holder in this pid space whose process is gone (killed, crashed, ``os._exit`` mid-write)
    is broken at once, with the temp files its pid left; a holder elsewhere (another host, or
    another pid namespace on this one) after _LOCK_STALE_SECONDS. One breaker at a time (an
    O_EXCL ``.break`` file) re-reads the holder inside, so two processes are never inside at
    once. A live holder is waited for at most _LOCK_WAIT_SECONDS, then TimeoutError.
    """

    def __init__(self, path: str) -> None:
        self.lock_path = path + ".lock"

    def __enter__(self) -> None:
        import time

        deadline = _system_clock() + _LOCK_WAIT_SECONDS
        holder = f"{os.getpid()} {_pid_space()} {_system_clock(False):.3f}\n".encode("utf-8", "backslashreplace")
        while True:
            try:
                fd = _create_file(self.lock_path)
            except FileExistsError:
                if self._break_if_abandoned():
                    continue
                if _system_clock() > deadline:
                    import errno

                    raise TimeoutError(errno.ETIMEDOUT, "held by another process", self.lock_path) from None
                time.sleep(0.005)
                continue
            try:
                try:
                    os.write(fd, holder)
                finally:
                    os.close(fd)
            except BaseException:  # Ctrl-C, say: a lock naming nobody, or this live process, stays
                _unlink_quietly(self.lock_path)
                raise
            return

    def __exit__(self, *exc_info: object) -> None:
        _unlink_quietly(self.lock_path)

    def _holder(self) -> "tuple[str, float] | None":
        """What the lock file says (pid, pid space, time) and its age in seconds; None when it is gone."""
        try:
            fd = os.open(self.lock_path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            return None
        try:
            return os.read(fd, 512).decode("utf-8", "replace"), _system_clock(False) - os.fstat(fd).st_mtime
        finally:
            os.close(fd)

    @staticmethod
    def _abandoned_by(holder: "tuple[str, float]") -> "int | None":
        """The pid of a holder that will never release the lock (0: unnamed); None when it may."""
        fields = holder[0].split()
        pid = int(fields[0]) if fields and fields[0].isdigit() else 0
        if pid > 0 and len(fields) > 1 and fields[1] == _pid_space() and os.name != "nt":
            try:
                os.kill(pid, 0)  # never on Windows, where it ends the process
            except ProcessLookupError:
                return pid
            except OSError:
                pass  # it exists (another user's, say)
        return pid if holder[1] > _LOCK_STALE_SECONDS else None  # elsewhere, or not yet named: by age

    def _break_if_abandoned(self) -> bool:
        """True when the lock is free now (released, or broken here): try again at once."""
        breaker = self.lock_path + ".break"
        try:
            holder = self._holder()
            if holder is None:
                return True
            pid = self._abandoned_by(holder)
            if pid is None:
                return False
            try:
                os.close(_create_file(breaker))
            except FileExistsError:
                if _system_clock(False) - os.stat(breaker).st_mtime > _LOCK_STALE_SECONDS:
                    _unlink_quietly(breaker)  # a breaker that died breaking
                return False
            try:
                again = self._holder()  # inside: nobody else breaks, and a dead holder cannot release
                if again is None:
                    return True
                if again[0] != holder[0] or self._abandoned_by(again) is None:
                    return False
                os.unlink(self.lock_path)
            finally:
                _unlink_quietly(breaker)
            directory, name = os.path.split(self.lock_path[: -len(".lock")])
            for entry in os.listdir(directory) if pid else ():
                if entry.startswith(f".{name}.{pid}.") and entry.endswith(".tmp"):
                    _unlink_quietly(os.path.join(directory, entry))
            return True
        except OSError:
            return False


def _update_state(path: str, change: "StateChange", *, replace_corrupt: bool = False) -> "StateDict | None":
    """The one read-modify-write of state.json: under the lock file, re-reading inside it.

    *change* gets the state as it is now (None when absent; a fresh one in place of a
    corrupt file when *replace_corrupt*, else _StateError). Returns the state as left.
    A missing state directory means there is nothing to change, unless *change* writes
    a state where there was none. Raises OSError when the lock cannot be had, or the state
    may not be kept there (_state_dir_problem).
    """
    directory = os.path.dirname(path)
    problem = _state_dir_problem(path)
    if problem is not None:
        import errno

        raise PermissionError(errno.EACCES, f"the state directory is {problem}", directory)
    if not os.path.isdir(directory):
        try:
            absent = _read_state(path) is None  # or why it cannot be reached
        except _StateError:
            if not replace_corrupt:
                raise
            absent = False
        if absent and not isinstance(change(None), dict):
            return None
        _make_dirs(directory)  # raises when it cannot be made
    with _StateLock(path):
        try:
            current = _read_state(path)
        except _StateError:
            if not replace_corrupt:
                raise
            current = {"schema_version": _STATE_SCHEMA_VERSION}
        new = change(current)
        if new == "delete" and os.path.islink(path):
            new = {"schema_version": _STATE_SCHEMA_VERSION}  # forgotten through the link, which stays
        if new == "delete":
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            return None
        if new is None:
            return current
        _write_state(path, new)
        return new


def _state_dir_problem(path: str) -> str | None:
    """Why the state may not be kept at *path* (its directory made when missing), or None.

    Never relative to the host's working directory, where each directory a process starts in
    would hold its own opt-out: a relative AGENTSONAR_STATE_DIR, or "~" left as it is with HOME
    unset and no passwd entry (a container's --user 12345, systemd's DynamicUser). Root keeps none
    in another user's directory (``sudo`` keeping ``HOME``, as macOS's does): what it wrote
    there would be root's, and lock that user out of their own state.
    """
    if not os.path.isabs(path):
        return f"not absolute: {_ENV_STATE_DIR}, or HOME when it is unset, must be an absolute path"
    if "\0" in path:  # only a mapping passed in can hold one; os.* would raise ValueError, not OSError
        return "not a path: it holds a NUL character"
    probe = os.path.dirname(path)
    while not os.path.exists(probe):
        if os.path.dirname(probe) == probe:
            return "not writable"  # a Windows drive that is not there
        probe = os.path.dirname(probe)
    if not (os.path.isdir(probe) and os.access(probe, os.W_OK | os.X_OK)):
        return "not writable"
    geteuid = getattr(os, "geteuid", None)  # absent on Windows and WASI
    owner = os.stat(probe).st_uid if geteuid is not None and geteuid() == 0 else 0
    if owner:
        return f"user {owner}'s, and this is root: run it without sudo, or with sudo -H"
    return None


def _in_backoff(state: "Mapping[str, object] | None", now: float) -> bool:
    if not state:
        return False
    until = state.get("backoff_until", 0)
    # A deadline further off than the longest backoff means the clock moved back.
    return isinstance(until, (int, float)) and 0 < until - now <= _BACKOFF_MAX


def _record_outcome(path: str, delivered: bool, now: float) -> None:
    """A success clears a backoff (the common case writes nothing); a failure moves it one step:
    an hour, doubling up to seven days. A failure while the state is in backoff already moves
    nothing: another process recorded this outage (a server's workers fail together)."""
    if delivered:
        try:
            state = _read_state(path)
        except _StateError:
            return
        if state is None or ("backoff_until" not in state and "backoff_seconds" not in state):
            return

    def change(current: "StateDict | None") -> "StateDict | None":
        if current is None:
            return None  # reset while we were sending: do not bring the file back
        if delivered:
            current.pop("backoff_until", None)
            current.pop("backoff_seconds", None)
            return current
        if _in_backoff(current, now):
            return None
        previous = current.get("backoff_seconds", 0)
        seconds = _BACKOFF_INITIAL
        if isinstance(previous, (int, float)) and previous >= _BACKOFF_INITIAL:
            seconds = min(float(previous) * 2, _BACKOFF_MAX)
        current.update(backoff_seconds=seconds, backoff_until=round(now + seconds, 3))
        return current

    try:
        _update_state(path, change)
    except (OSError, _StateError) as exc:  # never overwrite a file we cannot read
        _log("could not record the telemetry outcome: %r", exc)


# ---- Disclosure ----------------------------------------------------------------------------------


def _disclosure_due(state: "Mapping[str, object] | None") -> bool:
    """Whether a session with *state* shows the disclosure first: no install id yet, or
    ``disclosure_shown`` not true (a file an older SDK or ``enable`` wrote, or one owed)."""
    return state is None or "install_id" not in state or state.get("disclosure_shown") is not True


def _file_under(stream: "TextIO | None") -> "Any":
    """The file *stream* writes to when it is a plain text stream (``io.TextIOWrapper`` itself, as
    sys.stderr and open() give), else None: a host's own stream may write elsewhere than the file it
    names (ipykernel's names the kernel's stderr, the null device under JupyterHub, and writes to
    the notebook)."""
    import io

    if type(stream) is not io.TextIOWrapper:
        return None
    try:
        buffer = stream.buffer
    except ValueError:  # detached
        return None
    raw = getattr(buffer, "raw", buffer)
    return raw if isinstance(raw, io.RawIOBase) else None


def _non_blocking_file(stream: "TextIO") -> "Any":
    """The file under *stream* when that file is non-blocking (a pipe or terminal shared with
    Node.js, which sets O_NONBLOCK), else None. What such a file cannot take, sys.stderr drops
    without a word when it is unbuffered (``PYTHONUNBUFFERED``, as container images set it), and
    otherwise keeps in its buffer, where it fails the host's exit (status 120) or comes out later."""
    raw = _file_under(stream)
    try:
        return raw if raw is not None and not os.get_blocking(raw.fileno()) else None
    except (AttributeError, OSError, ValueError):  # no os.get_blocking on Windows before 3.12; closed
        return None


def _write_text(stream: "TextIO", text: str) -> bool:
    """Write and flush (a stream may have no flush); what it cannot encode is backslash-escaped.
    False, never an exception, when the stream is closed or fails, or its file could not take it all."""
    try:
        raw = _non_blocking_file(stream)
        if raw is not None:  # written to the file itself, which says how much it took, once the host's is out
            data = text.encode(getattr(stream, "encoding", None) or "utf-8", "backslashreplace")
            stream.flush()
            return bool(raw.write(data) == len(data))  # None when it took nothing
        try:
            stream.write(text)
        except UnicodeEncodeError:
            encoding = getattr(stream, "encoding", None) or "utf-8"
            stream.write(text.encode(encoding, "backslashreplace").decode(encoding, "replace"))
        flush = getattr(stream, "flush", None)  # a host's own stream may have write() alone
        if flush is not None:
            flush()
        return True
    except Exception:  # noqa: BLE001 - a closed or missing stream is the host's business
        return False


def _module_name() -> str:
    spec = globals().get("__spec__")
    name = getattr(spec, "name", None) or __name__
    return "agentsonar_telemetry" if name == "__main__" else str(name)


def _disclosure_text(state_path: str) -> str:
    cli = f"python -m {_module_name()}"
    return (
        "AgentSonar collects anonymous usage telemetry: one event per session with a random\n"
        "install id, a session id, the SDK version, Python version, OS, CPU architecture and\n"
        "adapter name. It never sends code, prompts, agent data, file paths, host or user\n"
        "names, and the collector stores no IP address.\n"
        f"Turn it off with {_ENV_TELEMETRY}=off or {_ENV_DO_NOT_TRACK}=1, with\n"
        f'config={{"telemetry": False}}, or `{cli} disable`. Delete {state_path}\n'
        f"(or `{cli} reset`) to forget this install id. This notice is shown once.\n"
    )


# ---- Sending -------------------------------------------------------------------------------------


def _log(message: str, *args: object) -> None:
    # Until the host imports logging nobody can have configured it, so the message would go
    # nowhere; importing it here would also register its fork handlers from the sender thread.
    logging = sys.modules.get("logging")
    if logging is None:
        return
    try:
        logging.getLogger(_LOGGER_NAME).debug(message, *args)
    except Exception:  # noqa: BLE001 - a host's filter or handler that raises: never a traceback of ours
        pass


def _post_event(endpoint: str, body: bytes, timeout: float) -> int:
    """POST *body* once; the status of the answer's status line (a 3xx too), or an exception
    for no answer.

    One deadline of *timeout* seconds bounds the exchange (DNS aside): each connect, send and
    receive gets what is left of it, so a collector trickling bytes cannot hold the attempt
    open. A status line that came is the answer, whatever the headers and body then do.
    Redirects are not followed; proxies from the environment are honoured and TLS is verified
    by urllib's defaults, read afresh for each send.
    """
    import http.client
    import socket
    import ssl
    import urllib.error
    import urllib.request

    deadline = _system_clock() + timeout
    answered: list[int] = []

    def left() -> float:
        remaining = deadline - _system_clock()
        if remaining <= 0:
            raise TimeoutError(f"no answer within {timeout} s")
        return remaining

    class BoundedSocket(socket.socket):  # keywords passed on: gevent's sendall calls send(timeout=)
        def recv_into(self, *args: "Any", **kwargs: "Any") -> int:
            self.settimeout(left())
            return super().recv_into(*args, **kwargs)

        def send(self, *args: "Any", **kwargs: "Any") -> int:  # SSLSocket.sendall sends through this
            self.settimeout(left())
            return super().send(*args, **kwargs)

        def sendall(self, *args: "Any", **kwargs: "Any") -> None:
            self.settimeout(left())
            super().sendall(*args, **kwargs)

    class BoundedTLSSocket(BoundedSocket, ssl.SSLSocket):
        pass

    def bounded_connection(address: "tuple[str, int]", *args: "Any") -> socket.socket:
        plain = socket.create_connection(address, left())
        sock = BoundedSocket(plain.family, plain.type, plain.proto, plain.detach())
        sock.settimeout(left())  # the TLS handshake's own deadline
        return sock

    class Response(http.client.HTTPResponse):
        def _read_status(self) -> "Any":
            version, status, reason = super()._read_status()  # type: ignore[misc]  # private, 3.10 to 3.13
            if version.startswith("HTTP/1.") and status >= 200:  # not a 100 Continue
                answered.append(status)
            return version, status, reason

    class HTTPConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self._create_connection = bounded_connection
            super().connect()

        def getresponse(self) -> http.client.HTTPResponse:
            self.response_class = Response  # the collector's answer, not a proxy's to CONNECT
            return super().getresponse()

    class HTTPSConnection(HTTPConnection, http.client.HTTPSConnection):
        pass

    class Handler(urllib.request.HTTPHandler, urllib.request.HTTPSHandler):  # replaces both defaults
        def http_open(self, req: "Any") -> "Any":
            return self.do_open(HTTPConnection, req)

        def https_open(self, req: "Any") -> "Any":
            return self.do_open(HTTPSConnection, req, context=context)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: "Any", **kwargs: "Any") -> None:
            return None

    # Building a TLS context loads the CA certificates holding OpenSSL's locks (see _Sender), so
    # it happens under the fork guard, and only for https (3.12+ builds one for http too).
    _Sender.fork_guard.acquire()
    try:
        context = None
        if endpoint[:8].lower() == "https://":
            context = ssl.create_default_context()
            context.sslsocket_class = BoundedTLSSocket
        opener = urllib.request.build_opener(NoRedirect, Handler)
    finally:
        _Sender.leave_fork_guard()
    request = urllib.request.Request(
        endpoint,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"agentsonar-telemetry/{__version__}"},
    )
    try:
        opener.open(request, timeout=timeout).close()  # the body is never read
    except urllib.error.HTTPError as exc:  # a 3xx, 4xx or 5xx: its status line was recorded
        exc.close()
    except Exception:
        if not answered:
            raise
    return answered[-1]  # the status line came: a reset or a stall after it changes nothing


class _Delivery:
    """One session's event on its way; settled once, by whoever settles it first (_Sender.settle)."""

    __slots__ = ("body", "clock", "delivered", "endpoint", "number", "settled", "state_path", "timeout", "unsettled")

    def __init__(
        self, endpoint: str, body: bytes, state_path: str, timeout: float, clock: "Callable[[], float]"
    ) -> None:
        self.endpoint = endpoint
        self.body = body
        self.state_path = state_path
        self.timeout = timeout
        self.clock = clock
        self.delivered = self.settled = False
        self.unsettled = _thread.allocate_lock()  # held until settled: waiting is acquiring it
        self.unsettled.acquire()
        self.number = 0  # its place in this process's sends (_Sender.submit)

    def wait(self, timeout: float | None) -> bool:
        """Whether it was settled within *timeout* seconds (None: however long it takes)."""
        if self.settled:  # the common case, and immune to a waiter interrupted holding the lock
            return True
        if _Sender.forked_without_hooks():  # inherited from the parent: never settles here
            return True
        limit = -1 if timeout is None else min(max(timeout, 0.0), _thread.TIMEOUT_MAX)
        if not self.unsettled.acquire(True, limit):
            return False
        self.unsettled.release()  # for the next waiter
        return True

    def settle(self, delivered: bool) -> None:
        self.delivered, self.settled = delivered, True
        self.unsettled.release()

    def attempt(self) -> tuple[bool, bool]:
        """(delivered, worth a retry): a connection error, a timeout, a malformed answer, 429 or a
        5xx are; a certificate that fails verification, a 3xx or another 4xx are not."""
        try:
            status = _post_event(self.endpoint, self.body, self.timeout)
        except Exception as exc:  # noqa: BLE001 - refused, timed out, malformed: all mean "not delivered"
            import ssl

            _log("telemetry send to %s failed: %r", self.endpoint, exc)
            return False, not isinstance(getattr(exc, "reason", exc), ssl.SSLCertVerificationError)
        if not 200 <= status <= 299:
            _log("telemetry send to %s answered %s", self.endpoint, status)
        return 200 <= status <= 299, status == 429 or 500 <= status <= 599


class _Sender:
    """This interpreter's sender: a thread that exists only while it has work, its queue, and
    its failure episodes.

    A session appends its event to a list (append and pop are reentrant, like
    queue.SimpleQueue's put and get: a signal handler may start a session while the host is
    inside one) and starts the thread if none runs, taking no lock that the thread or an
    interrupted caller may hold (a lock it only tries). The thread sends the events one after
    another and ends when the queue is empty. A failure is one episode per state file: it moves
    the backoff one step, and every event queued for that file before it was recorded is
    settled without the network. At exit one budget of _EXIT_WAIT seconds covers everything
    pending, and what is left is one failure. A forked child starts afresh.

    What every session shares is made at import (the end of the module) from the _thread
    built-ins, never by a first session: many threads starting their first session at once
    find one lock, one queue, one set of hooks.
    """

    lock: "Any" = None  # whether a thread runs; the host's path only tries it
    # Held while the thread imports what it needs and while it builds a TLS context, and by
    # os.fork() around the fork: a child forked in the middle would inherit half-initialised
    # modules, or OpenSSL's locks held while the CA certificates load, and hang. Made once, at
    # import: the at-fork hooks hold its methods.
    fork_guard: "Any" = None
    exit_not_started: "Any" = None  # held until the exit wait starts; the retry's pause waits on it
    queue: "ClassVar[list[_Delivery]]"
    pending: "ClassVar[dict[int, _Delivery]]"  # queued or in flight, not yet settled
    # Per state file: the sends numbered below this were queued when its last episode failed.
    failed_before: "ClassVar[dict[str, int]]"
    next_number = 0
    pid = 0  # the process this state is for; another in a child forked without our hooks
    running = False
    exiting = False  # set when the exit wait starts: later sessions could not be waited for
    multiprocessing_checked = False  # whether this process looked for multiprocessing's exit (once each)

    @classmethod
    def reset(cls) -> None:
        cls.pid = os.getpid()
        cls.lock, cls.exit_not_started = _thread.allocate_lock(), _thread.allocate_lock()
        cls.exit_not_started.acquire()
        cls.pending, cls.failed_before = {}, {}
        cls.queue = []  # append and pop(0): single C calls, so reentrant; only the thread pops
        cls.next_number, cls.running, cls.exiting, cls.multiprocessing_checked = 0, False, False, False

    @classmethod
    def submit(cls, delivery: "_Delivery") -> bool:
        """Queue *delivery*; False when no thread could start (the host is out of threads or
        memory): then nothing queued can go, and it is all dropped, unrecorded, not left for
        the exit wait."""
        if not cls.multiprocessing_checked:
            cls.join_multiprocessing_exit()
        # Single dict and list operations: atomic under the GIL, safe from a signal handler (a
        # number taken twice by an interrupted session only makes two sends share a number).
        delivery.number = cls.next_number
        cls.next_number = delivery.number + 1
        cls.pending[id(delivery)] = delivery
        cls.queue.append(delivery)
        if not cls.lock.acquire(False):
            return True  # its holder (the thread, or the session this one interrupted) sees the queue
        try:
            if not cls.running:
                cls.start_thread()
                cls.running = True
            return True
        except Exception as exc:  # noqa: BLE001 - "can't start new thread", or no memory for one
            _log("could not start the telemetry sender: %r", exc)
            orphans = cls.queue[:]
            del cls.queue[: len(orphans)]
            for orphan in orphans:
                if cls.pending.pop(id(orphan), None) is not None:
                    orphan.settle(False)
            return False
        finally:
            cls.lock.release()

    @classmethod
    def start_thread(cls) -> None:
        """Start the thread with a stack of at least _SENDER_STACK. A host's threading.stack_size(),
        as servers with many threads set it, applies to every thread started after it: 32 KiB (the
        smallest allowed) segfaulted the host in the sender's imports or TLS handshake. A host thread
        starting one of its own within these few lines gets the platform's size, or ours."""
        host_size = _thread.stack_size(0)  # read by setting it: 0, the platform's default, for most hosts
        if not host_size:
            _thread.start_new_thread(cls._loop, ())
            return
        _thread.stack_size(max(host_size, _SENDER_STACK))
        try:
            _thread.start_new_thread(cls._loop, ())
        finally:
            _thread.stack_size(host_size)

    @classmethod
    def _loop(cls) -> None:
        try:
            cls.fork_guard.acquire()
            try:
                import encodings.idna  # noqa: F401 - what the first connection would import
                import http.client  # noqa: F401
                import ssl  # noqa: F401
                import urllib.request  # noqa: F401
            except ImportError:
                pass  # a Python built without ssl: each send then fails at once, as a failure
            finally:
                cls.leave_fork_guard()
            while True:
                delivery = cls._next()
                if delivery is None:
                    return
                if delivery.number < cls.failed_before.get(delivery.state_path, -1):
                    cls.settle([delivery], False)  # queued when its file's episode failed: off the network
                    continue
                if _transport_replaced():  # since its session (a cassette opened): unsent, and nobody failed
                    if cls.pending.pop(id(delivery), None) is not None:
                        delivery.settle(False)
                    continue
                delivered = False
                try:
                    delivered, retry = delivery.attempt()
                    if not delivered and retry:
                        if cls.exit_not_started.acquire(timeout=_RETRY_DELAY):  # exiting: no pause
                            cls.exit_not_started.release()
                        delivered, _ = delivery.attempt()
                except BaseException as exc:  # noqa: BLE001 - the host must never see it
                    _log("telemetry sender crashed: %r", exc)
                cls.settle([delivery], delivered)
        except BaseException as exc:  # noqa: BLE001 - a thread of ours never prints a traceback
            cls.running = False
            _log("telemetry sender stopped: %r", exc)

    @classmethod
    def _next(cls) -> "_Delivery | None":
        """The next queued event, or None once the queue is empty and the thread may end."""
        while True:
            if cls.queue:
                return cls.queue.pop(0)
            with cls.lock:
                cls.running = False
            # A session that found the lock taken just now may have queued one after our look.
            if not cls.queue:
                return None
            with cls.lock:
                if cls.running:
                    return None  # a newer thread took over
                cls.running = True

    @classmethod
    def settle(cls, deliveries: "list[_Delivery]", delivered: bool) -> None:
        """Record the outcome of *deliveries*, each once, whoever settles them first; linear."""
        settled = [d for d in deliveries if cls.pending.pop(id(d), None) is not None]
        by_path: dict[str, list[_Delivery]] = {}
        for d in settled:
            by_path.setdefault(d.state_path, []).append(d)
        for path, group in by_path.items():
            recorded = cls.failed_before.get(path, -1)
            if not delivered:
                cls.failed_before[path] = cls.next_number
                if all(d.number < recorded for d in group):
                    continue  # queued before its episode's failure was recorded: nothing to read or write
            try:
                _record_outcome(path, delivered, group[0].clock())
            except Exception as exc:  # noqa: BLE001
                _log("could not record the telemetry outcome: %r", exc)
        for d in settled:
            d.settle(delivered)

    @classmethod
    def wait_at_exit(cls, budget: float = _EXIT_WAIT) -> None:
        """Give everything pending *budget* seconds in all; what is left is one failure."""
        if cls.forked_without_hooks():  # the parent's sends are not ours to wait for or record
            return
        cls.exiting = True
        pending = list(cls.pending.values())
        if not pending:
            return
        try:
            cls.exit_not_started.release()
        except RuntimeError:
            pass  # released already
        cls._wait_for(pending, budget)
        cls.settle(pending, False)  # what is left is one failure; a no-op for those already settled
        # Those the thread took to settle before the budget ran out are being written now (an
        # fsync on a busy disk): ending the interpreter would cut the write, and lose the backoff.
        cls._wait_for(pending, _EXIT_WRITE_WAIT)

    @staticmethod
    def _wait_for(deliveries: "list[_Delivery]", seconds: float) -> None:
        """Wait up to *seconds* in all for *deliveries* to settle. Ctrl-C while exiting ends the
        wait and prints nothing: what is pending is then one failed episode."""
        deadline = _system_clock() + seconds
        try:
            for delivery in deliveries:
                if not delivery.wait(max(0.0, deadline - _system_clock())):
                    return
        except KeyboardInterrupt:
            pass

    @classmethod
    def join_multiprocessing_exit(cls) -> None:
        """A child of multiprocessing started by fork or forkserver (a Pool's worker) ends in
        os._exit after multiprocessing's own finalizers, and atexit never runs: there the exit
        wait is one of those finalizers too (run once: a second call finds nothing pending).
        A Celery prefork worker (billiard) ends in os._exit before even those, killed by its
        parent as soon as it reports its end (worker_max_tasks_per_child): there the exit wait
        answers Celery's worker_process_shutdown, sent in the worker just before that report."""
        cls.multiprocessing_checked = True
        process, util = sys.modules.get("multiprocessing.process"), sys.modules.get("multiprocessing.util")
        celery = sys.modules.get("celery.signals")

        def wait_at_worker_shutdown(**signal_arguments: object) -> None:
            cls.wait_at_exit()

        try:
            if process is not None and util is not None and process.parent_process() is not None:
                util.Finalize(None, cls.wait_at_exit, exitpriority=0)
            if celery is not None:  # sent in pool workers only; one receiver per copy of this module
                uid = f"{__name__}.wait_at_exit"
                celery.worker_process_shutdown.connect(wait_at_worker_shutdown, weak=False, dispatch_uid=uid)
        except Exception as exc:  # noqa: BLE001 - a module of that name that is not the standard one
            _log("could not join multiprocessing's exit: %r", exc)

    @classmethod
    def forked_without_hooks(cls) -> bool:
        """In a child forked by C code that skipped PyOS_AfterFork_Child (uWSGI's workers by
        default), which ran none of our hooks: this state is the parent's, and the interpreter's
        own locks are as the fork left them."""
        return cls.pid != os.getpid()

    @classmethod
    def before_fork(cls) -> None:
        try:
            cls.fork_guard.acquire(True, _FORK_WAIT)  # else it goes ahead; the hooks after it free the guard
        except BaseException as exc:  # a signal handler's: Ctrl-C's KeyboardInterrupt, a SIGTERM handler's exit
            # Raised in a fork hook, Python would print it and drop it: the host would miss its Ctrl-C, or
            # go on after SIGTERM. The fork goes ahead, and the signal whose handler raised it comes again
            # from a hook of C calls that runs after every other (one made now is the last): the handler
            # then raises in the host's code, once fork() has returned.
            import itertools
            import signal

            below = exc.__traceback__.tb_next if exc.__traceback__ else None
            handler_frame = below.tb_frame if below else None  # none: Python's own SIGINT handler, in C

            def raised_it(handler: object) -> bool:
                if handler_frame is None:
                    return handler is signal.default_int_handler
                return getattr(handler, "__code__", None) is handler_frame.f_code

            raised_by = [signum for signum in signal.valid_signals() if raised_it(signal.getsignal(signum))]
            if not raised_by:
                raise
            if handler_frame is not None and handler_frame.f_code.co_argcount >= 2:  # handler(signum, frame)
                code = handler_frame.f_code
                given = handler_frame.f_locals.get(code.co_varnames[code.co_argcount - 2])
                raised_by.sort(key=lambda signum: signum != given)  # one handler for several: the one it got
            # SIGKILL can have no handler, so interrupting with it does nothing: at every later fork.
            again = map(_thread.interrupt_main, itertools.chain(raised_by[:1], itertools.repeat(signal.SIGKILL)))
            os.register_at_fork(after_in_parent=again.__next__)

    @classmethod
    def leave_fork_guard(cls) -> None:
        try:
            cls.fork_guard.release()
        except RuntimeError:
            pass  # freed already by a fork that gave up waiting for it

    @classmethod
    def forget_after_fork(cls) -> None:
        """In a forked child: the parent's sends are not ours to wait for or record.

        The child starts with fresh locks, queue and episodes (the parent's thread does not
        exist here, and its locks may have been held at the fork; the hooks before this one
        freed the fork guard); sessions the child inherited answer wait() at once.
        """
        inherited = list(cls.pending.values())
        cls.reset()
        for delivery in inherited:  # a new lock, free: the old one may have been held at the fork
            delivery.unsettled, delivery.settled = _thread.allocate_lock(), True


def _in_main_interpreter() -> bool:
    """Whether this is the process's main interpreter. A subinterpreter (legacy, isolated, or
    concurrent.interpreters) must end with no thread of ours: sessions there are off."""
    is_main = getattr(_thread, "_is_main_interpreter", None)  # 3.12+
    if is_main is not None:
        return bool(is_main())
    try:
        interpreters = __import__("_xxsubinterpreters")  # 3.10 and 3.11: legacy subinterpreters only
    except ModuleNotFoundError:
        return True  # a build without subinterpreters has only the main one
    return bool(interpreters.get_current() == interpreters.get_main())


def _uwsgi_forks_from_here() -> bool:
    """Whether this is the uWSGI process that forks the workers (its master, or the first process
    without one) and forks them in C without Python's at-fork hooks: a thread of ours alive then
    can leave a worker the GIL or an import lock held by nobody, and that worker hangs for good."""
    uwsgi = sys.modules.get("uwsgi")  # put there by uWSGI itself, before any application code
    if uwsgi is None:
        return False
    try:
        return bool(uwsgi.worker_id() == 0 and not uwsgi.opt.get("py-call-uwsgi-fork-hooks"))
    except Exception:  # noqa: BLE001 - a module of that name that is not uWSGI's
        return False


def _transport_replaced() -> bool:
    """Whether the host replaced the standard library's sockets or HTTP connections (vcrpy's
    cassettes, httpretty, a mock in its tests; PySocks' socket too): an event sent through them
    would be recorded in the host's files (a cassette kept in git) or among its test's requests.
    gevent's sockets are a transport like the standard ones."""
    for name, attributes in (
        ("socket", ("socket", "create_connection")),
        ("http.client", ("HTTPConnection", "HTTPSConnection")),
    ):
        module = sys.modules.get(name)
        if module is None or getattr(getattr(module, "__spec__", None), "_initializing", False):
            continue  # not imported, or being imported (by the sender, say): half made, not replaced
        for attribute in attributes:
            used = getattr(module, attribute, None)
            if used is not None and getattr(used, "__module__", None) not in _TRANSPORT_MODULES:
                return True
    return False


def _host_decision() -> "tuple[Rule, str] | None":
    """``(rule, reason)`` when the host rules sessions out (README.md, the host rules), else None;
    asked after the opt-outs, which answer first, so that status() and sessions agree."""
    if not _in_main_interpreter():
        return "interpreter", "not the main interpreter: no thread of ours may outlive it"
    if _Sender.exiting or sys.is_finalizing():  # started from an atexit handler after ours
        return "shutdown", "the interpreter is exiting: nothing could be waited for"
    if _Sender.forked_without_hooks():
        return "fork", "forked without Python's at-fork hooks: a thread started here may hang"
    if _uwsgi_forks_from_here():
        reason = "uWSGI forks its workers from here without Python's at-fork hooks: a thread of ours could hang them"
        return "fork", reason + " (--py-call-uwsgi-fork-hooks or --lazy-apps lets them send)"
    if _transport_replaced():
        return "intercepted", "the host replaced its sockets or HTTP connections (vcrpy, httpretty, a mock)"
    return None


# ---- Public API ----------------------------------------------------------------------------------


class Session:
    """What :func:`start_session` did.

    ``enabled`` is True when an event is on its way to the collector;
    ``rule`` names the rule that decided and ``reason`` says it in words;
    ``event`` is the exact dict sent (or printed, in debug mode), else None.
    """

    __slots__ = ("_delivery", "enabled", "event", "reason", "rule", "session_id")

    def __init__(
        self,
        enabled: bool,
        rule: "Rule",
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
            return delivery.wait(timeout) and delivery.delivered
        except Exception:  # noqa: BLE001 - a timeout that is not a number
            return False

    def __repr__(self) -> str:
        return f"Session(enabled={self.enabled!r}, rule={self.rule!r}, session_id={self.session_id!r})"


class Status:
    """What a session would do now, and which rule decided it."""

    __slots__ = ("enabled", "endpoint", "event", "install_id", "reason", "rule", "state_path")

    def __init__(
        self,
        enabled: bool,
        rule: "Rule",
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


class Telemetry:
    """The module's behaviour with every input passed in.

    The module-level functions use one built from the process environment at
    call time; tests and embedders pass their own *environ* (which also names the
    state directory and the endpoint), *stderr*, *clock* and socket *timeout*.
    *use_links* False makes the first creation of the state file take the lock
    file, as on file systems without hard links.
    """

    def __init__(
        self,
        environ: "Mapping[str, str] | None" = None,
        *,
        stderr: "TextIO | None" = None,
        clock: "Callable[[], float] | None" = None,
        timeout: float = _SOCKET_TIMEOUT,
        use_links: bool = True,
    ) -> None:
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self._stderr = stderr
        self._clock = clock
        self.timeout = timeout
        self.use_links = use_links

    # -- inputs ------------------------------------------------------------

    @property
    def state_path(self) -> str:
        """``AGENTSONAR_STATE_DIR`` (else ``~/.agentsonar``) with ``~`` the home of *environ*; never
        made absolute here: one relative to the working directory is not used (_state_dir_problem)."""
        directory = self.environ.get(_ENV_STATE_DIR, "").strip() or "~/.agentsonar"
        if directory == "~" or directory[:2] in ("~/", "~" + os.sep):
            home = self.environ.get("USERPROFILE" if os.name == "nt" else "HOME", "")
            directory = os.path.join(home or os.path.expanduser("~"), directory[2:].lstrip("/" + os.sep))
        else:
            directory = os.path.expanduser(directory)  # ~user
        return os.path.join(directory, _STATE_FILE_NAME)

    def _endpoint_setting(self) -> tuple[str, str]:
        """``(variable, URL)``: the SDK's name wins over the alias; empty means unset."""
        for name in (_ENV_ENDPOINT, _ENV_ENDPOINT_ALIAS):
            value = self.environ.get(name, "").strip()
            if value:
                return name, value
        return _ENV_ENDPOINT, _DEFAULT_ENDPOINT

    @property
    def endpoint(self) -> str:
        return self._endpoint_setting()[1]

    def now(self) -> float:
        """The *clock* passed in, else the system's wall clock (never a host's faked time.time)."""
        return self._clock() if self._clock is not None else _system_clock(False)

    def _stream(self) -> "TextIO | None":
        """The *stderr* passed in, else the process's as it is now (None in some embedders)."""
        return sys.stderr if self._stderr is None else self._stderr

    def _print(self, text: str) -> bool:
        """Write *text* to stderr and flush it; False when it could not be (None, closed, raising)."""
        stream = self._stream()
        return stream is not None and _write_text(stream, text)

    def _stderr_hidden(self) -> str | None:
        """Where stderr goes when what is written there reaches nobody, else None: pytest's capture
        (not its tee to the terminal), seen only if the test fails, as when a host's first session
        runs in its tests; the null device, as a daemon's stderr or ``2>/dev/null``."""
        stream = self._stream()
        kind = type(stream)
        if kind.__module__ == "_pytest.capture" and kind.__name__ != "TeeCaptureIO":
            return "pytest's capture"
        raw = _file_under(stream)
        if raw is None or os.name == "nt":  # Windows: the console is a character device too
            return None
        try:
            where, null = os.fstat(raw.fileno()), os.stat(os.devnull)
        except (OSError, ValueError):  # closed
            return None
        import stat

        return os.devnull if stat.S_ISCHR(where.st_mode) and where.st_rdev == null.st_rdev else None

    # -- decision (no side effects) -----------------------------------------

    def _decide(
        self, path: str, env_off: "tuple[Rule, str] | None", config_off: str | None
    ) -> "tuple[Rule, str, StateDict | None]":
        """``(rule, reason, state as read)``."""
        if env_off is not None:
            return (*env_off, None)
        if config_off is not None:
            return "config", config_off, None
        if type(os) is not type(sys):  # pyfakefs, in the host's tests: the real state is out of sight
            return "state_error", "the host replaced os (pyfakefs): the state file and its opt-out cannot be read", None
        try:
            state = _read_state(path) if os.path.isabs(path) else None  # never under the working directory
        except _StateError as exc:
            reason = f"state file {path} is {exc}; run `python -m {_module_name()} reset` to start afresh"
            return "state_error", reason, None
        enabled = "enabled"
        if state is not None and state.get("telemetry_disabled") is True:
            if not _env_overrides_opt_out(self.environ):
                return "telemetry_disabled", f"telemetry_disabled: true in {path}", state
            value = _abbreviated(self.environ.get(_ENV_TELEMETRY, ""))
            enabled = f"enabled: {_ENV_TELEMETRY}={value} overrides telemetry_disabled: true in {path}"
        problem = _state_dir_problem(path)
        if problem is not None:
            return "state_error", f"state directory {os.path.dirname(path)} is {problem}", state
        host_off = _host_decision()
        if host_off is not None:
            return (*host_off, state)
        variable, endpoint = self._endpoint_setting()
        problem = _endpoint_problem(endpoint)
        if problem is not None:
            return "endpoint", f"{variable}={_abbreviated(endpoint)} {problem}", state
        if _is_debug(self.environ):
            return "debug", f"{_ENV_TELEMETRY}=debug: the event is printed, not sent", state
        if _in_backoff(state, self.now()):
            import time

            until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(state["backoff_until"])))  # type: ignore[index]
            return "backoff", f"in backoff after failed sends, until {until}", state
        if len(_Sender.pending) >= _MAX_PENDING:
            return "backlog", f"{_MAX_PENDING} events of this process wait to be sent: no more are queued", state
        return "send", enabled, state

    def status(self) -> Status:
        """What :meth:`start_session` would do now; reads, never writes."""
        path = self.state_path
        rule, reason, state = self._decide(path, _env_decision(self.environ), None)
        install_id = state.get("install_id") if state and _is_uuid4(state.get("install_id")) else None
        event = None
        if rule in ("send", "debug", "backoff", "backlog"):
            event = {
                "install_id": install_id or "(assigned at the first session)",
                "session_id": "(new for each session)",
                "version": "(the host SDK's version)",
                **_platform_fields(self.environ),
                "adapter": "(the host SDK's adapter, custom_python by default)",
                "timestamp": "(when the session starts)",
            }
        return Status(rule == "send", rule, reason, path, install_id, self.endpoint, event)

    # -- sessions -------------------------------------------------------------

    def start_session(
        self, version: str, adapter: str = "custom_python", config: "Mapping[str, object] | None" = None
    ) -> Session:
        """Start a session: decide, maybe disclose, maybe send. Never raises."""
        try:
            return self._start_session(version, adapter, config)
        except Exception as exc:  # noqa: BLE001 - never hurt the host
            _log("telemetry session failed: %r", exc)
            return Session(False, "error", f"internal error: {exc.__class__.__name__}")

    def _start_session(self, version: object, adapter: object, config: object) -> Session:
        env_off = _env_decision(self.environ)
        if env_off is not None and config is None:
            return Session(False, *env_off)  # the fast path: no file, no thread, no import
        path = self.state_path
        config_off = None
        try:
            choice = _config_choice(config)
        except ValueError as exc:
            choice, config_off = None, f"{exc}; off for this session"
        if choice is not None:
            try:
                self._persist(path, disabled=not choice, replace_corrupt=not choice)
            except (OSError, _StateError) as exc:
                _log("could not persist the telemetry choice: %r", exc)
            if not choice:
                config_off = 'config={"telemetry": False}'
        rule, reason, state = self._decide(path, env_off, config_off)
        if rule not in ("send", "debug"):  # backoff included: no event is built
            return Session(False, rule, reason)
        timestamp = self.now()
        if not _MIN_TIMESTAMP < timestamp < _MAX_TIMESTAMP:
            return Session(False, "error", "the system clock is out of range")
        hidden = _disclosure_due(state) and self._stderr_hidden()  # decided before any write: none at each session
        if hidden:
            return Session(False, "stderr", f"the notice would go to {hidden}, not to a person: nothing is sent")
        recorded: list[bool] = []  # whether this session recorded disclosure_shown: it owes the notice
        try:
            state = self._state_for_sending(path, state, recorded)
            shown = state is None or not recorded or self._print(_disclosure_text(path))
        except BaseException:  # Ctrl-C, or a signal handler's SystemExit, before the notice was out
            if recorded:
                self._owe_disclosure(path)
            raise
        if state is None:
            return Session(False, "state_error", f"could not create {path}")
        if not shown:
            self._owe_disclosure(path)
            return Session(
                False, "stderr", "the notice could not be shown on stderr (closed, failing or full): nothing is sent"
            )
        if state.get("telemetry_disabled") is True and not _env_overrides_opt_out(self.environ):
            return Session(False, "telemetry_disabled", f"telemetry_disabled: true in {path}")  # disabled meanwhile
        event = _build_event(self.environ, str(state["install_id"]), version, adapter, timestamp)
        body = _json_text(event)
        if rule == "debug":
            self._print(body + "\n")
            return Session(False, "debug", reason, event)
        delivery = _Delivery(self.endpoint, body.encode("utf-8"), path, self.timeout, self.now)
        if not _Sender.submit(delivery):
            return Session(False, "error", "no thread could be started to send it (out of threads or memory)")
        return Session(True, "send", reason, event, delivery)

    def _state_for_sending(self, path: str, state: "StateDict | None", recorded: "list[bool]") -> "StateDict | None":
        """The state with an install id and ``disclosure_shown`` recorded (None when it cannot be
        had, or the opted-out state a ``disable`` left meanwhile); *recorded* gets True when this
        session recorded ``disclosure_shown`` and so must show the disclosure.

        That is the session that creates the file, or finds the flag not true in a file an
        older SDK or ``enable`` wrote: the disclosure is shown once.
        """
        if not _disclosure_due(state):
            return state  # every later session: nothing to write
        override = _env_overrides_opt_out(self.environ)

        def add_id_and_disclosure(current: "StateDict | None") -> "StateDict | None":
            if current is None or (current.get("telemetry_disabled") is True and not override):
                return None  # reset or opted out meanwhile: no install id, nothing sent
            if not _disclosure_due(current):
                return None
            current.setdefault("install_id", _new_uuid4())
            current["disclosure_shown"] = True
            recorded.append(True)
            return current

        try:
            if state is None:
                fresh: StateDict = {"schema_version": _STATE_SCHEMA_VERSION, "telemetry_disabled": False}
                add_id_and_disclosure(fresh)
                if _create_state(path, fresh, use_links=self.use_links):
                    return fresh
                recorded.clear()
                state = _read_state(path)  # another process created it just now
            if _disclosure_due(state):
                state = _update_state(path, add_id_and_disclosure)
        except (OSError, _StateError) as exc:
            _log("could not create the telemetry state: %r", exc)
            return None
        if state is None or ("install_id" not in state and state.get("telemetry_disabled") is not True):
            return None
        return state

    def _owe_disclosure(self, path: str) -> None:
        """Record that the disclosure this session recorded was not shown: a later session with a
        working stderr shows it, and nothing is sent unseen."""

        def not_shown(current: "StateDict | None") -> "StateDict | None":
            if current is not None:
                current["disclosure_shown"] = False
            return current

        try:
            _update_state(path, not_shown)
        except (OSError, _StateError) as exc:
            _log("could not record that the disclosure was not shown: %r", exc)

    # -- explicit commands (these report failure) ----------------------------------

    def _persist(self, path: str, *, disabled: bool, replace_corrupt: bool) -> None:
        def change(current: "StateDict | None") -> "StateDict | None":
            if current is None:
                if not disabled:
                    return None  # nothing persisted means enabled: no file to write
                current = {"schema_version": _STATE_SCHEMA_VERSION}
            elif current.get("telemetry_disabled") is disabled:
                return None
            current["telemetry_disabled"] = disabled
            return current

        _update_state(path, change, replace_corrupt=replace_corrupt)

    def disable_persistently(self) -> Status:
        """Record ``telemetry_disabled: true`` (replacing a corrupt file); raises OSError."""
        self._persist(self.state_path, disabled=True, replace_corrupt=True)
        return self.status()

    def enable_persistently(self) -> Status:
        """Clear a persisted opt-out (a corrupt file becomes a fresh state); raises OSError."""
        self._persist(self.state_path, disabled=False, replace_corrupt=True)
        return self.status()

    def reset(self) -> Status:
        """Forget the install id: a new one, and the disclosure, next time; raises OSError.

        A persisted opt-out survives: the file is replaced, in one step, by one that
        holds only it, so no session ever sees the opt-out gone.
        """

        def forget(current: "StateDict | None") -> "StateDict | Literal['delete'] | None":
            if current is not None and current.get("telemetry_disabled") is True:
                return {"schema_version": _STATE_SCHEMA_VERSION, "telemetry_disabled": True}
            return None if current is None else "delete"

        _update_state(self.state_path, forget, replace_corrupt=True)
        return self.status()


def start_session(
    version: str, adapter: str = "custom_python", config: "Mapping[str, object] | None" = None
) -> Session:
    """Start a telemetry session for the host SDK; never raises, never blocks."""
    return Telemetry().start_session(version, adapter, config)


def session_start(adapter: str, version: str, config_pref: bool | None = None) -> Session:
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


def status() -> Status:
    """What a session would do now, and which rule decided it."""
    return Telemetry().status()


def disable_persistently() -> Status:
    """Turn telemetry off for this machine; raises OSError when it cannot."""
    return Telemetry().disable_persistently()


def enable_persistently() -> Status:
    """Clear a persisted opt-out; raises OSError when it cannot."""
    return Telemetry().enable_persistently()


def reset() -> Status:
    """Forget this machine's install id; raises OSError when it cannot."""
    return Telemetry().reset()


# ---- CLI: python -m agentsonar_telemetry status|enable|disable|reset|send ------------------------


def _format_status(result: Status) -> str:
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
            _write_text(out, (json.dumps(result.as_dict()) if args.json else _format_status(result)) + "\n")
            return 0
        if args.command != "send":
            action, done = {
                "enable": (client.enable_persistently, "persisted opt-out cleared"),
                "disable": (client.disable_persistently, "telemetry disabled"),
                "reset": (client.reset, "state reset"),
            }[args.command]
            result = action()
            state = "on" if result.enabled else "off"
            _write_text(out, f"{done}: {result.state_path}; now {state} ({result.reason})\n")
            return 0
        session = client.start_session(args.sdk_version, args.adapter)
        if not session.enabled:
            _write_text(out, f"not sent: {session.reason}\n")
            return 0 if session.rule != "error" else 1
        if session.wait(args.timeout):
            _write_text(out, f"sent session {session.session_id} to {client.endpoint}\n")
            return 0
        _write_text(
            sys.stderr, f"error: the collector at {client.endpoint} did not accept the event (see backoff in status)\n"
        )
        return 1
    except (OSError, _StateError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        where = getattr(exc, "filename", None) or client.state_path
        _write_text(sys.stderr, f"error: {args.command} failed: {detail}: {where}\n")
        return 1
    except Exception as exc:  # noqa: BLE001 - the CLI prints one line, never a traceback
        _write_text(sys.stderr, f"error: {args.command} failed: {exc.__class__.__name__}: {exc}\n")
        return 1


# What every session shares, made once per interpreter at import (see _Sender).
_Sender.reset()
_Sender.fork_guard = _thread.allocate_lock()
__import__("atexit").register(_Sender.wait_at_exit)
# After a fork the guard is free, in the parent and the child, by two calls into C: a take that
# never blocks (acquire(0), through map), then a release. A Python hook there is where a signal
# that came during fork() raises, and Ctrl-C there would leave the guard held for good.
_take, _release = map(_Sender.fork_guard.acquire, iter(int, 1)).__next__, _Sender.fork_guard.release
try:  # absent on Windows; refused in an isolated subinterpreter, where sessions are off anyway
    os.register_at_fork(after_in_parent=_take, after_in_child=_take)
    os.register_at_fork(before=_Sender.before_fork, after_in_parent=_release, after_in_child=_release)
    os.register_at_fork(after_in_child=_Sender.forget_after_fork)
except (AttributeError, RuntimeError):
    pass
del _take, _release

if __name__ == "__main__":
    sys.exit(main())
