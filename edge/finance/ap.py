"""Accounts payable from purchase invoices (应付账款): storing invoices, matching them, posting the AP entry,
and the exception queue with its resolutions.

Functions here run inside the writer's transaction (`writer.execute_posting(fn, ...)` gives them the
connection and the PostingContext). The facts for the match are loaded in a few bulk queries
(`load_facts`), the match itself is the pure `edge.finance.matching.match_invoice`.

An invoice's life (invoices.status):
- `matched`: the three-way match agreed; the purchase_invoice entry posted, tax-trusted.
- `exception`: it did not; the reasons are in invoice_exceptions, waiting for a purchaser.
- `pending_approval`: a purchaser accepted the difference; another user with invoices:approve must approve,
  then the entry posts, not tax-trusted, the difference to cost (5401) -> `accepted`.
- `awaiting_credit_note`: a purchaser asked the supplier for a credit note (红字发票). When it arrives it is
  netted into the invoice and matched again: agreeing, both entries post -> `credited`.
- `rejected`: nothing posted; the invoice is kept.
- `cancelled`: credit notes cancelled it entirely; nothing posted.
A credit note is `netted` into its open original, `posted` with it, or (its original already booked) an
exception of its own that a purchaser accepts (approved by another user) or rejects. Whichever way it posts,
its entry clears the supplier's open returns (退供应商单) from 220202 first (credit_clearances); only the rest
of its net is a price credit to cost (5401).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from edge.finance.errors import (
    ApprovalError,
    DuplicateInvoice,
    InvalidInvoice,
    InvoiceStateError,
    UnknownInvoice,
    UnknownInvoiceException,
)
from edge.finance.invoices import (
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceSource,
    check_buyer,
    invoice_to_dict,
)
from edge.finance.matching import (
    ItemFact,
    MatchFacts,
    MatchPolicy,
    MatchResult,
    POLine,
    Reason,
    ReceiptLine,
    ReturnClearance,
    ReturnLine,
    clear_returns,
    line_item,
    match_invoice,
    net_credit_notes,
    reason_credit_for_posted,
)
from edge.finance.prices import agreed_for_order, agreements_of, revised_prices
from edge.ledger.audit import append_audit
from edge.ledger.commands import DocType, PostEntry
from edge.ledger.errors import IdempotencyKeyReused
from edge.ledger.posting import PostingContext, post
from edge.rules.holds import check_not_held

PO_LOOKBACK_DAYS = 365  # an invoice is matched against the supplier's POs of the year before its issue date
OPEN_STATES = ("exception", "pending_approval", "awaiting_credit_note")
BOOKED_STATES = ("matched", "accepted", "credited")


class Resolution(StrEnum):
    """What a purchaser may do with an exception (and `approve`, for a second person)."""

    ACCEPT = "accept"
    APPROVE = "approve"
    REQUEST_CREDIT_NOTE = "request_credit_note"
    REJECT = "reject"
    RECHECK = "recheck"


@dataclass(frozen=True, slots=True)
class EntryRequest:
    """Invoices to enter, as one all-or-nothing request (an API body or one import file)."""

    invoices: tuple[Invoice, ...]
    source: InvoiceSource
    key: str  # idempotency key of the request
    actor: str
    policy: MatchPolicy
    company_credit_code: str | None = None
    ignored_columns: tuple[str, ...] = ()
    rows: tuple[int, ...] = ()  # where each invoice starts in the import file, for errors


@dataclass(frozen=True, slots=True)
class ResolutionRequest:
    exception_id: int
    action: Resolution
    actor: str
    policy: MatchPolicy
    note: str | None = None


# --- entering invoices ----------------------------------------------------------------------------


def _fingerprint(invoice: Invoice, source: InvoiceSource) -> str:
    return hashlib.sha256(repr((invoice, source.value)).encode()).hexdigest()


def enter_invoices(conn: sqlite3.Connection, ctx: PostingContext, request: EntryRequest) -> dict[str, Any]:
    """Store the invoices, match each and post or queue it; all or nothing. Idempotent on `request.key`."""
    if not request.invoices:
        raise InvalidInvoice("没有发票", "no invoices", field="invoices")
    # One key per invoice of the request; a space never occurs in a request's key (visible ASCII only).
    keys = [f"{request.key} {i}" for i in range(1, len(request.invoices) + 1)]
    replay = _replay(conn, request, keys)
    if replay is not None:
        return replay
    numbers = [inv.invoice_no for inv in request.invoices]
    if len(set(numbers)) != len(numbers):
        raise InvalidInvoice("同一请求中发票号码重复", "the same invoice number twice in one request")
    entered: list[int] = []
    for index, (invoice, key) in enumerate(zip(request.invoices, keys, strict=True), start=1):
        row = request.rows[index - 1] if len(request.rows) >= index else None
        check_buyer(invoice, request.company_credit_code)
        if invoice.issue_date > ctx.business_date + timedelta(days=1):
            raise InvalidInvoice(
                f"发票 {invoice.invoice_no} 开票日期 {invoice.issue_date} 晚于今天",
                f"invoice {invoice.invoice_no} is dated {invoice.issue_date}, after today",
                invoice_no=invoice.invoice_no,
                field="issue_date",
            )
        existing = conn.execute("SELECT id FROM invoices WHERE invoice_no = ?", (invoice.invoice_no,)).fetchone()
        if existing is not None:
            raise DuplicateInvoice(invoice.invoice_no, int(existing[0]), row)
        invoice_id = _insert_invoice(conn, ctx, invoice, request, key)
        entered.append(invoice_id)
        if invoice.kind is InvoiceKind.CREDIT_NOTE:
            _enter_credit_note(conn, ctx, invoice_id, invoice, request)
        else:
            _settle(conn, ctx, invoice_id, request.actor, request.policy, trusted=True, via="enter")
    return {
        "replayed": False,
        "ignored_columns": list(request.ignored_columns),
        "invoices": [get_invoice(conn, i) for i in entered],
    }


def _replay(conn: sqlite3.Connection, request: EntryRequest, keys: list[str]) -> dict[str, Any] | None:
    """The stored answer when this request's key was used before (the same invoices), else None."""
    rows = conn.execute(
        "SELECT id, command_key, fingerprint FROM invoices WHERE command_key >= ? AND command_key < ?",
        (f"{request.key} ", f"{request.key}!"),
    ).fetchall()
    if not rows:
        return None
    stored = {r["command_key"]: r for r in rows}
    if len(stored) != len(keys):  # the key was used for a request with another number of invoices
        raise IdempotencyKeyReused(request.key)
    for invoice, key in zip(request.invoices, keys, strict=True):
        row = stored.get(key)
        if row is None or row["fingerprint"] != _fingerprint(invoice, request.source):
            raise IdempotencyKeyReused(request.key)
    return {
        "replayed": True,
        "ignored_columns": list(request.ignored_columns),
        "invoices": [get_invoice(conn, int(stored[k]["id"])) for k in keys],
    }


