"""Posting (过账): one command -> document, lines, moves, balances, voucher, outbox row and audit row.

`post()` runs inside the caller's transaction, in a savepoint of its own, so a refused command leaves
nothing behind but the record of its refusal under its idempotency key. Posting a key again returns
the first result and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from edge.ledger.audit import append_audit
from edge.ledger.commands import (
    ENTRY_TYPES,
    RETURN_REASON_ALIASES,
    Command,
    DocType,
    Line,
    PostDocument,
    PostEntry,
    PostResult,
    ReturnReason,
    ReverseDocument,
    SettleTransfer,
    StockChange,
    WriteOffReason,
)
from edge.ledger.errors import (
    AlreadyReversed,
    DomainError,
    IdempotencyKeyReused,
    InvalidCommand,
    LedgerError,
    NotReversible,
    RefusedByRule,
    UnknownDocument,
    UnknownLocation,
)
from edge.ledger.masterdata import TRANSIT_LOCATION, ItemRef, ensure_lot, resolve_item
from edge.ledger.money import div_round_half_up, issue_cost, tax_included
from edge.ledger.stockbook import Move, StockBook
from edge.ledger.vouchers import RuleBook, VoucherLine, VoucherRuleError, VoucherRules, build_voucher

MAX_LINES = 1000
MAX_QTY = 10_000_000
MAX_PRICE_FEN = 1_000_000_000
MAX_TEXT = 500
MAX_EXTERNAL_REF = 200

DOC_PREFIX: dict[DocType, str] = {
    DocType.PURCHASE_ORDER: "PO",
    DocType.RECEIPT: "RC",
    DocType.SALE: "SA",
    DocType.CUSTOMER_RETURN: "CR",
    DocType.SUPPLIER_RETURN: "SR",
    DocType.TRANSFER_OUT: "TO",
    DocType.TRANSFER_IN: "TI",
    DocType.STOCKTAKE: "ST",
    DocType.WRITE_OFF: "WO",
    DocType.GIFT_OUT: "GO",
    DocType.SAMPLE_IN: "SI",
    DocType.REVERSAL: "RV",
    DocType.PURCHASE_INVOICE: "PI",
    DocType.CREDIT_NOTE: "CN",
    DocType.SUPPLIER_PAYMENT: "PY",
    DocType.LOSS_APPROVAL: "LA",
    DocType.TRANSFER_SETTLE: "TS",
}
RULE_REFUSAL = "refused: "  # a trigger's message that refuses a posting by a business rule (RefusedByRule)
MAX_AMOUNT_FEN = 10**13  # a hundred billion yuan: any larger figure is a typing error

# A guard sees a stock document before it is written (with its gross total in fen and the business date) and
# may refuse it by raising a DomainError; finance passes its compliance checks this way, so the ledger imports
# nothing of it.
Guard = Callable[[sqlite3.Connection, PostDocument, int, date], None]


@dataclass(frozen=True, slots=True)
class PostingContext:
    """What a posting needs from outside: the time, the business day, the rules and the store policy."""

    now: datetime
    business_date: date
    rules: RuleBook
    default_location: str = "floor"
    allow_negative: bool = False
    guards: tuple[Guard, ...] = ()

    def rules_in_effect(self, conn: sqlite3.Connection) -> VoucherRules:
        """The voucher rule version in effect on the business date (refused clearly when there is none)."""
        try:
            return self.rules.for_date(conn, self.business_date)
        except VoucherRuleError as exc:
            raise LedgerError(exc.zh, exc.en) from exc


@dataclass(frozen=True, slots=True)
class ResolvedLine:
    line_no: int
    item: ItemRef
    code: str
    qty: int  # in item.unit
    qty_base: int
    price_fen: int | None
    gross_fen: int
    tax_fen: int
    lot: str | None
    expiry: str | None
    location: str


def post(conn: sqlite3.Connection, command: Command, ctx: PostingContext) -> PostResult:
    """Post one command; see the module docstring. The caller owns the transaction."""
    if not isinstance(command.key, str) or not 1 <= len(command.key) <= 300:
        # Not recorded: a key that cannot identify a command cannot answer for one either.
        return _failure(
            str(command.key)[:300],
            _invalid("幂等键不能为空且不超过 300 字符", "idempotency key must be 1..300 characters", field="key"),
        )
    fingerprint = _fingerprint(command)
    previous = conn.execute("SELECT fingerprint, result FROM commands WHERE key = ?", (command.key,)).fetchone()
    if previous is not None:
        if previous[0] != fingerprint:
            return _failure(command.key, IdempotencyKeyReused(command.key))
        stored = json.loads(previous[1])
        return PostResult(
            key=command.key,
            ok=stored["ok"],
            code=stored["code"],
            message=stored["message"],
            message_en=stored["message_en"],
            document_id=stored["document_id"],
            doc_no=stored["doc_no"],
            detail=stored["detail"],
            replayed=True,
        )
    conn.execute("SAVEPOINT post")
    try:
        if isinstance(command, PostDocument):
            document_id, doc_no, skus = _post_document(conn, command, ctx)
        elif isinstance(command, PostEntry):
            document_id, doc_no, skus = _post_entry(conn, command, ctx)
        elif isinstance(command, SettleTransfer):
            document_id, doc_no, skus = _settle_transfer(conn, command, ctx)
        else:
            document_id, doc_no, skus = _reverse_document(conn, command, ctx)
        result = PostResult(
            key=command.key,
            ok=True,
            code="ok",
            message=f"已过账 {doc_no}",
            message_en=f"posted {doc_no}",
            document_id=document_id,
            doc_no=doc_no,
            stock=tuple(StockChange(sku, on_hand_by_location(conn, sku)) for sku in skus),
        )
        _record(conn, command.key, fingerprint, result, ctx)
        conn.execute("RELEASE post")
        return result
    except OverflowError:
        conn.execute("ROLLBACK TO post")
        result = _failure(
            command.key,
            _invalid("金额或数量超出可记账范围", "amounts or quantities are too large to book", field="lines"),
        )
        _record(conn, command.key, fingerprint, result, ctx)
        conn.execute("RELEASE post")
        return result
    except sqlite3.IntegrityError as exc:
        if not str(exc).startswith(RULE_REFUSAL):
            conn.execute("ROLLBACK TO post")
            conn.execute("RELEASE post")
            raise
        conn.execute("ROLLBACK TO post")
        result = _failure(command.key, RefusedByRule(str(exc).removeprefix(RULE_REFUSAL)))
        _record(conn, command.key, fingerprint, result, ctx)
        conn.execute("RELEASE post")
        return result
    except DomainError as err:
        conn.execute("ROLLBACK TO post")
        result = _failure(command.key, err)
        _record(conn, command.key, fingerprint, result, ctx)
        conn.execute("RELEASE post")
        return result
    except BaseException:
        conn.execute("ROLLBACK TO post")
        conn.execute("RELEASE post")
        raise


def on_hand_by_location(conn: sqlite3.Connection, sku: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT location, SUM(qty) FROM balances WHERE sku = ? GROUP BY location ORDER BY location", (sku,)
    ).fetchall()
    return {row[0]: int(row[1]) for row in rows}


def _failure(key: str, err: DomainError) -> PostResult:
    return PostResult(
        key=key, ok=False, code=err.code, message=err.message, message_en=err.message_en, detail=err.detail
    )


def _fingerprint(command: Command) -> str:
    # The repr of the frozen command names every field and value; it is stable for the same command.
    return hashlib.sha256(repr(command).encode()).hexdigest()


def _record(conn: sqlite3.Connection, key: str, fingerprint: str, result: PostResult, ctx: PostingContext) -> None:
    conn.execute(
        "INSERT INTO commands (key, fingerprint, ok, document_id, code, result, ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            key,
            fingerprint,
            int(result.ok),
            result.document_id,
            result.code,
            json.dumps(result.to_dict(), ensure_ascii=False),
            ctx.now.isoformat(),
        ),
    )


# --- validation -------------------------------------------------------------------------------


def _invalid(message: str, message_en: str, **detail: Any) -> InvalidCommand:
    return InvalidCommand(message, message_en, **detail)


def _check_text(name: str, value: str | None, limit: int = MAX_TEXT) -> None:
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise _invalid(f"{name} 过长或无效 (最多 {limit} 字)", f"{name} is invalid or longer than {limit}", field=name)


def _check_command(cmd: PostDocument) -> None:
    if not cmd.key or len(cmd.key) > 300:
        raise _invalid("幂等键不能为空且不超过 300 字符", "idempotency key must be 1..300 characters", field="key")
    if not isinstance(cmd.type, DocType) or cmd.type is DocType.REVERSAL or cmd.type in ENTRY_TYPES:
        raise _invalid(f"不能直接过账此单据类型: {cmd.type}", f"cannot post document type {cmd.type}", field="type")
    if not cmd.lines:
        raise _invalid("单据至少需要一行", "a document needs at least one line", field="lines")
    if len(cmd.lines) > MAX_LINES:
        raise _invalid(f"单据最多 {MAX_LINES} 行", f"a document has at most {MAX_LINES} lines", field="lines")
    for name in ("reason_text", "note", "counterparty", "payment", "actor", "device"):
        _check_text(name, getattr(cmd, name))
    _check_text("external_ref", cmd.external_ref, MAX_EXTERNAL_REF)
    if cmd.external_ref is not None and not cmd.external_ref.strip():
        raise _invalid("外部单据引用不能为空白", "external_ref must not be blank", field="external_ref")
    minimum = 0 if cmd.type is DocType.STOCKTAKE else 1
    for i, line in enumerate(cmd.lines, start=1):
        if not isinstance(line.qty, int) or isinstance(line.qty, bool) or not minimum <= line.qty <= MAX_QTY:
            raise _invalid(
                f"第 {i} 行数量无效: {line.qty} (应为 {minimum}..{MAX_QTY} 的整数)",
                f"line {i}: quantity {line.qty!r} must be an integer {minimum}..{MAX_QTY}",
                line=i,
                field="qty",
            )
        if line.price_fen is not None and (
            not isinstance(line.price_fen, int) or not 0 <= line.price_fen <= MAX_PRICE_FEN
        ):
            raise _invalid(
                f"第 {i} 行单价无效: {line.price_fen} (单位: 分)",
                f"line {i}: price {line.price_fen!r} must be 0..{MAX_PRICE_FEN} fen",
                line=i,
                field="price_fen",
            )
        if line.amount_fen is not None:
            _check_amount(cmd.type, i, line.amount_fen)
        if not line.code or len(line.code) > 64:
            raise _invalid(f"第 {i} 行商品编码无效", f"line {i}: item code must be 1..64 characters", line=i)
        if line.lot is not None and not 1 <= len(line.lot) <= 64:
            raise _invalid(f"第 {i} 行批号无效", f"line {i}: lot must be 1..64 characters", line=i)


# Document types whose lines carry a price, so that a line's total as charged (amount_fen) means something.
_AMOUNT_TYPES = frozenset(
    {
        DocType.PURCHASE_ORDER,
        DocType.RECEIPT,
        DocType.SALE,
        DocType.CUSTOMER_RETURN,
        DocType.SUPPLIER_RETURN,
        DocType.GIFT_OUT,
        DocType.SAMPLE_IN,
        DocType.TRANSFER_IN,  # a transfer in from another store: the line's value at the sending store's cost
    }
)


def _check_amount(doc_type: DocType, i: int, amount: object) -> None:
    if doc_type not in _AMOUNT_TYPES:
        raise _invalid(
            f"第 {i} 行: {doc_type.value} 单据的行不能指定金额 (amount_fen)",
            f"line {i}: a {doc_type.value} line cannot carry amount_fen",
            line=i,
            field="amount_fen",
        )
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 <= amount <= MAX_AMOUNT_FEN:
        raise _invalid(
            f"第 {i} 行金额无效: {amount!r} (单位: 分)",
            f"line {i}: amount {amount!r} must be 0..{MAX_AMOUNT_FEN} fen",
            line=i,
            field="amount_fen",
        )


def _reason(cmd: PostDocument) -> str | None:
    if cmd.type is DocType.CUSTOMER_RETURN:
        code = RETURN_REASON_ALIASES.get(cmd.reason or "", cmd.reason)
        allowed = [r.value for r in ReturnReason]
    elif cmd.type is DocType.WRITE_OFF:
        code = cmd.reason
        allowed = [r.value for r in WriteOffReason]
    else:
        return cmd.reason
    if code not in allowed:
        raise _invalid(
            f"原因代码无效: {cmd.reason!r}，允许: {', '.join(allowed)}",
            f"invalid reason {cmd.reason!r}; allowed: {', '.join(allowed)}",
            field="reason",
            allowed=allowed,
        )
    if code == "other" and not (cmd.reason_text or "").strip():
        raise _invalid("原因为“其他”时须填写说明", "reason 'other' needs reason_text", field="reason_text")
    return code


def _location(conn: sqlite3.Connection, code: str, *, allow_transit: bool = False) -> str:
    row = conn.execute("SELECT kind FROM locations WHERE code = ?", (code,)).fetchone()
    if row is None:
        raise UnknownLocation(code)
    if row[0] == "transit" and not allow_transit:
        raise _invalid(
            f"在途库位 {code} 只能由调拨单使用",
            f"in-transit location {code} is used by transfers only",
            location=code,
        )
    return code


def _counterparty(conn: sqlite3.Connection, cmd: PostDocument) -> None:
    if cmd.counterparty is None:
        if cmd.type is DocType.PURCHASE_ORDER:
            raise _invalid("采购订单须指定供应商", "a purchase order needs a supplier", field="counterparty")
        return
    if cmd.type in (DocType.PURCHASE_ORDER, DocType.RECEIPT, DocType.SUPPLIER_RETURN, DocType.SAMPLE_IN):
        table, what, what_en = "suppliers", "供应商", "supplier"
    elif cmd.type in (DocType.TRANSFER_OUT, DocType.TRANSFER_IN):
        table, what, what_en = "stores", "门店", "store"
    else:
        return
    if conn.execute(f"SELECT 1 FROM {table} WHERE id = ?", (cmd.counterparty,)).fetchone() is None:
        raise _invalid(
            f"未知{what}: {cmd.counterparty}", f"unknown {what_en}: {cmd.counterparty}", field="counterparty"
        )


def _referenced(conn: sqlite3.Connection, ref_id: int | None, expected: DocType) -> sqlite3.Row | None:
    if ref_id is None:
        return None
    row = conn.execute("SELECT * FROM documents WHERE id = ?", (ref_id,)).fetchone()
    if row is None:
        raise UnknownDocument(ref_id)
    if row["type"] != expected:
        raise _invalid(
            f"引用单据 {ref_id} 应为 {expected.value}",
            f"referenced document {ref_id} must be a {expected.value}",
        )
    if conn.execute("SELECT 1 FROM documents WHERE reverses_id = ?", (ref_id,)).fetchone():
        raise _invalid(f"引用单据 {ref_id} 已冲销", f"referenced document {ref_id} has been reversed")
    referenced: sqlite3.Row = row
    return referenced


def _resolve_lines(conn: sqlite3.Connection, cmd: PostDocument, ctx: PostingContext) -> list[ResolvedLine]:
    if cmd.type is DocType.TRANSFER_IN:
        default_location = cmd.to_location or cmd.location or ctx.default_location
    else:
        default_location = cmd.location or ctx.default_location
    resolved: list[ResolvedLine] = []
    for i, line in enumerate(cmd.lines, start=1):
        item = resolve_item(conn, line.code, line.unit)
        qty_base = line.qty * item.factor
        if qty_base > MAX_QTY * 1000:
            raise _invalid(f"第 {i} 行数量过大", f"line {i}: quantity too large", line=i)
        price = _line_price(cmd.type, line, item)
        gross = line.qty * price if price is not None else 0
        if line.amount_fen is not None:
            gross = line.amount_fen  # the total as charged (a scale label's amount), not price × qty
        tax = tax_included(gross, item.vat_rate_bp) if cmd.type in _TAXED else 0
        location = line.location or default_location
        resolved.append(
            ResolvedLine(
                line_no=i,
                item=item,
                code=line.code,
                qty=line.qty,
                qty_base=qty_base,
                price_fen=price,
                gross_fen=gross,
                tax_fen=tax,
                lot=line.lot,
                expiry=line.expiry.isoformat() if line.expiry else None,
                location=location,
            )
        )
    return resolved


_TAXED = {
    DocType.PURCHASE_ORDER,
    DocType.RECEIPT,
    DocType.SALE,
    DocType.CUSTOMER_RETURN,
    DocType.SUPPLIER_RETURN,
    DocType.GIFT_OUT,  # the deemed sale's output VAT
}


def _line_price(doc_type: DocType, line: Line, item: ItemRef) -> int | None:
    if line.price_fen is not None:
        return line.price_fen
    if doc_type in (DocType.SALE, DocType.CUSTOMER_RETURN, DocType.GIFT_OUT):
        return item.price_fen * item.factor
    if doc_type in (DocType.PURCHASE_ORDER, DocType.RECEIPT, DocType.SUPPLIER_RETURN, DocType.SAMPLE_IN):
        return item.cost_fen * item.factor
    return None


# --- documents --------------------------------------------------------------------------------


def _post_document(conn: sqlite3.Connection, cmd: PostDocument, ctx: PostingContext) -> tuple[int, str, list[str]]:
    _check_command(cmd)
    reason = _reason(cmd)
    _counterparty(conn, cmd)
    rules = ctx.rules_in_effect(conn)
    _check_payment(rules, cmd.payment)
    # The header's reference and locations are stored with foreign keys: refuse them here, not by an IntegrityError.
    if (
        cmd.ref_id is not None
        and conn.execute("SELECT 1 FROM documents WHERE id = ?", (cmd.ref_id,)).fetchone() is None
    ):
        raise UnknownDocument(cmd.ref_id)
    for code in (cmd.location, cmd.to_location):
        if code is not None:
            _location(conn, code)
    lines = _resolve_lines(conn, cmd, ctx)
    for guard in ctx.guards:
        guard(conn, cmd, sum(line.gross_fen for line in lines), ctx.business_date)
    book = StockBook(conn, business_date=ctx.business_date, allow_negative=ctx.allow_negative)
    handler = _HANDLERS[cmd.type]
    amounts = handler(conn, cmd, ctx, lines, book)
    amounts["net"] = sum(line.gross_fen - line.tax_fen for line in lines)
    amounts["tax"] = sum(line.tax_fen for line in lines)
    facts = {"reason": reason or "", "loss_kind": rules.loss_kind(reason), "payment": cmd.payment or ""}
    voucher = build_voucher(rules, cmd.type.value, amounts, facts, payment=cmd.payment)
    header = _header(
        conn,
        ctx,
        cmd.type,
        cmd.key,
        cmd.actor,
        cmd.device,
        location=cmd.location,
        to_location=cmd.to_location,
        counterparty=cmd.counterparty,
        ref_id=cmd.ref_id,
        reason=reason,
        reason_text=cmd.reason_text,
        note=cmd.note,
        payment=cmd.payment,
        external_ref=cmd.external_ref,
        gross_fen=sum(line.gross_fen for line in lines),
        tax_fen=amounts["tax"],
        cost_fen=amounts.get("cost", 0) + amounts.get("gain", 0) + amounts.get("loss", 0),
    )
    _write(conn, ctx, header, lines, book.moves, voucher, rules.version)
    return header["id"], header["doc_no"], sorted({m.sku for m in book.moves})


def _header(
    conn: sqlite3.Connection,
    ctx: PostingContext,
    doc_type: DocType,
    key: str,
    actor: str,
    device: str | None,
    **fields: Any,
) -> dict[str, Any]:
    """A new document's header row: its id and number, when and by whom, and the given fields (else NULL)."""
    document_id = _next_id(conn, "documents")
    header: dict[str, Any] = {
        "id": document_id,
        "doc_no": f"{DOC_PREFIX[doc_type]}{ctx.business_date:%Y%m%d}-{document_id:06d}",
        "type": doc_type.value,
        "command_key": key,
        "posted_at": ctx.now.isoformat(),
        "business_date": ctx.business_date.isoformat(),
        "actor": actor,
        "device": device,
        **dict.fromkeys(_HEADER_FIELDS),
        "gross_fen": 0,
        "tax_fen": 0,
        "cost_fen": 0,
    }
    unknown = set(fields) - set(header)
    assert not unknown, f"unknown document fields {unknown}"
    header.update(fields)
    return header


