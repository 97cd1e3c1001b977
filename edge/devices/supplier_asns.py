"""Supplier ASNs as they arrive (供应商发货通知接收): JSON over the supplier API, a file through a connector
template, or `evt/asn` from a supplier device on the bus. All three end in `record_incoming_asns`, which runs in
the writer, validates each ASN with `edge.devices.asn.record_asn` and records where it came from; a file with
several ASNs is recorded whole or not at all.
"""

from __future__ import annotations

import calendar
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

from edge.bus.payloads import EventEnvelope, JobOutcome, KindSpec, WriterJob
from edge.devices.asn import (
    MAX_ASN_LINES,
    MAX_NOTE,
    MAX_PRICE_FEN,
    MAX_QTY,
    AsnAlreadyReceived,
    AsnInput,
    AsnLine,
    AsnProblem,
    AsnRecord,
    AsnRejected,
    OpenPurchaseOrder,
    RecordOutcome,
    po_items,
    record_asn,
    resolve_code,
)
from edge.devices.asn_templates import AsnImportRejected, ImportProblem, SourcedAsn, UnitChoice
from edge.devices.supplier_keys import supplier_of_device
from edge.ledger.errors import DomainError, LedgerError
from edge.ledger.posting import PostingContext
from edge.ledger.queries import get_item

ACK_PROBLEMS_CAP = 50  # problems carried in an MQTT ack; the rest are counted (an ack must stay small)

AsnId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")


class AsnFieldInvalid(DomainError, ValueError):
    """A field of an ASN as sent that cannot be taken, with why in Chinese and English. Also a ValueError, so that
    pydantic keeps it as the cause of its validation error: the web layer and the bus show both messages."""

    code = "invalid_asn_field"
    status = 422