def _insert_invoice(
    conn: sqlite3.Connection, ctx: PostingContext, invoice: Invoice, request: EntryRequest, key: str
) -> int:
    ts = ctx.now.isoformat()
    cursor = conn.execute(
        "INSERT INTO invoices (invoice_no, kind, original_invoice_no, issue_date, seller_name, seller_credit_code,"
        " buyer_name, buyer_credit_code, po_id, receipt_ids, net_fen, tax_fen, source, status, entered_at,"
        " entered_by, command_key, fingerprint, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'exception', ?, ?, ?, ?, ?)",
        (
            invoice.invoice_no,
            invoice.kind.value,
            invoice.original_invoice_no,
            invoice.issue_date.isoformat(),
            invoice.seller_name,
            invoice.seller_credit_code,
            invoice.buyer_name,
            invoice.buyer_credit_code,
            invoice.po_id,
            json.dumps(list(invoice.receipt_ids)),
            invoice.net_fen,
            invoice.tax_fen,
            request.source.value,
            ts,
            request.actor,
            key,
            _fingerprint(invoice, request.source),
            ts,
        ),
    )
    invoice_id = int(cursor.lastrowid or 0)
    conn.executemany(
        "INSERT INTO invoice_lines (invoice_id, line_no, item_name, sku, unit, qty, unit_price, amount_fen,"
        " tax_rate_bp, tax_fen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                invoice_id,
                line.line_no,
                line.item_name,
                line.sku,
                line.unit,
                line.qty,
                line.unit_price,
                line.amount_fen,
                line.tax_rate_bp,
                line.tax_fen,
            )
            for line in invoice.lines
        ],
    )
    _audit(
        conn,
        ctx,
        request.actor,
        "invoice.enter",
        invoice_id,
        invoice_no=invoice.invoice_no,
        kind=invoice.kind.value,
        source=request.source.value,
        key=key,
        net_fen=invoice.net_fen,
        tax_fen=invoice.tax_fen,
    )
    return invoice_id


def _enter_credit_note(
    conn: sqlite3.Connection, ctx: PostingContext, credit_id: int, credit: Invoice, request: EntryRequest
) -> None:
    original = conn.execute(
        "SELECT id, kind, status, seller_credit_code FROM invoices WHERE invoice_no = ?", (credit.original_invoice_no,)
    ).fetchone()
    if original is None or original["kind"] != InvoiceKind.INVOICE:
        raise InvalidInvoice(
            f"红字发票 {credit.invoice_no} 的原发票 {credit.original_invoice_no} 未录入",
            f"credit note {credit.invoice_no}: the original invoice {credit.original_invoice_no} was not entered",
            invoice_no=credit.invoice_no,
            field="original_invoice_no",
        )
    if original["seller_credit_code"] != credit.seller_credit_code:
        raise InvalidInvoice(
            f"红字发票 {credit.invoice_no} 的销售方与原发票不同",
            f"credit note {credit.invoice_no}: the seller differs from the original invoice's",
            invoice_no=credit.invoice_no,
            field="seller_credit_code",
        )
    original_id, status = int(original["id"]), str(original["status"])
    if status in OPEN_STATES:
        _set_status(conn, ctx, credit_id, "netted", request.actor, applies_to=original_id)
        # Refuse a credit note that does not fit its invoice before anything else happens.
        net_credit_notes(load_invoice(conn, original_id), _credit_notes(conn, original_id))
        _settle(conn, ctx, original_id, request.actor, request.policy, trusted=True, via="credit_note")
    elif status in BOOKED_STATES:
        _set_status(conn, ctx, credit_id, "exception", request.actor, applies_to=original_id)
        _open_exception(conn, ctx, credit_id, [reason_credit_for_posted(str(credit.original_invoice_no), status)])
    else:  # the original was rejected or cancelled: the credit note offsets nothing that was booked
        _set_status(conn, ctx, credit_id, "rejected", request.actor, applies_to=original_id, note=f"原发票{status}")


