"""Input formats of the outside signals (docs/signals.md): one pydantic model per kind, for the API's JSON body
and for import files (CSV with the same columns, UTF-8 with or without BOM, or a JSON list of records).

This is the boundary: records are checked here for shape, types, ranges and dates that agree with each other,
then turned into the domain records of edge.replenishment.signals, which checks what needs the database
(SKUs, categories, suppliers that exist, dates near today). A file is refused as a whole, naming the line and
the field of the first bad record.
"""

from __future__ import annotations

import csv
import io
import json
import math
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from edge.replenishment.errors import InvalidSignal, SignalImportTooLarge

MAX_RECORDS = 10_000  # per API call or file
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_ORDER_LINES = 200
MAX_NOTE = 200
MAX_PROMO_DAYS = 366
CODE_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"

# Promotion kinds: the Chinese word is stored; the English alias is accepted too.
PROMOTION_KINDS: dict[str, tuple[str, str]] = {
    "折扣": ("折扣", "discount"),
    "满减": ("满减", "spend-and-save"),
    "买赠": ("买赠", "buy-and-get"),
    "特价": ("特价", "special price"),
}
PROMOTION_KIND_ALIASES: dict[str, str] = {
    **{zh: zh for zh in PROMOTION_KINDS},
    "discount": "折扣",
    "spend_save": "满减",
    "spend-and-save": "满减",
    "gift": "买赠",
    "buy_get": "买赠",
    "buy-and-get": "买赠",
    "special": "特价",
    "special_price": "特价",
}


def _iso_date(value: object) -> object:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-":
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError("expected a date as YYYY-MM-DD")


