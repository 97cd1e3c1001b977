"""Page benchmark: the dashboard's first render over a year of data, and a sale on the bus reaching an open page.

1. A demo box's database gets a year of trading posted straight into its ledger (`--sales-per-day` sales of 1-3
   lines every day for 365 days, weekly receipts to keep stock up), then the box runs as `storebox serve --demo`.
2. Time to first render of the dashboard: the server's answer to `GET /` for a logged-in manager (HTML built from
   the API, in process), and in Debian's Chromium from navigation to the charts drawn (`.chart canvas`), median
   and p95 of `--renders` loads.
3. From a sale on the bus to the open page: the demo POS device publishes a sale over MQTT (a real paho client);
   the time until the page's live stream delivers the stock event (`sb:stock`) and until the sales card shows the
   new count (HTML fragment refetched through the API), `--sales` sales one after another, p50 / p95 / p99.
   Page and benchmark read the same wall clock.

Run: `python -m tools.bench.web [--sales-per-day 200] [--renders 20] [--sales 200]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import UTC, date, datetime, timedelta
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

from edge.app import StoreBox
from edge.config import load_settings
from edge.db import connect
from edge.ledger.commands import DocType, Line, PostDocument
from edge.ledger.posting import PostingContext, post
from tools.box_process import BoxProcess

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]  # fmt: skip


# Wall-clock times (ms) of each stock event, and of each swap of the sales card (htmx replaces its content).
WATCH = """() => {
  window.__stock = []; window.__card = [];
  document.body.addEventListener('sb:stock', () => window.__stock.push(Date.now()));
  document.body.addEventListener('htmx:afterSwap', (e) => {
    if (e.detail.target && e.detail.target.id === 'card-sales') window.__card.push(Date.now());
  });
}"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def post_a_year(data_dir: Path, sales_per_day: int, seed: int = 7) -> dict[str, Any]:
    """Seed the demo store and post a year of trading into it, one commit per day."""
    settings = load_settings(data_dir=data_dir, store_id="store-001")
    box = StoreBox(settings)
    box.prepare_database(demo=True)
    conn = connect(settings.db_path)
    rows = conn.execute(
        "SELECT i.sku, i.cost_fen, i.price_fen FROM items i WHERE i.shelf_life_days IS NULL AND i.price_fen > 0"
        " AND i.base_unit != 'g' ORDER BY i.sku LIMIT 60"
    ).fetchall()
    supplier = conn.execute("SELECT id FROM suppliers ORDER BY id LIMIT 1").fetchone()[0]
    rng = random.Random(seed)
    today = settings.business_date(datetime.now(UTC))
    began = time.perf_counter()
    documents = 0
    for back in range(365, 0, -1):
        day = today - timedelta(days=back)
        now = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=2)
        ctx = PostingContext(now=now, business_date=day, rules=box.rules, guards=box.guards)
        commands: list[PostDocument] = []
        if back % 7 == 0 or back == 365:
            lines = tuple(Line(sku, sales_per_day * 2, price_fen=max(1, cost)) for sku, cost, _ in rows)
            commands.append(PostDocument(f"bench:rc:{day}", DocType.RECEIPT, lines, counterparty=supplier))
        for n in range(sales_per_day):
            picked = rng.sample(rows, rng.randint(1, 3))
            lines = tuple(Line(sku, rng.randint(1, 3)) for sku, _, _ in picked)
            commands.append(PostDocument(f"bench:sa:{day}:{n}", DocType.SALE, lines, payment="wechat"))
        conn.execute("BEGIN IMMEDIATE")
        for command in commands:
            result = post(conn, command, ctx)
            if not result.ok:
                conn.execute("ROLLBACK")
                raise RuntimeError(f"{command.key}: {result.message_en}")
        conn.execute("COMMIT")
        documents += len(commands)
    seconds = time.perf_counter() - began
    total = conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
    conn.close()
    size = settings.db_path.stat().st_size
    return {"documents": documents, "all_documents": total, "seconds": round(seconds, 1), "db_mb": size / 2**20}


