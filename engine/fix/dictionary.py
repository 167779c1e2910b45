"""Venue FIX dictionaries: quickfix's FIX44.xml merged with a venue overlay from fix_specs/.

An overlay adds fields, changes which fields a message requires, and names the static values the
engine must send (<outbound>). The merged dictionary is written once to a cache file (quickfix
reads dictionaries from paths) and loaded into a quickfix DataDictionary.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import quickfix as fix

# the checkout's fix_specs/, else the copy a non-editable install keeps as package data (engine/fix/specs)
SPEC_DIR = next(
    (
        d
        for d in (Path(__file__).resolve().parents[2] / "fix_specs", Path(__file__).resolve().parent / "specs")
        if d.is_dir()
    ),
    Path(__file__).resolve().parents[2] / "fix_specs",
)


class DictionaryError(Exception):
    """A venue dictionary or overlay cannot be found or read; the message says which and how to fix it."""


def base_dictionary_path(name: str = "FIX44.xml") -> Path:
    path = Path(sys.prefix) / "share" / "quickfix" / name
    if not path.exists():
        raise DictionaryError(
            f"{path}: quickfix's base dictionary is missing; reinstall quickfix "
            f"(`pip install --force-reinstall quickfix`) in this environment"
        )
    return path


@dataclass(frozen=True)
class VenueDictionary:
    name: str
    path: Path  # the merged dictionary file quickfix loads
    dd: fix.DataDictionary
    outbound: dict[str, tuple[tuple[int, str], ...]]  # MsgType -> static (tag, value) the engine adds


def available() -> list[str]:
    return sorted(p.stem for p in SPEC_DIR.glob("*.xml"))


def _merge(overlay_path: Path) -> tuple[str, dict[str, tuple[tuple[int, str], ...]]]:
    try:
        overlay = ET.parse(overlay_path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DictionaryError(f"{overlay_path}: cannot read the overlay ({exc}); fix the XML") from exc
    base_name = overlay.get("base", "FIX44.xml")
    if not re.fullmatch(r"FIX[0-9A-Za-z]*\.xml", base_name):
        raise DictionaryError(
            f'{overlay_path}: base={base_name!r} is no quickfix dictionary; write base="FIX44.xml" '
            f"(a file name of quickfix's share/quickfix)"
        )
    base_path = base_dictionary_path(base_name)
    try:
        base = ET.parse(base_path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DictionaryError(f"{base_path}: cannot read quickfix's dictionary ({exc}); reinstall quickfix") from None
    fields, message_list = base.find("fields"), base.find("messages")
    if fields is None or message_list is None:
        raise DictionaryError(f"{base_path}: no <fields> or <messages>; reinstall quickfix")
    messages = {m.get("name"): m for m in message_list}
    msg_types = {name: m.get("msgtype") for name, m in messages.items()}
    numbers = {f.get("number"): f.get("name") for f in fields}
    names = {_attr(f, "name", base_path): int(_attr(f, "number", base_path)) for f in fields}
    for f in overlay.findall("fields/field"):
        if f.get("number") in numbers and numbers[f.get("number")] != f.get("name"):
            raise DictionaryError(
                f"{overlay_path}: field {f.get('number')} is {numbers[f.get('number')]} in the "
                f"base dictionary; pick another tag number for {f.get('name')}"
            )
        fields.append(f)
        number = _attr(f, "number", overlay_path)
        if not (number.isascii() and number.isdigit() and 0 < int(number) < 2**31):
            raise DictionaryError(
                f"{overlay_path}: field {f.get('name')!r} has number {number!r}; give a tag number in 1..2147483647"
            )
        names[_attr(f, "name", overlay_path)] = int(number)
    for m in overlay.findall("message"):
        target = messages.get(m.get("name"))
        if target is None:
            raise DictionaryError(
                f"{overlay_path}: message {m.get('name')!r} is not in {base_path.name}; "
                f"use a message name from the base dictionary"
            )
        existing = {f.get("name"): f for f in target.findall("field")}
        for f in m.findall("field"):
            if f.get("name") not in names:
                raise DictionaryError(f"{overlay_path}: field {f.get('name')!r} is not defined; add it under <fields>")
            if f.get("name") in existing:
                existing[f.get("name")].set("required", f.get("required", "N"))
            else:
                target.append(ET.Element("field", name=_attr(f, "name", overlay_path), required=f.get("required", "N")))
    outbound: dict[str, tuple[tuple[int, str], ...]] = {}
    for o in overlay.findall("outbound"):
        mt = msg_types.get(o.get("message"))
        if mt is None:
            raise DictionaryError(f"{overlay_path}: <outbound message={o.get('message')!r}> names no message")
        fields_out = []
        for f in o.findall("field"):
            name = _attr(f, "name", overlay_path)
            if name not in names:
                raise DictionaryError(
                    f"{overlay_path}: <outbound message={o.get('message')!r}> sends field {name!r}, which is not "
                    f"defined; add it under <fields> or name a field of the base dictionary"
                )
            fields_out.append((names[name], _attr(f, "value", overlay_path)))
        outbound[mt] = tuple(fields_out)
    return ET.tostring(base, encoding="unicode"), outbound


def _attr(element: ET.Element, name: str, path: Path) -> str:
    """An attribute the dictionary format requires; its absence is a DictionaryError naming the file."""
    value = element.get(name)
    if value is None:
        raise DictionaryError(f"{path}: <{element.tag}> without {name}=; give every <{element.tag}> its {name}")
    return value


def _cache_dir() -> Path:
    root = os.environ.get("XMC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "xmc")
    path = Path(root) / "fix"
    path.mkdir(parents=True, exist_ok=True)
    return path


@cache
def load(name: str) -> VenueDictionary:
    """The venue dictionary `name` (an overlay file fix_specs/NAME.xml, or FIX44 for the bare base)."""
    if name == "FIX44":
        path = base_dictionary_path()
        return VenueDictionary(name, path, fix.DataDictionary(str(path)), {})
    overlay_path = SPEC_DIR / f"{name}.xml"
    if not overlay_path.exists():
        raise DictionaryError(
            f"{overlay_path}: no such venue dictionary; use one of {', '.join(['FIX44', *available()])}"
        )
    text, outbound = _merge(overlay_path)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = _cache_dir() / f"{name}-{digest}.xml"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    try:
        dd = fix.DataDictionary(str(path))
    except Exception as exc:  # noqa: BLE001 - quickfix raises its own ConfigError / RuntimeError types
        raise DictionaryError(
            f"{overlay_path}: quickfix refuses the dictionary merged from it ({_quickfix_reason(exc, path)}); fix the overlay"
        ) from None
    return VenueDictionary(name, path, dd, outbound)


def _quickfix_reason(exc: Exception, merged: Path) -> str:
    """quickfix's words for a dictionary it refused, without the cache file's path it repeats."""
    return str(exc).replace(f"{merged}: ", "").replace("Configuration failed: ", "").strip() or type(exc).__name__
