"""Rule conditions (规则条件) in a safe expression language: rule-engine, never `eval`.

A condition reads documented facts only (`supplier.lead_time_days > params.threshold_days and
return.reason == "包装破损"`). `compile_condition` refuses, at save, with the position and a suggestion:
text that does not parse, a fact that is not documented or that the rule's trigger does not provide, types
that do not go together, a result that is not true/false, and the few operators that could run for ever or
eat the box's memory (regular expressions, powers, shifts, and built-ins other than abs/all/any/min/max/sum).
The language has no loops and no assignment, so a condition always ends; the loop a rule could make with the
signals it raises is refused by `edge.rules.model.validate_rule`.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import rule_engine  # type: ignore[import-untyped]
from rule_engine import DataType

from edge.rules.errors import RuleFactUnknown, RuleSyntaxInvalid, RuleTypeInvalid
from edge.rules.facts import catalogue, complete

MAX_LENGTH = 2000
MAX_NESTING = 24
ALLOWED_BUILTINS = frozenset({"abs", "all", "any", "max", "min", "sum"})
_TYPES: dict[str, Any] = {
    "int": DataType.FLOAT,
    "float": DataType.FLOAT,
    "str": DataType.STRING,
    "bool": DataType.BOOLEAN,
    "date": DataType.DATETIME,
    "list": DataType.ARRAY(DataType.STRING),
}
_REFUSED_OPS = {
    "eq_fzm": "=~",
    "eq_fzs": "=~~",
    "ne_fzm": "!~",
    "ne_fzs": "!~~",
    "pow": "**",
    "bwlsh": "<<",
    "bwrsh": ">>",
}


def _param_type(value: Any) -> Any:
    if isinstance(value, bool):
        return DataType.BOOLEAN
    if isinstance(value, int | float):
        return DataType.FLOAT
    if isinstance(value, str):
        return DataType.STRING
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return DataType.ARRAY(DataType.STRING)
    if isinstance(value, list | tuple) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return DataType.ARRAY(DataType.FLOAT)
    raise RuleTypeInvalid(
        f"参数值类型不支持: {value!r} (可用数字、文字、真假或它们的列表)",
        f"parameter value of an unsupported type: {value!r} (numbers, text, true/false or lists of them)",
        field="params",
    )


class _Namespace:
    """One namespace's facts as the expression engine sees them: an object, not a mapping, so the engine does not
    copy and coerce the whole namespace each time a condition reads one of its facts (10x faster)."""

    __slots__ = ("values",)

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values


def _accessor(obj: Any, name: str) -> Any:
    return obj.values[name] if isinstance(obj, _Namespace) else obj[name]


def _context(namespaces: tuple[str, ...], params: Mapping[str, Any]) -> rule_engine.Context:
    cat = catalogue()
    types: dict[str, Any] = {}
    for name in namespaces:
        if name == "params":
            attributes = {key: _param_type(value) for key, value in params.items()}
        else:
            attributes = {field: _TYPES[fact.type] for field, fact in cat.namespaces[name].fields.items()}
        types[name] = DataType.OBJECT(name, attributes=attributes, accessor=_accessor)
    return rule_engine.Context(
        type_resolver=rule_engine.type_resolver_from_dict(types),
        default_timezone=UTC,
        decimal_context=decimal.Context(prec=28, Emax=10_000, Emin=-10_000),
    )


@dataclass(frozen=True, slots=True)
class Condition:
    """A checked condition, ready to evaluate against an event's facts."""

    text: str
    namespaces: tuple[str, ...]
    params: Mapping[str, Any]
    facts_used: tuple[str, ...]
    _rule: Any

    def matches(self, facts: Mapping[str, Mapping[str, Any]]) -> bool:
        """True when the condition holds for `facts` ({"supplier": {...}, ...}); missing facts take their
        documented defaults. Raises rule_engine.EngineError for an evaluation that fails (a division by zero)."""
        values = complete(facts, self.namespaces, self.params)
        return bool(self._rule.matches({name: _Namespace(v) for name, v in values.items()}))


def _walk(node: Any, depth: int = 0) -> Iterator[tuple[Any, int]]:
    yield node, depth
    names = [*_slots(type(node)), *getattr(node, "__dict__", {})]
    for slot in names:
        if slot in ("context", "result_type", "_object_type", "value_type"):
            continue
        child = getattr(node, slot, None)
        children = child if isinstance(child, list | tuple) else (child,)
        for item in children:
            if isinstance(item, rule_engine.ast.ASTNodeBase):
                yield from _walk(item, depth + 1)


def _slots(cls: type) -> list[str]:
    found: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        found.extend([slots] if isinstance(slots, str) else slots)
    return found


