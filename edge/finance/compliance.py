"""The supplier qualification cabinet (资质档案) and compliance at the points of purchase and payment.

Papers are uploaded (the file and its OCR reading are recorded), then a person confirms the reading, possibly
corrected, and only then does the paper count. Confirming checks the unified social credit code and compares the
licence address with the supplier's registered address: a mismatch freezes payments at once and opens a review
ticket; a reviewer who is not the person who opened it lifts the freeze, with a reason. A bank account change
freezes payments until a second person approves it. Purchase orders and payments check the freezes and whether
the papers are complete and valid. Every act writes an audit row.

Pure domain: functions over a connection; the caller owns the transaction, and each write function runs in a
savepoint of its own, so a refusal leaves nothing half-written. Clocks come in as arguments.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from edge.finance.addresses import compare_addresses, describe_differences
from edge.finance.errors import (
    ApprovalError,
    ComplianceStateError,
    CreditCodeMismatch,
    InvalidComplianceInput,
    PapersIncomplete,
    SupplierFrozen,
    UnknownComplianceRecord,
    UnknownSupplier,
)
from edge.finance.papers import (
    PAPER_NAMES,
    FileType,
    PaperFields,
    PaperKind,
    check_confirmable,
    expires_on,
    parse_kind,
    required_kinds,
)
from edge.finance.uscc import validate_uscc
from edge.ledger.audit import append_audit
from edge.ledger.commands import DocType, PostDocument
from edge.ledger.errors import IdempotencyKeyReused, InvalidCommand
from edge.ledger.masterdata import add_supplier
from edge.ledger.posting import Guard
from edge.rules.holds import check_not_held

DEFAULT_WARN_DAYS = (30, 7)
MAX_TEXT = 500
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_BANK_ACCOUNT = re.compile(r"^[0-9]{8,32}$")


class FreezeReason(StrEnum):
    ADDRESS_MISMATCH = "address_mismatch"  # 营业执照地址与登记地址不符
    BANK_ACCOUNT_CHANGE = "bank_account_change"  # 银行账户变更待审批
    MANUAL = "manual"  # 人工冻结


FREEZE_NAMES: dict[FreezeReason, tuple[str, str]] = {
    FreezeReason.ADDRESS_MISMATCH: ("证照地址与登记地址不符", "licence address differs from the registered address"),
    FreezeReason.BANK_ACCOUNT_CHANGE: ("银行账户变更待审批", "bank account change awaiting approval"),
    FreezeReason.MANUAL: ("人工冻结", "frozen by a reviewer"),
}


# --- values ---


@dataclass(frozen=True, slots=True)
class Created:
    """The record a creating request made (or, on a replay of its key, made the first time)."""

    id: int | str
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class PaperState:
    """One required kind's standing in a supplier's cabinet on a day."""

    kind: PaperKind
    paper: int | None
    expires_on: date | None
    days_left: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "paper": self.paper,
            "expires_on": self.expires_on.isoformat() if self.expires_on else None,
            "days_left": self.days_left,
        }


@dataclass(frozen=True, slots=True)
class FreezeInfo:
    id: int
    reason: FreezeReason
    note: str
    opened_by: str
    opened_at: str
    ticket: int | None
    bank_change: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "reason": self.reason.value,
            "note": self.note,
            "opened_by": self.opened_by,
            "opened_at": self.opened_at,
            "ticket": self.ticket,
            "bank_change": self.bank_change,
        }


@dataclass(frozen=True, slots=True)
class QualificationStatus:
    """A supplier's qualifications on `today`: complete when every required kind has a confirmed paper that has
    not expired. Payable when complete and not frozen."""

    supplier: str
    name: str
    today: date
    food_supplier: bool
    required: tuple[PaperKind, ...]
    valid: tuple[PaperState, ...]
    missing: tuple[PaperKind, ...]
    expired: tuple[PaperState, ...]
    expiring: tuple[PaperState, ...]  # valid, but within the warning days
    pending: tuple[int, ...]  # uploaded papers awaiting a person's confirmation
    freezes: tuple[FreezeInfo, ...]

    @property
    def complete(self) -> bool:
        return not self.missing and not self.expired

    @property
    def frozen(self) -> bool:
        return bool(self.freezes)

    @property
    def payable(self) -> bool:
        return self.complete and not self.frozen

    def problems(self, *, papers: bool = True) -> tuple[list[str], list[str]]:
        """What is missing, expired (unless `papers` is false) or frozen, in Chinese and in English, one each."""
        zh: list[str] = []
        en: list[str] = []
        for kind in self.missing if papers else ():
            zh.append(f"缺少{PAPER_NAMES[kind][0]}")
            en.append(f"{PAPER_NAMES[kind][1]} missing")
        for state in self.expired if papers else ():
            zh.append(f"{PAPER_NAMES[state.kind][0]}已于 {state.expires_on} 过期")
            en.append(f"{PAPER_NAMES[state.kind][1]} expired on {state.expires_on}")
        for freeze in self.freezes:
            zh.append(f"付款已冻结 (冻结单 {freeze.id}: {FREEZE_NAMES[freeze.reason][0]})")
            en.append(f"payments frozen (freeze {freeze.id}: {FREEZE_NAMES[freeze.reason][1]})")
        return zh, en

    def to_json(self) -> dict[str, Any]:
        zh, en = self.problems()
        return {
            "supplier": self.supplier,
            "name": self.name,
            "today": self.today.isoformat(),
            "food_supplier": self.food_supplier,
            "required": [k.value for k in self.required],
            "complete": self.complete,
            "frozen": self.frozen,
            "payable": self.payable,
            "valid": [s.to_json() for s in self.valid],
            "missing": [k.value for k in self.missing],
            "expired": [s.to_json() for s in self.expired],
            "expiring": [s.to_json() for s in self.expiring],
            "pending": list(self.pending),
            "freezes": [f.to_json() for f in self.freezes],
            "problems": zh,
            "problems_en": en,
        }


@dataclass(frozen=True, slots=True)
class ComplianceAlert:
    """A paper about to expire (threshold_days 30, 7, ...) or expired (threshold_days 0)."""

    id: int
    paper: int
    supplier: str
    supplier_name: str
    kind: PaperKind
    threshold_days: int
    expires_on: date
    days_left: int
    raised_on: date
    message: str
    message_en: str
    published_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "paper": self.paper,
            "supplier": self.supplier,
            "supplier_name": self.supplier_name,
            "kind": self.kind.value,
            "threshold_days": self.threshold_days,
            "expires_on": self.expires_on.isoformat(),
            "days_left": self.days_left,
            "raised_on": self.raised_on.isoformat(),
            "message": self.message,
            "message_en": self.message_en,
            "published_at": self.published_at,
        }


@dataclass(frozen=True, slots=True)
class SupplierInput:
    """A new supplier (供应商) with what the cabinet needs of it."""

    id: str
    name: str
    credit_code: str | None = None
    contact: str | None = None
    phone: str | None = None
    registered_address: str | None = None
    food_supplier: bool = False


# --- small helpers ---


@contextmanager
def _atomic(conn: sqlite3.Connection) -> Iterator[None]:
    """All of a function's writes or none, inside or outside the caller's transaction."""
    conn.execute("SAVEPOINT compliance")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK TO compliance")
        conn.execute("RELEASE compliance")
        raise
    conn.execute("RELEASE compliance")


def _iso(now: datetime) -> str:
    return now.isoformat()


def _text(value: Any, name: str, *, required: bool = True, max_length: int = MAX_TEXT) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidComplianceInput(f"缺少 {name}", f"{name} is required", field=name)
        return None
    if not isinstance(value, str):
        raise InvalidComplianceInput(f"{name} 应为文本", f"{name} must be text", field=name)
    text = str(value).strip()
    if len(text) > max_length:
        raise InvalidComplianceInput(
            f"{name} 过长 (最多 {max_length} 字)", f"{name} is too long (at most {max_length})", field=name
        )
    if any(ord(c) < 32 for c in text):
        raise InvalidComplianceInput(f"{name} 含控制字符", f"{name} contains control characters", field=name)
    return text


def _required(value: Any, name: str, max_length: int = MAX_TEXT) -> str:
    text = _text(value, name, max_length=max_length)
    assert text is not None
    return text


def _supplier(conn: sqlite3.Connection, supplier_id: str) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute("SELECT * FROM suppliers WHERE id = ?", (supplier_id,)).fetchone()
    if row is None:
        raise UnknownSupplier(str(supplier_id)[:64])
    return row


def _row(conn: sqlite3.Connection, table: str, record_id: int, kind: str, kind_zh: str) -> sqlite3.Row:
    row: sqlite3.Row | None = conn.execute(f"SELECT * FROM {table} WHERE id = ?", (record_id,)).fetchone()
    if row is None:
        raise UnknownComplianceRecord(kind, kind_zh, record_id)
    return row


def _audit(conn: sqlite3.Connection, now: datetime, actor: str, action: str, obj: str, detail: dict[str, Any]) -> None:
    append_audit(conn, ts=_iso(now), actor=actor, device=None, action=action, object=obj, detail=detail)


def _fingerprint(action: str, *parts: Any) -> str:
    body = json.dumps([action, *parts], ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def _replay(conn: sqlite3.Connection, key: str | None, action: str, fingerprint: str) -> Created | None:
    if key is None:
        return None
    row = conn.execute(
        "SELECT action, fingerprint, record_id FROM compliance_requests WHERE key = ?", (key,)
    ).fetchone()
    if row is None:
        return None
    if row["action"] != action or row["fingerprint"] != fingerprint:
        raise IdempotencyKeyReused(key)
    record: str = row["record_id"]
    return Created(int(record) if record.isdigit() else record, replayed=True)


def _remember(
    conn: sqlite3.Connection, key: str | None, action: str, fingerprint: str, record: int | str, now: datetime
) -> Created:
    if key is not None:
        conn.execute(
            "INSERT INTO compliance_requests (key, action, fingerprint, record_id, ts) VALUES (?, ?, ?, ?, ?)",
            (key, action, fingerprint, str(record), _iso(now)),
        )
    return Created(record)


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None


# --- suppliers ---


def _supplier_json(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    out["active"] = bool(out.get("active", 1))
    out["food_supplier"] = bool(out.get("food_supplier", 0))
    return out


def get_supplier(conn: sqlite3.Connection, supplier_id: str) -> dict[str, Any]:
    return _supplier_json(_supplier(conn, supplier_id))


def create_supplier(
    conn: sqlite3.Connection, supplier: SupplierInput, actor: str, now: datetime, key: str | None = None
) -> Created:
    """Add a supplier with its registered address and food flag. No bank account here: that comes from a confirmed
    bank account paper or an approved change."""
    fingerprint = _fingerprint(
        "supplier.create",
        supplier.id,
        supplier.name,
        supplier.credit_code,
        supplier.contact,
        supplier.phone,
        supplier.registered_address,
        supplier.food_supplier,
    )
    with _atomic(conn):
        replay = _replay(conn, key, "supplier.create", fingerprint)
        if replay is not None:
            return replay
        name = _required(supplier.name, "name", 200)
        code = validate_uscc(supplier.credit_code) if supplier.credit_code else None
        address = _text(supplier.registered_address, "registered_address", required=False)
        if conn.execute("SELECT 1 FROM suppliers WHERE id = ?", (supplier.id,)).fetchone():
            raise ComplianceStateError(
                f"供应商 {supplier.id} 已存在", f"supplier {supplier.id} already exists", supplier=supplier.id
            )
        try:
            add_supplier(
                conn,
                supplier.id,
                name,
                credit_code=code,
                contact=_text(supplier.contact, "contact", required=False, max_length=100),
                phone=_text(supplier.phone, "phone", required=False, max_length=50),
            )
        except InvalidCommand as exc:
            raise InvalidComplianceInput(exc.message, exc.message_en, **exc.detail) from None
        conn.execute(
            "UPDATE suppliers SET registered_address = ?, food_supplier = ? WHERE id = ?",
            (address, int(bool(supplier.food_supplier)), supplier.id),
        )
        _audit(
            conn,
            now,
            actor,
            "supplier.create",
            f"supplier:{supplier.id}",
            {"name": name, "credit_code": code, "registered_address": address, "food_supplier": supplier.food_supplier},
        )
        return _remember(conn, key, "supplier.create", fingerprint, supplier.id, now)


_UPDATABLE = ("name", "credit_code", "contact", "phone", "registered_address", "food_supplier")


def update_supplier(
    conn: sqlite3.Connection, supplier_id: str, changes: dict[str, Any], actor: str, now: datetime
) -> dict[str, Any]:
    """Change a supplier's name, contact, credit code, registered address or food flag. A new registered address is
    compared with the confirmed business licence at once (a mismatch freezes payments); a credit code that differs
    from a confirmed paper's is refused. The bank account changes only through request_bank_account_change."""
    unknown = sorted(set(changes) - set(_UPDATABLE))
    if unknown:
        raise InvalidComplianceInput(
            f"不能在此修改: {', '.join(unknown)} (银行账户须走变更审批)",
            f"cannot be changed here: {', '.join(unknown)} (a bank account change needs an approval)",
            fields=unknown,
        )
    with _atomic(conn):
        row = _supplier(conn, supplier_id)
        values: dict[str, Any] = {}
        if "name" in changes:
            values["name"] = _required(changes["name"], "name", 200)
        if "contact" in changes:
            values["contact"] = _text(changes["contact"], "contact", required=False, max_length=100)
        if "phone" in changes:
            values["phone"] = _text(changes["phone"], "phone", required=False, max_length=50)
        if "food_supplier" in changes:
            if not isinstance(changes["food_supplier"], bool):
                raise InvalidComplianceInput("food_supplier 应为 true 或 false", "food_supplier must be true or false")
            values["food_supplier"] = int(changes["food_supplier"])
        if "credit_code" in changes:
            code = validate_uscc(changes["credit_code"]) if changes["credit_code"] else None
            on_paper = _confirmed_codes(conn, supplier_id)
            if on_paper and code not in on_paper:
                raise CreditCodeMismatch(
                    f"统一社会信用代码 {code} 与已确认证照上的 {', '.join(sorted(on_paper))} 不符",
                    f"credit code {code} differs from the confirmed papers' {', '.join(sorted(on_paper))}",
                    supplier=supplier_id,
                    code=code,
                    on_papers=sorted(on_paper),
                )
            values["credit_code"] = code
        if "registered_address" in changes:
            values["registered_address"] = _text(changes["registered_address"], "registered_address", required=False)
        if values:
            assignments = ", ".join(f"{column} = ?" for column in values)
            conn.execute(f"UPDATE suppliers SET {assignments} WHERE id = ?", (*values.values(), supplier_id))
            before = {k: row[k] for k in values}
            _audit(conn, now, actor, "supplier.update", f"supplier:{supplier_id}", {"before": before, "after": values})
        outcome: dict[str, Any] = {"freeze": None, "ticket": None, "address_check": None}
        new_address = values.get("registered_address")
        if new_address and new_address != row["registered_address"]:
            licence = _confirmed_paper(conn, supplier_id, PaperKind.BUSINESS_LICENCE)
            if licence is not None:
                licence_fields = PaperFields.from_json(json.loads(licence["fields"]))
                if licence_fields.address:
                    check = _address_check(
                        conn, supplier_id, licence["id"], licence_fields.address, new_address, actor, now
                    )
                    outcome.update(check)
        return {"supplier": get_supplier(conn, supplier_id), **outcome}


