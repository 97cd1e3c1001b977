"""Scan-to-receive (扫码即入库): receipt drafts (收货草稿) opened by scanning a supplier's signed delivery note.

A keeper scans the note's QR code: the box verifies it (signature, freshness, replay), matches it to the PO and
the ASN and opens a draft that expects the note's lines. The keeper scans or weighs the goods into the draft;
on confirm the box posts one receipt through the ledger (ref_id = the PO, counterparty = the supplier, lines by
lot and expiry; the voucher is what the finance rules book: 暂估 or AP) and answers with what was received and
what differs: short, over, wrong_lot, expired, not_on_po. The same actions come from a handheld over MQTT (event
kind `receive`, one writer job per action) and from the page over HTTP. Pure over a connection: the caller (the
writer) owns the transaction and the clock is the posting context's.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints, model_validator

from edge.bus.payloads import (
    DecodeOptions,
    EventEnvelope,
    IsoDate,
    JobOutcome,
    KindSpec,
    LedgerCode,
    WriterJob,
)
from edge.bus.storage import run_event_job
from edge.config import Settings
from edge.devices import asn as asns
from edge.devices.barcodes import DEFAULT_LABEL_FORMATS, WEIGHED_UNIT, interpret_code
from edge.devices.delivery_note import MAX_TEXT, NoteError, SignedNote, check_note
from edge.devices.weights import DEFAULT_MAX_AGE_S, take_stable_weight
from edge.ledger.commands import DocType, Line, PostDocument, PostResult
from edge.ledger.errors import DomainError, LedgerError, UnknownLocation
from edge.ledger.money import div_round_half_up
from edge.ledger.posting import PostingContext, post

MAX_SCAN_QTY = 10_000_000
EVENT_KIND = "receive"  # evt/receive
EXTRA_KEY = "receiving"  # DecodeOptions.extra[EXTRA_KEY] holds the ReceivingPolicy


@dataclass(frozen=True, slots=True)
class ReceivingPolicy:
    """The store's scan-to-receive settings (edge/config.py "scan-to-receive")."""

    note_max_age: timedelta = timedelta(days=30)  # a note older than this is refused (a stale printout)
    clock_skew: timedelta = timedelta(minutes=10)  # a note issued later than now + this is refused
    location: str | None = None  # where received goods go by default (None: the store's default location)
    label_formats: tuple[str, ...] = ()  # in-store scale label formats (empty: the barcodes part's defaults)
    weight_max_age_s: int = DEFAULT_MAX_AGE_S  # a scale reading older than this is not taken


def receiving_policy(settings: Settings) -> ReceivingPolicy:
    """The policy from the store's settings."""
    return ReceivingPolicy(
        note_max_age=timedelta(days=settings.receiving_note_max_age_days),
        clock_skew=timedelta(seconds=settings.receiving_clock_skew_seconds),
        location=settings.receiving_location,
        # The barcodes part's settings (scale labels, weights), read only when present.
        label_formats=tuple(getattr(settings, "scale_label_formats", ()) or ()),
        weight_max_age_s=int(getattr(settings, "scale_weight_max_age_s", DEFAULT_MAX_AGE_S)),
    )


# --- errors -----------------------------------------------------------------------------------


class ReceivingError(DomainError):
    code: ClassVar[str] = "receiving_error"
    status: ClassVar[int] = 409


class NoteStale(NoteError):
    code = "note_expired"


class NoteNotYetValid(NoteError):
    code = "note_not_yet_valid"


class NoteReplayed(NoteError):
    """A nonce seen before with other content: a copied or forged note."""

    code = "note_replayed"
    status = 409


class NoteAlreadyReceived(NoteError):
    """The note (or its ASN, through another note) was already received: a replay."""

    code = "note_already_received"
    status = 409


class NoteDoesNotMatch(NoteError):
    """The note names a PO that is not the supplier's open PO, or an ASN of another PO, or unknown items."""

    code = "note_mismatch"


class UnknownDraft(ReceivingError):
    code = "unknown_draft"
    status = 404

    def __init__(self, draft_id: int) -> None:
        super().__init__(f"收货草稿不存在: {draft_id}", f"no such receipt draft: {draft_id}", draft=draft_id)


class DraftClosed(ReceivingError):
    code = "draft_closed"

    def __init__(self, draft_id: int, state: str) -> None:
        zh = {"confirmed": "已确认入库", "cancelled": "已取消"}.get(state, state)
        super().__init__(
            f"收货草稿 {draft_id} {zh}，不能再修改", f"receipt draft {draft_id} is {state}", draft=draft_id, state=state
        )


class ScanRefused(ReceivingError):
    code = "scan_refused"
    status = 422


class NothingToReceive(ReceivingError):
    code = "nothing_to_receive"
    status = 422


class ReceiptRefused(ReceivingError):
    """The ledger refused the receipt (e.g. a frozen supplier); the draft stays open."""

    code = "receipt_refused"

    def __init__(self, result: PostResult) -> None:
        super().__init__(result.message, result.message_en, ledger_code=result.code, **result.detail)


# --- actions ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenNote:
    """Scan a delivery note's QR code: open (or resume) its draft."""

    qr: str
    location: str | None = None


@dataclass(frozen=True, slots=True)
class ScanGoods:
    """Scan (or weigh) goods into a draft. `qty` is in the code's unit (default 1); negative undoes a scan."""

    draft: int
    code: str
    qty: int | None = None
    unit: str | None = None
    lot: str | None = None
    expiry: date | None = None
    scale: str | None = None  # take the scale's latest stable weight (grams) as the quantity


@dataclass(frozen=True, slots=True)
class ConfirmDraft:
    """Post the receipt. `as_announced`: lines of items not scanned at all count as received as on the note."""

    draft: int
    as_announced: bool = False


@dataclass(frozen=True, slots=True)
class CancelDraft:
    draft: int


