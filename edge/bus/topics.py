"""The MQTT topic contract of the box (DESIGN.md "Bus contract"): format, parse and access rules.

```
storebox/<store>/dev/<device>/evt/<kind>    device -> box
storebox/<store>/dev/<device>/cmd/<name>    box -> device
storebox/<store>/dev/<device>/ack           box -> device
storebox/<store>/dev/<device>/status        device, retained, last will "offline"
storebox/<store>/stock/<sku>                box, retained
storebox/<store>/alert/<kind>               box
```

Store and device ids, event kinds, command names and alert kinds are `[a-z0-9-]+`; a SKU is a ledger
code (`[A-Za-z0-9._-]`). Pure functions only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

ROOT = "storebox"
MAX_ID_LENGTH = 64
_ID = re.compile(r"[a-z0-9-]{1,64}")
_SKU = re.compile(r"[A-Za-z0-9._-]{1,64}")


class TopicKind(StrEnum):
    """What a topic carries."""

    EVENT = "evt"
    COMMAND = "cmd"
    ACK = "ack"
    STATUS = "status"
    STOCK = "stock"
    ALERT = "alert"


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic. `name` is the event kind, command name, SKU or alert kind, else None."""

    kind: TopicKind
    store: str
    device: str | None = None
    name: str | None = None


def is_id(value: str) -> bool:
    """True for a store id, device id, event kind, command name or alert kind (`[a-z0-9-]+`)."""
    return _ID.fullmatch(value) is not None


def _check(what: str, value: str, pattern: re.Pattern[str] = _ID) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise ValueError(f"invalid {what} {value!r} for a topic: {pattern.pattern}")
    return value


def device_prefix(store: str, device: str) -> str:
    """Everything a device may publish lives under this prefix (with the trailing slash)."""
    return f"{ROOT}/{_check('store id', store)}/dev/{_check('device id', device)}/"


def event_topic(store: str, device: str, kind: str) -> str:
    return f"{device_prefix(store, device)}evt/{_check('event kind', kind)}"


def command_topic(store: str, device: str, name: str) -> str:
    return f"{device_prefix(store, device)}cmd/{_check('command name', name)}"


def ack_topic(store: str, device: str) -> str:
    return f"{device_prefix(store, device)}ack"


def status_topic(store: str, device: str) -> str:
    return f"{device_prefix(store, device)}status"


def stock_topic(store: str, sku: str) -> str:
    return f"{ROOT}/{_check('store id', store)}/stock/{_check('sku', sku, _SKU)}"


def alert_topic(store: str, kind: str) -> str:
    return f"{ROOT}/{_check('store id', store)}/alert/{_check('alert kind', kind)}"


def event_filter(store: str) -> str:
    """The filter the ingest consumer listens on: every device's events."""
    return f"{ROOT}/{_check('store id', store)}/dev/+/evt/#"


def device_filter(store: str, device: str) -> str:
    return f"{device_prefix(store, device)}#"


def stock_filter(store: str) -> str:
    return f"{ROOT}/{_check('store id', store)}/stock/#"


def alert_filter(store: str) -> str:
    return f"{ROOT}/{_check('store id', store)}/alert/#"


def parse_topic(topic: str) -> Topic | None:
    """Parse a topic of the contract; None for anything else (another tree, bad ids, extra levels)."""
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != ROOT or not is_id(parts[1]):
        return None
    store = parts[1]
    if len(parts) == 4:
        if parts[2] == TopicKind.STOCK and _SKU.fullmatch(parts[3]):
            return Topic(TopicKind.STOCK, store, name=parts[3])
        if parts[2] == TopicKind.ALERT and is_id(parts[3]):
            return Topic(TopicKind.ALERT, store, name=parts[3])
        return None
    if parts[2] != "dev" or not is_id(parts[3]):
        return None
    device = parts[3]
    if len(parts) == 5 and parts[4] in (TopicKind.ACK, TopicKind.STATUS):
        return Topic(TopicKind(parts[4]), store, device)
    if len(parts) == 6 and parts[4] in (TopicKind.EVENT, TopicKind.COMMAND) and is_id(parts[5]):
        return Topic(TopicKind(parts[4]), store, device, parts[5])
    return None


def split_event_topic(store: str, topic: str) -> tuple[str, str] | None:
    """(device, kind) for any topic under `storebox/<store>/dev/+/evt/#`, kind possibly malformed.

    The ingest consumer takes everything under the event filter, so that a malformed kind is answered
    and dead-lettered rather than silently dropped.
    """
    head = f"{ROOT}/{store}/dev/"
    if not topic.startswith(head):
        return None
    device, sep, rest = topic[len(head) :].partition("/")
    if not sep or not is_id(device) or not rest.startswith("evt/"):
        return None
    return device, rest[4:]


def subscribe_allowed(store: str, device: str, *, store_topics: bool = True) -> tuple[str, ...]:
    """The filters a device may subscribe to (or within): its own tree, and with `store_topics` stock and alerts
    (a supplier's device has only its own tree)."""
    if not store_topics:
        return (device_filter(store, device),)
    return (device_filter(store, device), stock_filter(store), alert_filter(store))


def filter_within(requested: str, allowed: str) -> bool:
    """True when every topic matched by filter `requested` is also matched by filter `allowed`.

    A plain topic is a filter without wildcards, so this also answers "may this topic be received".
    """
    req = requested.split("/")
    allow = allowed.split("/")
    for i, level in enumerate(allow):
        if level == "#":
            return True  # `a/#` also matches `a` itself (MQTT 4.7.1.2)
        if i >= len(req) or req[i] == "#":
            return False
        if level == "+":
            continue
        if req[i] != level:  # a requested `+` is broader than a literal level
            return False
    return len(req) == len(allow)


def may_publish(store: str, device: str, topic: str) -> bool:
    """A device publishes only under its own `storebox/<store>/dev/<device>/`."""
    if not is_id(store) or not is_id(device):
        return False
    prefix = device_prefix(store, device)
    return topic.startswith(prefix) and len(topic) > len(prefix) and "+" not in topic and "#" not in topic


def may_subscribe(store: str, device: str, topic_filter: str, *, store_topics: bool = True) -> bool:
    """A device subscribes within its own tree and, with `store_topics`, `stock/#` and `alert/#` of its store."""
    if not is_id(store) or not is_id(device):
        return False
    allowed = subscribe_allowed(store, device, store_topics=store_topics)
    return any(filter_within(topic_filter, within) for within in allowed)
