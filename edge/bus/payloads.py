"""Device event payloads at the MQTT boundary: validation, the typed command each becomes, the ack.

An event is JSON `{"id": <client-generated unique id>, "ts": <RFC 3339>, "data": {...}}` published on
`storebox/<store>/dev/<device>/evt/<kind>`. `decode_event` turns raw bytes into either a `DecodedEvent`
(a ledger command, or a sensor reading) or a `Rejection` with a stable code; it never raises. Every refusal
says why in Chinese (`message`) and in English (`message_en`): checks raise `EventDataError` with both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from edge.devices.barcodes import DEFAULT_LABEL_FORMATS, LABEL_FORMATS_KEY, InterpretedCode, LabelFormat, interpret_code
from edge.ledger.commands import RETURN_REASON_ALIASES, DocType, Line, PostDocument, PostResult, ReturnReason
from edge.ledger.errors import DomainError
from edge.ledger.posting import MAX_PRICE_FEN, MAX_QTY  # the ledger's own limits, refused here already

MAX_EVENT_ID_LENGTH = 100
MAX_SALE_LINES = 200
MIN_CELSIUS, MAX_CELSIUS = -100.0, 200.0

_EVENT_ID = re.compile(r"[!-~]{1,100}")  # printable ASCII without spaces: UUIDs, ULIDs, "pos1-000123"
_EVENT_ID_IN_HEAD = re.compile(rb'"id"\s*:\s*"([^"\\\s]{1,100})"')
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.(\d{1,9}))?(?:[Zz]|[+-]\d{2}:\d{2})")


class EventKind(StrEnum):
    """Event kinds the box ingests (the last topic level)."""

    SALE = "sale"  # POS: a whole ticket
    SCAN = "scan"  # handheld: one scanned code
    TEMP = "temp"  # cold-room sensor: one temperature reading


class ScanMode(StrEnum):
    SALE = "sale"
    RETURN = "return"  # customer return (顾客退货)
    COUNT = "count"  # stocktake count (盘点)
    RECEIVE = "receive"  # scan-to-receive (扫码即入库), our extension


class Payment(StrEnum):
    CASH = "cash"
    CARD = "card"
    WECHAT = "wechat"
    ALIPAY = "alipay"


class RejectCode(StrEnum):
    """Why an event was not turned into a command (stable; devices and dashboards switch on it)."""

    PAYLOAD_TOO_LARGE = "payload_too_large"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    INVALID_ENVELOPE = "invalid_envelope"
    INVALID_DATA = "invalid_data"
    EXPIRED = "expired"  # a receive scan of goods whose expiry is before the event's date
    UNKNOWN_KIND = "unknown_kind"
    INTERNAL_ERROR = "internal_error"


class EventDataError(DomainError, ValueError):
    """Data of a device event that cannot be taken as sent, with the reason in Chinese and English.

    Also a ValueError, so that pydantic keeps it (with both messages) as the cause of a validation error, and
    `decode_event` answers with its `code` (`invalid_data` unless a subclass says otherwise).
    """

    code: ClassVar[str] = RejectCode.INVALID_DATA.value
    status: ClassVar[int] = 422


class ExpiredOnReceipt(EventDataError):
    """Goods scanned to receive whose expiry is before the event's date (扫码入库: 已过期的批次不能入库)."""

    code = RejectCode.EXPIRED.value

    def __init__(self, item: str, lot: str | None, expiry: date, on: date) -> None:
        batch, batch_en = (f" 批次 {lot}", f" lot {lot}") if lot else ("", "")
        super().__init__(
            f"已过期, 不能入库: 商品 {item}{batch} 有效期至 {expiry}, 早于 {on}",
            f"expired goods cannot be received: item {item}{batch_en} expired {expiry}, before {on}",
            item=item,
            lot=lot,
            expiry=expiry.isoformat(),
            date=on.isoformat(),
        )


