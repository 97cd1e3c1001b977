"""Charts of accounts: the two templates, a company's own file, leaves, and what re-installing may not do."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.finance.chart import install_chart, load_chart, parse_chart
from edge.finance.errors import ChartError
from edge.ledger.commands import DocType, Line, PostDocument
from tests.edge.finance.books_store import open_books, post_one


def test_both_templates_name_the_accounts_of_their_standard_in_chinese_and_english() -> None:
    small = {a.code: a for a in load_chart("small_enterprise").accounts}
    enterprise = {a.code: a for a in load_chart("enterprise").accounts}
    for code in ("1001", "1002", "1122", "1123", "1403", "1405", "1901", "2202", "2221", "2241", "5001", "5051"):
        assert code in small and small[code].name and small[code].name_en
    assert (small["5401"].name, small["5711"].name, small["5301"].name) == ("主营业务成本", "营业外支出", "营业外收入")
    assert (enterprise["6001"].name, enterprise["6401"].name) == ("主营业务收入", "主营业务成本")
    assert not {"5001", "5401", "5711"} & set(enterprise)
    assert [small[c].name for c in ("22210101", "22210102", "22210103")] == [
        "应交增值税-进项税额",
        "应交增值税-销项税额",
        "应交增值税-进项税额转出",
    ]


def test_parents_come_from_code_prefixes_and_only_leaves_take_postings() -> None:
    small = {a.code: a for a in load_chart("small_enterprise").accounts}
    assert (small["22210101"].parent, small["222101"].parent, small["2221"].parent) == ("222101", "2221", None)
    assert not small["2221"].leaf and not small["2202"].leaf and small["220201"].leaf and small["1405"].leaf


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "non-empty"),
        ({"accounts": []}, "non-empty"),
        ({"accounts": ["1001"]}, "not an object"),
        ({"accounts": [{"code": "10", "name": "x", "name_en": "x", "kind": "asset"}]}, "4..12 digits"),
        ({"accounts": [{"code": "1001", "name": "", "name_en": "x", "kind": "asset"}]}, "name"),
        ({"accounts": [{"code": "1001", "name": "x", "name_en": "x", "kind": "money"}]}, "kind"),
        ({"accounts": [{"code": "1001", "name": "x", "name_en": "x", "kind": "asset"}] * 2}, "twice"),
    ],
)
def test_a_malformed_chart_is_refused_with_the_reason(data: Any, message: str) -> None:
    with pytest.raises(ChartError, match=message):
        parse_chart(data)


@settings(max_examples=200)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda c: st.lists(c) | st.dictionaries(st.text(max_size=8), c),
        max_leaves=20,
    )
)
def test_garbage_is_refused_as_a_chart_error_never_anything_else(data: Any) -> None:
    with contextlib.suppress(ChartError):
        parse_chart(data)


def test_a_company_chart_file_that_is_not_json_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "chart.json"
    path.write_text('{"accounts": [\n  {"code": "1001",,}\n]}', "utf-8")
    with pytest.raises(ChartError) as refused:
        load_chart(str(path))
    assert refused.value.detail["line"] == 2
    with pytest.raises(ChartError, match="cannot read"):
        load_chart(str(tmp_path / "missing.json"))


def test_reinstalling_a_chart_never_drops_or_splits_an_account_with_postings(tmp_path: Path) -> None:
    conn = open_books(tmp_path / "books.db")
    try:
        assert post_one(conn, PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 1),))).ok
        chart = json.loads((Path(__file__).parents[3] / "edge/finance/data/chart_small_enterprise.json").read_text())
        without = {**chart, "accounts": [a for a in chart["accounts"] if a["code"] != "1405"]}
        split = {
            **chart,
            "accounts": [*chart["accounts"], {"code": "140501", "name": "x", "name_en": "x", "kind": "asset"}],
        }
        renamed = {
            **chart,
            "accounts": [{**a, "name": "商品"} if a["code"] == "1405" else a for a in chart["accounts"]],
        }
        conn.execute("BEGIN")
        for bad in (without, split):
            with pytest.raises(ChartError, match="1405"):
                install_chart(conn, parse_chart(bad))
        install_chart(conn, parse_chart(renamed))
        conn.execute("COMMIT")
        assert conn.execute("SELECT name FROM accounts WHERE code = '1405'").fetchone()[0] == "商品"
    finally:
        conn.close()


def test_setting_up_the_books_refuses_a_bad_chart_with_one_line_and_exit_2(tmp_path: Path) -> None:
    chart = tmp_path / "chart.json"
    chart.write_text(json.dumps({"accounts": [{"code": "12", "name": "x", "name_en": "x", "kind": "asset"}]}), "utf-8")
    env = {**os.environ, "STOREBOX_DATA_DIR": str(tmp_path / "var"), "STOREBOX_CHART": str(chart)}
    done = subprocess.run(
        [sys.executable, "-m", "edge.cli", "migrate"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "4..12 digits" in done.stderr and "科目代码无效" in done.stderr