_HEADER_FIELDS = (
    "location",
    "to_location",
    "counterparty",
    "ref_id",
    "reverses_id",
    "reason",
    "reason_text",
    "note",
    "payment",
    "external_ref",
)


def _check_payment(rules: VoucherRules, payment: str | None) -> None:
    if payment is not None and payment not in rules.payment_accounts:
        allowed = sorted(rules.payment_accounts)
        raise _invalid(
            f"付款方式无效: {payment}，允许: {', '.join(allowed)}",
            f"invalid payment {payment!r}; allowed: {', '.join(allowed)}",
            field="payment",
            allowed=allowed,
        )


# --- finance entries --------------------------------------------------------------------------

# The amounts each entry type takes; any other name is refused.
ENTRY_AMOUNTS: dict[DocType, frozenset[str]] = {
    DocType.PURCHASE_INVOICE: frozenset({"estimate", "net", "tax"}),
    DocType.CREDIT_NOTE: frozenset({"estimate", "net", "tax"}),
    DocType.SUPPLIER_PAYMENT: frozenset({"paid"}),
    DocType.LOSS_APPROVAL: frozenset({"loss", "gain"}),
}


def _post_entry(conn: sqlite3.Connection, cmd: PostEntry, ctx: PostingContext) -> tuple[int, str, list[str]]:
    if not cmd.key or len(cmd.key) > 300:
        raise _invalid("幂等键不能为空且不超过 300 字符", "idempotency key must be 1..300 characters", field="key")
    if cmd.type not in ENTRY_TYPES:
        raise _invalid(f"不是财务单据类型: {cmd.type}", f"not a finance entry type: {cmd.type}", field="type")
    for name in ("note", "counterparty", "payment", "actor", "device"):
        _check_text(name, getattr(cmd, name))
    allowed = ENTRY_AMOUNTS[cmd.type]
    amounts: dict[str, int] = {}
    for name, value in cmd.amounts:
        if name not in allowed or name in amounts:
            raise _invalid(
                f"{cmd.type.value} 的金额项无效或重复: {name}，允许: {', '.join(sorted(allowed))}",
                f"{cmd.type.value}: amount {name!r} is unknown or repeated; allowed: {', '.join(sorted(allowed))}",
                field="amounts",
            )
        if not isinstance(value, int) or isinstance(value, bool) or not -MAX_AMOUNT_FEN <= value <= MAX_AMOUNT_FEN:
            raise _invalid(f"金额无效: {name}={value!r} (单位: 分)", f"amount {name}={value!r} is not valid fen")
        amounts[name] = value
    if not any(amounts.values()):
        raise _invalid("金额不能全为零", "an entry needs a non-zero amount", field="amounts")
    if cmd.counterparty is not None and cmd.type is not DocType.LOSS_APPROVAL:
        if conn.execute("SELECT 1 FROM suppliers WHERE id = ?", (cmd.counterparty,)).fetchone() is None:
            raise _invalid(
                f"未知供应商: {cmd.counterparty}", f"unknown supplier: {cmd.counterparty}", field="counterparty"
            )
    elif cmd.type is not DocType.LOSS_APPROVAL:
        raise _invalid("须指定供应商", "an entry for a supplier needs the supplier id", field="counterparty")
    if (
        cmd.ref_id is not None
        and conn.execute("SELECT 1 FROM documents WHERE id = ?", (cmd.ref_id,)).fetchone() is None
    ):
        raise UnknownDocument(cmd.ref_id)
    rules = ctx.rules_in_effect(conn)
    _check_payment(rules, cmd.payment)
    facts = {**dict(cmd.facts), "payment": cmd.payment or ""}
    voucher = build_voucher(rules, cmd.type.value, amounts, facts, payment=cmd.payment, default_payment="bank")
    header = _header(
        conn,
        ctx,
        cmd.type,
        cmd.key,
        cmd.actor,
        cmd.device,
        counterparty=cmd.counterparty,
        ref_id=cmd.ref_id,
        note=cmd.note,
        payment=cmd.payment,
        gross_fen=amounts.get("net", 0) + amounts.get("tax", 0) or amounts.get("paid", 0),
        tax_fen=amounts.get("tax", 0),
    )
    _write(conn, ctx, header, [], [], voucher, rules.version, tax_trusted=cmd.tax_trusted)
    return header["id"], header["doc_no"], []


