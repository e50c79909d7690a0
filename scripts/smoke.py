"""Check a deployed collector without adding data to it.

    STATS_TOKEN=... python3 scripts/smoke.py https://t.agent-sonar.com

Each check prints one line, `ok` or `FAIL`, and the script exits 1 if any failed:
- `GET /healthz` answers 200;
- `POST /event` (released SDKs) and `POST /v1/events` (this module) answer 400 `invalid_event` to
  an event the contract rejects: both paths reach the Worker, and nothing is stored;
- `GET /dashboard` answers 200 with HTML;
- `GET /v1/stats` with the token answers 200 with an `as_of` no older than two hours: the hourly
  job runs.

The token is read from the environment (`STATS_TOKEN`), never from the command line, where other
users of the machine could read it. Standard library only; redirects are not followed.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

MAX_AS_OF_AGE = datetime.timedelta(hours=2)
# Valid in every field but one: a version with a space. Rejected before anything is written.
INVALID_EVENT = {
    "install_id": "00000000-0000-4000-8000-000000000000",
    "session_id": "00000000-0000-4000-8000-000000000000",
    "version": "smoke test",
    "python": "3.12",
    "os": "linux",
    "arch": "x86_64",
    "adapter": "smoke_test",
    "timestamp": 1_745_891_234,
}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is an answer to report, not a place to go


_opener = urllib.request.build_opener(_NoRedirect)


def request(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """(status, content type, body) of one request; an HTTP error status is an answer too."""
    headers = {"User-Agent": "agentsonar-telemetry-smoke", **(headers or {})}
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        with _opener.open(req, timeout=15) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as answered:
        with answered:
            return answered.code, answered.headers.get("Content-Type", ""), answered.read()


def check_health(base: str, token: str) -> str:
    status, _, _ = request(f"{base}/healthz")
    if status != 200:
        raise AssertionError(f"answered {status}")
    return "200"


def check_invalid_event(path: str) -> Callable[[str, str], str]:
    def check(base: str, token: str) -> str:
        body = json.dumps(INVALID_EVENT).encode()
        status, _, answer = request(f"{base}{path}", data=body, headers={"Content-Type": "application/json"})
        code = json.loads(answer).get("error", {}).get("code") if status == 400 else None
        if status != 400 or code != "invalid_event":
            raise AssertionError(f"answered {status} {answer[:200]!r}, expected 400 invalid_event")
        return "400 invalid_event, nothing stored"

    return check


def check_dashboard(base: str, token: str) -> str:
    status, content_type, _ = request(f"{base}/dashboard")
    if status != 200 or not content_type.startswith("text/html"):
        raise AssertionError(f"answered {status} {content_type}")
    return "200 text/html"


def check_stats(base: str, token: str, now: datetime.datetime | None = None) -> str:
    if not token:
        raise AssertionError("STATS_TOKEN is not set in the environment")
    status, _, answer = request(f"{base}/v1/stats", headers={"Authorization": f"Bearer {token}"})
    if status != 200:
        raise AssertionError(f"answered {status} (401: the token does not match the Worker's STATS_TOKEN)")
    as_of = json.loads(answer).get("as_of")
    if as_of is None:
        raise AssertionError("as_of is null: the hourly job has never run (is the cron trigger deployed?)")
    age = (now or datetime.datetime.now(datetime.timezone.utc)) - datetime.datetime.fromisoformat(
        as_of.replace("Z", "+00:00")
    )
    if age > MAX_AS_OF_AGE:
        raise AssertionError(f"as_of is {as_of}, {age.total_seconds() / 3600:.1f} h old: the hourly job is not running")
    return f"200, as_of {as_of}"


CHECKS: list[tuple[str, Callable[[str, str], str]]] = [
    ("GET /healthz", check_health),
    ("POST /event", check_invalid_event("/event")),
    ("POST /v1/events", check_invalid_event("/v1/events")),
    ("GET /dashboard", check_dashboard),
    ("GET /v1/stats", check_stats),
]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].startswith(("https://", "http://")):
        print("usage: STATS_TOKEN=... python3 scripts/smoke.py https://collector.example", file=sys.stderr)
        return 2
    base = args[0].rstrip("/")
    token = os.environ.get("STATS_TOKEN", "")
    failed = 0
    for name, check in CHECKS:
        try:
            print(f"ok    {name}: {check(base, token)}")
        except (AssertionError, OSError, ValueError) as problem:
            failed += 1
            print(f"FAIL  {name}: {problem}")
    print("smoke: all checks passed" if not failed else f"smoke: {failed} of {len(CHECKS)} checks failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