# --- loading ------------------------------------------------------------------------------------


def load_invoice(conn: sqlite3.Connection, invoice_id: int) -> Invoice:
    """The stored invoice as the matching sees it."""
    row = conn.execute("SELECT * FROM invoices WHERE id = ?", (invoice_id,)).fetchone()
    if row is None:
        raise UnknownInvoice(invoice_id)
    lines = conn.execute("SELECT * FROM invoice_lines WHERE invoice_id = ? ORDER BY line_no", (invoice_id,)).fetchall()
    return _invoice_from_rows(row, lines)


def _invoice_from_rows(row: sqlite3.Row, lines: Sequence[sqlite3.Row]) -> Invoice:
    return Invoice(
        invoice_no=row["invoice_no"],
        issue_date=date.fromisoformat(row["issue_date"]),
        seller_name=row["seller_name"],
        seller_credit_code=row["seller_credit_code"],
        buyer_name=row["buyer_name"],
        buyer_credit_code=row["buyer_credit_code"],
        lines=tuple(
            InvoiceLine(
                line_no=int(line["line_no"]),
                item_name=line["item_name"],
                qty=int(line["qty"]),
                amount_fen=int(line["amount_fen"]),
                tax_rate_bp=int(line["tax_rate_bp"]),
                tax_fen=int(line["tax_fen"]),
                unit_price=line["unit_price"],
                sku=line["sku"],
                unit=line["unit"],
            )
            for line in lines
        ),
        po_id=row["po_id"],
        receipt_ids=tuple(json.loads(row["receipt_ids"])),
        original_invoice_no=row["original_invoice_no"],
    )


def _credit_notes(conn: sqlite3.Connection, invoice_id: int) -> list[Invoice]:
    ids = [
        int(r[0])
        for r in conn.execute(
            "SELECT id FROM invoices WHERE applies_to = ? AND status = 'netted' ORDER BY id", (invoice_id,)
        )
    ]
    return [load_invoice(conn, i) for i in ids]