def compile_condition(text: Any, namespaces: tuple[str, ...], params: Mapping[str, Any] | None = None) -> Condition:
    """Check `text` for a trigger providing `namespaces` (edge.rules.facts.namespaces_for) and the rule's
    `params`; raise RuleSyntaxInvalid, RuleFactUnknown or RuleTypeInvalid with `field="when"`."""
    params = dict(params or {})
    if not isinstance(text, str) or not text.strip():
        raise RuleSyntaxInvalid("条件不能为空", "the condition is empty", field="when")
    if len(text) > MAX_LENGTH:
        raise RuleSyntaxInvalid(
            f"条件太长: {len(text)} 个字符 (最多 {MAX_LENGTH})",
            f"the condition is too long: {len(text)} characters (at most {MAX_LENGTH})",
            field="when",
        )
    if "\x00" in text:
        raise RuleSyntaxInvalid("条件含有不可见的控制字符", "the condition holds a NUL character", field="when")
    depth = max_nesting(text)
    if depth > MAX_NESTING:
        raise RuleSyntaxInvalid(
            f"条件括号嵌套太深: {depth} 层 (最多 {MAX_NESTING})",
            f"the condition nests too deep: {depth} levels (at most {MAX_NESTING})",
            field="when",
        )
    try:
        rule = rule_engine.Rule(text, context=_context(namespaces, params))
    except rule_engine.errors.RuleSyntaxError as exc:
        position = getattr(exc.token, "lexpos", None)
        where = f"第 {position + 1} 个字符处" if position is not None else "结尾处"
        where_en = f"at character {position + 1}" if position is not None else "at the end"
        raise RuleSyntaxInvalid(
            f"条件写法有误, {where}: {_excerpt(text, position)}",
            f"the condition does not parse, {where_en}: {_excerpt(text, position)}",
            field="when",
            position=position,
        ) from None
    except rule_engine.errors.ObjectAttributeError as exc:
        namespace = str(getattr(exc.object, "name", ""))
        name = f"{namespace}.{exc.attribute_name}"
        raise _unknown(name, namespaces) from None
    except rule_engine.errors.SymbolResolutionError as exc:
        raise _unknown(str(exc.symbol_name), namespaces, scope=exc.symbol_scope) from None
    except (rule_engine.errors.EvaluationError, rule_engine.errors.FunctionCallError) as exc:
        raise RuleTypeInvalid(
            f"条件中的类型不匹配: {exc.message} (例如把文字和数字比较)",
            f"types do not go together in the condition: {exc.message} (text compared with a number, ...)",
            field="when",
        ) from None
    except (rule_engine.errors.EngineError, decimal.DecimalException, ValueError, RecursionError) as exc:
        raise RuleSyntaxInvalid(
            f"条件无法使用: {str(exc)[:200]}", f"the condition cannot be used: {str(exc)[:200]}", field="when"
        ) from None
    used: list[str] = []
    for node, level in _walk(rule.statement):
        if level > MAX_NESTING * 4:
            raise RuleSyntaxInvalid("条件嵌套太深", "the condition nests too deep", field="when")
        kind = getattr(node, "type", None)
        if isinstance(kind, str) and kind in _REFUSED_OPS:
            op = _REFUSED_OPS[kind]
            raise RuleSyntaxInvalid(
                f"条件中不允许使用运算符 {op} (正则表达式、乘方和移位可能让规则运行过久); 请用 ==、in、比较和 and/or",
                f"operator {op} is not allowed in a condition (regular expressions, powers and shifts could run "
                "too long); use ==, in, comparisons and and/or",
                field="when",
                operator=op,
            )
        if (
            isinstance(node, rule_engine.ast.SymbolExpression)
            and node.scope is not None
            and node.name not in ALLOWED_BUILTINS
        ):
            raise RuleSyntaxInvalid(
                f"条件中不允许使用 ${node.name}; 可用: " + ", ".join(f"${n}" for n in sorted(ALLOWED_BUILTINS)),
                f"${node.name} is not allowed in a condition; allowed: "
                + ", ".join(f"${n}" for n in sorted(ALLOWED_BUILTINS)),
                field="when",
            )
        if isinstance(node, rule_engine.ast.GetAttributeExpression) and isinstance(
            node.object, rule_engine.ast.SymbolExpression
        ):
            used.append(f"{node.object.name}.{node.name}")
    result = rule.statement.expression.result_type
    if result not in (DataType.BOOLEAN, DataType.UNDEFINED):
        raise RuleTypeInvalid(
            "条件的结果必须是 真/假 (例如 supplier.lead_time_days > 15), 而不是一个值",
            "the condition must be true or false (for example supplier.lead_time_days > 15), not a value",
            field="when",
        )
    return Condition(text, namespaces, params, tuple(dict.fromkeys(used)), rule)


def _unknown(name: str, namespaces: tuple[str, ...], scope: str | None = None) -> RuleFactUnknown:
    cat = catalogue()
    if scope is not None:
        return RuleSyntaxInvalid(  # type: ignore[return-value]
            f"条件中不允许使用 ${name}", f"${name} is not allowed in a condition", field="when"
        )
    close = cat.close_names(name, namespaces)
    documented = cat.fact(name) is not None or name.split(".")[0] in cat.namespaces
    hint = f"; 是否想写 {', '.join(close)}?" if close else ""
    hint_en = f"; did you mean {', '.join(close)}?" if close else ""
    if documented and name.split(".")[0] not in namespaces:
        return RuleFactUnknown(
            f"此触发条件不提供事实 {name}{hint}",
            f"this rule's trigger does not provide the fact {name}{hint_en}",
            field="when",
            fact=name,
            suggestions=close,
        )
    return RuleFactUnknown(
        f"未知的事实 {name}{hint}",
        f"unknown fact {name}{hint_en}",
        field="when",
        fact=name,
        suggestions=close,
    )


def max_nesting(text: str) -> int:
    """The deepest bracket nesting in `text` (outside quotes is close enough for a guard)."""
    depth = deepest = 0
    for char in text:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth = max(0, depth - 1)
    return deepest


def _excerpt(text: str, position: int | None) -> str:
    if position is None:
        return text[-30:]
    return text[max(0, position - 15) : position + 15]
