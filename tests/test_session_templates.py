"""Session settings templates (fix_specs/sessions): every bundled one is valid and quickfix reads
what xmc makes of it; the live config's schedule, heartbeat and reset override it as documented;
a bad template or override is an error naming the file and line or key."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import quickfix as fix
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.config import ConfigError
from engine.fix import session_templates
from engine.fix.session_templates import TemplateError
from engine.shell.live import settings_text
from engine.shell.live_config import load
from tests.conftest import ROOT


def _config(tmp_path, live: str = "", session: str = "", template_dictionary: str = "COMEX") -> str:
    text = (ROOT / "tests" / "live_broker.toml").read_text().replace("OUT_DIR", str(tmp_path / "out"))
    text = text.replace("heartbeat_s = 5\n", "").replace("reset_on_logon = true\n", "")  # the template's then
    text = text.replace("PORT", "9999").replace(
        'dictionary = "FIX44"', f'dictionary = "{template_dictionary}"\n{session}'
    )
    text = text.replace("[live]\n", f"[live]\n{live}")
    path = tmp_path / "live.toml"
    path.write_text(text)
    return str(path)


def _session(settings: str) -> dict[str, str]:
    ss = fix.SessionSettings()
    ss.setFromString(settings)  # quickfix itself reads it
    block = settings.split("[SESSION]")[1]
    return dict(line.split("=", 1) for line in block.strip().splitlines())


def test_every_bundled_template_is_valid_and_names_its_schedule():
    kinds = session_templates.available()
    assert {"SHFE", "COMEX", "FXFEED", "FIX44"} <= set(kinds)
    for kind in kinds:
        keys = dict(session_templates.load(kind))
        assert "StartTime" in keys and "EndTime" in keys and "HeartBtInt" in keys, kind


def test_a_session_starts_from_its_venue_kinds_template(tmp_path, monkeypatch):
    monkeypatch.setenv("XMC_BROKER_PASSWORD", "pw")
    cfg = load(_config(tmp_path))
    keys = _session(settings_text(cfg.sessions, tmp_path))
    assert (keys["StartDay"], keys["EndDay"], keys["ResetOnLogon"]) == ("Sunday", "Friday", "N")  # CME's week
    assert keys["TargetCompID"] == "BROKER" and keys["DataDictionary"].endswith(".xml")
    standby = _session(settings_text(cfg.sessions, tmp_path, force_reset=True))
    assert standby["ResetOnLogon"] == "Y"


def test_the_configs_schedule_replaces_the_templates_and_a_session_overrides_live(tmp_path, monkeypatch):
    monkeypatch.setenv("XMC_BROKER_PASSWORD", "pw")
    live = 'start_time = "01:00:00"\nend_time = "23:00:00"\nheartbeat_s = 7\n'
    keys = _session(settings_text(load(_config(tmp_path, live)).sessions, tmp_path))
    assert (keys["StartTime"], keys["EndTime"], keys["HeartBtInt"]) == ("01:00:00", "23:00:00", "7")
    assert "StartDay" not in keys and "EndDay" not in keys  # a daily window now, not the template's week
    session = (
        'start_time = "02:00:00"\nend_time = "21:00:00"\nstart_day = "Monday"\nend_day = "Friday"\n'
        "reset_on_logon = true\n"
    )
    keys = _session(settings_text(load(_config(tmp_path, live, session)).sessions, tmp_path))
    assert (keys["StartTime"], keys["StartDay"], keys["EndDay"], keys["ResetOnLogon"], keys["HeartBtInt"]) == (
        "02:00:00",
        "Monday",
        "Friday",
        "Y",
        "7",
    )


@pytest.mark.parametrize(
    "session, key, what",
    [
        ('template = "NOPE"\n', "sessions.BROKER.template", "NOPE"),
        ('start_time = "09:00:00"\n', "sessions.BROKER.start_time", "pairs"),
        ('start_time = "25:00:00"\nend_time = "01:00:00"\n', "sessions.BROKER.start_time", "25:00:00"),
        (
            'start_time = "01:00:00"\nend_time = "02:00:00"\nstart_day = "Someday"\nend_day = "Friday"\n',
            "sessions.BROKER.start_day",
            "Someday",
        ),
        ('template = "../../COMEX"\n', "sessions.BROKER.template", "is not a template name"),
        (f'template = "{"y" * 300}"\n', "sessions.BROKER.template", "is not a template name"),
        ("heartbeat_s = 99999999999\n", "sessions.BROKER.heartbeat_s", "whole seconds in 1..86400"),
        ('start_time = "\u00b2\u00b2:00:00"\nend_time = "01:00:00"\n', "sessions.BROKER.start_time", "HH:MM:SS"),
        ("heartbeat_s = 0\n", "sessions.BROKER.heartbeat_s", "whole seconds in 1..86400"),
        (  # a weekly session needs both days
            'start_time = "01:00:00"\nend_time = "02:00:00"\nstart_day = "Monday"\n',
            "sessions.BROKER.start_time",
            "pairs",
        ),
        ('start_day = "Monday"\nend_day = "Friday"\n', "sessions.BROKER.start_time", "pairs"),  # days, no times
    ],
)
def test_a_bad_override_names_the_key(tmp_path, monkeypatch, session, key, what):
    monkeypatch.setenv("XMC_BROKER_PASSWORD", "pw")
    with pytest.raises(ConfigError) as err:
        load(_config(tmp_path, session=session))
    assert key in str(err.value) and what in str(err.value)


def test_a_bad_live_table_or_session_address_names_the_key(tmp_path, monkeypatch):
    """The backoff's longest wait out of range or below its first, a port of 0, a CompID with a space,
    a control character in the username or password: each refused naming its key (the password's
    value never shown)."""
    monkeypatch.setenv("XMC_BROKER_PASSWORD", "pw")
    for old, new, key, what in (
        ("reconnect_s = 1\n", "reconnect_s = 1\nreconnect_max_s = 0\n", "live.reconnect_max_s", "whole seconds"),
        ("reconnect_s = 1\n", "reconnect_s = 10\nreconnect_max_s = 5\n", "live.reconnect_max_s", "below reconnect_s"),
        ("port = 9999", "port = 0", "sessions.BROKER.port", "TCP port"),
        ('target_comp_id = "BROKER"', 'target_comp_id = "BRO KER"', "sessions.BROKER.target_comp_id", "cannot carry"),
        ('username = "desk1"', 'username = "desk\\u0001"', "sessions.BROKER.username", "cannot carry"),
    ):
        path = Path(_config(tmp_path))
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))
        with pytest.raises(ConfigError) as err:
            load(str(path))
        assert key in str(err.value) and what in str(err.value), str(err.value)
    monkeypatch.setenv("XMC_BROKER_PASSWORD", "pw\u00e9\u0001secret")
    with pytest.raises(ConfigError) as err:
        load(_config(tmp_path))
    assert "sessions.BROKER.password" in str(err.value) and "secret" not in str(err.value)


def test_a_password_file_is_read_without_its_line_end_and_a_session_may_turn_the_reset_off(tmp_path):
    """password_file (outside the repository): its text, the final newline an editor adds cut off; and
    [sessions.X] reset_on_logon = false overrides [live]'s true."""
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    path = Path(_config(tmp_path, "reset_on_logon = true\n", "reset_on_logon = false\n"))
    path.write_text(path.read_text().replace('password_env = "XMC_BROKER_PASSWORD"', f'password_file = "{secret}"'))
    cfg = load(str(path))
    (session,) = cfg.sessions
    assert session.password == "s3cret"
    assert _session(settings_text(cfg.sessions, tmp_path))["ResetOnLogon"] == "N"