def _confirmed_codes(conn: sqlite3.Connection, supplier_id: str) -> set[str]:
    codes = set()
    for r in conn.execute(
        "SELECT fields FROM supplier_papers WHERE supplier = ? AND state = 'confirmed'", (supplier_id,)
    ):
        code = json.loads(r["fields"]).get("credit_code")
        if code:
            codes.add(str(code))
    return codes


# --- papers ---


def _paper_json(row: sqlite3.Row, *, with_ocr: bool = False) -> dict[str, Any]:
    out = dict(row)
    out["ocr"] = _json(row["ocr"]) if with_ocr else None
    out["proposed"] = _json(row["proposed"])
    out["fields"] = _json(row["fields"])
    return out


def get_paper(conn: sqlite3.Connection, paper_id: int, *, with_ocr: bool = False) -> dict[str, Any]:
    return _paper_json(_row(conn, "supplier_papers", paper_id, "paper", "证照"), with_ocr=with_ocr)


def list_papers(
    conn: sqlite3.Connection, supplier_id: str | None = None, state: str | None = None
) -> list[dict[str, Any]]:
    where, params = [], []
    if supplier_id is not None:
        where.append("supplier = ?")
        params.append(supplier_id)
    if state is not None:
        where.append("state = ?")
        params.append(state)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(f"SELECT * FROM supplier_papers {clause} ORDER BY supplier, kind, id DESC", params)
    return [_paper_json(r) for r in rows]


