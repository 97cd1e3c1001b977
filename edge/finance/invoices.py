"""Purchase invoices (进项发票, 数电票): the model, its validation, and parsing from JSON, CSV, XLSX and XML.

Everything here is pure: bytes or plain values in, `Invoice` values out, or an `InvalidInvoice` that names
the row, line and field. A file is parsed as a whole before anything is stored, so a bad file is refused
as a whole. Amounts are read from yuan text into integer fen exactly (never through a float).
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any
from xml.etree.ElementTree import Element

from edge.finance.errors import BuyerMismatch, ImportTooLarge, InvalidInvoice
from edge.finance.uscc import validate_uscc
from edge.ledger.errors import DomainError
from edge.ledger.money import format_yuan, parse_yuan

INVOICE_NO = re.compile(r"^[0-9]{20}$")
TAX_RATES_BP: tuple[int, ...] = (1300, 900, 600, 300, 0)
MAX_LINES = 1000
MAX_RECEIPT_IDS = 100
MAX_QTY = 10_000_000
MAX_AMOUNT_FEN = 10**12  # ten billion yuan on one line: anything larger is a typing error
MAX_NAME = 200
MAX_ID = 2**63 - 1
MAX_IMPORT_BYTES = 512 * 1024
MAX_INVOICES_PER_IMPORT = 1000
MAX_IMPORT_ROWS = 20_000
MAX_XLSX_UNPACKED_BYTES = 32 * 1024 * 1024
ZERO_RATE_WORDS = ("免税", "不征税", "免征", "零税率")


class InvoiceKind(StrEnum):
    """A blue invoice (蓝字发票) or a credit note (红字发票) that names the invoice it corrects."""

    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note"


class InvoiceSource(StrEnum):
    API = "api"
    CSV = "csv"
    XLSX = "xlsx"
    XML = "xml"


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """One line of an invoice: amounts excluding VAT and the VAT, in fen; quantity in `unit` (base unit if None)."""

    line_no: int
    item_name: str
    qty: int
    amount_fen: int  # 金额, excluding VAT
    tax_rate_bp: int  # 1300 = 13%
    tax_fen: int  # 税额
    unit_price: str | None = None  # 单价 as printed (decimal text, excluding VAT); informational
    sku: str | None = None
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class Invoice:
    """A purchase invoice (数电票) as entered; a credit note names `original_invoice_no` and has negative lines."""

    invoice_no: str
    issue_date: date
    seller_name: str
    seller_credit_code: str
    buyer_name: str
    buyer_credit_code: str
    lines: tuple[InvoiceLine, ...]
    po_id: int | None = None
    receipt_ids: tuple[int, ...] = ()
    original_invoice_no: str | None = None

    @property
    def kind(self) -> InvoiceKind:
        return InvoiceKind.CREDIT_NOTE if self.original_invoice_no else InvoiceKind.INVOICE

    @property
    def net_fen(self) -> int:
        return sum(line.amount_fen for line in self.lines)

    @property
    def tax_fen(self) -> int:
        return sum(line.tax_fen for line in self.lines)


def check_buyer(invoice: Invoice, company_credit_code: str | None) -> None:
    """The buyer must be this company when the company's credit code is configured."""
    if company_credit_code and invoice.buyer_credit_code != company_credit_code.strip().upper():
        raise BuyerMismatch(invoice.invoice_no, invoice.buyer_credit_code, company_credit_code)


def invoice_to_dict(invoice: Invoice) -> dict[str, Any]:
    """The invoice as JSON-ready values (amounts in fen and as yuan text)."""
    return {
        "invoice_no": invoice.invoice_no,
        "kind": invoice.kind.value,
        "issue_date": invoice.issue_date.isoformat(),
        "seller_name": invoice.seller_name,
        "seller_credit_code": invoice.seller_credit_code,
        "buyer_name": invoice.buyer_name,
        "buyer_credit_code": invoice.buyer_credit_code,
        "po_id": invoice.po_id,
        "receipt_ids": list(invoice.receipt_ids),
        "original_invoice_no": invoice.original_invoice_no,
        "net_fen": invoice.net_fen,
        "tax_fen": invoice.tax_fen,
        "lines": [
            {
                "line_no": line.line_no,
                "item_name": line.item_name,
                "sku": line.sku,
                "unit": line.unit,
                "qty": line.qty,
                "unit_price": line.unit_price,
                "amount_fen": line.amount_fen,
                "amount": format_yuan(line.amount_fen),
                "tax_rate_bp": line.tax_rate_bp,
                "tax_fen": line.tax_fen,
                "tax": format_yuan(line.tax_fen),
            }
            for line in invoice.lines
        ],
    }