def _clean_text(value: str) -> str:
    text = value.strip()
    if any(unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn") for ch in text):
        raise ValueError("contains control or invalid characters")
    return text


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Day = Annotated[date, BeforeValidator(_iso_date)]
Code = Annotated[str, Field(pattern=CODE_PATTERN)]
Text = Annotated[str, Field(min_length=1, max_length=MAX_NOTE), AfterValidator(_clean_text)]
Number = Annotated[float, AfterValidator(_finite)]


class SignalRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WeatherIn(SignalRecord):
    """Forecast weather of one day (天气预报): store level, or for one location of the box."""

    date: Day = Field(examples=["2026-12-08"])
    temp_max_c: Annotated[Number, Field(ge=-60, le=60, examples=[12.5])]
    temp_min_c: Annotated[Number, Field(ge=-60, le=60, examples=[3.0])]
    rain_mm: Annotated[Number, Field(ge=0, le=1000, examples=[0.0])]
    location: Code | None = Field(None, description="a location code of this box; empty = the whole store")

    @model_validator(mode="after")
    def _min_below_max(self) -> WeatherIn:
        if self.temp_min_c > self.temp_max_c:
            raise ValueError("temp_min_c is above temp_max_c")
        return self


class PromotionIn(SignalRecord):
    """A promotion (促销) of one SKU or one category, from start to end (both included)."""

    sku: Code | None = None
    category: Code | None = None
    start: Day = Field(examples=["2026-12-08"])
    end: Day = Field(examples=["2026-12-14"])
    discount: Annotated[Number | None, Field(gt=0, lt=1, examples=[0.2], description="fraction off, 0.2 = 8 折")] = None
    promo_price_fen: int | None = Field(None, ge=1, le=1_000_000_000, description="promotion price per base unit")
    kind: str = Field(
        "折扣", examples=["折扣"], description="折扣 | 满减 | 买赠 | 特价 (or discount, spend_save, gift, special)"
    )
    note: Text | None = None
    cancelled: bool = Field(
        False, description="withdraws the promotion pushed earlier for the same sku or category and start"
    )

    @model_validator(mode="after")
    def _consistent(self) -> PromotionIn:
        if (self.sku is None) == (self.category is None):
            raise ValueError("give exactly one of sku and category")
        if (self.discount is None) == (self.promo_price_fen is None) and not (self.cancelled and self.discount is None):
            raise ValueError("give exactly one of discount and promo_price_fen")
        if self.promo_price_fen is not None and self.sku is None:
            raise ValueError("promo_price_fen needs a sku (a category has no single price)")
        if self.end < self.start:
            raise ValueError("end is before start")
        if (self.end - self.start).days >= MAX_PROMO_DAYS:
            raise ValueError(f"a promotion lasts at most {MAX_PROMO_DAYS} days")
        if self.kind.strip() not in PROMOTION_KIND_ALIASES:
            raise ValueError(f"kind must be one of {', '.join(PROMOTION_KINDS)}")
        return self


class OrderLineIn(SignalRecord):
    sku: Code
    qty: int = Field(ge=1, le=100_000, description="base units")


class OnlineOrderIn(SignalRecord):
    """A marketplace order pushed by a connector; kept once per (channel, order_id)."""

    channel: str = Field(pattern=r"^[a-z0-9_-]{1,32}$", examples=["meituan"])
    order_id: str = Field(pattern=r"^[\x21-\x7e]{1,64}$", examples=["MT20261205001"])
    ts: AwareDatetime = Field(examples=["2026-12-05T11:20:00+08:00"])
    lines: list[OrderLineIn] = Field(min_length=1, max_length=MAX_ORDER_LINES)
    fulfilment: Literal["channel", "pos"] = Field(
        "channel",
        description="channel: picked and handed over without a sale at this box's POS (counts as extra demand);"
        " pos: also rung up at this box as a sale (already in the sales history, never counted twice)",
    )


class SupplierDelayIn(SignalRecord):
    """A supplier's shipping delay notice (供应商延误): lifts the lead time of the supplier's items."""

    supplier: Code
    delay_days: int = Field(ge=0, le=90, description="0 lifts an earlier notice with the same `from`")
    from_: Day = Field(alias="from", examples=["2026-12-05"])
    until: Day | None = None
    reason: Text | None = None

    @model_validator(mode="after")
    def _order(self) -> SupplierDelayIn:
        if self.until is not None and self.until < self.from_:
            raise ValueError("until is before from")
        return self


class _Target(SignalRecord):
    sku: Code | None = None
    category: Code | None = None

    def _one_target(self, *others: object) -> None:
        given = [x for x in (self.sku, self.category, *others) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one target (sku, category" + (", keyword)" if others else ")"))


class TrendIn(_Target):
    """A trending-topic score (热搜指数) 0..100 for a SKU, a category or a keyword naming SKUs."""

    keyword: Annotated[Text | None, Field(max_length=32)] = None
    date: Day
    score: Annotated[Number, Field(ge=0, le=100, examples=[92])]
    baseline: Annotated[Number | None, Field(ge=0, lt=100)] = None

    @model_validator(mode="after")
    def _target(self) -> TrendIn:
        self._one_target(self.keyword)
        return self


class RateIn(_Target):
    date: Day
    rate: Annotated[Number, Field(ge=0, le=1, examples=[0.35])]
    baseline: Annotated[Number | None, Field(ge=0, le=1)] = None

    @model_validator(mode="after")
    def _target(self) -> RateIn:
        self._one_target()
        return self


class SearchBounceIn(RateIn):
    """Search bounce rate (搜索无结果/跳出率) 0..1: shoppers searched for it and left without finding it."""


class CartAbandonmentIn(RateIn):
    """Cart abandonment rate (购物车放弃率) 0..1."""


class LeadTimeIn(SignalRecord):
    """One delivery from a previous system's records: ordered on, received on (both business dates)."""

    supplier: Code
    po_ref: str = Field(pattern=r"^[\x21-\x7e]{1,64}$", description="the order's number in the old system")
    ordered_on: Day
    received_on: Day
    qty: int = Field(1, ge=1, le=10_000_000, description="units received (weights partial deliveries)")

    @model_validator(mode="after")
    def _order(self) -> LeadTimeIn:
        if self.received_on < self.ordered_on:
            raise ValueError("received_on is before ordered_on")
        if (self.received_on - self.ordered_on).days > 365:
            raise ValueError("a lead time of more than 365 days")
        return self


RecordIn = WeatherIn | PromotionIn | OnlineOrderIn | SupplierDelayIn | TrendIn | SearchBounceIn | CartAbandonmentIn

FORMATS: dict[str, type[SignalRecord]] = {
    "weather": WeatherIn,
    "promotion": PromotionIn,
    "online_sales": OnlineOrderIn,
    "supplier_delay": SupplierDelayIn,
    "trend": TrendIn,
    "search_bounce": SearchBounceIn,
    "cart_abandonment": CartAbandonmentIn,
}
KINDS: tuple[str, ...] = tuple(FORMATS)
# What files may hold: the signal kinds and lead-time history (storebox signals import-lead-times).
IMPORT_FORMATS: dict[str, type[SignalRecord]] = {**FORMATS, "lead_time": LeadTimeIn}

# CSV columns per kind (the JSON field names); online_sales has one row per order line.
CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "weather": ("date", "temp_max_c", "temp_min_c", "rain_mm", "location"),
    "promotion": ("sku", "category", "start", "end", "discount", "promo_price_fen", "kind", "note", "cancelled"),
    "online_sales": ("channel", "order_id", "ts", "sku", "qty", "fulfilment"),
    "supplier_delay": ("supplier", "delay_days", "from", "until", "reason"),
    "trend": ("sku", "category", "keyword", "date", "score", "baseline"),
    "search_bounce": ("sku", "category", "date", "rate", "baseline"),
    "cart_abandonment": ("sku", "category", "date", "rate", "baseline"),
    "lead_time": ("supplier", "po_ref", "ordered_on", "received_on", "qty"),
}

