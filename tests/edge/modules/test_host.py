"""The module host inside a real box (writer, embedded broker, ingest, rules runtime): a module's proposals become
actions attributed to it, its decisions are judged into KPIs, and a module that raises, hangs or runs out of memory
is killed and disabled with an alert on alert/module while sales keep posting."""

from __future__ import annotations

from pathlib import Path

from tests.edge.bus.conftest import STORE
from tests.edge.modules.modkit import BREAD, MILK, HostBox, alerts_of, hostbox, wait_for, write_module

__all__ = ["hostbox"]


def test_a_sale_reaches_the_module_and_its_proposal_is_acted_on_and_audited(hostbox: HostBox) -> None:
    hb = hostbox
    result = hb.install(write_module(hb.root, "echo", 1))
    assert result == {"name": "echo", "version": 1, "previous": 0, "changed": True}
    wait_for(lambda: "echo" in hb.host.runners, "the worker to start")
    pos = hb.device()
    hb.sell(pos, MILK)
    notices = wait_for(lambda: hb.notices("echo"), "the module's notice")
    assert notices == ["v1: MILK-1L"]
    firing = hb.sql("SELECT rule_id, version, trigger_kind, state FROM rule_firings WHERE rule_id = 'module:echo'")
    assert [tuple(r) for r in firing] == [("module:echo", 1, "ledger", "done")]
    decisions = hb.sql("SELECT module, version, subject, predicted, outcome FROM module_decisions")
    assert [tuple(r) for r in decisions] == [("echo", 1, "MILK-1L", '"sold"', None)]
    actors = {r[0] for r in hb.sql("SELECT actor FROM audit WHERE action IN ('module.propose', 'rule.notify')")}
    assert "module:echo@1" in actors


def test_a_module_that_raises_is_disabled_with_an_alert_and_sales_keep_posting(hostbox: HostBox) -> None:
    hb = hostbox
    listener = hb.device("pos-2")
    assert listener.subscribe(f"storebox/{STORE}/alert/module") == [1]
    code = """
    def handle(ctx, event):
        raise RuntimeError("boom in the module")

    def judge(ctx, decision):
        return None
    """
    hb.install(write_module(hb.root, "crashy", 1, code))
    wait_for(lambda: "crashy" in hb.host.runners, "the worker to start")
    pos = hb.device()
    hb.sell(pos, MILK)
    alert = alerts_of(listener)
    assert alert["data"]["module"] == "crashy" and alert["data"]["state"] == "failed"
    assert alert["data"]["kind"] == "raised" and "boom in the module" in alert["data"]["message_en"]
    assert "出错已停用" in alert["data"]["message"]
    assert hb.state("crashy") == "failed"
    assert "crashy" not in hb.host.runners
    failure = hb.sql("SELECT kind, message FROM module_failures WHERE module = 'crashy'")
    assert failure[0][0] == "raised" and "boom" in failure[0][1]
    for _ in range(5):
        hb.sell(pos, BREAD)
    assert hb.sql("SELECT COUNT(*) FROM documents WHERE type = 'sale'")[0][0] == 6


def test_a_module_in_an_endless_loop_is_killed_at_its_timeout_and_ingest_goes_on(hostbox: HostBox) -> None:
    hb = hostbox
    listener = hb.device("pos-2")
    assert listener.subscribe(f"storebox/{STORE}/alert/module") == [1]
    code = """
    def handle(ctx, event):
        while True:
            pass

    def judge(ctx, decision):
        return None
    """
    hb.install(
        write_module(hb.root, "spin", 1, code, budget={"timeout_seconds": 1, "memory_mb": 256, "cpu_seconds": 30})
    )
    runner = wait_for(lambda: hb.host.runners.get("spin"), "the worker to start")
    pid = runner.worker.process.pid
    pos = hb.device()
    hb.sell(pos, MILK)
    # While the module spins, the box keeps posting and acking.
    for _ in range(5):
        hb.sell(pos, BREAD)
    alert = alerts_of(listener)
    assert alert["data"]["module"] == "spin" and alert["data"]["kind"] == "timeout"
    assert hb.state("spin") == "failed"
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or "zombie" in _status(pid), "the worker to be gone")
    hb.sell(pos, MILK)
    assert hb.sql("SELECT COUNT(*) FROM documents WHERE type = 'sale'")[0][0] == 7


def test_a_module_past_its_memory_budget_is_disabled(hostbox: HostBox) -> None:
    hb = hostbox
    listener = hb.device("pos-2")
    assert listener.subscribe(f"storebox/{STORE}/alert/module") == [1]
    code = """
    HOARD = []

    def handle(ctx, event):
        while True:
            HOARD.append(bytearray(16 * 1024 * 1024))

    def judge(ctx, decision):
        return None
    """
    budget = {"timeout_seconds": 20, "memory_mb": 128, "cpu_seconds": 30}
    hb.install(write_module(hb.root, "hog", 1, code, budget=budget))
    wait_for(lambda: "hog" in hb.host.runners, "the worker to start")
    pos = hb.device()
    hb.sell(pos, MILK)
    alert = alerts_of(listener)
    assert alert["data"]["module"] == "hog" and alert["data"]["kind"] == "memory"
    assert hb.state("hog") == "failed"
    hb.sell(pos, BREAD)