def _tuples(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows as plain tuples: several times faster than sqlite3.Row for the bulk loads below."""
    cursor = conn.cursor()
    cursor.row_factory = None
    rows: list[tuple[Any, ...]] = cursor.execute(sql, params).fetchall()
    return rows


def _items(conn: sqlite3.Connection) -> list[ItemFact]:
    units: dict[str, dict[str, int]] = {}
    for sku, unit, factor in _tuples(conn, "SELECT sku, unit, factor FROM item_units"):
        units.setdefault(sku, {})[unit] = factor
    return [
        ItemFact(sku, name, rate, base_unit, units.get(sku, {base_unit: 1}))
        for sku, name, rate, base_unit in _tuples(conn, "SELECT sku, name, vat_rate_bp, base_unit FROM items")
    ]


def _barcodes(conn: sqlite3.Connection, invoices: Sequence[Invoice]) -> dict[str, str]:
    """The barcodes among the codes the invoices' lines give, with their item."""
    given = sorted({line.sku for inv in invoices for line in inv.lines if line.sku})
    return dict(
        _tuples(
            conn, "SELECT code, sku FROM barcodes WHERE code IN (SELECT value FROM json_each(?))", (json.dumps(given),)
        )
    )


def load_facts(conn: sqlite3.Connection, invoices: Sequence[Invoice]) -> MatchFacts:
    """Everything the match needs about these invoices' suppliers, items, POs and receipts, in a few queries
    however many invoices there are (the bulk path of the benchmark uses this too)."""
    if not invoices:
        return MatchFacts.build({}, (), {}, (), ())
    codes = sorted({inv.seller_credit_code for inv in invoices})
    suppliers: dict[str, str] = {}
    for supplier_id, code in _tuples(
        conn,
        "SELECT id, UPPER(TRIM(credit_code)) FROM suppliers WHERE UPPER(TRIM(credit_code)) IN"
        " (SELECT value FROM json_each(?)) ORDER BY active DESC, id DESC",
        (json.dumps(codes),),
    ):
        suppliers[code] = supplier_id  # the active supplier, then the lowest id, wins a shared code
    items = _items(conn)
    barcodes = _barcodes(conn, invoices)
    named_receipts = sorted({r for inv in invoices for r in inv.receipt_ids})
    receipts: dict[int, int | None] = dict(
        _tuples(
            conn,
            "SELECT d.id, d.ref_id FROM documents d WHERE d.id IN (SELECT value FROM json_each(?))"
            " AND d.type = 'receipt' AND d.ref_id IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM documents v WHERE v.reverses_id = d.id)",
            (json.dumps(named_receipts),),
        )
    )
    named_pos = sorted({inv.po_id for inv in invoices if inv.po_id is not None} | {p for p in receipts.values() if p})
    oldest = min(inv.issue_date for inv in invoices) - timedelta(days=PO_LOOKBACK_DAYS)
    po_rows = _tuples(
        conn,
        "SELECT d.id, l.line_no, d.counterparty, l.sku, l.qty_base, COALESCE(l.price_fen, 0), COALESCE(u.factor, 1),"
        " d.business_date, d.posted_at"
        " FROM documents d JOIN document_lines l ON l.document_id = d.id"
        " LEFT JOIN item_units u ON u.sku = l.sku AND u.unit = l.unit"
        " WHERE d.type = 'purchase_order'"
        " AND ((d.counterparty IN (SELECT value FROM json_each(?)) AND d.business_date >= ?)"
        "  OR d.id IN (SELECT value FROM json_each(?)))"
        " AND NOT EXISTS (SELECT 1 FROM documents v WHERE v.reverses_id = d.id)",
        (json.dumps(sorted(set(suppliers.values()))), oldest.isoformat(), json.dumps(named_pos)),
    )
    po_ids = sorted({r[0] for r in po_rows})
    # The expected price of a PO line: its latest revision, else the agreement it was created under, else its own.
    revised = revised_prices(conn, po_ids)
    agreements = agreements_of(conn, {r[2] for r in po_rows})
    po_lines = []
    for po_id, line_no, supplier, sku, qty, price, factor, business_date, posted in po_rows:
        revision = revised.get((po_id, line_no))
        if revision is not None:
            po_lines.append(POLine(po_id, line_no, supplier, sku, qty, revision[0], factor, True, revision[1]))
            continue
        candidates = agreements.get((supplier, sku)) if agreements else None
        under = agreed_for_order(candidates, business_date, datetime.fromisoformat(posted)) if candidates else None
        if under is not None:
            po_lines.append(
                POLine(po_id, line_no, supplier, sku, qty, under.price_fen * factor, factor, False, under.price_fen)
            )
        else:
            po_lines.append(POLine(po_id, line_no, supplier, sku, qty, price, factor))
    ids = json.dumps(po_ids)
    invoiced = {
        (r[0], r[1]): (r[2], r[3])
        for r in _tuples(
            conn,
            "SELECT receipt_id, receipt_line_no, SUM(qty_base), SUM(net_fen) FROM invoice_clearances"
            " WHERE po_id IN (SELECT value FROM json_each(?)) GROUP BY receipt_id, receipt_line_no",
            (ids,),
        )
    }
    posted_at: dict[str, datetime] = {}
    receipt_lines = []
    for receipt_id, line_no, po_id, sku, qty, net, at in _tuples(
        conn,
        "SELECT d.id, l.line_no, d.ref_id, l.sku, l.qty_base, l.gross_fen - l.tax_fen, d.posted_at"
        " FROM documents d JOIN document_lines l ON l.document_id = d.id"
        " WHERE d.type = 'receipt' AND d.ref_id IN (SELECT value FROM json_each(?))"
        " AND NOT EXISTS (SELECT 1 FROM documents v WHERE v.reverses_id = d.id)",
        (ids,),
    ):
        done_qty, done_net = invoiced.get((receipt_id, line_no), (0, 0))
        when = posted_at.get(at)
        if when is None:
            when = posted_at[at] = datetime.fromisoformat(at)
        receipt_lines.append(ReceiptLine(receipt_id, line_no, po_id, sku, qty, net, when, done_qty, done_net))
    return MatchFacts.build(suppliers, items, barcodes, po_lines, receipt_lines, receipts)


# --- matching and posting -----------------------------------------------------------------------


def _settle(
    conn: sqlite3.Connection,
    ctx: PostingContext,
    invoice_id: int,
    actor: str,
    policy: MatchPolicy,
    *,
    trusted: bool,
    via: str,
    force: bool = False,
) -> MatchResult:
    """Match the invoice (with its netted credit notes) now; post it when it agrees (or when `force`, an approved
    acceptance: then not tax-trusted), else record the reasons in the exception queue."""
    row = conn.execute("SELECT * FROM invoices WHERE id = ?", (invoice_id,)).fetchone()
    invoice = load_invoice(conn, invoice_id)
    credits = _credit_notes(conn, invoice_id)
    netted = net_credit_notes(invoice, credits)
    arrived = datetime.fromisoformat(row["entered_at"])
    result = match_invoice(netted, load_facts(conn, [netted]), policy, arrived_at=arrived)
    _record_matched_skus(conn, invoice_id, result)
    conn.execute("UPDATE invoices SET supplier_id = ? WHERE id = ?", (result.supplier_id, invoice_id))
    _audit(
        conn,
        ctx,
        actor,
        "invoice.match",
        invoice_id,
        via=via,
        ok=result.ok,
        reasons=[r.code for r in result.reasons],
        estimate_fen=result.estimate_fen,
    )
    if not netted.lines:  # credit notes cancelled the whole invoice: nothing to book
        for credit in credits:
            _set_status(conn, ctx, _id_of(conn, credit.invoice_no), "cancelled", actor)
        _set_status(conn, ctx, invoice_id, "cancelled", actor)
        _close_exception(conn, ctx, invoice_id, "cancelled", actor)
        return result
    if result.ok or force:
        if result.supplier_id is None:
            raise InvoiceStateError(
                "未知供应商的发票不能入账: 请先在供应商档案中登记其统一社会信用代码，再重新核对",
                "an invoice of an unknown supplier cannot be booked: record the supplier's credit code, then recheck",
                invoice_id=invoice_id,
            )
        tax_trusted = trusted and result.ok
        document_id = _post_entry(
            conn, ctx, invoice_id, DocType.PURCHASE_INVOICE, result.supplier_id, result, invoice, actor, tax_trusted
        )
        conn.executemany(
            "INSERT INTO invoice_clearances (invoice_id, invoice_line_no, receipt_id, receipt_line_no, po_id,"
            " qty_base, net_fen) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (invoice_id, c.invoice_line_no, c.receipt_id, c.receipt_line_no, c.po_id, c.qty_base, c.net_fen)
                for c in result.clearances
            ],
        )
        # The credit notes correct this invoice first: what they credit down to the amount the match expects
        # of what was received clears no return; only what they credit beyond that clears open returns.
        correcting = max(0, invoice.net_fen - sum(m.expected_net_fen or 0 for m in result.lines))
        for credit in credits:
            credit_id = _id_of(conn, credit.invoice_no)
            correction = min(correcting, -credit.net_fen)
            correcting -= correction
            credit_doc = _post_credit(
                conn,
                ctx,
                credit_id,
                credit,
                result.supplier_id,
                actor,
                tax_trusted,
                returns_up_to=-credit.net_fen - correction,
            )
            _set_status(conn, ctx, credit_id, "posted", actor, document_id=credit_doc, tax_trusted=tax_trusted)
        status = "accepted" if force else ("credited" if credits else "matched")
        _set_status(conn, ctx, invoice_id, status, actor, document_id=document_id, tax_trusted=tax_trusted)
        _close_exception(conn, ctx, invoice_id, status, actor)
        return result
    keep = row["status"] if row["status"] in ("pending_approval", "awaiting_credit_note") and via == "recheck" else None
    _set_status(conn, ctx, invoice_id, keep or "exception", actor)
    _open_exception(conn, ctx, invoice_id, list(result.reasons))
    return result


