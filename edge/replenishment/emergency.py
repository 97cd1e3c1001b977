"""Emergency requests in plain Chinese (紧急要货): free text -> item, quantity, unit, deadline and constraints.

"急需 -20℃ 冷冻水饺 50 箱，明早前到，车载调拨" becomes: the dumpling items that match (ranked, never silently
guessed), 50 of unit 箱 (checked against the item's units), a deadline of tomorrow 08:00 in the store's time zone,
the frozen cold chain (-20℃), a vehicle transfer, urgent. Pure: no database, no clock (`now` is passed), no I/O.
The rules (words, default times) are documented in docs/emergency-requests.md.

Steps: normalise the text; take out, in this order, codes (barcode, SKU), temperatures, the destination location,
cold-chain words, the transfer mode and source store, urgency words, the deadline, and the quantities; the rest is cut
by jieba (item names as the user dictionary), words that name no item are dropped, and the item index ranks the items.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from edge.replenishment.errors import EmergencyTextInvalid
from edge.replenishment.item_index import Candidate, IndexedItem, ItemIndex, normalise


class ColdChain(StrEnum):
    """Temperature class a request asks for (温层)."""

    FROZEN = "frozen"  # 冷冻 (-18℃ and below)
    CHILLED = "chilled"  # 冷藏 (0-4℃)
    AMBIENT = "ambient"  # 常温


class Mode(StrEnum):
    TRANSFER = "transfer"  # 调拨 from a neighbouring store
    PURCHASE = "purchase"  # 紧急采购 from the supplier


COLD_CHAIN_NAMES = {"frozen": ("冷冻", "frozen"), "chilled": ("冷藏", "chilled"), "ambient": ("常温", "ambient")}


@dataclass(frozen=True, slots=True)
class ParseNote:
    """Something the reader of a parse must know: `level` is error (cannot create), warning or info."""

    code: str
    level: str
    message: str
    message_en: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "level": self.level, "message": self.message, "message_en": self.message_en}


@dataclass(frozen=True, slots=True)
class ParseOptions:
    """Settings of the parser (edge/config.py block `replenishment: emergency requests`)."""

    timezone: str = "Asia/Shanghai"
    max_chars: int = 500
    min_score: float = 70.0  # an item scoring below this is no match
    margin: float = 6.0  # the best item must lead the next by this many points, or the parse is ambiguous


@dataclass(frozen=True, slots=True)
class EmergencyParse:
    """What the text says, as far as it says it. `sku` is set only when one item clearly matches."""

    text: str
    candidates: tuple[Candidate, ...] = ()
    sku: str | None = None
    item_name: str | None = None
    quantity: float | None = None  # as said, in `unit`
    unit: str | None = None  # as said, made canonical (箱, 斤, kg, g, L, ...); None when not said
    item_unit: str | None = None  # the item's unit the quantity is in
    qty_base: int | None = None  # quantity in the item's base units
    deadline: datetime | None = None  # in the store's time zone
    deadline_text: str | None = None
    urgent: bool = False
    temperature_c: float | None = None
    cold_chain: str | None = None  # asked for by the text (ColdChain value)
    storage_class: str | None = None  # the item's storage class
    vehicle: bool = False  # 车载: a vehicle transfer
    mode: str | None = None  # Mode value when the text says transfer or purchase
    source_store: str | None = None  # a store named as the source
    destination: str | None = None  # a location of ours named as the destination
    notes: tuple[ParseNote, ...] = ()

    @property
    def ambiguous(self) -> bool:
        """Several items match about as well: the user must choose one of `candidates`."""
        return any(n.code == "item_ambiguous" for n in self.notes)

    @property
    def complete(self) -> bool:
        """Enough to act on: one item and a quantity in its base units, and no error note."""
        return (
            self.sku is not None
            and self.qty_base is not None
            and self.qty_base > 0
            and not any(n.level == "error" for n in self.notes)
        )

    @property
    def required_cold_chain(self) -> str | None:
        """The temperature class the goods must travel in: the item's, or the text's when no item is known."""
        return self.storage_class or self.cold_chain

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "sku": self.sku,
            "item_name": self.item_name,
            "candidates": [c.to_json() for c in self.candidates],
            "ambiguous": self.ambiguous,
            "quantity": _plain_number(self.quantity),
            "unit": self.unit,
            "item_unit": self.item_unit,
            "qty_base": self.qty_base,
            "deadline": self.deadline.isoformat() if self.deadline else None,
            "deadline_text": self.deadline_text,
            "urgent": self.urgent,
            "temperature_c": _plain_number(self.temperature_c),
            "cold_chain": self.cold_chain,
            "storage_class": self.storage_class,
            "vehicle": self.vehicle,
            "mode": self.mode,
            "source_store": self.source_store,
            "destination": self.destination,
            "complete": self.complete,
            "notes": [n.to_json() for n in self.notes],
        }


def _plain_number(value: float | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


# --- numbers ------------------------------------------------------------------------------------

_CN_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10000}
CN_NUM = r"[零〇一二两三四五六七八九十百千万]+"
AR_NUM = r"\d+(?:\.\d+)?[十百千万]?"


def chinese_number(text: str) -> float | None:
    """五十 -> 50, 两百 -> 200, 一百二十 -> 120, 一百零五 -> 105, 3千 -> 3000, 1.5万 -> 15000, 二五 -> 25; None if
    it is no number."""
    text = text.strip()
    if not text:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([十百千万]?)", text)
    if m:
        return float(m.group(1)) * (_CN_UNITS[m.group(2)] if m.group(2) else 1)
    if any(c not in _CN_DIGITS and c not in _CN_UNITS for c in text):
        return None
    if not any(c in _CN_UNITS for c in text):
        return float("".join(str(_CN_DIGITS[c]) for c in text))  # 二五 -> 25
    total, section, digit = 0, 0, None
    for c in text:
        if c in _CN_DIGITS:
            digit = _CN_DIGITS[c]
            continue
        unit = _CN_UNITS[c]
        if unit == 10000:
            section = (section + (digit or 0)) * unit
            total += section
            section = 0
        else:
            section += (1 if digit is None else digit) * unit
        digit = None
    return float(total + section + (digit or 0))


# --- units --------------------------------------------------------------------------------------

# Said unit -> canonical unit. Latin spellings need a word boundary; they are matched after the Chinese ones.
_UNIT_WORDS: dict[str, str] = {
    "公斤": "kg", "千克": "kg", "kgs": "kg", "kg": "kg", "斤": "斤", "jin": "斤", "克": "g", "g": "g",
    "毫升": "ml", "ml": "ml", "升": "L", "l": "L",
    "箱": "箱", "件": "件", "包": "包", "袋": "袋", "瓶": "瓶", "提": "提", "个": "个", "盒": "盒", "桶": "桶",
    "听": "听", "罐": "罐", "杯": "杯", "支": "支", "块": "块", "条": "条", "排": "排", "只": "只", "份": "份",
    "cases": "箱", "case": "箱", "ctns": "箱", "ctn": "箱", "cartons": "箱", "carton": "箱", "boxes": "盒",
    "box": "盒", "bags": "袋", "bag": "袋", "bottles": "瓶", "bottle": "瓶", "packs": "包", "pack": "包",
    "pcs": "个", "pc": "个", "pieces": "个", "piece": "个", "cans": "罐", "can": "罐", "cups": "杯", "cup": "杯",
}  # fmt: skip
_MEASURE_GRAMS = {"kg": 1000, "斤": 500, "g": 1}
_MEASURES = frozenset({"kg", "斤", "g", "ml", "L"})
# Units that mean the same packaging; the item's own unit names may be Chinese or English.
_SYNONYMS: tuple[frozenset[str], ...] = (
    frozenset({"箱", "件", "case", "ctn", "carton"}),
    frozenset({"听", "罐", "can"}),
    frozenset({"包", "袋", "bag", "pack"}),
    frozenset({"盒", "box"}),
    frozenset({"瓶", "bottle"}),
    frozenset({"杯", "cup"}),
    frozenset({"个", "只", "件", "piece", "pcs", "pc"}),
)
_PIECE_WORDS = frozenset({"个", "只", "件", "份"})
_UNIT_ALT = "|".join(sorted((re.escape(u) for u in _UNIT_WORDS), key=len, reverse=True))
_QTY = re.compile(
    rf"(?P<num>{AR_NUM}|{CN_NUM}|半)\s*(?P<unit>{_UNIT_ALT})(?![a-z])(?P<half>半)?"
    r"|(?<![\d.a-z])(?P<bare>\d+)(?![\d.])(?!\s*[a-z])"
)


@dataclass(frozen=True, slots=True)
class UnitMatch:
    item_unit: str | None
    qty_base: int | None
    note: ParseNote | None = None


def map_unit(item: IndexedItem, quantity: float, said: str | None) -> UnitMatch:
    """The item's unit for a said unit, and the quantity in base units (or a note saying why not)."""
    units = dict(item.units)
    base_factor = 1
    chosen: str | None = None
    note: ParseNote | None = None
    grams: float | None = None
    if said is None:
        chosen = item.base_unit
        note = ParseNote(
            "unit_assumed",
            "info",
            f"未说单位，按基本单位“{item.base_unit}”计",
            f"no unit given: taken as the base unit '{item.base_unit}'",
        )
    elif said in units:
        chosen = said
    elif said in _MEASURE_GRAMS and item.base_unit == "g":
        grams = quantity * _MEASURE_GRAMS[said]
        chosen = "g"
    else:
        for group in _SYNONYMS:
            if said in group:
                same = [u for u in units if u in group]
                if same:
                    chosen = same[0]
                    break
        if chosen is None and said in _PIECE_WORDS and item.base_unit not in _MEASURE_GRAMS:
            chosen = item.base_unit
    if chosen is None:
        names = "、".join(units)
        return UnitMatch(
            None,
            None,
            ParseNote(
                "unknown_unit",
                "error",
                f"商品 {item.name} 没有单位“{said}”，可用单位: {names}",
                f"item {item.sku} has no unit '{said}'; its units: {', '.join(units)}",
            ),
        )
    base_factor = units[chosen]
    amount = grams if grams is not None else quantity * base_factor
    if amount <= 0 or amount > 1e9:
        return UnitMatch(
            chosen,
            None,
            ParseNote("quantity_invalid", "error", f"数量无效: {quantity:g}", f"invalid quantity: {quantity:g}"),
        )
    if abs(amount - round(amount)) > 1e-6:
        return UnitMatch(
            chosen,
            None,
            ParseNote(
                "quantity_fraction",
                "error",
                f"{quantity:g}{said or ''} 不是整数个基本单位“{item.base_unit}”",
                f"{quantity:g} {said or ''} is not a whole number of the base unit '{item.base_unit}'",
            ),
        )
    return UnitMatch(chosen, round(amount), note)


