"""The maintainers' dashboard and the public page, in headless Chromium, against wrangler dev."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest
from conftest import DAY, LONE, WEEK_A, WEEK_B, WEEK_C, Watched
from local_collector import LocalCollector
from playwright.sync_api import Page, expect

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "dashboard.png"


def iso_week(epoch: int) -> str:
    year, week, _ = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isocalendar()
    return f"{year}-W{week:02d}"


A, B, C = iso_week(WEEK_A), iso_week(WEEK_B), iso_week(WEEK_C)
TWO_BEFORE_C = iso_week(WEEK_C - 14 * DAY)


def table(page: Page, section: str) -> list[list[str]]:
    """The numbers a section shows on demand: open its details, read its table's cells."""
    details = page.locator(f"#{section} details").first
    details.locator("summary").click()
    rows = details.locator("tr")
    return [[cell.strip() for cell in rows.nth(i).locator("th, td").all_inner_texts()] for i in range(rows.count())]


def row(rows: list[list[str]], week: str) -> list[str]:
    return next(r for r in rows if r[0] == week)


def sign_in(watched: Watched, collector: LocalCollector, token: str) -> None:
    page = watched.page
    page.get_by_label("Stats token").fill(token)
    page.get_by_label("Stats token").press("Enter")  # the keyboard is enough