def find_request(conn: sqlite3.Connection, key: str, action: str, fingerprint: str) -> Created | None:
    """The record a key already created (for the web layer to skip OCR on a replay); refused if the key was used
    for something else."""
    return _replay(conn, key, action, fingerprint)


def upload_fingerprint(supplier_id: str, kind: str, sha256: str) -> str:
    return _fingerprint("paper.upload", supplier_id, kind, sha256)


@dataclass(frozen=True, slots=True)
class PaperUpload:
    """An uploaded paper as the edge hands it over: the file is already stored under its sha256."""

    supplier: str
    kind: str
    sha256: str
    file_type: str
    size_bytes: int
    filename: str | None
    ocr: dict[str, Any]  # {"lines": [...], "pages", "seconds"}
    reading: dict[str, Any]  # Reading.to_json(): the fields proposed from the OCR lines

    @property
    def fingerprint(self) -> str:
        return upload_fingerprint(self.supplier, self.kind, self.sha256)


def record_paper(
    conn: sqlite3.Connection, upload: PaperUpload, actor: str, now: datetime, key: str | None = None
) -> Created:
    """Record an uploaded paper with its OCR result and the fields read from it; state `uploaded` until a person
    confirms it. A key answers the paper it first recorded."""
    paper_kind = parse_kind(upload.kind)
    fingerprint = upload.fingerprint
    with _atomic(conn):
        replay = _replay(conn, key, "paper.upload", fingerprint)
        if replay is not None:
            return replay
        _supplier(conn, upload.supplier)
        if not _SHA256.match(upload.sha256):
            raise InvalidComplianceInput("文件摘要无效", "invalid file digest", field="sha256")
        file_type = FileType(upload.file_type)
        name = _text(upload.filename, "filename", required=False, max_length=200)
        cursor = conn.execute(
            "INSERT INTO supplier_papers (supplier, kind, sha256, file_type, size_bytes, filename, ocr, proposed,"
            " uploaded_by, uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                upload.supplier,
                paper_kind.value,
                upload.sha256,
                file_type.value,
                upload.size_bytes,
                name,
                json.dumps(upload.ocr, ensure_ascii=False),
                json.dumps(upload.reading, ensure_ascii=False),
                actor,
                _iso(now),
            ),
        )
        paper_id = int(cursor.lastrowid or 0)
        _audit(
            conn,
            now,
            actor,
            "paper.upload",
            f"paper:{paper_id}",
            {"supplier": upload.supplier, "kind": paper_kind.value, "sha256": upload.sha256, "size": upload.size_bytes},
        )
        return _remember(conn, key, "paper.upload", fingerprint, paper_id, now)


def _confirmed_paper(conn: sqlite3.Connection, supplier_id: str, kind: PaperKind) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM supplier_papers WHERE supplier = ? AND kind = ? AND state = 'confirmed'",
        (supplier_id, kind.value),
    ).fetchone()
    return row