# --- vocabularies -------------------------------------------------------------------------------

_URGENT = re.compile(
    r"十万火急|急需|急要|紧急|加急|特急|马上|立刻|立即|尽快|赶紧|赶快|火速|asap|urgent(?:ly)?|rush|immediately|急"
)
_VEHICLE = re.compile(
    r"车载调拨|车载|冷链车|冷藏车|冷冻车|派车|用车|专车|货车|送货车|\b(?:by )?(?:truck|vehicle|van|lorry)\b"
)
_TRANSFER = re.compile(r"调拨|调货|调剂|借调|调过来|调一下|调一些|调些|调点|调给|调|transfer|move from")
_PURCHASE = re.compile(
    r"紧急采购|采购|下单|订货|进货|找供应商|供应商|厂家|\bpurchase(?: order)?\b|\bpo\b|\border from (?:the )?supplier\b"
)
_COLD_WORDS: tuple[tuple[re.Pattern[str], ColdChain], ...] = (
    (re.compile(r"冷冻|速冻|冻品|冻货|\bfrozen\b|\bfreeze\b"), ColdChain.FROZEN),
    (re.compile(r"冷藏|冰鲜|保鲜|\bchilled\b|\brefrigerated\b"), ColdChain.CHILLED),
    (re.compile(r"常温|\bambient\b|\broom temperature\b"), ColdChain.AMBIENT),
)
_COLD_CHAIN_ANY = re.compile(r"冷链|\bcold chain\b")
_TEMP_RANGE = re.compile(
    r"(?P<a>-?\d+(?:\.\d+)?)\s*(?:°c|°|度)?\s*(?:~|-|到|至)\s*(?P<b>-?\d+(?:\.\d+)?)\s*(?:°c|°|摄氏度|度|c(?![a-z]))"
)
_TEMP = re.compile(r"(?P<neg>零下|负|-|minus\s*)?\s*(?P<t>\d+(?:\.\d+)?)\s*(?P<u>°c|°|摄氏度|度|c(?![a-z]))")
_CODE = re.compile(r"(?<![a-z0-9])[a-z0-9][a-z0-9._-]{2,63}(?![a-z0-9])")
# Words that say nothing about the item (fillers, verbs of asking and sending); dropped before ranking.
_FILLER_TEXT = """
需要 要 需 请 请帮 帮 帮忙 帮我 麻烦 给 我 我们 咱 咱们 店 门店
本店 店里 这边 那边 一下 下 送 送到 送来 到 到货 前 之前 以前 以内
内 的 了 吧 呢 啊 呀 哦 和 及 与 共 一共 总共 左右 大概 约 再
还 又 需求 库存 没 没有 缺 缺货 断货 补 补货 快 点 能否 能不能
可以 是否 谢谢 安排 尽量 货 发 发货 配送 运 过来 来 从 由 在 就
先 都 也 有 吗 着 把 些 一些 要求
need needs please pls plz by before to the of for from in we us our store deliver delivery send get
want x asap within hours hour at and a an some more
"""
_FILLER = frozenset(_FILLER_TEXT.split())


