"""Every ledger rule of DESIGN.md, checked after every step of random sequences of documents.

Hypothesis posts random documents of every type, failing ones included (oversells, unknown items, units
and locations, expired lots, bad reasons, bad payments, bad references, lot expiry conflicts), reversals
of random earlier documents, replays and reuses of idempotency keys, attempts to change append-only
rows, tampered balances, and the passing of days. After each step the ledger must agree, move by move
and fen by fen, with an independent reference (reference.py), and every invariant must hold.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from edge.ledger.commands import Command, DocType, Line, PostDocument, PostResult, ReverseDocument
from edge.ledger.verify import rebuild_balances, rebuilt_balances, verify_ledger
from tests.edge.ledger.reference import Expected, ReferenceLedger, vat_included
from tests.edge.ledger.sample_store import (
    COLA_CAN,
    COLA_CASE,
    ITEMS,
    LEDGER_TABLES,
    LOCATIONS,
    MILK_CARTON,
    MILK_CASE,
    NOW,
    RICE_BAG,
    STORES,
    SUPPLIERS,
    TODAY,
    balances,
    context,
    dump,
    open_ledger,
    post_committed,
)

CODES = ["A1", "M1", "F1", "R1", "G1", "E1", COLA_CAN, COLA_CASE, MILK_CARTON, MILK_CASE, RICE_BAG]
UNITS_OF = {item.sku: [None, None, None, *item.units] for item in ITEMS}
LOTS = [None, None, "L1", "L2", "L3"]
LINE_LOCATIONS = [None, None, "floor", "backroom", "cold", "freezer"]
RETURN_REASONS = ["taste", "包装破损", "quality", "late_delivery", "damaged_packaging", "other", "其他"]
WRITE_OFF_REASONS = ["expired", "damaged", "spoiled", "theft", "other"]
PAYMENTS = [None, "cash", "wechat", "alipay", "card"]
# A command is drawn clean, then now and then given one fault; the reference says what each fault gives.
FAULTS = [
    "unknown_item",
    "unknown_unit",
    "qty_out_of_range",
    "price_out_of_range",
    "unknown_line_location",
    "transit_line_location",
    "unknown_header_location",
    "unknown_counterparty",
    "no_counterparty",
    "bad_reason",
    "other_without_text",
    "bad_payment",
    "stray_ref",
    "empty_key",
    "no_lines",
]
REF_TYPES = {
    DocType.RECEIPT: "purchase_order",
    DocType.CUSTOMER_RETURN: "sale",
    DocType.TRANSFER_IN: "transfer_out",
}
TAXED = {"purchase_order", "receipt", "sale", "customer_return", "supplier_return"}
# Voucher account that carries a document's VAT, and the sign of its debit - credit.
# Receipts book no input VAT: goods are estimated (暂估) into 220202 until the invoice is matched.
TAX_ACCOUNT = {
    "receipt": ("22210101", 0),
    "supplier_return": ("22210101", 0),
    "sale": ("22210102", -1),
    "customer_return": ("22210102", 1),
}
APPEND_ONLY = [
    ("stock_moves", "UPDATE stock_moves SET qty = qty + 1 WHERE rowid = (SELECT MAX(rowid) FROM stock_moves)"),
    ("stock_moves", "DELETE FROM stock_moves WHERE rowid = (SELECT MAX(rowid) FROM stock_moves)"),
    ("voucher_lines", "UPDATE voucher_lines SET debit_fen = 1 WHERE rowid = (SELECT MIN(rowid) FROM voucher_lines)"),
    ("voucher_lines", "DELETE FROM voucher_lines WHERE rowid = (SELECT MIN(rowid) FROM voucher_lines)"),
    ("audit", "UPDATE audit SET actor = 'mallory' WHERE seq = (SELECT MAX(seq) FROM audit)"),
    ("audit", "DELETE FROM audit WHERE seq = (SELECT MIN(seq) FROM audit)"),
    ("documents", "DELETE FROM documents WHERE id = (SELECT MAX(id) FROM documents)"),
]


def _no_float(text: str) -> Any:
    def refuse(value: str) -> Any:
        raise AssertionError(f"float {value} in ledger JSON: {text[:200]}")

    return json.loads(text, parse_float=refuse)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._dir = tempfile.TemporaryDirectory(prefix="storebox-ledger-")
        self.conn = open_ledger(Path(self._dir.name) / "ledger.db")
        self.reference = ReferenceLedger(
            ITEMS, {code: kind for code, (kind, _) in LOCATIONS.items()}, SUPPLIERS, STORES
        )
        self.today = TODAY
        self.now = NOW
        self.serial = 0
        self.first: dict[str, tuple[Command, PostResult]] = {}
        self.last_document: int | None = None
        self.balances_before: dict[int, dict[tuple[str, str, str], tuple[int, int]]] = {}
        # One query a table: a non-integer in an INTEGER column, or a float anywhere.
        self.non_integer_queries = {}
        for table in LEDGER_TABLES:
            columns = self.conn.execute(f"PRAGMA table_info({table})").fetchall()
            checks = [f"typeof({c['name']}) NOT IN ('integer', 'null')" for c in columns if c["type"] == "INTEGER"]
            checks += [f"typeof({c['name']}) = 'real'" for c in columns]
            self.non_integer_queries[table] = f"SELECT COUNT(*) FROM {table} WHERE {' OR '.join(checks)}"

    def teardown(self) -> None:
        event(f"commands: {len(self.first) // 10 * 10}+, documents: {len(self.reference.documents) // 5 * 5}+")
        self.conn.close()
        self._dir.cleanup()

    # --- drawing commands ---------------------------------------------------------------------

    def _key(self) -> str:
        self.serial += 1
        return f"term-1/{self.serial:05d}"

    def _documents_of(self, doc_type: str) -> list[int]:
        return sorted(d.id for d in self.reference.documents.values() if d.type == doc_type)

    def _line(self, data: st.DataObject, doc_type: DocType) -> Line:
        stocked = sorted(k for k, (q, _) in self.reference.balances.items() if q > 0 and k[1] != "transit")
        low = 0 if doc_type is DocType.STOCKTAKE else 1
        if stocked and doc_type is not DocType.RECEIPT and data.draw(st.integers(0, 4), label="from stock"):
            sku, location, lot = data.draw(st.sampled_from(stocked), label="balance")
            on_hand = self.reference.balances[(sku, location, lot)][0]
            return Line(
                sku,
                data.draw(st.integers(low, on_hand + 2), label="qty"),
                lot=data.draw(st.sampled_from([None, lot or None]), label="lot"),
                location=location,
            )
        code = data.draw(st.sampled_from(CODES), label="code")
        sku = code if code in UNITS_OF else next(i.sku for i in ITEMS if code in i.barcodes)
        lot = data.draw(st.sampled_from(LOTS), label="lot")
        expiry = None
        if doc_type in (DocType.RECEIPT, DocType.TRANSFER_IN):
            recorded = self.reference.lot_expiry.get((sku, lot or ""))
            offered = [None, *([date.fromisoformat(recorded)] * 3 if recorded else [])]
            offered += [self.today + timedelta(days=d) for d in (-2, 0, 1, 3, 5, 9)]
            expiry = data.draw(st.sampled_from(offered), label="expiry")
        return Line(
            code,
            data.draw(st.integers(low, 30 if doc_type is DocType.STOCKTAKE else 12), label="qty"),
            price_fen=data.draw(st.none() | st.integers(0, 3000), label="price"),
            unit=data.draw(st.sampled_from(UNITS_OF[sku]), label="unit") if code == sku else None,
            lot=lot,
            expiry=expiry,
            location=data.draw(st.sampled_from(LINE_LOCATIONS), label="location"),
        )

    def _ref(self, data: st.DataObject, doc_type: DocType) -> int | None:
        matching = self._documents_of(REF_TYPES[doc_type]) if doc_type in REF_TYPES else []
        if not matching or not data.draw(st.integers(0, 3), label="with ref"):
            return None
        return data.draw(st.sampled_from(matching), label="ref")

    def _line_from(self, data: st.DataObject, document_id: int, doc_type: DocType) -> Line:
        """A line taking back part of what a referenced sale sold or a transfer put in transit."""
        moved: dict[str, int] = {}
        for m in self.reference.documents[document_id].moves:
            if (m.location == "transit") == (doc_type is DocType.TRANSFER_IN):
                moved[m.sku] = moved.get(m.sku, 0) + abs(m.qty)
        sku = data.draw(st.sampled_from(sorted(moved)), label="sku from ref")
        return Line(sku, data.draw(st.integers(1, moved[sku] + 1), label="qty from ref"))

    def _document(self, data: st.DataObject, doc_type: DocType) -> PostDocument:
        ref_id = self._ref(data, doc_type)
        count = data.draw(st.integers(1, 3), label="lines")
        if ref_id is not None and doc_type in (DocType.CUSTOMER_RETURN, DocType.TRANSFER_IN):
            lines = tuple(self._line_from(data, ref_id, doc_type) for _ in range(count))
        else:
            lines = tuple(self._line(data, doc_type) for _ in range(count))
        counterparty = None
        if doc_type in (DocType.PURCHASE_ORDER, DocType.RECEIPT, DocType.SUPPLIER_RETURN):
            counterparty = data.draw(st.sampled_from(["sup1", "sup2"]), label="supplier")
        elif doc_type in (DocType.TRANSFER_OUT, DocType.TRANSFER_IN):
            counterparty = data.draw(st.sampled_from(["s2", None]), label="store")
        reason = reason_text = None
        if doc_type is DocType.CUSTOMER_RETURN:
            reason = data.draw(st.sampled_from(RETURN_REASONS), label="reason")
            reason_text = "盒子压坏了"
        elif doc_type is DocType.WRITE_OFF:
            reason = data.draw(st.sampled_from(WRITE_OFF_REASONS), label="reason")
            reason_text = "冷柜故障" if reason == "other" else None
        payment = None
        if doc_type in (DocType.SALE, DocType.CUSTOMER_RETURN):
            payment = data.draw(st.sampled_from(PAYMENTS), label="payment")
        to_location = None
        if doc_type is DocType.TRANSFER_IN:
            to_location = data.draw(st.sampled_from([None, "backroom", "cold"]), label="to_location")
        command = PostDocument(
            key=self._key(),
            type=doc_type,
            lines=lines,
            location=data.draw(st.sampled_from([None, None, None, "backroom", "cold"]), label="location"),
            to_location=to_location,
            counterparty=counterparty,
            ref_id=ref_id,
            reason=reason,
            reason_text=reason_text,
            payment=payment,
            actor=data.draw(st.sampled_from(["cashier-1", "keeper-2"]), label="actor"),
            device=data.draw(st.sampled_from([None, "pos-1", "handheld-3"]), label="device"),
        )
        fault = data.draw(st.sampled_from([None] * 3 * len(FAULTS) + FAULTS), label="fault")
        return self._with_fault(data, command, fault) if fault else command

    def _with_fault(self, data: st.DataObject, command: PostDocument, fault: str) -> PostDocument:
        replace = dataclasses.replace
        first, *rest = command.lines
        faulty_line = {
            "unknown_item": lambda: replace(first, code="NOPE-404", unit=None),
            "unknown_unit": lambda: replace(first, unit="托"),
            "qty_out_of_range": lambda: replace(first, qty=data.draw(st.sampled_from([-1, 0, 10_000_001]))),
            "price_out_of_range": lambda: replace(first, price_fen=data.draw(st.sampled_from([-1, 1_000_000_001]))),
            "unknown_line_location": lambda: replace(first, location="nowhere"),
            "transit_line_location": lambda: replace(first, location="transit"),
        }
        if fault in faulty_line:
            return replace(command, lines=(faulty_line[fault](), *rest))
        everything = sorted(self.reference.documents)
        changes: dict[str, Any] = {
            "unknown_header_location": {"location": "nowhere"},
            "unknown_counterparty": {"counterparty": "nobody"},
            "no_counterparty": {"counterparty": None},
            "bad_reason": {"reason": data.draw(st.sampled_from(["bogus", "", "EXPIRED"]))},
            "other_without_text": {"reason": "other", "reason_text": " "},
            "bad_payment": {"payment": "bitcoin"},
            "stray_ref": {"ref_id": data.draw(st.sampled_from([*everything, 999]))},
            "empty_key": {"key": ""},
            "no_lines": {"lines": ()},
        }[fault]
        return replace(command, **changes)

    # --- rules --------------------------------------------------------------------------------

    @rule(data=st.data())
    def order_from_a_supplier(self, data: st.DataObject) -> None:
        self._post(self._document(data, DocType.PURCHASE_ORDER))

    @rule(data=st.data())
    def receive_goods(self, data: st.DataObject) -> None:
        self._post(self._document(data, DocType.RECEIPT))

    @rule(data=st.data())
    def receive_more_goods(self, data: st.DataObject) -> None:
        self._post(self._document(data, DocType.RECEIPT))

    @rule(data=st.data())
    def sell(self, data: st.DataObject) -> None:
        self._post(self._document(data, DocType.SALE))

    @rule(data=st.data())
    def sell_again(self, data: st.DataObject) -> None:
        self._post(self._document(data, DocType.SALE))

    @rule(data=st.data())
    def take_back_from_a_customer(self, data: st.DataObject) -> None:
        self._post(self._document(data, DocType.CUSTOMER_RETURN))

    @rule(data=st.data())
    def return_to_a_supplier(self, data: st.DataObject) -> None:
        self._post(self._document(data, DocType.SUPPLIER_RETURN))

    @rule(data=st.data())
    def send_to_another_store(self, data: st.DataObject) -> None:
        self._post(self._document(data, DocType.TRANSFER_OUT))

    @rule(data=st.data())
    def receive_from_another_store(self, data: st.DataObject) -> None:
        self._post(self._document(data, DocType.TRANSFER_IN))

    @rule(data=st.data())
    def count_stock(self, data: st.DataObject) -> None:
        self._post(self._document(data, DocType.STOCKTAKE))

    @rule(data=st.data())
    def write_off_stock(self, data: st.DataObject) -> None:
        self._post(self._document(data, DocType.WRITE_OFF))

    @rule(data=st.data())
    def reverse_a_document(self, data: st.DataObject) -> None:
        candidates = sorted(self.reference.documents) or [999]
        if data.draw(st.integers(0, 9), label="unknown document") == 0:
            candidates = [999]
        if self.last_document is not None:
            candidates += [self.last_document] * 2
        document_id = data.draw(st.sampled_from(candidates), label="reverse")
        self._post(ReverseDocument(key=self._key(), document_id=document_id, reason_text="录错了", actor="manager-1"))

    @precondition(lambda self: bool(self.first))
    @rule(data=st.data())
    def replay_a_key(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.first)), label="replayed key")
        self._post(self.first[key][0])

    @precondition(lambda self: bool(self.first))
    @rule(data=st.data())
    def reuse_a_key_for_another_payload(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.first)), label="reused key")
        command = self.first[key][0]
        if isinstance(command, PostDocument):
            other: Command = dataclasses.replace(command, note=(command.note or "") + "改")
        else:
            other = dataclasses.replace(command, reason_text=(command.reason_text or "") + "改")
        self._post(other)

    @rule(days=st.integers(1, 4))
    def pass_days(self, days: int) -> None:
        self.today += timedelta(days=days)
        self.now += timedelta(days=days)

    @precondition(lambda self: bool(self.reference.documents))
    @rule(data=st.data())
    def append_only_rows_cannot_change(self, data: st.DataObject) -> None:
        filled = [(t, sql) for t, sql in APPEND_ONLY if self.conn.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()]
        _, statement = data.draw(st.sampled_from(filled), label="statement")
        before = dump(self.conn)
        with pytest.raises(sqlite3.IntegrityError, match=r"append-only|never deleted"):
            self.conn.execute(statement)
        assert dump(self.conn) == before

    @precondition(lambda self: bool(self.reference.balances))
    @rule(data=st.data())
    def tampered_balances_are_found_and_rebuilt(self, data: st.DataObject) -> None:
        sku, location, lot = data.draw(st.sampled_from(sorted(self.reference.balances)), label="tampered")
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute(
            "UPDATE balances SET qty = qty + 1, value_fen = value_fen + 7 WHERE sku = ? AND location = ? AND lot = ?",
            (sku, location, lot),
        )
        report = verify_ledger(self.conn)
        assert not report["ok"]
        assert [(m["sku"], m["location"], m["lot"]) for m in report["balances"]] == [(sku, location, lot)]
        rebuild_balances(self.conn)
        self.conn.execute("COMMIT")
        assert balances(self.conn) == self.reference.balances

    # --- posting and checking one command -----------------------------------------------------

    def _post(self, command: Command) -> None:
        before = dump(self.conn)
        if not 1 <= len(command.key) <= 300:
            # A key that cannot identify a command is refused and not recorded at all.
            result = post_committed(self.conn, command, context(self.today, self.now))
            assert (result.ok, result.code) == (False, "invalid_command")
            assert dump(self.conn) == before
            return
        known = self.first.get(command.key)
        expected = None if known else self.reference.expect(command, self.today)
        result = post_committed(self.conn, command, context(self.today, self.now))
        after = dump(self.conn)
        if known is not None:
            self._check_repeat(command, known, result, before, after)
            return
        self.first[command.key] = (command, result)
        event(f"{getattr(command, 'type', 'reversal')}: {result.code}")
        assert expected is not None
        added = {t: after[t][len(before[t]) :] for t in LEDGER_TABLES if t != "balances"}
        assert [row[0] for row in added["commands"]] == [command.key]
        if expected.refusal is not None:
            self._check_refusal(command, expected, result, before, after)
        else:
            self._check_posting(command, expected, result, added)

    def _check_repeat(
        self, command: Command, known: tuple[Command, PostResult], result: PostResult, before: Any, after: Any
    ) -> None:
        first_command, first = known
        if command == first_command:
            assert result.replayed
            fields = ("ok", "code", "message", "message_en", "document_id", "doc_no", "detail")
            assert {f: getattr(result, f) for f in fields} == {f: getattr(first, f) for f in fields}
        else:
            assert (result.ok, result.code) == (False, "idempotency_key_reused")
            assert result.detail == {"key": command.key}
        assert after == before  # not even a row in commands

    def _check_refusal(self, command: Command, expected: Expected, result: PostResult, before: Any, after: Any) -> None:
        refusal = expected.refusal
        assert refusal is not None
        assert not result.ok, f"expected {refusal} for {command}, but it posted {result.doc_no}"
        assert result.code == refusal.code, (command, result.detail, refusal)
        assert {k: result.detail.get(k) for k in refusal.detail} == refusal.detail, (result.detail, refusal)
        assert result.document_id is None
        assert result.message and result.message_en
        if refusal.code == "insufficient_stock":
            assert str(refusal.detail["shortfall"]) in result.message_en
            assert refusal.detail["item"] in result.message and refusal.detail["location"] in result.message
        # Nothing but the record of the refusal under its key.
        assert {t: rows for t, rows in after.items() if t != "commands"} == {
            t: rows for t, rows in before.items() if t != "commands"
        }
        recorded = self.conn.execute("SELECT ok, document_id, code FROM commands WHERE key = ?", (command.key,))
        assert tuple(recorded.fetchone()) == (0, None, refusal.code)
        if isinstance(command, ReverseDocument) and command.document_id == self.last_document:
            # Nothing happened since that document: its reversal cannot fail for want of stock.
            assert refusal.code in ("already_reversed", "not_reversible"), refusal

    def _check_posting(
        self, command: Command, expected: Expected, result: PostResult, added: dict[str, list[Any]]
    ) -> None:
        assert result.ok, f"expected a posting for {command}, got {result.code}: {result.message_en} {result.detail}"
        document_id = result.document_id
        assert document_id is not None
        conn = self.conn
        header = conn.execute("SELECT * FROM documents WHERE id = ?", (document_id,)).fetchone()
        assert (header["type"], header["command_key"], header["doc_no"]) == (expected.type, command.key, result.doc_no)
        assert (header["ref_id"], header["reverses_id"]) == (expected.ref_id, expected.reverses_id)
        lines = conn.execute("SELECT * FROM document_lines WHERE document_id = ? ORDER BY line_no", (document_id,))
        lines = lines.fetchall()
        if expected.type == "reversal":
            original = conn.execute(
                "SELECT * FROM document_lines WHERE document_id = ? ORDER BY line_no", (expected.reverses_id,)
            ).fetchall()
            assert [(r["line_no"], r["sku"], -r["qty_base"], -r["gross_fen"], -r["tax_fen"]) for r in original] == [
                (r["line_no"], r["sku"], r["qty_base"], r["gross_fen"], r["tax_fen"]) for r in lines
            ]
        else:
            columns = ("line_no", "sku", "unit", "qty", "qty_base", "price_fen", "gross_fen", "tax_fen", "lot")
            got = [(*(r[c] for c in columns), r["location"]) for r in lines]
            assert got == [dataclasses.astuple(line) for line in expected.lines]
            for r in lines:  # tax rounds once, half-up, at the line
                want = vat_included(r["gross_fen"], r["vat_rate_bp"]) if expected.type in TAXED else 0
                assert r["tax_fen"] == want
        assert header["gross_fen"] == sum(r["gross_fen"] for r in lines)
        assert header["tax_fen"] == sum(r["tax_fen"] for r in lines)

        moves = conn.execute(
            "SELECT line_no, sku, location, lot, qty, value_fen FROM stock_moves WHERE document_id = ? ORDER BY id",
            (document_id,),
        ).fetchall()
        assert [tuple(m) for m in moves] == [dataclasses.astuple(m) for m in expected.moves]
        if expected.type in ("sale", "transfer_out"):
            for m in expected.moves:  # expired lots are never sold nor sent away
                expiry = expected.lot_expiry.get((m.sku, m.lot))
                assert m.qty > 0 or expiry is None or expiry >= self.today.isoformat()

        # One outbox row and one audit row per posting; a voucher, balanced, when money moved.
        assert [row[1] for row in added["outbox"]] == [document_id]
        assert [(row[4], row[5]) for row in added["audit"]] == [(f"post.{expected.type}", f"document:{document_id}")]
        audit_actor = added["audit"][0][2:4]
        assert tuple(audit_actor) == (command.actor, command.device)
        payload = _no_float(added["outbox"][0][3])
        assert payload["document"]["id"] == document_id
        _no_float(added["commands"][0][5])
        vouchers = conn.execute("SELECT id FROM vouchers WHERE document_id = ?", (document_id,)).fetchall()
        assert len(added["vouchers"]) == len(vouchers) <= 1
        money_moved = any(m.value_fen for m in expected.moves) or (
            expected.type in TAX_ACCOUNT and header["gross_fen"] != 0
        )
        if expected.type == "purchase_order":
            assert not vouchers and not moves
        elif money_moved:
            assert len(vouchers) == 1, f"{expected.type} moved money but has no voucher"
        if vouchers:
            self._check_voucher(vouchers[0][0], expected, header)
        self.reference.apply(document_id, expected)
        touched = {m.sku for m in expected.moves}
        assert {s.sku for s in result.stock} == touched
        for change in result.stock:
            want: dict[str, int] = {}
            for (sku, location, _), (q, _) in self.reference.balances.items():
                if sku == change.sku:
                    want[location] = want.get(location, 0) + q
            assert {loc: q for loc, q in change.on_hand.items() if q} == {loc: q for loc, q in want.items() if q}

        if expected.type == "reversal" and expected.reverses_id == self.last_document:
            # Nothing happened in between: the reversal puts every balance back exactly.
            assert self.reference.balances == self.balances_before[expected.reverses_id]
        self.balances_before[document_id] = self._balances_without(expected)
        self.last_document = document_id

    def _balances_without(self, expected: Expected) -> dict[tuple[str, str, str], tuple[int, int]]:
        """The reference's balances as they were before `expected` was applied."""
        undone = dict(self.reference.balances)
        for m in expected.moves:
            key = (m.sku, m.location, m.lot)
            q, v = undone.get(key, (0, 0))
            undone[key] = (q - m.qty, v - m.value_fen)
        return {k: qv for k, qv in undone.items() if qv != (0, 0)}

    def _check_voucher(self, voucher_id: int, expected: Expected, header: sqlite3.Row) -> None:
        rows = self.conn.execute(
            "SELECT account, debit_fen, credit_fen FROM voucher_lines WHERE voucher_id = ? ORDER BY line_no",
            (voucher_id,),
        ).fetchall()
        assert rows, "a voucher without lines"
        assert sum(r[1] for r in rows) == sum(r[2] for r in rows), f"unbalanced voucher {[tuple(r) for r in rows]}"
        for account, debit, credit in rows:
            assert (debit == 0) != (credit == 0), f"a voucher line is one-sided: {account} {debit} {credit}"
            if expected.type not in ("reversal", "supplier_return"):  # only red-letter vouchers show negatives
                assert debit >= 0 and credit >= 0

        def net(account: str) -> int:
            return sum(r[1] - r[2] for r in rows if r[0] == account)

        # Inventory (1405) moves by exactly the value of the stock moved outside transit.
        assert net("1405") == sum(m.value_fen for m in expected.moves if m.location != "transit")
        if expected.type in TAX_ACCOUNT:
            account, sign = TAX_ACCOUNT[expected.type]
            assert net(account) == sign * header["tax_fen"]
        if expected.type == "receipt":  # the estimate equals the stock received
            assert -net("220202") == sum(m.value_fen for m in expected.moves)

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def money_and_quantities_are_integers(self) -> None:
        for table, query in self.non_integer_queries.items():
            assert self.conn.execute(query).fetchone()[0] == 0, f"{table} holds a float or a non-integer amount"

    @invariant()
    def balances_are_the_sums_of_their_moves(self) -> None:
        stored = balances(self.conn)
        rebuilt = {k: qv for k, qv in rebuilt_balances(self.conn).items() if qv != (0, 0)}
        assert stored == rebuilt == self.reference.balances
        for (sku, location, lot), (qty, value) in stored.items():
            assert qty > 0 and value >= 0, f"{sku}@{location}/{lot}: {qty} for {value} fen"
        assert self.conn.execute("SELECT COUNT(*) FROM balances WHERE qty = 0 AND value_fen != 0").fetchone()[0] == 0

    @invariant()
    def the_ledger_verifies(self) -> None:
        report = verify_ledger(self.conn)
        assert report["ok"], {k: v for k, v in report.items() if v and k not in ("ok", "checked")}


LedgerMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=50,
    deadline=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Shrinking a failing sequence can take hypothesis its full five minutes; let it finish and report.
TestLedgerInvariantsOverRandomSequences = pytest.mark.timeout(900)(LedgerMachine.TestCase)
