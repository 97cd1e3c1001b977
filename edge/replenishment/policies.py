"""Inventory policies from a parameter file (策略参数表), for planners and for checking against textbooks.

`read_policy_file` parses a CSV of one SKU per row (beancount style: bad rows come back as error values, the good
ones are still computed); `compute_policies` groups the rows by policy and demand distribution and calls the
kernels once per group over arrays; `write_policy_results` writes the result atomically. Formats and formulas:
docs/replenishment-policies.md.
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.replenishment import kernels
from edge.replenishment.errors import PolicyFileUnreadable, PolicyRowInvalid

POLICIES: tuple[str, ...] = ("eoq", "newsvendor", "sS", "rop")
DISTRIBUTIONS: tuple[str, ...] = ("poisson", "normal")
INPUT_COLUMNS: tuple[str, ...] = (
    "sku",
    "policy",
    "demand_dist",
    "demand_mean",
    "demand_std",
    "holding_cost",
    "stockout_cost",
    "order_cost",
    "lead_time",
    "service_level",
    "lead_time_std",
)
REQUIRED_COLUMNS: tuple[str, ...] = ("sku", "policy", "demand_mean")
OUTPUT_COLUMNS: tuple[str, ...] = ("sku", "policy", "order_quantity", "reorder_point", "s", "S", "expected_cost")
NUMERIC_COLUMNS: tuple[str, ...] = INPUT_COLUMNS[3:]
# Largest number a cell may hold: keeps every formula finite in float64.
MAX_VALUE = 1e12
# (s, S) is solved exactly over whole units; its work grows with the support of the lead-time demand.
MAX_SS_UNITS = 20_000
MAX_SS_LEAD_TIME = 365

# Columns each policy needs (demand_std too when the distribution is normal).
NEEDS: dict[str, tuple[str, ...]] = {
    "eoq": ("demand_mean", "order_cost", "holding_cost"),
    "newsvendor": ("demand_dist", "demand_mean", "holding_cost", "stockout_cost"),
    "sS": ("demand_dist", "demand_mean", "order_cost", "holding_cost", "stockout_cost", "lead_time"),
    "rop": ("demand_dist", "demand_mean", "lead_time", "service_level"),
}

_COLUMN_ZH = {
    "sku": "商品编码",
    "policy": "策略",
    "demand_dist": "需求分布",
    "demand_mean": "需求均值",
    "demand_std": "需求标准差",
    "holding_cost": "持有成本",
    "stockout_cost": "缺货成本",
    "order_cost": "订货成本",
    "lead_time": "提前期",
    "service_level": "服务水平",
    "lead_time_std": "提前期标准差",
}


@dataclass(frozen=True, slots=True)
class PolicyRow:
    """One good row: where it was, what to compute, and its numbers (NaN where a cell was empty)."""

    line: int
    sku: str
    policy: str
    dist: str  # "" for EOQ
    values: dict[str, float]


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """The output of one row; None where a column does not apply."""

    line: int
    sku: str
    policy: str
    order_quantity: float | None = None
    reorder_point: float | None = None
    s: float | None = None
    big_s: float | None = None
    expected_cost: float | None = None

    def cells(self) -> list[str]:
        return [
            self.sku,
            self.policy,
            *(
                format_number(v)
                for v in (self.order_quantity, self.reorder_point, self.s, self.big_s, self.expected_cost)
            ),
        ]


@dataclass(frozen=True, slots=True)
class PolicyFile:
    rows: list[PolicyRow]
    errors: list[PolicyRowInvalid]


def format_number(value: float | None) -> str:
    """Empty for None; whole numbers without a decimal point; others to 4 decimals, trailing zeros dropped."""
    if value is None:
        return ""
    if not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "")
    rounded = round(value, 4)
    if rounded == int(rounded):
        return str(int(rounded))
    return f"{rounded:.4f}".rstrip("0").rstrip(".")


# --------------------------------------------------------------------------------------------------------------
# Reading


def decode_policy_bytes(data: bytes, name: str) -> str:
    """UTF-8 (with or without BOM), else GBK (what Excel writes on a Chinese Windows); anything else is refused."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise PolicyFileUnreadable(
            name, "是 UTF-16 文本（Excel 的 Unicode 文本），请另存为 CSV UTF-8", "is UTF-16 text; save it as CSV UTF-8"
        )
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8")
        except UnicodeDecodeError:
            raise PolicyFileUnreadable(name, "不是有效的 UTF-8 文本", "not valid UTF-8 text") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = data.decode("gbk")
        except UnicodeDecodeError:
            raise PolicyFileUnreadable(
                name, "编码既不是 UTF-8 也不是 GBK", "the encoding is neither UTF-8 nor GBK"
            ) from None
    if "\x00" in text:
        raise PolicyFileUnreadable(
            name,
            "含有空字节，不是文本 CSV（UTF-16？请另存为 UTF-8 CSV）",
            "contains NUL bytes, not a text CSV (UTF-16? save as CSV UTF-8)",
        )
    return text