# --- deadlines ----------------------------------------------------------------------------------

_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}
_EN_WEEKDAYS = {"mon": 0, "tues": 1, "wednes": 2, "thurs": 3, "fri": 4, "satur": 5, "sun": 6}
_DAY = (
    r"(?P<day>大后天|后天|明天|明日|明早|明晨|明晚|今天|今日|今早|今晚|今夜|"
    r"(?P<next>下个?|本|这)?(?:周|星期|礼拜)(?P<wd>[一二三四五六日天])|"
    r"(?P<month>\d{1,2})月(?P<mday>\d{1,2})(?:日|号)?|(?P<smonth>\d{1,2})/(?P<sday>\d{1,2})(?![\d/])|"
    r"(?P<dom>\d{1,2})(?:日|号)|day after tomorrow|tomorrow|today|tonight|"
    r"(?:next )?(?P<enwd>mon|tues|wednes|thurs|fri|satur|sun)day)"
)
_PERIOD = (
    r"(?P<period>早上|早晨|一早|清早|上午|中午|下午|傍晚|晚上|夜里|夜间|凌晨|morning|noon|afternoon|evening|night)"
)
_CLOCK = (
    r"(?P<clock>(?P<hour>\d{1,2}|[一二两三四五六七八九十]{1,3})\s*(?:[:：](?P<minute>\d{2})|点(?:(?P<half>半)|"
    r"(?P<minute2>\d{1,2})分?|钟)?|时)|(?P<ehour>\d{1,2})(?::(?P<eminute>\d{2}))?\s*(?P<ampm>am|pm))"
)
_DEADLINE = re.compile(rf"(?:by |before |until )?(?:{_DAY}\s*(?:的)?\s*)?(?:{_PERIOD}\s*)?(?:{_CLOCK})?")
_RELATIVE = re.compile(
    r"(?:within |in )?(?P<n>\d+(?:\.\d+)?|[一二两三四五六七八九十]+|半)\s*(?:个)?\s*(?:半)?\s*"
    r"(?P<u>小时|钟头|分钟|天|hours?|hrs?|h(?![a-z])|minutes?|mins?|days?)\s*(?:内|之内|以内|later)?"
)
_PERIOD_DEFAULT = {
    "早上": time(8),
    "早晨": time(8),
    "一早": time(8),
    "清早": time(8),
    "morning": time(8),
    "上午": time(12),
    "中午": time(12),
    "noon": time(12),
    "下午": time(18),
    "afternoon": time(18),
    "傍晚": time(18),
    "evening": time(18),
    "晚上": time(21),
    "夜里": time(21),
    "夜间": time(21),
    "night": time(21),
    "凌晨": time(6),
}
_PM_PERIODS = frozenset(
    {"下午", "傍晚", "晚上", "夜里", "夜间", "afternoon", "evening", "night", "今晚", "明晚", "今夜"}
)
_DAY_END = time(23, 59)


