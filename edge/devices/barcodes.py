"""Scanned codes (条码) and what they say: the item, and where the code carries them, lot, expiry, weight, amount.

`interpret_code(code, formats)` is the one reading of a scanned code used by every device path (scan and sale
events, scan-to-receive): a GTIN (EAN-13, EAN-8, UPC-A, GTIN-14) checked by its check digit; a GS1 element
string (GS1-128, GS1 DataMatrix, GS1 QR, GS1 DataBar: AI 01/02 GTIN, 10 lot, 17/15 expiry, 21 serial, 310x net
weight, 30/37 count, 392x/393x amount) with or without its symbology identifier, FNC1 sent as GS (0x1d), also in
the human-readable `(01)...(17)...` form and as a GS1 Digital Link URI, and a bare element string that starts
with a GTIN in AI 01 or 02 (a DataMatrix read without identifier); an in-store scale label (称重条码)
in one of the store's `formats`; else the code itself (a SKU or an internal code). It is pure: no database,
no clock. GS1 parsing is biip's (https://github.com/hoyle/biip); this module decides what the store books.

A scale label's item code is its fixed flag digits followed by its PLU digits (`2` + `000011` -> `2000011`
for `2PPPPPPWWWWWC`): the item is found like any barcode, by a row in the item's barcodes with that code and
unit `g` (docs/barcodes.md, "Where PLUs live").
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from functools import lru_cache
from typing import Any, ClassVar

from biip import ParseError
from biip.checksums import gs1_standard_check_digit
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from biip.gs1_element_strings import GS1ElementString
from biip.gs1_messages import GS1Message
from biip.gtin import Gtin
from biip.symbology import GS1Symbology, SymbologyIdentifier

from edge.ledger.errors import DomainError

GS = "\x1d"  # ASCII group separator: how scanners send FNC1 between variable-length element strings
MAX_CODE_LENGTH = 200  # a full GS1 DataMatrix (GTIN, lot, expiry, serial, weight) is well under this
MAX_PLAIN_CODE_LENGTH = 64  # a SKU or barcode as the ledger keeps it
WEIGHED_UNIT = "g"  # weights are booked in grams: a weighed item has the unit g (its base unit)
CNY_NUMERIC = "156"  # ISO 4217 numeric code of the yuan, for AI 393x
DEFAULT_LABEL_FORMATS: tuple[str, ...] = ("2PPPPPPWWWWWC", "2PPPPPPMMMMMWWWWWC")
LABEL_FORMATS_KEY = "scale_label_formats"  # DecodeOptions.extra key: the store's parsed label formats
LABEL_LETTERS = {"P": "PLU", "W": "weight in grams", "M": "amount in fen", "C": "check digit"}
MIN_LABEL_LENGTH, MAX_LABEL_LENGTH = 8, 24

_DIGITS = re.compile(r"[0-9]+")
_PLAIN = re.compile(r"[!-~]{1,64}")
_ALLOWED = re.compile(r"[\x1d -~]+")  # printable ASCII, space (human-readable form) and GS
_LABEL_PATTERN = re.compile(r"[0-9PWMC]+")
# GS1 symbologies whose data is a GS1 element string (GS1 General Specifications 5.1.2, ISO/IEC 15424).
_GS1_MESSAGE_SYMBOLOGIES = frozenset(GS1Symbology.with_gs1_messages())
_PARSE_FAILURES = (ParseError, ValueError, IndexError, KeyError, ArithmeticError)


class CodeKind(StrEnum):
    """What a scanned code turned out to be."""

    PLAIN = "plain"  # a SKU or internal code, looked up as it is
    GTIN = "gtin"  # EAN-13, EAN-8, UPC-A, GTIN-14 (商品条码)
    GS1 = "gs1"  # GS1 element string (GS1-128, DataMatrix, QR, DataBar, Digital Link)
    SCALE_LABEL = "scale_label"  # in-store variable-measure label printed by a scale (称重条码)


class BarcodeError(DomainError, ValueError):
    """A scanned code that cannot be read as what it claims to be (bad check digit, broken GS1 string, ...).

    Also a ValueError, so that an event handler's refusal of it is an `invalid_data` answer to the device.
    """

    code: ClassVar[str] = "invalid_barcode"
    status: ClassVar[int] = 422


class LabelFormatError(ValueError):
    """A scale label format (setting `scale_label_formats`) that cannot be used; the text says why."""


# --- check digits ---------------------------------------------------------------------------------


def gs1_check_digit(digits: str) -> int:
    """The GS1 mod-10 check digit of `digits` (GS1 General Specifications 7.9.1): EAN, UPC, GTIN-14, SSCC."""
    if not _DIGITS.fullmatch(digits):
        raise ValueError(f"expected digits, got {digits!r}")
    return gs1_standard_check_digit(digits)


def is_valid_gtin(code: str) -> bool:
    """True for an EAN-8, UPC-A, EAN-13 or GTIN-14 whose last digit is its check digit."""
    return (
        len(code) in (8, 12, 13, 14) and bool(_DIGITS.fullmatch(code)) and gs1_check_digit(code[:-1]) == int(code[-1])
    )


# --- scale label formats -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LabelFormat:
    """One in-store scale label layout, from a pattern such as `2PPPPPPWWWWWC` (see `parse_label_format`)."""

    pattern: str
    fixed: tuple[tuple[int, str], ...]  # (position, digit) of every fixed flag digit
    plu: tuple[int, int]  # [start, end) of the PLU digits
    grams: tuple[int, int] | None  # [start, end) of the weight digits
    amount: tuple[int, int] | None  # [start, end) of the amount digits
    checked: bool  # the last digit is the GS1 check digit of the others

    @property
    def length(self) -> int:
        return len(self.pattern)

    def matches(self, digits: str) -> bool:
        """Whether `digits` has this format's length and fixed flag digits (its check digit is not looked at)."""
        return len(digits) == len(self.pattern) and all(digits[i] == d for i, d in self.fixed)

    def item_code(self, digits: str) -> str:
        """The code the item is registered under: the flag digits and the PLU, in the order printed."""
        start, end = self.plu
        keep = sorted([*(i for i, _ in self.fixed), *range(start, end)])
        return "".join(digits[i] for i in keep)