def read_policy_file(path: Path) -> PolicyFile:
    """Read and validate a policy parameter file; raises PolicyFileUnreadable when nothing can be computed."""
    name = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PolicyFileUnreadable(name, "文件不存在", "no such file") from None
    except IsADirectoryError:
        raise PolicyFileUnreadable(name, "这是一个目录", "is a directory") from None
    except OSError as err:
        raise PolicyFileUnreadable(name, f"读取失败（{err.strerror}）", f"read failed ({err.strerror})") from None
    return parse_policy_text(decode_policy_bytes(data, name), name)


def parse_policy_text(text: str, name: str = "<input>") -> PolicyFile:
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows: list[PolicyRow] = []
    errors: list[PolicyRowInvalid] = []
    try:
        while True:
            line = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            if not any(c.strip() for c in cells):
                continue  # blank line, or a row of empty cells Excel left behind
            if header is None:
                header = [c.strip().lower() for c in cells]
                _check_header(header, name)
                continue
            row = _parse_row(line, header, cells, errors)
            if row is not None:
                rows.append(row)
    except csv.Error as err:
        raise PolicyFileUnreadable(
            name, f"第 {reader.line_num} 行不是有效的 CSV（{err}）", f"line {reader.line_num} is not valid CSV ({err})"
        ) from None
    if header is None:
        raise PolicyFileUnreadable(name, "文件为空，没有表头", "empty file, no header")
    return PolicyFile(rows, errors)


def _check_header(header: list[str], name: str) -> None:
    seen: set[str] = set()
    for col in header:
        if col and col in seen:
            raise PolicyFileUnreadable(name, f"表头中 {col} 列重复", f"column {col} appears twice in the header")
        seen.add(col)
    missing = [c for c in REQUIRED_COLUMNS if c not in seen]
    if missing:
        cols = ", ".join(missing)
        raise PolicyFileUnreadable(
            name,
            f"表头缺少必需的列 {cols}（第一行必须是表头，列名见文档）",
            f"the header lacks the required column(s) {cols} (the first line must be the header; see the docs)",
        )