Handler = Callable[[sqlite3.Connection, PostDocument, PostingContext, list[ResolvedLine], StockBook], dict[str, int]]


def _no_stock(
    conn: sqlite3.Connection,
    cmd: PostDocument,
    ctx: PostingContext,
    lines: list[ResolvedLine],
    book: StockBook,
) -> dict[str, int]:
    for line in lines:
        _location(conn, line.location)
    return {}


def _receipt(
    conn: sqlite3.Connection,
    cmd: PostDocument,
    ctx: PostingContext,
    lines: list[ResolvedLine],
    book: StockBook,
) -> dict[str, int]:
    _referenced(conn, cmd.ref_id, DocType.PURCHASE_ORDER)
    for line in lines:
        location = _location(conn, line.location)
        lot = _receipt_lot(conn, line, ctx)
        book.receive(line.line_no, line.item.sku, location, lot, line.qty_base, line.gross_fen - line.tax_fen)
    return {"cost": sum(line.gross_fen - line.tax_fen for line in lines)}


def _receipt_lot(conn: sqlite3.Connection, line: ResolvedLine, ctx: PostingContext) -> str:
    item = line.item
    if line.lot is None and line.expiry is None and item.shelf_life_days is None:
        return ""
    expiry = line.expiry
    if expiry is None and item.shelf_life_days is not None:
        expiry = (ctx.business_date + timedelta(days=item.shelf_life_days)).isoformat()
    lot = line.lot or (expiry or ctx.business_date.isoformat()).replace("-", "")
    recorded = ensure_lot(conn, item.sku, lot, date.fromisoformat(expiry) if expiry else None)
    if line.expiry is not None and recorded != line.expiry:
        raise _invalid(
            f"第 {line.line_no} 行: 批次 {lot} 已登记有效期 {recorded}，与 {line.expiry} 不符",
            f"line {line.line_no}: lot {lot} is recorded with expiry {recorded}, not {line.expiry}",
            line=line.line_no,
            lot=lot,
        )
    return lot


