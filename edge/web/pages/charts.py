"""Chart specs for `static/js/charts.js` (uPlot): a template writes `data-chart='{{ spec | tojson }}'`.

A spec is {"kind": "line"|"bars", "x": [unix seconds], "range": [from, to] or null (the x axis),
"series": [{"label", "values"}], "bands": [{"lo", "hi"}], "marks": [{"from", "to"}] (shaded x ranges, e.g.
excursions), "unit": str, "time": optional bool (bars over dates)}. Missing values are null.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any


def _unix(ts: str) -> float | None:
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


def line_chart(
    x: Sequence[float],
    series: Iterable[tuple[str, Sequence[float | None]]],
    *,
    unit: str = "",
    bands: Iterable[tuple[float | None, float | None]] = (),
    marks: Iterable[tuple[float, float]] = (),
    kind: str = "line",
    x_range: tuple[float, float] | None = None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "range": list(x_range) if x_range else None,
        "x": list(x),
        "series": [{"label": label, "values": list(values)} for label, values in series],
        "bands": [{"lo": lo, "hi": hi} for lo, hi in bands],
        "marks": [{"from": a, "to": b} for a, b in marks],
        "unit": unit,
    }


def temperature_chart(
    history: Mapping[str, Any],
    band: Mapping[str, Any] | None,
    excursions: Iterable[Mapping[str, Any]] = (),
    *,
    label: str = "℃",
) -> dict[str, Any]:
    """A room's history (GET /api/v1/cold-rooms/{room}/history) with its band and excursions shaded."""
    xs: list[float] = []
    values: list[float | None] = []
    for point in history.get("points", ()):
        at = _unix(str(point.get("ts", "")))
        if at is None:
            continue
        value = point.get("celsius")
        if value is None:
            value = point.get("avg_celsius")
        xs.append(at)
        values.append(value)
    marks = []
    for excursion in excursions:
        start = _unix(str(excursion.get("started_at", "")))
        end = _unix(str(excursion.get("ended_at") or excursion.get("last_at") or ""))
        if start is not None and end is not None:
            marks.append((start, end))
    bands = [(band.get("min_celsius"), band.get("max_celsius"))] if band else []
    since, until = _unix(str(history.get("since", ""))), _unix(str(history.get("until", "")))
    x_range = (since, until) if since is not None and until is not None and since < until else None
    return line_chart(xs, [(label, values)], unit="℃", bands=bands, marks=marks, x_range=x_range)