@dataclass(frozen=True, slots=True)
class OnNote:
    """An action on the draft of a delivery note, named by the note's QR text instead of the draft id.

    An offline handheld queues the whole receipt (open, scans, confirm) before it has seen the open's ack, so it
    does not know the draft id yet: each queued action carries the note, which opens or resumes its draft.
    """

    qr: str
    then: ScanGoods | ConfirmDraft | CancelDraft


Action = OpenNote | ScanGoods | ConfirmDraft | CancelDraft | OnNote


# --- views ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExpectedLine:
    """A line the draft expects (from the delivery note), resolved to the item."""

    line_no: int
    code: str
    sku: str
    name: str
    unit: str
    qty: int
    qty_base: int
    lot: str | None
    expiry: date | None
    on_po: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "line": self.line_no,
            "code": self.code,
            "sku": self.sku,
            "name": self.name,
            "unit": self.unit,
            "qty": self.qty,
            "qty_base": self.qty_base,
            "lot": self.lot,
            "expiry": self.expiry.isoformat() if self.expiry else None,
            "on_po": self.on_po,
        }


@dataclass(frozen=True, slots=True)
class ReceivedQty:
    """What was scanned into a draft, by item and lot, in base units."""

    sku: str
    lot: str | None
    expiry: date | None
    qty_base: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "lot": self.lot,
            "expiry": self.expiry.isoformat() if self.expiry else None,
            "qty_base": self.qty_base,
        }


@dataclass(frozen=True, slots=True)
class Draft:
    """A receipt draft as stored, with what it expects and what was scanned so far."""

    id: int
    state: str
    supplier: str
    po_id: int
    po_no: str
    asn_id: str
    asn_revision: int | None
    location: str | None
    opened_at: datetime
    opened_by: str
    device: str | None
    expected: tuple[ExpectedLine, ...]
    scanned: tuple[ReceivedQty, ...]
    receipt_id: int | None = None
    result: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "supplier": self.supplier,
            "po_id": self.po_id,
            "po_no": self.po_no,
            "asn_id": self.asn_id,
            "asn_revision": self.asn_revision,
            "location": self.location,
            "opened_at": self.opened_at.isoformat(),
            "opened_by": self.opened_by,
            "device": self.device,
            "expected": [line.to_dict() for line in self.expected],
            "scanned": [s.to_dict() for s in self.scanned],
            "receipt_id": self.receipt_id,
            "result": self.result,
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one action did: the ack's message and detail, the draft, and the receipt posting if any."""

    code: str
    message: str
    message_en: str
    detail: dict[str, Any]
    document: int | None = None
    post_results: tuple[PostResult, ...] = field(default=())

    def job_outcome(self) -> JobOutcome:
        return JobOutcome(
            ok=True,
            code=self.code,
            message=self.message,
            message_en=self.message_en,
            document=self.document,
            detail=self.detail,
            post_results=self.post_results,
        )


# --- the flow ---------------------------------------------------------------------------------


def perform(
    conn: sqlite3.Connection,
    ctx: PostingContext,
    action: Action,
    policy: ReceivingPolicy,
    *,
    actor: str,
    device: str | None = None,
) -> Outcome:
    """Do one action; refusals raise a DomainError (the caller rolls back what was written)."""
    if isinstance(action, OnNote):
        opened = open_draft(conn, ctx, OpenNote(action.qr), policy, actor=actor, device=device)
        action = replace(action.then, draft=int(opened.detail["draft"]))
    if isinstance(action, OpenNote):
        return open_draft(conn, ctx, action, policy, actor=actor, device=device)
    if isinstance(action, ScanGoods):
        return add_scan(conn, ctx, action, policy, actor=actor, device=device)
    if isinstance(action, ConfirmDraft):
        return confirm_draft(conn, ctx, action, policy, actor=actor, device=device)
    return cancel_draft(conn, ctx, action, actor=actor)


