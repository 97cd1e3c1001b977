"""`storebox books ...`: the books of a real database, as aligned tables or JSON, and the voucher export."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import unicodedata
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import openpyxl  # type: ignore[import-untyped]
import pytest
from typer.testing import CliRunner

from edge.cli import app
from edge.db import connect
from edge.finance import books
from tests.edge.finance.books_sample import open_sample
from tools.box_process import storebox_command

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir whose storebox.db holds the worked example of tests/edge/finance/books_sample.py."""
    open_sample(tmp_path / "storebox.db").close()
    yield tmp_path


def storebox(data_dir: Path, *args: str) -> tuple[int, str, str]:
    """Run the real command in a process of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREBOX_")}
    env["STOREBOX_DATA_DIR"] = str(data_dir)
    done = subprocess.run(storebox_command(*args), capture_output=True, text=True, timeout=120, env=env)
    return done.returncode, done.stdout, done.stderr


def invoke(data_dir: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"STOREBOX_DATA_DIR": str(data_dir)})
    return result.exit_code, result.stdout, result.stderr


def width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def domain(data_dir: Path, build: object) -> object:
    conn = connect(data_dir / "storebox.db", readonly=True)
    try:
        return json.loads(json.dumps(asdict(build(conn)), ensure_ascii=False))  # type: ignore[operator]
    finally:
        conn.close()


def test_trial_balance_is_an_aligned_table_in_chinese_and_english(data_dir: Path) -> None:
    code, out, err = storebox(data_dir, "books", "trial-balance", "--period", "2026-11")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "科目余额表 Trial balance 2026-11 (2026-11-01 .. 2026-11-30), 元 yuan"
    assert lines[1].split()[:3] == ["科目代码", "科目名称", "期初借方"]
    assert lines[2].split()[:4] == ["account", "name", "opening", "debit"]
    table = lines[1:-1]
    assert len({width(line) for line in table}) == 1, "every row ends at the right edge of the closing column"
    inventory = next(line for line in lines if line.startswith("1405 "))
    assert inventory.split() == ["1405", "库存商品", "200.00", "0.00", "0.00", "30.00", "170.00", "0.00"]
    payable = next(line for line in lines if line.startswith("220201 "))
    assert payable.split()[-6:] == ["0.00", "226.00", "100.00", "-4.52", "0.00", "121.48"]
    assert lines[-2].split() == ["合计", "total", "226.00", "226.00", "155.48", "155.48", "252.03", "252.03"]
    assert lines[-1] == "借贷平衡 balanced"


def test_trial_balance_json_is_the_report_in_fen(data_dir: Path) -> None:
    code, out, err = storebox(data_dir, "books", "trial-balance", "--period", "2026-11", "--json")
    assert code == 0, err
    assert json.loads(out) == domain(data_dir, lambda c: books.trial_balance(c, "2026-11"))
    assert json.loads(out)["totals"]["closing_debit_fen"] == 25203


def test_ledger_ageing_and_valuation_as_tables_and_json(data_dir: Path) -> None:
    code, out, _ = invoke(data_dir, "books", "ledger", "--account", "2202", "--period", "2026-11")
    assert code == 0 and "明细账 General ledger 2202 应付账款" in out
    assert "期初余额 opening" in out and out.splitlines()[-1].split()[-3:] == ["-4.52", "贷", "125.48"]
    code, out, _ = invoke(data_dir, "books", "ledger", "--account", "1405", "--period", "2026-11", "--json")
    assert json.loads(out) == domain(data_dir, lambda c: books.general_ledger(c, "1405", "2026-11"))
    code, out, _ = invoke(data_dir, "books", "ap-ageing", "--as-of", "2026-12-20")
    assert code == 0 and "应付账款账龄 AP ageing as of 2026-12-20" in out
    assert next(line for line in out.splitlines() if line.startswith("sup1")).split()[-6:] == [
        "121.48",
        "0.00",
        "0.00",
        "121.48",
        "0.00",
        "0.00",
    ]
    assert out.splitlines()[-1] == "总账余额 general ledger balance 121.48: 一致 agrees"
    code, out, _ = invoke(data_dir, "books", "ap-ageing", "--json")  # as of today
    assert code == 0 and json.loads(out)["agrees"] is True
    code, out, _ = invoke(data_dir, "books", "valuation")
    assert code == 0 and "科目 account 1405: 170.00, 库存 stock 170.00: 一致 agrees" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("A1 ")]
    assert rows == [
        ["A1", "可口可乐", "330ml", "floor", "85", "听", "2.00", "170.00"],
        ["A1", "可口可乐", "330ml", "transit", "5", "听", "2.00", "10.00"],
    ]
    code, out, _ = invoke(data_dir, "books", "valuation", "--json")
    assert json.loads(out) == domain(data_dir, books.stock_valuation)


def test_check_exits_1_and_says_what_differs(data_dir: Path) -> None:
    code, out, _ = storebox(data_dir, "books", "check")
    assert code == 0 and out.startswith("账簿核对无误 books OK")
    conn = connect(data_dir / "storebox.db")
    conn.execute("UPDATE balances SET value_fen = value_fen - 1234 WHERE location = 'floor'")
    conn.close()
    code, out, _ = storebox(data_dir, "books", "check")
    assert code == 1
    assert out.strip() == (
        "科目 1405 库存商品 余额 170.00 元，在途以外的库存金额 157.66 元，差 12.34 元"
        " / account 1405 balance 170.00 yuan differs from the value of the stock outside transit 157.66 yuan"
        " by 12.34 yuan"
    )
    code, out, _ = invoke(data_dir, "books", "check", "--json")
    assert code == 1 and json.loads(out)["problems"][0]["code"] == "stock_account_mismatch"


@pytest.mark.parametrize(("layout", "fmt"), [("kingdee", "csv"), ("yonyou", "csv"), ("kingdee", "xlsx")])
def test_export_writes_the_file_whole(data_dir: Path, tmp_path: Path, layout: str, fmt: str) -> None:
    out = tmp_path / "exports" / f"november.{fmt}"
    out.parent.mkdir()
    out.write_bytes(b"last month's file")
    args = ["books", "export", "--period", "2026-11", "--layout", layout, "--format", fmt, "--out", str(out)]
    code, stdout, err = invoke(data_dir, *args)
    assert code == 0, err
    assert "已导出 4 张凭证 12 行" in stdout and "exported 4 vouchers, 12 lines" in stdout
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name], "no temp file is left behind"
    assert oct(out.stat().st_mode & 0o777) != oct(0o600), "an ordinary file, not mkstemp's private one"
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(out.read_bytes().decode("utf-8-sig"))))
    else:
        rows = [list(r) for r in openpyxl.load_workbook(out).active.iter_rows(values_only=True)]
    assert len(rows) == 13 and rows[0][:3] == ["日期", "凭证字", "凭证号"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["trial-balance", "--period", "2026-13"], "invalid period '2026-13'"),
        (["trial-balance", "--period", "十一月"], "会计期间无效"),
        (["ledger", "--account", "9999", "--period", "2026-11"], "no such account: '9999'"),
        (["ap-ageing", "--as-of", "2026-02-30"], "invalid date '2026-02-30'"),
        (["export", "--period", "2026-11", "--layout", "sap", "--format", "csv", "--out", "x"], "layout"),
        (["export", "--period", "2026-11", "--layout", "kingdee", "--format", "pdf", "--out", "x"], "format"),
        (["trial-balance"], "--period"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(data_dir: Path, args: list[str], words: str) -> None:
    code, out, err = invoke(data_dir, "books", *args)
    assert code == 2
    assert words in err + out
    if "storebox:" in err:
        assert len(err.strip().splitlines()) == 1 and " / " in err, "one line, Chinese / English"
    assert not (Path.cwd() / "x").exists()


def test_a_refused_export_leaves_the_old_file_alone(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "november.csv"
    out.write_bytes(b"keep me")
    args = ["books", "export", "--period", "2026-11", "--layout", "kingdee", "--format", "csv"]
    code, _, err = invoke(data_dir, *args, "--encoding", "ebcdic", "--out", str(out))
    assert code == 2 and "encoding" in err
    code, _, err = invoke(data_dir, *args, "--out", str(tmp_path / "missing" / "november.csv"))
    assert code == 2 and "no such directory" in err
    assert out.read_bytes() == b"keep me"
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_without_a_database_the_books_say_so(tmp_path: Path) -> None:
    code, _, err = invoke(tmp_path / "empty", "books", "check")
    assert code == 2 and "no database" in err


def test_help_lists_the_books_commands() -> None:
    out = runner.invoke(app, ["books", "--help"]).stdout
    for command in ("trial-balance", "ledger", "ap-ageing", "valuation", "check", "export"):
        assert command in out
