"""The store key on the box: `<data_dir>/sync.key` (mode 0600) when present, else the `sync_key` setting.

Rotation writes the new key to the file atomically (temp file, fsync, rename), so a crash leaves the old key or
the new one, never half of either; the aggregator accepts the old one for its grace period meanwhile.
"""

from __future__ import annotations

import os
from pathlib import Path

from edge.config import Settings
from edge.sync.protocol import ProtocolError, StoreKey, parse_store_key


def load_key(settings: Settings) -> StoreKey | None:
    path = settings.sync_key_path
    if path.exists():
        return parse_store_key(path.read_text(encoding="ascii", errors="replace"))
    if settings.sync_key is not None:
        return parse_store_key(settings.sync_key.get_secret_value())
    return None


def write_key(path: Path, key: StoreKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{key}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


__all__ = ["ProtocolError", "load_key", "write_key"]