def _post_entry(
    conn: sqlite3.Connection,
    ctx: PostingContext,
    invoice_id: int,
    doc_type: DocType,
    supplier_id: str,
    result: MatchResult,
    invoice: Invoice,
    actor: str,
    tax_trusted: bool,
) -> int:
    entry = PostEntry(
        key=f"invoice:{invoice_id}:{doc_type.value}",
        type=doc_type,
        amounts=(("estimate", result.estimate_fen), ("net", invoice.net_fen), ("tax", invoice.tax_fen)),
        counterparty=supplier_id,
        ref_id=result.first_receipt_id,
        note=f"发票 {invoice.invoice_no}",
        tax_trusted=tax_trusted,
        actor=actor,
    )
    return _posted(conn, ctx, entry, invoice.invoice_no)


def _post_credit(
    conn: sqlite3.Connection,
    ctx: PostingContext,
    credit_id: int,
    credit: Invoice,
    supplier_id: str,
    actor: str,
    tax_trusted: bool,
    returns_up_to: int | None = None,
) -> int:
    """Post a credit note's entry (every path does so here). Its amounts are given as positive figures; the rule
    books them red-letter. Its `estimate` is what it clears of the supplier's open returns (the 220202 debit a
    supplier return leaves until the supplier credits it), recorded in credit_clearances; only the rest of its
    net (a pure price credit) goes to cost (5401). It clears no receipt value: the invoice it is netted with, or
    that was booked before it, cleared what was received. `returns_up_to` caps what it clears of returns."""
    cleared: tuple[ReturnClearance, ...] = ()
    if returns_up_to is None or returns_up_to > 0:
        open_returns = _open_returns(conn, supplier_id)
        if open_returns:
            cleared = clear_returns(credit, _line_items(conn, credit), open_returns, returns_up_to)
    estimate = sum(c.net_fen for c in cleared)
    entry = PostEntry(
        key=f"invoice:{credit_id}:{DocType.CREDIT_NOTE.value}",
        type=DocType.CREDIT_NOTE,
        amounts=(("estimate", estimate), ("net", -credit.net_fen), ("tax", -credit.tax_fen)),
        counterparty=supplier_id,
        ref_id=cleared[0].return_id if cleared else None,  # the ledger then refuses reversing that return
        note=f"红字发票 {credit.invoice_no} (原发票 {credit.original_invoice_no})",
        tax_trusted=tax_trusted,
        actor=actor,
    )
    conn.execute("UPDATE invoices SET supplier_id = ? WHERE id = ?", (supplier_id, credit_id))
    document_id = _posted(conn, ctx, entry, credit.invoice_no)
    conn.executemany(
        "INSERT INTO credit_clearances (credit_id, credit_line_no, return_id, return_line_no, net_fen)"
        " VALUES (?, ?, ?, ?, ?)",
        [(credit_id, c.credit_line_no, c.return_id, c.return_line_no, c.net_fen) for c in cleared],
    )
    return document_id


def _line_items(conn: sqlite3.Connection, invoice: Invoice) -> dict[int, str | None]:
    """The item each line of an invoice or credit note names (None: none or several), as the match finds it."""
    facts = MatchFacts.build({}, _items(conn), _barcodes(conn, [invoice]), (), ())
    return {line.line_no: line_item(line, facts) for line in invoice.lines}