def open_draft(
    conn: sqlite3.Connection,
    ctx: PostingContext,
    action: OpenNote,
    policy: ReceivingPolicy,
    *,
    actor: str,
    device: str | None = None,
) -> Outcome:
    """Verify the note, match it to the PO and the ASN, and open a draft (or resume the note's open draft)."""
    signed = check_note(conn, action.qr)
    note = signed.note
    if note.issued_at < ctx.now - policy.note_max_age:
        raise NoteStale(
            f"送货单签发于 {note.issued_at:%Y-%m-%d %H:%M} UTC，已超过 {policy.note_max_age.days} 天有效期",
            f"delivery note was issued {note.issued_at:%Y-%m-%d %H:%M} UTC, more than"
            f" {policy.note_max_age.days} days ago",
            issued_at=note.issued_at.isoformat(),
        )
    if note.issued_at > ctx.now + policy.clock_skew:
        raise NoteNotYetValid(
            f"送货单签发时间 {note.issued_at:%Y-%m-%d %H:%M} UTC 晚于当前时间",
            f"delivery note is issued in the future ({note.issued_at:%Y-%m-%d %H:%M} UTC)",
            issued_at=note.issued_at.isoformat(),
        )
    seen = conn.execute(
        "SELECT note_hash, receipt_id FROM delivery_notes WHERE supplier = ? AND nonce = ?", (note.supplier, note.nonce)
    ).fetchone()
    if seen is not None and seen["note_hash"] != signed.note_hash:
        raise NoteReplayed(
            "送货单的一次性编号已被另一张送货单使用 (复制或伪造)",
            "the delivery note's nonce was already used by another note (copied or forged)",
            supplier=note.supplier,
            nonce=note.nonce,
        )
    if seen is not None and seen["receipt_id"] is not None:
        raise _already_received(note.supplier, note.asn_id, int(seen["receipt_id"]))
    if seen is not None:
        resumed = conn.execute(
            "SELECT id FROM receipt_drafts WHERE note_hash = ? AND state = 'open'", (signed.note_hash,)
        ).fetchone()
        if resumed is not None:
            draft = load_draft(conn, int(resumed[0]))
            return _opened(draft, resumed=True)
    received = conn.execute(
        "SELECT receipt_id FROM delivery_notes WHERE supplier = ? AND asn_id = ? AND receipt_id IS NOT NULL",
        (note.supplier, note.asn_id),
    ).fetchone()
    stored_asn = asns.get_asn(conn, note.asn_id, supplier=note.supplier)
    if received is not None:
        raise _already_received(note.supplier, note.asn_id, int(received[0]))
    if stored_asn is not None and stored_asn.state is asns.AsnState.RECEIVED:
        raise _already_received(note.supplier, note.asn_id, stored_asn.receipt_ids[0] if stored_asn.receipt_ids else 0)
    po = conn.execute(
        "SELECT id, doc_no FROM documents d WHERE doc_no = ? AND type = 'purchase_order' AND counterparty = ?"
        " AND NOT EXISTS (SELECT 1 FROM documents r WHERE r.reverses_id = d.id)",
        (note.po_no, note.supplier),
    ).fetchone()
    if po is None:
        raise NoteDoesNotMatch(
            f"送货单的采购订单 {note.po_no} 不是供应商 {note.supplier} 的有效采购订单",
            f"purchase order {note.po_no} on the note is not an open purchase order of supplier {note.supplier}",
            po_no=note.po_no,
            supplier=note.supplier,
        )
    po_id = int(po["id"])
    if stored_asn is not None and stored_asn.po_id != po_id:
        raise NoteDoesNotMatch(
            f"发货通知 {note.asn_id} 属于采购订单 {stored_asn.po_no}，不是送货单上的 {note.po_no}",
            f"ASN {note.asn_id} is for purchase order {stored_asn.po_no}, not {note.po_no} as on the note",
            asn_id=note.asn_id,
        )
    expected = _expected_lines(conn, signed, po_id)
    location = action.location or policy.location
    if location is not None and conn.execute("SELECT 1 FROM locations WHERE code = ?", (location,)).fetchone() is None:
        raise UnknownLocation(location)
    ts = ctx.now.isoformat()
    if seen is None:
        conn.execute(
            "INSERT INTO delivery_notes (supplier, nonce, note_hash, asn_id, po_id, key_id, issued_at, first_seen)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                note.supplier,
                note.nonce,
                signed.note_hash,
                note.asn_id,
                po_id,
                note.key_id,
                note.issued_at.isoformat(),
                ts,
            ),
        )
    cursor = conn.execute(
        "INSERT INTO receipt_drafts (state, supplier, po_id, asn_id, asn_revision, note_nonce, note_hash, location,"
        " opened_by, device, opened_at) VALUES ('open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            note.supplier,
            po_id,
            note.asn_id,
            stored_asn.revision if stored_asn is not None else None,
            note.nonce,
            signed.note_hash,
            location,
            actor,
            device,
            ts,
        ),
    )
    draft_id = int(cursor.lastrowid or 0)
    conn.executemany(
        "INSERT INTO receipt_draft_expected (draft_id, line_no, code, sku, unit, qty, qty_base, lot, expiry)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                draft_id,
                e.line_no,
                e.code,
                e.sku,
                e.unit,
                e.qty,
                e.qty_base,
                e.lot,
                e.expiry.isoformat() if e.expiry else None,
            )
            for e in expected
        ],
    )
    draft = Draft(
        id=draft_id,
        state="open",
        supplier=note.supplier,
        po_id=po_id,
        po_no=po["doc_no"],
        asn_id=note.asn_id,
        asn_revision=stored_asn.revision if stored_asn is not None else None,
        location=location,
        opened_at=ctx.now,
        opened_by=actor,
        device=device,
        expected=tuple(expected),
        scanned=(),
    )
    return _opened(draft, resumed=False, asn_lines=stored_asn.lines if stored_asn is not None else None)


def _already_received(supplier: str, asn_id: str, receipt_id: int) -> NoteAlreadyReceived:
    return NoteAlreadyReceived(
        f"送货单 (发货通知 {asn_id}) 已收货入库，不能重复收货",
        f"the delivery note (ASN {asn_id}) was already received; it cannot be received again",
        supplier=supplier,
        asn_id=asn_id,
        receipt_id=receipt_id,
    )


def _opened(draft: Draft, *, resumed: bool, asn_lines: Sequence[asns.AsnRecordLine] | None = None) -> Outcome:
    detail: dict[str, Any] = {
        "draft": draft.id,
        "resumed": resumed,
        "supplier": draft.supplier,
        "po_id": draft.po_id,
        "po_no": draft.po_no,
        "asn_id": draft.asn_id,
        "asn_revision": draft.asn_revision,
        "expected": [line.to_dict() for line in draft.expected],
    }
    if asn_lines is not None:
        announced = sorted((a.sku, a.lot or "", a.qty_base) for a in asn_lines)
        on_note = sorted((e.sku, e.lot or "", e.qty_base) for e in draft.expected)
        detail["asn_matches"] = announced == on_note
    if resumed:
        detail["scanned"] = [s.to_dict() for s in draft.scanned]
    word, word_en = ("继续", "resumed") if resumed else ("已开", "opened")
    return Outcome(
        code="ok",
        message=f"{word}收货草稿 {draft.id}: 采购订单 {draft.po_no}，{len(draft.expected)} 行",
        message_en=f"{word_en} receipt draft {draft.id}: purchase order {draft.po_no}, {len(draft.expected)} lines",
        detail=detail,
    )


