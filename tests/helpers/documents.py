"""A TOML document (as a dict) with some keys changed or deleted: the validation-domain tests' one edit."""

from __future__ import annotations

import copy

DELETE = object()  # as a change's value: remove the key


def edited(base: dict, *changes: tuple[str, object]) -> dict:
    """A deep copy of `base` with each (dotted key, value) set, or deleted when the value is DELETE; tables on
    the way are made."""
    doc = copy.deepcopy(base)
    for dotted, value in changes:
        *path, last = dotted.split(".")
        table = doc
        for part in path:
            table = table.setdefault(part, {})
        if value is DELETE:
            table.pop(last, None)
        else:
            table[last] = value
    return doc
