"""Loaded by every Python subprocess the tests start: refuse any address off loopback.

The module under test swallows network errors by design, so a refusal alone would
go unnoticed; each attempt is also appended to $AGENTSONAR_TEST_NET_LOG, which
the test suite checks after every test. With $AGENTSONAR_TEST_CONNECT_LOG set, every
connection, loopback too, is appended there: for tests that must see none at all.
"""

import os
import sys

sys.path[:] = [p for p in sys.path if not p.endswith("_netguard")]


def _is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if host is None:
        return True
    host = str(host).strip("[]").lower()
    return host in ("localhost", "::1", "") or host.startswith("127.")


def _audit(event: str, args: tuple) -> None:  # type: ignore[type-arg]
    host = None
    if event == "socket.getaddrinfo":
        host = args[0]
    elif event in ("socket.connect", "socket.sendto"):
        address = args[1] if event == "socket.connect" else args[-1]
        if not isinstance(address, tuple):
            return  # AF_UNIX
        host = address[0]
    else:
        return
    connections = os.environ.get("AGENTSONAR_TEST_CONNECT_LOG")
    if connections and event == "socket.connect":  # a test that must see no connection at all
        with open(connections, "a", encoding="utf-8") as f:
            f.write(f"{event} {host!r}\n")
    if not _is_loopback(host):
        log = os.environ.get("AGENTSONAR_TEST_NET_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as f:
                f.write(f"{event} {host!r}\n")
        raise RuntimeError(f"test tried to leave loopback: {event} {host!r}")


sys.addaudithook(_audit)