def _open_returns(conn: sqlite3.Connection, supplier_id: str) -> list[ReturnLine]:
    """The supplier's return lines with net value not yet cleared by a credit note, oldest first; reversed
    returns are not open (their reversal took the value back out of 220202)."""
    rows = _tuples(
        conn,
        "SELECT d.id, l.line_no, l.sku, l.gross_fen - l.tax_fen - COALESCE((SELECT SUM(c.net_fen)"
        "  FROM credit_clearances c WHERE c.return_id = d.id AND c.return_line_no = l.line_no), 0)"
        " FROM documents d JOIN document_lines l ON l.document_id = d.id"
        " WHERE d.type = 'supplier_return' AND d.counterparty = ?"
        " AND NOT EXISTS (SELECT 1 FROM documents v WHERE v.reverses_id = d.id)"
        " ORDER BY d.posted_at, d.id, l.line_no",
        (supplier_id,),
    )
    return [ReturnLine(int(r[0]), int(r[1]), str(r[2]), int(r[3])) for r in rows if r[3] > 0]


def _posted(conn: sqlite3.Connection, ctx: PostingContext, entry: PostEntry, invoice_no: str) -> int:
    posted = post(conn, entry, ctx)
    if not posted.ok or posted.document_id is None:
        raise InvoiceStateError(
            f"发票 {invoice_no} 入账被拒: {posted.message}",
            f"booking invoice {invoice_no} was refused: {posted.message_en}",
            invoice_no=invoice_no,
            posting_code=posted.code,
            posting_detail=posted.detail,
        )
    return posted.document_id


def _record_matched_skus(conn: sqlite3.Connection, invoice_id: int, result: MatchResult) -> None:
    conn.executemany(
        "UPDATE invoice_lines SET matched_sku = ? WHERE invoice_id = ? AND line_no = ?",
        [(m.sku, invoice_id, m.line_no) for m in result.lines],
    )


def _id_of(conn: sqlite3.Connection, invoice_no: str) -> int:
    return int(conn.execute("SELECT id FROM invoices WHERE invoice_no = ?", (invoice_no,)).fetchone()[0])


def _set_status(
    conn: sqlite3.Connection,
    ctx: PostingContext,
    invoice_id: int,
    status: str,
    actor: str,
    *,
    applies_to: int | None = None,
    document_id: int | None = None,
    tax_trusted: bool | None = None,
    note: str | None = None,
) -> None:
    before = conn.execute("SELECT status FROM invoices WHERE id = ?", (invoice_id,)).fetchone()[0]
    conn.execute(
        "UPDATE invoices SET status = ?, updated_at = ?, applies_to = COALESCE(?, applies_to),"
        " document_id = COALESCE(?, document_id), tax_trusted = COALESCE(?, tax_trusted) WHERE id = ?",
        (
            status,
            ctx.now.isoformat(),
            applies_to,
            document_id,
            None if tax_trusted is None else int(tax_trusted),
            invoice_id,
        ),
    )
    if before != status or document_id is not None:
        detail: dict[str, Any] = {"from": before, "to": status}
        if document_id is not None:
            detail["document_id"] = document_id
            detail["tax_trusted"] = bool(tax_trusted)
        if applies_to is not None:
            detail["applies_to"] = applies_to
        if note:
            detail["note"] = note
        _audit(conn, ctx, actor, "invoice.status", invoice_id, **detail)


def _open_exception(conn: sqlite3.Connection, ctx: PostingContext, invoice_id: int, reasons: list[Reason]) -> None:
    ts = ctx.now.isoformat()
    body = json.dumps([r.to_dict() for r in reasons], ensure_ascii=False)
    conn.execute(
        "INSERT INTO invoice_exceptions (invoice_id, opened_at, reasons, checked_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (invoice_id) DO UPDATE SET reasons = excluded.reasons, checked_at = excluded.checked_at,"
        " resolution = NULL, closed_at = NULL, closed_by = NULL",
        (invoice_id, ts, body, ts),
    )


def _close_exception(
    conn: sqlite3.Connection, ctx: PostingContext, invoice_id: int, resolution: str, actor: str
) -> None:
    conn.execute(
        "UPDATE invoice_exceptions SET resolution = ?, closed_at = ?, closed_by = ?, checked_at = ?"
        " WHERE invoice_id = ? AND closed_at IS NULL",
        (resolution, ctx.now.isoformat(), actor, ctx.now.isoformat(), invoice_id),
    )


def _audit(
    conn: sqlite3.Connection, ctx: PostingContext, actor: str, action: str, invoice_id: int, **detail: Any
) -> None:
    append_audit(
        conn,
        ts=ctx.now.isoformat(),
        actor=actor,
        device=None,
        action=action,
        object=f"invoice:{invoice_id}",
        detail=detail,
    )


# --- the exception queue ------------------------------------------------------------------------


