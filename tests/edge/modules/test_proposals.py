"""What a module answers is outside input to the box: any proposals, however malformed, are split into actions the
manifest allows and the catalogue accepts, well-formed decisions, and refusals with a reason — never an exception."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.modules.host import Limits, ModuleHost
from edge.modules.manifest import parse_manifest

MANIFEST = parse_manifest(
    {
        "name": "probe",
        "version": 1,
        "title": {"zh": "探针", "en": "probe"},
        "subscribes": [{"kind": "ledger", "doc_type": "sale"}],
        "may": ["notify", "open_ticket"],
    }
)
EVENT = {"kind": "ledger", "name": "sale", "key": "doc:1:1", "facts": {}}
HOST = ModuleHost(
    db_path=Path("unused.db"),
    modules_dir=Path("unused"),
    store_id="store-t",
    timezone="Asia/Shanghai",
    writer=None,
    open_reader=lambda: None,  # type: ignore[arg-type,return-value]
    clock=lambda: None,  # type: ignore[arg-type,return-value]
    limits=Limits(),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)
proposal = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"action": st.sampled_from(["notify", "open_ticket", "send_email", "hold_document", "x"])},
        optional={
            "role": st.sampled_from(["category_manager", "finance", "nobody"]) | st.text(max_size=10),
            "message": st.fixed_dictionaries({"zh": st.text(max_size=20), "en": st.text(max_size=20)}) | json_values,
            "queue": st.text(max_size=12),
            "title": json_values,
            "decision": st.fixed_dictionaries(
                {"key": st.text(max_size=250), "check_on": st.dates().map(str) | st.text(max_size=12)},
                optional={"subject": json_values, "predicted": json_values},
            )
            | json_values,
        },
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(proposal, max_size=8))
def test_any_answer_is_split_into_allowed_actions_decisions_and_refusals(proposals: list[Any]) -> None:
    actions, decisions, refused = HOST.check_proposals(MANIFEST, EVENT, proposals)
    assert all(a["action"] in MANIFEST.may for a in actions)
    assert all(isinstance(r, str) and r for r in refused)
    for d in decisions:
        assert set(d) == {"key", "subject", "predicted", "check_on"} and 1 <= len(d["key"]) <= 200
    assert len(actions) + len(refused) >= sum(
        1 for p in proposals if isinstance(p, dict) and any(k != "decision" for k in p)
    )


def test_an_event_the_module_does_not_subscribe_to_gets_no_actions() -> None:
    notice = {"action": "notify", "role": "category_manager", "message": {"zh": "x", "en": "x"}}
    actions, _, refused = HOST.check_proposals(MANIFEST, {**EVENT, "name": "receipt"}, [notice])
    assert actions == [] and "not subscribed to ledger:receipt" in refused[0]