def _sample_in(
    conn: sqlite3.Connection,
    cmd: PostDocument,
    ctx: PostingContext,
    lines: list[ResolvedLine],
    book: StockBook,
) -> dict[str, int]:
    """Samples received free: into stock at their stated value (no invoice, so no input VAT)."""
    for line in lines:
        location = _location(conn, line.location)
        lot = _receipt_lot(conn, line, ctx)
        book.receive(line.line_no, line.item.sku, location, lot, line.qty_base, line.gross_fen)
    return {"cost": sum(line.gross_fen for line in lines)}


def _issue_line(
    book: StockBook, line: ResolvedLine, location: str, *, sellable_only: bool
) -> list[tuple[str, int, int]]:
    """Issue a line from one location: its lot if given, else first-expiry-first-out."""
    sku = line.item.sku
    if line.lot is not None:
        if sellable_only:
            book.check_lot_sellable(sku, line.lot)
        parts = [(line.lot, line.qty_base)]
    else:
        parts = book.allocate(sku, location, line.qty_base, sellable_only=sellable_only)
    return [(lot, qty, book.issue(line.line_no, sku, location, lot, qty)) for lot, qty in parts]


def _outbound(sellable_only: bool) -> Handler:
    def handler(
        conn: sqlite3.Connection,
        cmd: PostDocument,
        ctx: PostingContext,
        lines: list[ResolvedLine],
        book: StockBook,
    ) -> dict[str, int]:
        cost = input_tax_out = 0
        for line in lines:
            location = _location(conn, line.location)
            value = sum(value for _, _, value in _issue_line(book, line, location, sellable_only=sellable_only))
            cost += value
            # 进项税额转出 on goods lost: the line's cost at the item's VAT rate, rounded half-up once per line.
            input_tax_out += div_round_half_up(value * line.item.vat_rate_bp, 10_000)
        return {"cost": cost, "input_tax_out": input_tax_out}

    return handler


