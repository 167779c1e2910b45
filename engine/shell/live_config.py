"""Production configuration for `xmc live`: FIX sessions to brokers or venues, with the same
[instruments], [strategy] and [risk] tables as a scenario. Credentials never live in the file: it
names the environment variables (or files outside the repository) that hold them.

Each session starts from its venue kind's settings template (fix_specs/sessions/<KIND>.cfg, the
kind being its dictionary unless `template` names another); [live] heartbeat_s / reset_on_logon /
start_time+end_time, when given, apply to every session, and the same keys in [sessions.X] (plus
start_day, end_day) to that one. A schedule given in the config replaces the template's whole
schedule (a daily window unless days are given too)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.config import (
    FIX_TEXT,
    ConfigError,
    EngineConfig,
    Problem,
    Section,
    read_engine,
    read_input,
    read_toml,
)
from engine.fix import dictionary, session_templates
from engine.fix.codec import dictionary_problem
from engine.fix.session_templates import TemplateError
from engine.shell.live import SessionConfig


@dataclass(frozen=True)
class LiveConfig:
    path: Path
    engine: EngineConfig
    sessions: list[SessionConfig]  # each with its resolved quickfix settings (template + overrides)
    reconnect: int
    out_dir: Path
    reconnect_max: int = 30  # seconds: the longest wait of the reconnect backoff
    journal: str = "batch"  # durability of the write-ahead journal under out_dir: none / batch / record
    session_events: bool = True  # keep quickfix's session events (garbled input, resends) for the report


_A_DAY = f"whole seconds in 1..{session_templates.MAX_SECONDS}"  # quickfix reads these as ints: bounded


def _in_a_day(seconds: int) -> bool:
    return 0 < seconds <= session_templates.MAX_SECONDS


def _time(sec: Section, name: str, default: str | None) -> str | None:
    value = sec.get(name, str, default, hint="HH:MM:SS (UTC)")
    if value is not None and session_templates.check_value("StartTime", value):
        sec.problem(name, f"is {value!r}", 'write a UTC time as HH:MM:SS, e.g. "00:00:00"')
    return value if isinstance(value, str) else None


def _day(sec: Section, name: str) -> str | None:
    value = sec.get(name, str, None, hint="a day of the week")
    if value is not None and session_templates.check_value("StartDay", value):
        sec.problem(name, f"is {value!r}", 'write a day of the week, e.g. "Sunday"')
    return value if isinstance(value, str) else None


def _schedule(sec: Section, settings: dict[str, str]) -> None:
    """A schedule in `sec` (start_time and end_time, optionally start_day and end_day) replaces the
    template's; heartbeat_s and reset_on_logon override it key by key."""
    start, end = _time(sec, "start_time", None), _time(sec, "end_time", None)
    start_day, end_day = _day(sec, "start_day"), _day(sec, "end_day")
    if (
        (start is None) != (end is None)
        or (start_day is None) != (end_day is None)
        or (start_day is not None and start is None)
    ):
        sec.problem(
            "start_time",
            "and end_time (and start_day with end_day) come in pairs",
            "give start_time and end_time (UTC), and both days for a weekly session",
        )
    elif start is not None and end is not None:
        for key in ("StartTime", "EndTime", "StartDay", "EndDay"):
            settings.pop(key, None)
        settings.update(StartTime=start, EndTime=end)
        if start_day is not None and end_day is not None:
            settings.update(StartDay=start_day, EndDay=end_day)
    heartbeat = sec.get("heartbeat_s", int, None, check=_in_a_day, hint=_A_DAY)
    if heartbeat is not None:
        settings["HeartBtInt"] = str(heartbeat)
    reset = sec.get("reset_on_logon", bool, None)
    if reset is not None:
        settings["ResetOnLogon"] = "Y" if reset else "N"


def _secret(sec: Section, name: str, problems: list[Problem]) -> str:
    """The secret named by `<name>_env` or `<name>_file`; a named one that is missing or empty is a
    startup error (a session logging on without the password its desk wrote in is not what was meant),
    and so is naming both (which one would win is a guess)."""
    env = sec.get(f"{name}_env", str, "")
    file = sec.get(f"{name}_file", str, "")

    def refuse(key: str, what: str, fix: str) -> str:
        problems.append(Problem(sec.key(key), what, fix))
        return ""

    if env and file:
        return refuse(
            f"{name}_file",
            f"is given beside {name}_env: the {name} would come from one of two places",
            f"keep one of {name}_env and {name}_file",
        )
    if env:
        value = os.environ.get(env)
        if not value:
            return refuse(
                f"{name}_env",
                f"names environment variable {env}, which is {'not set' if value is None else 'empty'}",
                f"export {env}=... before starting (the value is never logged)",
            )
        return value
    if not file:
        return ""
    path = Path(file).expanduser()
    try:
        value = read_input(path, 64 * 1024).strip()
    except FileNotFoundError:
        return refuse(
            f"{name}_file", f"names {path}, which does not exist", "point it at a readable file outside the repository"
        )
    except (OSError, UnicodeDecodeError) as exc:
        return refuse(f"{name}_file", f"names {path}, which cannot be read ({exc})", "point it at a readable text file")
    if not value:
        return refuse(
            f"{name}_file",
            f"names {path}, which holds no {name} (empty or only white space)",
            f"write the {name} into it, or remove {name}_file for a session without one",
        )
    return value


