"""A module version's KPIs (指标), measured against what actually happened.

A decision is judged once its `check_on` day has come: the module's `judge()` says whether the prediction came true
(right), did not (wrong) or cannot tell yet (asked again at the next pass). Over the last `window` judged decisions
of one module version:

    precision           = right / judged
    false_positive_rate = wrong / judged       (a proposal that acted on something that did not happen)

Both are None while nothing was judged. The thresholds of the manifest (`precision_min`, `false_positive_max`) act
only once at least `min_decisions` decisions were judged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from edge.modules.manifest import Kpis


@dataclass(frozen=True, slots=True)
class Kpi:
    judged: int
    right: int
    wrong: int
    precision: float | None
    false_positive_rate: float | None
    window: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(outcomes: Sequence[bool], window: int) -> Kpi:
    """KPIs of the newest `window` outcomes (newest first)."""
    recent = list(outcomes[:window])
    judged = len(recent)
    right = sum(1 for o in recent if o)
    wrong = judged - right
    return Kpi(
        judged=judged,
        right=right,
        wrong=wrong,
        precision=round(right / judged, 6) if judged else None,
        false_positive_rate=round(wrong / judged, 6) if judged else None,
        window=window,
    )


def breach(kpi: Kpi, thresholds: Kpis) -> str | None:
    """Why the KPIs break the thresholds (an English reason), or None while they hold or too few were judged."""
    if kpi.judged < thresholds.min_decisions or kpi.precision is None or kpi.false_positive_rate is None:
        return None
    problems = []
    if kpi.precision < thresholds.precision_min:
        problems.append(f"precision {kpi.precision:.3f} < {thresholds.precision_min}")
    if kpi.false_positive_rate > thresholds.false_positive_max:
        problems.append(f"false positives {kpi.false_positive_rate:.3f} > {thresholds.false_positive_max}")
    if not problems:
        return None
    return f"{', '.join(problems)} over the last {kpi.judged} judged decisions"


def module_kpis(conn: sqlite3.Connection, name: str, version: int, window: int) -> Kpi:
    """The KPIs of one module version from its judged decisions."""
    rows = conn.execute(
        "SELECT outcome FROM module_decisions WHERE module = ? AND version = ? AND judged_at IS NOT NULL"
        " AND outcome IS NOT NULL ORDER BY judged_at DESC, id DESC LIMIT ?",
        (name, version, window),
    ).fetchall()
    return measure([bool(r[0]) for r in rows], window)


def record_snapshot(conn: sqlite3.Connection, name: str, version: int, kpi: Kpi, now: str) -> int:
    """Keep a KPI snapshot to report upstream (the writer runs it)."""
    cursor = conn.execute(
        "INSERT INTO module_kpi_reports (module, version, judged, right, wrong, precision, false_positive_rate,"
        " window, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (name, version, kpi.judged, kpi.right, kpi.wrong, kpi.precision, kpi.false_positive_rate, kpi.window, now),
    )
    return int(cursor.lastrowid or 0)


def unreported(conn: sqlite3.Connection, limit: int = 500) -> list[dict[str, Any]]:
    """The newest snapshot per module version not yet reported, and the ids of every unreported row it covers."""
    rows = conn.execute(
        "SELECT id, module, version, judged, right, wrong, precision, false_positive_rate, window, at"
        " FROM module_kpi_reports WHERE reported_at IS NULL ORDER BY id LIMIT ?",
        (limit,),
    ).fetchall()
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows:
        entry = dict(r)
        key = (entry["module"], entry["version"])
        ids = latest.get(key, {}).get("ids", [])
        entry["ids"] = [*ids, entry.pop("id")]
        latest[key] = entry
    return list(latest.values())


def mark_reported(conn: sqlite3.Connection, ids: Sequence[int], now: str) -> None:
    conn.executemany("UPDATE module_kpi_reports SET reported_at = ? WHERE id = ?", [(now, i) for i in ids])
