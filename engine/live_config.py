"""Production configuration for `xmc live`: FIX sessions to brokers or venues, with the same
[instruments], [strategy] and [risk] tables as a scenario. Credentials never live in the file: it
names the environment variables (or files outside the repository) that hold them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.config import ConfigError, EngineConfig, Problem, Section, positive, read_engine, read_toml
from engine.fix import dictionary
from engine.live import SessionConfig


@dataclass(frozen=True)
class LiveConfig:
    path: Path
    engine: EngineConfig
    sessions: list[SessionConfig]
    heartbeat: int
    reconnect: int
    start_time: str
    end_time: str
    out_dir: Path
    reset_on_logon: bool
    reconnect_max: int = 30  # seconds: the longest wait of the reconnect backoff
    journal: str = "batch"  # durability of the write-ahead journal under out_dir: none / batch / record


def _time(sec: Section, name: str, default: str) -> str:
    value = sec.get(name, str, default, hint="HH:MM:SS (UTC)")
    parts = value.split(":")
    if len(parts) != 3 or not all(p.isdigit() and len(p) == 2 for p in parts) or int(parts[0]) > 23 \
            or int(parts[1]) > 59 or int(parts[2]) > 59:
        sec.problem(name, f"is {value!r}", "write a UTC time as HH:MM:SS, e.g. \"00:00:00\"")
    return value


def _secret(sec: Section, name: str, problems: list[Problem]) -> str:
    """The secret named by `<name>_env` or `<name>_file`; a named but missing one is a startup error."""
    env = sec.get(f"{name}_env", str, "")
    file = sec.get(f"{name}_file", str, "")
    if env:
        value = os.environ.get(env)
        if value is None:
            problems.append(Problem(sec.key(f"{name}_env"), f"names environment variable {env}, which is not set",
                                    f"export {env}=... before starting (the value is never logged)"))
            return ""
        return value
    if file:
        path = Path(file).expanduser()
        if not path.is_file():
            problems.append(Problem(sec.key(f"{name}_file"), f"names {path}, which does not exist",
                                    "point it at a readable file outside the repository"))
            return ""
        return path.read_text().strip()
    return ""


def load(path: str | Path) -> LiveConfig:
    path = Path(path)
    data = read_toml(path, "a live .toml config")
    problems: list[Problem] = []
    root = Section(data, "", problems)
    lv = root.sub("live")
    heartbeat = lv.get("heartbeat_s", int, 30, check=positive, hint="seconds >= 1")
    reconnect = lv.get("reconnect_s", int, 5, check=positive, hint="seconds >= 1")
    reconnect_max = lv.get("reconnect_max_s", int, 30, check=positive, hint="seconds >= 1")
    if reconnect_max < reconnect:
        lv.problem("reconnect_max_s", f"({reconnect_max}) is below reconnect_s ({reconnect})",
                   "make the longest wait at least the first one")
    start_time = _time(lv, "start_time", "00:00:00")
    end_time = _time(lv, "end_time", "00:00:00")
    out_dir = Path(lv.get("out_dir", str, "out/live"))
    reset = lv.get("reset_on_logon", bool, False)
    journal = lv.get("journal_durability", str, "batch", choices=("none", "batch", "record"))
    lv.finish()
    sessions = []
    names = set()
    for name, sec in root.tables("sessions").items():
        names.add(name)
        dict_name = sec.get("dictionary", str, "FIX44")
        if dict_name != "FIX44" and dict_name not in dictionary.available():
            sec.problem("dictionary", f"names no dictionary in fix_specs/ ({dict_name!r})",
                        f"write one of {', '.join(['FIX44', *dictionary.available()])}")
        port = sec.get("port", int, check=lambda p: 0 < p < 65536, hint="a TCP port 1..65535")
        sessions.append(SessionConfig(
            venue=name, dictionary=dict_name, target_comp_id=sec.get("target_comp_id", str, name),
            host=sec.get("host", str, hint="the broker's address"), port=port,
            username=sec.get("username", str, ""), password=_secret(sec, "password", problems)))
        sec.seen.update({"password_env", "password_file"})
        sec.finish()
    engine = read_engine(root, names)
    root.finish()
    if problems:
        raise ConfigError(str(path), problems)
    return LiveConfig(path, engine, sessions, heartbeat, reconnect, start_time, end_time, out_dir, reset, reconnect_max,
                      journal)