def load(path: str | Path) -> LiveConfig:
    path = Path(path)
    data = read_toml(path, "a live .toml config")
    problems: list[Problem] = []
    root = Section(data, "", problems)
    lv = root.sub("live")
    reconnect = lv.get("reconnect_s", int, 5, check=_in_a_day, hint=_A_DAY)
    reconnect_max = lv.get("reconnect_max_s", int, 30, check=_in_a_day, hint=_A_DAY)
    if lv.ok("reconnect_s", "reconnect_max_s") and reconnect_max < reconnect:
        lv.problem(
            "reconnect_max_s",
            f"({reconnect_max}) is below reconnect_s ({reconnect})",
            "make the longest wait at least the first one",
        )
    common: dict[str, str] = {}
    _schedule(lv, common)  # [live]'s schedule, heartbeat and reset apply to every session
    out_text = lv.get("out_dir", str, "out/live")
    if isinstance(out_text, str) and not out_text.strip():  # Path("") is the working directory: not what was meant
        lv.problem("out_dir", "is empty", 'name the directory for the journal and artefacts, e.g. "out/live"')
    elif isinstance(out_text, str) and "\0" in out_text:  # no file system takes it (os.mkdir: ValueError)
        lv.problem("out_dir", f"is {out_text!r}, which holds a NUL character", "name the directory without it")
        out_text = "out/live"
    out_dir = Path(out_text)
    journal = lv.get("journal_durability", str, "batch", choices=("none", "batch", "record"))
    session_events = lv.get("session_events", bool, True)
    lv.finish()
    sessions: list[SessionConfig] = []
    names = set()
    for name, sec in root.tables("sessions").items():
        names.add(name)
        dict_name = sec.get("dictionary", str, "FIX44")
        if dict_name != "FIX44" and dict_name not in dictionary.available():  # "" too: no fix_specs/.xml
            sec.problem(
                "dictionary",
                f"names no dictionary in fix_specs/ ({dict_name!r})",
                f"write one of {', '.join(['FIX44', *dictionary.available()])}",
            )
        elif unusable := dictionary_problem(dict_name):
            sec.problem("dictionary", f"cannot be used: {unusable}", "or name another dictionary")
        port = sec.get("port", int, check=lambda p: 0 < p < 65536, hint="a TCP port 1..65535")
        kind_key = "template" if sec.has("template") else "dictionary"
        kind = sec.get("template", str, dict_name)
        settings = {}
        try:
            if sec.ok(kind_key):  # a dictionary already refused is not also a missing template
                settings = dict(session_templates.load(kind))
        except TemplateError as exc:
            sec.problem(kind_key, f"has no usable session template: {exc}", "or correct the template it names")
        if "StartTime" in common:  # [live]'s schedule replaces the template's
            for key in ("StartTime", "EndTime", "StartDay", "EndDay"):
                settings.pop(key, None)
        settings.update(common)
        _schedule(sec, settings)
        session = SessionConfig(
            venue=name,
            dictionary=dict_name,
            target_comp_id=sec.get("target_comp_id", str, name),
            host=sec.get("host", str, hint="the broker's address"),
            port=port,
            username=sec.get("username", str, ""),
            password=_secret(sec, "password", problems),
            settings=tuple(settings.items()),
        )
        for key in ("target_comp_id", "username", "host"):  # FIX fields and a socket address: plain ASCII
            value = getattr(session, key)
            if (key != "username" or value) and (not FIX_TEXT.fullmatch(value) or " " in value):
                sec.problem(
                    key,
                    f"is {value!r}, which a FIX session cannot carry",
                    "write printable ASCII without spaces or control characters",
                )
        if session.password and not FIX_TEXT.fullmatch(session.password):
            sec.problem(
                "password",
                "has characters a FIX Logon cannot carry (its value is not shown)",
                "use a password of printable ASCII",
            )
        twin = next((s.venue for s in sessions if s.target_comp_id == session.target_comp_id), None)
        if twin is not None:  # quickfix keeps one session per CompID pair; reports find their venue by it
            sec.problem(
                "target_comp_id",
                f"is {session.target_comp_id!r}, as is sessions.{twin}'s: two sessions to one TargetCompID",
                "give each session its own target_comp_id (the broker assigns one per connection)",
            )
        sessions.append(session)
        sec.finish()
    engine = read_engine(root, names)
    root.finish()
    if problems:
        raise ConfigError(str(path), problems)
    return LiveConfig(path, engine, sessions, reconnect, out_dir, reconnect_max, journal, session_events)
