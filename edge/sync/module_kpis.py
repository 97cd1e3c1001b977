"""Scenario module KPIs reported upstream (docs/modules.md, docs/canary.md): after each pull, the newest KPI
snapshot of every module version not yet reported goes to the aggregator (`POST /api/v1/sync/modules/kpis`), which
gates the canary rollout (promotion, automatic rollback). A snapshot the aggregator refuses is logged and not sent
again (a newer one follows at the next judge pass); an unreachable aggregator keeps them for the next pull."""

from __future__ import annotations

import logging
from typing import Any

from edge.modules import kpis
from edge.sync.errors import SyncRefused

log = logging.getLogger("storebox.sync.module_kpis")
PATH = "/api/v1/sync/modules/kpis"
MAX_REPORTS = 200


def report_body(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """The request body: `{"reports": [{module, version, judged, right, wrong, precision, false_positive_rate,
    window, at}]}`, one per module version."""
    fields = ("module", "version", "judged", "right", "wrong", "precision", "false_positive_rate", "window", "at")
    return {"reports": [{k: s[k] for k in fields} for s in snapshots]}


async def report_kpis(client: Any, ctx: Any) -> int:
    """Send the unreported snapshots (newest per module version); how many module versions were reported."""
    conn = ctx.open_reader()
    try:
        snapshots = kpis.unreported(conn)[:MAX_REPORTS]
    finally:
        conn.close()
    if not snapshots:
        return 0
    try:
        await client.post_json(PATH, report_body(snapshots), gzip=False)
    except SyncRefused as refused:  # the aggregator will never take these (an older aggregator, a bad value)
        log.warning("模块指标未被接受 / module KPIs refused: %s", refused.message_en)
    ids = [i for s in snapshots for i in s["ids"]]
    await ctx.writer.execute(kpis.mark_reported, ids, ctx.clock().isoformat())
    return len(snapshots)


async def pull(client: Any, ctx: Any) -> None:
    """The sync service's puller (edge.sync.service.PULLERS): report the module KPIs."""
    await report_kpis(client, ctx)
