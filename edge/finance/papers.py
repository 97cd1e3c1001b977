"""Supplier papers (资质证照): the kinds, upload checks and the fields read from OCR text lines.

Pure: bytes and text lines in, typed values out. The OCR itself is in edge/finance/ocr.py, the cabinet's tables in
edge/finance/compliance.py. A field read here is a proposal; a person confirms it before it counts.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, fields, replace
from datetime import date
from enum import StrEnum
from typing import Any

from edge.finance.errors import InvalidComplianceInput, InvalidPaper, PaperTooLarge, UnsupportedPaperType
from edge.finance.uscc import ALPHABET, LENGTH, is_valid_uscc, normalise_uscc


class PaperKind(StrEnum):
    BUSINESS_LICENCE = "business_licence"  # 营业执照
    BANK_ACCOUNT = "bank_account"  # 开户许可证 / 基本存款账户信息
    GENERAL_TAXPAYER = "general_taxpayer"  # 一般纳税人证明
    FOOD_LICENCE = "food_licence"  # 食品经营许可证 (food suppliers only)


PAPER_NAMES: dict[PaperKind, tuple[str, str]] = {
    PaperKind.BUSINESS_LICENCE: ("营业执照", "business licence"),
    PaperKind.BANK_ACCOUNT: ("开户许可证/基本存款账户信息", "bank account licence"),
    PaperKind.GENERAL_TAXPAYER: ("一般纳税人证明", "general-taxpayer proof"),
    PaperKind.FOOD_LICENCE: ("食品经营许可证", "food business licence"),
}

# Words in a paper's title that tell its kind, most specific first.
_TITLES: tuple[tuple[str, PaperKind], ...] = (
    ("食品经营许可", PaperKind.FOOD_LICENCE),
    ("一般纳税人", PaperKind.GENERAL_TAXPAYER),
    ("开户许可", PaperKind.BANK_ACCOUNT),
    ("基本存款账户", PaperKind.BANK_ACCOUNT),
    ("营业执照", PaperKind.BUSINESS_LICENCE),
)


def parse_kind(value: str) -> PaperKind:
    try:
        return PaperKind(value)
    except ValueError:
        allowed = ", ".join(k.value for k in PaperKind)
        raise InvalidComplianceInput(
            f"证照类型无效: {value[:40]!r} (可选 {allowed})",
            f"unknown paper kind {value[:40]!r} (one of {allowed})",
            field="kind",
            allowed=[k.value for k in PaperKind],
        ) from None


def required_kinds(food_supplier: bool) -> tuple[PaperKind, ...]:
    """The papers a supplier's cabinet must hold: the food business licence only for food suppliers."""
    kinds = (PaperKind.BUSINESS_LICENCE, PaperKind.BANK_ACCOUNT, PaperKind.GENERAL_TAXPAYER)
    return (*kinds, PaperKind.FOOD_LICENCE) if food_supplier else kinds


# --- uploads ---


class FileType(StrEnum):
    JPEG = "jpg"
    PNG = "png"
    PDF = "pdf"


MIME_TYPES: dict[FileType, str] = {
    FileType.JPEG: "image/jpeg",
    FileType.PNG: "image/png",
    FileType.PDF: "application/pdf",
}
_MAGIC: tuple[tuple[bytes, FileType], ...] = (
    (b"\xff\xd8\xff", FileType.JPEG),
    (b"\x89PNG\r\n\x1a\n", FileType.PNG),
    (b"%PDF-", FileType.PDF),
)


def sniff_upload(data: bytes, max_bytes: int) -> FileType:
    """The file's type by its magic bytes (JPEG, PNG or PDF); refuse empty, oversized and other files."""
    if not data:
        raise InvalidPaper("上传的文件为空", "the uploaded file is empty", reason="empty")
    if len(data) > max_bytes:
        raise PaperTooLarge(
            f"文件过大: {len(data)} 字节，上限 {max_bytes} 字节",
            f"file too large: {len(data)} bytes, at most {max_bytes}",
            size=len(data),
            max_bytes=max_bytes,
        )
    for magic, file_type in _MAGIC:
        if data.startswith(magic):
            return file_type
    # A PDF may have up to 1 KiB of junk before its header (PDF 1.7, annex H.3); readers accept it.
    if b"%PDF-" in data[:1024]:
        return FileType.PDF
    raise UnsupportedPaperType(
        "文件类型不支持: 只接受 JPEG、PNG 图片或 PDF",
        "unsupported file type: only JPEG or PNG images and PDF files are accepted",
        allowed=[MIME_TYPES[t] for t in FileType],
        head=data[:8].hex(),
    )


# --- OCR text lines -> fields ---