def confirm_paper(
    conn: sqlite3.Connection, paper_id: int, confirmed: dict[str, Any] | None, actor: str, now: datetime
) -> dict[str, Any]:
    """A person confirms a paper's fields (`confirmed`: corrections over the reading; None: as read). The credit code is
    validated and must match the supplier's; the licence address is compared with the registered address (a
    mismatch freezes payments and opens a review ticket); a bank account paper naming another account than the
    supplier's opens a bank account change. The paper then counts, superseding an older one of its kind."""
    with _atomic(conn):
        paper = _row(conn, "supplier_papers", paper_id, "paper", "证照")
        if paper["state"] != "uploaded":
            raise ComplianceStateError(
                f"证照 {paper_id} 已{_STATE_ZH[paper['state']]}，不能再确认",
                f"paper {paper_id} is already {paper['state']} and cannot be confirmed",
                paper=paper_id,
                state=paper["state"],
            )
        kind = PaperKind(paper["kind"])
        supplier_id = paper["supplier"]
        supplier = _supplier(conn, supplier_id)
        proposed = json.loads(paper["proposed"])["fields"]
        if confirmed is None:
            fields_ = PaperFields.from_json(proposed)
        elif isinstance(confirmed, dict):
            # The fields sent replace the ones read; the others stay as read (send null to clear one).
            unknown = sorted(str(k) for k in confirmed if k not in proposed)
            fields_ = PaperFields.from_json({**proposed, **confirmed} if not unknown else confirmed)
        else:
            raise InvalidComplianceInput("确认的字段应为对象", "the confirmed fields must be an object")
        fields_ = check_confirmable(kind, fields_)
        if fields_.credit_code:
            fields_ = replace(fields_, credit_code=validate_uscc(fields_.credit_code))
        code = fields_.credit_code
        if code and supplier["credit_code"] and code != supplier["credit_code"]:
            raise CreditCodeMismatch(
                f"证照上的统一社会信用代码 {code} 与供应商 {supplier_id} 登记的 {supplier['credit_code']} 不符",
                f"the paper's credit code {code} differs from supplier {supplier_id}'s {supplier['credit_code']}",
                supplier=supplier_id,
                paper=paper_id,
                on_paper=code,
                registered=supplier["credit_code"],
            )
        pending_change = conn.execute(
            "SELECT id FROM bank_account_changes WHERE supplier = ? AND state = 'pending'", (supplier_id,)
        ).fetchone()
        opens_bank_change = (
            kind is PaperKind.BANK_ACCOUNT
            and supplier["bank_account"] is not None
            and fields_.bank_account != supplier["bank_account"]
        )
        if opens_bank_change and pending_change is not None:
            raise ComplianceStateError(
                f"供应商 {supplier_id} 有待审批的银行账户变更 {pending_change['id']}，请先处理",
                f"supplier {supplier_id} has a pending bank account change {pending_change['id']}; decide it first",
                supplier=supplier_id,
                bank_change=pending_change["id"],
            )
        previous = _confirmed_paper(conn, supplier_id, kind)
        if previous is not None:
            conn.execute(
                "UPDATE supplier_papers SET state = 'superseded', superseded_by = ? WHERE id = ?",
                (paper_id, previous["id"]),
            )
        expiry = expires_on(fields_)
        conn.execute(
            "UPDATE supplier_papers SET state = 'confirmed', fields = ?, valid_from = ?, valid_to = ?,"
            " confirmed_by = ?, confirmed_at = ? WHERE id = ?",
            (
                json.dumps(fields_.to_json(), ensure_ascii=False),
                fields_.valid_from.isoformat() if fields_.valid_from else None,
                expiry.isoformat() if expiry else None,
                actor,
                _iso(now),
                paper_id,
            ),
        )
        outcome: dict[str, Any] = {"freeze": None, "ticket": None, "bank_change": None, "address_check": None}
        supplier_sets: dict[str, Any] = {}
        if code and not supplier["credit_code"]:
            supplier_sets["credit_code"] = code
        if kind in (PaperKind.BUSINESS_LICENCE, PaperKind.FOOD_LICENCE) and fields_.address:
            registered = supplier["registered_address"]
            if registered:
                outcome.update(_address_check(conn, supplier_id, paper_id, fields_.address, registered, actor, now))
            elif kind is PaperKind.BUSINESS_LICENCE:
                supplier_sets["registered_address"] = fields_.address
        if kind is PaperKind.BANK_ACCOUNT:
            if supplier["bank_account"] is None:
                supplier_sets["bank_name"] = fields_.bank_name
                supplier_sets["bank_account"] = fields_.bank_account
            elif opens_bank_change:
                assert fields_.bank_name is not None and fields_.bank_account is not None
                change = _open_bank_change(
                    conn,
                    supplier,
                    fields_.bank_name,
                    fields_.bank_account,
                    f"银行账户证照 {paper_id} 上的账户与登记账户不同",
                    actor,
                    now,
                    paper=paper_id,
                )
                outcome["bank_change"] = change
                outcome["freeze"] = conn.execute(
                    "SELECT id FROM supplier_freezes WHERE bank_change = ?", (change,)
                ).fetchone()[0]
        if supplier_sets:
            assignments = ", ".join(f"{column} = ?" for column in supplier_sets)
            conn.execute(f"UPDATE suppliers SET {assignments} WHERE id = ?", (*supplier_sets.values(), supplier_id))
        _audit(
            conn,
            now,
            actor,
            "paper.confirm",
            f"paper:{paper_id}",
            {
                "supplier": supplier_id,
                "kind": kind.value,
                "fields": fields_.to_json(),
                "supersedes": previous["id"] if previous is not None else None,
                "supplier_set": supplier_sets,
                **{k: v for k, v in outcome.items() if k in ("freeze", "ticket", "bank_change")},
            },
        )
        return {"paper": get_paper(conn, paper_id), **outcome, "supplier_set": supplier_sets}


_STATE_ZH = {"uploaded": "上传", "confirmed": "确认", "rejected": "驳回", "superseded": "被新证照取代"}


def reject_paper(conn: sqlite3.Connection, paper_id: int, reason: str, actor: str, now: datetime) -> dict[str, Any]:
    """A person rejects an uploaded paper (unreadable, wrong company, forged); it never counts."""
    with _atomic(conn):
        text = _required(reason, "reason")
        paper = _row(conn, "supplier_papers", paper_id, "paper", "证照")
        if paper["state"] != "uploaded":
            raise ComplianceStateError(
                f"证照 {paper_id} 已{_STATE_ZH[paper['state']]}，不能驳回",
                f"paper {paper_id} is already {paper['state']} and cannot be rejected",
                paper=paper_id,
                state=paper["state"],
            )
        conn.execute(
            "UPDATE supplier_papers SET state = 'rejected', rejected_by = ?, rejected_at = ?, reject_reason = ?"
            " WHERE id = ?",
            (actor, _iso(now), text, paper_id),
        )
        _audit(conn, now, actor, "paper.reject", f"paper:{paper_id}", {"supplier": paper["supplier"], "reason": text})
        return get_paper(conn, paper_id)


# --- address check, freezes, review tickets ---


def _address_check(
    conn: sqlite3.Connection,
    supplier_id: str,
    paper_id: int,
    licence_address: str,
    registered: str,
    actor: str,
    now: datetime,
) -> dict[str, Any]:
    """Compare; on a mismatch open a review ticket and a freeze at once. Returns address_check, ticket, freeze."""
    comparison = compare_addresses(licence_address, registered)
    result: dict[str, Any] = {"address_check": comparison.to_json(), "ticket": None, "freeze": None}
    if comparison.match:
        return result
    zh, en = describe_differences(comparison.differences)
    detail = {
        "paper": paper_id,
        "licence_address": licence_address,
        "registered_address": registered,
        "differences": list(comparison.differences),
    }
    cursor = conn.execute(
        "INSERT INTO review_tickets (supplier, kind, summary, summary_en, detail, paper, opened_by, opened_at)"
        " VALUES (?, 'address_mismatch', ?, ?, ?, ?, ?, ?)",
        (
            supplier_id,
            f"证照 {paper_id} 地址 {licence_address} 与登记地址 {registered} 不符 ({zh})",
            f"paper {paper_id} address {licence_address} differs from the registered address {registered} ({en})",
            json.dumps(detail, ensure_ascii=False),
            paper_id,
            actor,
            _iso(now),
        ),
    )
    ticket = int(cursor.lastrowid or 0)
    freeze = _open_freeze(
        conn,
        supplier_id,
        FreezeReason.ADDRESS_MISMATCH,
        f"证照地址与登记地址不符: {zh}",
        detail,
        actor,
        now,
        ticket=ticket,
    )
    _audit(conn, now, actor, "ticket.open", f"ticket:{ticket}", {"supplier": supplier_id, **detail})
    result.update(ticket=ticket, freeze=freeze)
    return result


def _open_freeze(
    conn: sqlite3.Connection,
    supplier_id: str,
    reason: FreezeReason,
    note: str,
    detail: dict[str, Any],
    actor: str,
    now: datetime,
    *,
    ticket: int | None = None,
    bank_change: int | None = None,
) -> int:
    cursor = conn.execute(
        "INSERT INTO supplier_freezes (supplier, reason, note, detail, opened_by, opened_at, ticket, bank_change)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            supplier_id,
            reason.value,
            note,
            json.dumps(detail, ensure_ascii=False),
            actor,
            _iso(now),
            ticket,
            bank_change,
        ),
    )
    freeze = int(cursor.lastrowid or 0)
    _audit(
        conn,
        now,
        actor,
        "supplier.freeze",
        f"freeze:{freeze}",
        {"supplier": supplier_id, "reason": reason.value, "ticket": ticket, "bank_change": bank_change},
    )
    return freeze


