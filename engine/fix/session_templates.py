"""Session settings templates, one per venue kind, in fix_specs/sessions/<KIND>.cfg: the quickfix
settings a session to that kind of venue needs (schedule, heartbeat, reset policy, validation).
xmc adds what is per connection; a template may not set those, and only keys listed here are allowed,
so a typo is an error naming the file and line rather than a setting quickfix silently ignores."""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache
from pathlib import Path

from engine.fix.dictionary import SPEC_DIR

TEMPLATE_DIR = SPEC_DIR / "sessions"
DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")

# quickfix session settings a template may set, with a check of the value
_YN = ("Y", "N")
ALLOWED: dict[str, tuple[str, ...] | str] = {
    "HeartBtInt": "seconds",
    "StartTime": "time",
    "EndTime": "time",
    "StartDay": "day",
    "EndDay": "day",
    "LogonTime": "time",
    "LogoutTime": "time",
    "ResetOnLogon": _YN,
    "ResetOnLogout": _YN,
    "ResetOnDisconnect": _YN,
    "RefreshOnLogon": _YN,
    "LogonTimeout": "seconds",
    "LogoutTimeout": "seconds",
    "CheckLatency": _YN,
    "MaxLatency": "seconds",
    "SendRedundantResendRequests": _YN,
    "ValidateFieldsOutOfOrder": _YN,
    "ValidateFieldsHaveValues": _YN,
    "ValidateUserDefinedFields": _YN,
    "AllowUnknownMsgFields": _YN,
    "PersistMessages": _YN,
    "TimestampPrecision": ("0", "3", "6", "9"),
}
# what xmc sets itself for every session: never from a template
OWNED = (
    "BeginString",
    "SenderCompID",
    "TargetCompID",
    "SocketConnectHost",
    "SocketConnectPort",
    "DataDictionary",
    "UseDataDictionary",
    "FileStorePath",
    "ConnectionType",
    "SocketNodelay",
    "ReconnectInterval",
)


class TemplateError(Exception):
    """A session template that cannot be used; the message names the file, the line and the fix."""


def available() -> list[str]:
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.cfg"))


MAX_SECONDS = 86_400  # a heartbeat, timeout or latency longer than a day is a typo (and beyond it, quickfix's int)


def _digits(text: str) -> bool:
    """Only the ASCII digits int() and quickfix read alike ("²" is a digit to str.isdigit, not to int)."""
    return text.isascii() and text.isdigit()


def check_value(key: str, value: str) -> str | None:
    """Why `value` is wrong for `key` (None when it is right)."""
    rule = ALLOWED[key]
    if isinstance(rule, tuple):
        return None if value in rule else f"must be one of {', '.join(rule)}"
    if rule == "seconds":
        return (
            None if _digits(value) and 0 < int(value) <= MAX_SECONDS else f"must be whole seconds in 1..{MAX_SECONDS}"
        )
    if rule == "day":
        return (
            None
            if value.lower() in DAYS or value.lower()[:2] in {d[:2] for d in DAYS}
            else "must be a day of the week (e.g. Sunday)"
        )
    parts = value.split(":")
    ok = (
        len(parts) == 3
        and all(_digits(p) and len(p) == 2 for p in parts)
        and int(parts[0]) < 24
        and int(parts[1]) < 60
        and int(parts[2]) < 60
    )
    return None if ok else "must be a UTC time HH:MM:SS"


@cache
def load(kind: str) -> tuple[tuple[str, str], ...]:
    """The settings of template `kind`, in file order."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", kind):
        raise TemplateError(
            f"template {kind!r} is not a template name; write one of {', '.join(available())} (the file names "
            f"of fix_specs/sessions/ without .cfg)"
        )
    path = TEMPLATE_DIR / f"{kind}.cfg"
    if not path.is_file():
        raise TemplateError(
            f"{path}: no session template for {kind!r}; write one of {', '.join(available())} "
            f"or add fix_specs/sessions/{kind}.cfg"
        )
    return tuple(parse(path))


def parse(path: Path) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{path}: cannot be read ({exc}); give the template as UTF-8 text") from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = (part.strip() for part in line.partition("="))
        where = f"{path}:{n}"
        if not sep or not key or not value:
            raise TemplateError(f"{where}: {line!r} is not Key=Value; write one quickfix setting a line")
        if key in OWNED:
            raise TemplateError(f"{where}: {key} is set by xmc for every session; remove it from the template")
        if key not in ALLOWED:
            raise TemplateError(
                f"{where}: {key} is not a session setting xmc passes to quickfix; use one of "
                f"{', '.join(sorted(ALLOWED))}"
            )
        why = check_value(key, value)
        if why:
            raise TemplateError(f"{where}: {key}={value} {why}")
        if any(k == key for k, _ in out):
            raise TemplateError(f"{where}: {key} is set twice; keep one")
        out.append((key, value))
    return out


def _seconds(hhmmss: str) -> int:
    h, m, s = (int(x) for x in hhmmss.split(":"))
    return h * 3600 + m * 60 + s


def _day(name: str) -> int:
    """0 = Sunday ... 6 = Saturday (quickfix accepts full names or their first two letters)."""
    return next(i for i, d in enumerate(DAYS) if d[:2] == name.lower()[:2])


def in_schedule(settings: dict[str, str], now: datetime) -> bool:
    """Is a session with these quickfix settings inside its schedule at `now` (an aware UTC
    datetime)? Daily: StartTime to EndTime (across midnight when EndTime is earlier; all day when
    equal); weekly with StartDay/EndDay: from StartDay StartTime to EndDay EndTime."""
    start = _seconds(settings.get("StartTime", "00:00:00"))
    end = _seconds(settings.get("EndTime", "00:00:00"))
    t = now.hour * 3600 + now.minute * 60 + now.second
    if "StartDay" in settings and "EndDay" in settings:
        week = 7 * 86400
        weekday = (now.weekday() + 1) % 7  # Python: Monday 0; quickfix: Sunday first
        at = weekday * 86400 + t
        begin = _day(settings["StartDay"]) * 86400 + start
        finish = _day(settings["EndDay"]) * 86400 + end
        return bool((at - begin) % week < (finish - begin) % week or finish == begin)
    if start == end:
        return True
    return start <= t < end if start < end else (t >= start or t < end)