@dataclass(frozen=True, slots=True)
class OcrLine:
    """One line of text the OCR found: its text, the four corners of its box (pixels), confidence and page."""

    text: str
    box: tuple[tuple[int, int], ...]
    score: float
    page: int = 0

    @property
    def left(self) -> int:
        return min(x for x, _ in self.box) if self.box else 0

    @property
    def top(self) -> int:
        return min(y for _, y in self.box) if self.box else 0

    @property
    def bottom(self) -> int:
        return max(y for _, y in self.box) if self.box else 0

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "box": [list(p) for p in self.box], "score": round(self.score, 4), "page": self.page}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> OcrLine:
        return cls(
            text=str(value["text"]),
            box=tuple((int(p[0]), int(p[1])) for p in value.get("box", ())),
            score=float(value.get("score", 0.0)),
            page=int(value.get("page", 0)),
        )


@dataclass(frozen=True, slots=True)
class PaperFields:
    """What a paper says, as read by OCR or as a person confirmed it. Dates are ISO; `long_term`: 长期."""

    name: str | None = None
    credit_code: str | None = None
    address: str | None = None
    legal_rep: str | None = None
    valid_from: date | None = None
    valid_to: date | None = None
    long_term: bool = False
    established: date | None = None
    bank_name: str | None = None
    bank_account: str | None = None
    licence_no: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.isoformat() if isinstance(value, date) else value
        return out

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> PaperFields:
        """Fields from JSON (a person's confirmation): unknown keys, bad dates and bad types are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in value if k not in known)
        if unknown:
            raise InvalidComplianceInput(
                f"未知字段: {', '.join(unknown[:5])}", f"unknown fields: {', '.join(unknown[:5])}", fields=unknown[:20]
            )
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            raw = value.get(f.name)
            if f.name == "long_term":
                if not isinstance(raw, bool | None):
                    raise _bad_field(f.name, "应为 true 或 false", "must be true or false")
                kwargs[f.name] = bool(raw)
            elif f.name in _DATE_FIELDS:
                kwargs[f.name] = _json_date(f.name, raw)
            elif raw is None:
                kwargs[f.name] = None
            elif not isinstance(raw, str) or len(raw) > 500:
                raise _bad_field(f.name, "应为不超过 500 字的文本", "must be text of at most 500 characters")
            else:
                kwargs[f.name] = _tidy(raw) or None
        return cls(**kwargs)


_DATE_FIELDS = ("valid_from", "valid_to", "established")


def _bad_field(name: str, zh: str, en: str) -> InvalidComplianceInput:
    return InvalidComplianceInput(f"字段 {name} {zh}", f"field {name} {en}", field=name)


def _json_date(name: str, raw: Any) -> date | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        parsed = parse_cn_date(raw)
        if parsed is not None:
            return parsed
    raise _bad_field(name, "应为日期 (YYYY-MM-DD 或 2024年05月10日)", "must be a date (YYYY-MM-DD or 2024年05月10日)")


@dataclass(frozen=True, slots=True)
class FieldNote:
    """Something the parser noticed that a person should look at before confirming."""

    field: str
    message: str
    message_en: str


@dataclass(frozen=True, slots=True)
class Reading:
    """The fields proposed from a paper's OCR text, the kind its title names, and notes for the person."""

    fields: PaperFields
    detected_kind: PaperKind | None
    notes: tuple[FieldNote, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "fields": self.fields.to_json(),
            "detected_kind": self.detected_kind.value if self.detected_kind else None,
            "notes": [{"field": n.field, "message": n.message, "message_en": n.message_en} for n in self.notes],
        }


def _tidy(text: str) -> str:
    """A person's text: half-width (NFKC), runs of whitespace as one space, trimmed."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


def _clean_text(text: str) -> str:
    """Full-width to half-width (NFKC), no whitespace inside, colons stripped at the ends."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).strip(":：")


_DATE = re.compile(r"(\d{4})\s*[年./\-]\s*(\d{1,2})\s*[月./\-]\s*(\d{1,2})\s*日?")
_LONG_TERM = re.compile(r"长期|永久|不约定期限|无固定期限")


def parse_cn_date(text: str) -> date | None:
    """2018年05月10日, 2018-5-10, 2018.05.10 -> date; None when there is no valid date."""
    match = _DATE.search(unicodedata.normalize("NFKC", text))
    if not match:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def _dates(text: str) -> list[date | None]:
    out: list[date | None] = []
    for m in _DATE.finditer(text):
        try:
            out.append(date(int(m.group(1)), int(m.group(2)), int(m.group(3))))
        except ValueError:
            out.append(None)
    return out


