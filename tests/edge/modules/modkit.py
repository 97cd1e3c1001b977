"""Real parts for module-host tests: the whole box (StoreBox: writer, embedded broker on a free port, ingest, rules
runtime, module host) on an event loop in a background thread, a seeded temp database, module directories written
by the test, and paho devices that sell and listen to alerts. Waits poll with a deadline, never sleep blindly."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.app import StoreBox
from edge.config import Settings
from edge.db import connect
from edge.ledger.commands import DocType, Line, PostDocument
from tests.edge.bus.conftest import ITEMS, PASSWORDS, STORE, Device, LoopThread, sale, seed
from tools.box_process import free_port

WAIT = 30.0
MILK = ITEMS[0][1]
BREAD = ITEMS[1][1]

# A module that proposes one notice per sale line and one decision it can be judged on; `params.tag` goes into the
# message, so two versions are told apart by what they did. `params.outcome` is what judge() answers.
ECHO = """
def handle(ctx, event):
    line = event["facts"].get("line", {})
    ctx.log("line " + str(line.get("sku")))
    return [
        {
            "action": "notify",
            "role": "category_manager",
            "message": {"zh": "%s: {line.sku}" % ctx.params["tag"], "en": "%s: {line.sku}" % ctx.params["tag"]},
            "decision": {
                "key": event["key"], "subject": line.get("sku"), "predicted": "sold", "check_on": str(ctx.today)
            },
        }
    ]


def judge(ctx, decision):
    return ctx.params.get("outcome", True)
"""


def module_source(body: str) -> str:
    return textwrap.dedent(body).lstrip()


def write_module(
    root: Path,
    name: str,
    version: int,
    code: str = ECHO,
    *,
    params: dict[str, Any] | None = None,
    subscribes: list[dict[str, str]] | None = None,
    may: list[str] | None = None,
    kpis: dict[str, Any] | None = None,
    budget: dict[str, Any] | None = None,
) -> Path:
    """A module directory (manifest.yaml + module.py) under root/<name>-v<version>."""
    folder = root / f"{name}-v{version}"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": name,
        "version": version,
        "title": {"zh": f"测试模块 {name}", "en": f"test module {name}"},
        "entry": "module.py",
        "subscribes": subscribes or [{"kind": "ledger", "doc_type": "sale"}],
        "may": may if may is not None else ["notify", "open_ticket"],
        "kpis": kpis or {"window": 20, "precision_min": 0.9, "false_positive_max": 0.1, "min_decisions": 3},
        "budget": budget or {"timeout_seconds": 5, "memory_mb": 256, "cpu_seconds": 10},
        "params": params if params is not None else {"tag": f"v{version}"},
    }
    (folder / "manifest.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True), encoding="utf-8")
    (folder / "module.py").write_text(module_source(code), encoding="utf-8")
    return folder


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class HostBox:
    settings: Settings
    loop: LoopThread
    box: StoreBox
    root: Path
    devices: list[Device] = field(default_factory=list)
    sold: int = 0

    @property
    def host(self) -> Any:
        return self.box.modules

    @property
    def port(self) -> int:
        return int(self.box.broker.port)

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        conn = connect(self.settings.db_path, readonly=True)
        try:
            return conn.execute(query, params).fetchall()
        finally:
            conn.close()

    def run(self, coro: Any, timeout: float = WAIT) -> Any:
        return self.loop.run(coro, timeout)

    def device(self, device_id: str = "pos-1") -> Device:
        client = Device(self, device_id, PASSWORDS[device_id])  # type: ignore[arg-type]
        self.devices.append(client)
        client.connect()
        assert client.subscribe(f"storebox/{STORE}/dev/{device_id}/ack") == [1]
        return client

    def sell(self, pos: Device, code: str = MILK, qty: int = 1) -> dict[str, Any]:
        """One sale over MQTT; its ack (ok)."""
        self.sold += 1
        event_id = f"sale-{self.sold}-{time.monotonic_ns()}"
        pos.send("sale", sale(event_id, (code, qty)))
        ack = pos.ack(event_id, timeout=WAIT)
        assert ack["ok"], ack
        return ack

    def install(self, folder: Path) -> dict[str, Any]:
        return dict(self.run(self.host.install_dir(folder, actor="test")))

    def state(self, name: str) -> str:
        rows = self.sql("SELECT state FROM modules WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else ""

    def notices(self, name: str) -> list[str]:
        return [
            r[0]
            for r in self.sql(
                "SELECT message_en FROM rule_notifications WHERE rule_id = ? ORDER BY id", (f"module:{name}",)
            )
        ]


def open_box(tmp_path: Path, **overrides: Any) -> HostBox:
    settings = Settings(
        data_dir=tmp_path / "box",
        store_id=STORE,
        mqtt_host="127.0.0.1",
        mqtt_port=free_port(),
        modules_refresh_seconds=0.2,
        modules_judge_interval_seconds=3600,
        **overrides,
    )
    settings.data_dir.mkdir(parents=True)
    seed(settings.db_path)
    loop = LoopThread()
    box = StoreBox(settings)
    loop.run(box.start(), timeout=60)
    opening = tuple(Line(barcode, qty * 100) for _, barcode, qty in ITEMS if qty)
    result = loop.run(box.writer.post(PostDocument(key="opening", type=DocType.RECEIPT, lines=opening)))
    assert result.ok, result
    return HostBox(settings, loop, box, tmp_path / "src")


def close_box(hb: HostBox) -> None:
    for d in hb.devices:
        d.close()
    hb.loop.run(hb.box.stop(), timeout=60)
    hb.loop.close()


@pytest.fixture
def hostbox(tmp_path: Path) -> Iterator[HostBox]:
    hb = open_box(tmp_path)
    try:
        yield hb
    finally:
        close_box(hb)


def alerts_of(listener: Device, timeout: float = WAIT) -> dict[str, Any]:
    msg = listener.next_message(f"storebox/{STORE}/alert/module", timeout)
    return dict(json.loads(msg.payload))
