"""Conditions: safe, typed, refused at save with the position and a suggestion."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.rules.errors import RuleError, RuleFactUnknown, RuleSyntaxInvalid, RuleTypeInvalid
from edge.rules.expressions import MAX_LENGTH, compile_condition
from edge.rules.facts import catalogue, namespaces_for

LEAD_TIME = namespaces_for("signal", "supplier.lead_time_changed")
LEDGER = namespaces_for("ledger")


def test_the_lead_time_condition_reads_facts_and_params() -> None:
    condition = compile_condition("lead_time.change_days > params.threshold_days", LEAD_TIME, {"threshold_days": 15})
    assert condition.facts_used == ("lead_time.change_days", "params.threshold_days")
    assert condition.matches({"lead_time": {"change_days": 16.5}})
    assert not condition.matches({"lead_time": {"change_days": 15}})


def test_missing_facts_take_their_documented_defaults() -> None:
    condition = compile_condition("return.reason == '' and line.qty == 0 and not supplier.frozen", LEDGER)
    assert condition.matches({})


def test_chinese_text_and_membership_work() -> None:
    condition = compile_condition("return.reason in ['包装破损', '口味不符'] or '超时' in return.reason", LEDGER)
    assert condition.matches({"return": {"reason": "口味不符"}})
    assert condition.matches({"return": {"reason": "物流超时"}})
    assert not condition.matches({"return": {"reason": "其他"}})


def test_dates_compare_with_date_literals() -> None:
    condition = compile_condition("paper.valid_to < d'2027-01-01'", namespaces_for("signal", "paper.expiring"))
    assert condition.matches({"paper": {"valid_to": "2026-12-31"}})
    assert not condition.matches({"paper": {"valid_to": "2027-01-02"}})


def test_a_syntax_error_is_refused_with_its_position() -> None:
    with pytest.raises(RuleSyntaxInvalid) as refused:
        compile_condition("lead_time.days > > 3", LEAD_TIME)
    assert refused.value.detail["field"] == "when"
    assert refused.value.detail["position"] == 17
    assert "字符" in refused.value.message and "character 18" in refused.value.message_en


def test_an_unknown_fact_is_refused_with_close_names() -> None:
    with pytest.raises(RuleFactUnknown) as refused:
        compile_condition("lead_time.change > 15", LEAD_TIME)
    assert refused.value.detail["fact"] == "lead_time.change"
    assert "lead_time.change_days" in refused.value.detail["suggestions"]
    assert "did you mean" in refused.value.message_en


def test_a_fact_the_trigger_does_not_provide_is_refused() -> None:
    with pytest.raises(RuleFactUnknown) as refused:
        compile_condition("paper.days_left < 7", LEDGER)
    assert "does not provide" in refused.value.message_en


def test_an_undocumented_name_is_refused() -> None:
    with pytest.raises(RuleFactUnknown):
        compile_condition("__import__ == 'os'", LEDGER)


@pytest.mark.parametrize(
    "text",
    ["supplier.name > 1", "line.qty + 'a' > 1", "supplier.name"],
)
def test_types_that_do_not_go_together_are_refused(text: str) -> None:
    with pytest.raises(RuleTypeInvalid):
        compile_condition(text, LEDGER)


@pytest.mark.parametrize(
    "text",
    [
        "item.name =~ '(a+)+$'",
        "item.name =~~ 'x'",
        "line.qty ** 99999 > 1",
        "line.qty << 99999 > 1",
        "$range(1000000000) == []",
        "$now > d'2020-01-01'",
        "(" * 40 + "true" + ")" * 40,
        "x" * (MAX_LENGTH + 1),
        "",
        "   ",
    ],
)
def test_what_could_run_for_ever_or_eat_memory_is_refused(text: str) -> None:
    with pytest.raises(RuleSyntaxInvalid):
        compile_condition(text, LEDGER)


def test_every_documented_fact_can_be_used_by_a_trigger_that_provides_it() -> None:
    cat = catalogue()
    for kind in cat.triggers:
        for fact in cat.all_facts():
            if fact.namespace in namespaces_for(kind):
                literal = {"int": "0", "float": "0", "str": "''", "bool": "false", "date": "d'2020-01-01'"}
                if fact.type == "list":
                    compile_condition(f"'x' in {fact.name}", namespaces_for(kind))
                else:
                    compile_condition(f"{fact.name} == {literal[fact.type]}", namespaces_for(kind))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_garbage_is_refused_with_a_rule_error_or_compiles_to_a_boolean(text: str) -> None:
    try:
        condition = compile_condition(text, LEDGER, {"n": 3})
    except RuleError as refused:
        assert refused.message and refused.message_en
        assert refused.detail["field"] == "when"
    else:
        try:
            result = condition.matches({"line": {"qty": 2}})
        except Exception as exc:  # an evaluation failure (division by zero) is the runtime's to record
            assert type(exc).__module__.startswith("rule_engine") or isinstance(exc, ArithmeticError)
        else:
            assert isinstance(result, bool)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.sampled_from(["line.qty", "params.n", "1", "2.5", "item.name", "'包装破损'", "true", "return.reason"]),
        lambda inner: st.tuples(
            inner, st.sampled_from([" + ", " - ", " * ", " / ", " == ", " > ", " and ", " or ", " in "]), inner
        ).map(lambda t: f"({t[0]}{t[1]}{t[2]})"),
        max_leaves=12,
    )
)
def test_combinations_of_facts_never_escape_the_error_hierarchy(text: str) -> None:
    with contextlib.suppress(RuleError):
        compile_condition(text, LEDGER, {"n": 3})
