"""Finance entries the box books itself: supplier payments and the approval of pending losses and gains.

Both post through the ledger (`PostEntry`), so each is a document with a voucher by rule, an outbox row and
an audit row, idempotent on its key. A payment is refused while the supplier is frozen or its papers are
missing or expired (`compliance.check_payable`). A write-off or stocktake books its difference to 1901
待处理财产损溢; approving it moves the loss to 5711 营业外支出 and the gain to 5301 营业外收入 (by the rule
table), and only someone other than the person who posted the document may approve it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from edge.finance.compliance import check_payable
from edge.finance.errors import ApprovalError, FinanceError
from edge.ledger.commands import DocType, PostEntry, PostResult
from edge.ledger.errors import UnknownDocument
from edge.ledger.posting import PostingContext, post

MAX_PAYMENT_FEN = 10**12  # ten billion yuan
PENDING_ACCOUNT = "1901"


class InvalidPayment(FinanceError):
    code = "invalid_payment"
    status = 422


@dataclass(frozen=True, slots=True)
class Payment:
    key: str
    supplier: str
    amount_fen: int
    method: str = "bank"
    prepayment: bool = False
    note: str | None = None
    actor: str = "system"


def pay_supplier(conn: sqlite3.Connection, ctx: PostingContext, payment: Payment) -> PostResult:
    """Post a supplier payment (Dr 220201 or 1123 prepayment / Cr bank) after the compliance check."""
    if not isinstance(payment.amount_fen, int) or not 1 <= payment.amount_fen <= MAX_PAYMENT_FEN:
        raise InvalidPayment(
            f"付款金额无效: {payment.amount_fen} (单位: 分, 1..{MAX_PAYMENT_FEN})",
            f"payment amount {payment.amount_fen!r} must be 1..{MAX_PAYMENT_FEN} fen",
            field="amount_fen",
        )
    replay = conn.execute("SELECT 1 FROM commands WHERE key = ?", (payment.key,)).fetchone()
    if replay is None:  # a replay answers the first result even if the supplier was frozen since
        check_payable(conn, payment.supplier, ctx.business_date)
    return post(
        conn,
        PostEntry(
            key=payment.key,
            type=DocType.SUPPLIER_PAYMENT,
            amounts=(("paid", payment.amount_fen),),
            counterparty=payment.supplier,
            facts=(("prepayment", "true" if payment.prepayment else "false"),),
            note=payment.note,
            payment=payment.method,
            actor=payment.actor,
        ),
        ctx,
    )


def pending(conn: sqlite3.Connection, document_id: int) -> dict[str, int]:
    """What a write-off or stocktake left in 1901: the loss (debit) and the gain (credit), in fen."""
    row = conn.execute(
        "SELECT COALESCE(SUM(l.debit_fen), 0), COALESCE(SUM(l.credit_fen), 0) FROM voucher_lines l"
        " JOIN vouchers v ON v.id = l.voucher_id WHERE v.document_id = ? AND l.account = ?",
        (document_id, PENDING_ACCOUNT),
    ).fetchone()
    return {"loss": int(row[0]), "gain": int(row[1])}


def approve_losses(
    conn: sqlite3.Connection, ctx: PostingContext, key: str, document_id: int, approver: str, note: str | None = None
) -> PostResult:
    """Approve the pending loss and gain of a write-off or stocktake (损溢审批)."""
    if conn.execute("SELECT 1 FROM commands WHERE key = ?", (key,)).fetchone() is None:
        document = conn.execute("SELECT * FROM documents WHERE id = ?", (document_id,)).fetchone()
        if document is None:
            raise UnknownDocument(document_id)
        _check_approvable(conn, document, approver)
    amounts = pending(conn, document_id)  # on a replay the ledger answers the first result whatever these are
    kind = _loss_kind(conn, ctx, document_id)
    return post(
        conn,
        PostEntry(
            key=key,
            type=DocType.LOSS_APPROVAL,
            amounts=tuple((name, value) for name, value in amounts.items() if value),
            ref_id=document_id,
            facts=(("loss_kind", kind),),
            note=note,
            actor=approver,
        ),
        ctx,
    )


def _loss_kind(conn: sqlite3.Connection, ctx: PostingContext, document_id: int) -> str:
    """The loss kind of a write-off by its reason (the rule table maps it); a stocktake's is a counting difference."""
    row = conn.execute("SELECT type, reason FROM documents WHERE id = ?", (document_id,)).fetchone()
    if row is None or row["type"] != DocType.WRITE_OFF:
        return "counting"
    return ctx.rules_in_effect(conn).loss_kind(row["reason"])


def _check_approvable(conn: sqlite3.Connection, document: sqlite3.Row, approver: str) -> None:
    doc_no = document["doc_no"]
    if document["type"] not in (DocType.WRITE_OFF, DocType.STOCKTAKE):
        raise ApprovalError(
            f"{doc_no} 不是报损单或盘点单，无需审批损溢",
            f"{doc_no} is not a write-off or stocktake; there is no loss to approve",
            document=document["id"],
        )
    if conn.execute("SELECT 1 FROM documents WHERE reverses_id = ?", (document["id"],)).fetchone():
        raise ApprovalError(f"{doc_no} 已冲销", f"{doc_no} has been reversed", document=document["id"])
    approved = conn.execute(
        "SELECT doc_no FROM documents d WHERE type = 'loss_approval' AND ref_id = ?"
        " AND NOT EXISTS (SELECT 1 FROM documents r WHERE r.reverses_id = d.id)",
        (document["id"],),
    ).fetchone()
    if approved is not None:
        raise ApprovalError(
            f"{doc_no} 的损溢已由 {approved[0]} 审批",
            f"the losses of {doc_no} were approved by {approved[0]} already",
            document=document["id"],
            approval=approved[0],
        )
    if document["actor"] == approver:
        raise ApprovalError(
            f"{doc_no} 由 {approver} 开具，须由另一人审批 (职责分离)",
            f"{doc_no} was posted by {approver}; another person must approve it (separation of duties)",
            document=document["id"],
        )
    if not any(pending(conn, document["id"]).values()):
        raise ApprovalError(f"{doc_no} 没有待处理损溢", f"{doc_no} left nothing pending", document=document["id"])


def pending_losses(conn: sqlite3.Connection, limit: int = 200) -> list[dict[str, Any]]:
    """Write-offs and stocktakes whose losses or gains wait for approval, oldest first."""
    rows = conn.execute(
        "SELECT d.id, d.doc_no, d.type, d.business_date, d.actor, d.reason,"
        " COALESCE(SUM(l.debit_fen), 0) AS loss_fen, COALESCE(SUM(l.credit_fen), 0) AS gain_fen"
        " FROM documents d JOIN vouchers v ON v.document_id = d.id"
        " JOIN voucher_lines l ON l.voucher_id = v.id AND l.account = ?"
        " WHERE d.type IN ('write_off', 'stocktake')"
        " AND NOT EXISTS (SELECT 1 FROM documents r WHERE r.reverses_id = d.id)"
        " AND NOT EXISTS (SELECT 1 FROM documents a WHERE a.type = 'loss_approval' AND a.ref_id = d.id"
        "   AND NOT EXISTS (SELECT 1 FROM documents ra WHERE ra.reverses_id = a.id))"
        " GROUP BY d.id ORDER BY d.id LIMIT ?",
        (PENDING_ACCOUNT, limit),
    ).fetchall()
    return [dict(row) for row in rows]