def test_a_dictionary_that_cannot_be_used_is_refused_at_load(tmp_path, monkeypatch):
    """A venue overlay in fix_specs/ that quickfix cannot use (here: based on no quickfix dictionary)
    is refused when the live config is read, naming the session's dictionary key, before any logon."""
    from engine.fix import dictionary

    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "BROKEN.xml").write_text('<fix base="NOPE.txt"></fix>\n')
    monkeypatch.setattr(dictionary, "SPEC_DIR", specs)
    monkeypatch.setenv("XMC_BROKER_PASSWORD", "pw")
    with pytest.raises(ConfigError) as err:
        load(_config(tmp_path, session='template = "COMEX"\n', template_dictionary="BROKEN"))
    assert "sessions.BROKER.dictionary" in str(err.value) and "cannot be used" in str(err.value), str(err.value)


@pytest.mark.parametrize(
    "line, what",
    [
        ("HeartBtInt", "not Key=Value"),
        ("SenderCompID=ME", "set by xmc"),
        ("HeartBeatInt=30", "not a session setting"),
        ("ResetOnLogon=yes", "one of Y, N"),
        ("StartDay=Someday", "day of the week"),
        ("EndTime=24:00:00", "UTC time"),
        ("HeartBtInt=\u00b2", "whole seconds in 1..86400"),  # a digit to str.isdigit, not to int(): ValueError
        ("HeartBtInt=99999999999", "whole seconds in 1..86400"),  # quickfix: "Illegal value" at start
        ("StartTime=\u00b2\u00b2:00:00", "UTC time"),
        # found by mutation: each passed when its check was loosened by one
        ("HeartBtInt=0", "whole seconds in 1..86400"),
        ("HeartBtInt=86401", "whole seconds in 1..86400"),
        ("StartTime=9:00:00", "UTC time"),
        ("EndTime=07:30:60", "UTC time"),
        ("LogonTimeout=", "not Key=Value"),
        ("LogonTimeout=20", "set twice"),
    ],
)
def test_a_bad_template_line_is_an_error_naming_file_and_line(tmp_path, line, what):
    path = tmp_path / "VENUE.cfg"
    path.write_text(f"# a venue\nLogonTimeout=10\n{line}\n")
    with pytest.raises(TemplateError) as err:
        session_templates.parse(path)
    assert f"{path}:" in str(err.value) and what in str(err.value)


