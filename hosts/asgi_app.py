"""An ASGI application (as FastAPI builds one) that starts a session when imported and per request.

Each response says which process answered, what its session did and what the session at import
did: ``<pid> <rule> <rule>``.
"""

import os
from collections.abc import Awaitable, Callable

import agentsonar_telemetry as at

AT_IMPORT = at.start_session("0.7.0", "at_import")


async def app(
    scope: dict[str, object],
    receive: Callable[[], Awaitable[dict[str, object]]],
    send: Callable[[dict[str, object]], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    session = at.start_session("0.7.0", "per_request")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": f"{os.getpid()} {session.rule} {AT_IMPORT.rule}".encode()})
