"""``--set dotted.path=value`` overrides, applied to raw recipe data before validation."""

from __future__ import annotations

from typing import Any

import yaml


def apply_override(data: dict[str, Any], item: str) -> str:
    """Apply one ``dotted.path=value`` override to ``data`` in place; return the dotted path.

    The value is parsed as YAML (``3`` is an int, ``[0, 1]`` a list, ``null`` None). Missing
    mappings on the way are created; a bare component name on the way (``schedule: ddpm``) becomes
    the node ``{name: ddpm}`` so that ``schedule.num_train_steps=50`` can set one of its fields.
    """
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override '{item}' is not of the form dotted.path=value")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as exc:
        raise ValueError(f"override '{item}': value is not valid YAML: {exc}") from None
    parts = [p.strip() for p in key.strip().split(".")]
    if not all(parts):
        raise ValueError(f"override '{item}': '{key.strip()}' has an empty part")
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        here = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            slot: Any = _index(part, node, here)
        else:  # a mapping: the loop only descends into mappings and lists
            slot = part
            if node.get(part) is None:
                node[part] = {}
        child = node[slot]
        if isinstance(child, str):
            child = node[slot] = {"name": child}  # a bare component name
        if not isinstance(child, (dict, list)):
            raise ValueError(
                f"override '{item}': '{here}' is a {type(child).__name__}, not a mapping or list"
            )
        node = child
    last = parts[-1]
    if isinstance(node, list):
        node[_index(last, node, key.strip())] = parsed
    else:
        node[last] = parsed
    return ".".join(parts)


def _index(part: str, node: list[Any], where: str) -> int:
    try:
        i = int(part)
        if i < 0:
            raise IndexError(i)
        node[i]
    except (ValueError, IndexError):
        span = f"0..{len(node) - 1}" if node else "empty (the list has no items)"
        raise ValueError(f"'{where}': list index '{part}' is not in {span}") from None
    return i

