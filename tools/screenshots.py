"""`make screenshots`: every main page of the store manager's page, in Chinese and in English, into docs/screenshots/.

Starts an HQ aggregator (`storebox-cloud serve` on SQLite) and a demo box (tools/box_process.BoxProcess) that syncs
to it, runs the simulated devices for a while so that the dashboard has sales, temperatures and devices online,
then drives Debian's Chromium with Playwright: logs in as the demo manager (the admin for the devices page), opens
each page of PAGES and saves `<name>.<lang>.png` (1280 x 900), the dashboard on a phone
(`dashboard-phone.<lang>.png`), and the HQ pages of HQ_PAGES (`hq-<name>.<lang>.png`, logged in with an HQ token).
Pages whose path needs an id take it from the demo data through the API. `--only NAME` shoots one page.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.box_process import BoxProcess, free_port, storebox_command

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]  # fmt: skip
LOGIN_LABELS = {"zh": ("用户名", "密码", "登录"), "en": ("Username", "Password", "Log in")}


class Api:
    """Just enough of the box's API to find ids for the pages' paths."""

    def __init__(self, box: BoxProcess, role: str) -> None:
        self.box = box
        user = box.demo_json()["users"][role]
        body = urllib.parse.urlencode({"username": user["username"], "password": user["password"]}).encode()
        with urllib.request.urlopen(f"{box.url}/api/v1/auth/token", body, timeout=30) as response:
            self.token = json.loads(response.read())["access_token"]

    def get(self, path: str) -> Any:
        request = urllib.request.Request(f"{self.box.url}{path}", headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def _first(rows: Any, key: str) -> str | None:
    if isinstance(rows, dict):
        rows = rows.get("items") or rows.get("rows") or []
    return str(rows[0][key]) if rows else None


# (file name, role, path or a function of the API giving the path; None skips the page)
PAGES: list[tuple[str, str, str | Callable[[Api], str | None]]] = [
    ("login", "", "/login"),
    ("dashboard", "manager", "/"),
    ("stock-search", "manager", "/stock?q=kkkl"),
    ("stock-item", "manager", lambda api: f"/stock/{api.box.demo_json()['items'][0]['sku']}"),
    ("documents", "manager", "/documents"),
    ("document", "manager", lambda api: f"/documents/{_first(api.get('/api/v1/documents?limit=1'), 'id')}"),
    ("document-new-receipt", "manager", "/documents/new/receipt"),
    ("transfers", "manager", lambda api: f"/transfers?sku={api.box.demo_json()['items'][0]['sku']}"),
    ("replenishment", "manager", "/replenishment"),
    ("emergency", "manager", "/replenishment/emergency"),
    ("receiving", "manager", "/receiving"),
    ("suppliers", "manager", "/suppliers"),
    ("supplier", "manager", lambda api: f"/suppliers/{_first(api.get('/api/v1/suppliers'), 'id')}"),
    ("compliance", "manager", "/compliance"),
    ("purchasing", "manager", "/purchasing"),
    ("match-exceptions", "manager", "/purchasing/exceptions"),
    ("vouchers", "manager", "/finance/vouchers"),
    ("trial-balance", "manager", "/finance/trial-balance"),
    ("ap-ageing", "manager", "/finance/ap-ageing"),
    ("cold-rooms", "manager", "/cold-rooms"),
    ("cold-room", "manager", lambda api: f"/cold-rooms/{_first(api.get('/api/v1/cold-rooms'), 'room')}"),
    ("devices", "admin", "/devices"),
    ("rules", "manager", "/rules"),
    ("rule-editor", "manager", "/rule-editor"),
    ("rule", "manager", lambda api: f"/rules/{_first(api.get('/api/v1/rules?limit=1'), 'id')}"),
    ("rule-reviews", "manager", "/rule-reviews"),
    ("rule-firings", "manager", "/rule-firings"),
    ("modules", "manager", "/modules"),
    ("module", "manager", lambda api: f"/modules/{_first(api.get('/api/v1/modules'), 'name')}"),
]


HQ_PAGES = [
    ("hq-login", "/hq/login"),
    ("hq-stores", "/hq"),
    ("hq-stock", "/hq/stock?sku={sku}"),
    ("hq-sales", "/hq/sales"),
    ("hq-trial-balance", "/hq/trial-balance"),
    ("hq-compliance", "/hq/compliance"),
    ("hq-rollouts", "/hq/rollouts"),
]


class Aggregator:
    """`storebox-cloud serve` on a free port with its own data dir; the demo store registered, an HQ token made."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("STOREBOX_")}
        self.env.update(
            STOREBOX_CLOUD_DATA_DIR=str(data_dir),
            STOREBOX_CLOUD_DB_URL=f"sqlite:///{data_dir / 'cloud.db'}",
            STOREBOX_CLOUD_PORT=str(self.port),
            STOREBOX_CLOUD_LOG_LEVEL="WARNING",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> dict[str, Any]:
        Path(self.env["STOREBOX_CLOUD_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [sys.executable, "-m", "cloud_sync", *args], env=self.env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"storebox-cloud {' '.join(args)}: {done.stderr.strip()[-2000:]}")
        return dict(json.loads(done.stdout.splitlines()[0]))

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "cloud_sync", "serve"], env=self.env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("the aggregator did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def log_in(page: Any, box: BoxProcess, role: str, lang: str) -> None:
    user = box.demo_json()["users"][role]
    name, password, button = LOGIN_LABELS[lang]
    page.goto(f"{box.url}/login")
    page.get_by_label(name).fill(user["username"])
    page.get_by_label(password).fill(user["password"])
    page.get_by_role("button", name=button).click()
    page.wait_for_url(f"{box.url}/")


def shoot_hq(browser: Any, hq: Aggregator, token: str, sku: str, only: str | None) -> list[Path]:
    saved = []
    for lang in ("zh", "en"):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies([{"name": "sb_lang", "value": lang, "url": hq.url}])
        page = context.new_page()
        page.goto(f"{hq.url}/hq/login")
        if not only or only == "hq-login":
            file = OUT / f"hq-login.{lang}.png"
            page.screenshot(path=str(file))
            saved.append(file)
        page.locator("input[type=password]").fill(token)
        page.locator("form button[type=submit]").first.click()
        page.wait_for_url(f"{hq.url}/hq")
        for name, path in HQ_PAGES:
            if (only and name != only) or name == "hq-login":
                continue
            page.goto(f"{hq.url}{path.format(sku=sku)}")
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(300)
            file = OUT / f"{name}.{lang}.png"
            page.screenshot(path=str(file))
            saved.append(file)
        context.close()
    return saved


def shoot(box: BoxProcess, only: str | None, hq: Aggregator | None = None, token: str = "") -> list[Path]:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    apis = {role: Api(box, role) for role in ("manager", "admin")}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        for lang in ("zh", "en"):
            contexts: dict[str, Any] = {}
            for role in ("", "manager", "admin"):
                context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
                context.add_cookies([{"name": "sb_lang", "value": lang, "url": box.url}])
                if role:
                    log_in(context.new_page(), box, role, lang)
                contexts[role] = context
            for name, role, target in PAGES:
                if only and name != only:
                    continue
                path = target(apis[role or "manager"]) if callable(target) else target
                if path is None or "None" in path:
                    print(f"skip {name}: no data for its path", file=sys.stderr)
                    continue
                page = contexts[role].new_page()
                response = page.goto(f"{box.url}{path}")
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(300)  # charts draw after load
                status = response.status if response else 0
                if status >= 400:
                    print(f"warning: {name} ({path}) answered {status}", file=sys.stderr)
                file = OUT / f"{name}.{lang}.png"
                page.screenshot(path=str(file))
                saved.append(file)
                page.close()
            if not only or only == "dashboard-phone":
                phone = browser.new_context(
                    viewport={"width": 390, "height": 844}, is_mobile=True, device_scale_factor=2
                )
                phone.add_cookies([{"name": "sb_lang", "value": lang, "url": box.url}])
                page = phone.new_page()
                log_in(page, box, "manager", lang)
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(300)
                file = OUT / f"dashboard-phone.{lang}.png"
                page.screenshot(path=str(file))
                saved.append(file)
                phone.close()
            for context in contexts.values():
                context.close()
        if hq is not None and (not only or only.startswith("hq-")):
            saved += shoot_hq(browser, hq, token, box.demo_json()["items"][0]["sku"], only)
        browser.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="data dir of the demo box (kept; default: a temporary one)")
    parser.add_argument("--simulate", type=float, default=40.0, help="seconds of simulated devices first")
    parser.add_argument("--only", help="shoot only this page (a name from PAGES)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        hq = Aggregator(Path(tmp) / "cloud")
        key = hq.cli("stores", "add", "store-001", "--name", "演示店 Demo store", "--company", "demo",
                     "--company-name", "演示商贸 Demo Trading")["key"]  # fmt: skip
        token = hq.cli("hq", "token-add", "screenshots")["token"]
        hq.start()
        box = BoxProcess(
            args.keep or Path(tmp) / "box",
            extra_env={"STOREBOX_SYNC_URL": hq.url, "STOREBOX_SYNC_INTERVAL_SECONDS": "2"},
        )
        box.data_dir.mkdir(parents=True, exist_ok=True)
        box.cli("sync", "set-key", key)
        print(f"demo box at {box.url}, data in {box.data_dir}; aggregator at {hq.url}")
        box.start(timeout=180)
        try:
            if args.simulate > 0:
                began = time.monotonic()
                subprocess.run(
                    storebox_command("simulate", "--duration", str(args.simulate)), env=box.env, check=True,
                    capture_output=True, timeout=args.simulate + 60,
                )  # fmt: skip
                print(f"simulated devices for {time.monotonic() - began:.0f} s")
                time.sleep(5)  # the last sales reach the aggregator
            saved = shoot(box, args.only, hq, token)
        finally:
            box.terminate()
            hq.stop()
    for file in saved:
        print(file.relative_to(OUT.parents[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
