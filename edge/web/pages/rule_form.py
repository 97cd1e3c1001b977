"""The rule editor's form (规则编辑表单): a rule document as form fields and back, the action catalogue as forms,
the fact picker's rows, and the API's problems placed next to the fields they are about.

Pure functions over plain values: the page (rules.py) fetches the catalogues through the API and renders; these
turn the answers into what the templates show and the submitted form into the rule document the API validates.
Nothing here decides whether a rule is valid: the API does (`POST /api/v1/rules/validate`), and its problems come
back next to their field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

TRIGGER_KINDS = ("ledger", "signal", "alert", "bus", "schedule")
# The key of each trigger kind's one value in the rule document.
TRIGGER_VALUE = {"ledger": "doc_type", "bus": "event", "alert": "alert", "schedule": "cron", "signal": "name"}
# Suggestions for the trigger's value (the API refuses anything else with a message naming the choices).
DOC_TYPES = (
    "sale",
    "customer_return",
    "receipt",
    "purchase_return",
    "write_off",
    "stocktake",
    "transfer_out",
    "transfer_in",
    "purchase_order",
)
BUS_EVENTS = ("sale", "scan", "temp", "weight", "receive", "asn", "attachment")
ALERT_KINDS = ("cold-room", "device-offline", "compliance", "returns", "rule", "module")
MAX_ACTIONS = 10
MAX_TEXT = 2000
PARAM_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
INNER_SPLIT = re.compile(r"[./\[]")
FIELD_PATH = re.compile(r"^then\[(\d+)\](?:\.([a-z_]+))?(?:\.(zh|en))?")
RULE_FIELDS = (
    "id",
    "name_zh",
    "name_en",
    "description",
    "trigger_kind",
    "trigger_value",
    "when",
    "params",
    "owner",
    "impact_what",
    "impact_who",
    "impact_how_much",
)
# Fields every action has besides its own.
ACTION_KIND = "action"


# --- the action catalogue as forms --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionField:
    """One field of an action's form: `text`, `bilingual` ({zh, en}), `number`, `select`, `list` or `bool`."""

    name: str
    kind: str
    required: bool = False
    options: tuple[str, ...] = ()
    zh: str = ""
    en: str = ""


@dataclass(frozen=True, slots=True)
class ActionForm:
    kind: str
    zh: str
    en: str
    fields: tuple[ActionField, ...] = field(default_factory=tuple)
    description_zh: str = ""
    description_en: str = ""


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _names(entry: Mapping[str, Any]) -> tuple[str, str]:
    """The zh and en names of a catalogue entry, wherever the API puts them."""
    for key in ("name", "title", "label"):
        value = entry.get(key)
        if isinstance(value, Mapping):
            return _text(value.get("zh")), _text(value.get("en"))
    return _text(entry.get("zh") or entry.get("name_zh")), _text(entry.get("en") or entry.get("name_en"))


def _resolved(spec: Mapping[str, Any], definitions: Mapping[str, Any]) -> Mapping[str, Any]:
    """A field's schema with a local `$ref` (`#/definitions/text`) replaced by what it names."""
    ref = spec.get("$ref")
    if isinstance(ref, str) and ref.startswith(("#/definitions/", "#/$defs/")):
        target = definitions.get(ref.rsplit("/", 1)[-1])
        if isinstance(target, Mapping):
            return {**target, **{k: v for k, v in spec.items() if k != "$ref"}}
    return spec


def _field_of(name: str, spec: Mapping[str, Any], required: bool) -> ActionField:
    zh, en = _names(spec)
    if not zh and not en:
        zh, en = _text(spec.get("title")), _text(spec.get("description"))
    kind = spec.get("type")
    options = spec.get("enum")
    if isinstance(options, list) and options:
        return ActionField(name, "select", required, tuple(str(o) for o in options), zh, en)
    props = spec.get("properties")
    if kind == "object" and isinstance(props, Mapping) and {"zh", "en"} <= set(props):
        return ActionField(name, "bilingual", required, (), zh, en)
    if kind in ("number", "integer"):
        return ActionField(name, "number", required, (), zh, en)
    if kind == "array":
        return ActionField(name, "list", required, (), zh, en)
    if kind == "boolean":
        return ActionField(name, "bool", required, (), zh, en)
    if isinstance(kind, list) and "array" in kind:  # `to`: a list of addresses or one role
        return ActionField(name, "list", required, (), zh, en)
    return ActionField(name, "text", required, (), zh, en)