def resolve_exception(conn: sqlite3.Connection, ctx: PostingContext, request: ResolutionRequest) -> dict[str, Any]:
    """Act on an exception: accept, approve (another user), request a credit note, reject, or recheck."""
    exc = conn.execute("SELECT * FROM invoice_exceptions WHERE id = ?", (request.exception_id,)).fetchone()
    if exc is None:
        raise UnknownInvoiceException(request.exception_id)
    invoice_id = int(exc["invoice_id"])
    row = conn.execute("SELECT * FROM invoices WHERE id = ?", (invoice_id,)).fetchone()
    status, kind = str(row["status"]), str(row["kind"])
    ts = ctx.now.isoformat()
    action = request.action
    note = request.note
    if note is not None and len(note) > 500:
        raise InvalidInvoice("说明最多 500 字", "the note is longer than 500 characters", field="note")
    if action in (Resolution.ACCEPT, Resolution.APPROVE, Resolution.RECHECK):
        check_not_held(conn, "invoice", invoice_id, row["invoice_no"])  # a rule's hold (docs/rules.md)

    def refuse(allowed: tuple[str, ...]) -> InvoiceStateError:
        return InvoiceStateError(
            f"发票 {row['invoice_no']} 当前状态为 {status}，不能{_ACTION_ZH[action]} (须为 {'、'.join(allowed)})",
            f"invoice {row['invoice_no']} is {status}; cannot {action.value} (must be {', '.join(allowed)})",
            invoice_id=invoice_id,
            status=status,
            action=action.value,
        )

    if action is Resolution.ACCEPT:
        if status not in ("exception", "awaiting_credit_note"):
            raise refuse(("exception", "awaiting_credit_note"))
        codes = {r["code"] for r in json.loads(exc["reasons"])}
        if "unknown_supplier" in codes:
            raise InvoiceStateError(
                "未知供应商的发票不能接受差异: 请先登记供应商的统一社会信用代码，再重新核对",
                "an unknown supplier's invoice cannot be accepted: record the supplier's credit code, then recheck",
                invoice_id=invoice_id,
            )
        conn.execute(
            "UPDATE invoice_exceptions SET accepted_by = ?, accepted_at = ?, accept_note = ?,"
            " approved_by = NULL, approved_at = NULL WHERE id = ?",
            (request.actor, ts, note, request.exception_id),
        )
        _set_status(conn, ctx, invoice_id, "pending_approval", request.actor, note=note)
    elif action is Resolution.APPROVE:
        if status != "pending_approval":
            raise refuse(("pending_approval",))
        if exc["accepted_by"] == request.actor:
            raise ApprovalError(
                f"不能审批自己接受的差异: 须由 {exc['accepted_by']} 以外的人审批",
                f"you cannot approve a difference you accepted yourself; someone other than {exc['accepted_by']} must",
                invoice_id=invoice_id,
                accepted_by=exc["accepted_by"],
            )
        conn.execute(
            "UPDATE invoice_exceptions SET approved_by = ?, approved_at = ? WHERE id = ?",
            (request.actor, ts, request.exception_id),
        )
        if kind == InvoiceKind.CREDIT_NOTE:
            _book_credit_for_posted(conn, ctx, invoice_id, request.actor)
        else:
            _settle(conn, ctx, invoice_id, request.actor, request.policy, trusted=False, via="approve", force=True)
    elif action is Resolution.REQUEST_CREDIT_NOTE:
        if status != "exception" or kind != InvoiceKind.INVOICE:
            raise refuse(("exception",))
        conn.execute(
            "UPDATE invoice_exceptions SET credit_requested_by = ?, credit_requested_at = ?, note = COALESCE(?, note)"
            " WHERE id = ?",
            (request.actor, ts, note, request.exception_id),
        )
        _set_status(conn, ctx, invoice_id, "awaiting_credit_note", request.actor, note=note)
    elif action is Resolution.REJECT:
        if status not in OPEN_STATES:
            raise refuse(OPEN_STATES)
        for credit in conn.execute(
            "SELECT id FROM invoices WHERE applies_to = ? AND status = 'netted'", (invoice_id,)
        ).fetchall():
            _set_status(conn, ctx, int(credit[0]), "rejected", request.actor, note="原发票已拒收")
        _set_status(conn, ctx, invoice_id, "rejected", request.actor, note=note)
        conn.execute(
            "UPDATE invoice_exceptions SET note = COALESCE(?, note) WHERE id = ?", (note, request.exception_id)
        )
        _close_exception(conn, ctx, invoice_id, "rejected", request.actor)
    elif action is Resolution.RECHECK:
        if status not in OPEN_STATES:
            raise refuse(OPEN_STATES)
        if kind == InvoiceKind.CREDIT_NOTE:
            raise InvoiceStateError(
                "红字发票的原发票已入账，重新核对不会改变结果: 请接受或拒收",
                "the credit note's original is booked; rechecking changes nothing: accept or reject it",
                invoice_id=invoice_id,
            )
        _settle(conn, ctx, invoice_id, request.actor, request.policy, trusted=True, via="recheck")
    _audit(conn, ctx, request.actor, f"invoice.{action.value}", invoice_id, exception=request.exception_id, note=note)
    return get_exception(conn, request.exception_id)


_ACTION_ZH = {
    Resolution.ACCEPT: "接受差异",
    Resolution.APPROVE: "审批",
    Resolution.REQUEST_CREDIT_NOTE: "要求红字发票",
    Resolution.REJECT: "拒收",
    Resolution.RECHECK: "重新核对",
}


def _book_credit_for_posted(conn: sqlite3.Connection, ctx: PostingContext, credit_id: int, actor: str) -> None:
    """An approved credit note whose original was already booked: a credit_note entry on its own, not
    tax-trusted. It clears no receipt value; it clears the supplier's open returns (`_post_credit`), and only
    what it credits beyond them goes to cost."""
    credit = load_invoice(conn, credit_id)
    supplier = conn.execute(
        "SELECT supplier_id FROM invoices WHERE invoice_no = ?", (credit.original_invoice_no,)
    ).fetchone()
    supplier_id = supplier[0] if supplier else None
    if supplier_id is None:
        raise InvoiceStateError("原发票没有供应商", "the original invoice has no supplier", invoice_id=credit_id)
    document_id = _post_credit(conn, ctx, credit_id, credit, supplier_id, actor, tax_trusted=False)
    _set_status(conn, ctx, credit_id, "accepted", actor, document_id=document_id, tax_trusted=False)
    _close_exception(conn, ctx, credit_id, "accepted", actor)


