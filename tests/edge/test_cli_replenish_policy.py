"""`storebox replenish policy`: exit codes 0 / 1 / 2, messages on stderr by line, the result file's contract."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from edge.cli import app
from tools.box_process import storebox_command

DATA = Path(__file__).parent / "replenishment" / "data"
HEADER = "sku,policy,demand_dist,demand_mean,demand_std,holding_cost,stockout_cost,order_cost,lead_time,service_level"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOREBOX_")}
    return subprocess.run(storebox_command(*args), capture_output=True, text=True, timeout=120, env=env)


def test_textbook_file_exits_0_and_writes_the_documented_result(tmp_path: Path) -> None:
    out = tmp_path / "result.csv"
    result = run("replenish", "policy", "--input", str(DATA / "policy_textbook.csv"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert out.read_text(encoding="utf-8") == (
        "sku,policy,order_quantity,reorder_point,s,S,expected_cost\n"
        "EOQ-1,eoq,200,,,,100\n"
        "NV-N,newsvendor,120.2347,,,,38.1332\n"
        "NV-P,newsvendor,6,,,,2.9732\n"
        "SS-P,sS,,,6,40,35.0216\n"
        "SS-N,sS,,,26,61,36.7522\n"
        "ROP-N,rop,,96.4485,,,\n"
        "ROP-P,rop,,9,,,\n"
        "ROP-Q,rop,141.4214,96.4485,,,15.787\n"
    )


def test_bad_rows_exit_1_are_named_by_line_and_the_good_rows_are_written(tmp_path: Path) -> None:
    src = tmp_path / "params.csv"
    src.write_text(
        f"{HEADER}\nA,eoq,,1000,,0.5,,10,,\nB,eoq,,lots,,0.5,,10,,\nC,rop,normal,5,1,,,,2,1.2\nD,eoq,,10,,1,,2,,\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.csv"
    result = run("replenish", "policy", "--input", str(src), "--out", str(out))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("第 3 行，demand_mean 列") and "line 3, column demand_mean" in lines[0]
    assert "第 4 行，service_level 列" in lines[1] and "line 4, column service_level" in lines[1]
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["sku"] for r in rows] == ["A", "D"]


def test_unreadable_input_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    missing = run("replenish", "policy", "--input", str(tmp_path / "nope.csv"), "--out", str(out))
    assert missing.returncode == 2 and "no such file" in missing.stderr and "文件不存在" in missing.stderr
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"sku;policy;demand_mean\nA;eoq;5\n")
    no_columns = run("replenish", "policy", "--input", str(bad), "--out", str(out))
    assert no_columns.returncode == 2 and "required column" in no_columns.stderr
    assert not out.exists()


def test_gbk_file_from_excel_is_read(tmp_path: Path) -> None:
    src = tmp_path / "excel.csv"
    src.write_bytes(f"{HEADER}\r\n速冻水饺,eoq,,1000,,0.5,,10,,\r\n".encode("gbk"))
    out = tmp_path / "out.csv"
    result = run("replenish", "policy", "--input", str(src), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_text(encoding="utf-8").splitlines()[1] == "速冻水饺,eoq,200,,,,100"


def test_unwritable_output_exits_2(tmp_path: Path) -> None:
    result = run(
        "replenish", "policy", "--input", str(DATA / "policy_textbook.csv"), "--out", str(tmp_path / "no" / "o.csv")
    )
    assert result.returncode == 2 and "cannot write" in result.stderr


runner = CliRunner()


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=300),
        st.lists(st.text(max_size=12), max_size=30).map(lambda cells: (HEADER + "\n" + ",".join(cells)).encode()),
    )
)
def test_garbage_input_never_crashes_the_command(tmp_path: Path, data: bytes) -> None:
    src = tmp_path / "garbage.csv"
    src.write_bytes(data)
    out = tmp_path / "out.csv"
    out.unlink(missing_ok=True)
    result = runner.invoke(app, ["replenish", "policy", "--input", str(src), "--out", str(out)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 1, 2)
    assert out.exists() == (result.exit_code != 2)
    if out.exists():
        header = out.read_text(encoding="utf-8").splitlines()[0]
        assert header == "sku,policy,order_quantity,reorder_point,s,S,expected_cost"


def test_the_worked_example_of_the_docs_page_is_what_the_command_writes(tmp_path: Path) -> None:
    import re

    page = (Path(__file__).parents[2] / "docs" / "replenishment-policies.md").read_text(encoding="utf-8")
    given_csv, expected_csv = re.findall(r"```csv\n(.*?)```", page, re.DOTALL)
    assert given_csv == (DATA / "policy_textbook.csv").read_text(encoding="utf-8")
    out = tmp_path / "out.csv"
    result = runner.invoke(
        app, ["replenish", "policy", "--input", str(DATA / "policy_textbook.csv"), "--out", str(out)]
    )
    assert result.exit_code == 0
    assert out.read_text(encoding="utf-8") == expected_csv
