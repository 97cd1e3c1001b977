"""The child process that runs one scenario module (场景模块), isolated from the box.

`python -m edge.modules.worker <module dir> --db PATH --store ID [--memory-mb N] [--cpu-seconds N]` loads
`<dir>/manifest.yaml` and its entry file, sets its own resource limits (RLIMIT_AS = memory budget, RLIMIT_CPU =
CPU budget per call), and answers JSON lines on stdin with JSON lines on the stdout it was started with:

    {"call": "ping"}                                        -> {"ok": true, "name": ..., "version": ...}
    {"call": "handle", "event": {...}, "today": "YYYY-MM-DD"} -> {"ok": true, "proposals": [...], "logs": [...]}
    {"call": "judge", "decision": {...}, "today": "..."}      -> {"ok": true, "outcome": true|false|null|"void", ...}

A judge answers true (the decision was right), false (wrong), null (not known yet: ask again later) or "void" (it
can never be judged, e.g. the store acted on the proposal: stop asking, and leave it out of the KPIs).

A call that raises answers `{"ok": false, "error": {"type", "message", "traceback"}}`; the host then stops the
worker. What the module prints goes to stderr, so it cannot corrupt the protocol.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sqlite3
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import IO, Any

MAX_LOG_LINES = 50
VOID = "void"  # a judge's answer for a decision that can never be judged
MAX_LOG_CHARS = 500


@dataclass(slots=True)
class ModuleContext:
    """What a module's `handle(ctx, event)` and `judge(ctx, decision)` see: a read-only box database, the
    store's business day, the store id, the module's params and a log."""

    db: sqlite3.Connection
    today: date
    store_id: str
    params: Mapping[str, Any]
    logs: list[str] = field(default_factory=list)

    def log(self, msg: object) -> None:
        """Keep a line for the host's log (the last 50 lines of a call, 500 characters each)."""
        if len(self.logs) < MAX_LOG_LINES:
            self.logs.append(str(msg)[:MAX_LOG_CHARS])