# --- field parsers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Where:
    """Where a value came from, for the error: a spreadsheet row, an invoice line, a field path."""

    row: int | None = None
    line: int | None = None
    prefix: str = ""
    cells: bool = False  # values come from spreadsheet cells, where numbers are numbers

    def describe(self) -> tuple[str, str]:
        zh, en = [], []
        if self.row is not None:
            zh.append(f"第 {self.row} 行")
            en.append(f"row {self.row}")
        if self.line is not None and self.row is None:
            zh.append(f"第 {self.line} 条明细")
            en.append(f"line {self.line}")
        return " ".join(zh), " ".join(en)


def _invalid(where: _Where, field: str, zh: str, en: str, **detail: Any) -> InvalidInvoice:
    place_zh, place_en = where.describe()
    label_zh, label_en = FIELD_LABELS.get(field, (field, field))
    prefix_zh = f"{place_zh} " if place_zh else ""
    prefix_en = f"{place_en}: " if place_en else ""
    extra = {k: v for k, v in (("row", where.row), ("line", where.line)) if v is not None}
    return InvalidInvoice(
        f"{prefix_zh}{label_zh}: {zh}",
        f"{prefix_en}{label_en}: {en}",
        field=f"{where.prefix}{field}",
        **extra,
        **detail,
    )


def _text(value: Any, where: _Where, field: str, *, required: bool = True, limit: int = MAX_NAME) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _invalid(where, field, "不能为空", "is required")
        return None
    if where.cells and isinstance(value, int | float) and not isinstance(value, bool):
        value = str(int(value)) if isinstance(value, int) or value.is_integer() else repr(value)
    if not isinstance(value, str):
        raise _invalid(where, field, "应为文本", "must be text")
    text = value.strip()
    if len(text) > limit:
        raise _invalid(where, field, f"过长 (最多 {limit} 字)", f"is longer than {limit} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn") for ch in text):
        raise _invalid(where, field, "含有控制字符或无效字符", "contains control or invalid characters")
    return text


def _invoice_no(value: Any, where: _Where, field: str = "invoice_no") -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # A spreadsheet number cannot hold 20 digits exactly: the cell must be text.
        raise _invalid(
            where, field, "须为 20 位数字文本 (表格中请将单元格设为文本)", "must be 20 digits as text, not a number"
        )
    text = _text(value, where, field, limit=64)
    assert text is not None
    if not INVOICE_NO.match(text):
        if not text.isascii() or not text.isdigit():
            raise _invalid(
                where,
                field,
                "应为 20 位数字，含非数字字符",
                "must be exactly 20 digits; it contains a character that is not a digit",
                length=len(text),
            )
        raise _invalid(
            where,
            field,
            f"应为 20 位数字，收到 {len(text)} 位",
            f"must be exactly 20 digits, got {len(text)} digits",
            length=len(text),
        )
    return text


def _credit_code(value: Any, where: _Where, field: str) -> str:
    text = _text(value, where, field, limit=64)
    assert text is not None
    try:
        return validate_uscc(text)
    except DomainError as err:
        raise _invalid(where, field, err.message, err.message_en, **err.detail) from None


_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y年%m月%d日", "%Y%m%d")


def _issue_date(value: Any, where: _Where, field: str = "issue_date") -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = _text(value, where, field, limit=40)
    assert text is not None
    head = text.replace("T", " ").split(" ")[0]
    for fmt in _DATE_FORMATS:
        try:
            parsed = datetime.strptime(head, fmt).date()
        except ValueError:
            continue
        if parsed.year < 2000:
            break
        return parsed
    raise _invalid(where, field, "应为日期，如 2026-11-25", "must be a date such as 2026-11-25")


