"""The issue's must-hold over random mixes of documents and invoices, through the real paths.

Purchase orders and receipts, invoices entered through the three-way match (some matching, some off by a
price difference and then accepted and approved by two people, or rejected), supplier returns, sales,
write-offs and their approval, payments, and reversals of the last document. After every step:

- every voucher balances;
- GL 1405 equals the value of the stock outside transit;
- AP per supplier (220201) equals the invoices booked − payments − credit notes;
- the estimate per supplier (220202 暂估应付, a credit) equals the receipts' net − the supplier returns' net −
  what invoices cleared of the receipts + what credit notes cleared of the returns (reversed documents left
  out); no return line is credited beyond its net value, and no reversed return is credited;
- a reversal of the last document restores every stock balance and every account balance.
"""

from __future__ import annotations

import itertools
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from edge.finance import ap, entries
from edge.finance.errors import FinanceError
from edge.finance.invoices import Invoice, InvoiceLine, InvoiceSource
from edge.finance.matching import MatchPolicy
from edge.ledger.commands import DocType, Line, PostDocument, PostResult, ReverseDocument
from edge.ledger.money import div_round_half_up, tax_included
from tests.edge.finance.books_store import context, open_books
from tests.edge.finance.test_compliance import CODE, complete_cabinet

POLICY = MatchPolicy(qty_tolerance=0, price_tolerance_fen=100, tax_tolerance_fen=10, window_hours=72)
# Items of the sample store bought in pieces: sku -> VAT rate (basis points).
ITEMS = {"A1": 1300, "G1": 300, "E1": 0}


