"""Ingest of a store's outbox batches: idempotent on (store, seq), applied strictly in order, all of a batch or
nothing.

A batch beyond a gap is stored (compressed) and `queued`; the request that fills the gap applies it and every
queued successor. The same (store, seq) again with the same digest is a `duplicate` and changes nothing; with
another digest it is a `batch_conflict`, refused and kept in `rejections`. Replicas may receive the same batch at
once: the primary key of `batches` and the row lock on the store's `sync_state` make one of them win and the
other answer `duplicate`.

Facts are aggregated per batch in Python and written with one executemany per table: a million outbox rows must
upload in under a minute on SQLite (tools/bench/sync.py).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeGuard

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from cloud_sync.errors import CloudError
from cloud_sync.tables import (
    batches,
    compliance_suppliers,
    documents,
    gl_period,
    item_activity,
    items,
    lots,
    rejections,
    sales_daily,
    stock,
    sync_state,
)
from edge.sync.protocol import MAX_BATCH_ROWS, ProtocolError, batch_digest, inflate, parse_json

log = logging.getLogger("storebox.cloud.ingest")

SALE_SIGN = {"sale": 1, "customer_return": -1}
OUTBOUND_TYPES = frozenset({"sale", "transfer_out", "write_off", "supplier_return", "gift_out"})
KNOWN_KINDS = frozenset({"document.posted", "state.items", "state.compliance"})
MAX_MISSING = 1000


@dataclass(frozen=True, slots=True)
class Head:
    """What the box said of its outbox when it sent: the newest row, rows not yet sent, the oldest of those."""

    outbox_seq: int | None = None
    pending_rows: int | None = None
    oldest_pending_at: datetime | None = None
    sent_at: datetime | None = None


def _invalid(message: str, message_en: str, **detail: Any) -> CloudError:
    return CloudError("batch_invalid", message, message_en, 422, **detail)


def _from_protocol(error: ProtocolError) -> CloudError:
    return CloudError(error.code, error.message, error.message_en, 413 if error.code == "batch_too_large" else 422)


# --- validation ----------------------------------------------------------------------------------------------


MAX_AMOUNT = 2**50  # fen or base units of one value; sums of a year of them stay far inside BIGINT


def _int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and -MAX_AMOUNT < value < MAX_AMOUNT


def _text(value: Any, limit: int = 200) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit


def _opt_text(value: Any, limit: int = 200) -> bool:
    return value is None or (isinstance(value, str) and len(value) <= limit)


def _date(value: Any) -> bool:
    if type(value) is not str or len(value) != 10 or value[4] != "-" or value[7] != "-":
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _row_error(index: int, field: str, what: str, what_en: str) -> CloudError:
    return _invalid(
        f"第 {index + 1} 行 {field}: {what}", f"row {index + 1} {field}: {what_en}", row=index + 1, field=field
    )


def _check_document(index: int, payload: dict[str, Any]) -> None:
    doc = payload.get("document")
    if not isinstance(doc, dict):
        raise _row_error(index, "payload.document", "缺失或不是对象", "missing or not an object")
    for name in ("id", "gross_fen", "tax_fen", "cost_fen"):
        if not _int(doc.get(name)):
            raise _row_error(index, f"document.{name}", "应为整数", "must be an integer")
    for name, limit in (("doc_no", 64), ("type", 32), ("posted_at", 40)):
        if not _text(doc.get(name), limit):
            raise _row_error(index, f"document.{name}", "应为非空文本", "must be non-empty text")
    if not _date(doc.get("business_date")):
        raise _row_error(index, "document.business_date", "应为 YYYY-MM-DD", "must be YYYY-MM-DD")
    for name in ("counterparty", "location", "to_location"):
        if not _opt_text(doc.get(name), 64):
            raise _row_error(index, f"document.{name}", "应为文本或空", "must be text or null")
    if not _opt_text(doc.get("external_ref"), 200):
        raise _row_error(index, "document.external_ref", "应为文本或空", "must be text or null")
    if doc.get("reverses_id") is not None and not _int(doc.get("reverses_id")):
        raise _row_error(index, "document.reverses_id", "应为整数或空", "must be an integer or null")
    lines = payload.get("lines")
    if not isinstance(lines, list):
        raise _row_error(index, "payload.lines", "应为列表", "must be a list")
    for n, line in enumerate(lines):
        if not isinstance(line, dict):
            raise _row_error(index, f"lines[{n}]", "应为对象", "must be an object")
        for name in ("line_no", "qty_base", "gross_fen", "tax_fen"):
            if not _int(line.get(name)):
                raise _row_error(index, f"lines[{n}].{name}", "应为整数", "must be an integer")
        if not _text(line.get("sku"), 64):
            raise _row_error(index, f"lines[{n}].sku", "应为非空文本", "must be non-empty text")
        if not _opt_text(line.get("lot"), 64) or (line.get("expiry") is not None and not _date(line.get("expiry"))):
            raise _row_error(index, f"lines[{n}].lot", "批次或效期无效", "invalid lot or expiry")
    moves = payload.get("moves")
    if not isinstance(moves, list):
        raise _row_error(index, "payload.moves", "应为列表", "must be a list")
    for n, move in enumerate(moves):
        if not (
            isinstance(move, list)
            and len(move) == 6
            and _int(move[0])
            and _text(move[1], 64)
            and _text(move[2], 64)
            and isinstance(move[3], str)
            and len(move[3]) <= 64
            and _int(move[4])
            and _int(move[5])
        ):
            raise _row_error(
                index,
                f"moves[{n}]",
                "应为 [行号, SKU, 库位, 批次, 数量, 金额]",
                "must be [line, sku, location, lot, qty, value]",
            )
    voucher = payload.get("voucher")
    if voucher is not None:
        if (
            not isinstance(voucher, dict)
            or not _text(voucher.get("voucher_no"), 64)
            or not isinstance(voucher.get("lines"), list)
        ):
            raise _row_error(index, "voucher", "凭证格式无效", "malformed voucher")
        for n, vl in enumerate(voucher["lines"]):
            if not (isinstance(vl, list) and len(vl) == 3 and _text(vl[0], 32) and _int(vl[1]) and _int(vl[2])):
                raise _row_error(
                    index, f"voucher.lines[{n}]", "应为 [科目, 借方, 贷方]", "must be [account, debit, credit]"
                )


def _check_state(index: int, kind: str, payload: dict[str, Any]) -> None:
    key = "items" if kind == "state.items" else "suppliers"
    entries = payload.get(key)
    if not isinstance(entries, list):
        raise _row_error(index, f"payload.{key}", "应为列表", "must be a list")
    for n, entry in enumerate(entries):
        ident = "sku" if key == "items" else "id"
        if not isinstance(entry, dict) or not _text(entry.get(ident), 64) or not _text(entry.get("name"), 200):
            raise _row_error(index, f"{key}[{n}]", f"须有 {ident} 和 name", f"needs {ident} and name")
        for name, limit in _STATE_TEXT[key]:
            if not _opt_text(entry.get(name), limit):
                raise _row_error(index, f"{key}[{n}].{name}", "应为文本或空", "must be text or null")
        if key == "suppliers" and entry.get("papers") is not None and not isinstance(entry["papers"], list):
            raise _row_error(index, f"{key}[{n}].papers", "应为列表", "must be a list")


_STATE_TEXT = {
    "items": (
        ("name_en", 200),
        ("category", 64),
        ("category_name", 200),
        ("category_name_en", 200),
        ("storage_class", 16),
        ("base_unit", 16),
    ),
    "suppliers": (("freeze_reason", 2000), ("frozen_at", 40)),
}


def validate_batch(data: Any, store: str) -> tuple[int, list[dict[str, Any]]]:
    """(seq, rows) of a batch body, or CloudError naming what is wrong (the row and field)."""
    if not isinstance(data, dict):
        raise _invalid("批次应为 JSON 对象", "a batch must be a JSON object")
    if data.get("v") != 1:
        raise _invalid("不支持的协议版本", "unsupported protocol version", field="v")
    if data.get("store") != store:
        raise CloudError(
            "store_mismatch", "批次所属门店与签名门店不符", "the batch names another store than the signer", 403
        )
    seq = data.get("seq")
    if not _int(seq) or seq < 1:
        raise _invalid("批次序号应为正整数", "batch seq must be a positive integer", field="seq")
    rows = data.get("rows")
    if not isinstance(rows, list) or not rows or len(rows) > MAX_BATCH_ROWS:
        raise _invalid(f"rows 应为 1..{MAX_BATCH_ROWS} 行", f"rows must hold 1..{MAX_BATCH_ROWS} rows", field="rows")
    previous = 0
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise _row_error(index, "row", "应为对象", "must be an object")
        row_seq = row.get("seq")
        if not _int(row_seq) or row_seq <= previous:
            raise _row_error(index, "seq", "应为递增的正整数", "must be increasing positive integers")
        previous = row_seq
        kind = row.get("kind")
        if not _text(kind, 64):
            raise _row_error(index, "kind", "应为非空文本", "must be non-empty text")
        if not _text(row.get("created_at"), 40):
            raise _row_error(index, "created_at", "应为时间文本", "must be a timestamp")
        payload = row.get("payload")
        if not isinstance(payload, dict):
            raise _row_error(index, "payload", "应为对象", "must be an object")
        if kind == "document.posted":
            _check_document(index, payload)
        elif kind in ("state.items", "state.compliance"):
            _check_state(index, kind, payload)
    return seq, rows


# --- applying ------------------------------------------------------------------------------------------------


def _insert(conn: sa.Connection, table: sa.Table) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def _upsert_set(
    conn: sa.Connection, table: sa.Table, keys: Sequence[str], rows: list[dict[str, Any]], cols: Sequence[str]
) -> None:
    if not rows:
        return
    stmt = _insert(conn, table)
    stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in cols})
    conn.execute(stmt, rows)


DOCUMENT_COLUMNS = (
    "store", "doc_id", "doc_no", "type", "business_date", "posted_at", "counterparty", "location", "to_location",
    "reverses_id", "external_ref", "gross_fen", "tax_fen", "cost_fen", "voucher_no", "voucher", "outbox_seq",
)  # fmt: skip


def _marks(conn: sa.Connection, n: int) -> str:
    return ", ".join(["?" if conn.dialect.paramstyle == "qmark" else "%s"] * n)


def _insert_many(conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """A plain INSERT of many rows through the driver's executemany: the hot path of a catch-up (a million
    documents), where building SQLAlchemy parameters per row would cost more than the database does."""
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({_marks(conn, len(columns))})"
    conn.exec_driver_sql(sql, rows)


def _add_many(
    conn: sa.Connection, table: sa.Table, keys: Sequence[str], adds: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """INSERT ... ON CONFLICT DO UPDATE SET col = col + excluded.col, through the driver (the same SQL on SQLite
    and PostgreSQL): the aggregated facts of a batch, a few thousand rows."""
    if not rows:
        return
    columns = (*keys, *adds)
    sets = ", ".join(f"{c} = {table.name}.{c} + excluded.{c}" for c in adds)
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({_marks(conn, len(columns))})"
        f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sets}"
    )
    conn.exec_driver_sql(sql, rows)


def _original_types(conn: sa.Connection, store: str, ids: Iterable[int]) -> dict[int, str]:
    wanted = sorted(set(ids))
    found: dict[int, str] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for r in conn.execute(
            sa.select(documents.c.doc_id, documents.c.type).where(
                documents.c.store == store, documents.c.doc_id.in_(chunk)
            )
        ):
            found[int(r.doc_id)] = str(r.type)
    return found


def apply_rows(conn: sa.Connection, store: str, rows: Sequence[dict[str, Any]], now: datetime) -> int:
    """Apply validated outbox rows, in order, to the facts; returns the number of documents applied."""
    docs: list[tuple[Any, ...]] = []
    stock_acc: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    sales_acc: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    gl_acc: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    lot_rows: dict[tuple[str, str], str] = {}
    activity: dict[str, str] = {}
    types_here: dict[int, str] = {}
    posted = [r["payload"] for r in rows if r["kind"] == "document.posted"]
    reversed_ids = [int(p["document"]["reverses_id"]) for p in posted if p["document"].get("reverses_id") is not None]
    for p in posted:
        types_here[int(p["document"]["id"])] = str(p["document"]["type"])
    earlier = _original_types(conn, store, (i for i in reversed_ids if i not in types_here))
    for row in rows:
        if row["kind"] != "document.posted":
            continue
        payload = row["payload"]
        doc = payload["document"]
        doc_type = str(doc["type"])
        day = str(doc["business_date"])
        voucher = payload.get("voucher")
        docs.append(
            (
                store,
                int(doc["id"]),
                doc["doc_no"],
                doc_type,
                day,
                doc["posted_at"],
                doc.get("counterparty"),
                doc.get("location"),
                doc.get("to_location"),
                doc.get("reverses_id"),
                doc.get("external_ref"),
                int(doc["gross_fen"]),
                int(doc["tax_fen"]),
                int(doc["cost_fen"]),
                voucher["voucher_no"] if voucher else None,
                orjson.dumps(voucher["lines"]).decode() if voucher else None,
                int(row["seq"]),
            )
        )
        line_cost: dict[int, int] = defaultdict(int)
        for line_no, sku, location, lot, qty, value in payload["moves"]:
            acc = stock_acc[(sku, location, lot)]
            acc[0] += qty
            acc[1] += value
            line_cost[line_no] -= value
            if qty < 0 and doc_type in OUTBOUND_TYPES and day > activity.get(sku, ""):
                activity[sku] = day
        sign = SALE_SIGN.get(doc_type, 0)
        if doc_type == "reversal" and doc.get("reverses_id") is not None:
            original = types_here.get(int(doc["reverses_id"])) or earlier.get(int(doc["reverses_id"]))
            sign = SALE_SIGN.get(original or "", 0)
        for line in payload["lines"]:
            if sign:
                acc = sales_acc[(day, line["sku"])]
                acc[0] += sign * line["qty_base"]
                acc[1] += sign * line["gross_fen"]
                acc[2] += sign * line["tax_fen"]
                acc[3] += line_cost.get(line["line_no"], 0)
            if line.get("lot") and line.get("expiry"):
                lot_rows[(line["sku"], line["lot"])] = line["expiry"]
        if voucher:
            period = day[:7]
            for account, debit, credit in voucher["lines"]:
                acc = gl_acc[(period, account)]
                acc[0] += debit
                acc[1] += credit
    if docs:
        _insert_many(conn, documents, DOCUMENT_COLUMNS, docs)
    _add_many(
        conn, stock, ("store", "sku", "location", "lot"), ("qty", "value_fen"),
        [(store, *k, *v) for k, v in stock_acc.items()],
    )  # fmt: skip
    _add_many(
        conn, sales_daily, ("store", "day", "sku"), ("qty", "gross_fen", "tax_fen", "cost_fen"),
        [(store, *k, *v) for k, v in sales_acc.items()],
    )  # fmt: skip
    _add_many(
        conn, gl_period, ("store", "period", "account"), ("debit_fen", "credit_fen"),
        [(store, *k, *v) for k, v in gl_acc.items()],
    )  # fmt: skip
    _upsert_set(
        conn,
        lots,
        ("store", "sku", "lot"),
        [{"store": store, "sku": k[0], "lot": k[1], "expiry": v} for k, v in lot_rows.items()],
        ("expiry",),
    )
    if activity:
        stmt = _insert(conn, item_activity)
        stmt = stmt.on_conflict_do_update(
            index_elements=["store", "sku"],
            set_={
                "last_outbound_date": sa.case(
                    (
                        stmt.excluded.last_outbound_date > item_activity.c.last_outbound_date,
                        stmt.excluded.last_outbound_date,
                    ),
                    else_=item_activity.c.last_outbound_date,
                )
            },
        )
        conn.execute(stmt, [{"store": store, "sku": s, "last_outbound_date": d} for s, d in activity.items()])
    for row in rows:
        if row["kind"] == "state.items":
            _replace_items(conn, store, row["payload"]["items"])
        elif row["kind"] == "state.compliance":
            _replace_compliance(conn, store, row["payload"]["suppliers"], now)
    from cloud_sync.transfers.derive import apply_rows as derive_transfers

    derive_transfers(conn, store, rows)
    return len(docs)


def _replace_items(conn: sa.Connection, store: str, entries: list[dict[str, Any]]) -> None:
    conn.execute(items.delete().where(items.c.store == store))
    if entries:
        conn.execute(
            items.insert(),
            [
                {
                    "store": store,
                    "sku": e["sku"],
                    "name": e["name"],
                    "name_en": e.get("name_en"),
                    "category": e.get("category"),
                    "category_name": e.get("category_name"),
                    "category_name_en": e.get("category_name_en"),
                    "storage_class": e.get("storage_class"),
                    "base_unit": e.get("base_unit"),
                    "shelf_life_days": e.get("shelf_life_days") if _int(e.get("shelf_life_days")) else None,
                }
                for e in {e["sku"]: e for e in entries}.values()  # a repeated sku: the last one counts
            ],
        )


def _replace_compliance(conn: sa.Connection, store: str, entries: list[dict[str, Any]], now: datetime) -> None:
    conn.execute(compliance_suppliers.delete().where(compliance_suppliers.c.store == store))
    if entries:
        conn.execute(
            compliance_suppliers.insert(),
            [
                {
                    "store": store,
                    "supplier": e["id"],
                    "name": e["name"],
                    "frozen": 1 if e.get("frozen") else 0,
                    "freeze_reason": e.get("freeze_reason"),
                    "frozen_at": e.get("frozen_at"),
                    "papers": json.dumps(e.get("papers") or [], ensure_ascii=False),
                    "next_expiry": e.get("next_expiry") if _date(e.get("next_expiry")) else None,
                    "updated_at": now.isoformat(),
                }
                for e in {e["id"]: e for e in entries}.values()
            ],
        )


# --- the batch -----------------------------------------------------------------------------------------------


def _state_row(conn: sa.Connection, store: str) -> Any:
    stmt = sa.select(sync_state).where(sync_state.c.store == store)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        conn.execute(_insert(conn, sync_state).values(store=store).on_conflict_do_nothing())
        row = conn.execute(stmt).first()
    return row


def missing_batches(conn: sa.Connection, store: str, applied_through: int) -> list[int]:
    stored = [
        int(s)
        for s in conn.execute(
            sa.select(batches.c.seq)
            .where(batches.c.store == store, batches.c.seq > applied_through)
            .order_by(batches.c.seq)
        ).scalars()
    ]
    missing: list[int] = []
    expected = applied_through + 1
    for seq in stored:
        while expected < seq and len(missing) < MAX_MISSING:
            missing.append(expected)
            expected += 1
        expected = seq + 1
    return missing


def _apply_batch(
    conn: sa.Connection, store: str, seq: int, rows: list[dict[str, Any]], last_row: int, now: datetime
) -> int:
    fresh = [r for r in rows if r["seq"] > last_row]  # rows already applied (a box that re-batched) count once
    apply_rows(conn, store, fresh, now)
    return max(last_row, int(rows[-1]["seq"]))


def note_contact(conn: sa.Connection, store: str, head: Head, now: datetime) -> None:
    values: dict[str, Any] = {"last_contact_at": now.isoformat()}
    if head.sent_at is not None:
        values["clock_offset_s"] = round((now - head.sent_at).total_seconds(), 3)
    if head.outbox_seq is not None:
        values["head_seq"] = head.outbox_seq
    if head.pending_rows is not None:
        values["pending_rows"] = head.pending_rows
        oldest = head.oldest_pending_at
        if oldest is not None and head.sent_at is not None:
            oldest = oldest + (now - head.sent_at)  # the box's clock, moved onto ours
        values["oldest_pending_at"] = oldest.isoformat() if oldest is not None and head.pending_rows else None
    conn.execute(sync_state.update().where(sync_state.c.store == store).values(**values))


def without_nul(value: Any) -> Any:
    """The batch with every NUL character in its texts replaced by U+FFFD: PostgreSQL cannot store NUL in text,
    and one item name typed with a NUL on a box must not stall that store's sync (SQLite and PostgreSQL then hold
    the same text). Only run when the raw body holds an escaped NUL at all."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    return value