def login_cookie(box: BoxProcess) -> str:
    user = box.demo_json()["users"]["manager"]
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect())
    body = urllib.parse.urlencode({"username": user["username"], "password": user["password"], "next": "/"}).encode()
    try:
        opener.open(f"{box.url}/login", body, timeout=30)
    except urllib.error.HTTPError as err:  # the 303 after login
        if err.code != 303:
            raise
    return next(c.value for c in jar if c.name == "sb_session")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def server_render(box: BoxProcess, cookie: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        request = urllib.request.Request(f"{box.url}/", headers={"Cookie": f"sb_session={cookie}"})
        began = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            assert response.status == 200
        times.append((time.perf_counter() - began) * 1000)
    return times


def browser_runs(box: BoxProcess, cookie: str, renders: int, sales: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    from edge.demo.demo_json import DeviceLogin
    from tools.sim.link import DeviceLink

    out: dict[str, list[float]] = {"first_render": [], "stock_event": [], "sales_card": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies([{"name": "sb_session", "value": cookie, "url": box.url}])
        page = context.new_page()
        for _ in range(renders):
            began = time.perf_counter()
            page.goto(f"{box.url}/")
            page.wait_for_selector(".chart canvas", state="attached")
            out["first_render"].append((time.perf_counter() - began) * 1000)
        page.wait_for_selector("#live-state.on")
        page.evaluate(WATCH)
        found = next(d for d in box.demo_json()["devices"] if d["kind"] == "pos")
        pos = DeviceLink(box.store_id, DeviceLogin(found["id"], "pos", found["username"], found["password"]),
                         "127.0.0.1", box.mqtt_port)  # fmt: skip
        pos.start()
        assert pos.wait_connected(10)
        barcode = box.demo_json()["items"][0]["barcode"]
        try:
            for _ in range(sales):
                stock_before = page.evaluate("window.__stock.length")
                card_before = page.evaluate("window.__card.length")
                sent = time.time() * 1000
                pos.send("sale", {"lines": [{"code": barcode, "qty": 1}], "payment": "cash"})
                try:
                    page.wait_for_function(f"window.__stock.length > {stock_before}", timeout=10_000)
                    page.wait_for_function(f"window.__card.length > {card_before}", timeout=10_000)
                except Exception:
                    print(
                        "stock",
                        page.evaluate("window.__stock"),
                        "card",
                        page.evaluate("window.__card"),
                        file=sys.stderr,
                    )
                    print(box.read_log()[-3000:], file=sys.stderr)
                    raise
                out["stock_event"].append(page.evaluate(f"window.__stock[{stock_before}]") - sent)
                out["sales_card"].append(page.evaluate(f"window.__card[{card_before}]") - sent)
                page.wait_for_timeout(50)
        finally:
            pos.stop()
        browser.close()
    return out


def summary(values: list[float]) -> str:
    return (
        f"{statistics.median(values):.0f} / {percentile(values, 95):.0f} / {percentile(values, 99):.0f} ms "
        f"(max {max(values):.0f}, n={len(values)})"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sales-per-day", type=int, default=200)
    parser.add_argument("--renders", type=int, default=20)
    parser.add_argument("--sales", type=int, default=200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="storebox-bench-web-") as tmp:
        data_dir = Path(tmp) / "box"
        seeded = post_a_year(data_dir, args.sales_per_day)
        box = BoxProcess(data_dir)
        box.start(timeout=180)
        try:
            cookie = login_cookie(box)
            server_render(box, cookie, 3)  # warm-up: the first render loads templates and the item index
            server = server_render(box, cookie, args.renders)
            runs = browser_runs(box, cookie, args.renders, args.sales)
        finally:
            box.terminate()
    result = {"seeded": seeded, "server_ms": server, **{k: v for k, v in runs.items()}}
    print("## The page — `python -m tools.bench.web`\n")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{date.today()}; a year of trading: {seeded['documents']:,} documents posted in {seeded['seconds']} s "
          f"({seeded['all_documents']:,} in the database, {seeded['db_mb']:.0f} MB).\n")  # fmt: skip
    print("| measure | median / p95 / p99 |")
    print("| --- | --- |")
    print(f"| dashboard HTML from the server (`GET /`, logged in) | {summary(server)} |")
    print(f"| dashboard in Chromium, navigation to charts drawn | {summary(runs['first_render'])} |")
    print(f"| sale on the bus → stock event on the open page | {summary(runs['stock_event'])} |")
    print(f"| sale on the bus → sales card updated on the page | {summary(runs['sales_card'])} |")
    sys.stdout.flush()
    return result


if __name__ == "__main__":
    main()
