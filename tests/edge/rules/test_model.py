"""Rules as data: the one validation every path uses, loops refused at save, messages filled from facts."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.rules.errors import RuleActionInvalid, RuleError, RuleFactUnknown, RuleInvalid, RuleLoop
from edge.rules.model import TriggerKind, render_text, validate_rule

LEAD_TIME_RULE: dict[str, Any] = {
    "id": "supplier-delay-response.lead-time-growth",
    "name": {"zh": "供应商交期延长超过阈值", "en": "Supplier lead time grows past a threshold"},
    "trigger": {"kind": "signal", "name": "supplier.lead_time_changed"},
    "when": "lead_time.change_days > params.threshold_days",
    "params": {"threshold_days": 15},
    "then": [
        {
            "action": "notify",
            "role": "category_manager",
            "message": {
                "zh": "{supplier.name} 交期延长 {lead_time.change_days} 天",
                "en": "{supplier.name} +{lead_time.change_days} days",
            },
        },
        {
            "action": "adjust_parameter",
            "parameter": "service_level",
            "scope": "supplier",
            "by": 0.02,
            "min": 0.5,
            "max": 0.99,
        },
    ],
    "owner": "purchasing-lead",
    "impact": {"what": "safety stock", "who": "category managers", "how_much": "+2 points of service level"},
}


def rule(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(LEAD_TIME_RULE)
    doc.update(changes)
    return doc


def test_the_lead_time_rule_is_valid_and_complete_for_review() -> None:
    parsed = validate_rule(LEAD_TIME_RULE)
    assert parsed.trigger.kind is TriggerKind.SIGNAL
    assert parsed.trigger.key == "signal:supplier.lead_time_changed"
    assert [a.kind for a in parsed.then] == ["notify", "adjust_parameter"]
    assert parsed.missing_for_review() == []
    assert validate_rule(parsed.to_dict()).to_dict() == parsed.to_dict()


def test_a_rule_survives_the_writer_pipe() -> None:
    parsed = validate_rule(LEAD_TIME_RULE)
    assert pickle.loads(pickle.dumps(parsed)).to_dict() == parsed.to_dict()


def test_owner_and_impact_are_what_review_needs() -> None:
    doc = rule()
    del doc["owner"], doc["impact"]
    assert validate_rule(doc).missing_for_review() == ["owner", "impact"]


@pytest.mark.parametrize(
    ("changes", "error", "field"),
    [
        ({"id": "Bad Id"}, RuleInvalid, "id"),
        ({"name": {"zh": "只有中文"}}, RuleInvalid, "name"),
        ({"trigger": {"kind": "weather"}}, RuleInvalid, "trigger.kind"),
        ({"trigger": {"kind": "ledger", "doc_type": "nope"}}, RuleInvalid, "trigger.doc_type"),
        ({"trigger": {"kind": "schedule", "cron": "every day"}}, RuleInvalid, "trigger.cron"),
        ({"trigger": {"kind": "signal", "name": "weather.frost"}}, RuleInvalid, "trigger.name"),
        ({"trigger": {"kind": "alert", "alert": "rule"}}, RuleInvalid, "trigger.alert"),
        ({"then": []}, RuleInvalid, "then"),
        ({"then": [{"action": "launch_missiles"}]}, RuleActionInvalid, "then[1]"),
        (
            {"then": [{"action": "notify", "role": "ceo", "message": {"zh": "x", "en": "x"}}]},
            RuleActionInvalid,
            "then[1]",
        ),
        (
            {"then": [{"action": "notify", "role": "manager", "message": {"zh": "{paper.kind}", "en": "x"}}]},
            RuleFactUnknown,
            "then[1].message",
        ),
        ({"then": [{"action": "tag_return", "channel": "logistics"}]}, RuleActionInvalid, "then[1]"),
        ({"then": [{"action": "hold_document", "reason": {"zh": "x", "en": "x"}}]}, RuleActionInvalid, "then[1]"),
        (
            {
                "then": [
                    {
                        "action": "adjust_parameter",
                        "parameter": "service_level",
                        "scope": "supplier",
                        "by": 0.1,
                        "to": 0.9,
                        "min": 0.5,
                        "max": 0.99,
                    }
                ]
            },
            RuleActionInvalid,
            "then[1]",
        ),
        ({"params": {"Bad-Name": 1}}, RuleInvalid, "params"),
        ({"impact": {"what": "x"}}, RuleInvalid, "impact"),
        ({"extra": 1}, RuleInvalid, "extra"),
    ],
)
def test_bad_rules_are_refused_at_save_naming_the_field(
    changes: dict[str, Any], error: type[RuleError], field: str
) -> None:
    with pytest.raises(error) as refused:
        validate_rule(rule(**changes))
    assert refused.value.detail["field"] == field
    assert refused.value.message and refused.value.message_en


def _chain(rule_id: str, listens: str, emits: str) -> dict[str, Any]:
    return {
        "id": rule_id,
        "name": {"zh": rule_id, "en": rule_id},
        "trigger": {"kind": "signal", "name": listens},
        "when": "signal.name != ''",
        "then": [{"action": "emit_signal", "name": emits}],
    }


def test_a_rule_that_would_fire_itself_is_refused() -> None:
    with pytest.raises(RuleLoop):
        validate_rule(_chain("echo", "rule.ping", "rule.ping"))


def test_a_loop_through_other_rules_is_refused_naming_the_chain() -> None:
    a = validate_rule(_chain("a", "rule.x", "rule.y"))
    b = validate_rule(_chain("b", "rule.y", "rule.z"), known_rules={"a": a})
    with pytest.raises(RuleLoop) as refused:
        validate_rule(_chain("c", "rule.z", "rule.x"), known_rules={"a": a, "b": b})
    assert refused.value.detail["chain"] == "c -> rule.x -> a -> rule.y -> b -> rule.z -> c"


def test_a_chain_that_ends_is_fine() -> None:
    a = validate_rule(_chain("a", "rule.x", "rule.y"))
    validate_rule(_chain("b", "rule.y", "rule.z"), known_rules={"a": a})


def test_messages_are_filled_from_the_facts() -> None:
    zh, en = render_text(
        {
            "zh": "{supplier.name} 交期延长 {lead_time.change_days} 天",
            "en": "{supplier.name}: +{lead_time.change_days} days",
        },
        {"supplier": {"name": "康师傅"}, "lead_time": {"change_days": 16.5}},
    )
    assert (zh, en) == ("康师傅 交期延长 16.5 天", "康师傅: +16.5 days")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*sorted(LEAD_TIME_RULE), "x"]), json_values, max_size=10))
def test_garbage_documents_are_refused_with_a_rule_error(doc: dict[str, Any]) -> None:
    try:
        validate_rule({**LEAD_TIME_RULE, **doc})
    except RuleError as refused:
        assert refused.code.startswith("rule_")


def test_a_template_may_name_the_rules_own_params_and_nothing_undeclared() -> None:
    notice = {"action": "notify", "role": "manager", "message": {"zh": "阈值 {params.threshold_days}", "en": "x"}}
    parsed = validate_rule(rule(then=[notice]))
    zh, _ = render_text(parsed.then[0].fields["message"], {"params": {"threshold_days": 15}})
    assert zh == "阈值 15"
    undeclared = {**notice, "message": {"zh": "{params.nope}", "en": "x"}}
    with pytest.raises(RuleFactUnknown):
        validate_rule(rule(then=[undeclared]))
