"""Rules and modules benchmark: what running rules and scenario modules costs the box.

Measures, in one run on one machine:
- the engine alone: ledger events evaluated per second against the shipped rules plus `--extra-rules` rules on
  sales (conditions over line, item and document facts), in-process, no I/O;
- ingest at saturation through the real broker of a real `storebox serve --demo`, twice in the same run: with
  rules and modules switched off (STOREBOX_RULES_ENABLED=false, STOREBOX_MODULES_ENABLED=false) and with the
  built-in rule packs, `--extra-rules` sale rules and the three shipped modules running. The ratio of the two
  is the figure to compare (the machines are shared and noisy);
- the sale rules' firings recorded after the run (every sale line must have been evaluated, none lost).

Run: `python -m tools.bench.rules` (or `make bench`). Prints a Markdown block for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from tools.bench.ingest import BenchDevice, _add_devices, _restock, _run, _tree_rss
from tools.box_process import BoxProcess

SALE_RULE_WHEN = (
    "line.qty >= params.min_qty and item.price_fen < params.max_price_fen and document.total_fen > 0"
    " and item.category != 'never'"
)


def sale_rule(n: int) -> dict[str, Any]:
    """A rule on every sale line whose condition holds for the benchmark's sales (qty 1 <= 1): it fires and acts."""
    return {
        "id": f"bench.sale-{n:02d}",
        "name": {"zh": f"压测规则 {n}", "en": f"bench rule {n}"},
        "trigger": {"kind": "ledger", "doc_type": "sale"},
        "when": SALE_RULE_WHEN if n else "line.qty >= params.min_qty and line.qty > 999999",
        "params": {"min_qty": 1, "max_price_fen": 10**9},
        "then": [
            {
                "action": "notify",
                "role": "manager",
                "message": {"zh": "售出 {item.name} x{line.qty}", "en": "sold {line.sku} x{line.qty}"},
            }
        ],
        "owner": "bench",
    }


def _engine(extra_rules: int, events: int) -> dict[str, Any]:
    """Events per second through `evaluate`, over ledger events built from a real demo database."""
    from edge.rules.engine import Event, evaluate, load_document

    rules = [load_document(d["id"], 1, d) for d in (sale_rule(n) for n in range(extra_rules))]
    facts: dict[str, dict[str, Any]] = {
        "document": {"id": 1, "no": "S-1", "type": "sale", "total_fen": 350, "line_count": 1},
        "line": {"line_no": 1, "sku": "DR0001", "qty": 1, "price_fen": 350, "amount_fen": 350},
        "item": {"sku": "DR0001", "name": "可乐", "category": "drinks", "price_fen": 350},
        "supplier": {"id": "sup-bev", "name": "饮料"},
        "return": {},
    }
    now = datetime.now(UTC)
    batch = [Event("ledger", "sale", f"doc:{n}:1", now, facts, f"S-{n}") for n in range(events)]
    began = time.perf_counter()
    fired = sum(len(evaluate(rules, event, "bench")) for event in batch)
    seconds = time.perf_counter() - began
    return {"rules": len(rules), "events": events, "firings": fired, "per_second": round(events / seconds, 1)}