def _expected_lines(conn: sqlite3.Connection, signed: SignedNote, po_id: int) -> list[ExpectedLine]:
    on_po = asns.po_items(conn, po_id)
    lines: list[ExpectedLine] = []
    unknown: list[str] = []
    for no, line in enumerate(signed.note.lines, start=1):
        try:
            item = asns.resolve_code(conn, line.item, line.unit)
        except LedgerError as err:
            unknown.append(f"{no}: {err.message_en}")
            continue
        lines.append(
            ExpectedLine(
                line_no=no,
                code=line.item,
                sku=item.sku,
                name=item.name,
                unit=item.unit,
                qty=line.qty,
                qty_base=line.qty * item.factor,
                lot=line.lot,
                expiry=line.expiry,
                on_po=item.sku in on_po,
            )
        )
    if unknown:
        raise NoteDoesNotMatch(
            f"送货单上有本店未登记的商品或单位: 第 {', '.join(u.split(':')[0] for u in unknown)} 行",
            f"the delivery note names items or units unknown here: line {'; line '.join(unknown)}",
            lines=[int(u.split(":")[0]) for u in unknown],
        )
    return lines


def add_scan(
    conn: sqlite3.Connection,
    ctx: PostingContext,
    action: ScanGoods,
    policy: ReceivingPolicy,
    *,
    actor: str,
    device: str | None = None,
) -> Outcome:
    """Add scanned goods to an open draft; answer with how that item stands against the note."""
    draft = _open_draft_row(conn, action.draft)
    read = _interpret(action, policy, ctx.business_date)
    unit: str | None
    if action.scale is not None:
        qty, unit = take_stable_weight(conn, action.scale, ctx.now, policy.weight_max_age_s), WEIGHED_UNIT
    elif read.qty is not None:
        qty, unit = read.qty, read.unit
    else:
        qty, unit = (1 if action.qty is None else action.qty), read.unit
    try:
        item = asns.resolve_code(conn, read.item_code, unit)
    except LedgerError as err:
        raise ScanRefused(err.message, err.message_en, code=action.code[:80], **err.detail) from None
    qty_base, lot, expiry = qty * item.factor, read.lot, read.expiry
    unit = item.unit
    if qty == 0 or abs(qty_base) > MAX_SCAN_QTY:
        raise ScanRefused(
            f"数量无效: {qty} (不能为 0，绝对值不超过 {MAX_SCAN_QTY})",
            f"invalid quantity {qty}: not 0, at most {MAX_SCAN_QTY} either way",
            qty=qty,
        )
    if expiry is None and lot is not None:
        expiry = _lot_expiry(conn, draft["id"], item.sku, lot)
    so_far = conn.execute(
        "SELECT COALESCE(SUM(qty_base), 0) FROM receipt_draft_scans WHERE draft_id = ? AND sku = ?"
        " AND COALESCE(lot, '') = ?",
        (draft["id"], item.sku, lot or ""),
    ).fetchone()[0]
    if so_far + qty_base < 0:
        raise ScanRefused(
            f"撤销数量 {-qty_base} 超过已扫数量 {so_far}",
            f"cannot undo {-qty_base}: only {so_far} scanned",
            sku=item.sku,
            lot=lot,
        )
    seq = conn.execute(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM receipt_draft_scans WHERE draft_id = ?", (draft["id"],)
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO receipt_draft_scans (draft_id, seq, code, sku, unit, qty, qty_base, lot, expiry, device, actor,"
        " scanned_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            draft["id"],
            seq,
            action.code[:200],
            item.sku,
            unit,
            qty,
            qty_base,
            lot,
            expiry.isoformat() if expiry else None,
            device,
            actor,
            ctx.now.isoformat(),
        ),
    )
    expected_rows = conn.execute(
        "SELECT lot, qty_base FROM receipt_draft_expected WHERE draft_id = ? AND sku = ?", (draft["id"], item.sku)
    ).fetchall()
    expected_total = sum(int(r[1]) for r in expected_rows)
    scanned_total = int(
        conn.execute(
            "SELECT COALESCE(SUM(qty_base), 0) FROM receipt_draft_scans WHERE draft_id = ? AND sku = ?",
            (draft["id"], item.sku),
        ).fetchone()[0]
    )
    po = asns.po_items(conn, int(draft["po_id"]))
    on_po = item.sku in po
    # The running count is what a confirm now would book (expired goods and goods not on the PO are not).
    booked, _ = reconcile(load_draft(conn, int(draft["id"])), po, ctx.business_date)
    booked_total = sum(b.qty_base for b in booked if b.sku == item.sku)
    lots = {r[0] for r in expected_rows if r[0]}
    if not on_po:
        status = "not_on_po"
    elif expiry is not None and expiry < ctx.business_date:
        status = "expired"
    elif lot is not None and lots and lot not in lots:
        status = "wrong_lot"
    elif not expected_rows:
        status = "not_on_note"
    elif booked_total > expected_total:
        status = "over"
    else:
        status = "ok"
    detail = {
        "draft": draft["id"],
        "seq": seq,
        "sku": item.sku,
        "name": item.name,
        "qty": qty,
        "unit": unit,
        "qty_base": qty_base,
        "lot": lot,
        "expiry": expiry.isoformat() if expiry else None,
        "expected": expected_total,
        "scanned": scanned_total,
        "booked": booked_total,
        "status": status,
    }
    unit_name = item.base_unit
    if booked_total == scanned_total:
        message = f"{item.name}: 已扫 {scanned_total}/{expected_total} {unit_name}"
        message_en = f"{item.sku}: scanned {scanned_total} of {expected_total} {unit_name}"
    else:
        refused = scanned_total - booked_total
        message = (
            f"{item.name}: 可入库 {booked_total}/{expected_total} {unit_name}"
            f" (已扫 {scanned_total}, 其中 {refused} 过期或不在订单上, 不入库)"
        )
        message_en = (
            f"{item.sku}: {booked_total} of {expected_total} {unit_name} to receive"
            f" ({scanned_total} scanned, {refused} expired or not on the PO: not received)"
        )
    return Outcome(code="ok", message=message, message_en=message_en, detail=detail)


