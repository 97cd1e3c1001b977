"""Approving suggestions into purchase orders (through the finance guards) and rejecting them with a reason."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from edge.finance.compliance import freeze_supplier
from edge.ledger.errors import DomainError
from edge.ledger.masterdata import add_supplier
from edge.replenishment.errors import (
    InvalidSuggestionDecision,
    ItemSupplierInvalid,
    SuggestionKeyReused,
    SuggestionNotFound,
    SuggestionNotOpen,
)
from edge.replenishment.planner import run_plan
from edge.replenishment.suggestions import (
    ApprovalRequest,
    ItemSupplierIn,
    RejectionRequest,
    approve_one,
    approve_suggestions,
    get_suggestion,
    item_suppliers,
    list_suggestions,
    reject_suggestion,
    set_item_supplier,
)
from tests.edge.replenishment.test_planner import NOW, ctx_on, db, plan_ctx, store_with_documents, template

__all__ = ["db", "template"]  # fixtures


def in_tx(conn: sqlite3.Connection, fn, *args):  # type: ignore[no-untyped-def]
    conn.execute("BEGIN")
    try:
        result = fn(conn, *args)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def planned(db: sqlite3.Connection) -> dict[str, int]:
    store_with_documents(db)
    run_plan(db, plan_ctx())
    return {r["sku"]: int(r["id"]) for r in db.execute("SELECT id, sku FROM suggestions WHERE state = 'open'")}


def test_approving_posts_a_purchase_order_with_the_suggested_lines(db: sqlite3.Connection) -> None:
    ids = planned(db)
    suggestion = get_suggestion(db, ids["COLA"])
    ctx = ctx_on(NOW.date())
    done = in_tx(db, approve_one, ctx, ApprovalRequest("k1", (ids["COLA"],), "manager"))
    assert done["state"] == "approved" and done["decided_by"] == "manager" and done["po_id"]
    po = db.execute("SELECT * FROM documents WHERE id = ?", (done["po_id"],)).fetchone()
    assert (po["type"], po["counterparty"], po["actor"]) == ("purchase_order", "sup-1", "manager")
    lines = db.execute(
        "SELECT sku, unit, qty, qty_base, location FROM document_lines WHERE document_id = ?", (po["id"],)
    )
    assert [tuple(r) for r in lines] == [("COLA", "case", suggestion["qty"], suggestion["qty"] * 24, "floor")]
    # The next run counts the approved PO as on order.
    run_plan(db, plan_ctx(now=NOW + timedelta(minutes=15)))
    again = db.execute("SELECT inputs FROM suggestions WHERE sku = 'COLA' AND state = 'open'").fetchone()
    if again is not None:
        assert f'"on_order":{24 + suggestion["qty"] * 24}' in again["inputs"]


def test_approving_again_with_the_same_key_answers_the_first_result(db: sqlite3.Connection) -> None:
    ids = planned(db)
    ctx = ctx_on(NOW.date())
    first = in_tx(db, approve_one, ctx, ApprovalRequest("k1", (ids["COLA"],), "manager"))
    second = in_tx(db, approve_suggestions, ctx, ApprovalRequest("k1", (ids["COLA"],), "manager"))
    assert second["replayed"] and second["approved"][0]["po_id"] == first["po_id"]
    assert db.execute("SELECT COUNT(*) FROM documents WHERE type = 'purchase_order'").fetchone()[0] == 3
    with pytest.raises(SuggestionKeyReused):
        in_tx(db, approve_suggestions, ctx, ApprovalRequest("k1", (ids["MILK"],), "manager"))
    with pytest.raises(SuggestionNotOpen):
        in_tx(db, approve_suggestions, ctx, ApprovalRequest("k2", (ids["COLA"],), "manager"))


def test_a_changed_quantity_is_ordered_and_kept(db: sqlite3.Connection) -> None:
    ids = planned(db)
    done = in_tx(db, approve_one, ctx_on(NOW.date()), ApprovalRequest("k", (ids["COLA"],), "m", ((ids["COLA"], 7),)))
    assert done["approved_qty"] == 7
    assert db.execute("SELECT qty FROM document_lines WHERE document_id = ?", (done["po_id"],)).fetchone()[0] == 7
    with pytest.raises(InvalidSuggestionDecision):
        in_tx(db, approve_one, ctx_on(NOW.date()), ApprovalRequest("k3", (ids["MILK"],), "m", ((ids["MILK"], 0),)))


def test_a_frozen_supplier_is_refused_with_the_guards_message_and_the_suggestion_stays_open(
    db: sqlite3.Connection,
) -> None:
    ids = planned(db)
    in_tx(db, lambda c: freeze_supplier(c, "sup-1", "资质待核 papers under review", "auditor", NOW))
    with pytest.raises(DomainError) as refused:
        in_tx(db, approve_one, ctx_on(NOW.date()), ApprovalRequest("k1", (ids["COLA"],), "manager"))
    assert refused.value.code == "supplier_frozen"
    assert refused.value.status == 409
    assert "冻结" in refused.value.message
    assert get_suggestion(db, ids["COLA"])["state"] == "open"
    # Nothing of the refusal is kept: the same key may try again once the supplier is cleared.
    assert db.execute("SELECT COUNT(*) FROM commands WHERE key LIKE 'k1%'").fetchone()[0] == 0
    batch = in_tx(
        db, approve_suggestions, ctx_on(NOW.date()), ApprovalRequest("k2", (ids["COLA"], ids["MILK"]), "manager")
    )
    assert batch["approved"] == [] and batch["refused"][0]["code"] == "supplier_frozen"
    assert batch["refused"][0]["suggestions"] == sorted([ids["COLA"], ids["MILK"]])


def test_approving_several_makes_one_purchase_order_per_supplier(db: sqlite3.Connection) -> None:
    db.execute("BEGIN")
    add_supplier(db, "sup-2", "光明乳业", credit_code="91310000MA1FL0002P")
    db.execute("COMMIT")
    ids = planned(db)
    in_tx(db, set_item_supplier, ItemSupplierIn(sku="MILK", supplier="sup-2", unit="bottle"), "m", NOW)
    db.execute("UPDATE suggestions SET supplier = 'sup-2' WHERE id = ?", (ids["MILK"],))
    result = in_tx(db, approve_suggestions, ctx_on(NOW.date()), ApprovalRequest("k", (ids["COLA"], ids["MILK"]), "m"))
    assert [a["supplier"] for a in result["approved"]] == ["sup-1", "sup-2"]
    pos = {a["supplier"]: a["po_id"] for a in result["approved"]}
    assert len(set(pos.values())) == 2
    for supplier, po_id in pos.items():
        assert db.execute("SELECT counterparty FROM documents WHERE id = ?", (po_id,)).fetchone()[0] == supplier


def test_rejecting_keeps_the_reason(db: sqlite3.Connection) -> None:
    ids = planned(db)
    with pytest.raises(InvalidSuggestionDecision):
        in_tx(db, reject_suggestion, RejectionRequest("r0", ids["MILK"], "   ", "manager"), NOW)
    done = in_tx(db, reject_suggestion, RejectionRequest("r1", ids["MILK"], "下周门店装修", "manager"), NOW)
    assert (done["state"], done["reject_reason"], done["decided_by"]) == ("rejected", "下周门店装修", "manager")
    replay = in_tx(db, reject_suggestion, RejectionRequest("r1", ids["MILK"], "下周门店装修", "manager"), NOW)
    assert replay["replayed"] and replay["id"] == ids["MILK"]
    with pytest.raises(SuggestionNotOpen):
        in_tx(db, reject_suggestion, RejectionRequest("r2", ids["MILK"], "again", "manager"), NOW)
    with pytest.raises(SuggestionNotFound):
        in_tx(db, reject_suggestion, RejectionRequest("r3", 999, "x", "manager"), NOW)
    page = list_suggestions(db, state="rejected")
    assert page["total"] == 1 and page["items"][0]["reject_reason"] == "下周门店装修"


def test_item_supplier_parameters_are_validated_and_one_is_primary(db: sqlite3.Connection) -> None:
    db.execute("BEGIN")
    add_supplier(db, "sup-2", "第二供应商")
    db.execute("COMMIT")
    in_tx(db, set_item_supplier, ItemSupplierIn(sku="COLA", supplier="sup-1"), "m", NOW)
    first = item_suppliers(db, "COLA")
    assert (first[0]["unit"], first[0]["pack"], first[0]["primary"]) == ("case", 24, True)
    in_tx(db, set_item_supplier, ItemSupplierIn(sku="COLA", supplier="sup-2", unit="piece", moq=12), "m", NOW)
    both = {r["supplier"]: r for r in item_suppliers(db, "COLA")}
    assert both["sup-2"]["primary"] and not both["sup-1"]["primary"] and both["sup-2"]["pack"] == 1
    for bad in (
        ItemSupplierIn(sku="NOPE", supplier="sup-1"),
        ItemSupplierIn(sku="COLA", supplier="nobody"),
        ItemSupplierIn(sku="COLA", supplier="sup-1", unit="pallet"),
        ItemSupplierIn(sku="COLA", supplier="sup-1", service_level=1.5),
        ItemSupplierIn(sku="COLA", supplier="sup-1", review_days=0),
        ItemSupplierIn(sku="COLA", supplier="sup-1", moq=-1),
    ):
        with pytest.raises(ItemSupplierInvalid):
            in_tx(db, set_item_supplier, bad, "m", NOW)