def test_session_events_can_be_switched_off_in_the_live_config(tmp_path, monkeypatch):
    """`[live] session_events = false`: the engine keeps no quickfix events and its report says so."""
    from engine.core.engine_core import EngineCore
    from engine.shell.live import LiveEngine

    monkeypatch.setenv("XMC_BROKER_PASSWORD", "pw")
    assert load(_config(tmp_path)).session_events
    cfg = load(_config(tmp_path, "session_events = false\n"))
    assert cfg.session_events is False
    engine = LiveEngine(EngineCore(cfg.engine), cfg.sessions, session_events=cfg.session_events)
    assert engine.session_events is None and engine.session_event_summary() == {"recorded": False}


@pytest.mark.parametrize(
    "settings,when,open_",
    [
        ({"StartTime": "12:30:00", "EndTime": "07:30:00"}, "2026-11-30 13:00:00", True),  # SHFE: across midnight
        ({"StartTime": "12:30:00", "EndTime": "07:30:00"}, "2026-11-30 03:00:00", True),
        ({"StartTime": "12:30:00", "EndTime": "07:30:00"}, "2026-11-30 09:00:00", False),
        ({"StartTime": "01:00:00", "EndTime": "09:00:00"}, "2026-11-30 09:00:00", False),  # the end is exclusive
        ({"StartTime": "00:00:00", "EndTime": "00:00:00"}, "2026-11-29 17:00:00", True),  # all day
        (
            {"StartTime": "23:00:00", "EndTime": "22:00:00", "StartDay": "Sunday", "EndDay": "Friday"},
            "2026-11-28 12:00:00",
            False,
        ),  # Saturday: the Globex week is closed
        (
            {"StartTime": "23:00:00", "EndTime": "22:00:00", "StartDay": "Sunday", "EndDay": "Friday"},
            "2026-11-29 23:30:00",
            True,
        ),  # Sunday evening: open
        (
            {"StartTime": "23:00:00", "EndTime": "22:00:00", "StartDay": "Sunday", "EndDay": "Friday"},
            "2026-11-27 22:30:00",
            False,
        ),  # Friday after the close
    ],
)
def test_a_sessions_schedule_says_when_it_is_open(settings, when, open_):
    from datetime import datetime

    from engine.fix.session_templates import in_schedule

    now = datetime.strptime(when, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert in_schedule(settings, now) is open_


def test_the_edges_of_a_template_values_range_are_accepted(tmp_path):
    path = tmp_path / "VENUE.cfg"
    path.write_text("HeartBtInt=86400\nLogonTimeout=1\nStartTime=23:59:59\nEndTime=00:00:00\n")
    assert session_templates.parse(path) == [
        ("HeartBtInt", "86400"),
        ("LogonTimeout", "1"),
        ("StartTime", "23:59:59"),
        ("EndTime", "00:00:00"),
    ]


_DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def _at(day, hhmmss: str) -> datetime:
    """`day`'s date at the UTC time HH:MM:SS."""
    h, m, s = (int(x) for x in hhmmss.split(":"))
    return datetime(day.year, day.month, day.day, h, m, s, tzinfo=UTC)


def _open_by_walking(settings: dict[str, str], now) -> bool:
    """The schedule read another way: find the last opening at or before `now` by stepping back a day at
    a time, and ask whether `now` falls before that opening plus the session's length."""
    start, end = settings.get("StartTime", "00:00:00"), settings.get("EndTime", "00:00:00")
    weekly = "StartDay" in settings
    period = timedelta(days=7 if weekly else 1)
    first = _DAY_NAMES.index(settings["StartDay"]) if weekly else 0
    last = _DAY_NAMES.index(settings["EndDay"]) if weekly else 0
    length = (_at(now, end) + timedelta(days=last - first)) - _at(now, start)
    length = length % period or period  # an end at the start itself: open the whole period
    for back in range(8):
        day = now - timedelta(days=back)
        opening = _at(day, start)
        if opening <= now and (not weekly or (day.weekday() + 1) % 7 == first):
            return now < opening + length
    raise AssertionError("no opening found in a week")


@settings(max_examples=400, deadline=None)
@given(
    st.integers(0, 86399),
    st.integers(0, 86399),
    st.one_of(st.none(), st.tuples(st.integers(0, 6), st.integers(0, 6))),
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1)),
)
@example(3600, 3600, (0, 0), datetime(2026, 11, 25, 9, 0, 0))  # a week from Sunday 01:00 to itself: all week
@example(82800, 79200, (0, 5), datetime(2026, 11, 27, 22, 0, 0))  # Globex: Friday 22:00 is the close
@example(45000, 27000, None, datetime(2026, 11, 30, 12, 30, 0))  # SHFE across midnight: its start is open
@example(3601, 7200, None, datetime(2026, 11, 30, 1, 0, 0))  # a second before a start at 01:00:01
def test_a_schedule_is_open_from_its_start_up_to_but_not_at_its_end(start, end, days, naive):
    """`in_schedule` against the schedule read by walking back to the last opening, at whole seconds
    (found by mutation: a schedule that ignored the seconds, took its start as closed or its end as open
    passed the cases above)."""
    from engine.fix.session_templates import in_schedule

    def hhmmss(x: int) -> str:
        return f"{x // 3600:02d}:{x // 60 % 60:02d}:{x % 60:02d}"

    settings_ = {"StartTime": hhmmss(start), "EndTime": hhmmss(end)}
    if days is not None:
        settings_ |= {"StartDay": _DAY_NAMES[days[0]], "EndDay": _DAY_NAMES[days[1]]}
    now = naive.replace(microsecond=0, tzinfo=UTC)
    for t in (now, *(_edges(settings_, now))):
        assert in_schedule(settings_, t) is _open_by_walking(settings_, t), (settings_, t)