@dataclass(frozen=True, slots=True)
class _Read:
    """A scan as read: the code the ledger looks up, the quantity the code itself carries (a weight or a count,
    for the packages scanned) in `unit`, and the lot and expiry."""

    item_code: str
    qty: int | None
    unit: str | None
    lot: str | None
    expiry: date | None


def _interpret(action: ScanGoods, policy: ReceivingPolicy, today: date) -> _Read:
    """The one place a scanned code is read (edge.devices.barcodes): GS1 element strings with lot, expiry and
    weight, in-store scale labels, plain codes. What the scan states itself wins over what the code says."""
    code = interpret_code(action.code, policy.label_formats or DEFAULT_LABEL_FORMATS, today=today)
    packages = 1 if action.qty is None else action.qty
    carried = code.quantity(packages) if code.carries_quantity else None
    return _Read(
        item_code=code.item_code,
        qty=carried,
        unit=code.unit if carried is not None else action.unit,
        lot=action.lot or code.lot,
        expiry=action.expiry or code.expiry,
    )


def _lot_expiry(conn: sqlite3.Connection, draft_id: int, sku: str, lot: str) -> date | None:
    row = conn.execute(
        "SELECT expiry FROM receipt_draft_expected WHERE draft_id = ? AND sku = ? AND lot = ? AND expiry IS NOT NULL"
        " UNION ALL SELECT expiry FROM lots WHERE sku = ? AND lot = ? AND expiry IS NOT NULL LIMIT 1",
        (draft_id, sku, lot, sku, lot),
    ).fetchone()
    return date.fromisoformat(row[0]) if row is not None else None


def _open_draft_row(conn: sqlite3.Connection, draft_id: int) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM receipt_drafts WHERE id = ?", (draft_id,)).fetchone()
    if row is None:
        raise UnknownDraft(draft_id)
    if row["state"] != "open":
        raise DraftClosed(draft_id, row["state"])
    found: sqlite3.Row = row
    return found


def cancel_draft(conn: sqlite3.Connection, ctx: PostingContext, action: CancelDraft, *, actor: str) -> Outcome:
    """Cancel an open draft: nothing is posted; its note may be scanned again to start over."""
    _open_draft_row(conn, action.draft)
    conn.execute(
        "UPDATE receipt_drafts SET state = 'cancelled', closed_at = ?, closed_by = ? WHERE id = ?",
        (ctx.now.isoformat(), actor, action.draft),
    )
    return Outcome(
        code="ok",
        message=f"收货草稿 {action.draft} 已取消",
        message_en=f"receipt draft {action.draft} cancelled",
        detail={"draft": action.draft, "state": "cancelled"},
    )


# --- confirm: what was received, what differs --------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Booked:
    sku: str
    lot: str | None
    expiry: date | None
    qty_base: int


def confirm_draft(
    conn: sqlite3.Connection,
    ctx: PostingContext,
    action: ConfirmDraft,
    policy: ReceivingPolicy,
    *,
    actor: str,
    device: str | None = None,
) -> Outcome:
    """Post the draft's receipt and close it; answer with what was received and what differs."""
    row = conn.execute("SELECT * FROM receipt_drafts WHERE id = ?", (action.draft,)).fetchone()
    if row is None:
        raise UnknownDraft(action.draft)
    if row["state"] == "confirmed":
        # A second confirm (another handheld, a page retry with a new key): the first answer again.
        stored = json.loads(row["result"])
        return Outcome("ok", stored["message"], stored["message_en"], stored["detail"], document=row["receipt_id"])
    if row["state"] != "open":
        raise DraftClosed(action.draft, row["state"])
    draft = load_draft(conn, action.draft)
    other = conn.execute(
        "SELECT receipt_id FROM receipt_drafts WHERE supplier = ? AND asn_id = ? AND state = 'confirmed'",
        (draft.supplier, draft.asn_id),
    ).fetchone()
    if other is not None:  # two notes of one ASN opened side by side: the shipment is received once
        raise _already_received(draft.supplier, draft.asn_id, int(other[0]))
    po = asns.po_items(conn, draft.po_id)
    booked, differences = reconcile(draft, po, ctx.business_date, as_announced=action.as_announced)
    # The ASN on the box records what differs from what *it* announced: the note may say otherwise (5 cans on
    # the note, 4 in the ASN), and `as_announced` counts the note's lines, not the ASN's.
    stored_asn = asns.get_asn(conn, draft.asn_id, supplier=draft.supplier)
    asn_differences = differences
    if stored_asn is not None:
        against_asn = replace(
            draft,
            expected=_asn_expected(stored_asn, po),
            scanned=counted_scans(draft, as_announced=action.as_announced),
        )
        _, asn_differences = reconcile(against_asn, po, ctx.business_date)
    if not booked:
        raise NothingToReceive(
            "没有可入库的商品 (未扫描，或全部不在订单上或已过期)",
            "nothing to receive: nothing scanned, or all of it not on the PO or expired",
            draft=draft.id,
            differences=[d.to_dict() for d in differences],
        )
    command = PostDocument(
        key=f"receiving:draft:{draft.id}",
        type=DocType.RECEIPT,
        lines=_receipt_lines(conn, draft.po_id, booked),
        location=draft.location,
        counterparty=draft.supplier,
        ref_id=draft.po_id,
        note=f"扫码收货 scan-to-receive: 发货通知 ASN {draft.asn_id}, 草稿 draft {draft.id}",
        actor=actor,
        device=device,
    )
    result = post(conn, command, ctx)
    if not result.ok:
        raise ReceiptRefused(result)
    assert result.document_id is not None
    detail = {
        "draft": draft.id,
        "receipt": {"id": result.document_id, "doc_no": result.doc_no},
        "po_id": draft.po_id,
        "po_no": draft.po_no,
        "asn_id": draft.asn_id,
        "received": [
            {"sku": b.sku, "lot": b.lot, "expiry": b.expiry.isoformat() if b.expiry else None, "qty_base": b.qty_base}
            for b in booked
        ],
        "differences": [d.to_dict() for d in differences],
    }
    if stored_asn is not None:
        detail["asn_differences"] = [d.to_dict() for d in asn_differences]
    message = f"已入库 {result.doc_no}: {len(booked)} 行" + (
        f"，{len(differences)} 处差异" if differences else "，无差异"
    )
    message_en = f"received {result.doc_no}: {len(booked)} lines" + (
        f", {len(differences)} difference{'s' if len(differences) > 1 else ''}" if differences else ", no differences"
    )
    stored_result = {"message": message, "message_en": message_en, "detail": detail}
    ts = ctx.now.isoformat()
    conn.execute(
        "UPDATE receipt_drafts SET state = 'confirmed', closed_at = ?, closed_by = ?, receipt_id = ?, result = ?"
        " WHERE id = ?",
        (ts, actor, result.document_id, json.dumps(stored_result, ensure_ascii=False), draft.id),
    )
    conn.execute(
        "UPDATE delivery_notes SET receipt_id = ? WHERE supplier = ? AND nonce = ?",
        (result.document_id, draft.supplier, _nonce_of(conn, draft.id)),
    )
    asns.mark_received(conn, draft.supplier, draft.asn_id, result.document_id, asn_differences)
    return Outcome("ok", message, message_en, detail, document=result.document_id, post_results=(result,))


