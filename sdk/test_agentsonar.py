"""agentsonar 0.7.0's own API (monitor_orchestrator, .delegation, .shutdown) with this module vendored
over its _telemetry.py, and as released, against the collector under wrangler dev."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import run_host
from local_collector import LocalCollector

DISCLOSURE = "AgentSonar collects anonymous usage telemetry"


def rows_of(collector: LocalCollector, install_id: object) -> list[dict[str, object]]:
    assert isinstance(install_id, str) and re.fullmatch(r"[0-9a-f-]{36}", install_id)
    return collector.query(
        f"SELECT install_id, version, python, os, arch, adapter FROM events WHERE install_id = '{install_id}'"
    )


def event_count(collector: LocalCollector) -> int:
    return int(str(collector.query("SELECT COUNT(*) AS n FROM events")[0]["n"]))


def test_vendored_sdk_sends_one_event_with_its_version_and_adapter(
    collector: LocalCollector, vendored_sdk: Path, tmp_path: Path
) -> None:
    host = run_host(tmp_path / "home", vendored_sdk, collector.events_url)
    state = host.state()
    assert state is not None and state["disclosure_shown"] is True
    [row] = rows_of(collector, state["install_id"])
    assert (row["version"], row["adapter"]) == ("0.7.0", "custom_python")
    assert host.stderr.count(DISCLOSURE) == 1
    again = run_host(tmp_path / "home", vendored_sdk, collector.events_url)  # a second run: silent, same id
    assert DISCLOSURE not in again.stderr
    assert len(rows_of(collector, state["install_id"])) == 2


def test_vendored_sdk_config_telemetry_false_persists_and_sends_nothing(
    collector: LocalCollector, vendored_sdk: Path, tmp_path: Path
) -> None:
    before = event_count(collector)
    host = run_host(tmp_path / "home", vendored_sdk, collector.events_url, config={"telemetry": False})
    assert host.state() == {"schema_version": 1, "telemetry_disabled": True}
    assert DISCLOSURE not in host.stderr
    later = run_host(tmp_path / "home", vendored_sdk, collector.events_url)  # no config: the opt-out holds
    assert later.state() == {"schema_version": 1, "telemetry_disabled": True}
    assert event_count(collector) == before


def test_vendored_sdk_do_not_track_sends_and_writes_nothing(
    collector: LocalCollector, vendored_sdk: Path, tmp_path: Path
) -> None:
    before = event_count(collector)
    host = run_host(tmp_path / "home", vendored_sdk, collector.events_url, env={"DO_NOT_TRACK": "1"})
    assert not (host.home / ".agentsonar").exists() and host.stderr == ""
    assert event_count(collector) == before


def test_vendored_sdk_agentsonar_telemetry_on_overrides_a_persisted_opt_out(
    collector: LocalCollector, vendored_sdk: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    run_host(home, vendored_sdk, collector.events_url, config={"telemetry": False})
    host = run_host(home, vendored_sdk, collector.events_url, env={"AGENTSONAR_TELEMETRY": "on"})
    state = host.state()
    assert state is not None and state["telemetry_disabled"] is True  # overridden for the run, not cleared
    assert len(rows_of(collector, state["install_id"])) == 1


def test_released_sdk_posting_to_event_with_raw_arch_is_stored_and_counted(
    collector: LocalCollector, tmp_path: Path
) -> None:
    """The unmodified file of agentsonar 0.7.0: raw platform.machine().lower(), POST /event."""
    collector.run_job(rebuild=True)
    before = collector.stats()["by"]["arch"]  # type: ignore[index]
    host = run_host(
        tmp_path / "home",
        None,
        f"{collector.base_url}/event",
        machine="AArch64",  # Linux on ARM, as platform.machine() says it
        join_sender=True,
    )
    state = host.state()
    assert state is not None and "AgentSonar 0.7.0" in host.stderr  # the released file's own disclosure
    [row] = rows_of(collector, state["install_id"])
    assert (row["version"], row["adapter"], row["arch"], row["os"]) == ("0.7.0", "custom_python", "arm64", "linux")
    collector.run_job(rebuild=True)
    after = collector.stats()["by"]["arch"]  # type: ignore[index]
    assert after.get("arm64", 0) == before.get("arm64", 0) + 1  # type: ignore[union-attr]
    assert "aarch64" not in after