def _customer_return(
    conn: sqlite3.Connection,
    cmd: PostDocument,
    ctx: PostingContext,
    lines: list[ResolvedLine],
    book: StockBook,
) -> dict[str, int]:
    sale = _referenced(conn, cmd.ref_id, DocType.SALE)
    cost = 0
    returned_here: dict[str, tuple[int, int]] = {}  # by this document's earlier lines
    for line in lines:
        location = _location(conn, line.location)
        sku = line.item.sku
        lot = line.lot or ""
        if sale is not None:
            sold = conn.execute(
                "SELECT -SUM(qty), -SUM(value_fen), MIN(lot) FROM stock_moves WHERE document_id = ? AND sku = ?",
                (sale["id"], sku),
            ).fetchone()
            standing = conn.execute(
                "SELECT COALESCE(SUM(m.qty), 0), COALESCE(SUM(m.value_fen), 0) FROM stock_moves m"
                " JOIN documents d ON d.id = m.document_id"
                " WHERE d.type = 'customer_return' AND d.ref_id = ? AND m.sku = ?"
                " AND NOT EXISTS (SELECT 1 FROM documents r WHERE r.reverses_id = d.id)",
                (sale["id"], sku),
            ).fetchone()
            here_qty, here_value = returned_here.get(sku, (0, 0))
            returned = int(standing[0]) + here_qty
            returned_value = int(standing[1]) + here_value
            sold_qty = int(sold[0] or 0)
            if line.qty_base > sold_qty - returned:
                raise _invalid(
                    f"第 {line.line_no} 行: 退货数量 {line.qty_base} 超过原销售单可退数量 {sold_qty - returned}",
                    f"line {line.line_no}: return of {line.qty_base} exceeds {sold_qty - returned} returnable",
                    line=line.line_no,
                    item=sku,
                )
            # At the sale's cost, rounded half-up; returning all that is left takes all the cost that is left.
            value = issue_cost(int(sold[1]) - returned_value, line.qty_base, sold_qty - returned)
            returned_here[sku] = (here_qty + line.qty_base, here_value + value)
            lot = line.lot or sold[2] or ""
        else:
            value = book.unit_value(sku, location, lot, line.qty_base, line.item.cost_fen, line.item.vat_rate_bp)
        book.receive(line.line_no, sku, location, lot, line.qty_base, value)
        cost += value
    return {"cost": cost}


def _transfer_out(
    conn: sqlite3.Connection,
    cmd: PostDocument,
    ctx: PostingContext,
    lines: list[ResolvedLine],
    book: StockBook,
) -> dict[str, int]:
    transit = _location(conn, TRANSIT_LOCATION, allow_transit=True)
    cost = 0
    for line in lines:
        location = _location(conn, line.location)
        for lot, qty, value in _issue_line(book, line, location, sellable_only=True):
            book.receive(line.line_no, line.item.sku, transit, lot, qty, value)
            cost += value
    return {"cost": cost}


def _transfer_in(
    conn: sqlite3.Connection,
    cmd: PostDocument,
    ctx: PostingContext,
    lines: list[ResolvedLine],
    book: StockBook,
) -> dict[str, int]:
    origin = _referenced(conn, cmd.ref_id, DocType.TRANSFER_OUT)
    if cmd.external_ref is not None:
        if origin is not None:
            raise _invalid(
                "调拨入库不能同时引用本店调拨出库单和外部单据",
                "a transfer in names either this store's transfer out or another store's, not both",
                field="external_ref",
            )
        _check_external_ref_unused(conn, DocType.TRANSFER_IN, cmd.external_ref)
    cost = 0
    for line in lines:
        destination = _location(conn, line.location)
        sku = line.item.sku
        if origin is not None:
            transit = _location(conn, TRANSIT_LOCATION, allow_transit=True)
            for lot, qty, value in _issue_line(book, line, transit, sellable_only=False):
                book.receive(line.line_no, sku, destination, lot, qty, value)
                cost += value
        else:
            lot = _receipt_lot(conn, line, ctx) if (line.lot or line.expiry) else ""
            if cmd.lines[line.line_no - 1].amount_fen is not None:
                value = line.gross_fen  # the line's value as shipped, pro rata (no per-unit rounding)
            elif line.price_fen is not None:
                value = line.qty * line.price_fen
            else:
                value = book.unit_value(sku, destination, lot, line.qty_base, line.item.cost_fen, line.item.vat_rate_bp)
            book.receive(line.line_no, sku, destination, lot, line.qty_base, value)
            cost += value
    return {"cost": cost}


