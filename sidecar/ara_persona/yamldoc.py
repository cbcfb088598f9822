"""A YAML file parsed so that every value remembers its line: errors name file, line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ara_persona.model import PersonaError


class YamlDoc:
    """A parsed YAML document that remembers the line of every node."""

    def __init__(self, path: Path):
        self.path = path
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PersonaError(f"{path}: cannot read file as UTF-8 text ({exc})") from None
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise PersonaError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
        self.lines: dict[tuple, int] = {}
        self._scalars = yaml.SafeLoader("")
        self.data = self._convert(node, ()) if node is not None else None

    def _convert(self, node: yaml.Node, key: tuple, line: int | None = None) -> Any:
        self.lines[key] = line or node.start_mark.line + 1  # a mapping value: the line of its key
        if isinstance(node, yaml.MappingNode):
            out = {}
            for k_node, v_node in node.value:
                k = k_node.value
                out[k] = self._convert(v_node, (*key, k), k_node.start_mark.line + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(v, (*key, i)) for i, v in enumerate(node.value)]
        return self._scalars.construct_object(node, deep=True)

    def error(self, key: tuple, expected: str) -> PersonaError:
        line = self.lines.get(key) or self.lines.get(key[:-1]) or 1
        field = ".".join(str(k) for k in key) or "(top level)"
        return PersonaError.at(self.path, line, field, expected)

    def string_lists(self, key: str, names: str = "names") -> dict[str, list[str]]:
        """The mapping of `names` to non-empty lists of non-empty strings under the top-level `key`."""
        groups = self.data.get(key) if isinstance(self.data, dict) else None
        if not isinstance(groups, dict) or not groups:
            raise self.error((key,), f"a mapping of {names} to lists of strings")
        for name, items in groups.items():
            if not isinstance(items, list) or not items:
                raise self.error((key, name), "a non-empty list of non-empty strings")
            for n, item in enumerate(items):
                if not isinstance(item, str) or not item.strip():
                    raise self.error((key, name, n), "a non-empty string (quote numbers and yes/no)")
        return groups
