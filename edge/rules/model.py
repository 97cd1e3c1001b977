"""A rule as data (业务规则): trigger, condition, parameters and actions, with owner and business impact.

`validate_rule(doc)` is the one check every path uses (the API at save, rule packs, the CLI): it returns a
`Rule` or raises a `RuleInvalid` subclass with a Chinese and an English message and the field at fault —
a malformed document, a condition that does not parse or names an undocumented fact, an action outside the
catalogue, or a loop (the rule's signals lead back to its own trigger).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from edge.ledger.commands import DocType
from edge.rules.catalogue import MAX_ACTIONS, PLACEHOLDER, Action, Where, validate_action
from edge.rules.errors import RuleInvalid, RuleLoop
from edge.rules.expressions import Condition, compile_condition
from edge.rules.facts import CUSTOM_SIGNAL_PREFIX, catalogue, namespaces_for

RULE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
PARAM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
ALERT_KIND = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
BUS_EVENTS = ("sale", "scan", "temp", "weight", "receive", "asn", "attachment")
MAX_PARAMS = 20
MAX_CHAIN = 5  # signals raised by rules run at most this deep (a guard at run time; loops are refused at save)
KEYS = frozenset(
    {"id", "name", "description", "trigger", "when", "params", "then", "owner", "impact", "enabled", "state"}
)


class TriggerKind(StrEnum):
    LEDGER = "ledger"  # a posted document, once per line
    BUS = "bus"  # a device event
    ALERT = "alert"  # an alert the box publishes
    SCHEDULE = "schedule"  # a cron schedule in the store's time zone
    SIGNAL = "signal"  # a named signal (lead time changed, invoice registered, paper expiring, rule.<name>)


class RuleState(StrEnum):
    DRAFT = "draft"  # 草稿
    IN_REVIEW = "in_review"  # 审核中
    ACTIVE = "active"  # 生效
    RETIRED = "retired"  # 停用


STATE_NAMES: dict[RuleState, tuple[str, str]] = {
    RuleState.DRAFT: ("草稿", "draft"),
    RuleState.IN_REVIEW: ("审核中", "in review"),
    RuleState.ACTIVE: ("生效", "active"),
    RuleState.RETIRED: ("已停用", "retired"),
}


@dataclass(frozen=True, slots=True)
class Trigger:
    kind: TriggerKind
    value: str  # the doc type, event kind, alert kind, crontab or signal name

    @property
    def key(self) -> str:
        """`ledger:sale`, `bus:temp`, `alert:cold-room`, `schedule:0 8 * * *`, `signal:paper.expiring`."""
        return f"{self.kind.value}:{self.value}"

    @property
    def namespaces(self) -> tuple[str, ...]:
        return namespaces_for(self.kind.value, self.value if self.kind is TriggerKind.SIGNAL else None)

    def to_dict(self) -> dict[str, str]:
        name = {
            TriggerKind.LEDGER: "doc_type",
            TriggerKind.BUS: "event",
            TriggerKind.ALERT: "alert",
            TriggerKind.SCHEDULE: "cron",
            TriggerKind.SIGNAL: "name",
        }[self.kind]
        return {"kind": self.kind.value, name: self.value}


@dataclass(frozen=True, slots=True)
class Impact:
    """What the rule changes, for whom, and how much (业务影响)."""

    what: str
    who: str
    how_much: str


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    name_zh: str
    name_en: str
    trigger: Trigger
    when: str
    params: Mapping[str, Any]
    then: tuple[Action, ...]
    condition: Condition = field(repr=False, compare=False)
    description: str = ""
    owner: str = ""
    impact: Impact | None = None
    enabled: bool = True
    state: RuleState | None = None  # as written in a pack; the store keeps the real state

    @property
    def emits(self) -> tuple[str, ...]:
        """Signals this rule raises (emit_signal actions)."""
        return tuple(str(a.fields["name"]) for a in self.then if a.kind == "emit_signal")

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id,
            "name": {"zh": self.name_zh, "en": self.name_en},
            "trigger": self.trigger.to_dict(),
            "when": self.when,
            "params": dict(self.params),
            "then": [a.to_dict() for a in self.then],
            "enabled": self.enabled,
        }
        if self.description:
            doc["description"] = self.description
        if self.owner:
            doc["owner"] = self.owner
        if self.impact is not None:
            doc["impact"] = {"what": self.impact.what, "who": self.impact.who, "how_much": self.impact.how_much}
        if self.state is not None:
            doc["state"] = self.state.value
        return doc

    def missing_for_review(self) -> list[str]:
        """What a rule needs before it may go to review: an owner and all three parts of its impact."""
        missing = [] if self.owner else ["owner"]
        if self.impact is None:
            missing.append("impact")
        return missing


def _invalid(field_: str, zh: str, en: str, **detail: Any) -> RuleInvalid:
    return RuleInvalid(f"{field_}: {zh}", f"{field_}: {en}", field=field_, **detail)


def _text(doc: Mapping[str, Any], key: str, *, required: bool, limit: int = 2000) -> str:
    value = doc.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > limit:
        raise _invalid(key, f"必须是不超过 {limit} 字的文字", f"must be text of at most {limit} characters")
    return value.strip()


def parse_trigger(value: Any) -> Trigger:
    if not isinstance(value, Mapping) or not isinstance(value.get("kind"), str):
        raise _invalid(
            "trigger",
            "触发条件必须写明 kind (ledger, bus, alert, schedule, signal)",
            "the trigger needs a kind (ledger, bus, alert, schedule, signal)",
        )
    try:
        kind = TriggerKind(value["kind"])
    except ValueError:
        raise _invalid(
            "trigger.kind",
            f"未知的触发类型 {value['kind']!r}; 可用: ledger, bus, alert, schedule, signal",
            f"unknown trigger kind {value['kind']!r}; known: ledger, bus, alert, schedule, signal",
        ) from None
    key = {
        TriggerKind.LEDGER: "doc_type",
        TriggerKind.BUS: "event",
        TriggerKind.ALERT: "alert",
        TriggerKind.SCHEDULE: "cron",
        TriggerKind.SIGNAL: "name",
    }[kind]
    extra = set(value) - {"kind", key}
    if extra:
        raise _invalid("trigger", f"多余的字段 {sorted(extra)}", f"unexpected fields {sorted(extra)}")
    raw = value.get(key)
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 200:
        raise _invalid(f"trigger.{key}", "必须填写", "is required")
    raw = raw.strip()
    if kind is TriggerKind.LEDGER and raw not in {t.value for t in DocType}:
        known = ", ".join(t.value for t in DocType)
        raise _invalid(
            "trigger.doc_type",
            f"未知的单据类型 {raw!r}; 可用: {known}",
            f"unknown document type {raw!r}; known: {known}",
        )
    if kind is TriggerKind.BUS and raw not in BUS_EVENTS:
        known = ", ".join(BUS_EVENTS)
        raise _invalid(
            "trigger.event", f"未知的设备事件 {raw!r}; 可用: {known}", f"unknown device event {raw!r}; known: {known}"
        )
    if kind is TriggerKind.ALERT and not ALERT_KIND.match(raw):
        raise _invalid("trigger.alert", f"告警类型写法不对: {raw!r}", f"not an alert kind: {raw!r}")
    if kind is TriggerKind.ALERT and raw == "rule":
        raise _invalid(
            "trigger.alert",
            "规则的通知 (alert/rule) 不能触发规则 (否则会循环); 请用 emit_signal 与 signal 触发条件串联规则",
            "a rule's notice (alert/rule) never triggers a rule (it would loop); chain rules with emit_signal and a "
            "signal trigger",
        )
    if kind is TriggerKind.SCHEDULE:
        check_cron(raw)
    if kind is TriggerKind.SIGNAL:
        known_signals = catalogue().signals
        if raw not in known_signals and not re.match(r"^rule\.[a-z0-9_.-]{1,60}$", raw):
            known = ", ".join([*known_signals, "rule.<name>"])
            raise _invalid(
                "trigger.name", f"未知的信号 {raw!r}; 可用: {known}", f"unknown signal {raw!r}; known: {known}"
            )
    return Trigger(kind, raw)


def check_cron(text: str) -> None:
    """A five-field crontab (minute hour day month weekday), as APScheduler reads it."""
    from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

    fields = text.split()
    if len(fields) != 5:
        raise _invalid(
            "trigger.cron",
            f"定时必须是 5 段 (分 时 日 月 周): {text!r}",
            f"a schedule has five fields (minute hour day month weekday): {text!r}",
        )
    try:
        CronTrigger.from_crontab(text, timezone="UTC")
    except (ValueError, TypeError) as exc:
        raise _invalid("trigger.cron", f"定时写法不对: {exc}", f"not a valid schedule: {exc}") from None


def _params(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or len(value) > MAX_PARAMS:
        raise _invalid(
            "params", f"参数必须是最多 {MAX_PARAMS} 个名称和值", f"params must map at most {MAX_PARAMS} names to values"
        )
    out: dict[str, Any] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not PARAM_NAME.match(name):
            raise _invalid(
                "params",
                f"参数名 {name!r} 不合法 (小写字母、数字、下划线)",
                f"bad parameter name {name!r} (a-z, 0-9, _)",
            )
        ok_scalar = isinstance(item, bool | int | float | str) and (not isinstance(item, str) or len(item) <= 200)
        ok_list = isinstance(item, list) and len(item) <= 50 and all(isinstance(v, str | int | float) for v in item)
        if not (ok_scalar or ok_list) or (isinstance(item, float) and item != item):
            raise _invalid(
                f"params.{name}",
                "值必须是数字、文字、真假或短列表",
                "must be a number, text, true/false or a short list",
            )
        out[name] = item
    return out


def validate_rule(doc: Any, *, known_rules: Mapping[str, Rule] | None = None, teams: Collection[str] = ()) -> Rule:
    """Check a rule document; `known_rules` (the other rules in force, by id) are used to refuse loops."""
    if not isinstance(doc, Mapping):
        raise RuleInvalid("规则必须是一个对象", "a rule must be an object", field="")
    extra = set(doc) - KEYS
    if extra:
        raise _invalid(sorted(extra)[0], "不认识的字段", "unknown field", fields=sorted(extra))
    rule_id = doc.get("id")
    if not isinstance(rule_id, str) or not RULE_ID.match(rule_id):
        raise _invalid(
            "id",
            "规则编号由小写字母、数字和 . _ - 组成, 最多 64 个字符",
            "a rule id is lower-case letters, digits and . _ -, at most 64 characters",
        )
    name = doc.get("name")
    if isinstance(name, str):
        name = {"zh": name, "en": name}
    if not isinstance(name, Mapping) or not all(isinstance(name.get(k), str) and name[k].strip() for k in ("zh", "en")):
        raise _invalid("name", "需要中文和英文名称 {zh, en}", "needs a Chinese and an English name {zh, en}")
    if any(len(name[k]) > 200 for k in ("zh", "en")):
        raise _invalid("name", "名称最多 200 字", "a name has at most 200 characters")
    trigger = parse_trigger(doc.get("trigger"))
    params = _params(doc.get("params"))
    condition = compile_condition(doc.get("when"), trigger.namespaces, params)
    then = doc.get("then")
    if not isinstance(then, list) or not 1 <= len(then) <= MAX_ACTIONS:
        raise _invalid("then", f"需要 1 到 {MAX_ACTIONS} 个动作", f"needs 1 to {MAX_ACTIONS} actions")
    where = dict(
        namespaces=trigger.namespaces,
        trigger_kind=trigger.kind.value,
        doc_type=trigger.value if trigger.kind is TriggerKind.LEDGER else None,
        signal=trigger.value if trigger.kind is TriggerKind.SIGNAL else None,
        teams=tuple(teams),
        params=tuple(params),
    )
    actions = tuple(validate_action(spec, Where(**where, field=f"then[{n}]")) for n, spec in enumerate(then, 1))  # type: ignore[arg-type]
    impact = doc.get("impact")
    parsed_impact: Impact | None = None
    if impact is not None:
        if not isinstance(impact, Mapping) or not all(
            isinstance(impact.get(k), str) and impact[k].strip() and len(impact[k]) <= 1000
            for k in ("what", "who", "how_much")
        ):
            raise _invalid(
                "impact",
                "业务影响需要写明 what (改变什么)、who (影响谁)、how_much (影响多大)",
                "the business impact needs what (it changes), who (it affects) and how_much",
            )
        parsed_impact = Impact(impact["what"].strip(), impact["who"].strip(), impact["how_much"].strip())
    enabled = doc.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _invalid("enabled", "必须是 true 或 false", "must be true or false")
    state = doc.get("state")
    if state is not None and state not in ("draft", "active"):
        raise _invalid("state", "规则包中的状态只能是 draft 或 active", "a packed rule's state is draft or active")
    rule = Rule(
        id=rule_id,
        name_zh=name["zh"].strip(),
        name_en=name["en"].strip(),
        trigger=trigger,
        when=condition.text,
        params=params,
        then=actions,
        condition=condition,
        description=_text(doc, "description", required=False),
        owner=_text(doc, "owner", required=False, limit=100),
        impact=parsed_impact,
        enabled=enabled,
        state=RuleState(state) if state else None,
    )
    check_loops(rule, known_rules or {})
    return rule


def check_loops(rule: Rule, others: Mapping[str, Rule]) -> None:
    """Refuse a rule whose raised signals come back to its own trigger through the rules in force."""
    rules = {**{k: v for k, v in others.items() if k != rule.id}, rule.id: rule}
    by_signal: dict[str, list[Rule]] = {}
    for candidate in rules.values():
        if candidate.trigger.kind is TriggerKind.SIGNAL and candidate.trigger.value.startswith(CUSTOM_SIGNAL_PREFIX):
            by_signal.setdefault(candidate.trigger.value, []).append(candidate)

    def walk(current: Rule, chain: list[str]) -> None:
        for signal in current.emits:
            for nxt in by_signal.get(signal, ()):
                if nxt.id == rule.id:
                    path = " -> ".join([*chain, f"{signal}", rule.id])
                    raise RuleLoop(
                        f"规则会循环触发自己: {path}",
                        f"the rule would trigger itself without end: {path}",
                        field="then",
                        chain=path,
                    )
                if nxt.id not in chain:
                    walk(nxt, [*chain, signal, nxt.id])

    walk(rule, [rule.id])


def render_text(template: Mapping[str, str], facts: Mapping[str, Mapping[str, Any]]) -> tuple[str, str]:
    """A {zh, en} text with its `{namespace.field}` placeholders filled from the event's facts."""

    def fill(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            value = (facts.get(match.group(1)) or {}).get(match.group(2))
            return format_fact(value)

        return PLACEHOLDER.sub(one, text)

    return fill(template["zh"]), fill(template["en"])


def render_one(text: str, facts: Mapping[str, Mapping[str, Any]]) -> str:
    return render_text({"zh": text, "en": text}, facts)[0]


def format_fact(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是/yes" if value else "否/no"
    if isinstance(value, datetime):
        return value.date().isoformat() if (value.hour, value.minute, value.second) == (0, 0, 0) else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)
