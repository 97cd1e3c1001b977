"""Chinese addresses: normalise into province, city, district and the rest (street and number), and compare.

cpca (Chinese province-city-area) splits an address by the national administrative division codes and fills
in what is implied ("浦东新区张江路88号" -> 上海市, 市辖区, 浦东新区, 张江路88号). Before that, full-width characters
become half-width (NFKC: "８８号" -> "88号"), whitespace and punctuation go. Two addresses match when province, city and
district are the same and the rest is the same, or one rest is the other followed by more detail after a house
number ("张江路88号" and "张江路88号1幢101室"). A missing part matches only a missing part. The comparison is
symmetric by construction.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

PARTS = ("province", "city", "district", "street")
PART_NAMES: dict[str, tuple[str, str]] = {
    "province": ("省", "province"),
    "city": ("市", "city"),
    "district": ("区县", "district"),
    "street": ("街道门牌", "street and number"),
}
MAX_LENGTH = 500
_NOISE = re.compile(r"[\s,，.。、;；:：'\"“”‘’()（）\[\]【】<>《》\-—_~·]+")
# The rest of an address may carry more detail than the other one only after one of these.
_NUMBER_ENDS = ("号", "弄", "栋", "幢", "号楼", "座")


@dataclass(frozen=True, slots=True)
class NormalisedAddress:
    province: str | None
    city: str | None
    district: str | None
    street: str

    def to_json(self) -> dict[str, str | None]:
        return {"province": self.province, "city": self.city, "district": self.district, "street": self.street}


@dataclass(frozen=True, slots=True)
class AddressComparison:
    match: bool
    differences: tuple[str, ...]  # names from PARTS
    left: NormalisedAddress
    right: NormalisedAddress

    def to_json(self) -> dict[str, Any]:
        return {
            "match": self.match,
            "differences": list(self.differences),
            "left": self.left.to_json(),
            "right": self.right.to_json(),
        }


def clean_address(text: str) -> str:
    """Half-width, no whitespace or punctuation, letters upper case; cleaning a cleaned address changes nothing."""
    value = text[: MAX_LENGTH * 2]
    # Removing a space can leave a combining mark that composes with the letter before it ("R¸" -> "R" + U+0327):
    # normalise again until nothing changes.
    for _ in range(4):
        cleaned = _NOISE.sub("", unicodedata.normalize("NFKC", value)).upper()[:MAX_LENGTH]
        if cleaned == value:
            break
        value = cleaned
    return value


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    value = str(value).strip()
    return value or None


@lru_cache(maxsize=1024)
def normalise_address(text: str) -> NormalisedAddress:
    """Split an address into province, city, district and the rest; parts cpca cannot tell are None."""
    import cpca  # type: ignore[import-untyped]  # loads its division table once (~0.2 s); kept off import time

    cleaned = clean_address(text)
    if not cleaned:
        return NormalisedAddress(None, None, None, "")
    row = cpca.transform([cleaned]).iloc[0]
    province, city, district = _text(row["省"]), _text(row["市"]), _text(row["区"])
    rest = _text(row["地址"])
    if province is None and city is None and district is None:
        rest = cleaned
    return NormalisedAddress(province, city, district, rest or "")


def _streets_agree(a: str, b: str) -> bool:
    if a == b:
        return True
    shorter, longer = sorted((a, b), key=len)
    return bool(shorter) and longer.startswith(shorter) and shorter.endswith(_NUMBER_ENDS)


def compare_addresses(left: str, right: str) -> AddressComparison:
    """Do two addresses name the same place? `differences` names the parts that differ."""
    a, b = normalise_address(left), normalise_address(right)
    differences = [part for part in PARTS[:3] if getattr(a, part) != getattr(b, part)]
    if not _streets_agree(a.street, b.street):
        differences.append("street")
    return AddressComparison(match=not differences, differences=tuple(differences), left=a, right=b)


def describe_differences(differences: tuple[str, ...]) -> tuple[str, str]:
    """The differing parts in Chinese and in English, for messages."""
    return "、".join(PART_NAMES[d][0] for d in differences), ", ".join(PART_NAMES[d][1] for d in differences)