def freeze_supplier(
    conn: sqlite3.Connection, supplier_id: str, note: str, actor: str, now: datetime, key: str | None = None
) -> Created:
    """A reviewer freezes payments to a supplier by hand, with a note; a review ticket opens with it."""
    fingerprint = _fingerprint("supplier.freeze", supplier_id, note)
    with _atomic(conn):
        replay = _replay(conn, key, "supplier.freeze", fingerprint)
        if replay is not None:
            return replay
        text = _required(note, "note")
        _supplier(conn, supplier_id)
        cursor = conn.execute(
            "INSERT INTO review_tickets (supplier, kind, summary, summary_en, detail, opened_by, opened_at)"
            " VALUES (?, 'manual', ?, ?, '{}', ?, ?)",
            (supplier_id, f"人工冻结: {text}", f"frozen by hand: {text}", actor, _iso(now)),
        )
        ticket = int(cursor.lastrowid or 0)
        freeze = _open_freeze(conn, supplier_id, FreezeReason.MANUAL, text, {}, actor, now, ticket=ticket)
        return _remember(conn, key, "supplier.freeze", fingerprint, freeze, now)


def _freeze_json(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    out["detail"] = _json(row["detail"])
    out["open"] = row["lifted_at"] is None
    return out


def get_freeze(conn: sqlite3.Connection, freeze_id: int) -> dict[str, Any]:
    return _freeze_json(_row(conn, "supplier_freezes", freeze_id, "freeze", "冻结单"))


def list_freezes(
    conn: sqlite3.Connection, supplier_id: str | None = None, open_only: bool = False
) -> list[dict[str, Any]]:
    where, params = [], []
    if supplier_id is not None:
        where.append("supplier = ?")
        params.append(supplier_id)
    if open_only:
        where.append("lifted_at IS NULL")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return [_freeze_json(r) for r in conn.execute(f"SELECT * FROM supplier_freezes {clause} ORDER BY id DESC", params)]


def _not_the_requester(actor: str, requester: str, what: str, what_en: str, **detail: Any) -> None:
    if actor == requester:
        raise ApprovalError(
            f"{what}须由另一人审核: {actor} 是发起人，不能自己审核",
            f"{what_en} needs a second person: {actor} opened it and cannot review it",
            reason="own_request",
            requested_by=requester,
            reviewer=actor,
            **detail,
        )


def _lift(conn: sqlite3.Connection, freeze: sqlite3.Row, reason: str, actor: str, now: datetime) -> None:
    conn.execute(
        "UPDATE supplier_freezes SET lifted_by = ?, lifted_at = ?, lift_reason = ? WHERE id = ?",
        (actor, _iso(now), reason, freeze["id"]),
    )
    _audit(
        conn,
        now,
        actor,
        "supplier.unfreeze",
        f"freeze:{freeze['id']}",
        {"supplier": freeze["supplier"], "reason": reason, "opened_by": freeze["opened_by"]},
    )


def lift_freeze(conn: sqlite3.Connection, freeze_id: int, reason: str, actor: str, now: datetime) -> dict[str, Any]:
    """A reviewer who did not open the freeze lifts it, with a reason; its review ticket is resolved with it.
    A bank account change's freeze is lifted by deciding the change instead."""
    with _atomic(conn):
        text = _required(reason, "reason")
        freeze = _row(conn, "supplier_freezes", freeze_id, "freeze", "冻结单")
        if freeze["lifted_at"] is not None:
            raise ComplianceStateError(
                f"冻结单 {freeze_id} 已于 {freeze['lifted_at']} 由 {freeze['lifted_by']} 解除",
                f"freeze {freeze_id} was already lifted by {freeze['lifted_by']} at {freeze['lifted_at']}",
                freeze=freeze_id,
            )
        if freeze["bank_change"] is not None:
            raise ComplianceStateError(
                f"冻结单 {freeze_id} 随银行账户变更 {freeze['bank_change']} 的审批解除，请审批该变更",
                f"freeze {freeze_id} is lifted by deciding bank account change {freeze['bank_change']}",
                freeze=freeze_id,
                bank_change=freeze["bank_change"],
            )
        _not_the_requester(actor, freeze["opened_by"], "解除冻结", "lifting a freeze", freeze=freeze_id)
        _lift(conn, freeze, text, actor, now)
        if freeze["ticket"] is not None:
            _close_ticket(conn, freeze["ticket"], text, actor, now)
        return get_freeze(conn, freeze_id)


def _close_ticket(conn: sqlite3.Connection, ticket_id: int, resolution: str, actor: str, now: datetime) -> None:
    updated = conn.execute(
        "UPDATE review_tickets SET state = 'resolved', resolved_by = ?, resolved_at = ?, resolution = ?"
        " WHERE id = ? AND state = 'open'",
        (actor, _iso(now), resolution, ticket_id),
    ).rowcount
    if updated:
        _audit(conn, now, actor, "ticket.resolve", f"ticket:{ticket_id}", {"resolution": resolution})


def _ticket_json(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    out["detail"] = _json(row["detail"])
    return out


def get_ticket(conn: sqlite3.Connection, ticket_id: int) -> dict[str, Any]:
    ticket = _ticket_json(_row(conn, "review_tickets", ticket_id, "review ticket", "审核工单"))
    ticket["freezes"] = [
        _freeze_json(r)
        for r in conn.execute("SELECT * FROM supplier_freezes WHERE ticket = ? ORDER BY id", (ticket_id,))
    ]
    return ticket


def list_tickets(
    conn: sqlite3.Connection, state: str | None = None, supplier_id: str | None = None
) -> list[dict[str, Any]]:
    where, params = [], []
    if state is not None:
        where.append("state = ?")
        params.append(state)
    if supplier_id is not None:
        where.append("supplier = ?")
        params.append(supplier_id)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return [_ticket_json(r) for r in conn.execute(f"SELECT * FROM review_tickets {clause} ORDER BY id DESC", params)]


def resolve_ticket(
    conn: sqlite3.Connection,
    ticket_id: int,
    resolution: str,
    actor: str,
    now: datetime,
    accept_licence_address: bool = False,
) -> dict[str, Any]:
    """A reviewer who did not open the ticket resolves it, lifting its freezes. `accept_licence_address`: the
    licence is right, so the supplier's registered address becomes the licence's."""
    with _atomic(conn):
        text = _required(resolution, "resolution")
        ticket = _row(conn, "review_tickets", ticket_id, "review ticket", "审核工单")
        if ticket["state"] != "open":
            raise ComplianceStateError(
                f"审核工单 {ticket_id} 已由 {ticket['resolved_by']} 处理",
                f"review ticket {ticket_id} was already resolved by {ticket['resolved_by']}",
                ticket=ticket_id,
            )
        _not_the_requester(actor, ticket["opened_by"], "审核工单", "a review ticket", ticket=ticket_id)
        if accept_licence_address:
            detail = _json(ticket["detail"]) or {}
            address = detail.get("licence_address")
            if ticket["kind"] != "address_mismatch" or not address:
                raise InvalidComplianceInput(
                    "此工单没有证照地址可采用", "this ticket has no licence address to accept", ticket=ticket_id
                )
            conn.execute("UPDATE suppliers SET registered_address = ? WHERE id = ?", (address, ticket["supplier"]))
            _audit(
                conn,
                now,
                actor,
                "supplier.update",
                f"supplier:{ticket['supplier']}",
                {"registered_address": address, "ticket": ticket_id},
            )
        for freeze in conn.execute(
            "SELECT * FROM supplier_freezes WHERE ticket = ? AND lifted_at IS NULL", (ticket_id,)
        ).fetchall():
            _lift(conn, freeze, text, actor, now)
        _close_ticket(conn, ticket_id, text, actor, now)
        return get_ticket(conn, ticket_id)


# --- bank account changes ---


def _bank_input(bank_name: Any, bank_account: Any) -> tuple[str, str]:
    name = _required(bank_name, "bank_name", 100)
    account = re.sub(r"[\s-]", "", _required(bank_account, "bank_account", 64))
    if not _BANK_ACCOUNT.match(account):
        raise InvalidComplianceInput(
            "银行账号应为 8 到 32 位数字", "a bank account number has 8 to 32 digits", field="bank_account"
        )
    return name, account


def _open_bank_change(
    conn: sqlite3.Connection,
    supplier: sqlite3.Row,
    bank_name: str,
    bank_account: str,
    reason: str,
    actor: str,
    now: datetime,
    *,
    paper: int | None = None,
) -> int:
    cursor = conn.execute(
        "INSERT INTO bank_account_changes (supplier, old_bank_name, old_bank_account, new_bank_name,"
        " new_bank_account, reason, paper, requested_by, requested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            supplier["id"],
            supplier["bank_name"],
            supplier["bank_account"],
            bank_name,
            bank_account,
            reason,
            paper,
            actor,
            _iso(now),
        ),
    )
    change = int(cursor.lastrowid or 0)
    _audit(
        conn,
        now,
        actor,
        "bank_change.request",
        f"bank_change:{change}",
        {
            "supplier": supplier["id"],
            "old": [supplier["bank_name"], supplier["bank_account"]],
            "new": [bank_name, bank_account],
            "reason": reason,
        },
    )
    _open_freeze(
        conn,
        supplier["id"],
        FreezeReason.BANK_ACCOUNT_CHANGE,
        f"银行账户变更 {change} 待审批",
        {"bank_change": change},
        actor,
        now,
        bank_change=change,
    )
    return change


def request_bank_account_change(
    conn: sqlite3.Connection,
    supplier_id: str,
    bank_name: str,
    bank_account: str,
    reason: str,
    actor: str,
    now: datetime,
    key: str | None = None,
) -> Created:
    """Ask to change where payments to a supplier go. Payments freeze until a second person approves."""
    fingerprint = _fingerprint("bank_change.request", supplier_id, bank_name, bank_account, reason)
    with _atomic(conn):
        replay = _replay(conn, key, "bank_change.request", fingerprint)
        if replay is not None:
            return replay
        name, account = _bank_input(bank_name, bank_account)
        text = _required(reason, "reason")
        supplier = _supplier(conn, supplier_id)
        pending = conn.execute(
            "SELECT id FROM bank_account_changes WHERE supplier = ? AND state = 'pending'", (supplier_id,)
        ).fetchone()
        if pending is not None:
            raise ComplianceStateError(
                f"供应商 {supplier_id} 已有待审批的银行账户变更 {pending['id']}",
                f"supplier {supplier_id} already has a pending bank account change {pending['id']}",
                supplier=supplier_id,
                bank_change=pending["id"],
            )
        if supplier["bank_account"] == account and supplier["bank_name"] == name:
            raise InvalidComplianceInput(
                "新账户与现账户相同", "the new account is the current one", supplier=supplier_id
            )
        change = _open_bank_change(conn, supplier, name, account, text, actor, now)
        return _remember(conn, key, "bank_change.request", fingerprint, change, now)


def get_bank_account_change(conn: sqlite3.Connection, change_id: int) -> dict[str, Any]:
    row = _row(conn, "bank_account_changes", change_id, "bank account change", "银行账户变更")
    out = dict(row)
    freeze = conn.execute("SELECT id FROM supplier_freezes WHERE bank_change = ?", (change_id,)).fetchone()
    out["freeze"] = freeze[0] if freeze else None
    return out


def list_bank_account_changes(
    conn: sqlite3.Connection, state: str | None = None, supplier_id: str | None = None
) -> list[dict[str, Any]]:
    where, params = [], []
    if state is not None:
        where.append("c.state = ?")
        params.append(state)
    if supplier_id is not None:
        where.append("c.supplier = ?")
        params.append(supplier_id)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        "SELECT c.*, f.id AS freeze FROM bank_account_changes c LEFT JOIN supplier_freezes f ON f.bank_change = c.id"
        f" {clause} ORDER BY c.id DESC",
        params,
    )
    return [dict(r) for r in rows]