def test_a_proposal_outside_may_is_refused_and_recorded_while_the_module_keeps_running(hostbox: HostBox) -> None:
    hb = hostbox
    code = """
    def handle(ctx, event):
        return [
            {"action": "send_email", "to": ["a@b.cn"], "subject": {"zh": "x", "en": "x"},
             "body": {"zh": "x", "en": "x"}},
            {"action": "notify", "role": "nobody-knows", "message": {"zh": "x", "en": "x"}},
            {"action": "notify", "role": "category_manager", "message": {"zh": "ok", "en": "ok"}},
        ]

    def judge(ctx, decision):
        return None
    """
    hb.install(write_module(hb.root, "greedy", 1, code, may=["notify"]))
    wait_for(lambda: "greedy" in hb.host.runners, "the worker to start")
    hb.sell(hb.device(), MILK)
    assert wait_for(lambda: hb.notices("greedy"), "the allowed notice") == ["ok"]
    failures = wait_for(lambda: hb.sql("SELECT kind, detail FROM module_failures WHERE module = 'greedy'"), "refusal")
    assert failures[0][0] == "proposal"
    assert "send_email" in failures[0][1] and "not in the manifest" in failures[0][1]
    assert hb.state("greedy") == "enabled" and "greedy" in hb.host.runners


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "zombie"


def test_a_module_that_does_not_load_or_dies_is_failed_with_the_reason(hostbox: HostBox) -> None:
    hb = hostbox
    listener = hb.device("pos-2")
    assert listener.subscribe(f"storebox/{STORE}/alert/module") == [1]
    hb.install(write_module(hb.root, "broken", 1, "import not_a_module_anywhere\n"))
    alert = alerts_of(listener)
    assert (alert["data"]["module"], alert["data"]["kind"]) == ("broken", "start")
    assert "ModuleNotFoundError" in alert["data"]["message_en"] and hb.state("broken") == "failed"
    dying = """
    import os

    def handle(ctx, event):
        os._exit(9)

    def judge(ctx, decision):
        return None
    """
    hb.install(write_module(hb.root, "dying", 1, dying))
    hb.sell(hb.device(), MILK)
    alert = alerts_of(listener)
    assert (alert["data"]["module"], alert["data"]["kind"]) == ("dying", "died")
    assert "exited (code 9)" in alert["data"]["message_en"]
    reason = hb.sql("SELECT reason FROM modules WHERE name = 'dying'")[0][0]
    assert reason.startswith("died:")
    # Enabling it again starts a new worker (the failure is on record).
    hb.run(hb.host.set_enabled("dying", True, actor="test"))
    assert "dying" in hb.host.runners and hb.state("dying") == "enabled"


def test_a_module_that_answers_its_own_signal_is_cut_at_the_signal_depth_like_a_rule(hostbox: HostBox) -> None:
    hb = hostbox
    code = """
    def handle(ctx, event):
        return [{"action": "emit_signal", "name": "rule.ping", "subject": event["key"][:40]}]

    def judge(ctx, decision):
        return None
    """
    subscribes = [{"kind": "ledger", "doc_type": "sale"}, {"kind": "signal", "name": "rule.ping"}]
    hb.install(write_module(hb.root, "pinger", 1, code, subscribes=subscribes, may=["emit_signal"]))
    wait_for(lambda: "pinger" in hb.host.runners, "the worker")
    pos = hb.device()
    hb.sell(pos, MILK)
    limit = hb.settings.rules_signal_depth_max
    skipped = "SELECT a.state FROM rule_actions a JOIN rule_firings f ON f.id = a.firing_id WHERE f.depth = ?"
    wait_for(lambda: hb.sql(skipped, (limit,)), "the chain to reach its limit")
    hb.sell(pos, BREAD)  # the box goes on; the first chain stays cut
    wait_for(lambda: len(hb.sql("SELECT 1 FROM rule_firings WHERE depth = 0")) == 2, "the second sale")
    wait_for(lambda: len(hb.sql(skipped, (limit,))) == 2, "the second chain to reach its limit")
    depths = [r[0] for r in hb.sql("SELECT depth FROM rule_firings WHERE rule_id = 'module:pinger' ORDER BY id")]
    assert max(depths) == limit and len(depths) == 2 * (limit + 1)  # two sales, each a chain cut at the limit
    states = [r[0] for r in hb.sql(skipped, (limit,))]
    assert set(states) == {"skipped"}
