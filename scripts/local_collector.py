"""Run the collector locally: `wrangler dev` on loopback with its own local D1.

Used by the demo (scripts/demo.py), the end-to-end tests (e2e/) and the ingest benchmark
(bench/ingest.py). Every server started here stops by itself: it runs under `timeout` in its
own process group, and `LocalCollector.stop()` (or leaving the `with` block) ends the group.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKER_DIR = ROOT / "worker"
MIN_NODE = (22, 12)


def offline_env(config_home: str) -> dict[str, str]:
    """The environment for wrangler: no metrics, no fetches, config in a temp dir."""
    env = dict(os.environ)
    env.update(
        WRANGLER_SEND_METRICS="false",
        CLOUDFLARE_CF_FETCH_ENABLED="false",
        XDG_CONFIG_HOME=config_home,
        NO_COLOR="1",
        FORCE_COLOR="0",
    )
    return env


def check_node() -> None:
    """Wrangler 4.87+ refuses an older Node; say so before npm and wrangler print pages of it."""
    node = shutil.which("node")
    found = "node is not on PATH"
    if node is not None:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
        major, minor = (int(part) for part in version.lstrip("v").split(".")[:2])
        if (major, minor) >= MIN_NODE:
            return
        found = f"found {version}"
    raise SystemExit(
        f"error: Node.js 22.12 or later is needed ({found}). Install it, or use the project's own copy:\n"
        '  export PATH="$(bash scripts/ensure_node.sh):$PATH"'
    )


def ensure_npm_ci(worker_dir: Path = WORKER_DIR) -> None:
    """`npm ci` once: skipped when node_modules matches the lockfile already."""
    marker = worker_dir / "node_modules" / ".package-lock.json"
    lock = worker_dir / "package-lock.json"
    if marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime:
        return
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=worker_dir, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalCollector:
    """`wrangler dev --local` on 127.0.0.1 with a fresh, migrated, persisted local D1."""

    def __init__(
        self,
        *,
        config: str = "wrangler.jsonc",
        token: str = "local-stats-token",
        worker_dir: Path = WORKER_DIR,
        lifetime: int = 1800,
        log_path: Path | None = None,
        persist_dir: Path | None = None,
        variables: dict[str, str] | None = None,
    ) -> None:
        self.worker_dir = worker_dir
        self.config = config
        self.token = token
        self.variables = {"STATS_TOKEN": token, **(variables or {})}
        self.lifetime = lifetime
        self.workdir = Path(tempfile.mkdtemp(prefix="agentsonar-collector-"))
        self.persist_dir = persist_dir or self.workdir / "state"
        self.env = offline_env(str(self.workdir / "config"))
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.events_url = f"{self.base_url}/v1/events"
        self.log_path = log_path or self.workdir / "wrangler-dev.log"
        self.process: subprocess.Popen[bytes] | None = None

    def _wrangler(self, *args: str) -> list[str]:
        return [str(self.worker_dir / "node_modules" / ".bin" / "wrangler"), *args, "--config", self.config]

    def migrate(self) -> None:
        subprocess.run(
            self._wrangler("d1", "migrations", "apply", "DB", "--local", "--persist-to", str(self.persist_dir)),
            cwd=self.worker_dir,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self, timeout: float = 60) -> LocalCollector:
        self.migrate()
        command = [
            "timeout",
            "--kill-after=5",
            str(self.lifetime),
            *self._wrangler(
                "dev",
                "--local",
                "--ip",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--inspector-port",
                str(free_port()),
                "--persist-to",
                str(self.persist_dir),
                *(arg for name, value in self.variables.items() for arg in ("--var", f"{name}:{value}")),
                "--show-interactive-dev-session=false",
            ),
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.worker_dir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"wrangler dev exited early:\n{self.log_path.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=1):
                    return self
            except urllib.error.HTTPError as answered:  # any HTTP answer means it is serving
                answered.close()
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"wrangler dev did not answer in {timeout} s:\n{self.log_path.read_text(errors='replace')}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalCollector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading what was stored ---------------------------------------------

    def query(self, sql: str) -> list[dict[str, object]]:
        """Rows from `wrangler d1 execute --local` on this collector's database."""
        result = subprocess.run(
            self._wrangler(
                "d1", "execute", "DB", "--local", "--persist-to", str(self.persist_dir), "--json", "--command", sql
            ),
            cwd=self.worker_dir,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        payload = json.loads(result.stdout)
        return list(payload[0]["results"])

    def get_json(self, path: str) -> dict[str, object]:
        request = urllib.request.Request(f"{self.base_url}{path}", headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read()))

    def stats(self) -> dict[str, object]:
        return self.get_json("/v1/stats")

    # worker/README.md, "Rebuilding the aggregates": the job then starts again from the oldest raw event.
    REBUILD_SQL = "DELETE FROM job_state; DELETE FROM installs; DELETE FROM sessions_hourly;"

    def run_job(self, *, at: float | None = None, rebuild: bool = False, runs: int = 20) -> dict[str, object]:
        """Run the hourly job through wrangler dev's scheduled handler, as the cron would at *at*,
        until it has caught up; returns the job's last report, read from the log.

        By default the cron's time is an hour from now, so that every event received so far is
        counted; the watermark then stands in the future, so a later call passes *rebuild* to
        count what arrived since (the README's rebuild, from the raw events)."""
        if rebuild:
            self.query(self.REBUILD_SQL)
        when = time.time() + 3600 + 360 if at is None else at
        report: dict[str, object] = {}
        for _ in range(runs):
            report = self.run_job_once(when)
            if report.get("caught_up"):
                return report
        raise RuntimeError(f"the job did not catch up in {runs} runs: {report}")

    def run_job_once(self, at: float) -> dict[str, object]:
        """One run of the job, as the cron at *at* would start it; its report, read from the log."""
        marker = self.log_path.stat().st_size if self.log_path.exists() else 0
        url = f"{self.base_url}/cdn-cgi/handler/scheduled?cron=7+*+*+*+*&time={int(at * 1000)}"
        with urllib.request.urlopen(url, timeout=120) as response:
            response.read()
        return self._last_job_report(marker)

    def _last_job_report(self, offset: int, timeout: float = 30) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while True:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                lines = [line for line in log.read().decode("utf-8", "replace").splitlines() if "job: {" in line]
            if lines:
                return dict(json.loads(lines[-1].split("job: ", 1)[1]))
            if time.monotonic() > deadline:
                raise RuntimeError(f"no job report in {self.log_path}")
            time.sleep(0.1)


__all__ = ["ROOT", "WORKER_DIR", "LocalCollector", "check_node", "ensure_npm_ci", "free_port", "offline_env"]
