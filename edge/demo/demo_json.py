"""`<data_dir>/demo.json`: everything a client needs to talk to a demo box (演示凭据).

The file holds the only copy of the generated passwords (the database keeps argon2 hashes), so it is
written atomically with mode 0600 and never regenerated; a later start only refreshes the addresses.
This module is light on purpose: the simulators read the file with it and import nothing else of ours.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

DEMO_JSON_NAME = "demo.json"
TOP_LEVEL_KEYS = ("store_id", "http_url", "mqtt", "users", "devices", "items")


class DemoFileError(ValueError):
    """demo.json is missing a key or has a value of the wrong shape."""


class Addresses(Protocol):
    """What a refresh needs from the settings (edge.config.Settings has it)."""

    @property
    def http_url(self) -> str: ...

    @property
    def mqtt_host(self) -> str: ...

    @property
    def mqtt_port(self) -> int: ...


@dataclass(frozen=True, slots=True)
class UserLogin:
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class DeviceLogin:
    """MQTT credentials of a device; its username is its id."""

    id: str
    kind: str
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class DemoItem:
    """An item with opening stock on the sales floor; `unit` is its base unit."""

    sku: str
    barcode: str
    name: str
    unit: str


@dataclass(frozen=True, slots=True)
class DemoInfo:
    """The contents of demo.json."""

    store_id: str
    http_url: str
    mqtt_host: str
    mqtt_port: int
    users: tuple[tuple[str, UserLogin], ...]  # (role, login), one per role
    devices: tuple[DeviceLogin, ...]
    items: tuple[DemoItem, ...]

    def user(self, role: str) -> UserLogin:
        for name, login in self.users:
            if name == role:
                return login
        raise KeyError(role)

    def device(self, device_id: str) -> DeviceLogin:
        for login in self.devices:
            if login.id == device_id:
                return login
        raise KeyError(device_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "store_id": self.store_id,
            "http_url": self.http_url,
            "mqtt": {"host": self.mqtt_host, "port": self.mqtt_port},
            "users": {role: {"username": u.username, "password": u.password} for role, u in self.users},
            "devices": [
                {"id": d.id, "kind": d.kind, "username": d.username, "password": d.password} for d in self.devices
            ],
            "items": [{"sku": i.sku, "barcode": i.barcode, "name": i.name, "unit": i.unit} for i in self.items],
        }

    @classmethod
    def from_json(cls, data: Any) -> DemoInfo:
        try:
            missing = [key for key in TOP_LEVEL_KEYS if key not in data]
            if missing:
                raise DemoFileError(f"demo.json 缺少字段 missing keys: {', '.join(missing)}")
            return cls(
                store_id=str(data["store_id"]),
                http_url=str(data["http_url"]),
                mqtt_host=str(data["mqtt"]["host"]),
                mqtt_port=int(data["mqtt"]["port"]),
                users=tuple(
                    (str(role), UserLogin(str(u["username"]), str(u["password"]))) for role, u in data["users"].items()
                ),
                devices=tuple(
                    DeviceLogin(str(d["id"]), str(d["kind"]), str(d["username"]), str(d["password"]))
                    for d in data["devices"]
                ),
                items=tuple(
                    DemoItem(str(i["sku"]), str(i["barcode"]), str(i["name"]), str(i["unit"])) for i in data["items"]
                ),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, DemoFileError):
                raise
            raise DemoFileError(f"demo.json 格式错误 malformed: {exc!r}") from exc


def write_demo_json(path: Path, info: DemoInfo) -> None:
    """Write `path` atomically (temp file in the same folder, fsync, os.replace), readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(info.to_json(), ensure_ascii=False, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".demo-", suffix=".json.tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_demo_json(path: Path) -> DemoInfo:
    """Read and check demo.json; raises FileNotFoundError or DemoFileError."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DemoFileError(f"demo.json 不是有效 JSON not valid JSON: {exc}") from exc
    return DemoInfo.from_json(data)


def refresh_demo_json(path: Path, settings: Addresses) -> bool:
    """Update the HTTP URL and MQTT address in an existing demo.json; True when it changed.

    Passwords are kept: the database only has their hashes. A missing file stays missing.
    """
    path = Path(path)
    if not path.exists():
        return False
    info = read_demo_json(path)
    if (info.http_url, info.mqtt_host, info.mqtt_port) == (settings.http_url, settings.mqtt_host, settings.mqtt_port):
        return False
    fresh = DemoInfo(
        store_id=info.store_id,
        http_url=settings.http_url,
        mqtt_host=settings.mqtt_host,
        mqtt_port=settings.mqtt_port,
        users=info.users,
        devices=info.devices,
        items=info.items,
    )
    write_demo_json(path, fresh)
    return True
