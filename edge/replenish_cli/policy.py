"""`storebox replenish policy`: inventory policies (EOQ, newsvendor, (s, S), reorder point) from a CSV file.

Exit codes: 0 every row computed; 1 some rows were bad (reported on stderr by line, the good ones are written);
2 the file cannot be read at all, or the result cannot be written (nothing is written).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge.replenish_cli import replenish_app


@replenish_app.command("policy")
def policy(
    input_path: Annotated[
        Path, typer.Option("--input", "-i", help="参数 CSV / parameter CSV (UTF-8, UTF-8 with BOM, or GBK).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="结果 CSV / result CSV (UTF-8, written atomically).")],
) -> None:
    """按参数表计算库存策略 / compute inventory policies from a parameter file (docs/replenishment-policies.md)."""
    from edge.replenishment.errors import PolicyFileUnreadable
    from edge.replenishment.policies import compute_policies, read_policy_file, write_policy_results

    try:
        parsed = read_policy_file(input_path)
    except PolicyFileUnreadable as err:
        typer.echo(f"storebox: {err.message} / {err.message_en}", err=True)
        raise typer.Exit(2) from None
    for error in parsed.errors:
        typer.echo(f"{error.message} / {error.message_en}", err=True)
    results = compute_policies(parsed.rows)
    try:
        write_policy_results(out, results)
    except OSError as exc:
        typer.echo(f"storebox: 无法写入结果文件 {out}（{exc.strerror}）/ cannot write {out} ({exc.strerror})", err=True)
        raise typer.Exit(2) from None
    bad = len(parsed.errors)
    typer.echo(
        f"已计算 {len(results)} 行，{bad} 行有误，结果写入 {out}"
        f" / computed {len(results)} rows, {bad} bad, written to {out}"
    )
    if bad:
        raise typer.Exit(1)