def _parse_row(line: int, header: list[str], cells: list[str], errors: list[PolicyRowInvalid]) -> PolicyRow | None:
    def bad(column: str, reason: str, reason_en: str) -> None:
        errors.append(PolicyRowInvalid(line, column, reason, reason_en))

    if len(cells) > len(header) and any(c.strip() for c in cells[len(header) :]):
        bad(
            "-",
            f"有 {len(cells)} 个单元格，表头只有 {len(header)} 列",
            f"{len(cells)} cells, the header has {len(header)}",
        )
        return None
    cell = {col: (cells[i].strip() if i < len(cells) else "") for i, col in enumerate(header) if col}
    sku = cell.get("sku", "")
    if not sku:
        bad("sku", "商品编码为空", "the SKU is empty")
        return None
    raw_policy = cell.get("policy", "")
    policy = next((p for p in POLICIES if p.lower() == raw_policy.lower()), None)
    if policy is None:
        bad(
            "policy",
            f"未知策略 “{raw_policy}”，应为 eoq、newsvendor、sS 或 rop",
            f"unknown policy {raw_policy!r}, expected eoq, newsvendor, sS or rop",
        )
        return None
    before = len(errors)
    dist = ""
    needs = list(NEEDS[policy])
    if "demand_dist" in needs:
        raw_dist = cell.get("demand_dist", "")
        if raw_dist.lower() not in DISTRIBUTIONS:
            if "demand_dist" not in cell:
                bad("demand_dist", "文件没有这一列，该策略需要", "the file has no such column and this policy needs it")
            else:
                bad(
                    "demand_dist",
                    f"需求分布 “{raw_dist}” 应为 poisson 或 normal",
                    f"distribution {raw_dist!r}: expected poisson or normal",
                )
            return None
        dist = raw_dist.lower()
        if dist == "normal":
            needs.append("demand_std")
    values: dict[str, float] = {}
    for col in NUMERIC_COLUMNS:
        text = cell.get(col, "")
        if not text:
            values[col] = math.nan
            if col in needs:
                if col not in cell:
                    bad(col, "文件没有这一列，该策略需要", "the file has no such column and this policy needs it")
                else:
                    bad(col, f"{_COLUMN_ZH[col]}为空，{policy} 策略需要", f"empty, the {policy} policy needs it")
            continue
        try:
            number = float(text)
        except ValueError:
            bad(col, f"“{text}” 不是数字", f"{text!r} is not a number")
            continue
        if not math.isfinite(number):
            bad(col, f"“{text}” 不是有限的数", f"{text!r} is not a finite number")
        elif number < 0:
            bad(col, f"{_COLUMN_ZH[col]}不能为负数（{text}）", f"must not be negative ({text})")
        elif number > MAX_VALUE:
            bad(col, f"{_COLUMN_ZH[col]}过大（{text}，上限 1e12）", f"too large ({text}, at most 1e12)")
        else:
            values[col] = number
    if len(errors) > before:
        return None
    _check_policy(policy, dist, values, bad)
    if len(errors) > before:
        return None
    return PolicyRow(line, sku, policy, dist, values)


def _check_policy(policy: str, dist: str, v: dict[str, float], bad: Callable[[str, str, str], None]) -> None:
    """Rules between columns and per policy (each cell is already a finite number >= 0 or NaN)."""
    positive = {"eoq": ("holding_cost",), "newsvendor": ("holding_cost", "stockout_cost")}.get(policy, ())
    if policy == "sS":
        positive = ("holding_cost", "stockout_cost")
    for col in positive:
        if v[col] == 0:
            bad(col, f"{_COLUMN_ZH[col]}必须大于 0", "must be greater than 0")
    if policy == "rop":
        level = v["service_level"]
        if not 0 < level < 1:
            bad("service_level", "服务水平必须在 0 和 1 之间（如 0.95）", "must be between 0 and 1 (e.g. 0.95)")
        if dist == "poisson" and v["lead_time_std"] > 0:
            bad(
                "lead_time_std",
                "泊松需求的再订货点不支持提前期波动，请用 normal",
                "the Poisson reorder point does not take lead-time variance; use normal",
            )
        has_k, has_h = not math.isnan(v["order_cost"]), not math.isnan(v["holding_cost"])
        if has_k != has_h:
            col = "holding_cost" if has_k else "order_cost"
            bad(col, "订货批量需要订货成本和持有成本两者", "the order quantity needs both order_cost and holding_cost")
        elif has_h and v["holding_cost"] == 0:
            bad("holding_cost", "持有成本必须大于 0", "must be greater than 0")
    if policy == "sS":
        lead = v["lead_time"]
        if lead != math.floor(lead) or lead > MAX_SS_LEAD_TIME:
            bad(
                "lead_time",
                "(s,S) 的提前期须为 0 到 365 的整数期",
                "the (s,S) lead time must be a whole number of periods, 0 to 365",
            )
            return
        spread = v["demand_std"] if dist == "normal" else math.sqrt(v["demand_mean"])
        units = (lead + 1) * (v["demand_mean"] + 9 * spread)
        if units > MAX_SS_UNITS:
            bad(
                "demand_mean",
                f"需求太大，精确 (s,S) 计算按整数单位进行：(提前期+1)×(均值+9×标准差) 须 ≤ {MAX_SS_UNITS}，"
                "请改用更大的单位（如箱）",
                "demand too large for the exact (s,S) search over whole units: (lead time + 1) × (mean + 9 std)"
                f" must be at most {MAX_SS_UNITS}; use a larger unit (e.g. packs)",
            )
        elif (
            v["demand_mean"] > 0
            and math.sqrt(2 * v["order_cost"] * v["demand_mean"] / v["holding_cost"]) > MAX_SS_UNITS
        ):
            bad(
                "order_cost",
                f"订货成本相对持有成本过大，经济批量超过 {MAX_SS_UNITS} 单位",
                f"order cost too large against holding cost: the economic lot exceeds {MAX_SS_UNITS} units",
            )


