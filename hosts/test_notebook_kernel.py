"""A real Jupyter kernel (ipykernel, driven by jupyter_client): the SDK used from notebook cells.

The kernel lives long, replaces sys.stderr with its own stream and runs threads of its own: the
notice must reach the cell once, settings changed in a cell count from the next session, and
a session started just before the kernel is shut down is still delivered.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DISCLOSURE, PATIENCE, Collector, assert_one_machine, host_env


class Notebook:
    """A kernel and a client: ``run(code)`` is one cell, returning its stdout and stderr."""

    def __init__(self, home: Path, collector: Collector, stderr: int | None = None) -> None:
        from jupyter_client.manager import KernelManager

        self.manager = KernelManager(kernel_name="python3")
        env = host_env(home, collector)
        # Under PYTEST_CURRENT_TEST ipykernel leaves the file descriptors alone, as no real kernel does.
        env.pop("PYTEST_CURRENT_TEST", None)
        self.manager.start_kernel(env=env, stderr=stderr)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=PATIENCE)

    def run(self, code: str) -> tuple[str, str]:
        streams = {"stdout": "", "stderr": ""}

        def output(message: dict[str, object]) -> None:
            content: dict[str, str] = message["content"]  # type: ignore[assignment]
            if message["msg_type"] == "stream":
                streams[content["name"]] += content["text"]
            elif message["msg_type"] == "error":
                pytest.fail(f"the cell raised: {content['ename']}: {content['evalue']}")

        reply = self.client.execute_interactive(code, timeout=PATIENCE, output_hook=output)
        assert reply["content"]["status"] == "ok", reply["content"]
        return streams["stdout"], streams["stderr"]

    def shut_down(self) -> None:
        self.client.stop_channels()
        if self.manager.is_alive():
            self.manager.shutdown_kernel(now=False)


@pytest.fixture(params=["inherited", "the null device"])
def notebook(
    home: Path, collector: Collector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Notebook]:
    """A kernel whose own stderr is this process's, or the null device, as a JupyterHub spawner or
    a server run as a service leaves it: the cells' stderr reaches the notebook either way."""
    # jupyter_client's own files (connection files, paths) in tmp, never in this user's home.
    for name in ("JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "IPYTHONDIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    kernel = Notebook(home, collector, subprocess.DEVNULL if request.param == "the null device" else None)
    try:
        yield kernel
    finally:
        kernel.shut_down()


SESSION = "s = at.start_session('0.7.0', 'notebook'); print(s.rule, s.wait({wait}))"


def test_cells_show_the_notice_once_honour_a_setting_made_in_a_cell_and_deliver_at_shutdown(
    notebook: Notebook, home: Path, collector: Collector
) -> None:
    out, err = notebook.run("import agentsonar_telemetry as at\n" + SESSION.format(wait=PATIENCE))
    assert (out, err.count(DISCLOSURE)) == ("send True\n", 1)  # the notice in the cell, as stderr
    assert notebook.run(SESSION.format(wait=PATIENCE)) == ("send True\n", "")
    in_a_thread = "import threading\nt = threading.Thread(target=lambda: exec(SESSION)); t.start(); t.join()"
    assert notebook.run(f"SESSION = {SESSION.format(wait=PATIENCE)!r}\n{in_a_thread}") == ("send True\n", "")
    off = "import os\nos.environ['AGENTSONAR_TELEMETRY'] = 'off'\nprint(at.start_session('0.7.0', 'notebook').rule)"
    assert notebook.run(off) == ("AGENTSONAR_TELEMETRY\n", "")  # read at call time, not at import
    last = "del os.environ['AGENTSONAR_TELEMETRY']\nprint(at.start_session('0.7.0', 'notebook').rule)"
    assert notebook.run(last) == ("send\n", "")  # not waited for: the kernel is shut down at once
    notebook.shut_down()
    events = collector.wait_for(4)
    assert len(events) == 4 and {e["adapter"] for e in events} == {"notebook"}
    assert_one_machine(events, home)