@dataclass
class _Work:
    """The text being taken apart: spans already read are blanked so that later rules do not read them again."""

    text: str
    taken: list[tuple[int, int, str]] = field(default_factory=list)

    def take(self, m: re.Match[str], what: str) -> None:
        start, end = m.span()
        self.text = self.text[:start] + " " * (end - start) + self.text[end:]
        self.taken.append((start, end, what))


def _resolve_deadline(m: re.Match[str], local_now: datetime, today: date) -> tuple[datetime | None, str | None]:
    g = m.groupdict()
    day_word = g.get("day")
    target: date | None = None
    explicit_day = day_word is not None
    period = g.get("period")
    if day_word:
        offsets = {"今": 0, "明": 1, "后": 2, "大": 3}
        if day_word in ("today", "tonight"):
            target = today
        elif day_word == "tomorrow":
            target = today + timedelta(days=1)
        elif day_word == "day after tomorrow":
            target = today + timedelta(days=2)
        elif g.get("wd") or g.get("enwd"):
            wd = _WEEKDAYS[g["wd"]] if g.get("wd") else _EN_WEEKDAYS[g["enwd"]]
            if g.get("next") and g["next"].startswith("下"):
                monday = today - timedelta(days=today.weekday()) + timedelta(days=7)
                target = monday + timedelta(days=wd)
            elif g.get("next") in ("本", "这"):
                target = today - timedelta(days=today.weekday()) + timedelta(days=wd)
            else:
                target = today + timedelta(days=(wd - today.weekday()) % 7)
        elif g.get("month") or g.get("smonth"):
            month = int(g.get("month") or g["smonth"])
            mday = int(g.get("mday") or g["sday"])
            try:
                target = date(today.year, month, mday)
                if target < today:
                    target = date(today.year + 1, month, mday)
            except ValueError:
                return None, "deadline_invalid"
        elif g.get("dom"):
            mday = int(g["dom"])
            year, month = today.year, today.month
            if mday < today.day:
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
            try:
                target = date(year, month, mday)
            except ValueError:
                return None, "deadline_invalid"
        elif day_word[0] in offsets:
            target = today + timedelta(days=offsets[day_word[0]])
        if day_word in ("明早", "明晨", "今早"):
            period = period or "早上"
        if day_word in ("今晚", "今夜", "明晚", "tonight"):
            period = period or "晚上"
    if target is None:
        target = today
    hour_text = g.get("hour") or g.get("ehour")
    at: time
    if hour_text:
        hour_value = chinese_number(hour_text)
        if hour_value is None:
            return None, "deadline_invalid"
        hour = int(hour_value)
        minute = int(g.get("minute") or g.get("minute2") or g.get("eminute") or 0) + (30 if g.get("half") else 0)
        ampm = g.get("ampm")
        pm = ampm == "pm" or (period in _PM_PERIODS) or (day_word in _PM_PERIODS)
        if ampm == "am" and hour == 12:
            hour = 0
        elif (pm and hour < 12) or (period == "中午" and hour <= 2):
            hour += 12
        elif period is None and ampm is None and day_word not in ("明早", "明晨", "今早") and 1 <= hour <= 6:
            hour += 12  # "3点前" in a store means the afternoon
        if hour > 23 or minute > 59:
            return None, "deadline_invalid"
        at = time(hour, minute)
    elif period:
        at = _PERIOD_DEFAULT[period]
    else:
        at = _DAY_END
    tz = local_now.tzinfo
    moment = datetime.combine(target, at, tzinfo=tz)
    if not explicit_day and moment <= local_now:
        moment += timedelta(days=1)
    return moment, None