def _edges(settings_: dict[str, str], now):
    """The instants around the opening and the close on `now`'s day: where a boundary mistake shows."""
    out = []
    for key in ("StartTime", "EndTime"):
        edge = _at(now, settings_[key])
        out += [edge - timedelta(seconds=1), edge, edge + timedelta(seconds=1)]
    return out


def test_xmc_live_says_at_start_which_sessions_their_schedule_keeps_closed(tmp_path):
    """A session outside its schedule is named on stderr at start, and a run in which it never logged
    on exits 3 (it used to print nothing, retry, and exit 0 with '0 episodes')."""
    import os
    import subprocess
    import sys
    from datetime import datetime, timedelta

    now = datetime.now(UTC)
    start, end = ((now + timedelta(hours=h)).strftime("%H:%M:%S") for h in (2, 3))
    config = _config(tmp_path, session=f'start_time = "{start}"\nend_time = "{end}"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "xmc.cli", "live", "--config", config, "--duration", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "XMC_BROKER_PASSWORD": "pw"},
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert f"session BROKER is closed by its schedule now ({start}-{end} UTC)" in proc.stderr
    assert "session BROKER never logged on" in proc.stderr and "outside its schedule" in proc.stderr


def test_a_template_that_is_not_utf8_is_an_error_naming_it(tmp_path):
    path = tmp_path / "VENUE.cfg"
    path.write_bytes(b"HeartBtInt=30\n# caf\xe9\n")
    with pytest.raises(TemplateError, match="cannot be read"):
        session_templates.parse(path)


def test_reconnect_waits_beyond_a_day_are_refused_and_a_day_is_what_quickfix_takes(tmp_path, monkeypatch):
    """quickfix reads HeartBtInt and ReconnectInterval as ints and refuses larger ones when the
    initiator starts ("Illegal value"): the config refuses them first, naming the key."""
    import quickfix as fix

    monkeypatch.setenv("XMC_BROKER_PASSWORD", "pw")
    config = Path(_config(tmp_path))
    config.write_text(config.read_text().replace("reconnect_s = 1\n", "reconnect_s = 99999999999\n"))
    with pytest.raises(ConfigError) as err:
        load(config)
    assert "live.reconnect_s" in str(err.value) and "1..86400" in str(err.value)

    class Quiet(fix.Application):  # quickfix's Application is abstract: every callback does nothing
        def onCreate(self, session_id): ...
        def onLogon(self, session_id): ...
        def onLogout(self, session_id): ...
        def toAdmin(self, message, session_id): ...
        def fromAdmin(self, message, session_id): ...
        def toApp(self, message, session_id): ...
        def fromApp(self, message, session_id): ...

    with socket.socket() as kept:  # a port the OS assigned, held and never listened on: refused at once
        kept.bind(("127.0.0.1", 0))
        settings = fix.SessionSettings()
        settings.setFromString(
            "[DEFAULT]\nConnectionType=initiator\nReconnectInterval=86400\nHeartBtInt=86400\n"
            f"StartTime=00:00:00\nEndTime=00:00:00\nSocketConnectHost=127.0.0.1\n"
            f"SocketConnectPort={kept.getsockname()[1]}\n"
            "[SESSION]\nBeginString=FIX.4.4\nSenderCompID=A\nTargetCompID=B\nUseDataDictionary=N\n"
        )
        app, store = Quiet(), fix.MemoryStoreFactory()  # quickfix keeps pointers to both: held here
        initiator = fix.SocketInitiator(app, store, settings)
        initiator.start()  # quickfix reads both as ints here ("Illegal value" beyond): a day is well inside
        initiator.stop()


def _refusal(tmp_path, old: str, new: str) -> ConfigError | None:
    path = Path(_config(tmp_path))
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    try:
        load(str(path))
    except ConfigError as err:
        return err
    return None


@pytest.mark.parametrize(
    "old,edge,past,key",
    [
        ("port = 9999", "port = 65535", "port = 65536", "sessions.BROKER.port"),
        ("port = 9999", "port = 1", "port = 0", "sessions.BROKER.port"),
        (
            "reconnect_s = 1\n",
            "reconnect_s = 7\nreconnect_max_s = 7\n",
            "reconnect_s = 7\nreconnect_max_s = 6\n",
            "live.reconnect_max_s",
        ),
        ('username = "desk1"', 'username = ""', 'username = "desk 1"', "sessions.BROKER.username"),
        ('target_comp_id = "BROKER"', 'target_comp_id = "B"', 'target_comp_id = ""', "sessions.BROKER.target_comp_id"),
        ('host = "127.0.0.1"', 'host = "h"', 'host = ""', "sessions.BROKER.host"),
        ('dictionary = "COMEX"', 'dictionary = "FIX44"', 'dictionary = ""', "sessions.BROKER.dictionary"),
        ('venue = "BROKER"', 'venue = "BROKER"', 'venue = "LME"', "instruments.CU1.venue"),  # a session is a venue
    ],
)
def test_each_live_key_takes_its_edge_and_refuses_the_value_just_past_it(tmp_path, monkeypatch, old, edge, past, key):
    monkeypatch.setenv("XMC_BROKER_PASSWORD", "pw")
    assert _refusal(tmp_path, old, edge) is None
    err = _refusal(tmp_path, old, past)
    assert err is not None and [p.key for p in err.problems] == [key], err


def test_a_password_variable_that_is_not_set_is_a_startup_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.delenv("XMC_BROKER_PASSWORD", raising=False)
    with pytest.raises(ConfigError) as err:
        load(_config(tmp_path))
    (problem,) = err.value.problems
    assert problem.key == "sessions.BROKER.password_env" and "export XMC_BROKER_PASSWORD" in problem.fix


def test_a_dictionary_without_a_session_template_is_refused_naming_the_dictionary(tmp_path, monkeypatch):
    """The session's kind is its dictionary unless `template` names another: an overlay nobody wrote a
    template for is a problem of `dictionary`, and a template that does not exist one of `template`."""
    from engine.fix import dictionary

    monkeypatch.setenv("XMC_BROKER_PASSWORD", "pw")
    with pytest.raises(ConfigError) as err:
        load(_config(tmp_path, session='template = "NOPE"\n'))
    assert [p.key for p in err.value.problems] == ["sessions.BROKER.template"]
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "NEWVENUE.xml").write_text((ROOT / "fix_specs" / "COMEX.xml").read_text())
    monkeypatch.setattr(dictionary, "SPEC_DIR", specs)
    with pytest.raises(ConfigError) as err:
        load(_config(tmp_path, template_dictionary="NEWVENUE"))
    assert [(p.key, "no usable session template" in p.what) for p in err.value.problems] == [
        ("sessions.BROKER.dictionary", True)
    ]