# Labels as they appear on the papers, by field. Matched at the start of a row, longest first.
_LABELS: dict[str, tuple[str, ...]] = {
    "credit_code": ("统一社会信用代码", "社会信用代码", "纳税人识别号", "信用代码", "注册号"),
    "name": ("经营者名称", "账户名称", "存款人名称", "纳税人名称", "企业名称", "单位名称", "名称", "存款人"),
    "legal_rep": (
        "法定代表人(单位负责人)",
        "法定代表人(负责人)",
        "法定代表人",
        "单位负责人",
        "负责人",
        "经营者",
        "投资人",
    ),
    "address": ("住所", "经营场所", "营业场所", "注册地址", "生产经营地址", "地址"),
    "validity": ("营业期限", "经营期限", "有效期限", "有效期至", "有效期", "合伙期限"),
    "effective": ("一般纳税人资格生效之日", "生效之日", "生效日期", "认定日期"),
    "established": ("成立日期", "注册日期"),
    "bank_name": ("开户银行", "开户行"),
    "bank_account": ("银行账号", "账号"),
    "licence_no": ("许可证编号", "基本存款账户编号", "核准号", "编号"),
}
# Preference among the labels of one field (the first found in this order wins): 住所 before 经营场所.
_LABEL_ORDER = sorted(
    ((label, name) for name, labels in _LABELS.items() for label in labels), key=lambda p: len(p[0]), reverse=True
)
_OTHER_LABELS = ("类型", "注册资本", "登记机关", "经营范围", "主体业态", "经营项目")
_ALL_LABEL_STARTS = (*(label for label, _ in _LABEL_ORDER), *_OTHER_LABELS)
# OCR mistakes among characters that are not in the code alphabet.
_CODE_CONFUSIONS = str.maketrans({"O": "0", "I": "1", "Z": "2", "S": "5", "V": "U"})


def rows_of(lines: list[OcrLine]) -> list[list[OcrLine]]:
    """Text lines grouped into rows (a line joins a row when its middle lies within the row's first line's
    height, on the same page), each row left to right, rows top down."""
    rows: list[list[OcrLine]] = []
    for line in sorted(lines, key=lambda ln: (ln.page, ln.top + ln.bottom, ln.left)):
        middle = (line.top + line.bottom) / 2
        if rows and rows[-1][0].page == line.page and rows[-1][0].top <= middle <= rows[-1][0].bottom:
            rows[-1].append(line)
        else:
            rows.append([line])
    return [sorted(row, key=lambda ln: ln.left) for row in rows]


def _label_of(text: str) -> tuple[str, str] | None:
    for label, name in _LABEL_ORDER:
        if text.startswith(label):
            return label, name
    return None


def _starts_with_label(text: str) -> bool:
    return text.startswith(_ALL_LABEL_STARTS)


def detect_kind(lines: list[OcrLine]) -> PaperKind | None:
    """The kind the paper's title names (the first rows), or None."""
    head = "".join(_clean_text(ln.text) for ln in sorted(lines, key=lambda ln: (ln.page, ln.top))[:6])
    for word, kind in _TITLES:
        if word in head:
            return kind
    return None


def _code_candidate(text: str) -> str | None:
    value = normalise_uscc(text).translate(_CODE_CONFUSIONS)
    match = re.search(rf"[{ALPHABET}]{{{LENGTH}}}", value)
    return match.group(0) if match else (value[:40] or None)


def _validity(found: list[tuple[str, str]]) -> tuple[date | None, date | None, bool]:
    """(valid from, valid to, long term) from the validity rows: "A至B", "A至长期", "长期", "有效期至 B"."""
    for label, value in found:
        dates = [d for d in _dates(value) if d is not None]
        long_term = bool(_LONG_TERM.search(value))
        if not dates and not long_term:
            continue
        if long_term:
            # "A至长期" names the start; "有效期至 长期" none.
            return (dates[0] if dates and not label.endswith("至") else None), None, True
        if label.endswith("至") or len(dates) == 1:
            return None, dates[-1], False
        return dates[0], dates[1], False
    return None, None, False