# --------------------------------------------------------------------------------------------------------------
# Computing, by group over arrays


def compute_policies(rows: Sequence[PolicyRow]) -> list[PolicyResult]:
    """Results in the order of `rows`: rows are grouped by (policy, distribution) and each group is one call of
    the kernels over arrays."""
    results: list[PolicyResult | None] = [None] * len(rows)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault((row.policy, row.dist), []).append(i)
    for (policy, dist), idx in groups.items():
        group = [rows[i] for i in idx]

        def col(name: str, group: list[PolicyRow] = group) -> np.ndarray:
            return np.array([r.values[name] for r in group], dtype=np.float64)

        out = _COMPUTE[policy](dist, col)
        for j, i in enumerate(idx):
            row = rows[i]
            results[i] = PolicyResult(row.line, row.sku, row.policy, *(None if a is None else float(a[j]) for a in out))
    return [r for r in results if r is not None]


_Outputs = tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray | None]


def _eoq(dist: str, col: Callable[[str], np.ndarray]) -> _Outputs:
    q, cost = kernels.eoq(col("demand_mean"), col("order_cost"), col("holding_cost"))
    return q, None, None, None, cost


def _newsvendor(dist: str, col: Callable[[str], np.ndarray]) -> _Outputs:
    cu, co = col("stockout_cost"), col("holding_cost")
    if dist == "normal":
        q, cost = kernels.newsvendor_normal(col("demand_mean"), col("demand_std"), cu, co)
    else:
        qi, cost = kernels.newsvendor_poisson(col("demand_mean"), cu, co)
        q = qi.astype(np.float64)
    return q, None, None, None, cost


def _ss(dist: str, col: Callable[[str], np.ndarray]) -> _Outputs:
    args = (col("order_cost"), col("holding_cost"), col("stockout_cost"), col("lead_time"))
    if dist == "normal":
        s, big_s, cost = kernels.ss_normal(col("demand_mean"), col("demand_std"), *args)
    else:
        s, big_s, cost = kernels.ss_poisson(col("demand_mean"), *args)
    return None, None, s.astype(np.float64), big_s.astype(np.float64), cost


def _rop(dist: str, col: Callable[[str], np.ndarray]) -> _Outputs:
    mean, lead, level = col("demand_mean"), col("lead_time"), col("service_level")
    lt_std = np.nan_to_num(col("lead_time_std"))
    if dist == "normal":
        z = kernels.service_factor(level)
        rop = kernels.reorder_point(mean, col("demand_std"), lead, lt_std, np.zeros_like(mean), z)
    else:
        rop = kernels.poisson_ppf(level, mean * lead).astype(np.float64)
    safety = np.maximum(rop - mean * lead, 0.0)
    k, h = col("order_cost"), col("holding_cost")
    has = ~np.isnan(k)
    q = np.full(mean.shape[0], np.nan)
    cost = np.full(mean.shape[0], np.nan)
    if has.any():
        q_eoq, _ = kernels.eoq(mean[has], k[has], h[has])
        q[has] = q_eoq
        with np.errstate(divide="ignore", invalid="ignore"):
            ordering = np.where(q_eoq > 0, k[has] * mean[has] / q_eoq, 0.0)
        cost[has] = ordering + h[has] * (q_eoq / 2 + safety[has])
    return q, rop, None, None, cost


_COMPUTE: dict[str, Callable[[str, Callable[[str], np.ndarray]], _Outputs]] = {
    "eoq": _eoq,
    "newsvendor": _newsvendor,
    "sS": _ss,
    "rop": _rop,
}


# --------------------------------------------------------------------------------------------------------------
# Writing


def write_policy_results(path: Path, results: Sequence[PolicyResult]) -> None:
    """UTF-8 CSV with exactly OUTPUT_COLUMNS, written to a temporary file beside `path` and renamed over it, so a
    reader never sees half a file."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(OUTPUT_COLUMNS)
    for result in results:
        writer.writerow(result.cells())
    target = path.resolve()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