def _nonce_of(conn: sqlite3.Connection, draft_id: int) -> str:
    return str(conn.execute("SELECT note_nonce FROM receipt_drafts WHERE id = ?", (draft_id,)).fetchone()[0])


def reconcile(
    draft: Draft, po: dict[str, asns.PoItem], business_date: date, *, as_announced: bool = False
) -> tuple[list[_Booked], list[asns.Difference]]:
    """What to book and what differs from the note and the PO (pure).

    Goods not on the PO and expired goods are not booked (refused at the dock) and reported. A scan without a lot
    of an item the note announces by lot fills the announced lots in note order. Other lots are booked and
    reported as `wrong_lot`. Per announced line: `short` or `over` against what was booked for it.
    """
    expected_by_sku: dict[str, list[ExpectedLine]] = {}
    for line in draft.expected:
        expected_by_sku.setdefault(line.sku, []).append(line)
    scanned_by_sku: dict[str, list[ReceivedQty]] = {}
    for s in counted_scans(draft, as_announced=as_announced):
        scanned_by_sku.setdefault(s.sku, []).append(s)
    booked: list[_Booked] = []
    differences: list[asns.Difference] = []
    for sku in sorted(set(expected_by_sku) | set(scanned_by_sku), key=_first_line(expected_by_sku)):
        expected = expected_by_sku.get(sku, [])
        scans = scanned_by_sku.get(sku, [])
        if sku not in po:
            differences.extend(_not_on_po(sku, expected, scans))
            continue
        got: dict[str | None, int] = {}
        expiry_of: dict[str | None, date | None] = {e.lot: e.expiry for e in expected}
        for s in scans:
            got[s.lot] = got.get(s.lot, 0) + s.qty_base
            if s.expiry is not None:
                expiry_of[s.lot] = s.expiry
        announced_lots = [e.lot for e in expected if e.lot]
        if announced_lots and None in got:
            # Plain scans (a barcode carries no lot) fill the announced lines in note order; the last takes the rest.
            plain = got.pop(None)
            for i, e in enumerate(expected):
                if plain <= 0:
                    break
                last = i == len(expected) - 1
                take = plain if last else min(plain, max(0, e.qty_base - got.get(e.lot, 0)))
                got[e.lot] = got.get(e.lot, 0) + take
                plain -= take
        if not announced_lots and expected:
            # The note names no lot: the item is compared as a whole, whatever lots were scanned.
            total_expected = sum(e.qty_base for e in expected)
            for lot, qty in got.items():
                expiry = expiry_of.get(lot)
                if expiry is not None and expiry < business_date:
                    differences.append(asns.Difference("expired", sku, 0, qty, lot, expiry, _line(expected)))
                    continue
                booked.append(_Booked(sku, lot, expiry, qty))
            total = sum(b.qty_base for b in booked if b.sku == sku)
            if total != total_expected:
                kind = "short" if total < total_expected else "over"
                differences.append(asns.Difference(kind, sku, total_expected, total, line_no=_line(expected)))
            continue
        expected_lot = {e.lot: 0 for e in expected}
        for e in expected:
            expected_lot[e.lot] = expected_lot.get(e.lot, 0) + e.qty_base
        for lot, qty in got.items():
            expiry = expiry_of.get(lot)
            if qty <= 0:
                continue
            if expiry is not None and expiry < business_date:
                differences.append(
                    asns.Difference("expired", sku, expected_lot.get(lot, 0), qty, lot, expiry, _line(expected, lot))
                )
                got[lot] = 0
                continue
            booked.append(_Booked(sku, lot, expiry, qty))
            if lot not in expected_lot:
                kind = "wrong_lot" if expected else "over"
                differences.append(asns.Difference(kind, sku, 0, qty, lot, expiry))
        for lot, qty in expected_lot.items():
            received = got.get(lot, 0)
            if received == qty or any(d.kind == "expired" and d.lot == lot and d.sku == sku for d in differences):
                continue
            kind = "short" if received < qty else "over"
            differences.append(asns.Difference(kind, sku, qty, received, lot, expiry_of.get(lot), _line(expected, lot)))
    return booked, differences


def counted_scans(draft: Draft, *, as_announced: bool = False) -> tuple[ReceivedQty, ...]:
    """What counts as received: the scans (net of take-backs), and with `as_announced` every note line of an
    item not scanned at all, as the note announced it."""
    scanned = [s for s in draft.scanned if s.qty_base > 0]
    if as_announced:
        seen = {s.sku for s in scanned}
        scanned += [ReceivedQty(e.sku, e.lot, e.expiry, e.qty_base) for e in draft.expected if e.sku not in seen]
    return tuple(scanned)


