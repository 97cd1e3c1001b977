"""KPI reports of the stores' scenario modules (`POST /api/v1/sync/modules/kpis`, signed by the store): parsed
strictly, kept as each store's latest report per module version, and checked against the rollouts: a report that
breaks a threshold with enough judged decisions rolls its rollout back at once (docs/canary.md)."""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from cloud_sync.errors import CloudError
from cloud_sync.modules.rollouts import (
    PILOTING,
    PROMOTED,
    Kpis,
    breaks,
    roll_back,
    thresholds_of,
)
from cloud_sync.modules.tables import module_kpis, module_rollout_stores, module_rollouts
from cloud_sync.packages.format import NAME

MAX_REPORTS = 500
MAX_BODY_BYTES = 4 * 2**20
MAX_COUNT = 10**12
MAX_WINDOW = 10**6
MAX_VERSION = 2**53 - 1


@dataclass(frozen=True, slots=True)
class KpiReport:
    """One module version's KPIs as a box measured them over its last `window` judged decisions."""

    module: str
    version: int
    judged: int
    right: int
    wrong: int
    precision: float | None
    false_positive_rate: float | None
    window: int
    at: str | None


class KpiReportInvalid(CloudError):
    def __init__(self, report: int | None, field: str, zh: str, en: str) -> None:
        where_zh = f"第 {report} 条报告的 {field}" if report else field
        where_en = f"report {report}: {field}" if report else field
        super().__init__(
            "module_kpis_invalid",
            f"KPI 上报无效: {where_zh} {zh}",
            f"invalid KPI report: {where_en} {en}",
            422,
            report=report,
            field=field,
        )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def inflate(body: bytes) -> bytes:
    """A gzip body (`Content-Encoding: gzip`, as the box's client sends by default), decompressed within bounds."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        raw = inflater.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error:
        raise KpiReportInvalid(None, "body", "不是有效的 gzip", "is not valid gzip") from None
    if len(raw) > MAX_BODY_BYTES:
        raise KpiReportInvalid(None, "body", f"解压后超过 {MAX_BODY_BYTES} 字节", f"is over {MAX_BODY_BYTES} bytes")
    if not inflater.eof:
        raise KpiReportInvalid(None, "body", "gzip 数据不完整", "gzip data is truncated")
    return raw


def parse_reports(body: bytes, *, compressed: bool = False) -> list[KpiReport]:
    """The reports of a request body `{"reports": [...]}`, or KpiReportInvalid naming the report (1-based) and the
    field. Fields the aggregator does not know are ignored, so that a newer box works with an older aggregator."""
    if compressed:
        body = inflate(body)
    if len(body) > MAX_BODY_BYTES:
        raise KpiReportInvalid(None, "body", f"超过 {MAX_BODY_BYTES} 字节", f"is over {MAX_BODY_BYTES} bytes")
    try:
        doc = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise KpiReportInvalid(None, "body", "不是 UTF-8 JSON", "is not UTF-8 JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("reports"), list):
        raise KpiReportInvalid(None, "reports", "应为列表", "must be a list")
    if len(doc["reports"]) > MAX_REPORTS:
        raise KpiReportInvalid(None, "reports", f"最多 {MAX_REPORTS} 条", f"must hold at most {MAX_REPORTS}")
    return [_report(i, item) for i, item in enumerate(doc["reports"], start=1)]


def _report(n: int, item: Any) -> KpiReport:
    if not isinstance(item, dict):
        raise KpiReportInvalid(n, "report", "应为对象", "must be an object")

    def integer(field: str, low: int, high: int) -> int:
        value = item.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise KpiReportInvalid(n, field, f"应为 {low} 到 {high} 的整数", f"must be an integer from {low} to {high}")
        return value

    def ratio(field: str) -> float | None:
        value = item.get(field)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise KpiReportInvalid(n, field, "应为 0 到 1 之间的数或 null", "must be a number from 0 to 1, or null")
        if not 0 <= value <= 1:
            raise KpiReportInvalid(n, field, "应在 0 到 1 之间", "must be from 0 to 1")
        return float(value)

    module = item.get("module")
    if not isinstance(module, str) or not NAME.match(module):
        raise KpiReportInvalid(
            n, "module", "应为模块名 (小写字母、数字、. _ -)", "must be a module name (a-z 0-9 . _ -)"
        )
    version = integer("version", 1, MAX_VERSION)
    judged = integer("judged", 0, MAX_COUNT)
    right = integer("right", 0, MAX_COUNT)
    wrong = integer("wrong", 0, MAX_COUNT)
    if right + wrong > judged:
        raise KpiReportInvalid(n, "right", "与 wrong 之和不能大于 judged", "plus wrong must not exceed judged")
    window = integer("window", 1, MAX_WINDOW)
    at = item.get("at")
    if at is not None and (not isinstance(at, str) or len(at) > 40 or not at.isprintable()):
        raise KpiReportInvalid(n, "at", "应为时间文本 (最多 40 个字符)", "must be a time text (at most 40 characters)")
    ratio("precision"), ratio("false_positive_rate")  # checked for shape; the stored ratios come from the counts
    # What HQ shows and gates on agrees with the counts, whatever ratio a box (or a bug) sent along with them.
    precision = right / judged if judged else None
    false_positive_rate = wrong / judged if judged else None
    return KpiReport(module, version, judged, right, wrong, precision, false_positive_rate, window, at)


def _upsert(conn: sa.Connection, values: Mapping[str, Any]) -> None:
    insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(module_kpis)
    changing = {k: v for k, v in values.items() if k not in ("store", "name", "version")}
    conn.execute(
        insert.values(**values, reports=1).on_conflict_do_update(
            index_elements=["store", "name", "version"],
            set_={**changing, "reports": module_kpis.c.reports + 1},
        )
    )


def record_reports(engine: sa.Engine, store: str, reports: list[KpiReport], now: datetime) -> dict[str, Any]:
    """Keep each report as the store's latest for its module version, and roll back every rollout a report
    breaks (piloting with this store as a pilot, or promoted): one transaction."""
    rolled_back: list[int] = []
    with engine.begin() as conn:
        for r in reports:
            _upsert(
                conn,
                {
                    "store": store,
                    "name": r.module,
                    "version": r.version,
                    "judged": r.judged,
                    "right_count": r.right,
                    "wrong_count": r.wrong,
                    "precision_rate": r.precision,
                    "false_positive_rate": r.false_positive_rate,
                    "window_size": r.window,
                    "box_at": r.at,
                    "received_at": now.isoformat(),
                },
            )
            rollout = conn.execute(
                sa.select(module_rollouts).where(
                    module_rollouts.c.name == r.module,
                    module_rollouts.c.version == r.version,
                    module_rollouts.c.state.in_((PILOTING, PROMOTED)),
                )
            ).first()
            if rollout is None:
                continue
            if rollout.state == PILOTING:
                pilot = conn.execute(
                    sa.select(module_rollout_stores.c.store).where(
                        module_rollout_stores.c.rollout_id == rollout.id, module_rollout_stores.c.store == store
                    )
                ).first()
                if pilot is None:
                    continue  # a store outside the pilot (a local install) does not decide the rollout
            kpis = Kpis(store, r.judged, r.right, r.wrong, r.precision, r.false_positive_rate, r.window, r.at, None)
            broken = breaks(kpis, thresholds_of(rollout))
            if not broken:
                continue
            zh = "；".join(b["message"] for b in broken)
            en = "; ".join(b["message_en"] for b in broken)
            if roll_back(
                conn,
                rollout,
                now=now,
                by=f"kpis:{store}",
                reason=f"门店 {store} 的 KPI 未达标 (判定 {r.judged} 次): {zh}",
                reason_en=f"store {store} broke the KPIs over {r.judged} judged decisions: {en}",
                store=store,
                judged=r.judged,
                right=r.right,
                wrong=r.wrong,
                broken=[b["code"] for b in broken],
            ):
                rolled_back.append(int(rollout.id))
    return {"store": store, "recorded": len(reports), "rolled_back": rolled_back}
