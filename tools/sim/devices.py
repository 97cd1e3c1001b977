"""What the simulated devices do (no I/O): a POS ringing up tickets, a handheld receiving and counting,
a cold-room sensor following a daily curve. Each draws from its own seeded RNG, so a seed replays a run.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge.demo.demo_json import DemoItem

PAYMENTS = (("wechat", 45), ("alipay", 30), ("cash", 15), ("card", 10))
RETURN_REASONS = ("damaged_packaging", "taste", "late_delivery", "quality", "other")


@dataclass(frozen=True, slots=True)
class Event:
    """One event a device is about to send: its kind (the last topic level) and its data."""

    kind: str
    data: dict[str, Any]


class PosTill:
    """A POS (收银机) selling random demo items: tickets of 1–4 lines, mostly one piece each."""

    def __init__(self, items: Sequence[DemoItem], rng: random.Random, interval: tuple[float, float]) -> None:
        if not items:
            raise ValueError("the POS needs items to sell (demo.json items is empty)")
        self._items = list(items)
        self._rng = rng
        self._interval = interval

    def next_delay(self) -> float:
        return self._rng.uniform(*self._interval)

    def next_event(self) -> Event:
        rng = self._rng
        n_lines = min(len(self._items), rng.choices((1, 2, 3, 4), weights=(35, 30, 20, 15))[0])
        lines = [
            {"code": item.barcode, "qty": rng.choices((1, 2, 3, 6), weights=(72, 17, 7, 4))[0]}
            for item in rng.sample(self._items, n_lines)
        ]
        payment = rng.choices([p for p, _ in PAYMENTS], weights=[w for _, w in PAYMENTS])[0]
        return Event("sale", {"lines": lines, "payment": payment})


class Handheld:
    """A handheld terminal (手持终端): scan-to-receive (扫码即入库), now and then a count or a return.

    Counts use the on-hand the box publishes on the retained stock topics (`observe_stock`), so a count
    matches the books except for a little shrinkage; without stock news it only receives.
    """

    def __init__(
        self,
        items: Sequence[DemoItem],
        rng: random.Random,
        interval: tuple[float, float],
        *,
        count_share: float = 0.12,
        return_share: float = 0.05,
    ) -> None:
        if not items:
            raise ValueError("the handheld needs items to scan (demo.json items is empty)")
        self._items = list(items)
        self._skus = {item.sku for item in items}
        self._rng = rng
        self._interval = interval
        self._count_share = count_share
        self._return_share = return_share
        self._floor: dict[str, int] = {}

    def next_delay(self) -> float:
        return self._rng.uniform(*self._interval)

    def observe_stock(self, sku: str, on_hand: dict[str, int]) -> None:
        """Remember the on-hand on the sales floor that the box announced for `sku`."""
        if sku in self._skus and isinstance(on_hand.get("floor"), int):
            self._floor[sku] = on_hand["floor"]

    def next_event(self) -> Event:
        rng = self._rng
        roll = rng.random()
        if roll < self._count_share and self._floor:
            sku = rng.choice(sorted(self._floor))
            shrink = rng.choices((0, 1, 2), weights=(80, 15, 5))[0]
            counted = max(0, self._floor.pop(sku) - shrink)
            return Event("scan", {"code": sku, "qty": counted, "mode": "count", "location": "floor"})
        item = rng.choice(self._items)
        if self._count_share <= roll < self._count_share + self._return_share:
            reason = rng.choice(RETURN_REASONS)
            data: dict[str, Any] = {"code": item.barcode, "qty": 1, "mode": "return", "reason": reason}
            if reason == "other":
                data["reason_text"] = "顾客改变主意 changed mind"
            return Event("scan", data)
        location = "floor" if rng.random() < 0.8 else "backroom"
        qty = rng.choice((6, 12, 24, 48))
        return Event("scan", {"code": item.barcode, "qty": qty, "mode": "receive", "location": location})


class ColdRoomSensor:
    """A cold-room thermometer (冷库温度传感器): a daily curve, the compressor cycle, door openings,
    and a rare excursion above 8 °C that lasts a minute or three.
    """

    def __init__(
        self,
        rng: random.Random,
        interval: float,
        *,
        setpoint: float = 3.0,
        location: str = "cold",
        excursion_chance: float = 1 / 720,
    ) -> None:
        self._rng = rng
        self._interval = interval
        self._setpoint = setpoint
        self._location = location
        self._excursion_chance = excursion_chance
        self._door = 0.0  # extra degrees from an open door, decaying
        self._excursion_left = 0
        self._excursion_peak = 0.0

    def next_delay(self) -> float:
        return self._interval * self._rng.uniform(0.9, 1.1)

    def celsius(self, wall: datetime) -> float:
        rng = self._rng
        seconds = wall.hour * 3600 + wall.minute * 60 + wall.second
        daily = 0.8 * math.sin(2 * math.pi * (seconds / 86400 - 0.375))  # warmest mid-afternoon
        cycle = 0.5 * ((seconds % 1200) / 1200 - 0.5)  # the compressor's 20-minute sawtooth
        if rng.random() < 0.03:
            self._door += rng.uniform(0.8, 2.0)
        self._door *= 0.7
        value = self._setpoint + daily + cycle + self._door + rng.gauss(0.0, 0.12)
        if self._excursion_left == 0 and rng.random() < self._excursion_chance:
            self._excursion_left = rng.randint(12, 36)
            self._excursion_peak = rng.uniform(8.5, 11.0)
        if self._excursion_left > 0:
            self._excursion_left -= 1
            value = max(value, self._excursion_peak - rng.uniform(0.0, 0.6))
        return round(value, 1)

    def next_event(self, wall: datetime) -> Event:
        return Event("temp", {"celsius": self.celsius(wall), "location": self._location})