def _decimal(value: Any, where: _Where, field: str) -> Decimal:
    if isinstance(value, bool):
        raise _invalid(where, field, "应为数字", "must be a number")
    if isinstance(value, float):
        value = repr(value)  # a spreadsheet cell: its shortest exact text, never float arithmetic
    if isinstance(value, int):
        value = str(value)
    text = _text(value, where, field, limit=40)
    assert text is not None
    text = text.replace(",", "").replace("，", "").replace("¥", "").replace("￥", "").strip()
    if not re.fullmatch(r"[-+]?[0-9]+(\.[0-9]*)?|[-+]?\.[0-9]+", text):
        raise _invalid(where, field, f"不是数字: {text[:20]!r}", f"not a number: {text[:20]!r}")
    try:
        return Decimal(text)
    except InvalidOperation:
        raise _invalid(where, field, "不是数字", "not a number") from None


def _fen(value: Any, where: _Where, field: str) -> int:
    """Yuan text ("1130.00", "-5.5") to fen exactly; JSON numbers are refused: money travels as text."""
    if isinstance(value, int | float) and not isinstance(value, bool) and not where.cells:
        raise _invalid(where, field, '金额须为字符串形式的元，如 "12.50"', 'amounts are yuan as text, e.g. "12.50"')
    number = _decimal(value, where, field)
    text = format(number, "f")
    if "." in text:
        whole, frac = text.split(".")
        if frac.rstrip("0") and len(frac.rstrip("0")) > 2:
            raise _invalid(where, field, f"最多两位小数: {text}", f"at most two decimals: {text}")
        text = f"{whole}.{frac.rstrip('0')[:2]}" if frac.rstrip("0") else whole
    try:
        fen = parse_yuan(text.lstrip("+"))
    except ValueError:
        raise _invalid(where, field, f"金额无效: {text}", f"invalid amount: {text}") from None
    if abs(fen) > MAX_AMOUNT_FEN:
        raise _invalid(where, field, "金额过大", "amount too large")
    return fen


def _qty(value: Any, where: _Where, field: str = "qty") -> int:
    number = _decimal(value, where, field)
    if number != number.to_integral_value():
        raise _invalid(
            where,
            field,
            f"数量须为整数 (按计量单位): {number}",
            f"quantity must be a whole number of units: {number}",
        )
    qty = int(number)
    if abs(qty) > MAX_QTY:
        raise _invalid(where, field, f"数量过大 (最多 {MAX_QTY})", f"quantity too large (at most {MAX_QTY})")
    return qty


def parse_tax_rate(value: Any, where: _Where | None = None, field: str = "tax_rate") -> int:
    """ "13%", "0.13", 0.13, "13", "免税" -> basis points (1300, ..., 0); only 13%, 9%, 6%, 3% and 0 are allowed."""
    where = where or _Where()
    if isinstance(value, str) and value.strip() in ZERO_RATE_WORDS:
        return 0
    percent = isinstance(value, str) and value.strip().endswith("%")
    raw = value.strip()[:-1] if percent and isinstance(value, str) else value
    number = _decimal(raw, where, field)
    if not percent and number < 1:
        number *= 100
    bp = number * 100
    if bp != bp.to_integral_value() or int(bp) not in TAX_RATES_BP:
        raise _invalid(
            where,
            field,
            f"税率 {value} 不在允许范围 (13%、9%、6%、3%、0)",
            f"tax rate {value} is not one of 13%, 9%, 6%, 3%, 0",
            allowed=list(TAX_RATES_BP),
        )
    return int(bp)


def _unit_price(value: Any, where: _Where) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number = _decimal(value, where, "unit_price")
    if number < 0:
        raise _invalid(where, "unit_price", "不能为负数", "must not be negative")
    text = format(number.normalize(), "f") if number else "0"
    if len(text) > 30:
        raise _invalid(where, "unit_price", "位数过多", "has too many digits")
    return text


def _code(value: Any, where: _Where, field: str) -> str | None:
    text = _text(value, where, field, required=False, limit=64)
    if text is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", text):
        raise _invalid(where, field, "只能含字母、数字和 . _ -", "may contain letters, digits and . _ - only")
    return text