def test_two_sessions_to_one_target_comp_id_are_refused_naming_both(tmp_path, monkeypatch):
    """quickfix keeps one session per CompID pair and the engine finds a report's venue by its
    TargetCompID: a second session to the same TargetCompID ended `xmc live` in quickfix's
    "Duplicate Session" traceback. Now a problem of the second session's key, naming the first; a
    second session with its own TargetCompID loads."""
    monkeypatch.setenv("XMC_BROKER_PASSWORD", "pw")
    path = Path(_config(tmp_path))
    text = path.read_text().replace('[instruments.CU2]\nvenue = "BROKER"', '[instruments.CU2]\nvenue = "B2"')
    for target, refused in (('"BROKER"', True), ('"BROKER2"', False)):
        path.write_text(text + f'\n[sessions.B2]\nhost = "127.0.0.1"\nport = 9998\ntarget_comp_id = {target}\n')
        if not refused:
            cfg = load(str(path))
            assert [s.target_comp_id for s in cfg.sessions] == ["BROKER", "BROKER2"]
            continue
        with pytest.raises(ConfigError) as err:
            load(str(path))
        (problem,) = err.value.problems
        assert problem.key == "sessions.B2.target_comp_id" and "sessions.BROKER" in problem.what, problem


@pytest.mark.parametrize(
    "secret, env, key, what",
    [
        ('password_file = "{empty}"', {}, "sessions.BROKER.password_file", "holds no password"),
        ('password_file = "{blank}"', {}, "sessions.BROKER.password_file", "holds no password"),
        ('password_env = "XMC_BROKER_PASSWORD"', {"XMC_BROKER_PASSWORD": ""}, "sessions.BROKER.password_env", "empty"),
        (
            'password_env = "XMC_BROKER_PASSWORD"\npassword_file = "{good}"',
            {"XMC_BROKER_PASSWORD": "pw"},
            "sessions.BROKER.password_file",
            "beside password_env",
        ),
    ],
)
def test_a_named_password_that_is_empty_or_given_twice_is_refused(tmp_path, monkeypatch, secret, env, key, what):
    """A session whose config names a password source must log on with a password: an empty file, a
    file of white space or an empty variable was sent as no password at all; naming both a variable
    and a file let the variable win silently. Each is refused naming the key, the value never shown."""
    (tmp_path / "empty").write_text("")
    (tmp_path / "blank").write_text(" \n\t\n")
    (tmp_path / "good").write_text("s3cret\n")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    path = Path(_config(tmp_path))
    text = path.read_text()
    old = 'password_env = "XMC_BROKER_PASSWORD"'
    assert old in text
    files = {n: tmp_path / n for n in ("empty", "blank", "good")}
    path.write_text(text.replace(old, secret.format(**files)))
    with pytest.raises(ConfigError) as err:
        load(str(path))
    (problem,) = err.value.problems
    assert problem.key == key and what in problem.what, problem
    assert "s3cret" not in str(err.value)
    path.write_text(text.replace(old, f'password_file = "{files["good"]}"'))  # the control: one good source
    assert load(str(path)).sessions[0].password == "s3cret"


