"""agentsonar 0.7.0's own tests/contract/test_telemetry.py, from its sdist, against the vendored file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import subprocess_env

HERE = Path(__file__).resolve().parent
SDIST_MEMBERS = (
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/contract/__init__.py",
    "tests/contract/test_telemetry.py",
)

# The SDK's tests that use only public names: README.md lists them, and why the others are left out.
EXPECTED_TO_RUN = [
    "test_default_is_enabled",
    "test_agentsonar_telemetry_off_disables",
    "test_agentsonar_telemetry_on_enables",
    "test_dnt_always_wins",
    "test_dnt_disables",
    "test_dnt_zero_does_not_disable",
    "test_persistent_disable_in_state_file",
    "test_env_re_enable_overrides_persistent_disable",
    "test_env_off_beats_persistent_state",
    "test_engine_construction_not_blocked_by_broken_telemetry_session_start",
    "test_engine_construction_not_blocked_by_broken_telemetry_import",
    "test_engine_fully_functional_with_telemetry_off",
    "test_all_three_adapters_construct_with_telemetry_off",
]


@pytest.fixture(scope="module")
def sdk_tests(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sdist_dir = os.environ.get("AGENTSONAR_SDK_SDIST_DIR")
    if not sdist_dir:
        pytest.fail("AGENTSONAR_SDK_SDIST_DIR is not set: run `tox -e sdk`, which downloads the sdist")
    [sdist] = Path(sdist_dir).glob("agentsonar-0.7.0.tar.gz")
    root = tmp_path_factory.mktemp("sdk-tests")
    with tarfile.open(sdist) as archive:
        for member in SDIST_MEMBERS:
            extracted = archive.extractfile(f"agentsonar-0.7.0/{member}")
            assert extracted is not None
            (root / member).parent.mkdir(parents=True, exist_ok=True)
            (root / member).write_bytes(extracted.read())
    return root


def test_the_sdks_own_public_tests_pass_against_the_vendored_file(
    sdk_tests: Path, vendored_sdk: Path, tmp_path: Path
) -> None:
    selection = tmp_path / "selection.json"
    env = subprocess_env(tmp_path / "home", vendored_sdk, HERE, AGENTSONAR_SDK_SELECTION=str(selection))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "sdk_contract_plugin",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rA",
            "--rootdir",
            str(sdk_tests),
            "--basetemp",
            str(tmp_path / "basetemp"),
            str(sdk_tests / "tests" / "contract" / "test_telemetry.py"),
        ],
        cwd=sdk_tests,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    chosen = json.loads(selection.read_text())
    assert chosen["ran"] == EXPECTED_TO_RUN
    passed = [line.split("::")[-1] for line in result.stdout.splitlines() if line.startswith("PASSED ")]
    assert passed == EXPECTED_TO_RUN
    assert f"{len(EXPECTED_TO_RUN)} passed, {len(chosen['left_out'])} deselected" in result.stdout
    # The vendored module really is the one under test.
    assert (vendored_sdk / "agentsonar" / "_telemetry.py").read_bytes() == (
        HERE.parent / "agentsonar_telemetry.py"
    ).read_bytes()
