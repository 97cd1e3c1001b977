"""The aggregator's settings: STOREBOX_CLOUD_* environment variables (or a .env-free process environment).

A bad value raises CloudConfigError with one line naming the setting and what is allowed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class CloudConfigError(Exception):
    """A setting is invalid; `str(err)` is one line."""


class CloudSettings(BaseSettings):
    """Every setting of the aggregator, with defaults for a pilot on one machine."""

    model_config = SettingsConfigDict(env_prefix="STOREBOX_CLOUD_", extra="forbid", frozen=True)

    db_url: str = Field(
        "sqlite:///var-cloud/cloud.db",
        min_length=1,
        description="SQLAlchemy URL: sqlite:///path (pilot) or postgresql+psycopg://user@host/db (chain)",
    )
    host: str = Field("127.0.0.1", min_length=1, description="address the HTTP API binds to")
    port: int = Field(8090, ge=1, le=65535, description="TCP port of the HTTP API")
    key_grace_hours: float = Field(24.0, ge=0, le=24 * 90, description="a rotated store key keeps working this long")
    data_dir: Path = Field(
        Path("var-cloud"), description="folder of the aggregator's files (packages, the SQLite file)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    packages_max_bytes: int = Field(256 * 2**20, ge=1024, le=2**32, description="largest package file accepted")
    stale_after_minutes: float = Field(
        30.0, gt=0, le=7 * 24 * 60, description="a store not heard from this long is shown as stale"
    )
    hq_public_key: str | None = Field(
        None, description="HQ's Ed25519 public key (base64) that packages are signed with; None = not configured"
    )


def load_cloud_settings(**overrides: object) -> CloudSettings:
    """Settings from the environment (and `overrides`), or CloudConfigError naming the first bad one."""
    known = {f"STOREBOX_CLOUD_{name.upper()}" for name in CloudSettings.model_fields}
    unknown = sorted(k for k in os.environ if k.startswith("STOREBOX_CLOUD_") and k not in known)
    if unknown:
        # A misspelt STOREBOX_CLOUD_DB_URL would otherwise run a chain's aggregator on a fresh SQLite file.
        raise CloudConfigError(f"{unknown[0]}: 未知配置项 / unknown setting; known: {', '.join(sorted(known))}")
    try:
        return CloudSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "STOREBOX_CLOUD_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise CloudConfigError(f"{name}: {first['msg']}") from None


def sqlite_path(db_url: str) -> Path | None:
    """The file of a sqlite URL (to create its folder), None for other databases or in-memory."""
    prefix = "sqlite:///"
    if not db_url.startswith(prefix) or db_url in (prefix, "sqlite:///:memory:"):
        return None
    return Path(db_url[len(prefix) :])