def _relative(m: re.Match[str], local_now: datetime) -> datetime | None:
    n_text = m.group("n")
    n = 0.5 if n_text == "半" else chinese_number(n_text)
    if n is None or n <= 0 or n > 1000:
        return None
    if "半" in m.group(0)[len(n_text) :] and n_text != "半":
        n += 0.5
    unit = m.group("u")
    if unit.startswith(("分", "min")):
        delta = timedelta(minutes=n)
    elif unit in ("天", "day", "days"):
        delta = timedelta(days=n)
    else:
        delta = timedelta(hours=n)
    return local_now + delta


# --- the parser ---------------------------------------------------------------------------------


def clean_text(text: str) -> str:
    """Control and format characters become spaces; the rest is normalised (see item_index.normalise)."""
    if not isinstance(text, str):
        raise EmergencyTextInvalid("请求须为文字", "the request must be text")
    chars = (" " if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") else c for c in text)
    return re.sub(r"\s+", " ", normalise("".join(chars))).strip()


def parse_request(
    text: str, index: ItemIndex, today: date, now: datetime, options: ParseOptions | None = None
) -> EmergencyParse:
    """Parse one request; raises EmergencyTextInvalid (a clear error) only for empty or too long text."""
    options = options or ParseOptions()
    if isinstance(text, str) and len(text) > options.max_chars * 4:
        raise EmergencyTextInvalid(
            f"请求过长 (最多 {options.max_chars} 字)",
            f"the request is too long (at most {options.max_chars} characters)",
        )
    cleaned = clean_text(text)
    if not cleaned:
        raise EmergencyTextInvalid("请写出要什么商品、多少、何时要", "say which item, how much and by when")
    if len(cleaned) > options.max_chars:
        raise EmergencyTextInvalid(
            f"请求过长 (最多 {options.max_chars} 字)",
            f"the request is too long (at most {options.max_chars} characters)",
        )
    tz = ZoneInfo(options.timezone)
    local_now = now.astimezone(tz) if now.tzinfo else now.replace(tzinfo=tz)
    work = _Work(cleaned)
    notes: list[ParseNote] = []

    coded = _take_code(work, index)
    temperature, cold_chain = _take_temperature(work, index)
    destination = _take_place(work, index.locations, exclude=("transit",))
    vehicle = False
    cold_chain_any = False
    for m in list(_VEHICLE.finditer(work.text)):
        vehicle = True
        said = m.group(0)
        if said in ("冷链车", "冷藏车", "冷冻车"):
            cold_chain_any = True
            implied = {"冷藏车": ColdChain.CHILLED, "冷冻车": ColdChain.FROZEN}.get(said)
            cold_chain = cold_chain or implied
        work.take(m, "vehicle")
    for pattern, chain in _COLD_WORDS:
        for m in list(pattern.finditer(work.text)):
            cold_chain = cold_chain or chain
            work.take(m, "cold_chain")
    for m in list(_COLD_CHAIN_ANY.finditer(work.text)):
        cold_chain_any = True
        work.take(m, "cold_chain")
    mode: str | None = None
    source_store = _take_place(work, index.stores, prefix=r"(?:从|由|from )?\s*")
    for m in list(_PURCHASE.finditer(work.text)):
        mode = Mode.PURCHASE
        work.take(m, "mode")
    for m in list(_TRANSFER.finditer(work.text)):
        mode = mode or Mode.TRANSFER
        work.take(m, "mode")
    if mode is None and (vehicle or source_store):
        mode = Mode.TRANSFER
    urgent = False
    for m in list(_URGENT.finditer(work.text)):
        urgent = True
        work.take(m, "urgent")
    deadline, deadline_text = _take_deadline(work, local_now, today, notes)
    if deadline is not None and deadline <= local_now:
        notes.append(
            ParseNote(
                "deadline_past",
                "warning",
                f"要求时间 {deadline:%m-%d %H:%M} 已过",
                f"the deadline {deadline:%m-%d %H:%M} has passed",
            )
        )

    quantities = _find_quantities(work, index)
    # The item: rank on what is left once count quantities are out (specs such as 330ml stay: they tell items apart).
    rank_text = work.text
    for q in quantities:
        if q.unit not in _MEASURES or q.text not in index.spec_tokens:
            start, end = q.span
            rank_text = rank_text[:start] + " " * (end - start) + rank_text[end:]
    candidates: list[Candidate]
    if coded is not None:
        candidates = [coded]
    else:
        words = _item_words(rank_text, index)
        candidates = index.rank(words, limit=8) if words else []
        candidates = _prefer(candidates, index, cold_chain, quantities)
    candidates = [c for c in candidates if c.score >= 0.6 * options.min_score]  # no far-fetched suggestions
    chosen = _choose(candidates, options)
    item = index.items.get(chosen) if chosen else None
    quantity = _pick_quantity(quantities, item, index)
    counted = {(q.value, q.unit) for q in quantities if q.unit is not None and q.unit not in _MEASURES}
    if quantity is not None and len(counted) > 1:
        notes.append(
            ParseNote(
                "several_quantities",
                "warning",
                f"说了几个数量，取了“{quantity.text}”；一次请只要一种商品",
                f"several quantities said; took '{quantity.text}' (one item per request, please)",
            )
        )

    qty_base: int | None = None
    item_unit: str | None = None
    said_unit = quantity.unit if quantity else None
    if item is not None and quantity is not None:
        mapped = map_unit(item, quantity.value, said_unit)
        item_unit, qty_base = mapped.item_unit, mapped.qty_base
        if mapped.note:
            notes.append(mapped.note)
    elif quantity is not None and quantity.value <= 0:
        notes.append(ParseNote("quantity_invalid", "error", "数量须大于 0", "the quantity must be above 0"))

    if item is None:
        if candidates and candidates[0].score >= options.min_score:
            names = "；".join(f"{c.name} ({c.sku})" for c in candidates[:5])
            notes.append(
                ParseNote("item_ambiguous", "error", f"商品不明确，请选择: {names}", f"several items match: {names}")
            )
        else:
            notes.append(ParseNote("item_missing", "error", "没有认出商品", "no item recognised"))
    if quantity is None:
        notes.append(ParseNote("quantity_missing", "error", "没有说数量", "no quantity given"))
    if temperature is not None and cold_chain is None:
        cold_chain = _class_of_temperature(temperature)
    if item is not None and cold_chain is not None and cold_chain != item.storage_class:
        item_zh, item_en = COLD_CHAIN_NAMES[item.storage_class]
        said_zh, said_en = COLD_CHAIN_NAMES[cold_chain]
        notes.append(
            ParseNote(
                "cold_chain_conflict",
                "warning",
                f"要求{said_zh}，但商品 {item.name} 按{item_zh}储存，将按{item_zh}运输",
                f"asked for {said_en}, but {item.sku} is stored {item_en}; it travels {item_en}",
            )
        )
    if cold_chain_any and cold_chain is None and item is not None and item.storage_class == "ambient":
        notes.append(
            ParseNote(
                "cold_chain_conflict",
                "warning",
                f"要求冷链，但商品 {item.name} 为常温商品",
                f"a cold chain was asked for, but {item.sku} is an ambient item",
            )
        )
    if mode == Mode.PURCHASE and vehicle:
        notes.append(
            ParseNote(
                "mode_conflict",
                "warning",
                "同时说了采购和车载调拨，按采购处理",
                "both purchase and vehicle transfer said: purchase",
            )
        )
    return EmergencyParse(
        text=cleaned,
        candidates=tuple(candidates[:5]),
        sku=item.sku if item else None,
        item_name=item.name if item else None,
        quantity=quantity.value if quantity else None,
        unit=said_unit,
        item_unit=item_unit,
        qty_base=qty_base,
        deadline=deadline,
        deadline_text=deadline_text,
        urgent=urgent,
        temperature_c=temperature,
        cold_chain=cold_chain.value if isinstance(cold_chain, ColdChain) else cold_chain,
        storage_class=item.storage_class if item else None,
        vehicle=vehicle,
        mode=str(mode) if mode else None,
        source_store=source_store,
        destination=destination,
        notes=tuple(notes),
    )


def with_overrides(parse: EmergencyParse, index: ItemIndex, overrides: dict[str, Any]) -> EmergencyParse:
    """The parse with what the user corrected: sku, quantity, unit, deadline (aware datetime), mode, vehicle,
    source_store, destination. Notes are recomputed for the item and unit."""
    sku = overrides.get("sku", parse.sku)
    item = index.items.get(sku) if sku else None
    quantity = overrides.get("quantity", parse.quantity)
    unit = overrides.get("unit", parse.unit)
    notes = [
        n
        for n in parse.notes
        if n.code not in {"item_ambiguous", "item_missing", "quantity_missing", "unit_assumed", "unknown_unit"}
        and n.code not in {"quantity_fraction", "quantity_invalid", "cold_chain_conflict"}
    ]
    item_unit: str | None = None
    qty_base: int | None = None
    if item is None:
        notes.append(ParseNote("item_missing", "error", "没有认出商品", "no item recognised"))
    if quantity is None:
        notes.append(ParseNote("quantity_missing", "error", "没有说数量", "no quantity given"))
    if item is not None and quantity is not None:
        mapped = map_unit(item, float(quantity), unit)
        item_unit, qty_base = mapped.item_unit, mapped.qty_base
        if mapped.note:
            notes.append(mapped.note)
    cold_chain = overrides.get("cold_chain", parse.cold_chain)
    if item is not None and cold_chain is not None and cold_chain != item.storage_class:
        notes.append(
            ParseNote(
                "cold_chain_conflict",
                "warning",
                f"商品 {item.name} 按{COLD_CHAIN_NAMES[item.storage_class][0]}运输",
                f"{item.sku} travels {item.storage_class}",
            )
        )
    return replace(
        parse,
        sku=item.sku if item else None,
        item_name=item.name if item else None,
        quantity=float(quantity) if quantity is not None else None,
        unit=unit,
        item_unit=item_unit,
        qty_base=qty_base,
        storage_class=item.storage_class if item else None,
        cold_chain=cold_chain,
        deadline=overrides.get("deadline", parse.deadline),
        mode=overrides.get("mode", parse.mode),
        vehicle=bool(overrides.get("vehicle", parse.vehicle)),
        source_store=overrides.get("source_store", parse.source_store),
        destination=overrides.get("destination", parse.destination),
        notes=tuple(notes),
    )


# --- the steps ----------------------------------------------------------------------------------


def _take_code(work: _Work, index: ItemIndex) -> Candidate | None:
    for m in _CODE.finditer(work.text):
        sku = index.by_code(m.group(0))
        if sku is not None:
            item = index.items[sku]
            work.take(m, "code")
            kind = "sku" if sku.lower() == m.group(0) else "barcode"
            return Candidate(sku, item.name, item.name_en, 100.0, kind)
    return None


def _class_of_temperature(value: float) -> ColdChain:
    if value <= -5:
        return ColdChain.FROZEN
    if value <= 10:
        return ColdChain.CHILLED
    return ColdChain.AMBIENT


def _take_temperature(work: _Work, index: ItemIndex) -> tuple[float | None, ColdChain | None]:
    m = _TEMP_RANGE.search(work.text)
    if m:
        a, b = float(m.group("a")), float(m.group("b"))
        work.take(m, "temperature")
        top = max(a, b)
        return top, _class_of_temperature(top)
    for m in _TEMP.finditer(work.text):
        value = float(m.group("t"))
        negative = bool(m.group("neg"))
        spec = m.group(0).replace(" ", "").lstrip("-")
        if not negative and m.group("u") == "度" and spec in index.spec_tokens:
            continue  # 42度 is a liquor's strength, not a temperature
        if negative:
            value = -value
        work.take(m, "temperature")
        return value, _class_of_temperature(value)
    return None, None


def _take_place(work: _Work, places: tuple[Any, ...], *, prefix: str = "", exclude: tuple[str, ...] = ()) -> str | None:
    names: list[tuple[str, str]] = []
    for place in places:
        if place.code in exclude:
            continue
        for name in _place_names(place):
            names.append((name, place.code))
    names.sort(key=lambda n: len(n[0]), reverse=True)
    for name, code in names:
        m = re.search(prefix + re.escape(name) + (r"\b" if name.isascii() else ""), work.text)
        if m:
            work.take(m, "place")
            return str(code)
    return None


def _place_names(place: Any) -> list[str]:
    """The ways people name a store or location: its id, its Chinese name (with and without 店), its English name."""
    out = [normalise(place.code)]
    name = normalise(place.name)
    zh = "".join(re.findall(r"[\u3400-\u9fff]+", name))
    latin = " ".join(re.findall(r"[a-z]+", name))
    if zh:
        out.append(zh)
        if zh.endswith("店") and len(zh) > 2:
            out.append(zh[:-1])
    if latin:
        out.append(latin)
        short = latin.removesuffix(" store").removesuffix(" road")
        if short != latin and len(short) >= 4:
            out.append(short)
    if getattr(place, "name_en", ""):
        out.append(normalise(place.name_en))
    return [n for n in out if len(n) >= 2]


def _take_deadline(
    work: _Work, local_now: datetime, today: date, notes: list[ParseNote]
) -> tuple[datetime | None, str | None]:
    m = _RELATIVE.search(work.text)
    if m:
        moment = _relative(m, local_now)
        if moment is not None:
            work.take(m, "deadline")
            return moment, m.group(0).strip()
    for m in _DEADLINE.finditer(work.text):
        if not m.group(0).strip():
            continue
        moment, problem = _resolve_deadline(m, local_now, today)
        said = m.group(0).strip()
        if problem:
            notes.append(
                ParseNote("deadline_invalid", "warning", f"时间“{said}”无法理解", f"cannot read the time '{said}'")
            )
            work.take(m, "deadline")
            continue
        work.take(m, "deadline")
        return moment, said
    return None, None


@dataclass(frozen=True, slots=True)
class _Quantity:
    value: float
    unit: str | None
    span: tuple[int, int]
    text: str


def _find_quantities(work: _Work, index: ItemIndex) -> list[_Quantity]:
    masked = work.text
    for word in sorted(index.numeral_words, key=len, reverse=True):
        start = masked.find(word)
        while start >= 0:
            masked = masked[:start] + "#" * len(word) + masked[start + len(word) :]
            start = masked.find(word, start + len(word))
    found: list[_Quantity] = []
    for m in _QTY.finditer(masked):
        if m.group("bare"):
            value = float(m.group("bare"))
            found.append(_Quantity(value, None, m.span(), m.group(0)))
            continue
        value_or_none = 0.5 if m.group("num") == "半" else chinese_number(m.group("num"))
        if value_or_none is None:
            continue
        if m.group("half"):
            value_or_none += 0.5  # 一箱半: one and a half cases
        found.append(_Quantity(value_or_none, _UNIT_WORDS[m.group("unit")], m.span(), m.group(0).replace(" ", "")))
    return found


def _pick_quantity(found: list[_Quantity], item: IndexedItem | None, index: ItemIndex) -> _Quantity | None:
    """Count units first (箱, 袋 ...) unless they are part of the item's name (6包); then measures (2斤, 500g) that
    are not the item's spec (1kg of 水饺 1kg), or any measure for a weighed item; then a bare number."""
    specs = _specs_of(item) if item is not None else index.spec_tokens
    counts = [q for q in found if q.unit is not None and q.unit not in _MEASURES and q.text not in specs]
    if counts:
        return counts[0]
    weighed = item is not None and item.base_unit == "g"
    measures = [q for q in found if q.unit in _MEASURES and (weighed or q.text not in specs)]
    if measures:
        return measures[0]
    bare = [q for q in found if q.unit is None]
    return bare[0] if bare else None


def _specs_of(item: IndexedItem) -> set[str]:
    key = normalise(item.name).replace(" ", "")
    return {m.group(0) for m in re.finditer(r"\d+(?:\.\d+)?(?:ml|l|kg|g|包|卷|瓶|枚|支|只|个|粒|片|度)", key)}


def _item_words(text: str, index: ItemIndex) -> list[str]:
    words: list[str] = []
    for word in index.cut(text):
        word = word.strip(" ,.，。、!！?？:：;；()（）[]【】\"'“”‘’-_/\\+*~#")
        if not word or word in _FILLER:
            continue
        if re.fullmatch(r"\d+(?:\.\d+)?(?:ml|l|kg|g)", word):
            words.append(word)
            continue
        if re.fullmatch(r"[\d.]+", word) or not index.knows_word(word):
            continue
        words.append(word)
    return words


def _prefer(
    candidates: list[Candidate], index: ItemIndex, cold_chain: ColdChain | None, quantities: list[_Quantity]
) -> list[Candidate]:
    """Small penalties that tell close candidates apart: another storage class than the text asks for (冷冻 鸡胸肉 is
    the frozen one), and lacking the unit the text uses (可口可乐 5提 is the can: only cans come in 提)."""
    if not candidates:
        return candidates
    said_units = [q for q in quantities if q.unit is not None]
    out: list[Candidate] = []
    for c in candidates:
        item = index.items[c.sku]
        penalty = 0.0
        if cold_chain is not None and item.storage_class != cold_chain:
            penalty += 10.0
        if said_units and all(map_unit(item, max(q.value, 1.0), q.unit).qty_base is None for q in said_units):
            penalty += 10.0
        out.append(replace(c, score=max(0.0, c.score - penalty)) if penalty else c)
    out.sort(key=lambda c: (-c.score, c.sku))
    return out


def _choose(candidates: list[Candidate], options: ParseOptions) -> str | None:
    if not candidates or candidates[0].score < options.min_score:
        return None
    if len(candidates) > 1 and candidates[0].score - candidates[1].score < options.margin:
        return None
    return candidates[0].sku


def describe(parse: EmergencyParse) -> tuple[str, str]:
    """One line each in Chinese and English: what the box understood."""
    zh: list[str] = []
    en: list[str] = []
    if parse.sku:
        zh.append(f"商品 {parse.item_name} ({parse.sku})")
        en.append(f"item {parse.sku}")
    elif parse.candidates:
        zh.append("商品待选: " + "、".join(c.name for c in parse.candidates[:3]))
        en.append("item to choose: " + ", ".join(c.sku for c in parse.candidates[:3]))
    if parse.quantity is not None:
        q = _plain_number(parse.quantity)
        zh.append(f"数量 {q}{parse.unit or parse.item_unit or ''}")
        en.append(f"quantity {q} {parse.unit or parse.item_unit or ''}".rstrip())
    if parse.deadline:
        zh.append(f"{parse.deadline:%m月%d日 %H:%M} 前")
        en.append(f"by {parse.deadline:%Y-%m-%d %H:%M}")
    chain = parse.required_cold_chain
    if chain:
        zh.append(COLD_CHAIN_NAMES[chain][0])
        en.append(COLD_CHAIN_NAMES[chain][1])
    if parse.vehicle:
        zh.append("车载调拨")
        en.append("vehicle transfer")
    elif parse.mode:
        zh.append({"transfer": "调拨", "purchase": "采购"}[parse.mode])
        en.append(parse.mode)
    if parse.urgent:
        zh.append("加急")
        en.append("urgent")
    return "，".join(zh), ", ".join(en)
