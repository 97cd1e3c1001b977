"""The demo's temperature history: a day of minutes and a month of quarter hours, inside the chilled band."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from edge.db import connect, migrate
from edge.demo.temperatures import MINUTE_HOURS, QUARTER_DAYS, seed_temperature_history
from edge.ledger.masterdata import add_location

NOW = datetime(2026, 12, 6, 2, 30, 17, tzinfo=UTC)


def test_a_day_of_minutes_and_a_month_of_quarter_hours_inside_the_band(tmp_path: Path) -> None:
    conn = connect(tmp_path / "t.db")
    migrate(conn)
    add_location(conn, "cold", "冷藏库", "cold room", "cold", "chilled")
    written = seed_temperature_history(conn, NOW, seed=1)
    minutes = conn.execute(
        "SELECT COUNT(*), MIN(min_mc), MAX(max_mc) FROM temperature_rollups WHERE period = 60"
    ).fetchone()
    quarters = conn.execute("SELECT COUNT(*), MAX(bucket) FROM temperature_rollups WHERE period = 900").fetchone()
    assert minutes[0] == MINUTE_HOURS * 60 and written == minutes[0] + quarters[0]
    assert quarters[0] == QUARTER_DAYS * 96  # quarter hours from NOW - 30 days (aligned down) up to NOW
    assert minutes[1] >= 0 and minutes[2] <= 4000  # the chilled band, in milli-degrees
    assert quarters[1] < "2026-12-06T02:30:00"
    again = seed_temperature_history(conn, NOW, seed=1)  # the same buckets: nothing doubled
    assert conn.execute("SELECT COUNT(*) FROM temperature_rollups").fetchone()[0] == written and again == written
    assert seed_temperature_history(conn, NOW, room="no-such-room") == 0
