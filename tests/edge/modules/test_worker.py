"""The worker process and its JSON-lines protocol: a module sees a read-only database and its params, what it prints
cannot corrupt the protocol, and every misbehaviour (a write, a wrong answer, a syntax error, a crash of the process)
comes back as a failed call of a known kind."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from edge.db import connect, migrate
from edge.modules.host import Limits, ModuleCallFailed, Worker, check_source
from edge.modules.worker import make_context
from tests.edge.modules.modkit import write_module

EVENT = {"kind": "ledger", "name": "sale", "key": "doc:1:1", "at": "2026-12-06T10:00:00+08:00", "facts": {}}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "storebox.db"
    conn = connect(path)
    migrate(conn)
    conn.close()
    return path


def _call(folder: Path, db: Path, *requests: dict[str, Any]) -> list[Any]:
    async def go() -> list[Any]:
        worker = Worker(folder, check_source(folder), db, "store-t", Limits(start_timeout_seconds=30))
        answers: list[Any] = []
        try:
            await worker.start(date(2026, 12, 6))
            for request in requests:
                try:
                    answers.append(await worker.call(request))
                except ModuleCallFailed as failed:
                    answers.append(failed)
        finally:
            await worker.stop()
        return answers

    return asyncio.run(go())


def test_handle_and_judge_see_the_params_the_day_and_a_read_only_database(tmp_path: Path, db: Path) -> None:
    code = """
    import sqlite3

    def handle(ctx, event):
        print("this goes to stderr, not into the protocol")
        import os
        os.write(1, b'{"ok": true, "proposals": [{"action": "notify"}]}\\n')  # fd 1 is not the protocol either
        ctx.log("seen " + event["key"])
        items = ctx.db.execute("SELECT COUNT(*) AS n FROM items").fetchone()["n"]
        return [{"decision": {"key": event["key"], "predicted": {"items": items, "limit": ctx.params["limit"]},
                              "check_on": str(ctx.today), "subject": ctx.store_id}}]

    def judge(ctx, decision):
        try:
            ctx.db.execute("DELETE FROM items")
        except sqlite3.OperationalError as exc:
            return "readonly" in str(exc)
        return False
    """
    folder = write_module(tmp_path, "probe", 1, code, params={"limit": 7})
    handled, judged = _call(
        folder,
        db,
        {"call": "handle", "event": EVENT, "today": "2026-12-07"},
        {"call": "judge", "decision": {"key": "doc:1:1"}, "today": "2026-12-08"},
    )
    assert handled["ok"] and handled["logs"] == ["seen doc:1:1"]
    decision = handled["proposals"][0]["decision"]
    assert decision == {
        "key": "doc:1:1",
        "predicted": {"items": 0, "limit": 7},
        "check_on": "2026-12-07",
        "subject": "store-t",
    }
    assert judged == {"ok": True, "outcome": True, "logs": []}


@pytest.mark.parametrize(
    ("body", "kind", "words"),
    [
        ("def handle(ctx, event):\n    return 42\n", "raised", "must return a list"),
        ("def handle(ctx, event):\n    return [1]\n", "raised", "must be a mapping"),
        ("def handle(ctx, event):\n    import os\n    os._exit(3)\n", "died", "exited (code 3)"),
        ("def handle(ctx, event):\n    return [{'x': object()}]\n", "ok", ""),
    ],
)
def test_a_wrong_answer_or_a_dead_process_is_a_failed_call_of_its_kind(
    tmp_path: Path, db: Path, body: str, kind: str, words: str
) -> None:
    folder = write_module(tmp_path, "wrong", 1, body + "\ndef judge(ctx, decision):\n    return 'maybe'\n")
    (answer,) = _call(folder, db, {"call": "handle", "event": EVENT, "today": "2026-12-06"})
    if kind == "ok":
        assert answer["ok"] and isinstance(answer["proposals"][0]["x"], str)  # sent as text, never a crash
        return
    assert isinstance(answer, ModuleCallFailed) and answer.kind == kind
    assert words in answer.message


def test_judge_must_answer_true_false_or_none(tmp_path: Path, db: Path) -> None:
    folder = write_module(
        tmp_path, "judgy", 1, "def handle(ctx, e):\n    return []\n\ndef judge(ctx, d):\n    return 'x'\n"
    )
    (answer,) = _call(folder, db, {"call": "judge", "decision": {}, "today": "2026-12-06"})
    assert isinstance(answer, ModuleCallFailed) and "True, False, None or 'void'" in answer.message


def test_a_module_that_does_not_load_fails_to_start_with_the_reason(tmp_path: Path, db: Path) -> None:
    folder = write_module(tmp_path, "broken", 1, "def handle(ctx, event:\n")
    with pytest.raises(ModuleCallFailed) as failed:
        _call(folder, db)
    assert failed.value.kind == "start" and "SyntaxError" in failed.value.message
    folder = write_module(tmp_path / "b", "nojudge", 1, "def handle(ctx, event):\n    return []\n")
    with pytest.raises(ModuleCallFailed, match="defines no judge"):
        _call(folder, db)


def test_the_worker_answers_garbage_lines_without_dying(tmp_path: Path, db: Path) -> None:
    folder = write_module(tmp_path, "echo", 1)
    lines = "\n".join(['{"call":"ping"}', "not json", "[1,2]", '{"call":"fly"}', '{"call":"ping"}']) + "\n"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.modules.worker",
            str(folder),
            "--db",
            str(db),
            "--store",
            "s",
            "--today",
            "2026-12-06",
        ],
        input=lines,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert answers[0] == {"ok": True, "ready": True, "name": "echo", "version": 1}
    assert [a["ok"] for a in answers[1:]] == [True, False, False, False, True]
    assert answers[2]["error"]["type"] == "BadCall" and answers[4]["error"]["type"] == "UnknownCall"


def test_make_context_is_what_modules_see(db: Path) -> None:
    ctx = make_context(db, {"a": 1}, "2026-12-06", "store-t")
    assert (ctx.today, ctx.store_id, dict(ctx.params)) == (date(2026, 12, 6), "store-t", {"a": 1})
    assert ctx.db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 0
    ctx.log("x" * 1000)
    assert ctx.logs == ["x" * 500]
    with pytest.raises(Exception, match=r"readonly|read-only|query_only"):
        ctx.db.execute("DELETE FROM items")


def test_a_module_with_dataclasses_and_postponed_annotations_loads(tmp_path: Path, db: Path) -> None:
    """dataclasses look the module up in sys.modules while it runs, as a normal import would allow."""
    code = (
        "from __future__ import annotations\nfrom dataclasses import dataclass\n\n"
        "@dataclass(frozen=True)\nclass Pick:\n    sku: str\n\n"
        "def handle(ctx, e):\n    return []\n\ndef judge(ctx, d):\n    return Pick('x').sku == 'x'\n"
    )
    folder = write_module(tmp_path, "typed", 1, code)
    (answer,) = _call(folder, db, {"call": "judge", "decision": {}, "today": "2026-12-06"})
    assert answer["ok"] and answer["outcome"] is True