def _asn_date(value: object) -> date:
    """A calendar date `YYYY-MM-DD`; each way it can be wrong says so in Chinese and English."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    match = _ISO_DATE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise AsnFieldInvalid("应为日期, 格式 YYYY-MM-DD", "must be a date YYYY-MM-DD")
    year, month, day = (int(part) for part in match.groups())
    if year < 1:
        raise AsnFieldInvalid("年份必须在 1 到 9999 之间", "year must be 1 to 9999")
    if not 1 <= month <= 12:
        raise AsnFieldInvalid("月份必须在 1 到 12 之间", "month must be 1 to 12")
    last = calendar.monthrange(year, month)[1]
    if not 1 <= day <= last:
        raise AsnFieldInvalid(
            f"{year:04d}-{month:02d} 的日期必须在 1 到 {last} 之间",
            f"day must be 1 to {last} in {year:04d}-{month:02d}",
        )
    return date(year, month, day)


AsnDate = Annotated[date, BeforeValidator(_asn_date)]
Lot = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._/-]{1,64}$")]
PoNumber = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SupplierAsnLineIn(_Strict):
    """One ASN line: `code` is a SKU, barcode or GTIN-14; `qty` in `unit` (default: the code's unit)."""

    code: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    qty: Annotated[int, Field(ge=1, le=MAX_QTY)]
    unit: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    lot: Lot | None = None
    expiry: AsnDate | None = None
    price_fen: Annotated[int, Field(ge=0, le=MAX_PRICE_FEN)] | None = None


class SupplierAsnIn(_Strict):
    """An ASN (发货通知) as a supplier sends it: its own id, the PO by document id or number, ship date, lines."""

    asn_id: AsnId
    po_id: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = None
    po_no: PoNumber | None = None
    ship_date: AsnDate
    note: Annotated[str, StringConstraints(max_length=MAX_NOTE)] | None = None
    lines: Annotated[list[SupplierAsnLineIn], Field(min_length=1, max_length=MAX_ASN_LINES)]

    @model_validator(mode="after")
    def _one_po(self) -> SupplierAsnIn:
        if (self.po_id is None) == (self.po_no is None):
            raise AsnFieldInvalid(
                "采购订单请用 po_id (单据 ID) 或 po_no (订单号) 之一给出, 不能都给或都不给",
                "give the purchase order as po_id (document id) or po_no (its number), one of them",
            )
        return self

    def incoming(self) -> IncomingAsn:
        po: int | str = self.po_id if self.po_id is not None else str(self.po_no)
        lines = tuple(
            AsnLine(code=ln.code, qty=ln.qty, unit=ln.unit, lot=ln.lot, expiry=ln.expiry, price_fen=ln.price_fen)
            for ln in self.lines
        )
        return IncomingAsn(self.asn_id, po, self.ship_date, lines, self.note)


@dataclass(frozen=True, slots=True)
class IncomingAsn:
    """An ASN on its way to `record_asn`; `po` is the PO's document id, or its number (doc_no) to look up."""

    asn_id: str
    po: int | str
    ship_date: date
    lines: tuple[AsnLine, ...]
    note: str | None = None
    where: str = ""  # where the ASN starts in an imported file
    line_sources: tuple[str, ...] = ()  # where each line is in an imported file
    line_units: tuple[UnitChoice, ...] = ()  # how each line's unit of an imported file is settled

    @classmethod
    def from_file(cls, asn: SourcedAsn) -> IncomingAsn:
        po: int | str = int(asn.po) if asn.po.isdigit() and len(asn.po) < 19 else asn.po
        return cls(asn.asn_id, po, asn.ship_date, asn.lines, asn.note, asn.where, asn.line_sources, asn.line_units)


@dataclass(frozen=True, slots=True)
class AsnSource:
    """How an ASN reached the box: `http` (JSON), `import` (a file through `template`) or `mqtt` (`device`)."""

    channel: str
    key_id: str | None = None
    template: str | None = None
    device: str | None = None


def _po_id(conn: sqlite3.Connection, supplier: str, po: int | str) -> int:
    """The PO's document id; 0 (unknown to record_asn) when a number names none of the supplier's POs."""
    if isinstance(po, int):
        return po
    row = conn.execute(
        "SELECT id FROM documents WHERE doc_no = ? AND type = 'purchase_order' AND counterparty = ?", (po, supplier)
    ).fetchone()
    return int(row[0]) if row is not None else 0


def _named_po(problems: Sequence[AsnProblem], po: int | str) -> list[AsnProblem]:
    """record_asn names the PO by id; name it as the supplier gave it."""
    return [
        AsnProblem(p.line, p.code, f"采购订单不存在: {po}", f"no such purchase order: {po}")
        if p.code == "unknown_purchase_order"
        else p
        for p in problems
    ]


def _matching_unit(units: Sequence[str], wanted: Sequence[str]) -> str | None:
    """The first wanted unit the item has, exactly, else ignoring case (`KG` for `kg`)."""
    for unit in wanted:
        if unit in units:
            return unit
    for unit in wanted:
        found = next((u for u in units if u.casefold() == unit.casefold()), None)
        if found is not None:
            return found
    return None


def _settle_units(conn: sqlite3.Connection, asn: IncomingAsn) -> tuple[tuple[AsnLine, ...], list[AsnProblem]]:
    """The lines of an imported file with each unit settled against its item: the first of the store units the
    supplier's unit may be that the item has. A line whose item has none of them is a problem (`unknown_unit`)
    naming the item's units; its line stays as it is, for record_asn to find the line's other problems."""
    lines: list[AsnLine] = []
    problems: list[AsnProblem] = []
    units_of: dict[str, list[str]] = {}
    for no, line in enumerate(asn.lines, start=1):
        choice = asn.line_units[no - 1] if no <= len(asn.line_units) else UnitChoice(line.unit)
        if not choice.units:
            lines.append(line)
            continue
        try:
            item = resolve_code(conn, line.code)
        except LedgerError:  # an unknown code: record_asn names it
            lines.append(line)
            continue
        if item.sku not in units_of:
            found = get_item(conn, item.sku)
            units_of[item.sku] = list(found["units"]) if found else []
        units = units_of[item.sku]
        unit = _matching_unit(units, choice.units)
        if unit is not None:
            lines.append(replace(line, unit=unit))
            continue
        lines.append(line)
        wanted = " / ".join(choice.units)
        word_zh = f"文件中的单位 {choice.word}; " if choice.word and choice.word not in choice.units else ""
        word_en = f"the file's unit {choice.word}; " if choice.word and choice.word not in choice.units else ""
        problems.append(
            AsnProblem(
                no,
                "unknown_unit",
                f"商品 {item.sku} ({item.name}) 没有计量单位 {wanted} ({word_zh}商品的单位: {', '.join(units)})",
                f"item {item.sku} ({item.name}) has no unit {wanted} ({word_en}the item's units: {', '.join(units)})",
            )
        )
    return tuple(lines), problems


def _with_unit_problems(found: Sequence[AsnProblem], unit_problems: Sequence[AsnProblem]) -> list[AsnProblem]:
    """record_asn's problems with the settled units' own in place of its `unknown_unit` for the same lines."""
    flagged = {p.line for p in unit_problems}
    kept = [p for p in found if not (p.code == "unknown_unit" and p.line in flagged)]
    return sorted([*kept, *unit_problems], key=lambda p: p.line or 0)


def _record(conn: sqlite3.Connection, supplier: str, asn: IncomingAsn, source: AsnSource, now: datetime) -> AsnRecord:
    po_id = _po_id(conn, supplier, asn.po)
    lines, unit_problems = _settle_units(conn, asn)
    try:
        record = record_asn(conn, supplier, AsnInput(asn.asn_id, po_id, asn.ship_date, lines, asn.note), now)
        if unit_problems:  # record_asn refuses a unit the item does not have; never keep one regardless
            raise AsnRejected(unit_problems)
    except AsnRejected as err:
        problems = _with_unit_problems(err.problems, unit_problems) if unit_problems else list(err.problems)
        if isinstance(asn.po, str):
            problems = _named_po(problems, asn.po)
        if problems == list(err.problems):
            raise
        raise (AsnAlreadyReceived(problems) if isinstance(err, AsnAlreadyReceived) else AsnRejected(problems)) from None
    if record.outcome in (RecordOutcome.CREATED, RecordOutcome.REVISED):
        conn.execute(
            "INSERT OR REPLACE INTO asn_sources (supplier, asn_id, revision, channel, template, key_id, device,"
            " received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                supplier,
                record.asn_id,
                record.revision,
                source.channel,
                source.template,
                source.key_id,
                source.device,
                now.isoformat(),
            ),
        )
    return record