def suggestions(catalogue: Any) -> dict[str, list[tuple[str, str, str]]]:
    """Values to suggest for the free-text target fields: teams for `role`/`queue`, channels for `channel`,
    as (value, zh, en)."""
    if not isinstance(catalogue, Mapping):
        return {}

    def listed(key: str) -> list[tuple[str, str, str]]:
        entries = catalogue.get(key)
        if isinstance(entries, Mapping):
            return [(str(k), *_names(v)) for k, v in entries.items() if isinstance(v, Mapping)]
        found: list[tuple[str, str, str]] = []
        for entry in entries if isinstance(entries, list) else ():
            if isinstance(entry, str):
                found.append((entry, "", ""))
            elif isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
                found.append((entry["name"], _text(entry.get("zh")), _text(entry.get("en"))))
        return found

    teams = listed("teams") + listed("roles")
    return {"role": teams, "queue": teams, "channel": listed("channels")}


def action_forms(catalogue: Any) -> dict[str, ActionForm]:
    """`GET /api/v1/rules/actions` as forms: {kind: ActionForm}, in the catalogue's order.

    Takes a list of entries or a mapping kind -> entry (wrapped in `actions` or not); each entry's fields come from
    its JSON schema (`schema.properties`, `required`), or from a `fields` mapping of the same shape."""
    definitions: Mapping[str, Any] = {}
    if isinstance(catalogue, Mapping) and "actions" in catalogue:
        if isinstance(catalogue.get("definitions"), Mapping):
            definitions = catalogue["definitions"]
        catalogue = catalogue["actions"]
    entries: list[tuple[str, Mapping[str, Any]]] = []
    if isinstance(catalogue, Mapping):
        entries = [(str(k), v) for k, v in catalogue.items() if isinstance(v, Mapping)]
    elif isinstance(catalogue, list):
        for entry in catalogue:
            if isinstance(entry, Mapping):
                kind = entry.get("action") or entry.get("kind") or entry.get("id")
                if isinstance(kind, str):
                    entries.append((kind, entry))
    forms: dict[str, ActionForm] = {}
    for kind, entry in entries:
        schema: Mapping[str, Any] = _map(entry.get("schema")) or entry
        own = schema.get("definitions") or schema.get("$defs")
        if isinstance(own, Mapping):
            definitions = own
        props = schema.get("properties") if isinstance(schema.get("properties"), Mapping) else entry.get("fields")
        required = set(schema.get("required") or ())
        fields = tuple(
            _field_of(str(name), _resolved(spec, definitions) if isinstance(spec, Mapping) else {}, name in required)
            for name, spec in (props or {}).items()
            if name != ACTION_KIND
        )
        zh, en = _names(entry)
        description = entry.get("description") or entry.get("doc")
        dzh, den = (
            (_text(description.get("zh")), _text(description.get("en")))
            if isinstance(description, Mapping)
            else (_text(description), _text(description))
        )
        forms[kind] = ActionForm(kind, zh or kind, en or kind, fields, dzh, den)
    return forms


# --- the fact picker -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fact:
    """One fact the condition may name: `namespace.field`, its type, names and description."""

    path: str
    type: str
    zh: str
    en: str
    doc: str = ""


@dataclass(frozen=True, slots=True)
class FactGroup:
    namespace: str
    zh: str
    en: str
    facts: tuple[Fact, ...]


def normal_facts(answer: Any) -> dict[str, Any]:
    """`GET /api/v1/rules/facts` as mappings: {namespaces: {ns: {zh, en, fields: {field: spec}}}, triggers: {kind:
    {zh, en, namespaces}}, signals: {name: {zh, en, namespaces}}} (the API answers lists of named entries)."""
    if not isinstance(answer, Mapping):
        return {"namespaces": {}, "triggers": {}, "signals": {}}

    def keyed(section: Any, key: str) -> dict[str, Any]:
        if isinstance(section, Mapping):
            return {str(k): v for k, v in section.items() if isinstance(v, Mapping)}
        if isinstance(section, list):
            return {str(e[key]): e for e in section if isinstance(e, Mapping) and isinstance(e.get(key), str)}
        return {}

    spaces = {}
    for name, entry in keyed(answer.get("namespaces"), "name").items():
        fields = entry.get("fields")
        if isinstance(fields, list):
            fields = {
                str(f.get("field") or str(f.get("name", "")).rpartition(".")[2]): f
                for f in fields
                if isinstance(f, Mapping)
            }
        spaces[name] = {**entry, "fields": fields if isinstance(fields, Mapping) else {}}
    return {
        "namespaces": spaces,
        "triggers": keyed(answer.get("triggers"), "kind"),
        "signals": keyed(answer.get("signals"), "name"),
    }


