"""The topic contract: formatting, parsing and the device ACL."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.bus.topics import (
    Topic,
    TopicKind,
    ack_topic,
    alert_topic,
    command_topic,
    event_filter,
    event_topic,
    filter_within,
    may_publish,
    may_subscribe,
    parse_topic,
    split_event_topic,
    status_topic,
    stock_topic,
)

STORE = "store-001"


def test_formatted_topics_follow_the_contract() -> None:
    assert event_topic(STORE, "pos-1", "sale") == "storebox/store-001/dev/pos-1/evt/sale"
    assert command_topic(STORE, "scale-1", "tare") == "storebox/store-001/dev/scale-1/cmd/tare"
    assert ack_topic(STORE, "pos-1") == "storebox/store-001/dev/pos-1/ack"
    assert status_topic(STORE, "pos-1") == "storebox/store-001/dev/pos-1/status"
    assert stock_topic(STORE, "SKU-0001.A") == "storebox/store-001/stock/SKU-0001.A"
    assert alert_topic(STORE, "cold-room") == "storebox/store-001/alert/cold-room"
    assert event_filter(STORE) == "storebox/store-001/dev/+/evt/#"


@pytest.mark.parametrize(
    ("topic", "parsed"),
    [
        ("storebox/s1/dev/pos-1/evt/sale", Topic(TopicKind.EVENT, "s1", "pos-1", "sale")),
        ("storebox/s1/dev/pos-1/cmd/beep", Topic(TopicKind.COMMAND, "s1", "pos-1", "beep")),
        ("storebox/s1/dev/pos-1/ack", Topic(TopicKind.ACK, "s1", "pos-1")),
        ("storebox/s1/dev/pos-1/status", Topic(TopicKind.STATUS, "s1", "pos-1")),
        ("storebox/s1/stock/SKU_1", Topic(TopicKind.STOCK, "s1", name="SKU_1")),
        ("storebox/s1/alert/expiry", Topic(TopicKind.ALERT, "s1", name="expiry")),
    ],
)
def test_parse_reads_every_kind_of_topic(topic: str, parsed: Topic) -> None:
    assert parse_topic(topic) == parsed


@pytest.mark.parametrize(
    "topic",
    [
        "storebox/S1/dev/pos-1/evt/sale",  # upper case store id
        "storebox/s1/dev/pos_1/evt/sale",  # underscore in device id
        "storebox/s1/dev/pos-1/evt/sale/extra",
        "storebox/s1/dev/pos-1/evt/",
        "storebox/s1/dev/pos-1/ack/more",
        "storebox/s1/stock/a b",
        "other/s1/dev/pos-1/ack",
        "storebox/s1/dev//ack",
        "",
    ],
)
def test_parse_refuses_topics_outside_the_contract(topic: str) -> None:
    assert parse_topic(topic) is None


def test_format_refuses_ids_that_would_break_the_tree() -> None:
    for bad in ("POS-1", "pos/1", "pos+1", "#", "", "a" * 65):
        with pytest.raises(ValueError):
            event_topic(STORE, bad, "sale")
    with pytest.raises(ValueError):
        stock_topic(STORE, "sku/1")


def test_split_event_topic_keeps_a_malformed_kind_for_the_consumer_to_answer() -> None:
    assert split_event_topic(STORE, "storebox/store-001/dev/pos-1/evt/sale") == ("pos-1", "sale")
    assert split_event_topic(STORE, "storebox/store-001/dev/pos-1/evt/Weird/x") == ("pos-1", "Weird/x")
    assert split_event_topic(STORE, "storebox/store-001/dev/pos-1/status") is None
    assert split_event_topic(STORE, "storebox/other/dev/pos-1/evt/sale") is None


def test_a_device_publishes_only_in_its_own_tree() -> None:
    assert may_publish(STORE, "pos-1", "storebox/store-001/dev/pos-1/evt/sale")
    assert may_publish(STORE, "pos-1", "storebox/store-001/dev/pos-1/status")
    assert not may_publish(STORE, "pos-1", "storebox/store-001/dev/pos-2/evt/sale")
    assert not may_publish(STORE, "pos-1", "storebox/store-001/dev/pos-10/evt/sale")  # a prefix of another id
    assert not may_publish(STORE, "pos-1", "storebox/store-001/dev/pos-1")
    assert not may_publish(STORE, "pos-1", "storebox/store-001/stock/SKU1")
    assert not may_publish(STORE, "pos-1", "storebox/store-002/dev/pos-1/evt/sale")
    assert not may_publish(STORE, "Pos-1", "storebox/store-001/dev/Pos-1/evt/sale")


def test_a_device_subscribes_to_its_tree_stock_and_alerts_only() -> None:
    for allowed in (
        "storebox/store-001/dev/pos-1/#",
        "storebox/store-001/dev/pos-1/ack",
        "storebox/store-001/dev/pos-1/cmd/+",
        "storebox/store-001/stock/#",
        "storebox/store-001/stock/+",
        "storebox/store-001/stock/SKU1",
        "storebox/store-001/alert/#",
    ):
        assert may_subscribe(STORE, "pos-1", allowed), allowed
    for refused in (
        "#",
        "storebox/#",
        "storebox/store-001/#",
        "storebox/store-001/dev/+/ack",
        "storebox/store-001/dev/pos-2/ack",
        "storebox/store-001/dev/#",
        "storebox/+/stock/#",
        "$SYS/#",
    ):
        assert not may_subscribe(STORE, "pos-1", refused), refused


_level = st.sampled_from(["a", "b", "storebox", "x"])
_filter_level = st.sampled_from(["a", "b", "+", "storebox"])


@given(
    topic=st.lists(_level, min_size=1, max_size=5).map("/".join),
    levels=st.lists(_filter_level, min_size=1, max_size=5),
    hash_tail=st.booleans(),
)
def test_filter_within_agrees_with_mqtt_matching_for_plain_topics(
    topic: str, levels: list[str], hash_tail: bool
) -> None:
    topic_filter = "/".join([*levels, "#"] if hash_tail else levels)
    assert filter_within(topic, topic_filter) == mqtt.topic_matches_sub(topic_filter, topic)


@given(
    requested=st.lists(_filter_level, min_size=1, max_size=4),
    allowed=st.lists(_filter_level, min_size=1, max_size=4),
    req_hash=st.booleans(),
    allow_hash=st.booleans(),
    topic=st.lists(_level, min_size=1, max_size=6).map("/".join),
)
def test_a_filter_within_another_matches_nothing_the_other_does_not(
    requested: list[str], allowed: list[str], req_hash: bool, allow_hash: bool, topic: str
) -> None:
    req = "/".join([*requested, "#"] if req_hash else requested)
    allow = "/".join([*allowed, "#"] if allow_hash else allowed)
    if filter_within(req, allow) and mqtt.topic_matches_sub(req, topic):
        assert mqtt.topic_matches_sub(allow, topic)
