"""Unified social credit code (统一社会信用代码, GB 32100-2015): format and check character.

18 characters from the code alphabet 0-9 A-H J-N P-R T U W-Y (no I, O, S, V, Z): registration authority (1),
entity type (1), administrative division (6), organisation code (9), check character (1). The first character
is the registering authority: 1-9, A-G, N (农业) or Y (其他). The check character is
C18 = 31 - (sum of value(Ci) * 3^(i-1) mod 31) mod 31, computed by python-stdnum's `calc_check_digit`. stdnum's
own `validate` refuses any code whose first eight characters are not all digits, which the standard allows
(an N- or Y-prefixed code, letters in positions 2-8), so the format check here is ours.
"""

from __future__ import annotations

import re
import unicodedata

from stdnum.cn import uscc as stdnum_uscc

from edge.finance.errors import InvalidCreditCode

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
AUTHORITIES = "123456789ABCDEFGNY"
LENGTH = 18
_SEPARATORS = re.compile(r"[\s\-]+")
_SHOWN = 40  # characters of bad input echoed back in an error at most


def normalise_uscc(code: str) -> str:
    """Full-width to half-width, separators (spaces, hyphens) removed, upper case."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", code)).upper()


def validate_uscc(code: str) -> str:
    """The code normalised (upper case, no separators) if it is a valid USCC; InvalidCreditCode saying why if not."""
    if not isinstance(code, str):
        raise InvalidCreditCode(
            "统一社会信用代码须为文本", "the unified social credit code must be text", reason="type"
        )
    value = normalise_uscc(code)
    shown = value[:_SHOWN]
    if not value:
        raise InvalidCreditCode("统一社会信用代码为空", "the unified social credit code is empty", reason="empty")
    if len(value) != LENGTH:
        raise InvalidCreditCode(
            f"统一社会信用代码须为 18 位，{shown!r} 有 {len(value)} 位",
            f"a unified social credit code has 18 characters; {shown!r} has {len(value)}",
            reason="length",
            code=shown,
            length=len(value),
        )
    bad = [(i + 1, c) for i, c in enumerate(value) if c not in ALPHABET]
    if bad:
        position, char = bad[0]
        raise InvalidCreditCode(
            f"统一社会信用代码 {shown} 第 {position} 位 {char!r} 不是允许的字符 (0-9 及除 I、O、S、V、Z 外的大写字母)",
            f"unified social credit code {shown}: character {position} {char!r} is not allowed "
            "(digits and capital letters except I, O, S, V, Z)",
            reason="character",
            code=shown,
            position=position,
            character=char,
        )
    if value[0] not in AUTHORITIES:
        raise InvalidCreditCode(
            f"统一社会信用代码 {value} 第 1 位登记管理部门代码 {value[0]!r} 无效 (应为 1-9、A-G、N 或 Y)",
            f"unified social credit code {value}: registration authority {value[0]!r} is not one of 1-9, A-G, N, Y",
            reason="authority",
            code=value,
            position=1,
            character=value[0],
        )
    expected = stdnum_uscc.calc_check_digit(value[:17])
    if value[17] != expected:
        raise InvalidCreditCode(
            f"统一社会信用代码 {value} 校验码错误: 第 18 位应为 {expected}，实为 {value[17]}",
            f"unified social credit code {value}: wrong check character, expected {expected}, got {value[17]}",
            reason="check_character",
            code=value,
            expected=expected,
            actual=value[17],
        )
    return value


def is_valid_uscc(code: str) -> bool:
    try:
        validate_uscc(code)
    except InvalidCreditCode:
        return False
    return True


def complete_uscc(first17: str) -> str:
    """The full code for 17 characters (their check character appended); for tests, the demo and the docs."""
    value = normalise_uscc(first17)
    if len(value) != LENGTH - 1 or any(c not in ALPHABET for c in value):
        raise InvalidCreditCode(
            f"须为 17 位代码字符: {value[:_SHOWN]!r}",
            f"needs 17 code characters: {value[:_SHOWN]!r}",
            reason="length",
            code=value[:_SHOWN],
        )
    return value + stdnum_uscc.calc_check_digit(value)