def trigger_choices(facts: Mapping[str, Any]) -> dict[str, dict[str, tuple[str, str]]]:
    """The values each trigger kind suggests, with their zh/en names where the catalogue gives them."""
    signals = _map(facts.get("signals"))
    return {
        "ledger": {d: ("", "") for d in DOC_TYPES},
        "bus": {e: ("", "") for e in BUS_EVENTS},
        "alert": {a: ("", "") for a in ALERT_KINDS},
        "schedule": {"0 8 * * *": ("", ""), "0 * * * *": ("", "")},
        "signal": {str(name): _names(entry) for name, entry in signals.items() if isinstance(entry, Mapping)},
    }


def namespaces_for(facts: Mapping[str, Any], kind: str, value: str) -> list[str]:
    """The namespaces a trigger provides: its own (a signal's by name; `rule.*` signals give `signal`) plus event,
    store and params, which every trigger provides."""
    triggers = _map(facts.get("triggers"))
    signals = _map(facts.get("signals"))
    own: list[str] = []
    if kind == "signal":
        entry = signals.get(value)
        if isinstance(entry, Mapping):
            own = [str(n) for n in entry.get("namespaces") or ()]
        elif value.startswith("rule."):
            own = ["signal"]
    else:
        entry = triggers.get(kind)
        if isinstance(entry, Mapping):
            own = [str(n) for n in entry.get("namespaces") or ()]
        elif isinstance(entry, list):
            own = [str(n) for n in entry]
    # The trigger's own facts first (what a rule is about), then its params, then the event and the store.
    common = ("event", "store", "params")
    names = [n for n in own if n not in common] + ["params", "event", "store"]
    return list(dict.fromkeys(names))


def fact_groups(facts: Mapping[str, Any], kind: str, value: str, params: Mapping[str, Any]) -> list[FactGroup]:
    """The fact picker's rows for a trigger: each namespace it provides with its fields (params: the rule's own)."""
    spaces = _map(facts.get("namespaces"))
    groups = []
    for namespace in namespaces_for(facts, kind, value):
        entry = spaces.get(namespace)
        if not isinstance(entry, Mapping):
            continue
        zh, en = _names(entry)
        rows: list[Fact] = []
        fields = _map(entry.get("fields"))
        for name, spec in fields.items():
            if isinstance(spec, Mapping):
                fzh, fen = _names(spec)
                doc = _text(spec.get("doc") or spec.get("description"))
                rows.append(Fact(f"{namespace}.{name}", _text(spec.get("type")), fzh, fen, doc))
        if namespace == "params":
            for name, param in params.items():
                rows.append(Fact(f"params.{name}", type_name(param), str(name), str(name), ""))
        groups.append(FactGroup(namespace, zh or namespace, en or namespace, tuple(rows)))
    return groups


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        return "list"
    return "str"


# --- the rule document as a form and back ------------------------------------------------------------------------


