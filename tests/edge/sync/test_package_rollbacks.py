"""The box obeys the `rollbacks` of the aggregator's package listing (docs/canary.md): through the ordinary
rollback, only while the version in force is above `to_version` and not above the version HQ rolled back; any
entry it cannot read is left alone, never an error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from edge.sync import packages as pk
from edge.sync.service import PullContext
from tests.edge.sync.conftest import Box
from tests.edge.sync.packaging import box_settings, package

MODULE = "near-expiry"


def module_package(version: int) -> bytes:
    manifest = f"""name: {MODULE}
version: {version}
title: {{zh: 临期商品清货, en: Near-expiry clearance}}
entry: module.py
subscribes: [{{kind: schedule, cron: "0 * * * *"}}]
may: [notify]
"""
    module_py = b"def handle(ctx, event):\n    return []\n\n\ndef judge(ctx, decision):\n    return None\n"
    return package("module", MODULE, version, {"manifest.yaml": manifest.encode(), "module.py": module_py})


def test_an_entry_is_read_only_when_every_field_is_right() -> None:
    assert pk.rollback_order({"kind": "module", "name": MODULE, "to_version": 1}) == ("module", MODULE, 1, None)
    assert pk.rollback_order({"kind": "module", "name": MODULE, "to_version": 0, "version": 3}) == (
        "module",
        MODULE,
        0,
        3,
    )
    for bad in (
        {"kind": "script", "name": MODULE, "to_version": 1},
        {"kind": "module", "name": "../x", "to_version": 1},
        {"kind": "module", "name": MODULE, "to_version": "1"},
        {"kind": "module", "name": MODULE, "to_version": True},
        {"kind": "module", "name": MODULE, "to_version": -1},
        {"kind": "module", "name": MODULE, "to_version": 1, "version": 2.0},
        {"kind": ["module"], "name": MODULE, "to_version": 1},
        [],
        None,
    ):
        assert pk.rollback_order(bad) is None, bad


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=15,
)
ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(["module", "price_list", "nope"]) | JSON,
        "name": st.sampled_from([MODULE, "", "A", "a" * 65]) | JSON,
        "to_version": st.integers(-3, 2**60) | JSON,
        "version": st.integers(-3, 2**60) | JSON,
    },
)


@given(ENTRY | JSON)
def test_any_entry_is_read_or_refused_never_raises(entry: Any) -> None:
    order = pk.rollback_order(entry)
    if order is not None:
        kind, name, to_version, highest = order
        assert kind in {"module", "price_list", "rule_pack", "model", "firmware_profile"} and name
        assert to_version >= 0 and (highest is None or isinstance(highest, int))


@pytest.mark.anyio
async def test_the_box_rolls_back_step_by_step_to_what_hq_says_and_no_further(box: Box) -> None:
    settings = box_settings(box.data_dir)
    loop = asyncio.get_running_loop()
    for version in (1, 2, 3):
        await asyncio.to_thread(
            pk.install_package,
            module_package(version),
            settings,
            pk.writer_transact(box.writer, loop),
            box.reader,
            box.clock,
            actor="hq",
            source="sync",
            remote_id=10 + version,
        )
    ctx = PullContext(settings, box.writer, box.reader, box.clock, CollectorRegistry())

    def in_force() -> int:
        return int(box.read("SELECT version FROM package_current WHERE kind = 'module' AND name = ?", MODULE)[0][0])

    ignored: list[Any] = [
        "module",
        {"kind": "module", "name": MODULE, "to_version": "1"},
        {"kind": "module", "name": MODULE, "to_version": 1, "version": 2},  # 3 in force was not rolled back at HQ
        {"kind": "price_list", "name": "prices", "to_version": 0},  # nothing installed: nothing to do
    ]
    assert await pk.obey_rollbacks(ignored, ctx) == [] and in_force() == 3
    done = await pk.obey_rollbacks([{"kind": "module", "name": MODULE, "to_version": 1, "version": 3}], ctx)
    assert [(d["from_version"], d["to_version"]) for d in done] == [(3, 2), (2, 1)] and in_force() == 1
    assert await pk.obey_rollbacks([{"kind": "module", "name": MODULE, "to_version": 1, "version": 3}], ctx) == []
    rows = box.read("SELECT action, version, to_version, remote_id FROM package_history WHERE action = 'rolled_back'")
    assert rows == [("rolled_back", 3, 2, 13), ("rolled_back", 2, 1, 12)]  # reported upstream under each package


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
