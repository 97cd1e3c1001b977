"""The fixed action catalogue (动作目录) shared by rules and scenario modules, from `data/actions.yaml`.

`validate_action(spec, where)` checks one action of a rule (or a module's proposal): its JSON Schema, then what a
schema cannot say — every `{namespace.field}` placeholder is a fact the trigger provides, a role or team exists,
a parameter's bounds lie inside what the planner accepts, a hold or a return route has something to act on.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from edge.rules.errors import RuleActionInvalid, RuleFactUnknown
from edge.rules.facts import catalogue as fact_catalogue

PLACEHOLDER = re.compile(r"\{([a-z_]+)\.([a-z_]+)\}")
MAX_ACTIONS = 10
# The planner's own limits of each parameter (item_suppliers CHECK constraints, edge/replenishment/migrations).
PARAMETER_LIMITS: dict[str, tuple[float, float]] = {
    "service_level": (0.5, 0.999),
    "lead_time_days": (0.0, 365.0),
    "review_days": (0.01, 365.0),
}
HOLDABLE_SIGNALS = ("invoice.registered",)
RETURN_DOC_TYPES = ("customer_return", "supplier_return")
ROLES = ("admin", "manager", "clerk", "purchaser", "accountant", "auditor")


@dataclass(frozen=True, slots=True)
class ActionKind:
    name: str
    zh: str
    en: str
    doc: str
    schema: Mapping[str, Any]
    doc_zh: str = ""


@dataclass(frozen=True, slots=True)
class ActionCatalogue:
    actions: Mapping[str, ActionKind]
    teams: Mapping[str, tuple[str, str]]
    channels: Mapping[str, tuple[str, str]]
    validators: Mapping[str, Draft202012Validator] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Action:
    """One checked action: its kind and its fields (as written, without `action`)."""

    kind: str
    fields: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.kind, **self.fields}


@dataclass(frozen=True, slots=True)
class Where:
    """What the action is checked against: the trigger's namespaces and kind, and the box's extra teams."""

    namespaces: tuple[str, ...]
    trigger_kind: str
    doc_type: str | None = None
    signal: str | None = None
    teams: Collection[str] = ()
    field: str = "then[1]"
    params: Collection[str] = ()  # the rule's own params: `{params.<name>}` placeholders may name them


@lru_cache(maxsize=1)
def actions() -> ActionCatalogue:
    text = resources.files("edge.rules").joinpath("data", "actions.yaml").read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    kinds: dict[str, ActionKind] = {}
    validators: dict[str, Draft202012Validator] = {}
    for name, spec in doc["actions"].items():
        schema = {
            "type": "object",
            "additionalProperties": False,
            "definitions": doc["definitions"],
            **spec["schema"],
            "properties": {"action": {"const": name}, **spec["schema"].get("properties", {})},
        }
        Draft202012Validator.check_schema(schema)
        kinds[name] = ActionKind(name, spec["zh"], spec["en"], spec["doc"], schema, spec.get("doc_zh", spec["doc"]))
        validators[name] = Draft202012Validator(schema)
    teams = {k: (v["zh"], v["en"]) for k, v in doc["teams"].items()}
    channels = {k: (v["zh"], v["en"]) for k, v in doc["channels"].items()}
    return ActionCatalogue(kinds, teams, channels, validators)


def targets(extra_teams: Collection[str] = ()) -> tuple[str, ...]:
    """Every role or team a notice or ticket may go to."""
    return (*ROLES, *actions().teams, *(t for t in extra_teams if t not in actions().teams))


def _invalid(where: Where, zh: str, en: str, **detail: Any) -> RuleActionInvalid:
    return RuleActionInvalid(f"{where.field}: {zh}", f"{where.field}: {en}", field=where.field, **detail)


def template_facts(value: Any) -> list[str]:
    """The `{namespace.field}` placeholders in a text field (a string, or a {zh, en} pair)."""
    texts = value.values() if isinstance(value, Mapping) else [value]
    return [f"{m.group(1)}.{m.group(2)}" for text in texts if isinstance(text, str) for m in PLACEHOLDER.finditer(text)]


def validate_action(spec: Any, where: Where) -> Action:
    """`spec` ({"action": kind, ...fields}) checked against the catalogue and the trigger; raises
    RuleActionInvalid (or RuleFactUnknown for a placeholder) naming the field."""
    cat = actions()
    if not isinstance(spec, Mapping):
        raise _invalid(where, "动作必须是一个对象", "an action must be an object")
    kind = spec.get("action")
    if not isinstance(kind, str) or kind not in cat.actions:
        known = ", ".join(cat.actions)
        raise _invalid(
            where, f"未知的动作 {kind!r}; 可用: {known}", f"unknown action {kind!r}; known: {known}", action=kind
        )
    errors = sorted(cat.validators[kind].iter_errors(dict(spec)), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        path = ".".join(str(p) for p in error.absolute_path) or kind
        raise _invalid(
            where,
            f"{cat.actions[kind].zh} 的字段 {path} 不正确: {error.message[:200]}",
            f"field {path} of {kind} is wrong: {error.message[:200]}",
            action=kind,
            path=path,
        )
    fields = {k: v for k, v in spec.items() if k != "action"}
    for key, value in fields.items():
        for name in template_facts(value):
            namespace, _, field_name = name.partition(".")
            if namespace == "params" and field_name in where.params:
                continue
            fact = fact_catalogue().fact(name)
            if fact is None or namespace not in where.namespaces:
                raise RuleFactUnknown(
                    f"{where.field}.{key}: 模板中的 {{{name}}} 不是此触发条件提供的事实",
                    f"{where.field}.{key}: the placeholder {{{name}}} is not a fact this rule's trigger provides",
                    field=f"{where.field}.{key}",
                    fact=name,
                )
    _check_kind(kind, fields, where)
    return Action(kind, fields)


def _check_kind(kind: str, fields: Mapping[str, Any], where: Where) -> None:
    allowed = targets(where.teams)
    for key in ("role", "queue"):
        if key in fields and fields[key] not in allowed:
            raise _invalid(
                where,
                f"没有角色或小组 {fields[key]!r}; 可用: {', '.join(allowed)}",
                f"no role or team {fields[key]!r}; known: {', '.join(allowed)}",
                action=kind,
            )
    if kind == "send_email":
        for to in fields["to"]:
            if to.startswith("role:") and to[5:] not in allowed:
                raise _invalid(where, f"没有小组 {to[5:]!r}", f"no role or team {to[5:]!r}", action=kind)
    if kind == "adjust_parameter":
        _check_parameter(fields, where)
    if kind == "hold_document":
        holdable = where.trigger_kind == "ledger" or (
            where.trigger_kind == "signal" and where.signal in HOLDABLE_SIGNALS
        )
        if not holdable:
            raise _invalid(
                where,
                "挂起单据只能用于单据过账或发票登记触发的规则",
                "a hold needs a rule triggered by a posted document or a registered invoice",
                action=kind,
            )
    if kind == "tag_return":
        if where.trigger_kind != "ledger" or where.doc_type not in RETURN_DOC_TYPES:
            raise _invalid(
                where,
                "退货分流只能用于退货单过账触发的规则",
                "routing a return needs a rule triggered by a posted return",
                action=kind,
            )
        if fields["channel"] not in actions().channels:
            known = ", ".join(actions().channels)
            raise _invalid(
                where,
                f"没有退货渠道 {fields['channel']!r}; 可用: {known}",
                f"no channel {fields['channel']!r}; known: {known}",
            )
    if kind == "create_draft" and "sku" not in fields and not {"item", "line"} & set(where.namespaces):
        raise _invalid(
            where,
            "此触发条件没有商品: 请写 sku (可用 {item.sku} 之类的模板)",
            "this trigger has no item: give sku (a template such as {item.sku} works)",
            action=kind,
        )


def _check_parameter(fields: Mapping[str, Any], where: Where) -> None:
    parameter, scope = fields["parameter"], fields["scope"]
    low, high = PARAMETER_LIMITS[parameter]
    lo, hi = fields["min"], fields["max"]
    if ("by" in fields) == ("to" in fields):
        raise _invalid(
            where, "请给出 by (增减量) 或 to (目标值) 之一", "give exactly one of by (a change) or to (a value)"
        )
    if not (low <= lo <= hi <= high):
        raise _invalid(
            where,
            f"{parameter} 的上下限必须满足 {low} <= min <= max <= {high}",
            f"the bounds of {parameter} must satisfy {low} <= min <= max <= {high}",
            parameter=parameter,
        )
    if "to" in fields and not lo <= fields["to"] <= hi:
        raise _invalid(where, "目标值 to 不在 [min, max] 之内", "to lies outside [min, max]")
    if "by" in fields and abs(fields["by"]) > high - low:
        raise _invalid(where, "增减量 by 超出参数的范围", "by is larger than the parameter's whole range")
    if scope == "category":
        if "category" not in fields:
            raise _invalid(
                where, "按品类调整时请写明 category (品类编码)", "scope category needs the category (its code)"
            )
        return
    if "category" in fields:
        raise _invalid(where, "只有按品类调整时才写 category", "category goes only with scope category")
    if scope not in where.namespaces:
        raise _invalid(
            where,
            f"此触发条件不提供 {scope}, 无法按 {scope} 调整参数",
            f"this trigger provides no {scope} to adjust the parameter for",
            scope=scope,
        )