def test_an_empty_out_dir_is_refused_not_taken_for_the_working_directory(tmp_path, monkeypatch):
    """Nor one holding a NUL character, which no file system takes (it was a traceback from mkdir)."""
    monkeypatch.setenv("XMC_BROKER_PASSWORD", "pw")
    path = Path(_config(tmp_path))
    text = path.read_text()
    old = f'out_dir = "{tmp_path / "out"}"'
    assert old in text
    for value, what in (('""', "empty"), ('"  "', "empty"), ('"out\\u0000live"', "NUL character")):
        path.write_text(text.replace(old, f"out_dir = {value}"))
        with pytest.raises(ConfigError) as err:
            load(str(path))
        (problem,) = err.value.problems
        assert problem.key == "live.out_dir" and what in problem.what
    path.write_text(text)
    assert load(str(path)).out_dir == tmp_path / "out"


def test_a_session_s_own_daily_window_drops_its_template_s_days(tmp_path, monkeypatch):
    """Found by mutation (the days could be left in place): COMEX's template is a week (StartDay Sunday,
    EndDay Friday); a session giving only start_time and end_time asks for a daily window, so the
    template's days go with its times. [live]'s schedule does the same for every session."""
    monkeypatch.setenv("XMC_BROKER_PASSWORD", "pw")
    assert "StartDay" in dict(session_templates.load("COMEX"))
    daily = 'start_time = "02:00:00"\nend_time = "21:00:00"\n'
    for live, session in ((daily, ""), ("", daily)):
        keys = _session(settings_text(load(_config(tmp_path, live, session)).sessions, tmp_path))
        assert (keys["StartTime"], keys["EndTime"]) == ("02:00:00", "21:00:00")
        assert "StartDay" not in keys and "EndDay" not in keys, keys


