"""Measure the shipped scenario modules (场景模块) on a simulated store whose truth is known.

`python -m tools.sim.module_kpis [--days 180] [--seed 1] [--runner worker|inline] [--json out.json] [--markdown out.md]`

A store is built on a fresh box database (the real migrations) and run for `--days` days, every change of stock
posted through the real ledger (`edge.ledger.posting.post`, as the demo seed does) and cold-room readings taken by
the real cold chain (`edge.devices.cold_chain.process_readings`):

- perishables (milk, bread, tofu, ...) ordered daily by a store that over-orders some items, sold first expiry first
  by the ledger, written off the evening of their expiry date; now and then the cold room warms up, and lots that
  sat through an alarm far past the band must be sold by the next evening or are written off as spoiled;
- a prepared-food counter: dishes made each morning and sold, leftovers thrown away, ingredients received and
  counted every few days; in some count periods an ingredient really goes missing (injected loss), and now and
  then a count misses a container (a counting error the next count corrects);
- new products launched almost daily into two categories: some burst (sell steadily several times what a typical
  item of the category sells), some spike in launch week and fade, some sell normally.

Each module runs in its own worker process (`python -m edge.modules.worker`, the module host's child) and gets the
events the host would give it: the morning schedule tick, cold-room alarms, each posted count line, the evening
tick. Its decisions are kept in `module_decisions` as the host keeps them and judged by the module's own judge
once due. The report gives, per module, what the judge said (precision = right / judged, false-positive rate =
wrong / judged: the KPIs the host and HQ's canary gate use) and what the simulation knows really happened (truth
precision, and recall: the share of the real events the module caught). docs/modules-shipped.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from edge.db import connect, migrate
from edge.devices.cold_chain import (
    Band,
    ColdChainPolicy,
    mark_cold_alerts_published,
    process_readings,
    unpublished_cold_alerts,
    utc_text,
)
from edge.finance.setup import prepare_books
from edge.ledger.commands import DocType, Line, PostDocument
from edge.ledger.masterdata import add_category, add_item, add_location, add_store, add_supplier
from edge.ledger.posting import PostingContext, post
from edge.ledger.vouchers import RuleBook
from edge.rules.engine import alert_event, ledger_events, schedule_event

SHIPPED = Path(__file__).resolve().parents[2] / "edge" / "modules" / "shipped"
MODULES: tuple[tuple[str, str], ...] = (
    ("near-expiry", "near_expiry"),
    ("recipe-loss", "recipe_loss"),
    ("new-product-burst", "new_product_burst"),
)
STORE = "sim-store"
TIMEZONE = "Asia/Shanghai"
START = date(2026, 1, 5)
WARMUP_DAYS = 28  # history before the modules are asked anything
COLD = "cold"
KITCHEN = "kitchen"
FLOOR = "floor"
COLD_BAND = Band(0, 4000)
POLICY = ColdChainPolicy(bands={"chilled": COLD_BAND, "frozen": Band(None, -18000)}, alarm_after=timedelta(minutes=20))
SPOIL_AFTER_ALARM_DAYS = 2  # the store's quality rule: sell by the next evening, else write off (module: same)
SEVERE_EXCESS_MC = 3000  # an alarm this far above the band triggers the rule


# --- the store --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Perishable:
    sku: str
    name: str
    shelf_life: int
    rate: float  # mean daily demand
    over: float  # how much the store over-orders this item (1.0 = orders what it needs)
    pack: int
    location: str
    price_fen: int


PERISHABLES: tuple[tuple[str, str, int, float, int, str, int], ...] = (
    # sku, name, shelf life, daily rate, pack, location, price
    ("MILK-1L", "鲜牛奶 1L", 7, 18.0, 6, COLD, 1290),
    ("MILK-250", "鲜牛奶 250ml", 7, 30.0, 12, COLD, 450),
    ("YOG-PLAIN", "原味酸奶", 14, 14.0, 6, COLD, 690),
    ("YOG-FRUIT", "果粒酸奶", 14, 9.0, 6, COLD, 790),
    ("TOFU", "嫩豆腐", 3, 12.0, 6, COLD, 350),
    ("NOODLE-FRESH", "鲜面条", 4, 8.0, 5, COLD, 590),
    ("SALAD", "蔬菜沙拉", 2, 6.0, 3, COLD, 1590),
    ("SANDWICH", "三明治", 3, 10.0, 4, COLD, 890),
    ("EGG-TART", "蛋挞", 2, 7.0, 4, COLD, 650),
    ("BREAD-TOAST", "吐司面包", 4, 11.0, 5, FLOOR, 990),
    ("BREAD-ROLL", "餐包", 3, 16.0, 8, FLOOR, 450),
    ("CAKE-SLICE", "切块蛋糕", 3, 5.0, 4, COLD, 1290),
    ("JUICE-NFC", "NFC 果汁", 10, 6.0, 6, COLD, 1590),
    ("DUMPLING-FRESH", "鲜水饺", 5, 5.0, 4, COLD, 2290),
    ("SUSHI", "寿司拼盘", 1, 6.0, 2, COLD, 2590),
    ("CROISSANT", "可颂", 2, 9.0, 6, FLOOR, 690),
)

DISHES: tuple[tuple[str, str, float, int], ...] = (
    ("DELI-KUNGPAO", "宫保鸡丁饭", 24.0, 1800),
    ("DELI-TOMATOEGG", "番茄炒蛋饭", 20.0, 1500),
    ("DELI-PORK", "红烧肉饭", 16.0, 2200),
    ("DELI-GREENS", "清炒时蔬饭", 12.0, 1300),
    ("DELI-FRIEDRICE", "蛋炒饭", 18.0, 1200),
)
INGREDIENTS: tuple[tuple[str, str, str], ...] = (
    ("ING-CHICKEN", "鸡丁", "g"),
    ("ING-PEANUT", "花生米", "g"),
    ("ING-RICE", "大米", "g"),
    ("ING-OIL", "食用油", "ml"),
    ("ING-EGG", "鸡蛋", "piece"),
    ("ING-TOMATO", "番茄", "g"),
    ("ING-PORK", "五花肉", "g"),
    ("ING-GREENS", "青菜", "g"),
)
CATEGORIES: tuple[tuple[str, str, str], ...] = (("snacks", "零食", "snacks"), ("drinks", "饮料", "drinks"))


@dataclass(frozen=True, slots=True)
class Options:
    days: int = 180
    seed: int = 1
    count_every: int = 3  # days between counts of the counter's ingredients
    lossy_share: float = 0.15  # count periods in which an ingredient really goes missing
    miscount_share: float = 0.03  # counts that miss a container
    launch_chance: float = 0.8  # a new product launched on a day
    excursion_chance: float = 0.08  # the cold room warms up on a day
    runner: str = "host"


@dataclass(slots=True)
class Launch:
    sku: str
    category: str
    day: int  # sim day of the launch
    kind: str  # burst, fade, normal
    base: float  # what a typical item of the category sells
    multiplier: float
    spike_days: int = 0  # a fade sells at `multiplier` this many days, then at a third of `base`


@dataclass(slots=True)
class Truth:
    """What really happened, kept by the simulation (the modules never see it)."""

    wasted_lots: dict[tuple[str, str], int] = field(default_factory=dict)  # (sku, lot) -> qty written off
    lot_expiry: dict[tuple[str, str], date] = field(default_factory=dict)
    lossy: dict[tuple[int, str], float] = field(default_factory=dict)  # (count doc id, ingredient) -> units lost
    miscounted: dict[tuple[int, str], float] = field(default_factory=dict)  # (count doc id, ingredient) -> missed
    count_docs: list[tuple[int, str]] = field(default_factory=list)  # (doc id, ingredient) counted after a first one
    count_days: dict[int, int] = field(default_factory=dict)  # count doc id -> sim day
    launches: dict[str, Launch] = field(default_factory=dict)


class Sim:
    """The simulated store over one database file."""

    def __init__(self, path: Path, options: Options) -> None:
        self.path = path
        self.options = options
        self.rng = random.Random(options.seed)
        self.conn = connect(path, synchronous="NORMAL")
        migrate(self.conn)
        self.truth = Truth()
        self.rules: RuleBook | None = None
        self.keys = 0
        self.perishables: list[Perishable] = []
        self.on_order: dict[str, list[tuple[int, int]]] = {}  # sku -> [(arrival day, qty)]
        self.true_stock: dict[str, float] = {}  # ingredients as they really are
        self.period_loss: dict[str, float] = {}  # ingredient -> share lost per day in the current count period
        self.lost_since_count: dict[str, float] = {}
        self.recipes = self._recipes()
        self.regular: dict[str, list[tuple[str, float]]] = {}  # category -> [(sku, rate)]
        self.excursion_lots: list[tuple[int, set[tuple[str, str]]]] = []  # (sim day, lots) under the quality rule
        self.reading_seq = 0
        self.counted_once: set[str] = set()

    # --- set-up -----------------------------------------------------------------------------------------------

    def _recipes(self) -> dict[str, dict[str, float]]:
        import csv

        with (SHIPPED / "recipe_loss" / "recipes.csv").open(encoding="utf-8") as f:
            bom: dict[str, dict[str, float]] = {}
            for row in csv.DictReader(f):
                bom.setdefault(row["dish_sku"], {})[row["ingredient_sku"]] = float(row["qty_base_units"])
        return bom

    def build(self) -> None:
        conn = self.conn
        conn.execute("BEGIN")
        self.rules = prepare_books(conn, "small_enterprise", self.at(0, 6))
        add_store(conn, STORE, "仿真门店 Simulated store", is_local=True)
        add_store(conn, "peer-east", "东店 East store")
        add_location(conn, FLOOR, "卖场", "sales floor", "floor", "ambient")
        add_location(conn, COLD, "冷藏柜", "chilled room", "cold", "chilled")
        add_location(conn, KITCHEN, "熟食档", "prepared-food counter", "other", "chilled")
        add_location(conn, "transit", "在途", "in transit", "transit", "ambient")
        add_category(conn, "fresh", "日配", "fresh", "chilled")
        add_category(conn, "deli", "熟食", "prepared food", "chilled")
        add_category(conn, "ingredients", "原料", "ingredients", "chilled")
        for code, zh, en in CATEGORIES:
            add_category(conn, code, zh, en, "ambient")
        for sup, name in (("sup-fresh", "日配供应商"), ("sup-kitchen", "本店厨房"), ("sup-food", "原料供应商")):
            add_supplier(conn, sup, name)
        add_supplier(conn, "sup-snacks", "零食饮料供应商")
        for sku, name, life, rate, pack, location, price in PERISHABLES:
            over = self.rng.choice((1.0, 1.0, 1.15, 1.3, 1.6))
            storage = "chilled" if location == COLD else "ambient"
            add_item(
                conn,
                sku,
                name,
                base_unit="piece",
                storage_class=storage,
                category="fresh",
                shelf_life_days=life,
                price_fen=price,
                cost_fen=price * 6 // 10,
                lot_tracked=True,
            )
            self.perishables.append(Perishable(sku, name, life, rate, over, pack, location, price))
            self._supplier(sku, "sup-fresh", pack, 1.0)
        # A neighbour that sells some of the chilled items and can carry them cold: transfers are possible.
        for sku in ("MILK-1L", "YOG-PLAIN", "JUICE-NFC"):
            conn.execute(
                "INSERT INTO peer_stock (store, sku, qty, storage_class, cold_chain_capable, last_outbound_date,"
                " distance_km, updated_at) VALUES ('peer-east', ?, 20, 'chilled', 1, ?, 3.5, ?)",
                (sku, START.isoformat(), self.at(0, 6).isoformat()),
            )
        for sku, name, _, price in DISHES:
            add_item(conn, sku, name, base_unit="portion", storage_class="chilled", category="deli", price_fen=price)
        for sku, name, unit in INGREDIENTS:
            add_item(conn, sku, name, base_unit=unit, storage_class="chilled", category="ingredients")
            self.true_stock[sku] = 0.0
            self.lost_since_count[sku] = 0.0
        for code, _, _ in CATEGORIES:
            items = []
            for n in range(10):
                sku = f"{code.upper()}-{n:02d}"
                rate = round(math.exp(self.rng.gauss(math.log(6.0), 0.35)), 2)
                add_item(conn, sku, f"{code} {n}", base_unit="piece", category=code, price_fen=500, cost_fen=300)
                self._supplier(sku, "sup-snacks", 12, 2.0)
                items.append((sku, rate))
            self.regular[code] = items
        conn.execute("COMMIT")

    def _supplier(self, sku: str, supplier: str, pack: int, lead: float) -> None:
        self.conn.execute(
            "INSERT INTO item_suppliers (sku, supplier, unit, pack, moq, lead_time_days, review_days, service_level,"
            " is_primary, active, updated_at, updated_by) VALUES (?, ?, (SELECT base_unit FROM items WHERE sku = ?),"
            " 1, 0, ?, 1, 0.95, 1, 1, ?, 'sim')",
            (sku, supplier, sku, lead, self.at(0, 6).isoformat()),
        )

    # --- time and posting -------------------------------------------------------------------------------------

    def date_of(self, day: int) -> date:
        return START + timedelta(days=day)

    def at(self, day: int, hour: int, minute: int = 0) -> datetime:
        d = self.date_of(day)
        # The store is in China (UTC+8): business hours in UTC are eight hours earlier.
        return datetime(d.year, d.month, d.day, hour, minute, tzinfo=UTC) - timedelta(hours=8)

    def post(self, day: int, hour: int, command_type: DocType, lines: Sequence[Line], **fields: Any) -> int:
        assert self.rules is not None
        self.keys += 1
        ctx = PostingContext(now=self.at(day, hour), business_date=self.date_of(day), rules=self.rules)
        command = PostDocument(key=f"sim-{self.keys}", type=command_type, lines=tuple(lines), actor="sim", **fields)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            result = post(self.conn, command, ctx)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        if not result.ok or result.document_id is None:
            raise RuntimeError(f"{command_type} refused on day {day}: {result.message_en} {result.detail}")
        return result.document_id

    def sellable(self, day: int) -> dict[str, int]:
        today = self.date_of(day).isoformat()
        rows = self.conn.execute(
            "SELECT b.sku, SUM(b.qty) FROM balances b LEFT JOIN lots l ON l.sku = b.sku AND l.lot = b.lot"
            " WHERE b.qty > 0 AND b.location != 'transit' AND (l.expiry IS NULL OR l.expiry >= ?) GROUP BY b.sku",
            (today,),
        ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def demand(self, mean: float, day: int, cv: float = 0.25) -> int:
        weekday = self.date_of(day).weekday()
        level = mean * (1.25 if weekday >= 5 else 0.95)
        if level <= 0:
            return 0
        shape = 1 / (cv * cv)
        return poisson(self.rng, self.rng.gammavariate(shape, level / shape))

    # --- one day ----------------------------------------------------------------------------------------------

    def receive_orders(self, day: int) -> None:
        """Deliveries due today, one receipt per location, lots with their expiry."""
        by_location: dict[str, list[Line]] = {}
        for p in self.perishables:
            due = [(d, q) for d, q in self.on_order.get(p.sku, []) if d == day]
            self.on_order[p.sku] = [(d, q) for d, q in self.on_order.get(p.sku, []) if d != day]
            qty = sum(q for _, q in due)
            if qty <= 0:
                continue
            # Suppliers deliver fresh goods with a day or two of their life already gone now and then.
            expiry = self.date_of(day) + timedelta(days=p.shelf_life - 1 - self.rng.choice((0, 0, 0, 1)))
            lot = f"L{expiry:%Y%m%d}"
            by_location.setdefault(p.location, []).append(
                Line(p.sku, qty, price_fen=p.price_fen * 6 // 10, lot=lot, expiry=expiry)
            )
            self.truth.lot_expiry[(p.sku, lot)] = expiry
        for location, lines in by_location.items():
            self.post(day, 8, DocType.RECEIPT, lines, location=location, counterparty="sup-fresh")

    def order_perishables(self, day: int, stock: Mapping[str, int]) -> None:
        """Order up to a day's cover plus safety, times the item's over-ordering, in packs, for tomorrow."""
        for p in self.perishables:
            pending = sum(q for _, q in self.on_order.get(p.sku, []))
            target = p.rate * 1.8 * p.over
            need = target - stock.get(p.sku, 0) - pending
            if need > 0:
                qty = math.ceil(need / p.pack) * p.pack
                self.on_order.setdefault(p.sku, []).append((day + 1, qty))

    def cold_room(self, day: int) -> list[tuple[datetime, dict[str, Any]]]:
        """Now and then the chilled room warms up after lunch: readings through the real cold chain; returns the
        alarms raised, as the module host's events."""
        alerts: list[tuple[datetime, Any]] = []
        if self.rng.random() >= self.options.excursion_chance:
            return alerts
        peak = self.rng.choice((5.5, 6.0, 7.5, 8.0, 9.0, 11.0))
        minutes = self.rng.choice((30, 45, 60, 90, 120))
        start = self.at(day, 13)
        readings = []
        for k in range(0, minutes + 15, 5):
            mc = int(peak * 1000) if 0 < k <= minutes else 3000
            self.reading_seq += 1
            ts = start + timedelta(minutes=k)
            readings.append(("cold-1", f"r{self.reading_seq}", ts.isoformat(), ts.isoformat(), COLD, mc, utc_text(ts)))
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(
            "INSERT INTO sensor_readings (device, event_id, ts, received_at, location, milli_celsius, ts_utc)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            readings,
        )
        before = self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM cold_excursions").fetchone()[0]
        process_readings(self.conn, POLICY, start + timedelta(minutes=minutes + 15))
        self.conn.execute("COMMIT")
        for row in self.conn.execute(
            "SELECT id, location, peak_mc, max_mc FROM cold_excursions WHERE id > ? AND alarmed_at IS NOT NULL",
            (before,),
        ).fetchall():
            if int(row["peak_mc"]) - int(row["max_mc"]) >= SEVERE_EXCESS_MC:
                lots = {
                    (str(r[0]), str(r[1]))
                    for r in self.conn.execute(
                        "SELECT sku, lot FROM cold_excursion_lots WHERE excursion_id = ? AND lot != ''", (row["id"],)
                    )
                }
                self.excursion_lots.append((day, lots))
        # What the box publishes on storebox/<store>/alert/cold-room, as the module host's broker tap takes it.
        published = unpublished_cold_alerts(self.conn)
        for alert in published:
            if alert.state == "alarm":
                body = {"id": alert.key, "ts": alert.alarmed_at.isoformat(), "data": alert.to_json()}
                alerts.append((alert.alarmed_at, alert_event(STORE, "cold-room", body, alert.alarmed_at)))
        self.conn.execute("BEGIN IMMEDIATE")
        mark_cold_alerts_published(self.conn, [(a.excursion, a.state) for a in published], self.at(day, 14))
        self.conn.execute("COMMIT")
        return [(at, event.to_json()) for at, event in alerts if event is not None]

    def sell(self, day: int) -> None:
        """The day's customers: perishables, dishes and the snack categories, as much as is on the shelf."""
        stock = self.sellable(day)
        lines: list[Line] = []
        for p in self.perishables:
            qty = min(self.demand(p.rate, day), stock.get(p.sku, 0))
            if qty > 0:
                lines.append(Line(p.sku, qty, location=p.location))
        for sku, _, rate, _ in DISHES:
            qty = min(self.demand(rate, day, cv=0.15), stock.get(sku, 0))
            if qty > 0:
                lines.append(Line(sku, qty, location=KITCHEN))
        for items in self.regular.values():
            for sku, rate in items:
                qty = min(self.demand(rate, day), stock.get(sku, 0))
                if qty > 0:
                    lines.append(Line(sku, qty, location=FLOOR))
        for launch in self.truth.launches.values():
            qty = min(self.demand(launch_rate(launch, day), day), stock.get(launch.sku, 0))
            if qty > 0:
                lines.append(Line(launch.sku, qty, location=FLOOR))
        if lines:
            self.post(day, 20, DocType.SALE, lines, payment="cash")

    def write_off_expired(self, day: int) -> None:
        """At close: lots whose last sellable day is today, and lots past the quality rule after an alarm."""
        today = self.date_of(day)
        spoil: set[tuple[str, str]] = set()
        for alarm_day, lots in self.excursion_lots:
            if day - alarm_day == SPOIL_AFTER_ALARM_DAYS - 1:
                spoil |= lots
        rows = self.conn.execute(
            "SELECT b.sku, b.location, b.lot, b.qty, l.expiry FROM balances b JOIN lots l ON l.sku = b.sku"
            " AND l.lot = b.lot WHERE b.qty > 0 AND b.location != 'transit' AND l.expiry IS NOT NULL",
        ).fetchall()
        expired: list[Line] = []
        spoiled: list[Line] = []
        for r in rows:
            key = (str(r["sku"]), str(r["lot"]))
            line = Line(r["sku"], int(r["qty"]), lot=r["lot"], location=r["location"])
            if r["expiry"] <= today.isoformat():
                expired.append(line)
            elif key in spoil:
                spoiled.append(line)
            else:
                continue
            self.truth.wasted_lots[key] = self.truth.wasted_lots.get(key, 0) + int(r["qty"])
        if expired:
            self.post(day, 21, DocType.WRITE_OFF, expired, reason="expired")
        if spoiled:
            self.post(day, 21, DocType.WRITE_OFF, spoiled, reason="spoiled")

    # --- the prepared-food counter ----------------------------------------------------------------------------

    def counter_morning(self, day: int) -> None:
        """Ingredients delivered when the real stock runs low; the day's dishes made (a receipt from the store's
        own kitchen: the ledger has no production document) and their ingredients really used."""
        usage_per_day = self._usage_per_day()
        deliveries = []
        for sku, _, _ in INGREDIENTS:
            if self.true_stock[sku] < usage_per_day[sku] * 3:
                qty = int(usage_per_day[sku] * self.rng.uniform(4.5, 5.5))
                deliveries.append(Line(sku, qty, price_fen=1))
                self.true_stock[sku] += qty
        if deliveries:
            self.post(day, 7, DocType.RECEIPT, deliveries, location=KITCHEN, counterparty="sup-food")
        made = []
        for sku, _, rate, price in DISHES:
            qty = max(1, round(rate * 1.15))
            made.append(Line(sku, qty, price_fen=price // 3))
            for ingredient, per_dish in self.recipes[sku].items():
                used = qty * per_dish * self.rng.gauss(1.0, 0.03)  # portioning is not exact
                lost = used * (0.01 + self.period_loss.get(ingredient, 0.0))  # spillage, and real loss in bad periods
                self.true_stock[ingredient] -= used + lost
                self.lost_since_count[ingredient] += used * self.period_loss.get(ingredient, 0.0)
        self.post(day, 9, DocType.RECEIPT, made, location=KITCHEN, counterparty="sup-kitchen")

    def _usage_per_day(self) -> dict[str, float]:
        usage = {sku: 0.0 for sku, _, _ in INGREDIENTS}
        for dish, _, rate, _ in DISHES:
            for ingredient, per_dish in self.recipes[dish].items():
                usage[ingredient] += rate * 1.15 * per_dish
        return usage

    def counter_close(self, day: int) -> list[dict[str, Any]]:
        """Leftover dishes thrown away; every `count_every` days the ingredients are counted (one stocktake):
        returns the ledger events of its lines, as the module host makes them from the posting."""
        stock = self.sellable(day)
        leftovers = [Line(sku, stock[sku], location=KITCHEN) for sku, _, _, _ in DISHES if stock.get(sku, 0) > 0]
        if leftovers:
            self.post(day, 21, DocType.WRITE_OFF, leftovers, reason="spoiled")
        if day % self.options.count_every != 0:
            return []
        lines: list[Line] = []
        missed: dict[str, float] = {}
        for sku, _, _ in INGREDIENTS:
            self.true_stock[sku] = max(self.true_stock[sku], 0.0)
            counted = self.true_stock[sku]
            if self.rng.random() < self.options.miscount_share:
                miss = counted * self.rng.uniform(0.12, 0.3)  # a container in the back was not counted
                counted -= miss
                missed[sku] = miss
            lines.append(Line(sku, round(counted), location=KITCHEN))
        document_id = self.post(day, 22, DocType.STOCKTAKE, lines, location=KITCHEN)
        self.truth.count_days[document_id] = day
        for sku, _, _ in INGREDIENTS:
            if sku in self.counted_once:
                self.truth.count_docs.append((document_id, sku))
                if self.period_loss.get(sku, 0.0) > 0:
                    self.truth.lossy[(document_id, sku)] = self.lost_since_count[sku]
                if sku in missed:
                    self.truth.miscounted[(document_id, sku)] = missed[sku]
            self.counted_once.add(sku)
            self.lost_since_count[sku] = 0.0
            # The next period: does this ingredient really go missing?
            lossy = self.rng.random() < self.options.lossy_share
            self.period_loss[sku] = self.rng.uniform(0.1, 0.3) if lossy else 0.0
        return [event.to_json() for event in ledger_events(self.conn, document_id)]

    # --- new products -----------------------------------------------------------------------------------------

    def launch(self, day: int) -> None:
        """Maybe a new product today: received with two weeks of what a typical item of its category sells."""
        if day < WARMUP_DAYS or self.rng.random() >= self.options.launch_chance:
            return
        category = self.rng.choice([c for c, _, _ in CATEGORIES])
        typical = sorted(rate for _, rate in self.regular[category])[len(self.regular[category]) // 2]
        kind = self.rng.choices(("burst", "fade", "normal"), weights=(0.3, 0.35, 0.35))[0]
        multiplier = {"burst": self.rng.uniform(2.5, 5.0), "fade": self.rng.uniform(2.5, 5.0)}.get(
            kind, self.rng.uniform(0.6, 1.4)
        )
        sku = f"NEW-{day:03d}"
        self.conn.execute("BEGIN")
        add_item(self.conn, sku, f"新品 {day}", base_unit="piece", category=category, price_fen=600, cost_fen=350)
        self._supplier(sku, "sup-snacks", 12, 2.0)
        self.conn.execute("COMMIT")
        base = typical * self.rng.uniform(0.8, 1.2)
        self.truth.launches[sku] = Launch(sku, category, day, kind, base, multiplier, self.rng.randint(3, 7))
        qty = max(12, round(base * 14))
        self.post(day, 8, DocType.RECEIPT, [Line(sku, qty, price_fen=350)], location=FLOOR, counterparty="sup-snacks")

    def restock_regular(self, day: int, stock: Mapping[str, int]) -> None:
        """Snacks and launches: when under four days of their last week's sales, two weeks more arrive in two days.
        (The store's own rhythm, blind to the module's drafts.)"""
        lines: list[Line] = []
        for sku, arrivals in list(self.on_order.items()):
            if sku.startswith(("SNACKS", "DRINKS", "NEW")):
                due = sum(q for d, q in arrivals if d == day)
                self.on_order[sku] = [(d, q) for d, q in arrivals if d != day]
                if due:
                    lines.append(Line(sku, due, price_fen=350))
        if lines:
            self.post(day, 8, DocType.RECEIPT, lines, location=FLOOR, counterparty="sup-snacks")
        skus = [sku for items in self.regular.values() for sku, _ in items] + list(self.truth.launches)
        week = self._last_week(day, skus)
        for sku in skus:
            if self.on_order.get(sku):
                continue
            rate = week.get(sku, 0) / 7
            if sku in self.truth.launches and day - self.truth.launches[sku].day < 7:
                continue
            if stock.get(sku, 0) < rate * 4 and rate > 0:
                self.on_order.setdefault(sku, []).append((day + 2, max(12, round(rate * 14))))

    def _last_week(self, day: int, skus: Sequence[str]) -> dict[str, int]:
        end = (self.date_of(day) - date(1970, 1, 1)).days
        rows = self.conn.execute(
            "SELECT s.sku, SUM(d.qty) FROM sales_daily d JOIN plan_series s ON s.id = d.series"
            " WHERE d.day >= ? AND d.day < ? GROUP BY s.sku",
            (end - 7, end),
        ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows if r[0] in set(skus)}

    def opening_stock(self) -> None:
        lines = [Line(sku, round(rate * 10), price_fen=300) for items in self.regular.values() for sku, rate in items]
        self.post(0, 7, DocType.RECEIPT, lines, location=FLOOR, counterparty="sup-snacks")
        for p in self.perishables:
            self.on_order[p.sku] = [(0, math.ceil(p.rate * 2 / p.pack) * p.pack)]


def launch_rate(launch: Launch, day: int) -> float:
    """What customers want of a launch on a sim day: a burst ramps up and holds, a fade spikes for its first days
    (launch displays, the curious) and drops to a third of a typical item."""
    age = day - launch.day
    if age < 0:
        return 0.0
    if launch.kind == "burst":
        return launch.base * launch.multiplier * min(1.0, 0.6 + 0.2 * age)
    if launch.kind == "fade":
        return launch.base * (launch.multiplier if age < launch.spike_days else 0.35)
    return launch.base * launch.multiplier


def poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


# --- running the modules ----------------------------------------------------------------------------------------


class SimWriter:
    """The box writer's `execute(fn, *args)` over the simulation's own connection: `fn(conn, *args)` in one
    transaction (the simulation is the only other writer, and it waits its turn in the same thread)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def execute(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(self.conn, *args)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return result


class Bench:
    """Runs the shipped modules over the simulation's events and judges their due decisions each evening.

    `host` (the default): the real module host (edge.modules.host.ModuleHost) on the simulated clock: the shipped
    modules installed as a box installs them, each in its own worker process with its budget, proposals checked
    against the manifest and the action catalogue and executed by the rules' action executor (notices, tickets,
    drafts), decisions recorded, judged and measured by the host, the KPI gate live. When the gate disables a
    module (its KPIs broke), the bench notes it and enables it again, so that the whole run is measured.
    `inline`: the worker's own `answer` in this process and the decisions kept the same way, for a quick run."""

    def __init__(self, sim: Sim, runner: str) -> None:
        self.sim = sim
        self.runner = runner
        self.loop = asyncio.new_event_loop()
        self.clock_now = sim.at(0, 6)
        self.proposals: dict[str, dict[str, int]] = {name: {} for name, _ in MODULES}
        self.calls: dict[str, int] = {name: 0 for name, _ in MODULES}
        self.seconds: dict[str, float] = {name: 0.0 for name, _ in MODULES}
        self.refused: dict[str, int] = {name: 0 for name, _ in MODULES}
        self.gate: dict[str, list[str]] = {name: [] for name, _ in MODULES}
        self.versions: dict[str, int] = {}
        self.host: Any = None
        self.inline: dict[str, Any] = {}
        if runner == "host":
            self.loop.run_until_complete(self._start_host())
        else:
            self._start_inline()

    def clock(self) -> datetime:
        return self.clock_now

    async def _start_host(self) -> None:
        from edge.modules.host import ModuleHost, install_shipped

        sim = self.sim
        writer = SimWriter(sim.conn)
        modules_dir = sim.path.parent / "modules"

        def transact(fn: Callable[..., Any], *args: Any) -> Any:
            return _in_tx(sim.conn, fn, *args)

        results = install_shipped(modules_dir, transact, self.clock_now.isoformat(), actor="sim")
        for result in results:
            if "error" in result:
                raise RuntimeError(f"shipped module not installed: {result}")
        self.host = ModuleHost(
            db_path=sim.path,
            modules_dir=modules_dir,
            store_id=STORE,
            timezone=TIMEZONE,
            writer=writer,
            open_reader=lambda: connect(sim.path, readonly=True),
            clock=self.clock,
        )
        await self.host.refresh()
        missing = [name for name, _ in MODULES if name not in self.host.runners]
        if missing:
            raise RuntimeError(f"modules not running: {missing}: {self.host.alerts[-1:] or ''}")
        self.versions = {name: runner.version for name, runner in self.host.runners.items()}

    def _start_inline(self) -> None:
        from edge.modules.manifest import load_manifest_file
        from edge.modules.worker import load_entry, make_context

        for name, folder in MODULES:
            manifest = load_manifest_file(SHIPPED / folder / "manifest.yaml")
            module = load_entry(SHIPPED / folder, manifest.entry, manifest.name)
            ctx = make_context(self.sim.path, manifest.params, START, STORE)
            self.inline[name] = (module, ctx)
            self.versions[name] = manifest.version

    def close(self) -> None:
        if self.host is not None:
            self.loop.run_until_complete(self.host.close())
        for _, ctx in self.inline.values():
            ctx.db.close()
        self.loop.close()

    def handle(self, name: str, event: Mapping[str, Any], at: datetime) -> None:
        self.clock_now = at
        started = time.perf_counter()
        if self.host is not None:
            self.loop.run_until_complete(self._host_handle(name, event))
        else:
            self._inline_handle(name, event)
        self.seconds[name] += time.perf_counter() - started
        self.calls[name] += 1

    async def _host_handle(self, name: str, event: Mapping[str, Any]) -> None:
        runner = await self._runner(name)
        proposals: list[Mapping[str, Any]] = []
        call = runner.worker.call

        async def spying(request: Mapping[str, Any]) -> dict[str, Any]:
            reply: dict[str, Any] = await call(request)
            proposals.extend(reply.get("proposals") or [])
            return reply

        runner.worker.call = spying
        try:
            result = await self.host.handle(runner, event)
        finally:
            runner.worker.call = call
        self.refused[name] += int(result.get("refused", 0))
        self._count(name, proposals)

    async def _runner(self, name: str) -> Any:
        runner = self.host.runners.get(name)
        if runner is None:  # the KPI gate (or a failure) stopped it: note why, and run it again to keep measuring
            reason = self.host.alerts[-1]["data"]["message_en"] if self.host.alerts else "stopped"
            self.gate[name].append(f"{self.clock_now.date().isoformat()}: {reason}")
            await self.host.set_enabled(name, True, actor="sim")
            runner = self.host.runners[name]
        return runner

    def _inline_handle(self, name: str, event: Mapping[str, Any]) -> None:
        from edge.modules.host import _check_decision
        from edge.modules.store import record_decisions
        from edge.modules.worker import answer

        module, ctx = self.inline[name]
        today = self.clock_now.astimezone(ZoneInfo(TIMEZONE)).date().isoformat()
        reply = answer(module, ctx, {"call": "handle", "event": event, "today": today}, None)
        if not reply.get("ok"):
            raise RuntimeError(f"{name}: {reply.get('error')}")
        proposals = reply.get("proposals") or []
        self._count(name, proposals)
        decisions = [
            d for d, problem in (_check_decision(p["decision"]) for p in proposals if "decision" in p) if d is not None
        ]
        if decisions:
            _in_tx(
                self.sim.conn,
                record_decisions,
                name,
                self.versions[name],
                decisions,
                event.get("key"),
                self.clock_now.isoformat(),
            )

    def _count(self, name: str, proposals: Sequence[Mapping[str, Any]]) -> None:
        for proposal in proposals:
            action = str(proposal.get("action"))
            kind = f"{action}:{proposal.get('draft')}" if action == "create_draft" else action
            self.proposals[name][kind] = self.proposals[name].get(kind, 0) + 1

    def judge_due(self, at: datetime) -> None:
        self.clock_now = at
        for name, _ in MODULES:
            started = time.perf_counter()
            if self.host is not None:
                self.loop.run_until_complete(self._host_judge(name))
            else:
                self._inline_judge(name)
            self.seconds[name] += time.perf_counter() - started

    async def _host_judge(self, name: str) -> None:
        runner = await self._runner(name)
        result = await self.host.judge(runner)
        self.calls[name] += int(result.get("judged", 0)) + int(result.get("pending", 0))

    def _inline_judge(self, name: str) -> None:
        from edge.modules.store import due_decisions, record_outcomes
        from edge.modules.worker import answer

        module, ctx = self.inline[name]
        today = self.clock_now.astimezone(ZoneInfo(TIMEZONE)).date().isoformat()
        outcomes = []
        for decision in due_decisions(self.sim.conn, name, self.versions[name], today, limit=500):
            reply = answer(module, ctx, {"call": "judge", "decision": decision, "today": today}, None)
            self.calls[name] += 1
            if isinstance(reply.get("outcome"), bool):
                outcomes.append((int(decision["id"]), bool(reply["outcome"])))
        if outcomes:
            _in_tx(self.sim.conn, record_outcomes, outcomes, self.clock_now.isoformat())


def _in_tx(conn: sqlite3.Connection, fn: Callable[..., Any], *args: Any) -> Any:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return result


def tick(sim: Sim, day: int, cron: str, hour: int, minute: int = 0) -> tuple[datetime, dict[str, Any]]:
    """A module's schedule firing on a sim day, as the host's schedule loop makes it."""
    at = sim.at(day, hour, minute)
    return at, schedule_event(cron, at.astimezone(ZoneInfo(TIMEZONE)), sim.date_of(day), False).to_json()


def run(options: Options, workdir: Path, say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Simulate, run the modules, and measure them; returns the report (see `report`)."""
    started = time.perf_counter()
    sim = Sim(workdir / "storebox.db", options)
    sim.build()
    sim.opening_stock()
    bench = Bench(sim, options.runner)
    try:
        for day in range(options.days):
            modules_on = day >= WARMUP_DAYS
            if modules_on:
                at, event = tick(sim, day, "0 7 * * *", 7)
                bench.handle("near-expiry", event, at)
                bench.handle("new-product-burst", event, at)
            sim.counter_morning(day)
            sim.receive_orders(day)
            sim.launch(day)
            sim.restock_regular(day, sim.sellable(day))
            for at, alert in sim.cold_room(day):
                if modules_on:
                    bench.handle("near-expiry", alert, at)
            sim.sell(day)
            sim.write_off_expired(day)
            sim.order_perishables(day, sim.sellable(day + 1))
            count_events = sim.counter_close(day)
            if modules_on:
                for event in count_events:
                    bench.handle("recipe-loss", event, sim.at(day, 22))
                at, event = tick(sim, day, "30 22 * * *", 22, 30)
                bench.handle("recipe-loss", event, at)
                bench.judge_due(sim.at(day, 23))
            if day % 30 == 29:
                say(f"day {day + 1}/{options.days}")
        result = report(sim, bench, options)
    finally:
        bench.close()
    result["seconds"] = round(time.perf_counter() - started, 1)
    sim.conn.close()
    return result


# --- measuring --------------------------------------------------------------------------------------------------


def ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def report(sim: Sim, bench: Bench, options: Options) -> dict[str, Any]:
    conn = sim.conn
    truth = sim.truth
    out: dict[str, Any] = {
        "options": {
            "days": options.days,
            "seed": options.seed,
            "runner": options.runner,
            "miscount_share": options.miscount_share,
            "lossy_share": options.lossy_share,
            "warmup_days": WARMUP_DAYS,
        },
        "store": {
            "documents": conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0],
            "stock_moves": conn.execute("SELECT COUNT(*) FROM stock_moves").fetchone()[0],
            "lots": len(truth.lot_expiry),
            "wasted_lots": len(truth.wasted_lots),
            "launches": len(truth.launches),
            "counts_checked": len(truth.count_docs),
            "cold_room_alarms": conn.execute(
                "SELECT COUNT(*) FROM cold_excursions WHERE alarmed_at IS NOT NULL"
            ).fetchone()[0],
        },
        "modules": {},
    }
    for name, _ in MODULES:
        rows = conn.execute(
            "SELECT key, predicted, check_on, outcome FROM module_decisions WHERE module = ? ORDER BY id", (name,)
        ).fetchall()
        judged = [r for r in rows if r["outcome"] is not None]
        right = sum(1 for r in judged if r["outcome"] == 1)
        truth_flags = [truth_of(name, json.loads(r["predicted"]), truth) for r in rows]
        known = [t for t in truth_flags if t is not None]
        caught, events, detail = recall_of(name, rows, truth, options)
        out["modules"][name] = {
            "version": bench.versions[name],
            "decisions": len(rows),
            "judged": len(judged),
            "right": right,
            "wrong": len(judged) - right,
            "precision": ratio(right, len(judged)),
            "false_positive_rate": ratio(len(judged) - right, len(judged)),
            "truth_precision": ratio(sum(known), len(known)),
            "recall": ratio(caught, events),
            "events": events,
            "caught": caught,
            "truth": detail,
            "proposals": bench.proposals[name],
            "refused": bench.refused[name],
            "kpi_gate": bench.gate[name][:3],
            "kpi_gate_breaks": len(bench.gate[name]),
            "calls": bench.calls[name],
            "ms_per_call": round(1000 * bench.seconds[name] / max(bench.calls[name], 1), 1),
        }
    return out


def truth_of(name: str, predicted: Mapping[str, Any], truth: Truth) -> bool | None:
    """Was the decision's prediction true, by what the simulation knows?"""
    if name == "near-expiry":
        key = (str(predicted["sku"]), str(predicted["lot"]))
        return truth.wasted_lots.get(key, 0) > 0
    if name == "recipe-loss":
        key2 = (int(predicted["document_id"]), str(predicted["sku"]))
        return key2 in truth.lossy
    launch = truth.launches.get(str(predicted["sku"]))
    return None if launch is None else launch.kind == "burst"


def recall_of(
    name: str, rows: Sequence[sqlite3.Row], truth: Truth, options: Options
) -> tuple[int, int, dict[str, Any]]:
    """(real events the module decided on, real events it could have seen over the measured days, more detail)."""
    predicted = [json.loads(r["predicted"]) for r in rows]
    measured_from = WARMUP_DAYS + 3
    last_day = START + timedelta(days=options.days - 1)
    if name == "near-expiry":
        lots = {(p["sku"], p["lot"]) for p in predicted}
        first = START + timedelta(days=measured_from)
        events = [k for k, q in truth.wasted_lots.items() if q > 0 and first <= truth.lot_expiry[k] <= last_day]
        caught = [k for k in events if k in lots]
        units = sum(truth.wasted_lots[k] for k in events)
        units_caught = sum(truth.wasted_lots[k] for k in caught)
        return len(caught), len(events), {"wasted_units": units, "wasted_units_caught": units_caught}
    if name == "recipe-loss":
        flagged = {(p["document_id"], p["sku"]) for p in predicted}
        events2 = [k for k in truth.lossy if truth.count_days[k[0]] >= WARMUP_DAYS]
        miscounts = [k for k in truth.miscounted if truth.count_days[k[0]] >= WARMUP_DAYS]
        return (
            sum(1 for k in events2 if k in flagged),
            len(events2),
            {"miscounts": len(miscounts), "miscounts_flagged": sum(1 for k in miscounts if k in flagged)},
        )
    skus = {p["sku"] for p in predicted}
    seen = [launch for launch in truth.launches.values() if launch.day <= options.days - 8]
    bursts = [launch for launch in seen if launch.kind == "burst"]
    kinds = {kind: sum(1 for launch in seen if launch.kind == kind) for kind in ("burst", "fade", "normal")}
    flagged_kinds = {kind: sum(1 for launch in seen if launch.kind == kind and launch.sku in skus) for kind in kinds}
    return (
        sum(1 for launch in bursts if launch.sku in skus),
        len(bursts),
        {"launches": kinds, "flagged": flagged_kinds},
    )


def markdown(result: Mapping[str, Any]) -> str:
    """The report as the table docs/modules-shipped.md shows."""
    lines = [
        "| module | decisions | judged | right | wrong | precision | false positives | truth precision | recall |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f} %"

    for name, m in result["modules"].items():
        lines.append(
            f"| {name} | {m['decisions']} | {m['judged']} | {m['right']} | {m['wrong']} | {pct(m['precision'])}"
            f" | {pct(m['false_positive_rate'])} | {pct(m['truth_precision'])}"
            f" | {pct(m['recall'])} ({m['caught']}/{m['events']}) |"
        )
    return "\n".join(lines) + "\n"


@contextmanager
def workspace(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        for name in ("storebox.db", "storebox.db-wal", "storebox.db-shm"):
            (keep / name).unlink(missing_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="module-kpis-") as tmp:
        yield Path(tmp)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.sim.module_kpis", description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=180, help="days simulated, the first 28 of them history only")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runner", choices=("host", "inline"), default="host", help="the real module host, or inline")
    parser.add_argument("--miscount-share", type=float, default=Options().miscount_share)
    parser.add_argument("--lossy-share", type=float, default=Options().lossy_share)
    parser.add_argument("--keep", type=Path, default=None, help="keep the store database in this directory")
    parser.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the KPI table as Markdown here")
    args = parser.parse_args(argv)
    if args.days <= WARMUP_DAYS + 7:
        parser.error(f"--days must be more than {WARMUP_DAYS + 7}")
    options = Options(
        days=args.days,
        seed=args.seed,
        runner=args.runner,
        miscount_share=args.miscount_share,
        lossy_share=args.lossy_share,
    )
    with workspace(args.keep) as workdir:
        result = run(options, workdir, say=lambda line: print(line, file=sys.stderr, flush=True))
    result["machine"] = f"{platform.machine()} {platform.processor() or ''} Python {platform.python_version()}".strip()
    table = markdown(result)
    print(table, end="")
    print(json.dumps({k: result[k] for k in ("options", "store", "seconds")}, ensure_ascii=False))
    if args.json is not None:
        args.json.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if args.markdown is not None:
        args.markdown.write_text(table, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