def test_the_token_is_asked_once_refused_when_wrong_and_kept_for_the_session(
    watched: Watched, collector: LocalCollector
) -> None:
    page = watched.page
    page.goto(f"{collector.base_url}/dashboard")
    expect(page.get_by_label("Stats token")).to_be_focused()
    sign_in(watched, collector, "not-the-token")
    expect(page.locator("#login-error")).to_have_text(
        "That token was refused. Check the STATS_TOKEN of this collector."
    )
    expect(page.locator("#sections")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0  # a refused token is not kept
    sign_in(watched, collector, collector.token)
    expect(page.locator("#humans .summary")).to_contain_text(f"{C}:")
    page.reload()  # the same tab: not asked again
    expect(page.locator("#humans .summary")).to_be_visible()
    expect(page.locator("#login")).to_be_hidden()
    assert collector.token not in page.url and page.context.cookies() == []  # never in a URL or a cookie
    page.get_by_role("button", name="Forget the token").click()
    expect(page.get_by_label("Stats token")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    # Every request for figures carried the token as a Bearer header, none in the URL.
    assert not [url for url in watched.requests if collector.token in url]
    assert watched.errors == [e for e in watched.errors if "401" in e]  # only the refused token's 401


def test_the_charts_show_the_known_numbers(watched: Watched, collector: LocalCollector) -> None:
    page = watched.page
    page.goto(f"{collector.base_url}/dashboard")
    sign_in(watched, collector, collector.token)
    # The latest closed week first: 10 of the people came back; one-shot is settled two weeks behind.
    expect(page.locator("#humans .summary")).to_have_text(
        f"{C}: 10 active installs, 10 returning (100%), 0 new; 10 sessions. One-shot in {TWO_BEFORE_C}: 0."
    )
    humans = table(page, "humans")
    assert humans[0] == ["week", "active", "returning", "one-shot", "new", "sessions"]
    assert row(humans, A) == [A, "59", "20", "39", "59", "79"]
    assert row(humans, B) == [B, "25", "20", "5", "5", "25"]
    # The bars: in week A, 20 returning, 39 one-shot, 0 other active (the chart's own titles).
    titles = page.locator("#humans svg rect title").evaluate_all("nodes => nodes.map(n => n.textContent)")
    assert f"{A}, returning: 20" in titles and f"{A}, one-shot: 39" in titles

    python = table(page, "python")  # shares of returning installs: only the people return
    assert row(python, A)[python[0].index("3.12")] == "20"
    expect(page.locator("#python .summary")).to_have_text(
        f"Python 3.12, the oldest seen, is 100% of returning installs in {C}."
    )
    adapters = table(page, "adapter")
    header = adapters[0]
    week_a = row(adapters, A)
    assert {name: week_a[header.index(name)] for name in header[1:]} == {
        "custom_python": "30",
        "crewai": "20",
        "langgraph": "8",
        "oma_sidecar": "1",
    }
    versions = table(page, "version")
    assert row(versions, B)[versions[0].index("0.7.0")] == "20"

    cohorts = page.locator("#cohorts table.cohort tbody tr", has_text=A)
    cells = cohorts.locator("td").all_inner_texts()
    assert cells[:6] == ["59", "33.9%", "0%", "0%", "16.9%", "·"]  # 20 of 59 the week after, 10 in C; C+1 open
    assert watched.errors == []


def test_empty_weeks_and_an_empty_collector_say_so(watched: Watched, browser: object) -> None:
    with LocalCollector(lifetime=300) as empty:
        page = watched.page
        watched.origin = empty.base_url
        page.goto(f"{empty.base_url}/dashboard")
        page.get_by_label("Stats token").fill(empty.token)
        page.get_by_label("Stats token").press("Enter")
        expect(page.locator("#as-of")).to_have_text("The hourly job has not run yet: no figures.")
        expect(page.locator("#humans .empty")).to_contain_text("No closed week yet")
        expect(page.locator("#cohorts .empty")).to_be_visible()
    assert watched.errors == []


@pytest.mark.parametrize("width", [375, 1280])
def test_readable_on_a_phone_and_a_desktop(
    watched: Watched, collector: LocalCollector, width: int, tmp_path: Path
) -> None:
    page = watched.page
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"{collector.base_url}/dashboard")
    sign_in(watched, collector, collector.token)
    expect(page.locator("#cohorts table.cohort")).to_be_visible()
    # Nothing wider than the screen but the tables, which scroll inside their own box.
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    for section in ("humans", "python", "adapter", "version", "platform", "cohorts"):
        box = page.locator(f"#{section}").bounding_box()
        assert box is not None and box["width"] <= width
    font = page.evaluate("getComputedStyle(document.querySelector('#humans .summary')).fontSize")
    assert float(font.rstrip("px")) >= 14
    page.screenshot(path=str(tmp_path / f"dashboard-{width}.png"), full_page=True)
    print(f"screenshot: {tmp_path / f'dashboard-{width}.png'}")
    assert watched.errors == []


def test_keyboard_reaches_the_numbers_and_the_csv(watched: Watched, collector: LocalCollector) -> None:
    page = watched.page
    page.goto(f"{collector.base_url}/dashboard")
    sign_in(watched, collector, collector.token)
    expect(page.locator("#humans .summary")).to_be_visible()
    page.locator("#humans summary").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#humans details")).to_have_attribute("open", "")
    with page.expect_download() as download:
        page.locator("#humans button.csv").focus()
        page.keyboard.press("Enter")
    content = Path(download.value.path()).read_text()
    assert content.startswith("week,start,dimension,value,sessions,active,returning,new,one_shot")
    assert f"{A}," in content and ",all,," in content
    assert watched.errors == []


def test_the_public_page_hides_what_it_must(watched: Watched, collector: LocalCollector) -> None:
    page = watched.page
    page.goto(f"{collector.base_url}/public")
    expect(page.locator("#humans .summary")).to_contain_text(f"{C}: 10 active installs, 10 returning.")
    python = table(page, "python")
    header, week_a = python[0], row(python, A)
    cells = dict(zip(header[1:], week_a[1:], strict=True))
    # Exact: 3.11 30, 3.12 20, 3.13 8, the lone 3.9 1 (59 active). Published: every number rounded
    # to 10; 3.13 and 3.9 (under 10 each) are not named, their 9 installs are other, shown as 10.
    assert cells == {"3.11": "30", "3.12": "20", "other": "10"}
    humans = table(page, "humans")
    assert row(humans, A)[1:] == ["60", "20", "60"]  # active 59, returning 20, new 59: rounded
    for line in python[1:] + humans[1:]:
        assert all(int(n) % 10 == 0 for n in line[1:])
    expect(page.locator("#rounding")).to_have_text("Every figure is rounded to the nearest 10")
    # Week B had 25 active installs: no breakdown at all.
    assert B not in [r[0] for r in python]
    expect(page.locator("#python .note")).to_have_text("Weeks with fewer than 50 active installs are not shown.")
    text = page.locator("main").inner_text()
    assert LONE not in text and "oma_sidecar\n1" not in text
    assert page.locator("#login").count() == 0  # no token asked
    assert watched.errors == []


def test_the_readme_screenshot_of_the_demo_data(watched: Watched, tmp_path: Path) -> None:
    """The dashboard over the demo's eight weeks of made-up usage: README's docs/dashboard.png
    when AGENTSONAR_UPDATE_SCREENSHOT=1 (so that a test run leaves the tree as it was)."""
    import random
    import time

    from demo import seed_rows

    with LocalCollector(lifetime=300) as demo:
        rows = seed_rows(int(time.time()), random.Random(2026))
        for i in range(0, len(rows), 500):
            demo.query("INSERT INTO events VALUES " + ", ".join(rows[i : i + 500]))
        demo.run_job(at=time.time())
        watched.origin = demo.base_url
        page = watched.page
        page.goto(f"{demo.base_url}/dashboard")
        page.get_by_label("Stats token").fill(demo.token)
        page.get_by_label("Stats token").press("Enter")
        expect(page.locator("#cohorts table.cohort")).to_be_visible()
        target = SCREENSHOT if os.environ.get("AGENTSONAR_UPDATE_SCREENSHOT") == "1" else tmp_path / SCREENSHOT.name
        page.screenshot(path=str(target), full_page=True)
        print(f"screenshot: {target}")
    assert watched.errors == []