def _file_problems(asn: IncomingAsn, err: AsnRejected) -> list[ImportProblem]:
    """record_asn's problems placed in the supplier's file: line n of the ASN is where its line n came from."""
    placed = []
    for problem in err.problems:
        where = asn.where
        if problem.line is not None and 0 < problem.line <= len(asn.line_sources):
            where = asn.line_sources[problem.line - 1]
        line = int(where.removeprefix("line ")) if where.startswith("line ") else None
        placed.append(
            ImportProblem(
                where,
                "lines" if problem.line is not None else "asn",
                problem.code,
                problem.message,
                problem.message_en,
                line,
                asn.asn_id,
                problem.line,
            )
        )
    return placed


def record_incoming_asns(
    conn: sqlite3.Connection,
    supplier: str,
    asns: tuple[IncomingAsn, ...],
    source: AsnSource,
    now: datetime,
) -> list[AsnRecord]:
    """Record the ASNs of one submission (runs in the writer): all of them, or none with every problem.

    One ASN sent as JSON is refused with record_asn's own `AsnRejected`; a file with `AsnImportRejected`,
    its problems placed at the file's lines.
    """
    if source.channel != "import" and len(asns) == 1:
        return [_record(conn, supplier, asns[0], source, now)]
    records, problems = [], []
    for asn in asns:
        try:
            records.append(_record(conn, supplier, asn, source, now))
        except AsnRejected as err:
            problems.extend(_file_problems(asn, err))
    if problems:
        raise AsnImportRejected(source.template or source.channel, problems[:200], len(problems) > 200)
    return records


