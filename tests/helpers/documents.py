"""A TOML document (as a dict) with some keys changed or deleted: the validation-domain tests' one edit."""

from __future__ import annotations

import copy
from typing import Any

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


def only_problem(problems: list, key: str, changes: tuple) -> Any:
    """The one problem a reader found after `changes`, which must name `key` and say how to fix it."""
    assert [p.key for p in problems] == [key], f"{changes}: {problems}"
    assert problems[0].what and problems[0].fix
    return problems[0]