_ZH: dict[str, str] = {
    "missing": "缺少必填字段",
    "extra_forbidden": "不允许的字段",
    "int_parsing": "应为整数",
    "int_type": "应为整数",
    "int_from_float": "应为整数，不能有小数",
    "float_parsing": "应为数字",
    "float_type": "应为数字",
    "string_type": "应为文本",
    "greater_than_equal": "数值过小",
    "greater_than": "数值过小",
    "less_than_equal": "数值过大",
    "less_than": "数值过大",
    "string_too_short": "不能为空",
    "string_too_long": "过长",
    "too_short": "项数过少",
    "too_long": "项数过多",
    "string_pattern_mismatch": "格式不符",
    "literal_error": "取值不在允许范围内",
    "timezone_aware": "时间须带时区 (如 +08:00)",
    "datetime_parsing": "应为 RFC 3339 时间",
    "datetime_type": "应为 RFC 3339 时间",
    "list_type": "应为数组",
    "model_type": "应为 JSON 对象",
    "value_error": "值无效",
}


def kind_of(name: str) -> str:
    """The kind named in a path or an option ('online-sales' and 'online_sales' alike), or InvalidSignal."""
    kind = name.strip().lower().replace("-", "_")
    if kind not in FORMATS:
        from edge.replenishment.errors import UnknownSignalKind

        raise UnknownSignalKind(name[:40], KINDS)
    return kind


def _where(index: int, line: int | None) -> tuple[str, str, dict[str, int]]:
    if line is not None:
        return f"第 {line} 行", f"line {line}", {"line": line, "index": index}
    return f"第 {index + 1} 条记录", f"record {index}", {"index": index}


def invalid_record(
    kind: str, index: int, line: int | None, field: str, zh: str, en: str, **detail: Any
) -> InvalidSignal:
    """The refusal of one record, naming where it is (file line or list index) and the field."""
    where_zh, where_en, place = _where(index, line)
    return InvalidSignal(
        f"{kind} 信号{where_zh} 字段 {field}: {zh}",
        f"{kind} signal {where_en}, field {field}: {en}",
        kind=kind,
        field=field,
        **place,
        **detail,
    )


def _from_validation(kind: str, index: int, line: int | None, error: ValidationError) -> InvalidSignal:
    first = error.errors()[0]
    loc = [str(p) for p in first.get("loc", ())]
    field = ".".join(loc) or "record"
    if field == "from_":
        field = "from"
    message = str(first.get("msg", "invalid"))
    zh = _ZH.get(str(first.get("type")), "值无效")
    if first.get("type") == "value_error":
        zh = f"值无效 ({message.removeprefix('Value error, ')})"
    return invalid_record(kind, index, line, field, zh, message)


def validate_records(kind: str, raw: Sequence[Any], lines: Sequence[int] | None = None) -> list[SignalRecord]:
    """Each raw record (a JSON object or a CSV row as a dict) through the kind's model; the first bad one
    refuses the whole list."""
    model = IMPORT_FORMATS[kind]
    if len(raw) > MAX_RECORDS:
        raise InvalidSignal(f"最多 {MAX_RECORDS} 条记录", f"at most {MAX_RECORDS} records", kind=kind, records=len(raw))
    out: list[SignalRecord] = []
    for index, item in enumerate(raw):
        line = lines[index] if lines is not None else None
        if not isinstance(item, Mapping):
            raise invalid_record(kind, index, line, "record", "应为 JSON 对象", "must be a JSON object")
        try:
            out.append(model.model_validate(item))
        except ValidationError as exc:
            raise _from_validation(kind, index, line, exc) from None
    return out


# --- files -------------------------------------------------------------------------------------


