"""Holds a rule places: finance refuses approving a held PO and accepting, approving or rechecking a held invoice
until someone with rules:act other than the document's author releases the hold."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from edge.finance import ap
from edge.finance import compliance as cab
from edge.ledger.commands import DocType, PostDocument
from edge.rules import holds
from edge.rules.actions import ActionConfig, execute_firing
from edge.rules.engine import Firing, Origin
from edge.rules.holds import DocumentHeld, HoldError
from tests.edge.finance.test_ap import POLICY, Store, cola, cola_line, invoice, open_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(tmp_path / "books.db")
    yield opened
    opened.conn.close()


def hold(store: Store, kind_fact: str, object_id: int, doc_type: str | None = None) -> None:
    facts = {kind_fact.split(".")[0]: {"id": object_id, **({"type": doc_type} if doc_type else {})}}
    spec = {"action": "hold_document", "reason": {"zh": "价差超限", "en": "price difference over the limit"}}
    firing = Firing(Origin.rule("price-difference-hold", 2), f"e{object_id}", "signal", None, facts, (spec,))
    result = store.run(lambda conn, ctx: execute_firing(conn, firing, store.now, ActionConfig(store_id="s")))
    assert result.state == "done"


def approve(store: Store, po: int, user: str) -> dict[str, object]:
    return store.run(lambda conn, ctx: cab.approve_purchase_order(conn, po, user, store.now.date(), 10**9, store.now))


def release(store: Store, hold_id: int, actor: str, note: str = "已与供应商确认价格") -> holds.Hold:
    later = store.now + timedelta(minutes=5)
    return store.run(lambda conn, ctx: holds.release_hold(conn, hold_id, actor, note, later))


def test_a_held_purchase_order_is_not_approved_until_someone_else_releases_it(store: Store) -> None:
    po = store.post(
        PostDocument("po-held", DocType.PURCHASE_ORDER, (cola(2),), counterparty="sup-1", actor="purchaser")
    )
    po_id = int(po.document_id or 0)
    hold(store, "document.id", po_id, "purchase_order")
    with pytest.raises(DocumentHeld) as refused:
        approve(store, po_id, "manager")
    assert refused.value.status == 409 and refused.value.detail["rule_id"] == "price-difference-hold"
    assert "price-difference-hold" in refused.value.message and "rules:act" in refused.value.message_en
    (open_hold,) = holds.list_holds(store.conn, state="open")
    assert open_hold.object_kind == "purchase_order" and open_hold.version == 2
    with pytest.raises(HoldError):
        release(store, open_hold.id, "purchaser")  # the PO's author
    with pytest.raises(HoldError):
        release(store, open_hold.id, "manager", note="  ")
    released = release(store, open_hold.id, "manager")
    assert released.state == "released" and released.released_by == "manager"
    assert approve(store, po_id, "manager")["approved_by"] == "manager"
    with pytest.raises(HoldError):
        release(store, open_hold.id, "accountant")  # already released
    (audit,) = store.conn.execute("SELECT actor, object FROM audit WHERE action = 'hold.release'").fetchall()
    assert tuple(audit) == ("manager", f"purchase_order:{po_id}")


def test_a_held_invoice_is_not_accepted_approved_or_rechecked_but_may_be_rejected(store: Store) -> None:
    po = store.order(cola(10))
    store.receive(po, cola(10))
    entered = store.one(invoice(cola_line(10, extra_fen=250)))
    assert entered["status"] == "exception"
    hold(store, "invoice.id", int(entered["id"]))
    for action in ("accept", "recheck"):
        with pytest.raises(DocumentHeld):
            store.resolve(entered, action, "purchaser")
    assert store.invoice(int(entered["id"]))["status"] == "exception"  # nothing changed
    (open_hold,) = holds.list_holds(store.conn, state="open")
    with pytest.raises(HoldError):
        release(store, open_hold.id, "purchaser")  # entered the invoice
    release(store, open_hold.id, "accountant")
    assert store.resolve(entered, "accept", "purchaser")["invoice"]["status"] == "pending_approval"
    assert store.resolve(entered, "approve", "accountant")["invoice"]["status"] == "accepted"


def test_rejecting_a_held_invoice_is_allowed(store: Store) -> None:
    po = store.order(cola(10))
    store.receive(po, cola(10))
    entered = store.one(invoice(cola_line(10, extra_fen=250)))
    hold(store, "invoice.id", int(entered["id"]))
    assert store.resolve(entered, "reject", "purchaser")["invoice"]["status"] == "rejected"


def test_an_approval_hold_on_an_invoice_pending_approval_blocks_the_approval(store: Store) -> None:
    po = store.order(cola(10))
    store.receive(po, cola(10))
    entered = store.one(invoice(cola_line(10, extra_fen=250)))
    store.resolve(entered, "accept", "purchaser")
    hold(store, "invoice.id", int(entered["id"]))
    with pytest.raises(DocumentHeld):
        store.run(
            ap.resolve_exception,
            ap.ResolutionRequest(int(entered["exception"]["id"]), ap.Resolution.APPROVE, "accountant", POLICY),
        )
    assert store.invoice(int(entered["id"]))["status"] == "pending_approval"


def test_an_unknown_hold_is_refused(store: Store) -> None:
    with pytest.raises(holds.UnknownHold):
        release(store, 999, "manager")
    assert holds.open_hold(store.conn, "invoice", 1) is None