def _stocktake(
    conn: sqlite3.Connection,
    cmd: PostDocument,
    ctx: PostingContext,
    lines: list[ResolvedLine],
    book: StockBook,
) -> dict[str, int]:
    seen: set[tuple[str, str, str | None]] = set()
    gain = loss = 0
    for line in lines:
        location = _location(conn, line.location)
        sku = line.item.sku
        key = (sku, location, line.lot)
        if key in seen:
            raise _invalid(
                f"第 {line.line_no} 行: 同一商品、库位、批次重复盘点",
                f"line {line.line_no}: the same item, location and lot is counted twice",
                line=line.line_no,
            )
        seen.add(key)
        if line.lot is not None:
            book_qty = book.balance(sku, location, line.lot)[0]
            lots = [line.lot]
        else:
            stock = book.lots(sku, location)
            book_qty = sum(s.qty for s in stock)
            lots = [s.lot for s in stock]
        diff = line.qty_base - book_qty
        if diff > 0:
            lot = line.lot if line.lot is not None else (lots[-1] if lots else "")
            value = book.unit_value(sku, location, lot, diff, line.item.cost_fen, line.item.vat_rate_bp)
            book.receive(line.line_no, sku, location, lot, diff, value)
            gain += value
        elif diff < 0:
            if line.lot is not None:
                loss += book.issue(line.line_no, sku, location, line.lot, -diff)
            else:
                for lot, qty in book.allocate(sku, location, -diff, sellable_only=False):
                    loss += book.issue(line.line_no, sku, location, lot, qty)
    return {"gain": gain, "loss": loss}


_HANDLERS: dict[DocType, Handler] = {
    DocType.PURCHASE_ORDER: _no_stock,
    DocType.RECEIPT: _receipt,
    DocType.SALE: _outbound(sellable_only=True),  # expired lots are never sold
    DocType.CUSTOMER_RETURN: _customer_return,
    DocType.SUPPLIER_RETURN: _outbound(sellable_only=False),  # expired goods go back first
    DocType.TRANSFER_OUT: _transfer_out,
    DocType.TRANSFER_IN: _transfer_in,
    DocType.STOCKTAKE: _stocktake,
    DocType.WRITE_OFF: _outbound(sellable_only=False),  # expired goods are written off first
    DocType.GIFT_OUT: _outbound(sellable_only=True),  # expired goods are not given away
    DocType.SAMPLE_IN: _sample_in,
}


# --- transfers between stores (docs/transfers.md) ---------------------------------------------


def transfer_share(shipped_value: int, shipped_qty: int, received_qty: int) -> int:
    """The value of `received_qty` of a shipped part at the sender's cost: pro rata of the part's value,
    rounded half-up once (an overage is valued at the same rate)."""
    if shipped_qty <= 0:
        raise ValueError("shipped_qty must be positive")
    return div_round_half_up(shipped_value * received_qty, shipped_qty)


def shipped_parts(conn: sqlite3.Connection, transfer_out_id: int) -> list[tuple[str, str, int, int]]:
    """A transfer out's goods as they went into transit, by item and lot: (sku, lot, qty, value_fen)."""
    return [
        (str(r[0]), str(r[1]), int(r[2]), int(r[3]))
        for r in conn.execute(
            "SELECT sku, lot, SUM(qty), SUM(value_fen) FROM stock_moves WHERE document_id = ? AND location = ?"
            " AND qty > 0 GROUP BY sku, lot ORDER BY MIN(id)",
            (transfer_out_id, TRANSIT_LOCATION),
        )
    ]


def _check_external_ref_unused(conn: sqlite3.Connection, doc_type: DocType, external_ref: str) -> None:
    row = conn.execute(
        "SELECT doc_no FROM documents d WHERE type = ? AND external_ref = ?"
        " AND NOT EXISTS (SELECT 1 FROM documents r WHERE r.reverses_id = d.id)",
        (doc_type.value, external_ref),
    ).fetchone()
    if row is not None:
        raise _invalid(
            f"外部单据 {external_ref} 已由 {row[0]} 处理",
            f"external document {external_ref} is already booked by {row[0]}",
            field="external_ref",
            document=row[0],
        )


