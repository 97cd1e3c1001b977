"""Install, upgrade, disable, enable, roll back and remove a module while the box runs (no restart): each step
changes what the running box does, and a rollback brings back the previous version's behaviour exactly (its files,
its params, its state). Broken KPIs roll a version back automatically, with an alert."""

from __future__ import annotations

import pytest

from edge.modules.errors import ModuleNoPreviousVersion, ModuleVersionExists, ModuleVersionRolledBack
from tests.edge.bus.conftest import STORE
from tests.edge.modules.modkit import BREAD, MILK, HostBox, alerts_of, hostbox, wait_for, write_module

__all__ = ["hostbox"]


def _sell_and_notice(hb: HostBox, pos: object, code: str, count_before: int) -> str:
    hb.sell(pos, code)  # type: ignore[arg-type]
    notices = wait_for(lambda: len(hb.notices("echo")) > count_before and hb.notices("echo"), "a notice")
    return str(notices[-1])


def test_upgrade_disable_enable_rollback_remove_at_run_time(hostbox: HostBox) -> None:
    hb = hostbox
    pos = hb.device()
    box_pid_writer = hb.box.writer
    hb.install(write_module(hb.root, "echo", 1, params={"tag": "first"}))
    wait_for(lambda: "echo" in hb.host.runners, "v1 to start")
    assert _sell_and_notice(hb, pos, MILK, 0) == "first: MILK-1L"
    v1_pid = hb.host.runners["echo"].worker.process.pid

    # Upgrade: the new version's files and params take over; v1's worker is replaced.
    assert hb.install(write_module(hb.root, "echo", 2, params={"tag": "second"}))["previous"] == 1
    runner = wait_for(lambda: hb.host.runners.get("echo"), "v2 to start")
    assert runner.version == 2 and runner.worker.process.pid != v1_pid
    assert _sell_and_notice(hb, pos, MILK, 1) == "second: MILK-1L"

    # Disable: no worker, no notices; sales go on.
    hb.run(hb.host.set_enabled("echo", False, actor="test"))
    assert "echo" not in hb.host.runners and hb.state("echo") == "disabled"
    hb.sell(pos, BREAD)
    assert len(hb.notices("echo")) == 2
    hb.run(hb.host.set_enabled("echo", True, actor="test"))
    assert _sell_and_notice(hb, pos, BREAD, 2) == "second: BREAD"

    # Rollback: v1 again, exactly (its files, its params), enabled as it was.
    result = hb.run(hb.host.rollback("echo", actor="test"))
    assert result == {"name": "echo", "from_version": 2, "to_version": 1, "state": "enabled"}
    assert hb.host.runners["echo"].version == 1
    assert hb.host.runners["echo"].manifest.params == {"tag": "first"}
    assert _sell_and_notice(hb, pos, MILK, 3) == "first: MILK-1L"
    with pytest.raises(ModuleNoPreviousVersion):
        hb.run(hb.host.rollback("echo", actor="test"))

    # The same version again with other files is refused; the same files are a no-op.
    with pytest.raises(ModuleVersionExists):
        hb.install(write_module(hb.root / "changed", "echo", 2, params={"tag": "changed"}))
    # the very files of the version rolled back are refused too, and the message says why
    with pytest.raises(ModuleVersionRolledBack) as again:
        hb.install(write_module(hb.root, "echo", 2, params={"tag": "second"}))
    assert "rolled back" in again.value.message_en and again.value.detail["in_force"] == 1
    # Remove: the worker stops, the record stays.
    hb.run(hb.host.remove("echo", actor="test"))
    assert "echo" not in hb.host.runners and hb.state("echo") == "removed"
    hb.sell(pos, MILK)
    assert len(hb.notices("echo")) == 4
    assert hb.box.writer is box_pid_writer and hb.box.writer.running  # never restarted
    history = [r[0] for r in hb.sql("SELECT action FROM module_history WHERE name = 'echo' ORDER BY id")]
    assert history == ["installed", "installed", "disabled", "enabled", "rolled_back", "removed"]
    audit = [r[0] for r in hb.sql("SELECT action FROM audit WHERE object = 'module:echo' ORDER BY seq")]
    for action in ("module.install", "module.disable", "module.enable", "module.rollback", "module.remove"):
        assert action in audit


