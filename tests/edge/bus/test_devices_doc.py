"""docs/devices.md: every example event is accepted as shown, acks have the documented fields, and the
minimal Python device posts a sale against a real box."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from edge.bus.event_kinds import device_event_kinds
from edge.bus.payloads import Ack
from edge.ledger.masterdata import add_location
from tests.edge.bus.conftest import PASSWORDS, STORE, WAIT, Box

DOC = Path(__file__).parents[3] / "docs" / "devices.md"
_FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(language: str) -> list[tuple[str, str]]:
    return [(info.strip(), body) for lang, info, body in _FENCE.findall(DOC.read_text("utf-8")) if lang == language]


def test_every_example_event_in_the_guide_is_posted_or_stored(box: Box) -> None:
    events = [
        (info.removeprefix("event:"), json.loads(body)) for info, body in _blocks("json") if info.startswith("event:")
    ]
    assert {kind for kind, _ in events} == {"sale", "scan", "temp"}
    # The cold-room example names the freezer: a location of this store (a reading naming none is refused).
    box.loop.run(box.writer.execute(add_location, "freezer", "冷冻库", "freezer", "freezer", "frozen"))
    devices = {"sale": box.device("pos-1"), "scan": box.device("pda-1"), "temp": box.device("cold-1")}
    for kind, event in events:
        devices[kind].send(kind, event)
        ack = devices[kind].ack(event["id"])
        assert ack["ok"] is True, (event, ack)


def test_the_acks_in_the_guide_have_exactly_the_fields_the_box_sends() -> None:
    fields = set(json.loads(Ack.stored("x").to_json()))
    examples: list[dict[str, Any]] = [json.loads(body) for info, body in _blocks("json") if info == "ack"]
    assert len(examples) >= 2
    for example in examples:
        assert set(example) == fields


def test_the_minimal_python_device_in_the_guide_gets_its_sale_acked(box: Box) -> None:
    (source,) = [body for _, body in _blocks("python")]
    source = source.replace('"store-001", "pos-1", "…"', f'"{STORE}", "pos-1", "{PASSWORDS["pos-1"]}"')
    source = source.replace('client.connect("127.0.0.1", 1883)', f'client.connect("127.0.0.1", {box.port})')
    namespace: dict[str, Any] = {"print": lambda *args: None}
    exec(compile(source, str(DOC), "exec"), namespace)
    client = namespace["client"]
    try:
        deadline = time.monotonic() + WAIT
        while namespace["pending"] and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the example's own state with a deadline
        assert namespace["pending"] == {}
    finally:
        client.disconnect()
        client.loop_stop()
    assert box.sql("SELECT COUNT(*) FROM documents WHERE device = 'pos-1'")[0][0] == 1


def test_every_list_of_event_kinds_in_the_guide_is_the_boxs_kinds() -> None:
    text = DOC.read_text("utf-8")
    kinds = sorted(device_event_kinds())
    topics = re.search(r"evt/<kind>\s+device -> box\s+event \(([^)]*)\)", text)
    assert topics is not None and topics.group(1).split(", ") == kinds
    unknown = re.search(r"^\| `unknown_kind` \| the last topic level is not (.*) \| yes \|$", text, re.MULTILINE)
    assert unknown is not None and re.findall(r"`([a-z]+)`", unknown.group(1)) == kinds
    metric = re.search(r"^\| `storebox_ingest_events_total` \| `kind` \((.*)\) \|$", text, re.MULTILINE)
    assert metric is not None and re.findall(r"`([a-z]+)`", metric.group(1)) == [*kinds, "other"]
    assert {f"### `evt/{kind}`" for kind in kinds} <= {line.split(" —")[0] for line in text.splitlines()}


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_guide_links_the_device_pages_and_every_link_resolves() -> None:
    text = DOC.read_text("utf-8")
    links = re.findall(r"\]\(([^)#\s]+\.md)(?:#([^)]+))?\)", text)
    pages = {page for page, _ in links}
    assert pages >= {
        "fleet.md",
        "cold-chain.md",
        "barcodes.md",
        "scan-to-receive.md",
        "offline-terminals.md",
        "firmware-profiles.md",
        "mqtt5.md",
        "supplier-api/README.md",
    }
    for page, anchor in links:
        target = DOC.parent / page
        assert target.is_file(), page
        if anchor:
            headings = {_anchor(h) for h in re.findall(r"^#+ (.*)$", target.read_text("utf-8"), re.MULTILINE)}
            assert anchor in headings, (page, anchor)