def _not_on_po(sku: str, expected: Sequence[ExpectedLine], scans: Sequence[ReceivedQty]) -> list[asns.Difference]:
    """An item the PO does not order: nothing booked; a difference per lot scanned, with its expiry, and per
    announced lot of which nothing was scanned."""
    announced: dict[str | None, int] = {}
    expiry_of: dict[str | None, date | None] = {}
    for e in expected:
        announced[e.lot] = announced.get(e.lot, 0) + e.qty_base
        expiry_of.setdefault(e.lot, e.expiry)
    got: dict[str | None, int] = {}
    for s in scans:
        got[s.lot] = got.get(s.lot, 0) + s.qty_base
        if s.expiry is not None:
            expiry_of[s.lot] = s.expiry
    return [
        asns.Difference(
            "not_on_po",
            sku,
            announced.get(lot, 0),
            got.get(lot, 0),
            lot,
            expiry_of.get(lot),
            next((e.line_no for e in expected if e.lot == lot), None),
        )
        for lot in [*got, *(lot for lot in announced if lot not in got)]
    ]


def _asn_expected(asn: asns.AsnRecord, po: dict[str, asns.PoItem]) -> tuple[ExpectedLine, ...]:
    """The ASN's lines as a draft's expected lines, to compare what was received with what the ASN announced."""
    return tuple(
        ExpectedLine(a.line_no, a.code, a.sku, a.sku, a.unit, a.qty, a.qty_base, a.lot, a.expiry, a.sku in po)
        for a in asn.lines
    )


def _first_line(expected_by_sku: dict[str, list[ExpectedLine]]) -> Any:
    def order(sku: str) -> tuple[int, str]:
        lines = expected_by_sku.get(sku)
        return (lines[0].line_no if lines else 1_000_000, sku)

    return order


def _line(expected: Sequence[ExpectedLine], lot: str | None = None) -> int | None:
    for e in expected:
        if lot is None or e.lot == lot:
            return e.line_no
    return None


