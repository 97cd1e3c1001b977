"""A scenario module's manifest (`manifest.yaml` at the package root): who it is, what it listens to, what it
may do, how it is measured and what it may spend.

```yaml
name: near-expiry
version: 3
title: {zh: 临期商品清货, en: Near-expiry clearance}
entry: module.py
subscribes: [{kind: ledger, doc_type: sale}, {kind: schedule, cron: "0 * * * *"}, {kind: alert, alert: cold-room}]
may: [notify, create_draft, open_ticket]
kpis: {window: 200, precision_min: 0.92, false_positive_max: 0.05, min_decisions: 50}
budget: {timeout_seconds: 10, memory_mb: 256, cpu_seconds: 20}
params: {days_before_expiry: 3}
```

`parse_manifest` refuses anything else with `ManifestInvalid` naming the field (Chinese and English).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.modules.errors import ManifestInvalid

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
MAX_MANIFEST_BYTES = 256 * 1024
MAX_PARAMS_BYTES = 64 * 1024
_KEY = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Title(_Strict):
    zh: str = Field(min_length=1, max_length=100)
    en: str = Field(min_length=1, max_length=100)


class Subscription(_Strict):
    """One trigger the module listens to; the same kinds as a rule's trigger."""

    kind: Literal["ledger", "bus", "alert", "schedule", "signal"]
    doc_type: str | None = None
    event: str | None = None
    alert: str | None = None
    cron: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _one_field(self) -> Subscription:
        need = {"ledger": "doc_type", "bus": "event", "alert": "alert", "schedule": "cron", "signal": "name"}[self.kind]
        given = {k for k in ("doc_type", "event", "alert", "cron", "name") if getattr(self, k) is not None}
        if given != {need}:
            raise ValueError(f"a {self.kind} subscription has exactly the field `{need}`")
        from edge.rules.errors import RuleInvalid
        from edge.rules.model import parse_trigger

        try:
            parse_trigger(self.as_trigger())
        except RuleInvalid as exc:
            raise ValueError(exc.message_en) from None
        return self

    def where(self, teams: tuple[str, ...] = ()) -> Any:
        """What the rules' catalogue checks this subscription's proposals against (edge.rules.catalogue.Where)."""
        from edge.rules.catalogue import Where
        from edge.rules.model import parse_trigger

        trigger = parse_trigger(self.as_trigger())
        return Where(
            namespaces=trigger.namespaces,
            trigger_kind=self.kind,
            doc_type=self.doc_type,
            signal=self.name,
            teams=teams,
            field="proposal",
        )

    @property
    def event_kind(self) -> str:
        """The event kind this subscription receives: `ledger:sale`, `alert:cold-room`, `schedule:<cron>`, ..."""
        value = {"ledger": self.doc_type, "bus": self.event, "alert": self.alert, "schedule": self.cron}.get(
            self.kind, self.name
        )
        return f"{self.kind}:{value}"

    def as_trigger(self) -> dict[str, str]:
        """The rule-trigger document of this subscription (`{kind, doc_type}` ...)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Kpis(_Strict):
    """Measured over the last `window` judged decisions; thresholds act once `min_decisions` were judged."""

    window: int = Field(200, ge=1, le=100_000)
    precision_min: float = Field(0.92, ge=0, le=1)
    false_positive_max: float = Field(0.05, ge=0, le=1)
    min_decisions: int = Field(50, ge=1, le=100_000)


class Budget(_Strict):
    """What one module may spend: wall clock per call, memory of its process, CPU seconds per call."""

    timeout_seconds: float = Field(10, gt=0, le=600)
    memory_mb: int = Field(256, ge=64, le=16_384)
    cpu_seconds: int = Field(20, ge=1, le=3600)


class ManifestModel(_Strict):
    name: str
    version: int = Field(ge=1, le=2**31 - 1)
    title: Title
    description: str = Field("", max_length=4000)
    entry: str = Field("module.py", min_length=1, max_length=200)
    subscribes: list[Subscription] = Field(min_length=1, max_length=50)
    may: list[str] = Field(min_length=0, max_length=20)
    kpis: Kpis = Field(default_factory=lambda: Kpis.model_validate({}))
    budget: Budget = Field(default_factory=lambda: Budget.model_validate({}))
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.fullmatch(value):
            raise ValueError("lower-case letters, digits and '-', 1..64 characters, e.g. near-expiry")
        return value

    @field_validator("version", mode="before")
    @classmethod
    def _int_version(cls, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("a whole number >= 1")
        return value

    @field_validator("entry")
    @classmethod
    def _entry(cls, value: str) -> str:
        parts = value.split("/")
        if value.startswith("/") or any(p in ("", ".", "..") for p in parts) or not value.endswith(".py"):
            raise ValueError("a .py file inside the module, e.g. module.py")
        return value

    @field_validator("may")
    @classmethod
    def _may(cls, value: list[str]) -> list[str]:
        from edge.rules.catalogue import actions

        known = tuple(actions().actions)
        unknown = [a for a in value if a not in known]
        if unknown:
            raise ValueError(f"not in the action catalogue: {', '.join(unknown)} (known: {', '.join(known)})")
        if len(set(value)) != len(value):
            raise ValueError("an action is listed twice")
        return value

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"params must be plain JSON values: {exc}") from None
        if len(text.encode()) > MAX_PARAMS_BYTES:
            raise ValueError(f"params larger than {MAX_PARAMS_BYTES} bytes")
        return value


@dataclass(frozen=True, slots=True)
class Manifest:
    """A checked manifest."""

    name: str
    version: int
    title: Mapping[str, str]
    description: str
    entry: str
    subscribes: tuple[Subscription, ...]
    may: tuple[str, ...]
    kpis: Kpis
    budget: Budget
    params: Mapping[str, Any] = field(default_factory=dict)

    def subscribed(self, event_kind: str) -> bool:
        return any(s.event_kind == event_kind for s in self.subscribes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "title": dict(self.title),
            "description": self.description,
            "entry": self.entry,
            "subscribes": [s.as_trigger() for s in self.subscribes],
            "may": list(self.may),
            "kpis": self.kpis.model_dump(),
            "budget": self.budget.model_dump(),
            "params": dict(self.params),
        }


def _field_of(error: Mapping[str, Any]) -> str:
    return ".".join(str(p) for p in error.get("loc", ())) or "(top)"


def parse_manifest(doc: object, *, source: str = "manifest.yaml") -> Manifest:
    """Check a loaded manifest document; ManifestInvalid names the first problem and lists them all."""
    if not isinstance(doc, Mapping):
        raise ManifestInvalid(
            f"{source}: 清单应为键值映射", f"{source}: the manifest must be a mapping", field="(top)", problems=[]
        )
    try:
        model = ManifestModel.model_validate(dict(doc))
    except ValidationError as exc:
        problems = [f"{_field_of(e)}: {e['msg']}"[:300] for e in exc.errors()]
        first = problems[0]
        raise ManifestInvalid(
            f"{source}: 清单无效: {first}",
            f"{source}: manifest refused: {first}",
            field=_field_of(exc.errors()[0]),
            problems=problems[:50],
        ) from None
    return Manifest(
        name=model.name,
        version=model.version,
        title=model.title.model_dump(),
        description=model.description,
        entry=model.entry,
        subscribes=tuple(model.subscribes),
        may=tuple(model.may),
        kpis=model.kpis,
        budget=model.budget,
        params=model.params,
    )


def load_manifest_text(data: bytes | str, *, source: str = "manifest.yaml") -> Manifest:
    """Parse manifest.yaml's bytes (UTF-8 YAML, at most 256 KiB) and check it."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestInvalid(
            f"{source}: 清单超过 {MAX_MANIFEST_BYTES} 字节",
            f"{source}: manifest larger than {MAX_MANIFEST_BYTES} bytes",
            field="(top)",
        )
    try:
        doc = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ManifestInvalid(f"{source}: 不是 UTF-8", f"{source}: not UTF-8", field="(top)") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise ManifestInvalid(
            f"{source}: YAML 无法解析: {str(exc)[:200]}",
            f"{source}: YAML does not parse: {str(exc)[:200]}",
            field="(top)",
        ) from None
    return parse_manifest(doc, source=source)


def load_manifest_file(path: Path) -> Manifest:
    """Read and check `<module dir>/manifest.yaml`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestInvalid(
            f"读不到清单 {path}: {exc.strerror}", f"cannot read the manifest {path}: {exc.strerror}", field="(top)"
        ) from None
    return load_manifest_text(data, source=str(path.name))
