"""The event: exactly the contract's eight fields, valid against the schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from conftest import CONTRACT, ROOT, make_client

import agentsonar_telemetry as at

SCHEMA = json.loads((CONTRACT / "event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
VALID = sorted((CONTRACT / "vectors" / "valid").glob("*.json"))
INVALID = sorted((CONTRACT / "vectors" / "invalid").glob("*.json"))


def test_schema_is_a_valid_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["additionalProperties"] is False
    assert tuple(SCHEMA["required"]) == at._EVENT_FIELDS == tuple(SCHEMA["properties"])


def test_there_are_enough_vectors() -> None:
    assert len(VALID) >= 10 and len(INVALID) >= 25


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_vectors(path: Path) -> None:
    VALIDATOR.validate(json.loads(path.read_text()))


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_vectors(path: Path) -> None:
    assert not VALIDATOR.is_valid(json.loads(path.read_text()))


VALID_VALUES = {
    "install_id": "8a4f3b29-1c2d-4e5f-9a6b-7c8d9e0f1a2b",
    "session_id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
    "version": "0.4.0",
    "python": "3.12",
    "os": "linux",
    "arch": "x86_64",
    "adapter": "crewai",
}


@pytest.mark.parametrize("name", sorted(VALID_VALUES))
def test_trailing_newline_is_invalid_in_python_re_too(name: str) -> None:
    # Python's `$` matches before a final newline; the schema's patterns must not.
    valid = VALID_VALUES[name]
    pattern = SCHEMA["properties"][name]["pattern"]
    assert re.search(pattern, valid) is not None
    assert re.search(pattern, valid + "\n") is None


def test_module_event_is_valid_and_has_exactly_the_eight_fields(environ: dict[str, str]) -> None:
    environ["AGENTSONAR_TELEMETRY"] = "debug"
    client, err = make_client(environ)
    session = client.start_session("0.4.0", "crewai")
    assert session.event is not None
    VALIDATOR.validate(session.event)
    assert tuple(session.event) == at._EVENT_FIELDS
    assert session.event["version"] == "0.4.0" and session.event["adapter"] == "crewai"
    assert session.event["python"] == "{}.{}".format(*__import__("sys").version_info[:2])
    assert json.loads(err.getvalue().splitlines()[-1]) == session.event
    assert len(json.dumps(session.event, separators=(",", ":"))) <= 1024


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("0.4.0", "0.4.0"),
        ("1.0.0rc1+local_build-2", "1.0.0rc1+local_build-2"),
        ("a" * 32, "a" * 32),
        ("a" * 33, "unknown"),
        ("", "unknown"),
        ("0.4.0\n", "unknown"),
        ("0.4 beta", "unknown"),
        ("0.4.0é", "unknown"),
        (None, "unknown"),
        (4, "unknown"),
        (b"0.4", "unknown"),
    ],
)
def test_bad_version_becomes_unknown(version: object, expected: str) -> None:
    event = at._build_event({}, at._new_uuid4(), version, "x", 1.7e9)
    assert event["version"] == expected
    VALIDATOR.validate(event)


@pytest.mark.parametrize(
    ("adapter", "expected"),
    [
        ("custom_python", "custom_python"),
        ("oma_sidecar", "oma_sidecar"),
        ("a" * 32, "a" * 32),
        ("a" * 33, "unknown"),
        ("CrewAI", "unknown"),
        ("1x", "unknown"),
        ("_x", "unknown"),
        ("crewai\n", "unknown"),
        ("open-ai", "unknown"),
        ("", "unknown"),
        (None, "unknown"),
        (["crewai"], "unknown"),
    ],
)
def test_bad_adapter_becomes_unknown(adapter: object, expected: str) -> None:
    event = at._build_event({}, at._new_uuid4(), "1", adapter, 1.7e9)
    assert event["adapter"] == expected
    VALIDATOR.validate(event)


def test_bad_host_input_never_raises(environ: dict[str, str]) -> None:
    environ["AGENTSONAR_TELEMETRY"] = "debug"
    client, _ = make_client(environ)
    session = client.start_session(object(), 12, {"telemetry": True})  # type: ignore[arg-type]
    assert session.event is not None
    assert session.event["version"] == "unknown" and session.event["adapter"] == "unknown"


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        ("darwin", "darwin"),
        ("linux", "linux"),
        ("linux2", "linux"),
        ("win32", "win32"),
        ("freebsd14", "freebsd"),
        ("cygwin", "cygwin"),
        ("emscripten", "emscripten"),
        ("Weird OS!", "unknown"),
        ("", "unknown"),
    ],
)
def test_os_normalisation(platform: str, expected: str) -> None:
    assert at._normalize_os(platform) == expected


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("arm64", "arm64"),
        ("aarch64", "arm64"),
        ("ARM64", "arm64"),
        ("AMD64", "x86_64"),
        ("amd64", "x86_64"),
        ("x86_64", "x86_64"),
        ("x64", "x86_64"),
        ("i686", "i686"),
        ("armv7l", "armv7l"),
        ("ppc64le", "ppc64le"),
        ("s390x", "s390x"),
        ("", "unknown"),
        ("x86-64", "unknown"),
        ("a" * 17, "unknown"),
    ],
)
def test_arch_normalisation(machine: str, expected: str) -> None:
    assert at._normalize_arch(machine) == expected


@pytest.mark.parametrize(
    ("platform", "environ", "machine"),
    [
        ("darwin", {}, None),
        ("linux", {}, None),
        ("win32", {"PROCESSOR_ARCHITECTURE": "AMD64"}, "x86_64"),
        ("win32", {"PROCESSOR_ARCHITECTURE": "ARM64"}, "arm64"),
        # A 32-bit Python on 64-bit Windows sees x86; W6432 names the real machine.
        ("win32", {"PROCESSOR_ARCHITECTURE": "x86", "PROCESSOR_ARCHITEW6432": "AMD64"}, "x86_64"),
        ("win32", {"PROCESSOR_ARCHITECTURE": "x86"}, "x86"),
        ("win32", {}, "unknown"),
    ],
)
def test_platform_fields_for_each_platform(platform: str, environ: dict[str, str], machine: str | None) -> None:
    fields = at._platform_fields(environ, platform)
    assert fields["os"] == platform
    expected = at._normalize_arch(__import__("os").uname().machine) if machine is None else machine
    assert fields["arch"] == expected
    event = {**at._build_event({}, at._new_uuid4(), "0.4.0", "langgraph", 1745891234.5), **fields}
    VALIDATOR.validate(event)


def test_uuid4_generation() -> None:
    import uuid

    ids = {at._new_uuid4() for _ in range(2000)}
    assert len(ids) == 2000
    for value in list(ids)[:200]:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == value
        assert at._is_uuid4(value)
    assert not at._is_uuid4(str(uuid.uuid1()))
    assert not at._is_uuid4(str(uuid.uuid4()).upper())


@pytest.mark.parametrize("clock", [0.0, 1.5e9, 4.1e9, 5e9, -1.0])
def test_clock_out_of_range_sends_nothing(environ: dict[str, str], clock: float) -> None:
    environ["AGENTSONAR_TELEMETRY"] = "debug"
    client, err = make_client(environ, clock=lambda: clock)
    session = client.start_session("0.4.0")
    assert session.event is None and not session.enabled and session.rule == "error"
    assert err.getvalue() == "" and not Path(environ["AGENTSONAR_STATE_DIR"]).exists()


def test_telemetry_md_field_table_matches_schema() -> None:
    text = (ROOT / "TELEMETRY.md").read_text()
    rows = re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.M)
    assert tuple(rows) == tuple(SCHEMA["properties"]) == at._EVENT_FIELDS