def _decode(kind: str, data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidSignal(
            "文件须为 UTF-8 编码 (可带 BOM)", "the file must be UTF-8 (a BOM is fine)", kind=kind, field="file"
        ) from None
    if "\x00" in text:
        raise InvalidSignal("不是文本文件", "not a text file", kind=kind, field="file")
    return text


def _file_error(kind: str, zh: str, en: str, **detail: Any) -> InvalidSignal:
    return InvalidSignal(f"{kind} 信号文件: {zh}", f"{kind} signal file: {en}", kind=kind, field="file", **detail)


def _rows_of_csv(kind: str, text: str) -> tuple[list[dict[str, str]], list[int]]:
    """CSV rows as dicts of the non-empty cells, with the file line each starts on."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise _file_error(kind, "文件为空", "the file is empty") from None
    except csv.Error as exc:
        raise _file_error(kind, f"CSV 格式错误: {exc}", f"malformed CSV: {exc}") from None
    names = [unicodedata.normalize("NFKC", h).strip().lower() for h in header]
    known = CSV_COLUMNS[kind]
    for name in names:
        if name and name not in known:
            raise _file_error(
                kind, f"未知列 {name[:40]} (可用: {', '.join(known)})", f"unknown column {name[:40]}", line=1
            )
    if len(set(n for n in names if n)) != len([n for n in names if n]):
        raise _file_error(kind, "列名重复", "a column appears twice", line=1)
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    try:
        while True:
            line = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(names):
                raise _file_error(kind, f"第 {line} 行的列多于表头", f"line {line} has more cells than the header")
            rows.append({n: c.strip() for n, c in zip(names, cells, strict=False) if n and c.strip()})
            lines.append(line)
            if len(rows) > MAX_RECORDS:
                raise _file_error(kind, f"最多 {MAX_RECORDS} 行", f"at most {MAX_RECORDS} rows")
    except csv.Error as exc:
        raise _file_error(kind, f"CSV 格式错误: {exc}", f"malformed CSV: {exc}") from None
    if not rows:
        raise _file_error(kind, "没有数据行", "the file has no rows")
    return rows, lines


def _orders_from_rows(rows: list[dict[str, str]], lines: list[int]) -> tuple[list[dict[str, Any]], list[int]]:
    """online_sales CSV: one row per order line; rows of one (channel, order_id) make one order (same ts)."""
    orders: dict[tuple[str, str], dict[str, Any]] = {}
    starts: dict[tuple[str, str], int] = {}
    for row, line in zip(rows, lines, strict=True):
        key = (row.get("channel", ""), row.get("order_id", ""))
        order = orders.get(key)
        if order is None:
            order = {k: v for k, v in row.items() if k not in ("sku", "qty")}
            order["lines"] = []
            orders[key] = order
            starts[key] = line
        elif row.get("ts") != order.get("ts") or row.get("fulfilment", "channel") != order.get("fulfilment", "channel"):
            raise invalid_record(
                "online_sales",
                len(starts) - 1,
                line,
                "ts",
                f"与第 {starts[key]} 行 (同一订单) 不一致",
                f"differs from line {starts[key]} of the same order",
            )
        order["lines"].append({k: row[k] for k in ("sku", "qty") if k in row})
    return list(orders.values()), list(starts.values())


def parse_signal_file(
    kind: str, data: bytes, filename: str | None = None
) -> tuple[list[SignalRecord], list[int] | None]:
    """The records of an import file (CSV, or JSON: a list of records or {"records": [...]}) and the line each
    starts on; refused as a whole (InvalidSignal naming the line and field) when any record is bad."""
    if len(data) > MAX_FILE_BYTES:
        raise SignalImportTooLarge(len(data), MAX_FILE_BYTES)
    if not data.strip():
        raise _file_error(kind, "文件为空", "the file is empty")
    text = _decode(kind, data)
    name = (filename or "").lower()
    stripped = text.lstrip()
    if name.endswith(".json") or (not name.endswith(".csv") and stripped[:1] in ("[", "{")):
        return _parse_json(kind, text)
    rows, lines = _rows_of_csv(kind, text)
    raw: list[dict[str, Any]] = list(rows)
    if kind == "online_sales":
        raw, lines = _orders_from_rows(rows, lines)
    return validate_records(kind, raw, lines), lines


def _parse_json(kind: str, text: str) -> tuple[list[SignalRecord], list[int] | None]:
    try:
        loaded = json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        where = getattr(exc, "lineno", None)
        raise _file_error(
            kind, "JSON 格式错误" + (f" (第 {where} 行)" if where else ""), f"malformed JSON: {exc}"[:200]
        ) from None
    if isinstance(loaded, dict) and set(loaded) == {"records"}:
        loaded = loaded["records"]
    if not isinstance(loaded, list):
        raise _file_error(kind, "应为记录的 JSON 数组", "expected a JSON list of records")
    if not loaded:
        raise _file_error(kind, "没有记录", "the file has no records")
    lines = _json_lines(text, len(loaded))
    return validate_records(kind, loaded, lines), lines


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _json_lines(text: str, count: int) -> list[int] | None:
    """The line each top-level record of a JSON list starts on (best effort: records one per line or pretty
    printed; the index is in the error too)."""
    lines: list[int] = []
    target = 2 if text.lstrip()[:1] == "[" else 3
    depth = 0
    in_string = False
    escaped = False
    line = 1
    for ch in text:
        if ch == "\n":
            line += 1
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if ch == "{" and depth == target:
                lines.append(line)
        elif ch in "]}":
            depth -= 1
    return lines if len(lines) == count else None


def records_to_json(records: Iterable[SignalRecord]) -> list[dict[str, Any]]:
    return [r.model_dump(mode="json", by_alias=True, exclude_none=True) for r in records]