def _decide_bank_change(
    conn: sqlite3.Connection, change_id: int, approve: bool, note: str | None, actor: str, now: datetime
) -> dict[str, Any]:
    with _atomic(conn):
        text = _text(note, "note", required=not approve)
        change = _row(conn, "bank_account_changes", change_id, "bank account change", "银行账户变更")
        if change["state"] != "pending":
            raise ComplianceStateError(
                f"银行账户变更 {change_id} 已{'批准' if change['state'] == 'approved' else '驳回'}",
                f"bank account change {change_id} was already {change['state']}",
                bank_change=change_id,
                state=change["state"],
            )
        _not_the_requester(
            actor, change["requested_by"], "银行账户变更", "a bank account change", bank_change=change_id
        )
        state = "approved" if approve else "rejected"
        conn.execute(
            "UPDATE bank_account_changes SET state = ?, decided_by = ?, decided_at = ?, decision_note = ? WHERE id = ?",
            (state, actor, _iso(now), text, change_id),
        )
        if approve:
            conn.execute(
                "UPDATE suppliers SET bank_name = ?, bank_account = ? WHERE id = ?",
                (change["new_bank_name"], change["new_bank_account"], change["supplier"]),
            )
        _audit(
            conn,
            now,
            actor,
            f"bank_change.{'approve' if approve else 'reject'}",
            f"bank_change:{change_id}",
            {"supplier": change["supplier"], "note": text},
        )
        reason = f"银行账户变更 {change_id} 已{'批准' if approve else '驳回'}" + (f": {text}" if text else "")
        for freeze in conn.execute(
            "SELECT * FROM supplier_freezes WHERE bank_change = ? AND lifted_at IS NULL", (change_id,)
        ).fetchall():
            _lift(conn, freeze, reason, actor, now)
        return get_bank_account_change(conn, change_id)


def approve_bank_account_change(
    conn: sqlite3.Connection, change_id: int, actor: str, now: datetime, note: str | None = None
) -> dict[str, Any]:
    """A second person approves: the supplier's account becomes the new one and the change's freeze is lifted."""
    return _decide_bank_change(conn, change_id, True, note, actor, now)


def reject_bank_account_change(
    conn: sqlite3.Connection, change_id: int, actor: str, now: datetime, note: str
) -> dict[str, Any]:
    """A second person rejects, with a note: the account stays as it was and the change's freeze is lifted."""
    return _decide_bank_change(conn, change_id, False, note, actor, now)


# --- qualification status, payments, purchase orders ---


def _open_freezes(conn: sqlite3.Connection, supplier_id: str) -> tuple[FreezeInfo, ...]:
    return tuple(
        FreezeInfo(
            id=r["id"],
            reason=FreezeReason(r["reason"]),
            note=r["note"],
            opened_by=r["opened_by"],
            opened_at=r["opened_at"],
            ticket=r["ticket"],
            bank_change=r["bank_change"],
        )
        for r in conn.execute(
            "SELECT * FROM supplier_freezes WHERE supplier = ? AND lifted_at IS NULL ORDER BY id", (supplier_id,)
        )
    )


