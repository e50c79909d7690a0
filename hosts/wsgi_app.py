"""A WSGI application as an SDK would be used in one: a session when it is imported, one per request.

Each response says which process answered, what its session did and what the session at import
did (in the master, for a server that imports the app before it forks): ``<pid> <rule> <rule>``.
"""

import os

import agentsonar_telemetry as at

AT_IMPORT = at.start_session("0.7.0", "at_import")


def app(environ: dict[str, object], start_response: object) -> list[bytes]:
    session = at.start_session("0.7.0", "per_request")
    start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
    return [f"{os.getpid()} {session.rule} {AT_IMPORT.rule}".encode()]