def test_a_rollback_restores_the_state_the_previous_version_had(hostbox: HostBox) -> None:
    hb = hostbox
    hb.install(write_module(hb.root, "echo", 1))
    hb.run(hb.host.set_enabled("echo", False, actor="test"))
    hb.install(write_module(hb.root, "echo", 2))  # an upgrade puts the new version in force, enabled
    assert hb.state("echo") == "enabled"
    assert hb.run(hb.host.rollback("echo", actor="test"))["state"] == "disabled"
    assert "echo" not in hb.host.runners


def test_broken_kpis_roll_the_module_back_automatically_with_an_alert(hostbox: HostBox) -> None:
    hb = hostbox
    listener = hb.device("pos-2")
    assert listener.subscribe(f"storebox/{STORE}/alert/module") == [1]
    pos = hb.device()
    hb.install(write_module(hb.root, "echo", 1, params={"tag": "good", "outcome": True}))
    hb.install(write_module(hb.root, "echo", 2, params={"tag": "bad", "outcome": False}))
    wait_for(lambda: getattr(hb.host.runners.get("echo"), "version", 0) == 2, "v2 to run")
    for n in range(3):
        _sell_and_notice(hb, pos, MILK, n)
    wait_for(lambda: len(hb.sql("SELECT id FROM module_decisions WHERE version = 2")) == 3, "3 decisions")
    done = hb.run(hb.host.judge_all())
    assert done["echo"]["judged"] == 3
    assert done["echo"]["kpis"]["precision"] == 0.0 and done["echo"]["kpis"]["false_positive_rate"] == 1.0
    alert = alerts_of(listener)
    assert alert["data"]["kind"] == "kpi" and "rolled back to v1" in alert["data"]["message_en"]
    assert hb.host.runners["echo"].version == 1
    assert _sell_and_notice(hb, pos, BREAD, 3) == "good: BREAD"
    report = hb.sql("SELECT version, judged, right, wrong, precision FROM module_kpi_reports")
    assert [tuple(r) for r in report] == [(2, 3, 0, 3, 0.0)]


def test_kpis_below_min_decisions_do_not_act(hostbox: HostBox) -> None:
    hb = hostbox
    pos = hb.device()
    hb.install(write_module(hb.root, "echo", 1, params={"tag": "x", "outcome": False}))
    wait_for(lambda: "echo" in hb.host.runners, "the worker")
    for n in range(2):
        _sell_and_notice(hb, pos, MILK, n)
    wait_for(lambda: len(hb.sql("SELECT id FROM module_decisions")) == 2, "2 decisions")
    done = hb.run(hb.host.judge_all())
    assert done["echo"]["judged"] == 2 and done["echo"]["breach"] is None
    assert hb.state("echo") == "enabled"


def test_a_void_decision_is_closed_and_never_counted(hostbox: HostBox) -> None:
    hb = hostbox
    pos = hb.device()
    hb.install(write_module(hb.root, "echo", 1, params={"tag": "x", "outcome": "void"}))
    wait_for(lambda: "echo" in hb.host.runners, "the worker")
    for n in range(2):
        _sell_and_notice(hb, pos, MILK, n)
    wait_for(lambda: len(hb.sql("SELECT id FROM module_decisions")) == 2, "2 decisions")
    done = hb.run(hb.host.judge_all())
    assert done["echo"]["judged"] == 2 and done["echo"]["kpis"]["judged"] == 0
    rows = hb.sql("SELECT outcome, judged_at FROM module_decisions")
    assert all(r["outcome"] is None and r["judged_at"] for r in rows)  # closed: never asked again
    assert hb.run(hb.host.judge_all())["echo"]["judged"] == 0


def test_a_full_queue_drops_events_for_that_module_and_counts_them(tmp_path: object) -> None:
    from pathlib import Path

    from tests.edge.modules.modkit import close_box, open_box

    hb = open_box(Path(str(tmp_path)), modules_queue_size=1)
    try:
        code = """
        import time

        def handle(ctx, event):
            time.sleep(0.5)
            return []

        def judge(ctx, decision):
            return None
        """
        hb.install(write_module(hb.root, "slow", 1, code))
        wait_for(lambda: "slow" in hb.host.runners, "the worker")
        pos = hb.device()
        for _ in range(6):
            hb.sell(pos, MILK)  # acked at once: the module's queue never holds ingest up
        wait_for(lambda: hb.host.dropped.get("slow", 0) >= 1, "a dropped event")
        assert hb.host.runtime_of("slow")["dropped"] >= 1
        assert hb.state("slow") == "enabled"
    finally:
        close_box(hb)