def _install_rules(box: BoxProcess, extra_rules: int) -> None:
    """Put the sale rules in force the way HQ's rule packs arrive: one pack, installed in one transaction."""
    from edge.db import connect
    from edge.rules.packs import install_pack, parse_pack

    content = parse_pack({"rules": [sale_rule(n) for n in range(extra_rules)]})
    conn = connect(box.data_dir / "storebox.db")
    try:
        conn.execute("BEGIN IMMEDIATE")
        install_pack(
            conn, name="bench", version=1, source="builtin", content=content, actor="bench", now=datetime.now(UTC)
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def _ingest(
    label: str, data_dir: Path, passwords: dict[str, str], env: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    box = BoxProcess(data_dir, extra_env=env)
    box.start(timeout=180)
    try:
        assert box.proc is not None
        if env.get("STOREBOX_RULES_ENABLED") != "false":
            assert box.terminate() == 0
            _install_rules(box, args.extra_rules)
            box.start(timeout=120)
            assert box.proc is not None
        codes = [item["barcode"] for item in box.demo_json()["items"][:20]]
        _restock(box, codes, args.events + 1000)
        devices = [BenchDevice(box.store_id, box.mqtt_port, d, p) for d, p in passwords.items()]
        for d in devices:
            d.connected.wait(10)
            d.codes = codes
            d.subscribe("ack")
        time.sleep(0.5)
        run = _run(label, devices, per_device=max(1, args.events // len(devices)), window=args.window, rate=None)
        rss = _tree_rss(box.proc.pid)
        for d in devices:
            d.close()
        # the firings of the sale rules the runtime recorded once the queue drained
        deadline = time.monotonic() + 120
        firings = 0
        if env.get("STOREBOX_RULES_ENABLED") != "false":
            from edge.db import connect

            while time.monotonic() < deadline:
                conn = connect(box.data_dir / "storebox.db", readonly=True)
                try:
                    firings = int(
                        conn.execute("SELECT COUNT(*) FROM rule_firings WHERE rule_id = 'bench.sale-01'").fetchone()[0]
                    )
                finally:
                    conn.close()
                if firings >= run.messages:
                    break
                time.sleep(0.5)
        assert box.terminate() == 0
    finally:
        box.stop()
    return {"run": run, "rss_mb": round(rss / 2**20, 1), "firings": firings}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--events", type=int, default=10000, help="events in each saturation run")
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--extra-rules", type=int, default=10, help="sale rules besides the built-in packs")
    parser.add_argument("--engine-events", type=int, default=20000)
    args = parser.parse_args(argv)

    engine = _engine(args.extra_rules, args.engine_events)
    root = Path(tempfile.mkdtemp(prefix="storebox-bench-rules-"))
    off_dir, on_dir = root / "off", root / "on"
    passwords_off = _add_devices(off_dir, args.devices)
    passwords_on = _add_devices(on_dir, args.devices)
    off = _ingest(
        "ingest, rules and modules off",
        off_dir,
        passwords_off,
        {"STOREBOX_RULES_ENABLED": "false", "STOREBOX_MODULES_ENABLED": "false"},
        args,
    )
    on = _ingest("ingest, rules and modules on", on_dir, passwords_on, {}, args)
    results = {
        "machine": {
            "cpus": psutil.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "command": "python -m tools.bench.rules " + " ".join(argv or []),
        "engine": engine,
        "off": {**off, "run": off["run"].__dict__},
        "on": {**on, "run": on["run"].__dict__},
        "ratio": round(on["run"].rate / off["run"].rate, 3),
    }
    (root / "bench-rules.json").write_text(json.dumps(results, indent=2))
    print(_markdown(results, args))
    return results


def _markdown(r: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"Machine: {r['machine']['cpus']} CPUs ({r['machine']['cpu']}), Python {r['machine']['python']}, "
        f"{r['machine']['platform']}",
        f"Command: `{r['command'].strip()}`",
        "",
        f"- engine alone: {r['engine']['events']} sale-line events against {r['engine']['rules']} sale rules: "
        f"**{r['engine']['per_second']} events/s** ({r['engine']['firings']} firings)",
        "",
        "| run | messages | seconds | per second | p50 ms | p99 ms | failed | RSS MB | firings of one sale rule |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key in ("off", "on"):
        run = r[key]["run"]
        lines.append(
            f"| {run['name']} | {run['messages']} | {run['seconds']} | {run['rate']} | {run['p50_ms']} "
            f"| {run['p99_ms']} | {run['failed']} | {r[key]['rss_mb']} | {r[key]['firings'] or '—'} |"
        )
    lines += ["", f"- ingest with rules and modules / without: **{r['ratio']}**"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
