"""YAML read with its line numbers: device profiles and ASN templates report problems as `file:line: reason`.

PyYAML's composed nodes keep where each key and value starts; these functions find the line of the node a
JSON-Schema error path points at, and the key problems PyYAML would let pass (a duplicate key silently keeps
the last value).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_TEXT_TAG = "tag:yaml.org,2002:str"


def compose(text: str) -> tuple[Node | None, Any]:
    """The node tree and the plain data of one YAML document (raises yaml.YAMLError on bad YAML)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return node, data


def key_problems(node: Node, *, text_keys: bool = True) -> Iterator[tuple[int, str]]:
    """(line, reason) for every duplicate key and, with `text_keys`, every key that is not text; depth first."""
    if isinstance(node, MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if not isinstance(key, ScalarNode) or (text_keys and key.tag != _TEXT_TAG):
                yield line, f"keys must be text; quote {getattr(key, 'value', key)!r}"
            elif key.value in seen:
                yield line, f"duplicate key {key.value!r} (first on line {seen[key.value]})"
            else:
                seen[key.value] = line
            yield from key_problems(value, text_keys=text_keys)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            yield from key_problems(item, text_keys=text_keys)


def line_at(root: Node, path: Iterable[Any]) -> int:
    """The 1-based line of the node at `path` (mapping keys and sequence indexes), or of the deepest that exists.

    For a mapping step it is the key's line, so that an error about a nested block points at its name.
    """
    node, line = root, root.start_mark.line + 1
    for step in path:
        if isinstance(node, MappingNode):
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.value == str(step):
                    node, line = value, key.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
            node = node.value[step]
            line = node.start_mark.line + 1
        else:
            return line
    return line
