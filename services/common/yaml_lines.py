"""Line numbers for problems found in YAML files (route table, environments), so that a
refusal points at the line to fix."""

from __future__ import annotations

import yaml


def line_of(document: yaml.Node, path: tuple[int | str, ...]) -> int:
    """The 1-based line of the node at `path` in a composed YAML document, as far as it goes."""
    node: yaml.Node | None = document
    line = document.start_mark.line + 1
    for key in path:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
        if node is None:
            break
        line = node.start_mark.line + 1
    return line