def supplier_purchase_order(conn: sqlite3.Connection, supplier: str, po_id: int) -> OpenPurchaseOrder | None:
    """One of the supplier's unreversed purchase orders with what remains (None for anyone else's)."""
    row = conn.execute(
        "SELECT id, doc_no, business_date FROM documents d WHERE id = ? AND type = 'purchase_order'"
        " AND counterparty = ? AND NOT EXISTS (SELECT 1 FROM documents r WHERE r.reverses_id = d.id)",
        (po_id, supplier),
    ).fetchone()
    if row is None:
        return None
    items = po_items(conn, po_id)
    return OpenPurchaseOrder(
        po_id, row["doc_no"], supplier, date.fromisoformat(row["business_date"]), tuple(items.values())
    )


def asn_source(conn: sqlite3.Connection, supplier: str, asn_id: str, revision: int) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT channel, template, key_id, device, received_at FROM asn_sources"
        " WHERE supplier = ? AND asn_id = ? AND revision = ?",
        (supplier, asn_id, revision),
    ).fetchone()
    return None if row is None else dict(row)


# --- evt/asn from a supplier device ------------------------------------------------------------


def record_device_asn(conn: sqlite3.Connection, ctx: PostingContext, device: str, asn: IncomingAsn) -> JobOutcome:
    """Writer job of an `evt/asn`: the device must be a supplier device linked to a supplier (once per event)."""
    supplier = supplier_of_device(conn, device)
    if supplier is None:
        return JobOutcome(
            ok=False,
            code="not_a_supplier_device",
            message=f"设备 {device} 不是已关联供应商的供应商设备, 不能发送发货通知",
            message_en=f"device {device} is not a supplier device linked to a supplier; it cannot send ASNs",
        )
    conn.execute("SAVEPOINT device_asn")
    try:
        record = _record(conn, supplier, asn, AsnSource("mqtt", device=device), ctx.now)
    except AsnRejected as err:
        conn.execute("ROLLBACK TO device_asn")
        conn.execute("RELEASE device_asn")
        shown = [p._asdict() for p in err.problems[:ACK_PROBLEMS_CAP]]
        return JobOutcome(
            ok=False,
            code=err.code,
            message=err.message,
            message_en=err.message_en,
            detail={"asn_id": asn.asn_id, "problems": shown, "more_problems": len(err.problems) - len(shown)},
        )
    conn.execute("RELEASE device_asn")
    return JobOutcome(
        ok=True,
        code="ok",
        message=f"发货通知 {record.asn_id} 已记录 (第 {record.revision} 版, {len(record.lines)} 行)",
        message_en=f"ASN {record.asn_id} recorded (revision {record.revision}, {len(record.lines)} lines)",
        detail={
            "asn_id": record.asn_id,
            "revision": record.revision,
            "outcome": record.outcome.value,
            "po_id": record.po_id,
            "po_no": record.po_no,
            "lines": len(record.lines),
        },
    )


def handle_asn_event(device: str, envelope: EventEnvelope, data: Any, options: Any) -> WriterJob:
    """KindSpec handler of `evt/asn`: the ASN becomes a writer job (the device check needs the database)."""
    assert isinstance(data, SupplierAsnIn)
    return WriterJob(record_device_asn, (device, data.incoming()))


EVENT_KIND = "asn"
ASN_KIND = KindSpec(SupplierAsnIn, handle_asn_event)
