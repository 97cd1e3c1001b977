"""Rule errors (业务规则): each has a stable code, a Chinese and an English message, and the fields a user needs.

A rule that is refused at save raises one of the `RuleInvalid` subclasses; `detail` carries `field` (where in the
rule: `when`, `then[1].role`, ...), and for expressions `position` (0-based character offset) and `fact`.
"""

from __future__ import annotations

from edge.ledger.errors import DomainError


class RuleError(DomainError):
    """Base of every refusal by the rules package."""

    code = "rule_error"


class RuleInvalid(RuleError):
    """The rule document is malformed (a missing field, a bad id, a trigger that does not exist)."""

    code = "rule_invalid"
    status = 422


class RuleSyntaxInvalid(RuleInvalid):
    """The condition does not parse."""

    code = "rule_syntax_invalid"


class RuleFactUnknown(RuleInvalid):
    """The condition or a message names a fact that is not documented, or that its trigger does not provide."""

    code = "rule_fact_unknown"


class RuleTypeInvalid(RuleInvalid):
    """The condition compares or combines facts of types that do not go together, or is not true/false."""

    code = "rule_type_invalid"


class RuleActionInvalid(RuleInvalid):
    """An action is not in the catalogue, or its fields are wrong."""

    code = "rule_action_invalid"


class RuleLoop(RuleInvalid):
    """The rule's signals lead back to its own trigger: it would fire itself without end."""

    code = "rule_loop"