# --- reads --------------------------------------------------------------------------------------


def get_invoice(conn: sqlite3.Connection, invoice_id: int) -> dict[str, Any]:
    """The invoice with its lines, status, the reasons of its exception, what it cleared and its credit notes."""
    row = conn.execute("SELECT * FROM invoices WHERE id = ?", (invoice_id,)).fetchone()
    if row is None:
        raise UnknownInvoice(invoice_id)
    lines = conn.execute("SELECT * FROM invoice_lines WHERE invoice_id = ? ORDER BY line_no", (invoice_id,)).fetchall()
    body = invoice_to_dict(_invoice_from_rows(row, lines))
    for out, line in zip(body["lines"], lines, strict=True):
        out["matched_sku"] = line["matched_sku"]
    exc = conn.execute("SELECT * FROM invoice_exceptions WHERE invoice_id = ?", (invoice_id,)).fetchone()
    return {
        "id": invoice_id,
        **body,
        "status": row["status"],
        "source": row["source"],
        "supplier_id": _supplier_of(conn, row),
        "entered_at": row["entered_at"],
        "entered_by": row["entered_by"],
        "updated_at": row["updated_at"],
        "document_id": row["document_id"],
        "tax_trusted": bool(row["tax_trusted"]),
        "applies_to": row["applies_to"],
        "exception": _exception_dict(exc) if exc is not None else None,
        "clearances": [
            dict(r)
            for r in conn.execute(
                "SELECT invoice_line_no, receipt_id, receipt_line_no, po_id, qty_base, net_fen FROM invoice_clearances"
                " WHERE invoice_id = ? ORDER BY invoice_line_no, receipt_id, receipt_line_no",
                (invoice_id,),
            )
        ],
        "return_clearances": [
            dict(r)
            for r in conn.execute(
                "SELECT credit_line_no, return_id, return_line_no, net_fen FROM credit_clearances"
                " WHERE credit_id = ? ORDER BY credit_line_no, return_id, return_line_no",
                (invoice_id,),
            )
        ],
        "credit_notes": [
            {"id": r[0], "invoice_no": r[1], "status": r[2], "net_fen": r[3], "tax_fen": r[4]}
            for r in conn.execute(
                "SELECT id, invoice_no, status, net_fen, tax_fen FROM invoices WHERE applies_to = ? ORDER BY id",
                (invoice_id,),
            )
        ],
    }


def _supplier_of(conn: sqlite3.Connection, row: sqlite3.Row) -> str | None:
    if row["supplier_id"] is not None:
        return str(row["supplier_id"])
    found = conn.execute(
        "SELECT id FROM suppliers WHERE UPPER(TRIM(credit_code)) = ? ORDER BY active DESC, id LIMIT 1",
        (row["seller_credit_code"],),
    ).fetchone()
    return str(found[0]) if found else None


def _exception_dict(exc: sqlite3.Row) -> dict[str, Any]:
    record = dict(exc)
    record["reasons"] = json.loads(record["reasons"])
    record["open"] = record["closed_at"] is None
    return record


def get_exception(conn: sqlite3.Connection, exception_id: int) -> dict[str, Any]:
    exc = conn.execute("SELECT * FROM invoice_exceptions WHERE id = ?", (exception_id,)).fetchone()
    if exc is None:
        raise UnknownInvoiceException(exception_id)
    record = _exception_dict(exc)
    record["invoice"] = get_invoice(conn, int(exc["invoice_id"]))
    return record


def list_exceptions(
    conn: sqlite3.Connection, *, open_only: bool = True, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """The exception queue, oldest first: each with its invoice's number, seller, status, totals and reasons."""
    rows = conn.execute(
        "SELECT e.*, i.invoice_no, i.kind, i.status, i.seller_name, i.seller_credit_code, i.net_fen, i.tax_fen,"
        " i.entered_at FROM invoice_exceptions e JOIN invoices i ON i.id = e.invoice_id"
        f" {'WHERE e.closed_at IS NULL' if open_only else ''} ORDER BY e.id LIMIT ? OFFSET ?",
        (limit, offset),
    ).fetchall()
    return [_exception_dict(r) for r in rows]


def list_invoices(
    conn: sqlite3.Connection, *, status: str | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """Invoices, newest first (header fields only)."""
    clause, params = ("WHERE status = ?", [status]) if status else ("", [])
    rows = conn.execute(
        "SELECT id, invoice_no, kind, original_invoice_no, issue_date, seller_name, seller_credit_code, supplier_id,"
        " net_fen, tax_fen, source, status, entered_at, entered_by, document_id, tax_trusted, applies_to"
        f" FROM invoices {clause} ORDER BY id DESC LIMIT ? OFFSET ?",
        (*params, limit, offset),
    ).fetchall()
    return [{**dict(r), "tax_trusted": bool(r["tax_trusted"])} for r in rows]
