"""Dotted-key overrides of a profile (``{"train.phase1.epochs": 3}``), before validation."""

from __future__ import annotations

import copy
from typing import Any, Mapping

__all__ = ["OverrideError", "set_dotted"]


class OverrideError(ValueError):
    """An override that does not fit the profile's structure."""


def set_dotted(raw: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` (a profile as plain dicts) with dotted keys set; a mapping value changes only the
    keys it names (recursively), any other value replaces the old one.

    Raises
    ------
    OverrideError
        When a dotted key runs through a value that is not a section.
    """
    out = copy.deepcopy(raw)
    for key, value in overrides.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise OverrideError(f"override {key!r}: {part} is not a section")
            node = nxt
        old = node.get(parts[-1])
        if isinstance(value, Mapping) and isinstance(old, dict):
            node[parts[-1]] = _merged(old, value)  # a mapping changes only the keys it names
        else:
            node[parts[-1]] = list(value) if isinstance(value, tuple) else value
    return out


def _merged(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied key by key, recursively into nested sections."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = list(value) if isinstance(value, tuple) else copy.deepcopy(value)
    return out
