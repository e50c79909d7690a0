"""The dashboard in a real browser: Debian's Chromium driven by playwright, against wrangler dev
seeded with a known data set (DATA below), the hourly job run over it."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, Request, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from local_collector import LocalCollector, ensure_npm_ci  # noqa: E402

CHROMIUM = os.environ.get("AGENTSONAR_CHROMIUM", "/usr/bin/chromium")
# DESIGN.md, machine notes: nothing in the background may try to reach the network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
DAY = 86400


def monday_weeks_ago(weeks: int) -> int:
    """Epoch seconds of the Monday `weeks` ISO weeks before this one (UTC)."""
    today = int(time.time()) // DAY
    return (today - (today + 3) % 7 - 7 * weeks) * DAY


# Weeks A (5 weeks ago), B (4 weeks ago) and C (last week): every figure the tests read is worked out here.
WEEK_A = monday_weeks_ago(5)
WEEK_B = monday_weeks_ago(4)
WEEK_C = monday_weeks_ago(1)
PEOPLE = [str(uuid.UUID(int=i, version=4)) for i in range(1, 21)]  # 20: Mon and Wed of A, Mon of B; 10 of them Tue of C
CI_A = [str(uuid.UUID(int=100 + i, version=4)) for i in range(30)]  # 30: once, Tue of A
RARE = [str(uuid.UUID(int=200 + i, version=4)) for i in range(8)]  # 8 on Python 3.13 / langgraph / darwin
LONE = str(uuid.UUID(int=300, version=4))  # 1: the only Python 3.9, oma_sidecar, win32
CI_B = [str(uuid.UUID(int=400 + i, version=4)) for i in range(5)]  # 5: once, Tue of B

PERSON = ("0.7.0", "3.12", "linux", "x86_64", "crewai")
CI = ("0.6.2", "3.11", "linux", "x86_64", "custom_python")
RARE_FIELDS = ("0.7.0", "3.13", "darwin", "arm64", "langgraph")
LONE_FIELDS = ("0.5.1", "3.9", "win32", "x86_64", "oma_sidecar")


def data() -> list[tuple[str, tuple[str, ...], int]]:
    rows = []
    for install in PEOPLE:
        rows += [(install, PERSON, WEEK_A + 10 * 3600), (install, PERSON, WEEK_A + 2 * DAY + 10 * 3600)]
        rows.append((install, PERSON, WEEK_B + 9 * 3600))
    rows += [(install, CI, WEEK_A + DAY + 3 * 3600) for install in CI_A]
    rows += [(install, RARE_FIELDS, WEEK_A + 3 * DAY + 15 * 3600) for install in RARE]
    rows.append((LONE, LONE_FIELDS, WEEK_A + 4 * DAY + 11 * 3600))
    rows += [(install, CI, WEEK_B + DAY + 3 * 3600) for install in CI_B]
    rows += [(install, PERSON, WEEK_C + DAY + 14 * 3600) for install in PEOPLE[:10]]
    return rows


@pytest.fixture(scope="session")
def collector() -> Iterator[LocalCollector]:
    ensure_npm_ci()
    server = LocalCollector(lifetime=900, variables={"PUBLIC_DASHBOARD": "on"})
    server.start()
    try:
        values = ", ".join(
            f"('{uuid.uuid4()}', '{install}', '{v}', '{py}', '{os_}', '{arch}', '{adapter}', {t}, {t})"
            for install, (v, py, os_, arch, adapter), t in data()
        )
        server.query(f"INSERT INTO events VALUES {values}")
        server.run_job(at=time.time())
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run does)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


class Watched:
    """A page, and everything it asked for or complained about."""

    def __init__(self, page: Page, origin: str) -> None:
        self.page = page
        self.origin = origin
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", self._request)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.errors.append(f"{message.type}: {message.text}")

    def foreign_requests(self) -> list[str]:
        return [url for url in self.requests if not (url.startswith(self.origin + "/") or url.startswith("blob:"))]


@pytest.fixture
def watched(browser: Browser, collector: LocalCollector) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watch = Watched(page, collector.base_url)
    yield watch
    context.close()
    assert watch.foreign_requests() == [], "the page made requests off its origin"