def parse_label_format(pattern: str) -> LabelFormat:
    """Read a label pattern: a digit is a fixed flag digit, `P` the PLU, `W` the weight in grams, `M` the
    amount in fen, `C` the check digit (last, optional). Each letter is one run; the pattern starts with a
    flag digit and has a PLU and a weight or an amount. Raises LabelFormatError saying what is wrong."""
    if not isinstance(pattern, str) or not _LABEL_PATTERN.fullmatch(pattern):
        raise LabelFormatError(f"{pattern!r}: use only digits and the letters P, W, M, C (e.g. 2PPPPPPWWWWWC)")
    if not MIN_LABEL_LENGTH <= len(pattern) <= MAX_LABEL_LENGTH:
        raise LabelFormatError(
            f"{pattern!r}: {len(pattern)} characters; a label has {MIN_LABEL_LENGTH}..{MAX_LABEL_LENGTH}"
        )
    if not pattern[0].isdigit():
        raise LabelFormatError(
            f"{pattern!r}: must start with a fixed flag digit (e.g. 2), so it cannot take other codes"
        )
    runs: dict[str, tuple[int, int]] = {}
    for match in re.finditer(r"P+|W+|M+|C+", pattern):
        letter = match.group()[0]
        if letter in runs:
            raise LabelFormatError(f"{pattern!r}: the {LABEL_LETTERS[letter]} ({letter}) must be one run of letters")
        runs[letter] = match.span()
    if "P" not in runs:
        raise LabelFormatError(f"{pattern!r}: needs the PLU (P)")
    if "W" not in runs and "M" not in runs:
        raise LabelFormatError(f"{pattern!r}: needs a weight (W) or an amount (M)")
    if "C" in runs and runs["C"] != (len(pattern) - 1, len(pattern)):
        raise LabelFormatError(f"{pattern!r}: the check digit (C) is one digit, the last")
    for letter, most in (("P", 8), ("W", 7), ("M", 9)):
        if letter in runs and runs[letter][1] - runs[letter][0] > most:
            raise LabelFormatError(f"{pattern!r}: at most {most} {LABEL_LETTERS[letter]} digits ({letter})")
    return LabelFormat(
        pattern=pattern,
        fixed=tuple((i, ch) for i, ch in enumerate(pattern) if ch.isdigit()),
        plu=runs["P"],
        grams=runs.get("W"),
        amount=runs.get("M"),
        checked="C" in runs,
    )


@lru_cache(maxsize=64)
def _cached_format(pattern: str) -> LabelFormat:
    return parse_label_format(pattern)