def rule_to_values(rule: Mapping[str, Any]) -> dict[str, str]:
    """A rule document as the editor's field values (`then-<i>-<field>[-zh|-en]` for the actions)."""
    name = _map(rule.get("name"))
    trigger = _map(rule.get("trigger"))
    impact = _map(rule.get("impact"))
    kind = _text(trigger.get("kind")) or "signal"
    params = _map(rule.get("params"))
    values = {
        "id": _text(rule.get("id")),
        "name_zh": _text(name.get("zh")),
        "name_en": _text(name.get("en")),
        "description": _text(rule.get("description")),
        "trigger_kind": kind,
        "trigger_value": _text(trigger.get(TRIGGER_VALUE.get(kind, "name"))),
        "when": _text(rule.get("when")),
        "params": params_text(params),
        "owner": _text(rule.get("owner")),
        "impact_what": _text(impact.get("what")),
        "impact_who": _text(impact.get("who")),
        "impact_how_much": _text(impact.get("how_much")),
        "enabled": "" if rule.get("enabled") is False else "1",
    }
    for index, action in enumerate(rule.get("then") or ()):
        if not isinstance(action, Mapping):
            continue
        prefix = f"then-{index}"
        for key, value in action.items():
            if isinstance(value, Mapping):
                values[f"{prefix}-{key}-zh"] = _text(value.get("zh"))
                values[f"{prefix}-{key}-en"] = _text(value.get("en"))
            elif isinstance(value, list):
                values[f"{prefix}-{key}"] = ", ".join(str(v) for v in value)
            elif isinstance(value, bool):
                values[f"{prefix}-{key}"] = "1" if value else ""
            elif value is not None:
                values[f"{prefix}-{key}"] = str(value)
    return values


def params_text(params: Mapping[str, Any]) -> str:
    """Params as the editor shows them: one `name: value` a line."""
    if not params:
        return ""
    return yaml.safe_dump(dict(params), allow_unicode=True, sort_keys=False, default_flow_style=False).strip()


def parse_params(text: str) -> tuple[dict[str, Any], str | None]:
    """The params field (`name: value` lines) as a mapping of names to numbers, text, true/false or lists; the
    problem's catalog key when it is not one."""
    if not text.strip():
        return {}, None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}, "rules.error.params"
    if not isinstance(loaded, dict):
        return {}, "rules.error.params"
    params: dict[str, Any] = {}
    for name, value in loaded.items():
        if not isinstance(name, str) or not PARAM_NAME.match(name):
            return {}, "rules.error.param_name"
        scalar = (str, int, float, bool)
        listed = isinstance(value, list) and all(isinstance(v, scalar) for v in value)
        if not isinstance(value, scalar) and not listed:
            return {}, "rules.error.params"
        params[name] = value
    return params, None


def action_indexes(form: Mapping[str, Any]) -> list[int]:
    """The indexes of the action slots a submitted form holds (`then-<i>-action`), in order."""
    found = set()
    for key in form:
        match = re.fullmatch(r"then-(\d{1,2})-action", str(key))
        if match:
            found.add(int(match.group(1)))
    return sorted(found)[:MAX_ACTIONS]


def _number(text: str) -> int | float | str:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text  # kept as typed: the API names the field and says what it takes


def action_from_form(form: Mapping[str, str], index: int, forms: Mapping[str, ActionForm]) -> dict[str, Any]:
    """One action slot of the form as an action spec: blank optional fields are left out."""
    prefix = f"then-{index}"
    kind = form.get(f"{prefix}-action", "")
    spec: dict[str, Any] = {ACTION_KIND: kind}
    action = forms.get(kind)
    if action is None:
        return spec
    for item in action.fields:
        key = f"{prefix}-{item.name}"
        if item.kind == "bilingual":
            zh, en = form.get(f"{key}-zh", "").strip(), form.get(f"{key}-en", "").strip()
            if zh or en or item.required:
                spec[item.name] = {"zh": zh, "en": en}
            continue
        text = form.get(key, "").strip()
        if item.kind == "bool":
            if text:
                spec[item.name] = True
            continue
        if not text and not item.required:
            continue
        if item.kind == "number":
            spec[item.name] = _number(text) if text else None
        elif item.kind == "list":
            spec[item.name] = [part.strip() for part in re.split(r"[,\uff0c;\uff1b\s]+", text) if part.strip()]
        else:
            spec[item.name] = text
    return spec