def test_the_live_table_s_defaults_and_every_journal_durability(tmp_path, monkeypatch):
    """Found by mutation (a default, or the list of durabilities, could change unseen): without the keys,
    reconnect 5 s backing off to at most 30 s, artefacts under out/live, durability "batch", a session's
    TargetCompID its own name and no username; each durability is taken as written and any other refused
    naming the key."""
    monkeypatch.setenv("XMC_BROKER_PASSWORD", "pw")
    path = Path(_config(tmp_path))
    text = path.read_text()
    bare = text.replace("reconnect_s = 1\n", "").replace(f'out_dir = "{tmp_path / "out"}"\n', "")
    bare = bare.replace('target_comp_id = "BROKER"\n', "").replace('username = "desk1"\n', "")
    assert bare.count("\n") == text.count("\n") - 4
    path.write_text(bare)
    cfg = load(str(path))
    assert (cfg.reconnect, cfg.reconnect_max, cfg.out_dir, cfg.journal) == (5, 30, Path("out/live"), "batch")
    (session,) = cfg.sessions
    assert (session.target_comp_id, session.username) == ("BROKER", "")
    for durability in ("none", "batch", "record"):
        path.write_text(text.replace("[live]\n", f'[live]\njournal_durability = "{durability}"\n'))
        assert load(str(path)).journal == durability
    path.write_text(text.replace("[live]\n", '[live]\njournal_durability = "fsync"\n'))
    with pytest.raises(ConfigError) as err:
        load(str(path))
    (problem,) = err.value.problems
    assert problem.key == "live.journal_durability" and "'record'" in problem.fix