def _settle_transfer(conn: sqlite3.Connection, cmd: SettleTransfer, ctx: PostingContext) -> tuple[int, str, list[str]]:
    """Take a transfer out's goods out of transit; the shortage (overage) at this store's cost goes to 1901."""
    if not cmd.key or len(cmd.key) > 300:
        raise _invalid("幂等键不能为空且不超过 300 字符", "idempotency key must be 1..300 characters", field="key")
    for name in ("note", "actor", "device"):
        _check_text(name, getattr(cmd, name))
    _check_text("external_ref", cmd.external_ref, MAX_EXTERNAL_REF)
    origin = _referenced(conn, cmd.transfer_out_id, DocType.TRANSFER_OUT)
    assert origin is not None
    settled = conn.execute(
        "SELECT doc_no FROM documents d WHERE type = ? AND ref_id = ?"
        " AND NOT EXISTS (SELECT 1 FROM documents r WHERE r.reverses_id = d.id)",
        (DocType.TRANSFER_SETTLE.value, cmd.transfer_out_id),
    ).fetchone()
    if settled is not None:
        raise _invalid(
            f"调拨出库单 {origin['doc_no']} 已由 {settled[0]} 结算",
            f"transfer out {origin['doc_no']} is settled already by {settled[0]}",
            document=settled[0],
        )
    parts = shipped_parts(conn, cmd.transfer_out_id)
    received: dict[tuple[str, str], int] = {}
    for part in cmd.received:
        key = (part.sku, part.lot)
        if key in received or not isinstance(part.received_qty, int) or not 0 <= part.received_qty <= MAX_QTY * 1000:
            raise _invalid(
                f"收货数量无效或重复: {part.sku} 批次 {part.lot!r}",
                f"received quantity invalid or repeated: {part.sku} lot {part.lot!r}",
                item=part.sku,
                lot=part.lot,
            )
        received[key] = part.received_qty
    unknown = sorted(set(received) - {(p[0], p[1]) for p in parts})
    if unknown:
        raise _invalid(
            f"调拨出库单 {origin['doc_no']} 没有发出 {unknown[0][0]} 批次 {unknown[0][1]!r}",
            f"transfer out {origin['doc_no']} did not ship {unknown[0][0]} lot {unknown[0][1]!r}",
            item=unknown[0][0],
            lot=unknown[0][1],
        )
    rules = ctx.rules_in_effect(conn)
    if DocType.TRANSFER_SETTLE.value not in rules.documents:
        raise LedgerError(
            f"凭证规则版本 {rules.version} 没有调拨结算 (transfer_settle) 规则，请安装新版本",
            f"voucher rule version {rules.version} has no rule for transfer_settle; install a newer version",
        )
    book = StockBook(conn, business_date=ctx.business_date, allow_negative=ctx.allow_negative)
    transit = _location(conn, TRANSIT_LOCATION, allow_transit=True)
    shipped_value = received_value = 0
    lines: list[ResolvedLine] = []
    for line_no, (sku, lot, qty, value) in enumerate(parts, start=1):
        # Out of transit at the value it went in with, unless the balance (shared with other transfers) cannot give it.
        on_hand, on_value = book.balance(sku, transit, lot)
        keep = qty < on_hand and on_value - value >= 0
        shipped_value += book.issue(line_no, sku, transit, lot, qty, value if keep else None)
        # The receiving store valued its receipt at the value shipped, pro rata (transfer_share): the same here.
        share = transfer_share(value, qty, received.get((sku, lot), 0))
        received_value += share
        lines.append(
            ResolvedLine(
                line_no=line_no,
                item=resolve_item(conn, sku, None),
                code=sku,
                qty=qty,  # shipped, in base units; what was received is in the receiving store's transfer_in
                qty_base=qty,
                price_fen=None,
                gross_fen=share,
                tax_fen=0,
                lot=lot,
                expiry=None,
                location=transit,
            )
        )
    # Shipped value not received (negative: received more than shipped), at this store's cost.
    amounts = {"cost": shipped_value, "loss": shipped_value - received_value}
    voucher = build_voucher(rules, DocType.TRANSFER_SETTLE.value, amounts, {})
    header = _header(
        conn,
        ctx,
        DocType.TRANSFER_SETTLE,
        cmd.key,
        cmd.actor,
        cmd.device,
        location=transit,
        counterparty=origin["counterparty"],
        ref_id=cmd.transfer_out_id,
        note=cmd.note,
        external_ref=cmd.external_ref,
        gross_fen=received_value,
        cost_fen=shipped_value,
    )
    _write(conn, ctx, header, lines, book.moves, voucher, rules.version)
    return header["id"], header["doc_no"], sorted({m.sku for m in book.moves})


# --- reversal ---------------------------------------------------------------------------------


def _reverse_document(
    conn: sqlite3.Connection, cmd: ReverseDocument, ctx: PostingContext
) -> tuple[int, str, list[str]]:
    if not cmd.key or len(cmd.key) > 300:
        raise _invalid("幂等键不能为空且不超过 300 字符", "idempotency key must be 1..300 characters", field="key")
    _check_text("reason_text", cmd.reason_text)
    original = conn.execute("SELECT * FROM documents WHERE id = ?", (cmd.document_id,)).fetchone()
    if original is None:
        raise UnknownDocument(cmd.document_id)
    if original["type"] in (DocType.PURCHASE_INVOICE, DocType.CREDIT_NOTE):
        raise NotReversible(
            f"发票入账 {original['doc_no']} 不能冲销，请录入红字发票",
            f"invoice entry {original['doc_no']} cannot be reversed; enter a credit note (红字发票) instead",
            document=cmd.document_id,
        )
    if original["type"] == DocType.REVERSAL:
        raise NotReversible(
            f"冲销单 {original['doc_no']} 不能再冲销，请重新开单",
            f"reversal {original['doc_no']} cannot itself be reversed; post a new document instead",
            document=cmd.document_id,
        )
    existing = conn.execute("SELECT id FROM documents WHERE reverses_id = ?", (cmd.document_id,)).fetchone()
    if existing is not None:
        raise AlreadyReversed(cmd.document_id, existing[0])
    dependants = conn.execute(
        "SELECT doc_no FROM documents d WHERE ref_id = ? AND NOT EXISTS"
        " (SELECT 1 FROM documents r WHERE r.reverses_id = d.id)",
        (cmd.document_id,),
    ).fetchone()
    if dependants is not None and original["type"] != DocType.PURCHASE_ORDER:
        raise NotReversible(
            f"单据 {original['doc_no']} 已被 {dependants[0]} 引用，请先冲销 {dependants[0]}",
            f"document {original['doc_no']} is referenced by {dependants[0]}; reverse that first",
            document=cmd.document_id,
            referenced_by=dependants[0],
        )
    book = StockBook(conn, business_date=ctx.business_date, allow_negative=ctx.allow_negative)
    rules = ctx.rules_in_effect(conn)
    variance: dict[str, int] = {}
    # What went out comes back first, so that what came in is there to be taken back even when one document
    # both added to and took from the same balance (a stocktake counting a lot and the item's lots as a whole).
    moves = conn.execute(
        "SELECT line_no, sku, location, lot, qty, value_fen FROM stock_moves WHERE document_id = ?"
        " ORDER BY qty > 0, id",
        (cmd.document_id,),
    ).fetchall()
    for m in moves:
        qty, value = -int(m["qty"]), -int(m["value_fen"])
        if qty >= 0:
            book.receive(m["line_no"], m["sku"], m["location"], m["lot"], qty, value)
            continue
        # Take back what came in: at its original value where the balance allows it; the move that
        # empties the balance takes all that is left; otherwise at moving-average cost.
        on_hand, on_value = book.balance(m["sku"], m["location"], m["lot"])
        original_value = -value
        keep_original = -qty < on_hand and on_value - original_value >= 0
        taken = book.issue(
            m["line_no"], m["sku"], m["location"], m["lot"], -qty, original_value if keep_original else None
        )
        account = rules.transit_account if m["location"] == TRANSIT_LOCATION else rules.inventory_account
        variance[account] = variance.get(account, 0) + taken - original_value
    voucher: list[VoucherLine] = []
    voucher_row = conn.execute("SELECT id FROM vouchers WHERE document_id = ?", (cmd.document_id,)).fetchone()
    if voucher_row is not None:
        for vl in conn.execute(
            "SELECT account, debit_fen, credit_fen, memo FROM voucher_lines WHERE voucher_id = ? ORDER BY line_no",
            (voucher_row[0],),
        ):
            voucher.append(VoucherLine(vl[0], -int(vl[1]), -int(vl[2]), f"冲销 reversal: {vl[3] or ''}"))
    for account, difference in variance.items():
        # More value taken out than came in: the difference is a cost; less: a cost reduction.
        if difference:
            debit, credit = (rules.variance_account, account) if difference > 0 else (account, rules.variance_account)
            voucher.append(VoucherLine(debit, abs(difference), 0, rules.variance_memo))
            voucher.append(VoucherLine(credit, 0, abs(difference), rules.variance_memo))
    total_variance = sum(variance.values())
    header = _header(
        conn,
        ctx,
        DocType.REVERSAL,
        cmd.key,
        cmd.actor,
        cmd.device,
        location=original["location"],
        to_location=original["to_location"],
        counterparty=original["counterparty"],
        reverses_id=cmd.document_id,
        reason_text=cmd.reason_text,
        note=f"冲销 {original['doc_no']} / reverses {original['doc_no']}",
        payment=original["payment"],
        gross_fen=-int(original["gross_fen"]),
        tax_fen=-int(original["tax_fen"]),
        cost_fen=-int(original["cost_fen"]) + total_variance,
    )
    lines = [
        ResolvedLine(
            line_no=int(row["line_no"]),
            item=resolve_item(conn, row["sku"], row["unit"]),
            code=row["code"],
            qty=-int(row["qty"]),
            qty_base=-int(row["qty_base"]),
            price_fen=row["price_fen"],
            gross_fen=-int(row["gross_fen"]),
            tax_fen=-int(row["tax_fen"]),
            lot=row["lot"],
            expiry=row["expiry"],
            location=row["location"],
        )
        for row in conn.execute(
            "SELECT * FROM document_lines WHERE document_id = ? ORDER BY line_no", (cmd.document_id,)
        )
    ]
    _write(conn, ctx, header, lines, book.moves, voucher, rules.version)
    return header["id"], header["doc_no"], sorted({m.sku for m in book.moves})