def _document_id(value: Any, where: _Where, field: str) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_ID:
        raise _invalid(where, field, "应为正整数 (单据编号 id)", "must be a positive document id")
    return value


def _receipt_ids(value: Any, where: _Where) -> tuple[int, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        items: list[Any] = [v for v in re.split(r"[;,，；\s]+", value.strip()) if v]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    if len(items) > MAX_RECEIPT_IDS:
        raise _invalid(where, "receipt_ids", f"最多 {MAX_RECEIPT_IDS} 个", f"at most {MAX_RECEIPT_IDS}")
    ids = []
    for item in items:
        parsed = _document_id(item, where, "receipt_ids")
        if parsed is None:
            raise _invalid(where, "receipt_ids", "含有空的入库单编号", "contains an empty receipt id")
        ids.append(parsed)
    return tuple(dict.fromkeys(ids))


# --- building an invoice ------------------------------------------------------------------------


def _line(fields: Mapping[str, Any], where: _Where, line_no: int, credit: bool) -> InvoiceLine:
    name = _text(fields.get("item_name"), where, "item_name")
    assert name is not None
    qty = _qty(fields.get("qty"), where)
    amount = _fen(fields.get("amount"), where, "amount")
    tax = _fen(fields.get("tax"), where, "tax")
    rate = parse_tax_rate(fields.get("tax_rate"), where)
    if credit:
        if qty > 0 or amount > 0 or tax > 0:
            raise _invalid(
                where,
                "amount",
                "红字发票的数量、金额和税额须为负数或零",
                "a credit note's quantity, amount and tax must be negative or zero",
            )
    else:
        if qty < 1:
            raise _invalid(where, "qty", f"数量须至少为 1: {qty}", f"quantity must be at least 1: {qty}")
        if amount < 0 or tax < 0:
            raise _invalid(
                where,
                "amount" if amount < 0 else "tax",
                "蓝字发票的金额和税额不能为负数 (红字发票请填写原发票号码)",
                "an invoice's amount and tax must not be negative (a credit note names the original invoice)",
            )
    if rate == 0 and tax != 0:
        raise _invalid(where, "tax", "税率为 0 时税额须为 0", "the tax must be 0 at a 0 rate")
    return InvoiceLine(
        line_no=line_no,
        item_name=name,
        qty=qty,
        amount_fen=amount,
        tax_rate_bp=rate,
        tax_fen=tax,
        unit_price=_unit_price(fields.get("unit_price"), where),
        sku=_code(fields.get("sku"), where, "sku"),
        unit=_text(fields.get("unit"), where, "unit", required=False, limit=20),
    )


def build_invoice(
    header: Mapping[str, Any],
    lines: Sequence[tuple[_Where, Mapping[str, Any]]],
    where: _Where | None = None,
) -> Invoice:
    """An Invoice from its header fields and its lines' fields, each validated; the first problem is raised."""
    where = where or (lines[0][0] if lines else _Where())
    head = _Where(row=where.row, prefix=where.prefix, cells=where.cells)
    invoice_no = _invoice_no(header.get("invoice_no"), head)
    original = header.get("original_invoice_no")
    original_no = _invoice_no(original, head, "original_invoice_no") if original not in (None, "") else None
    if original_no == invoice_no:
        raise _invalid(head, "original_invoice_no", "不能是发票本身的号码", "cannot be the invoice's own number")
    if not lines:
        raise _invalid(head, "lines", "发票至少需要一条明细", "an invoice needs at least one line")
    if len(lines) > MAX_LINES:
        raise _invalid(head, "lines", f"最多 {MAX_LINES} 条明细", f"at most {MAX_LINES} lines")
    seller_code = _credit_code(header.get("seller_credit_code"), head, "seller_credit_code")
    buyer_code = _credit_code(header.get("buyer_credit_code"), head, "buyer_credit_code")
    if seller_code == buyer_code:
        raise _invalid(head, "buyer_credit_code", "购买方与销售方不能相同", "buyer and seller must differ")
    built = tuple(
        _line(fields, line_where, i, credit=original_no is not None) for i, (line_where, fields) in enumerate(lines, 1)
    )
    invoice = Invoice(
        invoice_no=invoice_no,
        issue_date=_issue_date(header.get("issue_date"), head),
        seller_name=_text(header.get("seller_name"), head, "seller_name") or "",
        seller_credit_code=seller_code,
        buyer_name=_text(header.get("buyer_name"), head, "buyer_name") or "",
        buyer_credit_code=buyer_code,
        lines=built,
        po_id=_document_id(header.get("po_id"), head, "po_id"),
        receipt_ids=_receipt_ids(header.get("receipt_ids"), head),
        original_invoice_no=original_no,
    )
    if invoice.kind is InvoiceKind.CREDIT_NOTE and invoice.net_fen + invoice.tax_fen >= 0:
        raise _invalid(head, "amount", "红字发票的价税合计须为负数", "a credit note's total must be negative")
    return invoice


HEADER_FIELDS = (
    "invoice_no",
    "issue_date",
    "seller_name",
    "seller_credit_code",
    "buyer_name",
    "buyer_credit_code",
    "po_id",
    "receipt_ids",
    "original_invoice_no",
)
LINE_FIELDS = ("item_name", "sku", "unit", "qty", "unit_price", "amount", "tax_rate", "tax")

FIELD_LABELS: dict[str, tuple[str, str]] = {
    "invoice_no": ("发票号码", "invoice number"),
    "issue_date": ("开票日期", "issue date"),
    "seller_name": ("销售方名称", "seller name"),
    "seller_credit_code": ("销售方纳税人识别号", "seller credit code"),
    "buyer_name": ("购买方名称", "buyer name"),
    "buyer_credit_code": ("购买方纳税人识别号", "buyer credit code"),
    "po_id": ("采购订单", "po_id"),
    "receipt_ids": ("入库单", "receipt_ids"),
    "original_invoice_no": ("原发票号码", "original invoice number"),
    "item_name": ("项目名称", "item name"),
    "sku": ("商品编码", "sku"),
    "unit": ("单位", "unit"),
    "qty": ("数量", "quantity"),
    "unit_price": ("单价", "unit price"),
    "amount": ("金额", "amount"),
    "tax_rate": ("税率", "tax rate"),
    "tax": ("税额", "tax"),
    "lines": ("明细", "lines"),
    "file": ("文件", "file"),
    "columns": ("表头", "columns"),
}


def invoice_from_mapping(data: Any) -> Invoice:
    """An Invoice from the JSON body of `POST /api/v1/invoices` (header fields plus `lines: [...]`)."""
    if not isinstance(data, Mapping):
        raise _invalid(_Where(), "invoice", "应为 JSON 对象", "must be a JSON object")
    raw_lines = data.get("lines")
    if not isinstance(raw_lines, list):
        raise _invalid(_Where(), "lines", "应为数组", "must be a list")
    if len(raw_lines) > MAX_LINES:
        raise _invalid(_Where(), "lines", f"最多 {MAX_LINES} 条明细", f"at most {MAX_LINES} lines")
    lines = []
    for i, raw in enumerate(raw_lines):
        if not isinstance(raw, Mapping):
            raise _invalid(_Where(line=i + 1, prefix=f"lines[{i}]."), "line", "应为对象", "must be an object")
        lines.append((_Where(line=i + 1, prefix=f"lines[{i}]."), raw))
    return build_invoice(data, lines, _Where())


# --- CSV and XLSX -------------------------------------------------------------------------------

# Column headers, Chinese as on a 数电票 export or English, to field names.
COLUMN_ALIASES: dict[str, str] = {
    "发票号码": "invoice_no",
    "数电票号码": "invoice_no",
    "开票日期": "issue_date",
    "销售方名称": "seller_name",
    "销方名称": "seller_name",
    "销售方纳税人识别号": "seller_credit_code",
    "销售方统一社会信用代码": "seller_credit_code",
    "销方识别号": "seller_credit_code",
    "购买方名称": "buyer_name",
    "购方名称": "buyer_name",
    "购买方纳税人识别号": "buyer_credit_code",
    "购买方统一社会信用代码": "buyer_credit_code",
    "购方识别号": "buyer_credit_code",
    "项目名称": "item_name",
    "货物或应税劳务名称": "item_name",
    "货物或应税劳务、服务名称": "item_name",
    "单位": "unit",
    "数量": "qty",
    "单价": "unit_price",
    "金额": "amount",
    "税率": "tax_rate",
    "税率/征收率": "tax_rate",
    "税额": "tax",
    "商品编码": "sku",
    "采购订单": "po_id",
    "采购订单号": "po_id",
    "入库单": "receipt_ids",
    "原发票号码": "original_invoice_no",
    "被红冲蓝字发票号码": "original_invoice_no",
    "quantity": "qty",
    "seller_tax_id": "seller_credit_code",
    "buyer_tax_id": "buyer_credit_code",
    **{name: name for name in (*HEADER_FIELDS, *LINE_FIELDS)},
}
REQUIRED_COLUMNS = (
    "invoice_no",
    "issue_date",
    "seller_name",
    "seller_credit_code",
    "buyer_name",
    "buyer_credit_code",
    "item_name",
    "qty",
    "amount",
    "tax_rate",
    "tax",
)


@dataclass(frozen=True, slots=True)
class ParsedImport:
    """The invoices of one import file, with the columns it ignored."""

    source: InvoiceSource
    invoices: tuple[Invoice, ...]
    ignored_columns: tuple[str, ...] = ()
    rows: tuple[int, ...] = ()  # the spreadsheet row each invoice starts on (CSV, XLSX)


def _column(header: Any) -> str | None:
    if header is None:
        return None
    name = unicodedata.normalize("NFKC", str(header)).strip().lstrip("\ufeff")
    return COLUMN_ALIASES.get(name) or COLUMN_ALIASES.get(name.lower())


def invoices_from_rows(rows: Iterable[Sequence[Any]], source: InvoiceSource) -> ParsedImport:
    """Invoices from a table: a header row, then one row per invoice line; rows of one invoice share its number."""
    iterator = iter(rows)
    cells = source is InvoiceSource.XLSX
    file_where = _Where()
    try:
        headers = list(next(iterator))
    except StopIteration:
        raise _invalid(file_where, "file", "文件为空", "the file is empty") from None
    columns: dict[int, str] = {}
    ignored: list[str] = []
    for index, header in enumerate(headers):
        field = _column(header)
        if field is None:
            if header not in (None, ""):
                ignored.append(str(header)[:50])
            continue
        if field in columns.values():
            raise _invalid(file_where, "columns", f"列 {header} 重复", f"column {header} appears twice", column=field)
        columns[index] = field
    missing = [c for c in REQUIRED_COLUMNS if c not in columns.values()]
    if missing:
        labels = "、".join(FIELD_LABELS[c][0] for c in missing)
        raise _invalid(
            _Where(row=1),
            "columns",
            f"缺少列: {labels}",
            f"missing columns: {', '.join(missing)}",
            missing=missing,
        )
    grouped: dict[str, tuple[dict[str, Any], int, list[tuple[_Where, dict[str, Any]]]]] = {}
    row_no = 1
    for row_no, row in enumerate(iterator, start=2):
        if row_no > MAX_IMPORT_ROWS + 1:
            raise _invalid(_Where(row=row_no), "file", f"最多 {MAX_IMPORT_ROWS} 行", f"at most {MAX_IMPORT_ROWS} rows")
        values = {field: (row[i] if i < len(row) else None) for i, field in columns.items()}
        values = {k: (v.strip() if isinstance(v, str) else v) for k, v in values.items()}
        if all(v in (None, "") for v in values.values()):
            continue
        where = _Where(row=row_no, cells=cells)
        number = _invoice_no(values.get("invoice_no"), where)
        header = {k: values.get(k) for k in HEADER_FIELDS}
        line = {k: values.get(k) for k in LINE_FIELDS}
        if number not in grouped:
            if len(grouped) >= MAX_INVOICES_PER_IMPORT:
                raise _invalid(
                    where,
                    "file",
                    f"最多 {MAX_INVOICES_PER_IMPORT} 张发票",
                    f"at most {MAX_INVOICES_PER_IMPORT} invoices",
                )
            grouped[number] = (header, row_no, [])
        else:
            first, first_row, _ = grouped[number]
            for key in HEADER_FIELDS:
                if _same(first.get(key), header.get(key)):
                    continue
                raise _invalid(
                    where,
                    key,
                    f"与第 {first_row} 行 (同一发票) 不一致",
                    f"differs from row {first_row} of the same invoice",
                    invoice_no=number,
                )
        grouped[number][2].append((where, line))
    if not grouped:
        raise _invalid(_Where(row=row_no), "file", "没有发票行", "the file has no invoice rows")
    invoices = tuple(
        build_invoice(header, lines, _Where(row=first_row, cells=cells))
        for header, first_row, lines in grouped.values()
    )
    starts = tuple(first_row for _, first_row, _ in grouped.values())
    return ParsedImport(source, invoices, tuple(ignored), starts)


def _same(a: Any, b: Any) -> bool:
    def norm(v: Any) -> str:
        return "" if v is None else str(v).strip()

    return norm(a) == norm(b)


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise _invalid(
        _Where(), "file", "文件编码无法识别 (请用 UTF-8 或 GBK)", "cannot decode the file (use UTF-8 or GBK)"
    )


def parse_invoice_csv(data: bytes) -> ParsedImport:
    """Invoices from CSV (UTF-8, with or without BOM, or GBK as Excel saves it)."""
    _check_size(data)
    text = _decode(data)
    if "\x00" in text:
        raise _invalid(_Where(), "file", "不是文本文件", "not a text file")
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise _invalid(_Where(), "file", f"CSV 格式错误: {exc}", f"malformed CSV: {exc}") from None
    return invoices_from_rows(rows, InvoiceSource.CSV)


def parse_invoice_xlsx(data: bytes) -> ParsedImport:
    """Invoices from the first sheet of an XLSX workbook (openpyxl, values not formulas)."""
    _check_size(data)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        raise _invalid(_Where(), "file", "不是有效的 XLSX 文件", "not a valid XLSX file") from None
    if unpacked > MAX_XLSX_UNPACKED_BYTES:
        raise ImportTooLarge(unpacked, MAX_XLSX_UNPACKED_BYTES, "workbook (unpacked)")
    from openpyxl import load_workbook  # type: ignore[import-untyped]

    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception:  # openpyxl raises many kinds on a damaged workbook; all mean the same to the user
        raise _invalid(_Where(), "file", "不是有效的 XLSX 文件", "not a valid XLSX file") from None
    try:
        sheet = workbook.worksheets[0] if workbook.worksheets else None
        if sheet is None:
            raise _invalid(_Where(), "file", "工作簿没有工作表", "the workbook has no sheet")
        rows: list[tuple[Any, ...]] = []
        for row in sheet.iter_rows(values_only=True):
            rows.append(tuple(row))
            if len(rows) > MAX_IMPORT_ROWS + 1:
                break
        return invoices_from_rows(rows, InvoiceSource.XLSX)
    finally:
        workbook.close()


def _check_size(data: bytes) -> None:
    if len(data) > MAX_IMPORT_BYTES:
        raise ImportTooLarge(len(data), MAX_IMPORT_BYTES)
    if not data:
        raise _invalid(_Where(), "file", "文件为空", "the file is empty")


# --- 数电票 XML ----------------------------------------------------------------------------------

_RED_REMARK = re.compile(r"被红冲蓝字[^0-9]{0,20}([0-9]{20})")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(element: Element, path: str) -> Element | None:
    """Find by a slash path of local names, ignoring XML namespaces."""
    current: list[Element] = [element]
    for part in path.split("/"):
        current = [child for node in current for child in node if _local(child.tag) == part]
        if not current:
            return None
    return current[0]


def _find_all(element: Element, name: str) -> list[Element]:
    return [node for node in element.iter() if _local(node.tag) == name]


def _xml_text(element: Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    return element.text.strip() or None


def parse_invoice_xml(data: bytes) -> ParsedImport:
    """One invoice from the 数电票 XML file (EInvoice/Header, EInvoiceData, TaxSupervisionInfo), parsed with
    defusedxml (no entities, no external references)."""
    _check_size(data)
    from defusedxml import DefusedXmlException  # type: ignore[import-untyped]
    from defusedxml.ElementTree import ParseError, fromstring  # type: ignore[import-untyped]

    try:
        root = fromstring(data, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise _invalid(_Where(), "file", f"XML 无法解析: {exc}", f"malformed or unsafe XML: {exc}") from None
    if _local(root.tag) != "EInvoice":
        raise _invalid(
            _Where(),
            "file",
            f"根元素应为 EInvoice，而不是 {_local(root.tag)[:40]}",
            "the root element must be EInvoice",
        )
    number = _xml_text(_find(root, "TaxSupervisionInfo/InvoiceNumber"))
    eiid = _xml_text(_find(root, "Header/EIid"))
    if number and eiid and number != eiid:
        raise _invalid(
            _Where(), "invoice_no", f"EIid {eiid} 与 InvoiceNumber {number} 不一致", "EIid and InvoiceNumber differ"
        )
    data_node = _find(root, "EInvoiceData")
    if data_node is None:
        raise _invalid(_Where(), "file", "缺少 EInvoiceData", "EInvoiceData is missing")
    original = _xml_text(_find(data_node, "SpecificInformation/RedEInvoice/OriginalInvoiceCode"))
    if original is None:
        remark = " ".join(t for t in (_xml_text(n) for n in _find_all(data_node, "Remark")) if t)
        match = _RED_REMARK.search(remark)
        original = match.group(1) if match else None
    header = {
        "invoice_no": number or eiid,
        "issue_date": _xml_text(_find(root, "TaxSupervisionInfo/IssueTime"))
        or _xml_text(_find(data_node, "BasicInformation/RequestTime")),
        "seller_name": _xml_text(_find(data_node, "SellerInformation/SellerName")),
        "seller_credit_code": _xml_text(_find(data_node, "SellerInformation/SellerIdNum")),
        "buyer_name": _xml_text(_find(data_node, "BuyerInformation/BuyerName")),
        "buyer_credit_code": _xml_text(_find(data_node, "BuyerInformation/BuyerIdNum")),
        "original_invoice_no": original,
    }
    lines = []
    items = [node for node in data_node if _local(node.tag) == "IssuItemInformation"]
    if len(items) > MAX_LINES:
        raise _invalid(_Where(), "lines", f"最多 {MAX_LINES} 条明细", f"at most {MAX_LINES} lines")
    for i, item in enumerate(items, start=1):
        fields = {
            "item_name": _xml_text(_find(item, "ItemName")),
            "unit": _xml_text(_find(item, "MeaUnits")),
            "qty": _xml_text(_find(item, "Quantity")),
            "unit_price": _xml_text(_find(item, "UnPrice")),
            "amount": _xml_text(_find(item, "Amount")),
            "tax_rate": _xml_text(_find(item, "TaxRate")),
            "tax": _xml_text(_find(item, "ComTaxAm")),
        }
        lines.append((_Where(line=i, prefix=f"IssuItemInformation[{i}]."), fields))
    return ParsedImport(InvoiceSource.XML, (build_invoice(header, lines, _Where()),))


def parse_invoice_file(data: bytes, filename: str | None = None, content_type: str | None = None) -> ParsedImport:
    """Invoices from an uploaded file: XML (数电票), XLSX or CSV, told apart by content, then by name."""
    _check_size(data)
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n")
    name = (filename or "").lower()
    if data[:4] == b"PK\x03\x04" or name.endswith(".xlsx"):
        return parse_invoice_xlsx(data)
    if head.startswith(b"<") or name.endswith(".xml"):
        return parse_invoice_xml(data)
    if name.endswith((".csv", ".txt")) or (content_type or "").startswith("text/") or not name:
        return parse_invoice_csv(data)
    raise _invalid(
        _Where(), "file", "只接受 CSV、XLSX 或数电票 XML 文件", "only CSV, XLSX or 数电票 XML files are accepted"
    )