def parse_label_formats(patterns: Iterable[str]) -> tuple[LabelFormat, ...]:
    """The store's label formats, in order; refused when two could read the same code (same length, and no
    flag digit tells them apart)."""
    formats = tuple(_cached_format(p) for p in patterns)
    if len(formats) > 20:
        raise LabelFormatError("at most 20 label formats")
    for n, a in enumerate(formats):
        for b in formats[n + 1 :]:
            if a.length == b.length and _flags_agree(a, b) and _flags_agree(b, a):
                raise LabelFormatError(
                    f"{a.pattern!r} and {b.pattern!r} can read the same code: give them different flag digits"
                )
    return formats


def _flags_agree(a: LabelFormat, b: LabelFormat) -> bool:
    """No flag digit of `a` rules out a code of `b` (`b` has the same digit there, or a letter)."""
    return all(b.pattern[i] == d or not b.pattern[i].isdigit() for i, d in a.fixed)


def _formats(formats: Sequence[LabelFormat | str]) -> tuple[LabelFormat, ...]:
    return tuple(f if isinstance(f, LabelFormat) else _cached_format(f) for f in formats)


def label_item_code(label_format: LabelFormat | str, plu: int | str) -> str:
    """The item code (flag digits + PLU) a label of `label_format` carries for `plu`: register it as a barcode
    of the item, with unit `g`."""
    fmt = _formats([label_format])[0]
    start, end = fmt.plu
    digits = _field(plu, end - start, "PLU")
    template = list(fmt.pattern)
    template[start:end] = digits
    return fmt.item_code("".join(ch if ch.isdigit() else "0" for ch in template))


def encode_label(
    label_format: LabelFormat | str, plu: int | str, *, grams: int | None = None, amount_fen: int | None = None
) -> str:
    """The digits a scale prints for `plu` with `grams` and `amount_fen` (each needed when the format has it):
    the inverse of reading a label, for tests, simulators and the examples in docs/barcodes.md."""
    fmt = _formats([label_format])[0]
    digits = list(fmt.pattern)
    for span, value, name in ((fmt.plu, plu, "PLU"), (fmt.grams, grams, "grams"), (fmt.amount, amount_fen, "amount")):
        if span is None:
            continue
        if value is None:
            raise ValueError(f"{fmt.pattern}: needs {name}")
        digits[span[0] : span[1]] = _field(value, span[1] - span[0], name)
    if fmt.checked:
        digits[-1] = str(gs1_check_digit("".join(digits[:-1])))
    return "".join(digits)


def _field(value: int | str, width: int, name: str) -> str:
    text = str(value)
    if isinstance(value, bool) or not _DIGITS.fullmatch(text) or len(text.lstrip("0") or "0") > width:
        raise ValueError(f"{name} {value!r} does not fit {width} digits")
    return text.zfill(width)[-width:]


