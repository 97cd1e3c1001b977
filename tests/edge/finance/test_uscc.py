"""Unified social credit codes (GB 32100-2015): our format check plus stdnum's check character."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum.cn import uscc as stdnum_uscc

from edge.finance.errors import InvalidCreditCode
from edge.finance.uscc import ALPHABET, AUTHORITIES, complete_uscc, is_valid_uscc, validate_uscc

VALID = ("91110000600037341L", "91310115MA1K3YJ71K", "91310000MA1FL0000N")
# The standard allows letters in the first eight characters; stdnum's own validate refuses them.
N_CODE = "N2110105MA00ABCD10"  # 农业 (N) registration authority
Y_CODE = "Y1310115MA1K3YJ71X"  # 其他 (Y) registration authority
LETTERS_IN_REGION = "9A31011AMA1K3YJ71" + stdnum_uscc.calc_check_digit("9A31011AMA1K3YJ71")


@pytest.mark.parametrize("code", VALID)
def test_valid_codes_are_returned_as_they_are(code: str) -> None:
    assert validate_uscc(code) == code


@pytest.mark.parametrize("code", [N_CODE, Y_CODE, LETTERS_IN_REGION])
def test_codes_with_letters_in_the_first_eight_pass_although_stdnum_refuses_them(code: str) -> None:
    assert not stdnum_uscc.is_valid(code)
    assert validate_uscc(code) == code
    assert complete_uscc(code[:17]) == code


def test_lower_case_spaces_hyphens_and_full_width_are_normalised() -> None:
    assert validate_uscc(" 9131 0115-ma1k 3yj7 1k ") == "91310115MA1K3YJ71K"
    assert validate_uscc("９１３１０１１５ＭＡ１Ｋ３ＹＪ７１Ｋ") == "91310115MA1K3YJ71K"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("9131011", "length"),
        ("91310115MA1K3YJ71KK", "length"),
        ("91310115MA1K3YJ71O", "character"),  # O is not in the alphabet
        ("9131011SMA1K3YJ71K", "character"),
        ("H1310115MA1K3YJ71K", "authority"),
        ("01310115MA1K3YJ71K", "authority"),
        ("91310115MA1K3YJ71D", "check_character"),
    ],
)
def test_bad_codes_say_why(code: str, reason: str) -> None:
    with pytest.raises(InvalidCreditCode) as caught:
        validate_uscc(code)
    assert caught.value.detail["reason"] == reason
    assert caught.value.message and caught.value.message_en
    assert caught.value.status == 422


def test_wrong_check_character_names_the_expected_one() -> None:
    with pytest.raises(InvalidCreditCode) as caught:
        validate_uscc("91310115MA1K3YJ71D")
    assert caught.value.detail["expected"] == "K"
    assert "K" in caught.value.message and "expected K" in caught.value.message_en


def test_the_check_character_is_the_standards_weighted_sum() -> None:
    # C18 = 31 - (sum of value * 3^(i-1) mod 31) mod 31, value by position in the alphabet.
    body = "91310115MA1K3YJ71"
    total = sum(ALPHABET.index(c) * pow(3, i, 31) for i, c in enumerate(body))
    assert ALPHABET[(31 - total % 31) % 31] == "K"


@given(st.text(max_size=40))
def test_any_text_is_a_valid_code_or_a_clear_refusal(text: str) -> None:
    try:
        code = validate_uscc(text)
    except InvalidCreditCode as err:
        assert err.message and err.message_en and err.detail["reason"]
        assert not is_valid_uscc(text)
    else:
        assert len(code) == 18 and set(code) <= set(ALPHABET) and code[0] in AUTHORITIES
        assert code[17] == stdnum_uscc.calc_check_digit(code[:17])


@given(
    st.sampled_from(AUTHORITIES),
    st.text(alphabet=ALPHABET, min_size=16, max_size=16),
    st.sampled_from(ALPHABET),
)
def test_exactly_one_check_character_completes_a_code(first: str, body: str, check: str) -> None:
    full = complete_uscc(first + body)
    assert validate_uscc(full) == full
    assert is_valid_uscc(first + body + check) == (check == full[17])


@given(st.text(alphabet=ALPHABET + "IOSVZ", min_size=18, max_size=18))
def test_eighteen_characters_from_a_near_alphabet_never_crash(code: str) -> None:
    assert is_valid_uscc(code) == (
        set(code) <= set(ALPHABET) and code[0] in AUTHORITIES and code[17] == stdnum_uscc.calc_check_digit(code[:17])
    )


def test_the_examples_in_docs_suppliers_md_hold() -> None:
    page = (Path(__file__).parents[3] / "docs" / "suppliers.md").read_text(encoding="utf-8")
    table = page.split("| code | box | stdnum `validate` |")[1].split("\n\n")[0]
    rows = [r for r in table.splitlines() if r.startswith("| `")]
    assert len(rows) >= 6
    for row in rows:
        _, code_cell, box_cell, stdnum_cell, _ = row.split("|")
        code = code_cell.split("`")[1]
        assert is_valid_uscc(code) == box_cell.strip().startswith("valid"), row
        assert stdnum_uscc.is_valid(code) == stdnum_cell.strip().startswith("valid"), row
        if "reason" in box_cell:
            with pytest.raises(InvalidCreditCode) as caught:
                validate_uscc(code)
            assert f"`{caught.value.detail['reason']}`" in box_cell, row