# --- writing ----------------------------------------------------------------------------------


def _next_id(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {table}").fetchone()[0])


def _lot_expiries(conn: sqlite3.Connection, moves: list[Move]) -> list[list[str]]:
    out: list[list[str]] = []
    for sku, lot in sorted({(m.sku, m.lot) for m in moves if m.lot}):
        row = conn.execute("SELECT expiry FROM lots WHERE sku = ? AND lot = ?", (sku, lot)).fetchone()
        if row is not None and row[0]:
            out.append([sku, lot, str(row[0])])
    return out


def _write(
    conn: sqlite3.Connection,
    ctx: PostingContext,
    header: dict[str, Any],
    lines: list[ResolvedLine],
    moves: list[Move],
    voucher: list[VoucherLine],
    rule_version: str,
    *,
    tax_trusted: bool = False,
) -> None:
    """Write the document, its lines, moves, balances, voucher, outbox row and audit row."""
    conn.execute(
        f"INSERT INTO documents ({', '.join(header)}) VALUES ({', '.join('?' * len(header))})",
        tuple(header.values()),
    )
    document_id = header["id"]
    conn.executemany(
        "INSERT INTO document_lines (document_id, line_no, sku, code, unit, qty, qty_base, price_fen, gross_fen,"
        " tax_fen, vat_rate_bp, lot, expiry, location) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                document_id,
                line.line_no,
                line.item.sku,
                line.code,
                line.item.unit,
                line.qty,
                line.qty_base,
                line.price_fen,
                line.gross_fen,
                line.tax_fen,
                line.item.vat_rate_bp,
                line.lot,
                line.expiry,
                line.location,
            )
            for line in lines
        ],
    )
    ts = ctx.now.isoformat()
    conn.executemany(
        "INSERT INTO stock_moves (document_id, line_no, sku, location, lot, qty, value_fen, ts)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(document_id, m.line_no, m.sku, m.location, m.lot, m.qty, m.value_fen, ts) for m in moves],
    )
    conn.executemany(
        "INSERT INTO balances (sku, location, lot, qty, value_fen) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (sku, location, lot) DO UPDATE SET qty = qty + excluded.qty,"
        " value_fen = value_fen + excluded.value_fen",
        [(m.sku, m.location, m.lot, m.qty, m.value_fen) for m in moves],
    )
    voucher_payload: dict[str, Any] | None = None
    if voucher:
        debit = sum(v.debit_fen for v in voucher)
        credit = sum(v.credit_fen for v in voucher)
        if debit != credit:  # cannot happen with a validated rule table; never write an unbalanced voucher
            raise AssertionError(f"unbalanced voucher for {header['doc_no']}: {debit} != {credit}")
        voucher_id = _next_id(conn, "vouchers")
        voucher_no = f"记{ctx.business_date:%Y%m}-{voucher_id:06d}"
        memo = f"{header['doc_no']} {header['type']}"
        conn.execute(
            "INSERT INTO vouchers (id, voucher_no, document_id, date, memo, rule_version, tax_trusted)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (voucher_id, voucher_no, document_id, header["business_date"], memo, rule_version, int(tax_trusted)),
        )
        conn.executemany(
            "INSERT INTO voucher_lines (voucher_id, line_no, account, debit_fen, credit_fen, memo)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(voucher_id, i, v.account, v.debit_fen, v.credit_fen, v.memo) for i, v in enumerate(voucher, 1)],
        )
        voucher_payload = {
            "voucher_no": voucher_no,
            "rule_version": rule_version,
            "tax_trusted": tax_trusted,
            "lines": [[v.account, v.debit_fen, v.credit_fen] for v in voucher],
        }
    payload = {
        "document": header,
        "lines": [
            {
                "line_no": line.line_no,
                "sku": line.item.sku,
                "unit": line.item.unit,
                "qty": line.qty,
                "qty_base": line.qty_base,
                "price_fen": line.price_fen,
                "gross_fen": line.gross_fen,
                "tax_fen": line.tax_fen,
                "lot": line.lot,
                "location": line.location,
                "expiry": line.expiry,
            }
            for line in lines
        ],
        "moves": [[m.line_no, m.sku, m.location, m.lot, m.qty, m.value_fen] for m in moves],
        "voucher": voucher_payload,
        # Expiry of every lot the moves touch that has one (a transfer out's lots are chosen first-expiry-first).
        "lot_expiry": _lot_expiries(conn, moves),
    }
    conn.execute(
        "INSERT INTO outbox (document_id, kind, payload, created_at) VALUES (?, ?, ?, ?)",
        (document_id, "document.posted", json.dumps(payload, ensure_ascii=False, separators=(",", ":")), ts),
    )
    append_audit(
        conn,
        ts=ts,
        actor=header["actor"],
        device=header["device"],
        action=f"post.{header['type']}",
        object=f"document:{document_id}",
        detail={"doc_no": header["doc_no"], "key": header["command_key"], "gross_fen": header["gross_fen"]},
    )
