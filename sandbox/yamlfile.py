"""Config files: YAML composed with line marks, duplicate keys refused, errors located.

Shared by the scenario loader and the gate policy, so both name file:line:field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from sandbox.errors import ScenarioError


def compose(text: str, path: Path) -> tuple[Any, yaml.Node]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ScenarioError("the file is empty", file=path, line=1)
        check_duplicates(node, path)
        return loader.construct_document(node), node
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "malformed YAML"
        raise ScenarioError(f"bad YAML: {problem}", file=path, line=line) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"bad YAML: {exc}", file=path) from None
    finally:
        loader.dispose()


def check_duplicates(node: yaml.Node, path: Path) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise ScenarioError(
                        f"duplicate key {key.value!r}", file=path, line=key.start_mark.line + 1
                    )
                seen.add(key.value)
            check_duplicates(value, path)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            check_duplicates(item, path)


def locate(root: yaml.Node, loc: tuple[int | str, ...], missing: bool) -> tuple[int, str]:
    """The line and the dotted field path for a pydantic error location.

    Parts that are not keys in the document (union branch tags such as `str`)
    are skipped; a missing key is named on its parent mapping's line."""
    node = root
    line = root.start_mark.line + 1
    parts: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    node, line = value, key.start_mark.line + 1
                    parts.append(str(part))
                    break
            else:
                if missing and i == len(loc) - 1:
                    parts.append(str(part))
            continue
        if (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
            parts.append(str(part))
    return line, ".".join(parts)


def check_regex(value: str) -> str:
    """Raise ValueError (naming the problem) unless `value` compiles as a regex."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regex {value!r}: {exc}") from None
    return value