class Books(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.TemporaryDirectory(prefix="storebox-books-")
        self.conn = open_books(Path(self.folder.name) / "books.db")
        self.conn.execute("BEGIN IMMEDIATE")
        complete_cabinet(self.conn)  # sup1 may be paid and invoices name it by its credit code
        self.conn.execute("COMMIT")
        self.keys = itertools.count(1)
        self.invoice_numbers = itertools.count(1)
        self.open_receipts: list[tuple[int, int, str, int, int]] = []  # receipt, PO, sku, qty, unit price
        self.exceptions: list[int] = []
        self.booked: list[tuple[str, str, int]] = []  # invoices booked: number, sku, rate
        self.last: tuple[int, dict[str, Any]] | None = None  # document and the balances before it

    def teardown(self) -> None:
        self.conn.close()
        self.folder.cleanup()

    # --- helpers -------------------------------------------------------------------------------

    def run(self, fn: Any, *args: Any) -> Any:
        ctx = context(self.conn)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            value = fn(self.conn, ctx, *args)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return value

    def snapshot(self) -> dict[str, Any]:
        stock = {tuple(r[:3]): (r[3], r[4]) for r in self.conn.execute("SELECT * FROM balances") if r[3] or r[4]}
        accounts = dict(
            self.conn.execute(
                "SELECT account, SUM(debit_fen - credit_fen) FROM voucher_lines GROUP BY account"
                " HAVING SUM(debit_fen - credit_fen) != 0"
            ).fetchall()
        )
        return {"stock": stock, "accounts": accounts}

    def post(self, command: Any) -> PostResult:
        before = self.snapshot()
        result: PostResult = self.run(lambda conn, ctx: _post(conn, ctx, command))
        if result.ok and result.document_id is not None:
            self.last = (result.document_id, before)
        return result

    # --- rules ---------------------------------------------------------------------------------

    @rule(
        sku=st.sampled_from(sorted(ITEMS)),
        qty=st.integers(1, 30),
        price=st.integers(1, 2000),
        invoice_now=st.sampled_from([None, 0, 250]),
    )
    def order_and_receive(self, sku: str, qty: int, price: int, invoice_now: int | None) -> None:
        po = self.post(
            PostDocument(f"po-{next(self.keys)}", DocType.PURCHASE_ORDER, (Line(sku, qty, price),), counterparty="sup1")
        )
        rc = self.post(
            PostDocument(
                f"rc-{next(self.keys)}",
                DocType.RECEIPT,
                (Line(sku, qty, price),),
                counterparty="sup1",
                ref_id=po.document_id,
            )
        )
        assert po.ok and rc.ok
        self.open_receipts.append((rc.document_id or 0, po.document_id or 0, sku, qty, price))
        if invoice_now is not None:
            self.invoice(len(self.open_receipts) - 1, invoice_now)

    @precondition(lambda self: bool(self.open_receipts))
    @rule(which=st.integers(0, 100), off_fen=st.sampled_from([0, 0, 1, 250, -250]))
    def invoice(self, which: int, off_fen: int) -> None:
        _receipt, po, sku, qty, price = self.open_receipts.pop(which % len(self.open_receipts))
        rate = ITEMS[sku]
        gross = qty * price
        net = gross - tax_included(gross, rate) + off_fen
        if net <= 0:
            return
        invoice = Invoice(
            invoice_no=f"{next(self.invoice_numbers):020d}",
            issue_date=context(self.conn).business_date,
            seller_name="供应商 sup1",
            seller_credit_code=CODE,
            buyer_name="本店",
            buyer_credit_code="91440300MA5F000007",
            lines=(InvoiceLine(1, sku, qty, net, rate, div_round_half_up(net * rate, 10_000), sku=sku),),
            po_id=po,
        )
        request = ap.EntryRequest((invoice,), InvoiceSource.API, f"inv-{next(self.keys)}", "purchaser", POLICY)
        before = self.snapshot()
        entered = self.run(ap.enter_invoices, request)["invoices"][0]
        self.last = None  # an invoice entry is corrected by a credit note, never reversed
        self.booked.append((invoice.invoice_no, sku, rate))
        if entered["status"] == "exception":
            self.exceptions.append(int(entered["exception"]["id"]))
            assert self.snapshot() == before, "an exception books nothing"
        else:
            assert entered["status"] == "matched" and entered["tax_trusted"]

    @precondition(lambda self: bool(self.exceptions))
    @rule(accept=st.booleans())
    def resolve(self, accept: bool) -> None:
        exception = self.exceptions.pop()
        if not ap.get_exception(self.conn, exception)["open"]:
            return  # closed meanwhile: a credit note netted with its invoice settled it
        if accept:
            self.run(ap.resolve_exception, ap.ResolutionRequest(exception, ap.Resolution.ACCEPT, "purchaser", POLICY))
            self.run(ap.resolve_exception, ap.ResolutionRequest(exception, ap.Resolution.APPROVE, "accountant", POLICY))
        else:
            self.run(ap.resolve_exception, ap.ResolutionRequest(exception, ap.Resolution.REJECT, "purchaser", POLICY))
        self.last = None

    @precondition(lambda self: bool(self.booked))
    @rule(which=st.integers(0, 100), net=st.integers(1, 500))
    def credit_note(self, which: int, net: int) -> None:
        """The supplier credits part of an invoice (红字发票); a credit for a booked invoice needs two people."""
        original, sku, rate = self.booked[which % len(self.booked)]
        tax = div_round_half_up(net * rate, 10_000)
        note = Invoice(
            invoice_no=f"{next(self.invoice_numbers):020d}",
            issue_date=context(self.conn).business_date,
            seller_name="供应商 sup1",
            seller_credit_code=CODE,
            buyer_name="本店",
            buyer_credit_code="91440300MA5F000007",
            lines=(InvoiceLine(1, sku, -1, -net, rate, -tax, sku=sku),),
            original_invoice_no=original,
        )
        request = ap.EntryRequest((note,), InvoiceSource.API, f"cn-{next(self.keys)}", "purchaser", POLICY)
        try:
            entered = self.run(ap.enter_invoices, request)["invoices"][0]
        except FinanceError:
            return  # e.g. more than the invoice's line, or the invoice was rejected: refused whole
        self.last = None
        if entered.get("exception"):
            self.exceptions.append(int(entered["exception"]["id"]))

    @precondition(lambda self: bool(self.booked))
    @rule(sku=st.sampled_from(sorted(ITEMS)))
    def credit_the_returns(self, sku: str) -> None:
        """The supplier's credit note for all that was returned of an item and not yet credited, naming a booked
        invoice of that item: once a second person approves it, nothing of the item's returns is open."""
        open_value = self.open_return_value(sku)
        original = self.conn.execute(
            "SELECT i.invoice_no FROM invoices i JOIN invoice_lines l ON l.invoice_id = i.id WHERE i.kind = 'invoice'"
            " AND i.status IN ('matched', 'accepted', 'credited') AND l.sku = ? ORDER BY i.id DESC LIMIT 1",
            (sku,),
        ).fetchone()
        if open_value <= 0 or original is None:
            return
        rate = ITEMS[sku]
        tax = div_round_half_up(open_value * rate, 10_000)
        note = Invoice(
            invoice_no=f"{next(self.invoice_numbers):020d}",
            issue_date=context(self.conn).business_date,
            seller_name="供应商 sup1",
            seller_credit_code=CODE,
            buyer_name="本店",
            buyer_credit_code="91440300MA5F000007",
            lines=(InvoiceLine(1, sku, -1, -open_value, rate, -tax, sku=sku),),
            original_invoice_no=original[0],
        )
        request = ap.EntryRequest((note,), InvoiceSource.API, f"cn-{next(self.keys)}", "purchaser", POLICY)
        entered = self.run(ap.enter_invoices, request)["invoices"][0]
        self.last = None
        exception = int(entered["exception"]["id"])
        self.run(ap.resolve_exception, ap.ResolutionRequest(exception, ap.Resolution.ACCEPT, "purchaser", POLICY))
        self.run(ap.resolve_exception, ap.ResolutionRequest(exception, ap.Resolution.APPROVE, "accountant", POLICY))
        assert self.open_return_value(sku) == 0

    def open_return_value(self, sku: str) -> int:
        """The net value of sup1's returns of an item not reversed and not yet cleared by a credit note."""
        value: int = self.conn.execute(
            "SELECT COALESCE(SUM(l.gross_fen - l.tax_fen), 0) - COALESCE((SELECT SUM(c.net_fen)"
            "  FROM credit_clearances c JOIN document_lines cl ON cl.document_id = c.return_id"
            "  AND cl.line_no = c.return_line_no WHERE cl.sku = ?), 0)"
            " FROM documents d JOIN document_lines l ON l.document_id = d.id WHERE d.type = 'supplier_return'"
            " AND d.counterparty = 'sup1' AND l.sku = ? AND NOT EXISTS (SELECT 1 FROM documents v"
            "  WHERE v.reverses_id = d.id)",
            (sku, sku),
        ).fetchone()[0]
        return value

    @rule(sku=st.sampled_from(sorted(ITEMS)), qty=st.integers(1, 10), payment=st.sampled_from(["cash", "wechat"]))
    def sell(self, sku: str, qty: int, payment: str) -> None:
        self.post(PostDocument(f"sa-{next(self.keys)}", DocType.SALE, (Line(sku, qty),), payment=payment))

    @rule(sku=st.sampled_from(sorted(ITEMS)), qty=st.integers(1, 5), price=st.integers(0, 2000))
    def return_to_supplier(self, sku: str, qty: int, price: int) -> None:
        self.post(
            PostDocument(
                f"sr-{next(self.keys)}", DocType.SUPPLIER_RETURN, (Line(sku, qty, price),), counterparty="sup1"
            )
        )

    @rule(sku=st.sampled_from(sorted(ITEMS)), reason=st.sampled_from(["theft", "spoiled", "natural_disaster"]))
    def write_off_and_approve(self, sku: str, reason: str) -> None:
        written = self.post(
            PostDocument(f"wo-{next(self.keys)}", DocType.WRITE_OFF, (Line(sku, 1),), reason=reason, actor="keeper")
        )
        if written.ok:
            approved = self.run(entries.approve_losses, f"la-{next(self.keys)}", written.document_id, "manager")
            assert approved.ok, approved
            self.last = None

    @rule(amount=st.integers(1, 50_000), prepayment=st.booleans())
    def pay(self, amount: int, prepayment: bool) -> None:
        before = self.snapshot()
        payment = entries.Payment(f"py-{next(self.keys)}", "sup1", amount, prepayment=prepayment, actor="accountant")
        result = self.run(entries.pay_supplier, payment)
        assert result.ok, result
        self.last = (result.document_id, before)

    @rule()
    def pay_a_supplier_without_papers(self) -> None:
        before = self.snapshot()
        try:
            self.run(entries.pay_supplier, entries.Payment(f"py-{next(self.keys)}", "sup2", 100))
        except FinanceError:
            pass
        else:
            raise AssertionError("sup2 has no papers and must not be paid")
        assert self.snapshot() == before

    @precondition(lambda self: self.last is not None)
    @rule()
    def reverse_the_last_document(self) -> None:
        assert self.last is not None
        document_id, before = self.last
        result = self.run(lambda conn, ctx: _post(conn, ctx, ReverseDocument(f"rv-{next(self.keys)}", document_id)))
        self.last = None
        if result.ok:
            assert self.snapshot() == before, "a reversal restores every balance"
            self.open_receipts = [r for r in self.open_receipts if r[0] != document_id]

    # --- invariants ----------------------------------------------------------------------------

    @invariant()
    def every_voucher_balances(self) -> None:
        unbalanced = self.conn.execute(
            "SELECT voucher_id FROM voucher_lines GROUP BY voucher_id HAVING SUM(debit_fen) != SUM(credit_fen)"
        ).fetchall()
        assert unbalanced == []

    @invariant()
    def inventory_account_equals_the_stock_value(self) -> None:
        gl = self.conn.execute(
            "SELECT COALESCE(SUM(debit_fen - credit_fen), 0) FROM voucher_lines WHERE account = '1405'"
        ).fetchone()[0]
        stock = self.conn.execute(
            "SELECT COALESCE(SUM(value_fen), 0) FROM balances WHERE location != 'transit'"
        ).fetchone()[0]
        assert gl == stock

    @invariant()
    def payable_per_supplier_is_invoices_less_payments_and_credit_notes(self) -> None:
        booked = dict(
            self.conn.execute(
                "SELECT d.counterparty, SUM(l.credit_fen - l.debit_fen) FROM voucher_lines l"
                " JOIN vouchers v ON v.id = l.voucher_id JOIN documents d ON d.id = v.document_id"
                " WHERE l.account = '220201' GROUP BY d.counterparty"
            ).fetchall()
        )
        expected: dict[str, int] = {}
        for supplier, doc_type, gross, reverses, prepayment in self.conn.execute(
            "SELECT d.counterparty, d.type, d.gross_fen, o.type, EXISTS (SELECT 1 FROM voucher_lines l"
            "   JOIN vouchers v ON v.id = l.voucher_id WHERE v.document_id = d.id AND l.account = '1123')"
            " FROM documents d LEFT JOIN documents o ON o.id = d.reverses_id"
            " WHERE d.type IN ('purchase_invoice', 'credit_note', 'supplier_payment', 'reversal')"
            " AND (d.type != 'reversal' OR o.type = 'supplier_payment')"
        ):
            kind = reverses or doc_type
            if kind == "supplier_payment" and prepayment:
                continue  # a prepayment sits in 1123 预付账款, not in the payable
            sign = 1 if kind == "purchase_invoice" else -1
            expected[supplier] = expected.get(supplier, 0) + sign * gross
        assert {k: v for k, v in booked.items() if v} == {k: v for k, v in expected.items() if v}

    @invariant()
    def estimate_per_supplier_is_receipts_less_returns_less_what_invoices_and_credit_notes_cleared(self) -> None:
        booked = dict(
            self.conn.execute(
                "SELECT d.counterparty, SUM(l.credit_fen - l.debit_fen) FROM voucher_lines l"
                " JOIN vouchers v ON v.id = l.voucher_id JOIN documents d ON d.id = v.document_id"
                " WHERE l.account = '220202' GROUP BY d.counterparty"
            ).fetchall()
        )
        expected: dict[str, int] = {}
        for supplier, amount in self.conn.execute(
            "SELECT d.counterparty, SUM(CASE d.type WHEN 'receipt' THEN 1 ELSE -1 END * (l.gross_fen - l.tax_fen))"
            " FROM documents d JOIN document_lines l ON l.document_id = d.id"
            " WHERE d.type IN ('receipt', 'supplier_return')"
            " AND NOT EXISTS (SELECT 1 FROM documents v WHERE v.reverses_id = d.id) GROUP BY d.counterparty"
            " UNION ALL SELECT i.supplier_id, -SUM(c.net_fen) FROM invoice_clearances c"
            " JOIN invoices i ON i.id = c.invoice_id GROUP BY i.supplier_id"
            " UNION ALL SELECT d.counterparty, SUM(c.net_fen) FROM credit_clearances c"
            " JOIN documents d ON d.id = c.return_id GROUP BY d.counterparty"
        ):
            expected[supplier] = expected.get(supplier, 0) + amount
        assert {k: v for k, v in booked.items() if v} == {k: v for k, v in expected.items() if v}
        over = self.conn.execute(
            "SELECT c.return_id, c.return_line_no FROM credit_clearances c JOIN document_lines l"
            " ON l.document_id = c.return_id AND l.line_no = c.return_line_no"
            " GROUP BY c.return_id, c.return_line_no HAVING SUM(c.net_fen) > MAX(l.gross_fen - l.tax_fen)"
            " OR EXISTS (SELECT 1 FROM documents v WHERE v.reverses_id = c.return_id)"
        ).fetchall()
        assert over == []


def _post(conn: sqlite3.Connection, ctx: Any, command: Any) -> PostResult:
    from edge.ledger.posting import post

    result: PostResult = post(conn, command, ctx)
    return result


Books.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestBooksOverRandomDocumentsAndInvoices = Books.TestCase