def qualification_status(
    conn: sqlite3.Connection, supplier_id: str, today: date, warn_days: int = max(DEFAULT_WARN_DAYS)
) -> QualificationStatus:
    """The supplier's cabinet on `today`: what is valid, missing, expired or expiring within `warn_days`, and
    the open freezes. A paper is valid through its last day (valid_to)."""
    supplier = _supplier(conn, supplier_id)
    required = required_kinds(bool(supplier["food_supplier"]))
    confirmed = {
        PaperKind(r["kind"]): r
        for r in conn.execute(
            "SELECT id, kind, valid_to FROM supplier_papers WHERE supplier = ? AND state = 'confirmed'", (supplier_id,)
        )
    }
    valid: list[PaperState] = []
    missing: list[PaperKind] = []
    expired: list[PaperState] = []
    expiring: list[PaperState] = []
    for kind in required:
        row = confirmed.get(kind)
        if row is None:
            missing.append(kind)
            continue
        until = date.fromisoformat(row["valid_to"]) if row["valid_to"] else None
        left = (until - today).days if until else None
        state = PaperState(kind, row["id"], until, left)
        if left is not None and left < 0:
            expired.append(state)
            continue
        valid.append(state)
        if left is not None and left <= warn_days:
            expiring.append(state)
    pending = tuple(
        r[0]
        for r in conn.execute(
            "SELECT id FROM supplier_papers WHERE supplier = ? AND state = 'uploaded' ORDER BY id", (supplier_id,)
        )
    )
    return QualificationStatus(
        supplier=supplier_id,
        name=supplier["name"],
        today=today,
        food_supplier=bool(supplier["food_supplier"]),
        required=required,
        valid=tuple(valid),
        missing=tuple(missing),
        expired=tuple(expired),
        expiring=tuple(expiring),
        pending=pending,
        freezes=_open_freezes(conn, supplier_id),
    )


def _status_detail(status: QualificationStatus, **extra: Any) -> dict[str, Any]:
    zh, en = status.problems()
    return {
        "supplier": status.supplier,
        "missing": [k.value for k in status.missing],
        "expired": [s.to_json() for s in status.expired],
        "freezes": [f.to_json() for f in status.freezes],
        "problems": zh,
        "problems_en": en,
        **extra,
    }


def _refuse_frozen(
    status: QualificationStatus, what: str, what_en: str, *, papers: bool = True, **extra: Any
) -> SupplierFrozen:
    zh, en = status.problems(papers=papers)
    return SupplierFrozen(
        f"供应商 {status.supplier} 已冻结，不能{what}: {'；'.join(zh)}",
        f"supplier {status.supplier} is frozen, cannot {what_en}: {'; '.join(en)}",
        **_status_detail(status, **extra),
    )


def _refuse_incomplete(status: QualificationStatus, what: str, what_en: str, **extra: Any) -> PapersIncomplete:
    zh, en = status.problems()
    return PapersIncomplete(
        f"供应商 {status.supplier} 资质不全或过期，不能{what}: {'；'.join(zh)}",
        f"supplier {status.supplier}'s papers are incomplete or expired, cannot {what_en}: {'; '.join(en)}",
        **_status_detail(status, **extra),
    )


def check_payable(conn: sqlite3.Connection, supplier_id: str, today: date) -> QualificationStatus:
    """Refuse a payment to a frozen supplier or one whose papers are missing or expired (listing exactly what);
    return the status when the supplier may be paid."""
    status = qualification_status(conn, supplier_id, today)
    if status.frozen:
        raise _refuse_frozen(status, "付款", "pay")
    if not status.complete:
        raise _refuse_incomplete(status, "付款", "pay")
    return status


def check_purchase(
    conn: sqlite3.Connection, supplier_id: str | None, gross_fen: int, today: date, threshold_fen: int
) -> None:
    """The purchase order rule: a frozen supplier is refused; above `threshold_fen` (gross, tax included) the
    supplier's papers must be complete and valid on `today`."""
    if supplier_id is None:
        return
    row = conn.execute("SELECT 1 FROM suppliers WHERE id = ?", (supplier_id,)).fetchone()
    extra = {"gross_fen": gross_fen, "threshold_fen": threshold_fen}
    if row is None:
        if gross_fen > threshold_fen:
            raise UnknownSupplier(supplier_id)
        return
    freezes = _open_freezes(conn, supplier_id)
    if freezes or gross_fen > threshold_fen:
        status = qualification_status(conn, supplier_id, today)
        if status.frozen:
            # Below the threshold the papers do not matter for a PO: name only the freezes.
            papers = gross_fen > threshold_fen
            raise _refuse_frozen(status, "下采购订单", "take a purchase order", papers=papers, **extra)
        if gross_fen > threshold_fen and not status.complete:
            raise _refuse_incomplete(
                status,
                f"下超过 {threshold_fen // 100:,} 元的采购订单",
                f"take a purchase order over {threshold_fen // 100:,} CNY",
                **extra,
            )


def make_purchase_order_guard(threshold_fen: int) -> Guard:
    """The guard the composition root puts in PostingContext.guards (acts on purchase orders only): a frozen
    supplier is refused; above `threshold_fen` gross the papers must be complete and valid on the business date."""
    if threshold_fen < 0:
        raise ValueError("threshold_fen must be >= 0")

    def purchase_order_guard(conn: sqlite3.Connection, cmd: PostDocument, gross_fen: int, business_date: date) -> None:
        if cmd.type is DocType.PURCHASE_ORDER:
            check_purchase(conn, cmd.counterparty, gross_fen, business_date, threshold_fen)

    return purchase_order_guard