def read_fields(lines: list[OcrLine]) -> Reading:
    """Propose a paper's fields from its OCR text lines. Never raises on odd text: what is not found is None."""
    found: dict[str, list[tuple[str, str]]] = {}
    rows = [(row, _clean_text("".join(ln.text for ln in row))) for row in rows_of(lines)]
    for index, (row, text) in enumerate(rows):
        labelled = _label_of(text)
        if labelled is None:
            continue
        label, name = labelled
        value = text[len(label) :].lstrip(":")
        # A label alone on its row: the value is the next row unless that row starts with a label.
        if not value and index + 1 < len(rows) and not _starts_with_label(rows[index + 1][1]):
            value = rows[index + 1][1]
        if name == "address" and value:
            # A long address wraps: rows below that start right of the label and carry no label continue it.
            for below, below_text in rows[index + 1 : index + 3]:
                if _starts_with_label(below_text) or below[0].left <= row[0].left + 20 or _DATE.search(below_text):
                    break
                value += below_text
        if value:
            found.setdefault(name, []).append((label, value))
    for name, values in found.items():
        # Preference among one field's labels follows _LABELS (住所 before 经营场所), then the order on the paper.
        values.sort(key=lambda lv: _LABELS[name].index(lv[0]))

    def first(name: str) -> str | None:
        values = found.get(name)
        return values[0][1] if values else None

    notes: list[FieldNote] = []
    code = first("credit_code")
    credit_code = _code_candidate(code) if code else None
    if credit_code is None:
        # No label found: any 18-character run that validates is taken.
        for _, text in rows:
            candidate = _code_candidate(text)
            if candidate and is_valid_uscc(candidate):
                credit_code = candidate
                break
    if credit_code is not None and not is_valid_uscc(credit_code):
        notes.append(
            FieldNote(
                "credit_code",
                f"读出的统一社会信用代码 {credit_code} 校验不通过，请核对原件",
                f"the credit code read, {credit_code}, does not validate; check it against the paper",
            )
        )
    valid_from, valid_to, long_term = _validity(found.get("validity", []))
    if any(None in _dates(v) for _, v in found.get("validity", [])):
        notes.append(
            FieldNote("valid_to", "有效期中有无效日期，请核对", "a validity date is not a real date; check it")
        )
    established_text = first("established")
    established = parse_cn_date(established_text) if established_text else None
    effective = first("effective")
    if valid_from is None and effective is not None:
        valid_from = parse_cn_date(effective)
    if valid_from is None and established is not None and (valid_to is not None or long_term):
        valid_from = established
    account = first("bank_account")
    digits = re.sub(r"[^0-9]", "", account) if account else ""
    fields_read = PaperFields(
        name=first("name"),
        credit_code=credit_code,
        address=first("address"),
        legal_rep=first("legal_rep"),
        valid_from=valid_from,
        valid_to=valid_to,
        long_term=long_term,
        established=established,
        bank_name=first("bank_name"),
        bank_account=digits or None,
        licence_no=first("licence_no"),
    )
    return Reading(fields=fields_read, detected_kind=detect_kind(lines), notes=tuple(notes))


# --- what a confirmed paper must say ---

_REQUIRED: dict[PaperKind, tuple[str, ...]] = {
    PaperKind.BUSINESS_LICENCE: ("name", "credit_code", "address"),
    PaperKind.BANK_ACCOUNT: ("name", "bank_name", "bank_account"),
    PaperKind.GENERAL_TAXPAYER: ("name", "credit_code"),
    PaperKind.FOOD_LICENCE: ("name", "credit_code", "address", "valid_to", "licence_no"),
}
FIELD_NAMES: dict[str, tuple[str, str]] = {
    "name": ("名称", "name"),
    "credit_code": ("统一社会信用代码", "unified social credit code"),
    "address": ("住所/经营场所", "address"),
    "legal_rep": ("法定代表人/负责人", "legal representative"),
    "valid_from": ("有效期起", "valid from"),
    "valid_to": ("有效期至", "valid to"),
    "bank_name": ("开户银行", "bank"),
    "bank_account": ("账号", "account number"),
    "licence_no": ("许可证编号", "licence number"),
}


def check_confirmable(kind: PaperKind, confirmed: PaperFields) -> PaperFields:
    """The fields as they will be stored, or InvalidComplianceInput naming what a paper of this kind lacks."""
    missing = [name for name in _REQUIRED[kind] if getattr(confirmed, name) in (None, "")]
    if kind is PaperKind.BUSINESS_LICENCE and confirmed.valid_to is None and not confirmed.long_term:
        missing.append("valid_to")
    if missing:
        zh = "、".join(FIELD_NAMES[m][0] for m in missing)
        en = ", ".join(FIELD_NAMES[m][1] for m in missing)
        raise InvalidComplianceInput(
            f"{PAPER_NAMES[kind][0]}缺少: {zh}", f"{PAPER_NAMES[kind][1]} lacks: {en}", missing=missing, kind=kind.value
        )
    if confirmed.valid_from and confirmed.valid_to and confirmed.valid_to < confirmed.valid_from:
        raise InvalidComplianceInput(
            f"有效期止 {confirmed.valid_to} 早于起 {confirmed.valid_from}",
            f"valid to {confirmed.valid_to} is before valid from {confirmed.valid_from}",
            field="valid_to",
        )
    if confirmed.long_term and confirmed.valid_to is not None:
        confirmed = replace(confirmed, valid_to=None)
    return confirmed


def expires_on(fields_: PaperFields) -> date | None:
    """The last day the paper is valid, None when it does not expire (长期, or a kind without an end date)."""
    return None if fields_.long_term else fields_.valid_to