# --- the reading of a code -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InterpretedCode:
    """What one scanned code says. `item_code` is what the ledger looks up (barcode or SKU).

    `grams`, `count` and `amount_fen` are per code (one label, one package); `quantity(n)` and `amount(n)`
    give them for `n` packages scanned at once. A code that carries a weight is booked in grams (`unit`).
    """

    raw: str
    kind: CodeKind
    item_code: str
    symbology: str | None = None  # e.g. "]C1" GS1-128, "]d2" GS1 DataMatrix, "]E0" EAN-13
    gtin: str | None = None  # the GTIN as 14 digits, when the code has one
    plu: str | None = None
    label_format: str | None = None
    lot: str | None = None
    expiry: date | None = None
    serial: str | None = None
    grams: int | None = None
    count: int | None = None
    amount_fen: int | None = None

    @property
    def carries_quantity(self) -> bool:
        """The code says how much (a weight or a count), so a device sends no quantity of its own."""
        return self.grams is not None or self.count is not None

    @property
    def unit(self) -> str | None:
        """The unit the code's quantity is in: grams for a weight; else the barcode's own unit."""
        return WEIGHED_UNIT if self.grams is not None else None

    def quantity(self, packages: int = 1) -> int | None:
        """The quantity of `packages` of this code (grams or pieces), or None when the code carries none."""
        per_code = self.grams if self.grams is not None else self.count
        return None if per_code is None else per_code * packages

    def amount(self, packages: int = 1) -> int | None:
        return None if self.amount_fen is None else self.amount_fen * packages

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, for acks and the API (fields that are not set are left out)."""
        body: dict[str, Any] = {"kind": self.kind.value, "item_code": self.item_code}
        for name in ("symbology", "gtin", "plu", "label_format", "lot", "serial", "grams", "count", "amount_fen"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        if self.expiry is not None:
            body["expiry"] = self.expiry.isoformat()
        return body


def _refuse(message: str, message_en: str, code: str, **detail: Any) -> BarcodeError:
    shown = code if len(code) <= 80 else code[:77] + "..."
    return BarcodeError(
        f"条码 {shown!r} 无法识别: {message}", f"code {shown!r} cannot be read: {message_en}", code=shown, **detail
    )


def interpret_code(
    code: str, formats: Sequence[LabelFormat | str] = DEFAULT_LABEL_FORMATS, *, today: date | None = None
) -> InterpretedCode:
    """Read one scanned code (see the module docstring); raise BarcodeError when it cannot be what it claims.

    The rules, in order: a symbology identifier (`]C1`, `]d2`, `]Q3`, `]e0`, `]E0`, ...) is taken off and, for
    the GS1 symbologies, says the rest is a GS1 element string; a code with GS separators, one in the
    human-readable `(01)...` form or a GS1 Digital Link URI is a GS1 element string; all digits: a label of
    the first of `formats` whose length and flag digits fit (its check digit must be right), else a GTIN of 8,
    12, 13 or 14 digits (its check digit must be right); then a code of 16 or more characters that starts with
    AI 01 or 02 and 14 digits is a GS1 element string if it reads as one (digits or not after the GTIN), and
    refused if it does not read but its GTIN's check digit is right; anything else is a plain code of 1..64
    printable characters, looked up as it is.
    `today` sets the century of two-digit GS1 years (GS1 General Specifications 7.12); without it, 20YY.
    """
    if not isinstance(code, str) or not code:
        raise BarcodeError("条码为空", "the code is empty", code="")
    if len(code) > MAX_CODE_LENGTH:
        raise _refuse(f"超过 {MAX_CODE_LENGTH} 个字符", f"longer than {MAX_CODE_LENGTH} characters", code)
    if not _ALLOWED.fullmatch(code):
        raise _refuse(
            "只能是可打印 ASCII 字符 (及 GS 分隔符)", "only printable ASCII (and the GS separator) is allowed", code
        )
    text, symbology = code, None
    if text.startswith("]"):
        try:
            identifier = SymbologyIdentifier.extract(text)
        except _PARSE_FAILURES:
            raise _refuse("码制标识符无效", "the symbology identifier is not valid", code) from None
        symbology = identifier.value
        text = text[len(identifier.value) :]
        if identifier.gs1_symbology in _GS1_MESSAGE_SYMBOLOGIES:
            return _gs1_message(code, text.lstrip(GS), symbology, today)
        if identifier.gs1_symbology is GS1Symbology.EAN_13_WITH_ADD_ON:
            text = text[:13]  # the 2- or 5-digit add-on (periodicals) does not name the item
        if not text:
            raise _refuse("码制标识符之后没有数据", "no data after the symbology identifier", code)
    if text.startswith("("):
        return _gs1_hri(code, text, symbology, today)
    if GS in text:
        return _gs1_message(code, text.lstrip(GS), symbology, today)
    if text.startswith(("http://", "https://")):
        return _gs1_digital_link(code, text, symbology, today)
    if _DIGITS.fullmatch(text):
        label = _scale_label(code, text, _formats(formats), symbology)
        if label is not None:
            return label
        if len(text) in (8, 12, 13, 14):
            return _plain_gtin(code, text, symbology)
    bare = _bare_gs1(code, text, symbology, today)
    if bare is not None:
        return bare
    if not _PLAIN.fullmatch(text):
        raise _refuse(
            "不是 GS1 条码, 也不是 1..64 个可打印字符的商品编码",
            "not a GS1 code, and not an item code of 1..64 printable characters",
            code,
        )
    return InterpretedCode(raw=code, kind=CodeKind.PLAIN, item_code=text, symbology=symbology)


def _bare_gs1(raw: str, text: str, symbology: str | None, today: date | None) -> InterpretedCode | None:
    """A GS1 element string sent without symbology identifier or GS (a DataMatrix read by a scanner that sends
    no identifier: fixed-length fields first, the variable-length one last), or None when `text` is not one.

    It starts with AI 01 or 02 and 14 digits. If the whole reads as GS1 element strings it is one (its GTIN's
    check digit is then checked: a misread is refused, not looked up). If it does not read, a right GTIN check
    digit says it is a GS1 code that is broken (refused, saying so); a wrong one, a plain code that only starts
    like one.
    """
    if len(text) < 16 or not text.startswith(("01", "02")) or not _DIGITS.fullmatch(text[2:16]):
        return None
    gtin_ok = is_valid_gtin(text[2:16])
    try:
        message = GS1Message.parse(text)
    except _PARSE_FAILURES as exc:
        if not gtin_ok:
            return None  # only looks like a GS1 string: a plain code
        raise _refuse(
            f"以 ({text[:2]}) {text[2:16]} 开头, 像没有码制标识符的 GS1 条码, 但其余部分无法按 GS1 解析;"
            " 请在扫描枪中开启码制标识符 (如 ]d2) 或检查条码",
            f"starts like a GS1 code sent without symbology identifier (({text[:2]}) {text[2:16]}), but the rest"
            f" is not a valid GS1 element string ({exc}); turn on symbology identifiers (e.g. ]d2) in the scanner,"
            " or check the code",
            raw,
        ) from None
    return _from_elements(raw, list(message.element_strings), symbology, today)


def _canonical_gtin(gtin: Gtin) -> str:
    """The GTIN in its own length (GTIN-14 with indicator 0 is the EAN-13; a UPC-A is 12 digits), as stores
    register it."""
    return f"{gtin.payload}{gtin.check_digit}".zfill(gtin.format.length)


def _plain_gtin(raw: str, digits: str, symbology: str | None) -> InterpretedCode:
    try:
        gtin = Gtin.parse(digits)
    except _PARSE_FAILURES:
        expected = gs1_check_digit(digits[:-1])
        raise _refuse(
            f"校验位错误 (应为 {expected}), 请重新扫描",
            f"wrong check digit (expected {expected}); scan again",
            raw,
            expected_check_digit=expected,
        ) from None
    return InterpretedCode(
        raw=raw, kind=CodeKind.GTIN, item_code=_canonical_gtin(gtin), symbology=symbology, gtin=gtin.as_gtin_14()
    )


def _scale_label(
    raw: str, digits: str, formats: tuple[LabelFormat, ...], symbology: str | None
) -> InterpretedCode | None:
    for fmt in formats:
        if not fmt.matches(digits):
            continue
        if fmt.checked and gs1_check_digit(digits[:-1]) != int(digits[-1]):
            expected = gs1_check_digit(digits[:-1])
            raise _refuse(
                f"称重条码校验位错误 (格式 {fmt.pattern}, 应为 {expected}), 请重新扫描",
                f"wrong check digit for scale label format {fmt.pattern} (expected {expected}); scan again",
                raw,
                label_format=fmt.pattern,
                expected_check_digit=expected,
            )
        return InterpretedCode(
            raw=raw,
            kind=CodeKind.SCALE_LABEL,
            item_code=fmt.item_code(digits),
            symbology=symbology,
            plu=digits[fmt.plu[0] : fmt.plu[1]],
            label_format=fmt.pattern,
            grams=int(digits[fmt.grams[0] : fmt.grams[1]]) if fmt.grams else None,
            amount_fen=int(digits[fmt.amount[0] : fmt.amount[1]]) if fmt.amount else None,
        )
    return None


def _gs1_message(raw: str, text: str, symbology: str | None, today: date | None) -> InterpretedCode:
    try:
        message = GS1Message.parse(text)
    except _PARSE_FAILURES as exc:
        raise _refuse("GS1 数据无法解析", f"not a valid GS1 element string ({exc})", raw) from None
    return _from_elements(raw, list(message.element_strings), symbology, today)


def _gs1_hri(raw: str, text: str, symbology: str | None, today: date | None) -> InterpretedCode:
    try:
        message = GS1Message.parse_hri(text)
    except _PARSE_FAILURES as exc:
        raise _refuse("GS1 可读文本 (01)... 无法解析", f"not a valid GS1 human-readable string ({exc})", raw) from None
    return _from_elements(raw, list(message.element_strings), symbology, today)


def _gs1_digital_link(raw: str, text: str, symbology: str | None, today: date | None) -> InterpretedCode:
    try:
        link = GS1DigitalLinkURI.parse(text)
    except _PARSE_FAILURES as exc:
        raise _refuse("不是 GS1 数字链接 (Digital Link)", f"not a GS1 Digital Link URI ({exc})", raw) from None
    return _from_elements(raw, list(link.element_strings), symbology, today)


def _from_elements(
    raw: str, elements: list[GS1ElementString], symbology: str | None, today: date | None
) -> InterpretedCode:
    by_ai: dict[str, GS1ElementString] = {}
    for element in elements:
        if element.ai.ai in by_ai:
            raise _refuse(f"应用标识符 ({element.ai.ai}) 重复", f"application identifier ({element.ai.ai}) twice", raw)
        by_ai[element.ai.ai] = element
    named = by_ai.get("01") or by_ai.get("02")
    if named is None:
        raise _refuse(
            "GS1 条码中没有商品 GTIN (AI 01 或 02)", "the GS1 code names no item (no GTIN in AI 01 or 02)", raw
        )
    if named.gtin is None:
        expected = gs1_check_digit(named.value[:-1]) if _DIGITS.fullmatch(named.value) else None
        right = f" (应为 {expected})" if expected is not None else ""
        raise _refuse(
            f"GTIN ({named.ai.ai}) 校验位错误{right}, 请重新扫描",
            f"the GTIN in ({named.ai.ai}) is not valid: {named.gtin_error}",
            raw,
        )
    weights = [e for ai, e in by_ai.items() if ai.startswith("310")]
    counts = [e for ai, e in by_ai.items() if ai in ("30", "37")]
    amounts = [e for ai, e in by_ai.items() if ai[:3] in ("392", "393")]
    if len(weights) + len(counts) > 1:
        raise _refuse("净重和数量只能有一个", "carries more than one of net weight (310x) and count (30, 37)", raw)
    if len(amounts) > 1:
        raise _refuse("金额 (392x/393x) 只能有一个", "carries more than one amount (392x, 393x)", raw)
    expiry_element = by_ai.get("17") or by_ai.get("15")  # use-by first, else best-before (保质期至)
    return InterpretedCode(
        raw=raw,
        kind=CodeKind.GS1,
        item_code=_canonical_gtin(named.gtin),
        symbology=symbology,
        gtin=named.gtin.as_gtin_14(),
        lot=by_ai["10"].value if "10" in by_ai else None,
        expiry=_gs1_date(raw, expiry_element, today) if expiry_element else None,
        serial=by_ai["21"].value if "21" in by_ai else None,
        grams=_grams(raw, weights[0]) if weights else None,
        count=_count(raw, counts[0]) if counts else None,
        amount_fen=_fen(raw, amounts[0]) if amounts else None,
    )


def _gs1_date(raw: str, element: GS1ElementString, today: date | None) -> date:
    """YYMMDD; day 00 means the last day of the month (GS1 General Specifications 7.12)."""
    yy, mm, dd = int(element.value[0:2]), int(element.value[2:4]), int(element.value[4:6])
    if today is None:
        year = 2000 + yy
    else:
        century, current = divmod(today.year, 100)
        if 51 <= yy - current <= 99:
            century -= 1
        elif -99 <= yy - current <= -50:
            century += 1
        year = century * 100 + yy
    try:
        return date(year, mm, dd or calendar.monthrange(year, mm)[1])
    except (ValueError, calendar.IllegalMonthError):
        raise _refuse(
            f"日期 ({element.ai.ai}) 无效: {element.value}",
            f"date ({element.ai.ai}) {element.value} is not a date",
            raw,
        ) from None


def _decimal(element: GS1ElementString) -> Decimal:
    """The value with the decimal point the AI's last digit says (GS1 General Specifications 3.6)."""
    digits = element.pattern_groups[-1]
    return Decimal(int(digits)).scaleb(-int(element.ai.ai[3]))


def _grams(raw: str, element: GS1ElementString) -> int:
    # Net weight in kg (310n: n decimals) to whole grams, rounded half up once.
    grams = int((_decimal(element) * 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if grams <= 0:
        raise _refuse(f"净重 ({element.ai.ai}) 为零", f"net weight ({element.ai.ai}) is zero", raw)
    return grams


def _count(raw: str, element: GS1ElementString) -> int:
    count = int(element.value)
    if count <= 0:
        raise _refuse(f"数量 ({element.ai.ai}) 为零", f"count ({element.ai.ai}) is zero", raw)
    return count


def _fen(raw: str, element: GS1ElementString) -> int:
    if element.ai.ai.startswith("393") and element.pattern_groups[0] != CNY_NUMERIC:
        currency = element.pattern_groups[0]
        raise _refuse(f"金额币种 {currency} 不是人民币 (156)", f"amount is in currency {currency}, not yuan (156)", raw)
    # Amount in yuan (392n/393n: n decimals) to fen, rounded half up once.
    return int((_decimal(element) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
