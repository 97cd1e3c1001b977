"""Browser fixtures: a real demo box (`storebox serve --demo` in a subprocess) and Debian's Chromium driven by
Playwright's sync API. `make test` installs Chromium (apt) and Playwright (pip); Playwright's own browser download
is never used: the launch names /usr/bin/chromium.

Fixtures (imported by conftest.py): `demo_box` (one per test session), `chromium` (one browser per module),
`page` (a fresh context and page per test, Chinese first), and helpers `log_in(page, box, role)` and
`device(box, kind)` — a simulated device (tools/sim DeviceLink) with the demo device's own MQTT credentials.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.demo.demo_json import DeviceLogin
from tools.box_process import BoxProcess

CHROMIUM = os.environ.get("STOREBOX_CHROMIUM", "/usr/bin/chromium")
# What the machine's closed network needs (no background calls home), and what running as root needs.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    return CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")


def launch(playwright: Any) -> Any:
    path = chromium_path()
    if path is None:
        pytest.fail("Chromium is not installed: `make test` installs Debian's chromium (make chromium)")
    return playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)


@pytest.fixture(scope="session")
def demo_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BoxProcess]:
    # The fleet checks every second, so an alarm shows within a second or two of the readings that raise it.
    box = BoxProcess(tmp_path_factory.mktemp("browser-box"), extra_env={"STOREBOX_FLEET_CHECK_SECONDS": "1"})
    box.start(timeout=120)
    yield box
    box.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One browser per test module. Playwright's sync API keeps an asyncio loop running in the main thread while it
    is open, so it is closed at each module's end: fixtures of the next module that run their own loop (asyncio.run)
    can start. Browser tests also run after all others (tests/conftest.py)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def log_in(page: Any, box: BoxProcess, role: str, *, path: str = "/") -> None:
    """Log in through the form as the demo user of `role`, then open `path`."""
    user = box.demo_json()["users"][role]
    page.goto(f"{box.url}/login?next={path}")
    page.get_by_label("用户名").fill(user["username"])
    page.get_by_label("密码").fill(user["password"])
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(f"{box.url}{path}")


def device(box: BoxProcess, kind: str) -> Any:
    """A connected simulated device of the demo's `kind` (pos, handheld, sensor, scale, scanner); stop() it."""
    from tools.sim.link import DeviceLink

    found = next(d for d in box.demo_json()["devices"] if d["kind"] == kind)
    login = DeviceLogin(found["id"], found["kind"], found["username"], found["password"])
    link = DeviceLink(box.store_id, login, "127.0.0.1", box.mqtt_port)
    link.start()
    assert link.wait_connected(10), f"{kind} device did not connect"
    return link


def screenshot_dir() -> Path:
    return Path(__file__).resolve().parents[4] / "docs" / "screenshots"