def open_readonly(db_path: Path | str) -> sqlite3.Connection:
    """A read-only connection to the box database (rows as sqlite3.Row); writes raise sqlite3 errors."""
    conn = sqlite3.connect(f"file:{Path(db_path).resolve()}?mode=ro", uri=True, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA query_only=ON")
    return conn


def make_context(db_path: Path | str, params: Mapping[str, Any], today: date | str, store_id: str) -> ModuleContext:
    """The context the worker gives a module: the same for tests that call handle/judge directly."""
    day = date.fromisoformat(today) if isinstance(today, str) else today
    return ModuleContext(db=open_readonly(db_path), today=day, store_id=store_id, params=dict(params))


def load_entry(module_dir: Path, entry: str, name: str) -> ModuleType:
    """Import the module's entry file under a private name; it must define handle() and judge()."""
    path = (module_dir / entry).resolve()
    if not path.is_relative_to(module_dir.resolve()) or not path.is_file():
        raise FileNotFoundError(f"entry {entry} is not a file in {module_dir}")
    # The module's own directory first, so it can import its helper files and read its data files.
    sys.path.insert(0, str(module_dir.resolve()))
    spec = importlib.util.spec_from_file_location(f"storebox_module_{name.replace('-', '_')}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as `import` does: dataclasses and `from __future__ import annotations` look the
    # module up in sys.modules while the file executes.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    for function in ("handle", "judge"):
        if not callable(getattr(module, function, None)):
            raise AttributeError(f"{entry} defines no {function}(ctx, ...)")
    return module


def set_limits(memory_mb: int | None, cpu_seconds: int | None) -> None:
    """The memory budget for the whole process (address space); the CPU budget is set per call."""
    import resource

    if memory_mb:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if cpu_seconds:
        _cpu_budget(cpu_seconds)


def _cpu_budget(cpu_seconds: int) -> None:
    """Allow `cpu_seconds` more CPU from now: past it the kernel sends SIGXCPU, which ends the process."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = int(usage.ru_utime + usage.ru_stime) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (used + cpu_seconds, resource.RLIM_INFINITY))


def _json_default(value: object) -> object:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, sqlite3.Row):
        return dict(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _proposals(result: object) -> list[dict[str, Any]]:
    if result is None:
        return []
    if isinstance(result, Mapping):
        result = [result]
    if not isinstance(result, list | tuple):
        raise TypeError(f"handle() must return a list of proposals, not {type(result).__name__}")
    out: list[dict[str, Any]] = []
    for item in result:
        if not isinstance(item, Mapping):
            raise TypeError(f"each proposal must be a mapping, not {type(item).__name__}")
        out.append(dict(item))
    return out


def answer(
    module: ModuleType, ctx: ModuleContext, request: Mapping[str, Any], cpu_seconds: int | None
) -> dict[str, Any]:
    """One call: run handle or judge and shape the answer (errors become `ok: false`)."""
    call = request.get("call")
    ctx.logs = []
    try:
        if "today" in request:
            ctx.today = date.fromisoformat(str(request["today"]))
        if cpu_seconds:
            _cpu_budget(cpu_seconds)
        if call == "ping":
            return {"ok": True}
        if call == "handle":
            handle: Callable[..., object] = module.handle
            proposals = _proposals(handle(ctx, request.get("event") or {}))
            return {"ok": True, "proposals": proposals, "logs": ctx.logs}
        if call == "judge":
            judge: Callable[..., object] = module.judge
            outcome = judge(ctx, request.get("decision") or {})
            if outcome is not None and not isinstance(outcome, bool) and outcome != VOID:
                raise TypeError(f"judge() must return True, False, None or 'void', not {outcome!r:.40}")
            return {"ok": True, "outcome": outcome, "logs": ctx.logs}
        return {"ok": False, "error": {"type": "UnknownCall", "message": f"unknown call {call!r}"}}
    except MemoryError:
        return {"ok": False, "error": {"type": "MemoryError", "message": "memory budget exceeded"}, "logs": ctx.logs}
    except Exception as exc:  # the module's own bug: reported to the host, which stops this worker
        return {
            "ok": False,
            "error": {
                "type": type(exc).__name__,
                "message": str(exc)[:2000],
                "traceback": traceback.format_exc(limit=8)[-4000:],
            },
            "logs": ctx.logs,
        }


def serve(module: ModuleType, ctx: ModuleContext, reader: IO[str], writer: IO[str], cpu_seconds: int | None) -> None:
    """Answer calls until stdin closes."""
    for line in reader:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("a call is a JSON object")
        except ValueError as exc:
            reply: dict[str, Any] = {"ok": False, "error": {"type": "BadCall", "message": str(exc)}}
        else:
            reply = answer(module, ctx, request, cpu_seconds)
        try:
            text = json.dumps(reply, ensure_ascii=False, default=_json_default)
        except (TypeError, ValueError) as exc:
            text = json.dumps({"ok": False, "error": {"type": "BadAnswer", "message": str(exc)}})
        writer.write(text + "\n")
        writer.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.modules.worker")
    parser.add_argument("module_dir", type=Path)
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--store", required=True)
    parser.add_argument("--today", default=None)
    parser.add_argument("--memory-mb", type=int, default=None)
    parser.add_argument("--cpu-seconds", type=int, default=None)
    args = parser.parse_args(argv)
    # The protocol owns the original stdout; anything the module prints goes to stderr.
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout = sys.stderr
    # ...and file descriptor 1 itself points at stderr from here on, so that a module (or a C library it calls)
    # writing to fd 1 directly cannot put a line into the protocol either.
    os.dup2(sys.stderr.fileno(), 1)
    from edge.modules.manifest import load_manifest_file

    manifest = load_manifest_file(args.module_dir / "manifest.yaml")
    set_limits(args.memory_mb, None)
    try:
        module = load_entry(args.module_dir, manifest.entry, manifest.name)
    except Exception as exc:
        protocol_out.write(
            json.dumps({"ok": False, "error": {"type": type(exc).__name__, "message": str(exc)[:2000]}}) + "\n"
        )
        protocol_out.flush()
        return 3
    ctx = make_context(args.db, manifest.params, args.today or date.today().isoformat(), args.store)
    protocol_out.write(
        json.dumps({"ok": True, "ready": True, "name": manifest.name, "version": manifest.version}) + "\n"
    )
    protocol_out.flush()
    serve(module, ctx, sys.stdin, protocol_out, args.cpu_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