def _parse_rfc3339(value: object) -> datetime:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    if not isinstance(value, str) or (match := _RFC3339.fullmatch(value)) is None:
        raise EventDataError(
            "须为带时区的 RFC 3339 时间, 例如 2024-05-01T09:30:00+08:00",
            "must be an RFC 3339 timestamp with offset, e.g. 2024-05-01T09:30:00+08:00",
        )
    text = value.upper()
    if match.group(1) and len(match.group(1)) > 6:  # datetime keeps microseconds
        text = text[: match.start(1) + 6] + text[match.end(1) :]
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _parse_date(value: object) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise EventDataError("须为日期 YYYY-MM-DD", "must be a date YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise EventDataError(f"{value} 不是有效日期", f"{value} is not a date") from None


Timestamp = Annotated[datetime, BeforeValidator(_parse_rfc3339)]
IsoDate = Annotated[date, BeforeValidator(_parse_date)]
EventId = Annotated[str, StringConstraints(pattern=r"^[!-~]{1,100}$")]
ItemCode = Annotated[str, StringConstraints(pattern=r"^[!-~]{1,64}$")]  # SKU or any barcode
# What a scanner read: a SKU or barcode, or a GS1 element string (GS separators, the `(01)...` form with spaces);
# edge.devices.barcodes.interpret_code reads it.
ScannedCode = Annotated[str, StringConstraints(pattern=r"^[\x1d -~]{1,200}$")]
DeviceId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")]
LedgerCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]  # location, supplier, lot
Quantity = Annotated[int, Field(ge=0, le=MAX_QTY)]
PriceFen = Annotated[int, Field(ge=0, le=MAX_PRICE_FEN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class EventEnvelope(_Strict):
    """The envelope of every device event."""

    id: EventId
    ts: Timestamp
    data: dict[str, Any]


class SaleLine(_Strict):
    """One ticket line. `qty` is required, except for a code that carries its own quantity or amount (a scale
    label, a GS1 code with a net weight): there it counts such packages and defaults to 1."""

    code: ScannedCode
    qty: Annotated[int, Field(gt=0, le=MAX_QTY)] | None = None
    price_fen: PriceFen | None = None


class SaleData(_Strict):
    """`evt/sale` from a POS: one ticket, sold from one location (default the sales floor)."""

    lines: Annotated[list[SaleLine], Field(min_length=1, max_length=MAX_SALE_LINES)]
    payment: Annotated[Payment, Field(strict=False)] | None = None
    location: LedgerCode | None = None  # e.g. "cold" for weighed goods kept in the cold room


class ScanData(_Strict):
    """`evt/scan` from a handheld: one scanned code in a mode."""

    code: ScannedCode
    qty: Quantity | None = None  # default 1; for a code that carries its own quantity, packages of it
    mode: Annotated[ScanMode, Field(strict=False)]
    location: LedgerCode | None = None
    reason: str | None = None  # ReturnReason code or its Chinese label, mode return only
    reason_text: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    lot: LedgerCode | None = None
    expiry: IsoDate | None = None  # mode receive
    price_fen: PriceFen | None = None  # mode sale, return, receive
    supplier: LedgerCode | None = None  # mode receive
    scale: DeviceId | None = None  # the quantity is this scale's stable weight in grams (edge.devices.weights)

    @model_validator(mode="after")
    def _fits_mode(self) -> ScanData:
        if self.mode is not ScanMode.COUNT and self.qty == 0:
            raise EventDataError(
                "qty 须大于 0 (只有盘点 count 可以为 0)", "qty must be greater than 0 (only a count may be 0)"
            )
        if self.scale is not None and self.qty is not None:
            raise EventDataError(
                "qty 和 scale 只能发送一个 (秤的重量就是数量)",
                "send either qty or scale (the scale's weight is the quantity), not both",
            )
        if self.mode is ScanMode.RETURN:
            reason = return_reason(self.reason)
            if reason is None:
                allowed = ", ".join([*ReturnReason, *RETURN_REASON_ALIASES])
                raise EventDataError(
                    f"退货 (return) 须填写原因 reason, 可选: {allowed}",
                    f"mode return needs a reason, one of: {allowed}",
                )
            if reason is ReturnReason.OTHER and not self.reason_text:
                raise EventDataError("原因为其他 (other) 时须填写 reason_text", "reason other needs reason_text")
        elif self.reason is not None or self.reason_text is not None:
            raise EventDataError(
                "reason 和 reason_text 只用于退货 (return)", "reason and reason_text are for mode return only"
            )
        if self.mode is not ScanMode.RECEIVE and (self.expiry is not None or self.supplier is not None):
            raise EventDataError(
                "expiry 和 supplier 只用于扫码入库 (receive)", "expiry and supplier are for mode receive only"
            )
        if self.mode is ScanMode.COUNT and self.price_fen is not None:
            raise EventDataError("盘点 (count) 不接受 price_fen", "price_fen is not for mode count")
        return self


class TempData(_Strict):
    """`evt/temp` from a cold-room sensor: one reading."""

    celsius: Annotated[float, Field(ge=MIN_CELSIUS, le=MAX_CELSIUS, allow_inf_nan=False)]
    location: LedgerCode | None = None


def return_reason(value: str | None) -> ReturnReason | None:
    """A return reason from its code or its Chinese label (包装破损, 口味不符, ...)."""
    if value is None:
        return None
    if value in RETURN_REASON_ALIASES:
        return RETURN_REASON_ALIASES[value]
    try:
        return ReturnReason(value)
    except ValueError:
        return None


# --- decoded events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TemperatureReading:
    """A cold-room reading (冷库温度); not a ledger document."""

    device: str
    event_id: str
    ts: datetime
    location: str | None
    milli_celsius: int


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """What a writer job made of one device event: the fields of its ack, and the postings it made.

    `post_results` reach the writer's after-commit listeners (retained stock topic) like any posting.
    `detail` travels in the ack (for example what a receipt took in and what differed from the PO).
    """

    ok: bool
    code: str
    message: str
    message_en: str
    document: int | None = None
    detail: dict[str, Any] | None = None
    post_results: tuple[PostResult, ...] = ()
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class WriterJob:
    """Work for the one writer: a module-level `fn(conn, ctx, *args) -> JobOutcome` (pickled to the writer).

    The ingest runs it once per (device, event id): a resent event gets the stored outcome again
    (`edge.bus.storage.run_event_job`), so every job kind is idempotent by the same mechanism.
    """

    fn: Callable[..., JobOutcome]
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    """A valid event: exactly one of `command`, `reading` and `job` is set."""

    device: str
    event_id: str
    kind: str
    ts: datetime
    command: PostDocument | None = None
    reading: TemperatureReading | None = None
    job: WriterJob | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event that cannot become a command; answered with a failed ack and dead-lettered."""

    code: str
    message: str
    message_en: str
    event_id: str | None = None


def event_key(device: str, event_id: str) -> str:
    """The ledger idempotency key of a device event: the event id is unique per device."""
    return f"dev:{device}:{event_id}"


def scanned_line(
    reading: InterpretedCode,
    qty: int | None,
    *,
    default_qty: int | None = 1,
    price_fen: int | None = None,
    lot: str | None = None,
    expiry: date | None = None,
    with_amount: bool = True,
    with_expiry: bool = True,
    counting: bool = False,
    where: str = "",
) -> Line:
    """The ledger line for a scanned code and what the device sent with it; EventDataError when they disagree.

    For a code that carries its own quantity (weight or count) `qty` counts packages of it (default 1);
    otherwise `qty` is the quantity (default `default_qty`; None: required). `with_amount` takes the amount a
    code carries as the line's total (sales and returns: what the customer paid; not for receipts or counts).
    """
    shown = repr(reading.raw[:40])
    if reading.carries_quantity:
        packages = 1 if qty is None else qty
        line_qty = reading.quantity(packages)
        assert line_qty is not None
        if line_qty == 0 and not counting:
            raise EventDataError(
                f"{where}条码 {shown} 的数量为 0, 不能过账 (只有盘点可以为 0)",
                f"{where}code {shown} carries a quantity of 0",
            )
    else:
        if qty is None and default_qty is None:
            raise EventDataError(
                f"{where}须填写 qty (条码中没有重量或数量)",
                f"{where}qty is required (the code carries no weight or count)",
            )
        packages = line_qty = qty if qty is not None else default_qty or 0
    if lot is not None and reading.lot is not None and lot != reading.lot:
        raise EventDataError(
            f"{where}批号 {lot!r} 与条码中的批号 {reading.lot!r} 不一致",
            f"{where}lot {lot!r} differs from lot {reading.lot!r} in the code",
        )
    if expiry is not None and reading.expiry is not None and expiry != reading.expiry:
        raise EventDataError(
            f"{where}有效期 {expiry} 与条码中的有效期 {reading.expiry} 不一致",
            f"{where}expiry {expiry} differs from expiry {reading.expiry} in the code",
        )
    amount = reading.amount(packages) if with_amount else None
    if amount is not None and price_fen is not None:
        raise EventDataError(
            f"{where}条码已带金额, 不能再发送 price_fen",
            f"{where}price_fen cannot be sent with a code that carries its amount",
        )
    return Line(
        code=reading.item_code,
        qty=line_qty,
        price_fen=price_fen,
        unit=reading.unit,
        lot=lot if lot is not None else reading.lot,
        expiry=(expiry if expiry is not None else reading.expiry) if with_expiry else None,
        amount_fen=amount,
    )


def to_command(
    device: str,
    event_id: str,
    data: SaleData | ScanData,
    *,
    formats: Sequence[LabelFormat | str] = DEFAULT_LABEL_FORMATS,
    today: date | None = None,
) -> PostDocument:
    """The ledger command for a validated sale or scan event; its codes read by `interpret_code` with the
    store's label `formats` (a BarcodeError, a ValueError, when a code cannot be read). A scan with `scale`
    gets quantity 0 here: the writer job of edge.devices.weights puts the scale's weight in. `today` is the
    event's date: a receive of goods that expired before it is refused (ExpiredOnReceipt), as the
    scan-to-receive drafts refuse them."""
    key = event_key(device, event_id)
    if isinstance(data, SaleData):
        readings = [interpret_code(ln.code, formats, today=today) for ln in data.lines]
        lines = tuple(
            scanned_line(
                reading,
                ln.qty,
                default_qty=1 if reading.amount_fen is not None else None,  # a priced label sells one
                price_fen=ln.price_fen,
                with_expiry=False,
                where=f"lines.{i}: ",
            )
            for i, (ln, reading) in enumerate(zip(data.lines, readings, strict=True))
        )
        payment = data.payment.value if data.payment else None
        return PostDocument(
            key=key,
            type=DocType.SALE,
            lines=lines,
            location=data.location,
            payment=payment,
            actor=device,
            device=device,
        )
    receiving = data.mode is ScanMode.RECEIVE
    reading = interpret_code(data.code, formats, today=today)
    if data.scale is not None and reading.carries_quantity:
        raise EventDataError(
            "scale: 条码已带重量或数量, 请不带 scale 发送",
            "scale: the code carries its own weight or count; send it without scale",
        )
    line = scanned_line(
        reading,
        0 if data.scale is not None else data.qty,
        price_fen=data.price_fen,
        lot=data.lot,
        expiry=data.expiry,
        with_amount=data.mode in (ScanMode.SALE, ScanMode.RETURN) and data.scale is None,
        with_expiry=receiving,
        counting=data.mode is ScanMode.COUNT or data.scale is not None,
    )
    if receiving and today is not None and line.expiry is not None and line.expiry < today:
        raise ExpiredOnReceipt(line.code, line.lot, line.expiry, today)
    doc_type = {
        ScanMode.SALE: DocType.SALE,
        ScanMode.RETURN: DocType.CUSTOMER_RETURN,
        ScanMode.COUNT: DocType.STOCKTAKE,  # qty is the counted quantity
        ScanMode.RECEIVE: DocType.RECEIPT,
    }[data.mode]
    reason = return_reason(data.reason)
    return PostDocument(
        key=key,
        type=doc_type,
        lines=(line,),
        location=data.location,
        counterparty=data.supplier if receiving else None,
        reason=reason.value if reason else None,
        reason_text=data.reason_text,
        actor=device,
        device=device,
    )


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """Store settings the decoding of events needs (pure values, no I/O)."""

    max_bytes: int = 16384
    extra: Mapping[str, Any] = field(default_factory=dict)  # per-kind settings, by the kind's own keys


# What an event kind's data becomes: a ledger command, a sensor reading, a writer job, or a refusal.
KindHandler = Callable[[str, "EventEnvelope", Any, DecodeOptions], "PostDocument | TemperatureReading | WriterJob"]


@dataclass(frozen=True, slots=True)
class KindSpec:
    """One event kind the ingest takes: the pydantic model of its `data` and what it becomes.

    A handler may raise ValueError (or a pydantic ValidationError) to refuse the data with a message.
    """

    model: type[BaseModel]
    handle: KindHandler


def _core_handle(device: str, envelope: EventEnvelope, data: Any, options: DecodeOptions) -> Any:
    if isinstance(data, TempData):
        return TemperatureReading(
            device=device,
            event_id=envelope.id,
            ts=envelope.ts,
            location=data.location,
            milli_celsius=round(data.celsius * 1000),
        )
    formats = options.extra.get(LABEL_FORMATS_KEY, DEFAULT_LABEL_FORMATS)
    command = to_command(device, envelope.id, data, formats=formats, today=envelope.ts.date())
    if isinstance(data, ScanData) and data.scale is not None:
        from edge.devices import weights  # imported here: weights builds on this module

        max_age_s = int(options.extra.get(weights.MAX_AGE_KEY, weights.DEFAULT_MAX_AGE_S))
        return WriterJob(weights.post_weighed_scan, (command, data.scale, envelope.ts, max_age_s))
    return command


CORE_KINDS: dict[str, KindSpec] = {
    EventKind.SALE.value: KindSpec(SaleData, _core_handle),
    EventKind.SCAN.value: KindSpec(ScanData, _core_handle),
    EventKind.TEMP.value: KindSpec(TempData, _core_handle),
}


def _reject_constant(name: str) -> Any:
    raise EventDataError(f"{name} 在 JSON 中不是数字", f"{name} is not a number in JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise EventDataError(f"键 {key[:64]!r} 重复", f"duplicate key {key[:64]!r}")
        result[key] = value
    return result


def _json_problem(exc: ValueError | RecursionError) -> tuple[str, str]:
    """What is wrong with a payload that is not JSON, in Chinese and English."""
    if isinstance(exc, EventDataError):
        return exc.message, exc.message_en
    if isinstance(exc, json.JSONDecodeError):
        return f"第 {exc.lineno} 行第 {exc.colno} 列有误", str(exc)[:200]
    if isinstance(exc, RecursionError):
        return "嵌套层数过多", "nested too deeply"
    return "无法解析", str(exc)[:200] or type(exc).__name__


# Pydantic's error types in Chinese ({...}: the error's context); an error raised as EventDataError says its
# own Chinese. The English is pydantic's message.
_ZH_ERRORS = {
    "missing": "缺少此字段",
    "extra_forbidden": "不接受此字段 (拼写错误?)",
    "int_type": "须为整数",
    "int_parsing": "须为整数",
    "int_from_float": "须为整数",
    "float_type": "须为数字",
    "float_parsing": "须为数字",
    "finite_number": "须为有限的数字",
    "bool_type": "须为 true 或 false",
    "bool_parsing": "须为 true 或 false",
    "string_type": "须为字符串",
    "dict_type": "须为 JSON 对象",
    "model_type": "须为 JSON 对象",
    "model_attributes_type": "须为 JSON 对象",
    "list_type": "须为数组",
    "greater_than": "须大于 {gt}",
    "greater_than_equal": "须不小于 {ge}",
    "less_than": "须小于 {lt}",
    "less_than_equal": "须不大于 {le}",
    "too_short": "至少 {min_length} 项",
    "too_long": "至多 {max_length} 项",
    "string_too_short": "至少 {min_length} 个字符",
    "string_too_long": "至多 {max_length} 个字符",
    "string_pattern_mismatch": "格式不符 (须匹配 {pattern})",
    "enum": "须为其中之一: {expected}",
    "literal_error": "须为其中之一: {expected}",
    "date_type": "须为日期 YYYY-MM-DD",
    "datetime_type": "须为带时区的 RFC 3339 时间",
}


def _zh_error(item: Mapping[str, Any]) -> str:
    context = item.get("ctx") or {}
    cause = context.get("error")
    if isinstance(cause, DomainError):
        return cause.message
    template = _ZH_ERRORS.get(item["type"])
    if template is None:
        return f"值无效 ({item['type']})"
    shown = _Context({key: str(value).replace(" or ", ", ") for key, value in context.items()})
    return template.format_map(shown)


class _Context(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "?"


def _describe(error: ValidationError, prefix: str) -> tuple[str, str]:
    """The first errors of `error`, in Chinese and in English, each with where it is (`data.lines.0.qty`)."""
    zh, en = [], []
    for item in error.errors()[:3]:
        where = ".".join(str(p) for p in (prefix, *item["loc"]) if p != "")
        context = item.get("ctx") or {}
        cause = context.get("error")
        text_en = cause.message_en if isinstance(cause, DomainError) else str(item["msg"])
        zh.append(f"{where}: {_zh_error(item)}" if where else _zh_error(item))
        en.append(f"{where}: {text_en}" if where else text_en)
    more = error.error_count() - len(en)
    tail_zh, tail_en = (f" (另有 {more} 处)", f" (+{more} more)") if more > 0 else ("", "")
    return "; ".join(zh) + tail_zh, "; ".join(en) + tail_en


def recover_event_id(payload: bytes) -> str | None:
    """The event id from the head of a payload that will not be parsed (too large), if it shows."""
    match = _EVENT_ID_IN_HEAD.search(payload[:4096])
    if match is None:
        return None
    text = match.group(1).decode("ascii", errors="replace")
    return text if _EVENT_ID.fullmatch(text) else None


def decode_event(
    device: str,
    kind: str,
    payload: bytes,
    *,
    max_bytes: int | None = None,
    kinds: Mapping[str, KindSpec] | None = None,
    options: DecodeOptions | None = None,
) -> DecodedEvent | Rejection:
    """Validate one raw event from `device` on `evt/<kind>`; never raises on any input.

    `kinds` are the event kinds taken (default: sale, scan, temp; the box passes
    `edge.bus.event_kinds.device_event_kinds()`); `options` the store's decoding settings.
    """
    options = options or DecodeOptions()
    if max_bytes is not None:
        options = DecodeOptions(max_bytes=max_bytes, extra=options.extra)
    known_kinds = CORE_KINDS if kinds is None else kinds
    if len(payload) > options.max_bytes:
        return Rejection(
            RejectCode.PAYLOAD_TOO_LARGE,
            f"事件过大: {len(payload)} 字节, 上限 {options.max_bytes} 字节",
            f"event too large: {len(payload)} bytes, limit {options.max_bytes}",
            recover_event_id(payload),
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(RejectCode.NOT_UTF8, "事件不是 UTF-8 文本", f"event is not UTF-8 text ({exc.reason})")
    try:
        raw = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError) as exc:
        detail_zh, detail_en = _json_problem(exc)
        return Rejection(
            RejectCode.NOT_JSON, f"事件不是有效的 JSON: {detail_zh}", f"event is not valid JSON: {detail_en}"
        )
    event_id = raw.get("id") if isinstance(raw, dict) else None
    event_id = event_id if isinstance(event_id, str) and _EVENT_ID.fullmatch(event_id) else None
    spec = known_kinds.get(kind)
    if spec is None:
        known = ", ".join(sorted(known_kinds))
        return Rejection(
            RejectCode.UNKNOWN_KIND,
            f"未知事件类型: {kind[:64]!r} (支持: {known})",
            f"unknown event kind: {kind[:64]!r} (known: {known})",
            event_id,
        )
    try:
        envelope = EventEnvelope.model_validate(raw)
    except ValidationError as exc:
        detail_zh, detail_en = _describe(exc, "")
        return Rejection(
            RejectCode.INVALID_ENVELOPE,
            f"事件格式错误 (需要 id, ts, data): {detail_zh}",
            f"event has the wrong shape (needs id, ts, data): {detail_en}",
            event_id,
        )
    try:
        data = spec.model.model_validate(envelope.data)
        made = spec.handle(device, envelope, data, options)
    except ValidationError as exc:
        detail_zh, detail_en = _describe(exc, "data")
        return _invalid_data(kind, detail_zh, detail_en, envelope.id)
    except EventDataError as exc:
        if exc.code != RejectCode.INVALID_DATA:  # a refusal with a code of its own (expired): as it is
            return Rejection(exc.code, exc.message[:400], exc.message_en[:400], envelope.id)
        return _invalid_data(kind, exc.message[:300], exc.message_en[:300], envelope.id)
    except DomainError as exc:  # e.g. a barcode that cannot be read: its own Chinese and English reason
        return _invalid_data(kind, exc.message[:300], exc.message_en[:300], envelope.id)
    except ValueError as exc:  # another kind's check that says it in English only
        return _invalid_data(kind, str(exc)[:300], str(exc)[:300], envelope.id)
    if isinstance(made, TemperatureReading):
        return DecodedEvent(device, envelope.id, kind, envelope.ts, reading=made)
    if isinstance(made, WriterJob):
        return DecodedEvent(device, envelope.id, kind, envelope.ts, job=made)
    return DecodedEvent(device, envelope.id, kind, envelope.ts, command=made)


def _invalid_data(kind: str, detail: str, detail_en: str, event_id: str) -> Rejection:
    return Rejection(
        RejectCode.INVALID_DATA,
        f"{kind} 事件数据错误: {detail}",
        f"invalid {kind} event data: {detail_en}",
        event_id,
    )


# --- the ack ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ack:
    """What the box answers on `storebox/<store>/dev/<device>/ack` for every event it took.

    `retry` is true only when the box could not write (shutting down, disk trouble): the event was not
    posted and the device should resend it later. Any other ack is final for its id.
    """

    id: str | None
    ok: bool
    code: str
    message: str
    message_en: str
    document: int | None = None
    retry: bool = False
    detail: dict[str, Any] | None = None  # extension: only in acks that have something to add

    @classmethod
    def for_outcome(cls, event_id: str, outcome: JobOutcome) -> Ack:
        return cls(
            event_id,
            outcome.ok,
            outcome.code,
            outcome.message,
            outcome.message_en,
            outcome.document,
            False,
            outcome.detail,
        )

    @classmethod
    def for_result(cls, event_id: str, result: PostResult) -> Ack:
        return cls(event_id, result.ok, result.code, result.message, result.message_en, result.document_id)

    @classmethod
    def for_rejection(cls, rejection: Rejection) -> Ack:
        return cls(rejection.event_id, False, rejection.code, rejection.message, rejection.message_en)

    @classmethod
    def stored(cls, event_id: str) -> Ack:
        return cls(event_id, True, "ok", "已记录", "recorded")

    @classmethod
    def unavailable(cls, event_id: str) -> Ack:
        return cls(
            event_id,
            False,
            "unavailable",
            "暂时无法记账, 请稍后重发",
            "the box cannot post right now; resend the event later",
            retry=True,
        )

    def to_json(self) -> bytes:
        body: dict[str, Any] = {
            "id": self.id,
            "ok": self.ok,
            "code": self.code,
            "message": self.message,
            "message_en": self.message_en,
            "document": self.document,
            "retry": self.retry,
        }
        if self.detail is not None:
            body["detail"] = self.detail
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