def _receipt_lines(conn: sqlite3.Connection, po_id: int, booked: Sequence[_Booked]) -> tuple[Line, ...]:
    """Receipt lines at the PO's price: in the PO line's unit when the quantity is whole units of it, else in base
    units at the PO price per base unit (rounded half-up once per line)."""
    po_lines = {
        r["sku"]: r
        for r in conn.execute(
            "SELECT sku, unit, qty, qty_base, price_fen FROM document_lines WHERE document_id = ?"
            " ORDER BY line_no DESC",
            (po_id,),
        )
    }
    base_units = dict(
        conn.execute(
            "SELECT sku, base_unit FROM items WHERE sku IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted({b.sku for b in booked})),),
        ).fetchall()
    )
    lines = []
    for b in booked:
        po_line = po_lines.get(b.sku)
        factor = int(po_line["qty_base"]) // int(po_line["qty"]) if po_line is not None and po_line["qty"] else 1
        price = po_line["price_fen"] if po_line is not None else None
        if po_line is not None and factor > 1 and b.qty_base % factor == 0:
            lines.append(Line(b.sku, b.qty_base // factor, price, po_line["unit"], b.lot, b.expiry))
        else:
            unit_price = None if price is None else div_round_half_up(int(price), factor)
            lines.append(Line(b.sku, b.qty_base, unit_price, base_units.get(b.sku), b.lot, b.expiry))
    return tuple(lines)


# --- reading ----------------------------------------------------------------------------------


def load_draft(conn: sqlite3.Connection, draft_id: int) -> Draft:
    row = conn.execute(
        "SELECT r.*, d.doc_no FROM receipt_drafts r JOIN documents d ON d.id = r.po_id WHERE r.id = ?", (draft_id,)
    ).fetchone()
    if row is None:
        raise UnknownDraft(draft_id)
    on_po = asns.po_items(conn, int(row["po_id"]))
    expected = tuple(
        ExpectedLine(
            line_no=int(e["line_no"]),
            code=e["code"],
            sku=e["sku"],
            name=e["name"],
            unit=e["unit"],
            qty=int(e["qty"]),
            qty_base=int(e["qty_base"]),
            lot=e["lot"],
            expiry=date.fromisoformat(e["expiry"]) if e["expiry"] else None,
            on_po=e["sku"] in on_po,
        )
        for e in conn.execute(
            "SELECT x.*, i.name FROM receipt_draft_expected x JOIN items i ON i.sku = x.sku"
            " WHERE x.draft_id = ? ORDER BY x.line_no",
            (draft_id,),
        )
    )
    scanned = tuple(
        ReceivedQty(s[0], s[1], date.fromisoformat(s[2]) if s[2] else None, int(s[3]))
        for s in conn.execute(
            "SELECT sku, lot, MAX(expiry), SUM(qty_base) FROM receipt_draft_scans WHERE draft_id = ?"
            " GROUP BY sku, lot HAVING SUM(qty_base) != 0 ORDER BY MIN(seq)",
            (draft_id,),
        )
    )
    return Draft(
        id=int(row["id"]),
        state=row["state"],
        supplier=row["supplier"],
        po_id=int(row["po_id"]),
        po_no=row["doc_no"],
        asn_id=row["asn_id"],
        asn_revision=row["asn_revision"],
        location=row["location"],
        opened_at=datetime.fromisoformat(row["opened_at"]),
        opened_by=row["opened_by"],
        device=row["device"],
        expected=expected,
        scanned=scanned,
        receipt_id=row["receipt_id"],
        result=json.loads(row["result"])["detail"] if row["result"] else None,
    )


def get_draft(conn: sqlite3.Connection, draft_id: int) -> Draft:
    return load_draft(conn, draft_id)


def list_drafts(
    conn: sqlite3.Connection, *, state: str | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """Drafts, newest first (headers only; `get_draft` for the lines)."""
    where, params = ("WHERE r.state = ?", [state]) if state else ("", [])
    rows = conn.execute(
        "SELECT r.id, r.state, r.supplier, r.po_id, d.doc_no, r.asn_id, r.location, r.opened_at, r.opened_by,"
        " r.device, r.receipt_id, (SELECT COUNT(*) FROM receipt_draft_expected x WHERE x.draft_id = r.id) AS lines"
        f" FROM receipt_drafts r JOIN documents d ON d.id = r.po_id {where} ORDER BY r.id DESC LIMIT ? OFFSET ?",
        (*params, limit, offset),
    ).fetchall()
    return [
        {
            "id": r["id"],
            "state": r["state"],
            "supplier": r["supplier"],
            "po_id": r["po_id"],
            "po_no": r["doc_no"],
            "asn_id": r["asn_id"],
            "location": r["location"],
            "opened_at": r["opened_at"],
            "opened_by": r["opened_by"],
            "device": r["device"],
            "receipt_id": r["receipt_id"],
            "lines": r["lines"],
        }
        for r in rows
    ]


# --- the writer jobs: the handheld (MQTT) and the page (HTTP) ----------------------------------


def receive_job(
    conn: sqlite3.Connection, ctx: PostingContext, action: Action, device: str, policy: ReceivingPolicy
) -> JobOutcome:
    """A handheld's `receive` event in the writer (run once per event by run_event_job): refusals are final acks."""
    conn.execute("SAVEPOINT receive")
    try:
        outcome = perform(conn, ctx, action, policy, actor=device, device=device)
    except DomainError as err:
        conn.execute("ROLLBACK TO receive")
        conn.execute("RELEASE receive")
        return JobOutcome(ok=False, code=err.code, message=err.message, message_en=err.message_en, detail=err.detail)
    except BaseException:
        conn.execute("ROLLBACK TO receive")
        conn.execute("RELEASE receive")
        raise
    conn.execute("RELEASE receive")
    return outcome.job_outcome()


def _http_action(
    conn: sqlite3.Connection, ctx: PostingContext, action: Action, policy: ReceivingPolicy, actor: str
) -> JobOutcome:
    # Raises on a refusal: the writer rolls the job back and the route answers with the error; only a success is
    # kept under the request's idempotency key.
    return perform(conn, ctx, action, policy, actor=actor).job_outcome()


def http_job(
    conn: sqlite3.Connection,
    ctx: PostingContext,
    action: Action,
    policy: ReceivingPolicy,
    actor: str,
    idempotency_key: str,
) -> JobOutcome:
    """A page's action in the writer, once per (user, Idempotency-Key, request)."""
    fingerprint = hashlib.sha256(repr(action).encode()).hexdigest()[:16]
    key = f"http:{actor}:{idempotency_key}:{fingerprint}"
    return run_event_job(conn, ctx, key, "receive", _http_action, (action, policy, actor))


# --- the `receive` event kind -----------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


DraftId = Annotated[int, Field(ge=1, le=2**62)]
QrText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]


class OpenData(_Strict):
    action: Literal["open"]
    qr: QrText
    location: LedgerCode | None = None


class _OnDraft(_Strict):
    """A draft action names its draft by id, or (queued offline) by the note's QR text."""

    draft: DraftId | None = None
    qr: QrText | None = None

    @model_validator(mode="after")
    def _one_reference(self) -> _OnDraft:
        if (self.draft is None) == (self.qr is None):
            raise ValueError("give draft or qr (the delivery note), exactly one")
        return self


class ScanActionData(_OnDraft):
    action: Literal["scan"]
    code: Annotated[str, StringConstraints(pattern=r"^[!-~]{1,200}$")]  # GS1 element strings run long
    qty: Annotated[int, Field(ge=-MAX_SCAN_QTY, le=MAX_SCAN_QTY)] | None = None
    unit: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    lot: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._/-]{1,64}$")] | None = None
    expiry: IsoDate | None = None
    scale: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")] | None = None


class ConfirmData(_OnDraft):
    action: Literal["confirm"]
    as_announced: bool = False


class CancelData(_OnDraft):
    action: Literal["cancel"]


class ReceiveData(
    RootModel[Annotated[OpenData | ScanActionData | ConfirmData | CancelData, Field(discriminator="action")]]
):
    """`evt/receive` from a handheld: one scan-to-receive action (open, scan, confirm, cancel)."""

    model_config = ConfigDict(strict=True, frozen=True)


def to_action(data: OpenData | ScanActionData | ConfirmData | CancelData) -> Action:
    if isinstance(data, OpenData):
        return OpenNote(data.qr, data.location)
    then: ScanGoods | ConfirmDraft | CancelDraft
    draft = data.draft or 0  # 0: filled in from the note's draft (OnNote)
    if isinstance(data, ScanActionData):
        if data.qty is not None and data.scale is not None:
            raise ValueError("give qty or scale, not both")
        then = ScanGoods(draft, data.code, data.qty, data.unit, data.lot, data.expiry, data.scale)
    elif isinstance(data, ConfirmData):
        then = ConfirmDraft(draft, data.as_announced)
    else:
        then = CancelDraft(draft)
    return then if data.qr is None else OnNote(data.qr, then)


def handle_receive(device: str, envelope: EventEnvelope, data: Any, options: DecodeOptions) -> WriterJob:
    """KindSpec handler of `receive`: one writer job per action."""
    assert isinstance(data, ReceiveData)
    policy = options.extra.get(EXTRA_KEY)
    if not isinstance(policy, ReceivingPolicy):
        policy = ReceivingPolicy()
    del envelope  # the event id keys the job (run_event_job); the draft's receipt has its own key
    return WriterJob(receive_job, (to_action(data.root), device, policy))


RECEIVE_KIND = KindSpec(ReceiveData, handle_receive)
