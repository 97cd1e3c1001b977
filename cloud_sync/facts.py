"""A store's totals as the aggregator holds them, in the very shape of the box's `edge.sync.totals.ledger_totals`:
after sync the two are equal to the piece and the fen (`storebox sync verify`)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from cloud_sync.tables import documents, gl_period, sales_daily, stock


def store_totals(conn: sa.Connection, store: str) -> dict[str, Any]:
    count = conn.execute(
        sa.select(sa.func.count()).select_from(documents).where(documents.c.store == store)
    ).scalar_one()
    lines: dict[str, list[int]] = {}
    qty = value = 0
    for r in conn.execute(
        sa.select(stock.c.sku, stock.c.location, stock.c.lot, stock.c.qty, stock.c.value_fen).where(
            stock.c.store == store
        )
    ):
        qty += int(r.qty)
        value += int(r.value_fen)
        if r.qty or r.value_fen:
            lines[f"{r.sku}|{r.location}|{r.lot}"] = [int(r.qty), int(r.value_fen)]
    s = conn.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(sales_daily.c.qty), 0),
            sa.func.coalesce(sa.func.sum(sales_daily.c.gross_fen), 0),
            sa.func.coalesce(sa.func.sum(sales_daily.c.tax_fen), 0),
            sa.func.coalesce(sa.func.sum(sales_daily.c.cost_fen), 0),
        ).where(sales_daily.c.store == store)
    ).one()
    gl = {
        str(r.account): [int(r.debit), int(r.credit)]
        for r in conn.execute(
            sa.select(
                gl_period.c.account,
                sa.func.sum(gl_period.c.debit_fen).label("debit"),
                sa.func.sum(gl_period.c.credit_fen).label("credit"),
            )
            .where(gl_period.c.store == store)
            .group_by(gl_period.c.account)
        )
        if r.debit or r.credit
    }
    return {
        "documents": int(count),
        "stock": {"qty": qty, "value_fen": value},
        "stock_lines": dict(sorted(lines.items())),
        "sales": {"qty": int(s[0]), "gross_fen": int(s[1]), "tax_fen": int(s[2]), "cost_fen": int(s[3])},
        "gl": dict(sorted(gl.items())),
    }