def ingest_batch(
    engine: sa.Engine, store: str, body: bytes, *, compressed: bool, head: Head, now: datetime
) -> dict[str, Any]:
    """Store and apply one signed batch; the answer of POST /api/v1/sync/batches."""
    try:
        raw = inflate(body) if compressed else body
        data = parse_json(raw)
    except ProtocolError as error:
        raise _from_protocol(error) from None
    if b"\\u0000" in raw:
        data = without_nul(data)
    seq, rows = validate_batch(data, store)
    digest = batch_digest(raw)
    for attempt in range(3):
        try:
            return _ingest(engine, store, seq, rows, digest, body if compressed else None, raw, head, now)
        except sa.exc.IntegrityError:
            # Another replica stored this batch between our look and our insert: answer from what it stored.
            # Still failing on a fresh look means the rows themselves collide (a document applied before).
            if attempt == 2:
                raise _invalid(
                    "批次中的单据与已汇总的单据重复", "the batch repeats documents already applied", seq=seq
                ) from None
    raise AssertionError("unreachable")


def _ingest(
    engine: sa.Engine,
    store: str,
    seq: int,
    rows: list[dict[str, Any]],
    digest: str,
    compressed: bytes | None,
    raw: bytes,
    head: Head,
    now: datetime,
) -> dict[str, Any]:
    import gzip

    with engine.begin() as conn:
        state = _state_row(conn, store)
        applied_through, last_row = int(state.applied_through), int(state.last_row_seq)
        existing = conn.execute(
            sa.select(batches.c.digest).where(batches.c.store == store, batches.c.seq == seq)
        ).first()
        if existing is not None or seq <= applied_through:
            if existing is not None and existing.digest != digest:
                conflict = CloudError(
                    "batch_conflict",
                    f"批次 {seq} 已收到但内容不同，已拒绝并记录",
                    f"batch {seq} was received before with other content; refused and logged",
                    409,
                    seq=seq,
                )
                status = "conflict"
            else:
                conflict = None
                status = "duplicate"
            note_contact(conn, store, head, now)
            missing = missing_batches(conn, store, applied_through)
        else:
            conflict = None
            row_range = {"first_row": int(rows[0]["seq"]), "last_row": int(rows[-1]["seq"])}
            if seq == applied_through + 1:
                conn.execute(
                    batches.insert().values(
                        store=store,
                        seq=seq,
                        digest=digest,
                        row_count=len(rows),
                        received_at=now.isoformat(),
                        applied_at=now.isoformat(),
                        **row_range,
                    )
                )
                last_row = _apply_batch(conn, store, seq, rows, last_row, now)
                applied_through = seq
                # Batches that waited behind the gap this one filled.
                while True:
                    queued = conn.execute(
                        sa.select(batches.c.body).where(
                            batches.c.store == store,
                            batches.c.seq == applied_through + 1,
                            batches.c.applied_at.is_(None),
                        )
                    ).first()
                    if queued is None:
                        break
                    body = queued.body
                    queued_raw = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
                    _, queued_rows = validate_batch(parse_json(queued_raw), store)
                    last_row = _apply_batch(conn, store, applied_through + 1, queued_rows, last_row, now)
                    applied_through += 1
                    conn.execute(
                        batches.update()
                        .where(batches.c.store == store, batches.c.seq == applied_through)
                        .values(applied_at=now.isoformat(), body=None)
                    )
                status = "applied"
            else:
                conn.execute(
                    batches.insert().values(
                        store=store,
                        seq=seq,
                        digest=digest,
                        row_count=len(rows),
                        received_at=now.isoformat(),
                        body=compressed if compressed is not None else raw,
                        **row_range,
                    )
                )
                status = "queued"
            conn.execute(
                sync_state.update()
                .where(sync_state.c.store == store)
                .values(applied_through=applied_through, last_row_seq=last_row, last_batch_at=now.isoformat())
            )
            note_contact(conn, store, head, now)
            missing = missing_batches(conn, store, applied_through)
    if conflict is not None:
        with engine.begin() as conn:
            conn.execute(
                rejections.insert().values(
                    at=now.isoformat(),
                    store=store,
                    code=conflict.code,
                    detail=json.dumps({"seq": seq, "digest": digest}),
                )
            )
        log.warning("batch %s of store %s conflicts with the one stored / 批次内容冲突", seq, store)
        raise conflict
    return {
        "store": store,
        "seq": seq,
        "status": status,
        "applied_through": applied_through,
        "missing": missing,
        "rows": 0 if status == "duplicate" else len(rows),  # rows this request stored
        "server_time": int(now.timestamp()),
    }


def sync_answer(engine: sa.Engine, store: str, head: Head | None, now: datetime) -> dict[str, Any]:
    """The store's sync state (heartbeat and GET state), noting the contact."""
    with engine.begin() as conn:
        state = _state_row(conn, store)
        if head is not None:
            note_contact(conn, store, head, now)
        missing = missing_batches(conn, store, int(state.applied_through))
    return {
        "store": store,
        "applied_through": int(state.applied_through),
        "last_row_seq": int(state.last_row_seq),
        "missing": missing,
        "last_batch_at": state.last_batch_at,
        "server_time": int(now.timestamp()),
    }


def parse_head(params: dict[str, str]) -> Head:
    """The box's outbox head from the (signed) query string; anything unreadable is left out, never fatal."""

    def number(name: str) -> int | None:
        value = params.get(name, "")
        return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else None

    def when(name: str) -> datetime | None:
        try:
            value = datetime.fromisoformat(params[name])
        except (KeyError, ValueError):
            return None
        return value if value.tzinfo is not None else None

    return Head(number("head"), number("pending"), when("oldest"), when("sent_at"))


__all__ = ["Head", "ingest_batch", "parse_head", "sync_answer"]