def test_reconnect_waits_take_a_whole_day_and_a_bad_first_wait_is_one_problem(tmp_path, monkeypatch):
    """Found by mutation: a day (86,400 s) is the last wait quickfix takes; and a reconnect_s refused on
    its own is not also compared with reconnect_max_s (one problem, the one that is wrong)."""
    monkeypatch.setenv("XMC_BROKER_PASSWORD", "pw")
    day = "reconnect_s = 86400\nreconnect_max_s = 86400\n"
    assert _refusal(tmp_path, "reconnect_s = 1\n", day) is None
    err = _refusal(tmp_path, "reconnect_s = 1\n", day.replace("max_s = 86400", "max_s = 86401"))
    assert err is not None and [p.key for p in err.problems] == ["live.reconnect_max_s"]
    err = _refusal(tmp_path, "reconnect_s = 1\n", "reconnect_s = 0\nreconnect_max_s = 3\n")
    assert err is not None and [p.key for p in err.problems] == ["live.reconnect_s"], err


def test_a_password_file_that_is_missing_or_too_large_is_named(tmp_path, monkeypatch):
    """Found by mutation (the missing file's problem could lose its key; the size limit could move):
    a file that is not there is said as such, and one above 64 KiB is refused, not read."""
    monkeypatch.delenv("XMC_BROKER_PASSWORD", raising=False)
    path = Path(_config(tmp_path))
    text = path.read_text()
    old = 'password_env = "XMC_BROKER_PASSWORD"'
    big = tmp_path / "big"
    for content, fits in (("p" * (64 * 1024), True), ("p" * (64 * 1024 + 1), False)):
        big.write_text(content)
        path.write_text(text.replace(old, f'password_file = "{big}"'))
        if fits:
            assert load(str(path)).sessions[0].password == content
            continue
        with pytest.raises(ConfigError) as err:
            load(str(path))
        (problem,) = err.value.problems
        assert problem.key == "sessions.BROKER.password_file" and "larger than" in problem.what, problem
    path.write_text(text.replace(old, f'password_file = "{tmp_path / "nowhere"}"'))
    with pytest.raises(ConfigError) as err:
        load(str(path))
    (problem,) = err.value.problems
    assert problem.key == "sessions.BROKER.password_file" and "does not exist" in problem.what, problem
    path.write_text(text)
    with pytest.raises(ConfigError) as err:  # and an unset variable is said as unset, not as empty
        load(str(path))
    assert "which is not set" in err.value.problems[0].what


def test_every_session_inherits_the_engines_quickfix_defaults(tmp_path):
    """Found by mutation (any [DEFAULT] line of settings_text could change unseen): read back by quickfix
    itself, a session without settings of its own is an initiator validating against its dictionary,
    tolerating user-defined and unknown fields (venues add their own), with Nagle off, a 1 s heartbeat
    and reconnect, an all-day window, and a reset at logon unless the caller keeps sequence numbers."""
    from engine.shell.live import SessionConfig

    bare = SessionConfig("V", "FIX44", "VENUE", "127.0.0.1", 9999)
    for reset, want in ((True, "Y"), (False, "N")):
        # the reset is the default: asked for by leaving the argument out
        text = settings_text([bare], tmp_path) if reset else settings_text([bare], tmp_path, reset_on_logon=False)
        ss = fix.SessionSettings()
        ss.setFromString(text)
        sid = fix.SessionID("FIX.4.4", "XMC", "VENUE")
        got = ss.get(sid)
        expected = {
            "ConnectionType": "initiator",
            "UseDataDictionary": "Y",
            "ValidateUserDefinedFields": "N",
            "AllowUnknownMsgFields": "Y",
            "SocketNodelay": "Y",
            "HeartBtInt": "1",
            "ReconnectInterval": "1",
            "StartTime": "00:00:00",
            "EndTime": "00:00:00",
            "ResetOnLogon": want,
            "FileStorePath": str(tmp_path),
            "SocketConnectPort": "9999",
        }
        assert {k: got.getString(k) for k in expected} == expected
