"""A day of cold-room temperatures for the demo store, so its charts have a history from the first start.

Per-minute rollups for the last 24 hours and quarter-hour rollups for the last 30 days of the demo's chilled room,
shaped like the simulated sensor (tools/sim/devices.py ColdRoomSensor): a daily curve, the compressor's 20-minute
sawtooth, door openings and noise, always inside the room's band (no excursion is invented). Deterministic per seed.
"""

from __future__ import annotations

import math
import random
import sqlite3
from datetime import UTC, datetime, timedelta

from edge.devices.cold_chain import utc_text

MINUTE_HOURS = 24
QUARTER_DAYS = 30
READINGS_PER_MINUTE = 6
SHOP_OFFSET = timedelta(hours=8)  # the demo store is in China (UTC+8)


def _curve(at: datetime, setpoint: float, rng: random.Random, door: list[float]) -> float:
    local = at + SHOP_OFFSET  # warmest in the shop's afternoon
    seconds = local.hour * 3600 + local.minute * 60
    daily = 0.8 * math.sin(2 * math.pi * (seconds / 86400 - 0.375))
    cycle = 0.5 * ((seconds % 1200) / 1200 - 0.5)
    if rng.random() < 0.02:
        door[0] += rng.uniform(0.3, 0.8)
    door[0] *= 0.6
    value = setpoint + daily + cycle + door[0] + rng.gauss(0.0, 0.05)
    return min(max(value, setpoint - 1.6), setpoint + 1.7)  # inside the chilled band (0-4 degrees C) for setpoint 2


def seed_temperature_history(
    conn: sqlite3.Connection, now: datetime, *, room: str = "cold", setpoint: float = 2.0, seed: int = 0
) -> int:
    """Insert the rollups (inside the caller's transaction); the number of rows written."""
    if conn.execute("SELECT 1 FROM locations WHERE code = ?", (room,)).fetchone() is None:
        return 0
    rng = random.Random(seed)
    end = now.astimezone(UTC).replace(second=0, microsecond=0)
    rows: list[tuple[str, int, str, int, int, int, int]] = []
    door = [0.0]
    start = end - timedelta(minutes=MINUTE_HOURS * 60)
    minute = start
    while minute < end:
        mean = _curve(minute, setpoint, rng, door)
        spread = abs(rng.gauss(0.0, 0.08))
        mc = [round((mean + rng.uniform(-spread, spread)) * 1000) for _ in range(READINGS_PER_MINUTE)]
        rows.append((room, 60, utc_text(minute), len(mc), sum(mc), min(mc), max(mc)))
        minute += timedelta(minutes=1)
    quarter = end - timedelta(days=QUARTER_DAYS)
    quarter = quarter.replace(minute=quarter.minute - quarter.minute % 15)
    while quarter < end:
        means = [_curve(quarter + timedelta(minutes=m), setpoint, rng, door) for m in range(15)]
        mc = [round(v * 1000) for v in means]
        n = len(mc) * READINGS_PER_MINUTE
        rows.append((room, 900, utc_text(quarter), n, sum(mc) * READINGS_PER_MINUTE, min(mc), max(mc)))
        quarter += timedelta(minutes=15)
    conn.executemany(
        "INSERT OR IGNORE INTO temperature_rollups (location, period, bucket, n, sum_mc, min_mc, max_mc)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    return len(rows)
