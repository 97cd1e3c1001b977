"""The qualification cabinet over a real migrated SQLite file: papers, confirmation, address check and freezes,
review tickets, bank account changes, status, payments, purchase orders (through the ledger's guards) and
expiry alerts."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.db import connect, migrate
from edge.finance import compliance as cab
from edge.finance.errors import (
    ApprovalError,
    ComplianceStateError,
    CreditCodeMismatch,
    InvalidComplianceInput,
    InvalidCreditCode,
    PapersIncomplete,
    SupplierFrozen,
    UnknownComplianceRecord,
    UnknownSupplier,
)
from edge.finance.papers import PaperFields, PaperKind, Reading
from edge.finance.uscc import complete_uscc
from edge.ledger.audit import verify_chain
from edge.ledger.commands import DocType, Line, PostDocument
from edge.ledger.errors import DomainError, IdempotencyKeyReused
from edge.ledger.posting import PostingContext, post
from tests.edge.ledger.sample_store import NOW, RULES, TODAY, seed

CODE = complete_uscc("91310115MA1K3YJ71")
ADDRESS = "上海市浦东新区张江路88号"
THRESHOLD_FEN = 50_000_00
CABINET_TABLES = (
    "suppliers",
    "supplier_papers",
    "supplier_freezes",
    "review_tickets",
    "bank_account_changes",
    "compliance_alerts",
    "purchase_order_approvals",
    "compliance_requests",
    "audit",
)


def open_db(path: Path) -> sqlite3.Connection:
    conn = connect(path, synchronous="NORMAL")
    migrate(conn)
    seed(conn)
    return conn


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_db(tmp_path / "storebox.db")
    yield connection
    connection.close()


@contextmanager
def fresh_db() -> Iterator[sqlite3.Connection]:
    with tempfile.TemporaryDirectory(prefix="storebox-compliance-") as folder:
        connection = open_db(Path(folder) / "storebox.db")
        try:
            yield connection
        finally:
            connection.close()


def dump(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {t: [tuple(r) for r in conn.execute(f"SELECT * FROM {t} ORDER BY rowid")] for t in CABINET_TABLES}


def paper_fields(kind: PaperKind, **over: Any) -> PaperFields:
    base: dict[str, Any] = {
        "name": "供应商 sup1",
        "credit_code": CODE,
        "address": ADDRESS,
        "legal_rep": "张伟",
        "valid_from": date(2018, 5, 10),
        "valid_to": date(2038, 5, 9),
    }
    if kind is PaperKind.BANK_ACCOUNT:
        base.update(bank_name="中国工商银行上海张江支行", bank_account="1001234567890123456", valid_to=None)
        base.pop("address")
    if kind is PaperKind.GENERAL_TAXPAYER:
        base.update(valid_to=None)
    if kind is PaperKind.FOOD_LICENCE:
        base.update(licence_no="JY13101150012345", valid_to=date(2027, 5, 9))
    base.update(over)
    return PaperFields(**base)


def upload(
    conn: sqlite3.Connection, supplier: str, kind: PaperKind, fields: PaperFields | None = None, **kw: Any
) -> int:
    fields = fields or paper_fields(kind)
    reading = Reading(fields=fields, detected_kind=kind)
    digest = hashlib.sha256(f"{supplier}{kind}{fields}{kw.get('key')}".encode()).hexdigest()
    created = cab.record_paper(
        conn,
        cab.PaperUpload(
            supplier=supplier,
            kind=kind.value,
            sha256=digest,
            file_type="png",
            size_bytes=1234,
            filename="licence.png",
            ocr={"lines": [], "pages": 1, "seconds": 0.0},
            reading=reading.to_json(),
        ),
        kw.get("actor", "purchaser"),
        NOW,
        kw.get("key"),
    )
    return int(created.id)


def confirm(
    conn: sqlite3.Connection, supplier: str, kind: PaperKind, actor: str = "purchaser", **over: Any
) -> dict[str, Any]:
    paper = upload(conn, supplier, kind, paper_fields(kind, **over))
    return cab.confirm_paper(conn, paper, None, actor, NOW)


def complete_cabinet(conn: sqlite3.Connection, supplier: str = "sup1", *, food: bool = False) -> None:
    kinds = [PaperKind.BUSINESS_LICENCE, PaperKind.BANK_ACCOUNT, PaperKind.GENERAL_TAXPAYER]
    if food:
        kinds.append(PaperKind.FOOD_LICENCE)
    for kind in kinds:
        confirm(conn, supplier, kind)


def po(key: str, qty: int, *, supplier: str = "sup1", doc_type: DocType = DocType.PURCHASE_ORDER) -> PostDocument:
    # A1 costs 200 fen a can: 250 cases of 24 = 6,000 cans = 12,000.00 CNY.
    return PostDocument(key, doc_type, (Line("A1", qty, price_fen=200),), counterparty=supplier)


def guarded(business_date: date = TODAY) -> PostingContext:
    guard = cab.make_purchase_order_guard(THRESHOLD_FEN)
    return PostingContext(now=NOW, business_date=business_date, rules=RULES, guards=(guard,))


def post_now(conn: sqlite3.Connection, command: PostDocument, ctx: PostingContext | None = None) -> Any:
    conn.execute("BEGIN IMMEDIATE")
    result = post(conn, command, ctx or guarded())
    conn.execute("COMMIT")
    return result


# --- papers and confirmation ---


def test_a_complete_cabinet_is_payable_and_papers_count_only_once_confirmed(conn: sqlite3.Connection) -> None:
    status = cab.qualification_status(conn, "sup1", TODAY)
    assert status.missing == (PaperKind.BUSINESS_LICENCE, PaperKind.BANK_ACCOUNT, PaperKind.GENERAL_TAXPAYER)
    uploaded = upload(conn, "sup1", PaperKind.BUSINESS_LICENCE)
    status = cab.qualification_status(conn, "sup1", TODAY)
    assert PaperKind.BUSINESS_LICENCE in status.missing and status.pending == (uploaded,)
    cab.confirm_paper(conn, uploaded, None, "purchaser", NOW)
    confirm(conn, "sup1", PaperKind.BANK_ACCOUNT)
    confirm(conn, "sup1", PaperKind.GENERAL_TAXPAYER)
    status = cab.check_payable(conn, "sup1", TODAY)
    assert status.complete and status.payable and not status.frozen
    assert [s.kind for s in status.valid] == list(status.required)
    assert verify_chain(conn) == []


def test_confirming_fills_in_the_suppliers_code_address_and_first_bank_account(conn: sqlite3.Connection) -> None:
    result = confirm(conn, "sup1", PaperKind.BUSINESS_LICENCE)
    assert result["supplier_set"] == {"credit_code": CODE, "registered_address": ADDRESS}
    assert result["freeze"] is None and result["paper"]["state"] == "confirmed"
    assert result["paper"]["confirmed_by"] == "purchaser"
    confirm(conn, "sup1", PaperKind.BANK_ACCOUNT)
    supplier = cab.get_supplier(conn, "sup1")
    assert (supplier["credit_code"], supplier["registered_address"]) == (CODE, ADDRESS)
    assert supplier["bank_account"] == "1001234567890123456"


def test_a_person_may_correct_the_reading_before_confirming(conn: sqlite3.Connection) -> None:
    paper = upload(
        conn, "sup1", PaperKind.BUSINESS_LICENCE, paper_fields(PaperKind.BUSINESS_LICENCE, name="供应商 sop1")
    )
    corrected = {**paper_fields(PaperKind.BUSINESS_LICENCE).to_json(), "credit_code": CODE.lower()}
    result = cab.confirm_paper(conn, paper, corrected, "purchaser", NOW)
    assert result["paper"]["fields"]["name"] == "供应商 sup1"
    assert result["paper"]["fields"]["credit_code"] == CODE
    assert result["paper"]["proposed"]["fields"]["name"] == "供应商 sop1"
    partial = upload(conn, "sup1", PaperKind.GENERAL_TAXPAYER, paper_fields(PaperKind.GENERAL_TAXPAYER, name="x"))
    kept = cab.confirm_paper(conn, partial, {"name": "供应商 sup1", "legal_rep": None}, "purchaser", NOW)
    assert kept["paper"]["fields"]["name"] == "供应商 sup1" and kept["paper"]["fields"]["legal_rep"] is None
    assert kept["paper"]["fields"]["credit_code"] == CODE  # not sent: stays as read


def test_a_wrong_check_character_is_refused_and_nothing_changes(conn: sqlite3.Connection) -> None:
    bad = CODE[:17] + ("A" if CODE[17] != "A" else "B")
    paper = upload(conn, "sup1", PaperKind.BUSINESS_LICENCE, paper_fields(PaperKind.BUSINESS_LICENCE, credit_code=bad))
    before = dump(conn)
    with pytest.raises(InvalidCreditCode) as caught:
        cab.confirm_paper(conn, paper, None, "purchaser", NOW)
    assert caught.value.detail["reason"] == "check_character"
    assert dump(conn) == before
    assert cab.get_paper(conn, paper)["state"] == "uploaded"


def test_a_code_other_than_the_suppliers_is_refused(conn: sqlite3.Connection) -> None:
    confirm(conn, "sup1", PaperKind.BUSINESS_LICENCE)
    other = complete_uscc("91440300MA5FXXXX1")
    with pytest.raises(CreditCodeMismatch) as caught:
        confirm(conn, "sup1", PaperKind.GENERAL_TAXPAYER, credit_code=other)
    assert caught.value.detail["registered"] == CODE and caught.value.detail["on_paper"] == other


def test_a_paper_can_be_confirmed_or_rejected_once(conn: sqlite3.Connection) -> None:
    paper = upload(conn, "sup1", PaperKind.GENERAL_TAXPAYER)
    cab.reject_paper(conn, paper, "复印件模糊 blurred copy", "purchaser", NOW)
    with pytest.raises(ComplianceStateError):
        cab.confirm_paper(conn, paper, None, "purchaser", NOW)
    with pytest.raises(InvalidComplianceInput):
        cab.reject_paper(conn, upload(conn, "sup1", PaperKind.GENERAL_TAXPAYER, key="k2"), "  ", "purchaser", NOW)
    with pytest.raises(UnknownComplianceRecord):
        cab.confirm_paper(conn, 999, None, "purchaser", NOW)


def test_a_newer_paper_supersedes_the_older_one(conn: sqlite3.Connection) -> None:
    first = confirm(conn, "sup1", PaperKind.GENERAL_TAXPAYER)["paper"]["id"]
    second = confirm(conn, "sup1", PaperKind.GENERAL_TAXPAYER, legal_rep="王芳")["paper"]["id"]
    assert cab.get_paper(conn, first)["state"] == "superseded"
    assert cab.get_paper(conn, first)["superseded_by"] == second
    assert [p["id"] for p in cab.list_papers(conn, "sup1", state="confirmed")] == [second]


def test_an_upload_key_answers_its_first_paper_and_refuses_other_content(conn: sqlite3.Connection) -> None:
    first = upload(conn, "sup1", PaperKind.BUSINESS_LICENCE, key="up-1")
    again = upload(conn, "sup1", PaperKind.BUSINESS_LICENCE, key="up-1")
    assert first == again
    assert conn.execute("SELECT COUNT(*) FROM supplier_papers").fetchone()[0] == 1
    with pytest.raises(IdempotencyKeyReused):
        upload(conn, "sup1", PaperKind.GENERAL_TAXPAYER, key="up-1")
    with pytest.raises(UnknownSupplier):
        upload(conn, "nobody", PaperKind.GENERAL_TAXPAYER)


# --- address check, freezes, review tickets ---


def test_a_licence_address_unlike_the_registered_one_freezes_payments_and_opens_a_ticket(
    conn: sqlite3.Connection,
) -> None:
    cab.update_supplier(conn, "sup1", {"registered_address": "上海市徐汇区漕溪北路1号"}, "manager", NOW)
    result = confirm(conn, "sup1", PaperKind.BUSINESS_LICENCE, actor="purchaser")
    assert result["address_check"]["match"] is False
    assert result["address_check"]["differences"] == ["district", "street"]
    freeze, ticket = result["freeze"], result["ticket"]
    assert freeze and ticket
    confirm(conn, "sup1", PaperKind.BANK_ACCOUNT)
    confirm(conn, "sup1", PaperKind.GENERAL_TAXPAYER)
    with pytest.raises(SupplierFrozen) as caught:
        cab.check_payable(conn, "sup1", TODAY)
    assert caught.value.status == 409
    assert caught.value.detail["freezes"][0]["id"] == freeze
    assert caught.value.detail["missing"] == [] and caught.value.detail["expired"] == []
    assert "证照地址与登记地址不符" in caught.value.message and "licence address differs" in caught.value.message_en
    assert cab.list_tickets(conn, state="open")[0]["paper"] == result["paper"]["id"]

    with pytest.raises(ApprovalError) as refused:
        cab.lift_freeze(conn, freeze, "我核实过了", "purchaser", NOW)
    assert refused.value.detail["reason"] == "own_request"
    assert "purchaser" in refused.value.message_en
    with pytest.raises(InvalidComplianceInput):
        cab.lift_freeze(conn, freeze, "", "manager", NOW)
    lifted = cab.lift_freeze(conn, freeze, "供应商已搬迁, 登记地址待更新 moved", "manager", NOW + timedelta(hours=1))
    assert (lifted["open"], lifted["lifted_by"]) == (False, "manager")
    assert cab.get_ticket(conn, ticket)["state"] == "resolved"
    assert cab.check_payable(conn, "sup1", TODAY).payable
    with pytest.raises(ComplianceStateError):
        cab.lift_freeze(conn, freeze, "again", "admin", NOW)
    actions = [r[0] for r in conn.execute("SELECT action FROM audit ORDER BY seq")]
    assert {"ticket.open", "supplier.freeze", "supplier.unfreeze", "ticket.resolve"} <= set(actions)


def test_resolving_the_ticket_can_take_the_licence_address(conn: sqlite3.Connection) -> None:
    cab.update_supplier(conn, "sup1", {"registered_address": "北京市朝阳区建国路1号"}, "purchaser", NOW)
    result = confirm(conn, "sup1", PaperKind.BUSINESS_LICENCE, actor="purchaser")
    with pytest.raises(ApprovalError):
        cab.resolve_ticket(conn, result["ticket"], "ok", "purchaser", NOW, accept_licence_address=True)
    ticket = cab.resolve_ticket(conn, result["ticket"], "执照为准", "manager", NOW, accept_licence_address=True)
    assert ticket["state"] == "resolved" and ticket["freezes"][0]["open"] is False
    assert cab.get_supplier(conn, "sup1")["registered_address"] == ADDRESS
    assert not cab.qualification_status(conn, "sup1", TODAY).frozen


def test_changing_the_registered_address_is_checked_against_the_licence(conn: sqlite3.Connection) -> None:
    confirm(conn, "sup1", PaperKind.BUSINESS_LICENCE)
    same = cab.update_supplier(conn, "sup1", {"registered_address": "上海浦东新区张江路８８号"}, "purchaser", NOW)
    assert same["freeze"] is None and same["address_check"]["match"]
    moved = cab.update_supplier(conn, "sup1", {"registered_address": "上海市浦东新区张江路99号"}, "purchaser", NOW)
    assert moved["freeze"] and moved["address_check"]["differences"] == ["street"]
    with pytest.raises(InvalidComplianceInput):
        cab.update_supplier(conn, "sup1", {"bank_account": "123456789"}, "purchaser", NOW)
    with pytest.raises(CreditCodeMismatch):
        cab.update_supplier(conn, "sup1", {"credit_code": complete_uscc("91440300MA5FXXXX1")}, "purchaser", NOW)


def test_a_manual_freeze_needs_another_reviewer_to_lift(conn: sqlite3.Connection) -> None:
    created = cab.freeze_supplier(conn, "sup2", "涉嫌虚开发票 suspected fake invoices", "manager", NOW, key="f-1")
    assert cab.freeze_supplier(conn, "sup2", "涉嫌虚开发票 suspected fake invoices", "manager", NOW, key="f-1") == (
        cab.Created(created.id, replayed=True)
    )
    assert [f["id"] for f in cab.list_freezes(conn, "sup2", open_only=True)] == [created.id]
    with pytest.raises(ApprovalError):
        cab.lift_freeze(conn, int(created.id), "查清", "manager", NOW)
    cab.lift_freeze(conn, int(created.id), "查清 cleared", "admin", NOW)
    assert cab.list_freezes(conn, "sup2", open_only=True) == []


# --- bank account changes ---


def test_a_bank_account_change_freezes_payment_until_a_second_person_approves(conn: sqlite3.Connection) -> None:
    complete_cabinet(conn)
    change = int(
        cab.request_bank_account_change(
            conn, "sup1", "招商银行上海分行", "6225 8801 2345 6789", "换开户行 new bank", "purchaser", NOW, key="b-1"
        ).id
    )
    with pytest.raises(SupplierFrozen):
        cab.check_payable(conn, "sup1", TODAY)
    with pytest.raises(ComplianceStateError):  # one pending change at a time
        cab.request_bank_account_change(conn, "sup1", "建设银行", "6227000011112222", "again", "purchaser", NOW)
    freeze = cab.get_bank_account_change(conn, change)["freeze"]
    with pytest.raises(ComplianceStateError):  # lifted by deciding the change, not by hand
        cab.lift_freeze(conn, freeze, "ok", "manager", NOW)
    with pytest.raises(ApprovalError) as own:
        cab.approve_bank_account_change(conn, change, "purchaser", NOW)
    assert own.value.detail["reason"] == "own_request"
    approved = cab.approve_bank_account_change(conn, change, "manager", NOW, "电话核实 called back")
    assert (approved["state"], approved["decided_by"]) == ("approved", "manager")
    supplier = cab.get_supplier(conn, "sup1")
    assert (supplier["bank_name"], supplier["bank_account"]) == ("招商银行上海分行", "6225880123456789")
    assert approved["old_bank_account"] == "1001234567890123456"
    assert cab.check_payable(conn, "sup1", TODAY).payable
    with pytest.raises(ComplianceStateError):
        cab.approve_bank_account_change(conn, change, "admin", NOW)


def test_a_rejected_change_keeps_the_old_account(conn: sqlite3.Connection) -> None:
    complete_cabinet(conn)
    change = int(cab.request_bank_account_change(conn, "sup1", "某银行", "62220000", "x", "purchaser", NOW).id)
    with pytest.raises(InvalidComplianceInput):  # a rejection says why
        cab.reject_bank_account_change(conn, change, "manager", NOW, "")
    cab.reject_bank_account_change(conn, change, "manager", NOW, "来电不符 caller unknown")
    assert cab.get_supplier(conn, "sup1")["bank_account"] == "1001234567890123456"
    assert cab.check_payable(conn, "sup1", TODAY).payable


@pytest.mark.parametrize(
    ("bank", "account", "reason"),
    [("", "62220000", "x"), ("某银行", "12ab", "x"), ("某银行", "1234567", "x"), ("某银行", "62220000", " ")],
)
def test_bad_bank_account_requests_are_refused(conn: sqlite3.Connection, bank: str, account: str, reason: str) -> None:
    before = dump(conn)
    with pytest.raises(InvalidComplianceInput):
        cab.request_bank_account_change(conn, "sup1", bank, account, reason, "purchaser", NOW)
    assert dump(conn) == before


def test_a_bank_paper_naming_another_account_opens_a_change(conn: sqlite3.Connection) -> None:
    complete_cabinet(conn)
    result = confirm(conn, "sup1", PaperKind.BANK_ACCOUNT, bank_account="6217000012345678")
    assert result["bank_change"] and result["freeze"]
    change = cab.get_bank_account_change(conn, result["bank_change"])
    assert (change["new_bank_account"], change["paper"]) == ("6217000012345678", result["paper"]["id"])
    assert cab.qualification_status(conn, "sup1", TODAY).frozen


# --- status, payments, expiry ---


def test_payment_refusal_lists_exactly_what_is_missing_and_expired(conn: sqlite3.Connection) -> None:
    cab.update_supplier(conn, "sup1", {"food_supplier": True}, "purchaser", NOW)
    confirm(conn, "sup1", PaperKind.BUSINESS_LICENCE, valid_to=date(2026, 11, 1))
    confirm(conn, "sup1", PaperKind.GENERAL_TAXPAYER)
    with pytest.raises(PapersIncomplete) as caught:
        cab.check_payable(conn, "sup1", TODAY)
    detail = caught.value.detail
    assert detail["missing"] == ["bank_account", "food_licence"]
    assert [(e["kind"], e["expires_on"], e["days_left"]) for e in detail["expired"]] == [
        ("business_licence", "2026-11-01", -24)
    ]
    assert detail["problems"] == [
        "缺少开户许可证/基本存款账户信息",
        "缺少食品经营许可证",
        "营业执照已于 2026-11-01 过期",
    ]
    assert "business licence expired on 2026-11-01" in caught.value.message_en


def test_a_paper_is_valid_through_its_last_day(conn: sqlite3.Connection) -> None:
    complete_cabinet(conn)
    confirm(conn, "sup1", PaperKind.BUSINESS_LICENCE, valid_to=TODAY)
    status = cab.qualification_status(conn, "sup1", TODAY)
    assert status.complete and [s.days_left for s in status.expiring] == [0]
    assert not cab.qualification_status(conn, "sup1", TODAY + timedelta(days=1)).complete


def test_expiry_alerts_come_once_per_threshold(conn: sqlite3.Connection) -> None:
    complete_cabinet(conn)
    confirm(conn, "sup1", PaperKind.BUSINESS_LICENCE, valid_to=TODAY + timedelta(days=40))
    confirm(conn, "sup2", PaperKind.GENERAL_TAXPAYER, credit_code=complete_uscc("91440300MA5FXXXX1"))
    assert cab.due_expiry_alerts(conn, TODAY) == []
    day = TODAY + timedelta(days=10)  # 30 days left
    (first,) = cab.due_expiry_alerts(conn, day)
    assert (first.threshold_days, first.days_left, first.kind) == (30, 30, PaperKind.BUSINESS_LICENCE)
    assert "30 天" in first.message and "30 days left" in first.message_en
    assert cab.due_expiry_alerts(conn, day) == []
    assert cab.due_expiry_alerts(conn, day + timedelta(days=20)) == []  # 10 days left: still the 30-day one
    (second,) = cab.due_expiry_alerts(conn, day + timedelta(days=25))  # 5 days left
    assert second.threshold_days == 7
    (third,) = cab.due_expiry_alerts(conn, TODAY + timedelta(days=41))
    assert (third.threshold_days, third.days_left) == (0, -1) and "过期" in third.message
    assert cab.due_expiry_alerts(conn, TODAY + timedelta(days=60)) == []
    assert [a.threshold_days for a in cab.list_alerts(conn)] == [0, 7, 30]


def test_a_paper_confirmed_close_to_expiry_gets_only_the_tightest_alert(conn: sqlite3.Connection) -> None:
    confirm(conn, "sup1", PaperKind.FOOD_LICENCE, valid_to=TODAY + timedelta(days=5))
    alerts = cab.due_expiry_alerts(conn, TODAY)
    assert [(a.threshold_days, a.days_left) for a in alerts] == [(7, 5)]
    assert cab.due_expiry_alerts(conn, TODAY + timedelta(days=1)) == []


def test_renewing_a_paper_ends_the_old_ones_alerts(conn: sqlite3.Connection) -> None:
    confirm(conn, "sup1", PaperKind.FOOD_LICENCE, valid_to=TODAY + timedelta(days=5))
    assert len(cab.due_expiry_alerts(conn, TODAY)) == 1
    confirm(conn, "sup1", PaperKind.FOOD_LICENCE, valid_to=TODAY + timedelta(days=5 * 365))
    assert cab.due_expiry_alerts(conn, TODAY + timedelta(days=10)) == []


def test_alerts_are_marked_published(conn: sqlite3.Connection) -> None:
    confirm(conn, "sup1", PaperKind.FOOD_LICENCE, valid_to=TODAY + timedelta(days=5))
    (alert,) = cab.due_expiry_alerts(conn, TODAY)
    assert [a.id for a in cab.unpublished_alerts(conn)] == [alert.id]
    assert cab.mark_alerts_published(conn, [alert.id], NOW) == 1
    assert cab.mark_alerts_published(conn, [alert.id], NOW) == 0
    assert cab.unpublished_alerts(conn) == []


# --- purchase orders ---


def test_a_frozen_supplier_gets_no_purchase_order_of_any_size(conn: sqlite3.Connection) -> None:
    cab.freeze_supplier(conn, "sup1", "审查中 under review", "manager", NOW)
    before = conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
    result = post_now(conn, po("po-small", 1))
    assert (result.ok, result.code) == (False, "supplier_frozen")
    assert "审查中" not in result.message and "冻结" in result.message
    # Below the paper threshold only the freeze is named, not the papers sup1 lacks.
    assert "缺少" not in result.message and "missing" not in result.message_en
    assert conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0] == before
    # Receiving goods already on the way is not a purchase order: the guard lets it through.
    assert post_now(conn, po("rc-1", 1, doc_type=DocType.RECEIPT)).ok


def test_a_large_purchase_order_needs_complete_valid_papers(conn: sqlite3.Connection) -> None:
    small = post_now(conn, po("po-small", 24 * 10))  # 480.00 CNY
    assert small.ok
    large = post_now(conn, po("po-large", 250_001))  # 500,002.00 CNY > 50,000
    assert (large.ok, large.code) == (False, "papers_incomplete")
    assert large.detail["missing"] == ["business_licence", "bank_account", "general_taxpayer"]
    assert large.detail["gross_fen"] == 250_001 * 200 and large.detail["threshold_fen"] == THRESHOLD_FEN
    assert "缺少营业执照" in large.message
    complete_cabinet(conn)
    confirm(conn, "sup1", PaperKind.GENERAL_TAXPAYER, valid_to=TODAY - timedelta(days=1))
    expired = post_now(conn, po("po-large-2", 250_001))
    assert expired.code == "papers_incomplete" and expired.detail["missing"] == []
    assert [e["kind"] for e in expired.detail["expired"]] == ["general_taxpayer"]
    confirm(conn, "sup1", PaperKind.GENERAL_TAXPAYER)
    assert post_now(conn, po("po-large-3", 250_001)).ok


def test_the_threshold_is_exclusive(conn: sqlite3.Connection) -> None:
    assert post_now(conn, po("po-at", THRESHOLD_FEN // 200)).ok  # exactly 50,000.00 CNY


def test_approving_a_purchase_order_re_checks_the_supplier(conn: sqlite3.Connection) -> None:
    complete_cabinet(conn)
    large = post_now(conn, po("po-large", 250_001))
    assert large.ok
    small = post_now(conn, po("po-small", 10))
    cab.freeze_supplier(conn, "sup1", "核查 checking", "manager", NOW)
    with pytest.raises(SupplierFrozen):
        cab.approve_purchase_order(conn, small.document_id, "purchaser", TODAY, THRESHOLD_FEN)
    freeze = cab.list_freezes(conn, "sup1", open_only=True)[0]["id"]
    cab.lift_freeze(conn, freeze, "ok", "admin", NOW)
    with pytest.raises(PapersIncomplete) as caught:  # by the day of approval the licence has expired
        cab.approve_purchase_order(conn, large.document_id, "purchaser", date(2038, 5, 10), THRESHOLD_FEN)
    assert caught.value.detail["expired"][0]["kind"] == "business_licence"
    approval = cab.approve_purchase_order(conn, large.document_id, "purchaser", TODAY, THRESHOLD_FEN, now=NOW)
    assert (approval["approved_by"], approval["gross_fen"]) == ("purchaser", 250_001 * 200)
    with pytest.raises(ComplianceStateError):
        cab.approve_purchase_order(conn, large.document_id, "manager", TODAY, THRESHOLD_FEN)
    receipt = post_now(conn, po("rc-1", 1, doc_type=DocType.RECEIPT))
    with pytest.raises(UnknownComplianceRecord):
        cab.approve_purchase_order(conn, receipt.document_id, "purchaser", TODAY, THRESHOLD_FEN)


# --- suppliers ---


def test_new_suppliers_are_validated(conn: sqlite3.Connection) -> None:
    new = cab.SupplierInput("sup-n", "北京农垦合作社", credit_code="n2110105ma00abcd10", food_supplier=True)
    created = cab.create_supplier(conn, new, "purchaser", NOW, key="s-1")
    assert created == cab.Created("sup-n")
    assert cab.create_supplier(conn, new, "purchaser", NOW, key="s-1").replayed
    supplier = cab.get_supplier(conn, "sup-n")
    assert (supplier["credit_code"], supplier["food_supplier"]) == ("N2110105MA00ABCD10", True)
    assert PaperKind.FOOD_LICENCE in cab.qualification_status(conn, "sup-n", TODAY).missing
    with pytest.raises(ComplianceStateError):
        cab.create_supplier(conn, new, "purchaser", NOW)
    with pytest.raises(InvalidCreditCode):
        cab.create_supplier(conn, cab.SupplierInput("sup-x", "x", credit_code="123"), "purchaser", NOW)
    with pytest.raises(InvalidComplianceInput):
        cab.create_supplier(conn, cab.SupplierInput("bad id!", "x"), "purchaser", NOW)
    with pytest.raises(InvalidComplianceInput):
        cab.create_supplier(conn, cab.SupplierInput("sup-y", " "), "purchaser", NOW)


# --- garbage ---

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=20),
    st.sampled_from(["2030-01-01", "2018年05月10日", CODE, ADDRESS, "长期", "x" * 600]),
)
_bodies = st.dictionaries(
    st.sampled_from([*PaperFields().to_json().keys(), "bogus"]), _values, max_size=8
) | st.sampled_from([None, [], "text"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_bodies)
def test_any_confirmation_either_counts_or_is_refused_leaving_nothing_behind(body: Any) -> None:
    with fresh_db() as conn:
        paper = upload(conn, "sup1", PaperKind.BUSINESS_LICENCE)
        before = dump(conn)
        try:
            cab.confirm_paper(conn, paper, body, "purchaser", NOW)
        except DomainError as err:
            assert err.message and err.message_en
            assert dump(conn) == before
        else:
            assert cab.get_paper(conn, paper)["state"] == "confirmed"
            assert verify_chain(conn) == []


def test_times_are_recorded_as_given() -> None:
    with fresh_db() as conn:
        at = datetime(2026, 11, 25, 1, 2, 3, tzinfo=UTC)
        paper = upload(conn, "sup1", PaperKind.GENERAL_TAXPAYER)
        confirmed = cab.confirm_paper(conn, paper, None, "purchaser", at)
        assert confirmed["paper"]["confirmed_at"] == at.isoformat()


# --- commands ---


def test_supplier_commands(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edge.cli import app

    conn = open_db(tmp_path / "storebox.db")
    today = datetime.now(UTC).date()
    confirm(conn, "sup1", PaperKind.BUSINESS_LICENCE, valid_to=today + timedelta(days=6))
    conn.close()
    runner = CliRunner()
    papers = runner.invoke(app, ["supplier", "papers", "sup1", "--data-dir", str(tmp_path)])
    assert papers.exit_code == 0, papers.output
    assert "营业执照 business licence [confirmed]" in papers.output and CODE in papers.output
    status = runner.invoke(app, ["supplier", "status", "sup1", "--json", "--data-dir", str(tmp_path)])
    assert status.exit_code == 1  # not payable: two papers missing
    assert json.loads(status.output)["missing"] == ["bank_account", "general_taxpayer"]
    alerts = runner.invoke(app, ["supplier", "alerts", "--due", "--data-dir", str(tmp_path)])
    assert alerts.exit_code == 0 and "1 new alerts" in alerts.output and "business licence expires" in alerts.output
    unknown = runner.invoke(app, ["supplier", "status", "nobody", "--data-dir", str(tmp_path)])
    assert unknown.exit_code == 2
    bad_day = runner.invoke(app, ["supplier", "status", "sup1", "--on", "tomorrow", "--data-dir", str(tmp_path)])
    assert bad_day.exit_code == 2
