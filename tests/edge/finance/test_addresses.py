"""Chinese addresses normalised with cpca and compared by province, city, district and street."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.finance.addresses import clean_address, compare_addresses, describe_differences, normalise_address

ZHANGJIANG = "上海市浦东新区张江路88号"


def test_parts_of_an_address() -> None:
    address = normalise_address("广东省深圳市南山区深南大道10000号")
    assert (address.province, address.city, address.district, address.street) == (
        "广东省",
        "深圳市",
        "南山区",
        "深南大道10000号",
    )


@pytest.mark.parametrize(
    "other",
    [
        ZHANGJIANG,
        "上海浦东新区张江路８８号",  # full-width digits, no 市
        "浦东新区张江路88号",  # the city is implied by the district
        " 上海市 浦东新区，张江路 88 号 ",
        "上海市浦东新区张江路88号1幢101室",  # more detail after the house number
    ],
)
def test_the_same_place_written_differently_matches(other: str) -> None:
    result = compare_addresses(ZHANGJIANG, other)
    assert result.match, result
    assert result.differences == ()


@pytest.mark.parametrize(
    ("other", "differences"),
    [
        ("上海市徐汇区张江路88号", ("district",)),
        ("上海市浦东新区张江路89号", ("street",)),
        ("上海市浦东新区张江路8号", ("street",)),
        ("江苏省南京市玄武区中山路1号", ("province", "city", "district", "street")),
        ("张江路88号", ("province", "city", "district")),  # nothing tells where it is
        ("", ("province", "city", "district", "street")),
    ],
)
def test_a_different_place_names_what_differs(other: str, differences: tuple[str, ...]) -> None:
    result = compare_addresses(ZHANGJIANG, other)
    assert not result.match
    assert result.differences == differences
    zh, en = describe_differences(result.differences)
    assert zh and en


def test_a_house_number_is_not_a_prefix_of_a_longer_one() -> None:
    assert not compare_addresses("北京市朝阳区建国路1号", "北京市朝阳区建国路10号").match
    assert not compare_addresses("北京市朝阳区建国路1", "北京市朝阳区建国路10号").match


def test_cleaning_is_half_width_without_spaces_or_punctuation() -> None:
    assert clean_address(" 上海市（浦东）张江路 ８８号, A座 ") == "上海市浦东张江路88号A座"
    assert clean_address("R¸") == clean_address(clean_address("R¸")) == "\u0156"  # the cedilla composes


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_cleaning_twice_is_cleaning_once(text: str) -> None:
    assert clean_address(clean_address(text)) == clean_address(text)


_pieces = st.sampled_from(
    [
        "上海市",
        "浦东新区",
        "徐汇区",
        "北京市",
        "朝阳区",
        "广东省",
        "深圳市",
        "南山区",
        "张江路",
        "88号",
        "8号",
        "1幢",
        "８８号",
        " ",
        "，",
        "A座",
    ]
)
_addresses = st.one_of(st.lists(_pieces, max_size=6).map("".join), st.text(max_size=30))


@settings(max_examples=150)
@given(_addresses, _addresses)
def test_comparison_is_symmetric(a: str, b: str) -> None:
    ab, ba = compare_addresses(a, b), compare_addresses(b, a)
    assert ab.match == ba.match
    assert ab.differences == ba.differences


@settings(max_examples=150)
@given(_addresses)
def test_an_address_matches_itself_and_its_normalised_spelling(a: str) -> None:
    assert compare_addresses(a, a).match
    assert compare_addresses(a, clean_address(a)).match


def test_the_examples_in_docs_suppliers_md_hold() -> None:
    page = (Path(__file__).parents[3] / "docs" / "suppliers.md").read_text(encoding="utf-8")
    table = page.split("| licence | registered | result |")[1].split("\n\n")[0]
    rows = [r.split("|")[1:4] for r in table.splitlines() if r.startswith("| ") and "---" not in r]
    assert len(rows) == 4
    for licence, registered, result in rows:
        comparison = compare_addresses(licence.strip(), registered.strip())
        assert comparison.match == result.strip().startswith("match"), (licence, registered)
        if not comparison.match:
            assert result.strip() == f"differs: {', '.join(comparison.differences)}"