def approve_purchase_order(
    conn: sqlite3.Connection,
    po_id: int,
    user: str,
    today: date,
    threshold_fen: int,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Approve a purchase order (采购订单审批), re-checking its supplier as on the day it was taken."""
    with _atomic(conn):
        document = conn.execute(
            "SELECT id, type, counterparty, gross_fen, doc_no FROM documents WHERE id = ?", (po_id,)
        ).fetchone()
        if document is None or document["type"] != DocType.PURCHASE_ORDER.value:
            raise UnknownComplianceRecord("purchase order", "采购订单", po_id)
        reversed_by = conn.execute("SELECT id FROM documents WHERE reverses_id = ?", (po_id,)).fetchone()
        if reversed_by is not None:
            raise ComplianceStateError(
                f"采购订单 {document['doc_no']} 已被冲销", f"purchase order {document['doc_no']} was reversed", po=po_id
            )
        approved = conn.execute("SELECT * FROM purchase_order_approvals WHERE document_id = ?", (po_id,)).fetchone()
        if approved is not None:
            raise ComplianceStateError(
                f"采购订单 {document['doc_no']} 已由 {approved['approved_by']} 审批",
                f"purchase order {document['doc_no']} was already approved by {approved['approved_by']}",
                po=po_id,
                approved_by=approved["approved_by"],
            )
        gross = int(document["gross_fen"])
        check_not_held(conn, "purchase_order", po_id, document["doc_no"])  # a rule's hold (docs/rules.md)
        check_purchase(conn, document["counterparty"], gross, today, threshold_fen)
        at = _iso(now) if now is not None else today.isoformat()
        conn.execute(
            "INSERT INTO purchase_order_approvals (document_id, supplier, gross_fen, approved_by, approved_at,"
            " business_date) VALUES (?, ?, ?, ?, ?, ?)",
            (po_id, document["counterparty"], gross, user, at, today.isoformat()),
        )
        append_audit(
            conn,
            ts=at,
            actor=user,
            device=None,
            action="purchase_order.approve",
            object=f"document:{po_id}",
            detail={"supplier": document["counterparty"], "gross_fen": gross, "threshold_fen": threshold_fen},
        )
        return purchase_order_approval(conn, po_id) or {}


def purchase_order_approval(conn: sqlite3.Connection, po_id: int) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM purchase_order_approvals WHERE document_id = ?", (po_id,)).fetchone()
    return dict(row) if row else None


_PURCHASE_ORDERS = (
    "SELECT d.id, d.doc_no, d.business_date, d.posted_at, d.actor, d.counterparty AS supplier,"
    " s.name AS supplier_name, d.gross_fen, d.tax_fen, d.note, r.id AS reversed_by,"
    " a.approved_by, a.approved_at"
    " FROM documents d"
    " LEFT JOIN suppliers s ON s.id = d.counterparty"
    " LEFT JOIN documents r ON r.reverses_id = d.id"
    " LEFT JOIN purchase_order_approvals a ON a.document_id = d.id"
    " WHERE d.type = 'purchase_order'"
)


def _purchase_order_json(row: sqlite3.Row) -> dict[str, Any]:
    record = dict(row)
    by, at = record.pop("approved_by"), record.pop("approved_at")
    record["approval"] = {"approved_by": by, "approved_at": at} if by is not None else None
    return record


def list_purchase_orders(
    conn: sqlite3.Connection, *, approved: bool | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """Purchase orders (采购订单), newest first, each with its approval (or null) and the document reversing it."""
    where = {None: "", True: " AND a.document_id IS NOT NULL", False: " AND a.document_id IS NULL"}[approved]
    rows = conn.execute(f"{_PURCHASE_ORDERS}{where} ORDER BY d.id DESC LIMIT ? OFFSET ?", (limit, offset))
    return [_purchase_order_json(row) for row in rows]


def get_purchase_order(conn: sqlite3.Connection, po_id: int) -> dict[str, Any]:
    """One purchase order as `list_purchase_orders` lists it; unknown (or not a PO) raises."""
    row = conn.execute(f"{_PURCHASE_ORDERS} AND d.id = ?", (po_id,)).fetchone()
    if row is None:
        raise UnknownComplianceRecord("purchase order", "采购订单", po_id)
    return _purchase_order_json(row)


# --- expiry alerts ---


def _alert(row: sqlite3.Row) -> ComplianceAlert:
    return ComplianceAlert(
        id=row["id"],
        paper=row["paper"],
        supplier=row["supplier"],
        supplier_name=row["supplier_name"],
        kind=PaperKind(row["kind"]),
        threshold_days=row["threshold_days"],
        expires_on=date.fromisoformat(row["expires_on"]),
        days_left=row["days_left"],
        raised_on=date.fromisoformat(row["raised_on"]),
        message=row["message"],
        message_en=row["message_en"],
        published_at=row["published_at"],
    )


_ALERT_SELECT = "SELECT a.*, s.name AS supplier_name FROM compliance_alerts a JOIN suppliers s ON s.id = a.supplier"


def _alert_text(supplier: str, name: str, kind: PaperKind, until: date, left: int) -> tuple[str, str]:
    zh_kind, en_kind = PAPER_NAMES[kind]
    if left < 0:
        return (
            f"供应商 {name} ({supplier}) 的{zh_kind}已于 {until} 过期，请尽快更新",
            f"supplier {name} ({supplier}): the {en_kind} expired on {until}; upload the renewed one",
        )
    return (
        f"供应商 {name} ({supplier}) 的{zh_kind}将于 {until} 到期 (还剩 {left} 天)，请及时更新",
        f"supplier {name} ({supplier}): the {en_kind} expires on {until} ({left} days left); upload the renewed one",
    )


def due_expiry_alerts(
    conn: sqlite3.Connection, today: date, warn_days: tuple[int, ...] = DEFAULT_WARN_DAYS
) -> list[ComplianceAlert]:
    """Record the alerts that are due on `today` and return the new ones.

    For each confirmed paper with an end date, the tightest threshold it has reached (days left <= 30, <= 7, or
    expired: threshold 0) raises one alert, once: a paper at 20 days gets its 30-day alert, at 6 days its 7-day
    alert; one confirmed with 5 days left gets only the 7-day alert.
    """
    if any(not isinstance(d, int) or d <= 0 for d in warn_days):
        raise InvalidComplianceInput("预警天数须为正整数", "warning days must be positive integers")
    thresholds = sorted(set(warn_days))
    new: list[ComplianceAlert] = []
    with _atomic(conn):
        papers = conn.execute(
            "SELECT p.id, p.supplier, p.kind, p.valid_to, s.name FROM supplier_papers p"
            " JOIN suppliers s ON s.id = p.supplier"
            " WHERE p.state = 'confirmed' AND p.valid_to IS NOT NULL AND p.valid_to <= ? ORDER BY p.valid_to, p.id",
            (date.fromordinal(today.toordinal() + thresholds[-1]).isoformat(),),
        ).fetchall()
        for paper in papers:
            until = date.fromisoformat(paper["valid_to"])
            left = (until - today).days
            threshold = 0 if left < 0 else min(t for t in thresholds if left <= t)
            raised = conn.execute(
                "SELECT 1 FROM compliance_alerts WHERE paper = ? AND threshold_days <= ?", (paper["id"], threshold)
            ).fetchone()
            if raised is not None:
                continue
            kind = PaperKind(paper["kind"])
            message, message_en = _alert_text(paper["supplier"], paper["name"], kind, until, left)
            cursor = conn.execute(
                "INSERT INTO compliance_alerts (paper, supplier, kind, threshold_days, expires_on, days_left,"
                " raised_on, message, message_en) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    paper["id"],
                    paper["supplier"],
                    kind.value,
                    threshold,
                    until.isoformat(),
                    left,
                    today.isoformat(),
                    message,
                    message_en,
                ),
            )
            alert_id = int(cursor.lastrowid or 0)
            new.append(_alert(conn.execute(f"{_ALERT_SELECT} WHERE a.id = ?", (alert_id,)).fetchone()))
    return new


def list_alerts(
    conn: sqlite3.Connection, *, supplier_id: str | None = None, limit: int = 100, offset: int = 0
) -> list[ComplianceAlert]:
    where = "WHERE a.supplier = ?" if supplier_id is not None else ""
    params: tuple[Any, ...] = (supplier_id,) if supplier_id is not None else ()
    rows = conn.execute(f"{_ALERT_SELECT} {where} ORDER BY a.id DESC LIMIT ? OFFSET ?", (*params, limit, offset))
    return [_alert(r) for r in rows]


def unpublished_alerts(conn: sqlite3.Connection) -> list[ComplianceAlert]:
    return [_alert(r) for r in conn.execute(f"{_ALERT_SELECT} WHERE a.published_at IS NULL ORDER BY a.id")]


def mark_alerts_published(conn: sqlite3.Connection, alert_ids: list[int], now: datetime) -> int:
    """Note that these alerts went out on MQTT; returns how many were newly marked."""
    with _atomic(conn):
        marked = 0
        for alert_id in alert_ids:
            marked += conn.execute(
                "UPDATE compliance_alerts SET published_at = ? WHERE id = ? AND published_at IS NULL",
                (_iso(now), alert_id),
            ).rowcount
        return marked