def rule_from_form(
    form: Mapping[str, str], forms: Mapping[str, ActionForm], *, rule_id: str | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The submitted editor as a rule document, and the problems the page finds itself as {field: catalog key}
    (a params field that is not `name: value` lines, text too long); the rest is the API's to judge."""
    problems: dict[str, str] = {}
    for name in RULE_FIELDS:
        if len(form.get(name, "")) > MAX_TEXT:
            problems[name] = "rules.error.too_long"
    params, params_problem = parse_params(form.get("params", ""))
    if params_problem:
        problems["params"] = params_problem
    kind = form.get("trigger_kind", "")
    trigger: dict[str, Any] = {"kind": kind}
    if kind in TRIGGER_VALUE:
        trigger[TRIGGER_VALUE[kind]] = form.get("trigger_value", "").strip()
    doc: dict[str, Any] = {
        "id": rule_id if rule_id is not None else form.get("id", "").strip(),
        "name": {"zh": form.get("name_zh", "").strip(), "en": form.get("name_en", "").strip()},
        "trigger": trigger,
        "when": form.get("when", "").strip(),
        "params": params,
        "then": [action_from_form(form, i, forms) for i in action_indexes(form)],
        "enabled": form.get("enabled", "") in ("1", "on", "true", "yes"),
    }
    # Owner and impact may wait until the rule is submitted for review (the API asks for them then).
    owner = form.get("owner", "").strip()
    if owner:
        doc["owner"] = owner
    impact = {k: form.get(f"impact_{k}", "").strip() for k in ("what", "who", "how_much")}
    if any(impact.values()):
        doc["impact"] = {k: v for k, v in impact.items() if v}
    description = form.get("description", "").strip()
    if description:
        doc["description"] = description
    return doc, problems


def renumbered(form: Mapping[str, str], *, drop: int | None = None, add: str | None = None) -> dict[str, str]:
    """The form's values with action slot `drop` taken out and the slots numbered 0.. again, plus a new slot of
    kind `add` at the end (the editor's add and remove buttons, which work without JavaScript)."""
    values = {k: v for k, v in form.items() if not k.startswith("then-")}
    indexes = [i for i in action_indexes(form) if i != drop]
    for new, old in enumerate(indexes):
        for key, value in form.items():
            if key.startswith(f"then-{old}-"):
                values[f"then-{new}-{key[len(f'then-{old}-') :]}"] = value
    if add is not None and len(indexes) < MAX_ACTIONS:
        values[f"then-{len(indexes)}-action"] = add
    return values


# --- the API's problems next to their fields ----------------------------------------------------------------


def form_field(path: str | None, slots: list[int] | None = None) -> str:
    """Where in the editor a problem about `path` of the rule document shows (`form`: at the top).

    `when` -> when, `name.en` -> name_en, `impact.who` -> impact_who, `trigger.cron` -> trigger_value,
    `params.x` -> params, `then` -> then; the API counts actions from 1 (`then[1].role` is the first action), the
    editor's slots are numbered as they were sent (`slots`, in order): `then[1].role` -> then-<slots[0]>-role.
    """
    if not path:
        return "form"
    path = str(path).strip()
    match = FIELD_PATH.match(path)
    if match:
        number, name = int(match.group(1)), match.group(2)
        known = slots if slots is not None else list(range(MAX_ACTIONS))
        if not 1 <= number <= len(known):
            return "then"
        index = known[number - 1]
        return f"then-{index}-{name}" if name else f"then-{index}"
    head, _, rest = path.partition(".")
    head = head.split("[")[0]
    if head == "name":
        return "name_en" if rest.startswith("en") else "name_zh"
    if head == "impact":
        sub = rest.split(".")[0]
        return f"impact_{sub}" if sub in ("what", "who", "how_much") else "impact_what"
    if head == "trigger":
        return "trigger_kind" if rest == "kind" else "trigger_value"
    if head in ("when", "condition"):
        return "when"
    if head in ("id", "description", "owner", "params", "then", "enabled", "reviewer"):
        return head
    return "form"


def problems_by_field(problems: Iterable[Any], lang: str, slots: list[int] | None = None) -> dict[str, list[str]]:
    """The API's problems ({code, message, message_en, detail: {field}}) as {editor field: [messages in `lang`]}."""
    placed: dict[str, list[str]] = {}
    for problem in problems:
        if not isinstance(problem, Mapping):
            continue
        detail = _map(problem.get("detail"))
        path = problem.get("field") or detail.get("field")
        inner = detail.get("path")  # an action's own field, named apart: {field: then[1], path: role}
        if isinstance(path, str) and re.fullmatch(r"then\[\d+\]", path) and isinstance(inner, str) and inner:
            path = path + "." + INNER_SPLIT.split(inner)[0]
        text = problem.get("message_en" if lang == "en" else "message") or problem.get("message") or ""
        if not text:
            continue
        placed.setdefault(form_field(path if isinstance(path, str) else None, slots), []).append(str(text))
    return placed
