"""The documented facts a rule may read (规则事实), from `data/facts.yaml`: namespaces, fields, types, names.

Pure data access: `catalogue()` loads the file once; `namespaces_for(trigger_kind, signal)` says what a trigger
provides; `defaults()` fills a namespace a given event lacks, so that a condition always sees every fact it names.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

FACT_TYPES = ("int", "float", "str", "bool", "date", "list")
ALWAYS = ("event", "store", "params")  # every trigger provides these
CUSTOM_SIGNAL_PREFIX = "rule."
CUSTOM_SIGNAL_NAMESPACES = ("signal",)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Fact:
    """One fact: `namespace.field` with its type and its Chinese and English names."""

    namespace: str
    field: str
    type: str
    zh: str
    en: str
    doc: str

    @property
    def name(self) -> str:
        return f"{self.namespace}.{self.field}"


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    zh: str
    en: str
    fields: Mapping[str, Fact]


@dataclass(frozen=True, slots=True)
class Source:
    """A trigger kind or a signal: its names and the namespaces it provides (besides event, store, params)."""

    name: str
    zh: str
    en: str
    namespaces: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Catalogue:
    namespaces: Mapping[str, Namespace]
    triggers: Mapping[str, Source]
    signals: Mapping[str, Source]

    def fact(self, name: str) -> Fact | None:
        namespace, _, field = name.partition(".")
        ns = self.namespaces.get(namespace)
        return None if ns is None else ns.fields.get(field)

    def all_facts(self) -> list[Fact]:
        return [fact for ns in self.namespaces.values() for fact in ns.fields.values()]

    def close_names(self, name: str, among: tuple[str, ...]) -> list[str]:
        """Documented fact names near `name` among the namespaces `among` (for "did you mean")."""
        names = [f.name for n in among if n in self.namespaces for f in self.namespaces[n].fields.values()]
        return difflib.get_close_matches(name, names, n=3, cutoff=0.5)


@lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    """The fact catalogue shipped with the box (validated when loaded: a bad file fails at start, not later)."""
    text = resources.files("edge.rules").joinpath("data", "facts.yaml").read_text(encoding="utf-8")
    return parse_catalogue(yaml.safe_load(text))


def parse_catalogue(doc: Mapping[str, Any]) -> Catalogue:
    namespaces: dict[str, Namespace] = {}
    for ns_name, ns in doc["namespaces"].items():
        fields: dict[str, Fact] = {}
        for field, spec in (ns.get("fields") or {}).items():
            if not isinstance(field, str):  # YAML reads a bare `no:` or `on:` as a boolean
                raise ValueError(f"facts.yaml: {ns_name}: field name {field!r} is not text (quote it)")
            if spec["type"] not in FACT_TYPES:
                raise ValueError(f"facts.yaml: {ns_name}.{field}: unknown type {spec['type']!r}")
            fields[field] = Fact(ns_name, field, spec["type"], spec["zh"], spec["en"], spec.get("doc", ""))
        namespaces[ns_name] = Namespace(ns_name, ns["zh"], ns["en"], fields)

    def sources(section: Mapping[str, Any]) -> dict[str, Source]:
        found = {}
        for name, spec in section.items():
            unknown = [n for n in spec["namespaces"] if n not in namespaces]
            if unknown:
                raise ValueError(f"facts.yaml: {name}: unknown namespaces {unknown}")
            found[name] = Source(name, spec["zh"], spec["en"], tuple(spec["namespaces"]))
        return found

    return Catalogue(namespaces, sources(doc["triggers"]), sources(doc["signals"]))


def namespaces_for(kind: str, signal: str | None = None) -> tuple[str, ...]:
    """The namespaces an event of this trigger kind (and signal name) provides; () when there is no such trigger."""
    cat = catalogue()
    if kind == "signal":
        if signal is None:
            return ()
        if signal.startswith(CUSTOM_SIGNAL_PREFIX):
            return (*ALWAYS, *CUSTOM_SIGNAL_NAMESPACES)
        source = cat.signals.get(signal)
        return () if source is None else (*ALWAYS, *source.namespaces)
    source = cat.triggers.get(kind)
    return () if source is None else (*ALWAYS, *source.namespaces)


_DEFAULTS: dict[str, Any] = {"int": 0, "float": 0.0, "str": "", "bool": False, "date": EPOCH, "list": ()}


def complete(
    facts: Mapping[str, Mapping[str, Any]], namespaces: tuple[str, ...], params: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """`facts` with every field of `namespaces` present (documented defaults for what the event lacks: "", 0,
    false, 1970-01-01) and dates as datetimes, which is what the expression engine compares."""
    cat = catalogue()
    out: dict[str, dict[str, Any]] = {}
    for name in namespaces:
        given = facts.get(name) or {}
        if name == "params":
            out[name] = {**params, **given}
            continue
        ns = cat.namespaces[name]
        values: dict[str, Any] = {}
        for field, fact in ns.fields.items():
            value = given.get(field)
            values[field] = _DEFAULTS[fact.type] if value is None else _coerce(value, fact.type)
        out[name] = values
    return out


def _coerce(value: Any, type_: str) -> Any:
    if type_ == "date":
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if type_ == "list":
        return tuple(value)
    return value
