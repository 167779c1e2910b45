"""Engine configuration: instruments, strategy, execution and risk, read from plain dicts (TOML).

Every problem is collected with its key path and what to write instead, so one bad file yields one
complete, readable error instead of a traceback.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

# how far float arithmetic on a price or a count of ticks strays from the exact value, in ulps (an ulp
# or two in practice): the slack of every test whether a price is on its tick grid
GRID_NOISE_ULPS: Final = 16


def grid_slack(tick: float, price: float) -> float:
    """How far a price may be from a point of its tick grid and still be that point: a millionth of a
    tick, or the float noise of a price that size where that is larger (a fine tick on a large price)."""
    return max(tick * 1e-6, GRID_NOISE_ULPS * math.ulp(price))


MASS_PER_TONNE = {"t": 1.0, "kg": 1000.0, "lb": 2204.62}
ROUNDING_RULES = ("nearest", "up", "down")
RECOVERY_POLICIES = ("chase_unwind", "escalate")
REJECT_CLASSES = ("retry", "fix_and_retry", "fatal")
OVERFILL_POLICIES = ("hedge", "record")
# OrdRejReason (103) -> class, the defaults a desk starts from: flow control and exchange-closed are
# transient, price problems want a new price, permissions and unknown instruments are final.
DEFAULT_REJECT_POLICY = {
    "0": "fatal",  # broker / exchange option
    "1": "fatal",  # unknown symbol
    "2": "retry",  # exchange closed (transient in a session break)
    "3": "retry",  # order exceeds limit (flow control / too many orders)
    "6": "fix_and_retry",  # duplicate order: new ClOrdID
    "11": "fatal",  # unsupported order characteristic
    "99": "fix_and_retry",  # other: price outside band, off tick
    "session": "fatal",  # session Reject (3): our message is malformed; re-sending repeats it
    "business": "fatal",  # BusinessMessageReject (j)
}
TRIGGER_KINDS = ("spread", "ratio", "counter_price")
EXECUTION_MODES = ("ioc", "limit")


@dataclass(frozen=True, slots=True)
class Problem:
    key: str
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.key}: {self.what}; {self.fix}"


class ConfigError(Exception):
    """A configuration input is invalid; carries every problem found, each with key and remedy."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s):\n{lines}")

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, list[Problem]]]:
        return ConfigError, (self.source, self.problems)  # it crosses from a certify worker process intact


MAX_INPUT_BYTES = 64 * 1024 * 1024  # a scenario, config or baseline file: the library's baseline is ~1.3 MB


class UnreadableInput(OSError):
    """An input file that is no regular file (a device, a pipe: /dev/zero never ends) or is larger than
    MAX_INPUT_BYTES: refused before it is read."""


class UnusablePath(OSError):
    """A path the user named that cannot even be looked at (too long, a component that is a file, a
    directory this user may not enter, a symlink loop): its message names the path, the reason and the fix."""

    FIX = "give a path whose directories exist and may be entered, each name at most 255 bytes"

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: cannot be looked at ({reason}); {self.FIX}")

    def __reduce__(self) -> tuple[type[UnusablePath], tuple[str, str]]:
        return UnusablePath, (self.path, self.reason)


def path_kind(path: str | Path) -> str:
    """What a path the user named is: "file", "dir", "other" (a device, a pipe, a socket) or "missing";
    UnusablePath when it cannot be looked at. Path.exists() and is_dir() raise for a name too long or a
    directory without search permission, and os.path's return False for them (a misleading "no such
    file"): every check of a user's path goes through here instead."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        reason = exc.strerror or str(exc)
    except ValueError:  # an embedded NUL byte
        reason = "it contains a NUL character"
    else:
        if stat.S_ISREG(st.st_mode):
            return "file"
        return "dir" if stat.S_ISDIR(st.st_mode) else "other"
    raise UnusablePath(path, reason)


def read_input(path: Path, limit: int = MAX_INPUT_BYTES) -> str:
    """The UTF-8 text of an input file the user named: a regular file of at most `limit` bytes, else
    UnreadableInput (an OSError: callers report it as a file that cannot be read)."""
    if path_kind(path) in ("dir", "other"):  # before open(): opening a pipe waits for a writer
        raise UnreadableInput(f"{path} is not a regular file (a device, a pipe or a directory)")
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise UnreadableInput(f"larger than {limit // (1024 * 1024)} MiB")
    return data.decode("utf-8")


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file as a dict; a missing, unreadable or malformed file is a ConfigError naming it."""
    try:
        return tomllib.loads(read_input(path))
    except FileNotFoundError:
        raise ConfigError(str(path), [Problem("(file)", "file not found", f"give the path of {what}")]) from None
    except UnusablePath as exc:
        raise ConfigError(str(path), [Problem("(file)", f"cannot be looked at ({exc.reason})", exc.FIX)]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            str(path), [Problem("(file)", f"cannot be read ({exc})", "give a readable UTF-8 TOML file")]
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            str(path), [Problem("(file)", f"is not valid TOML ({exc})", "fix the TOML syntax at that line")]
        ) from None


FIX_TEXT = re.compile(r"[\x21-\x7e][\x20-\x7e]*")  # printable ASCII: what a FIX field without an encoding carries
MAX_MAGNITUDE = 1e12  # no price, size, limit or count of a desk is larger: beyond it, a typo
_MISSING = object()
_TYPE_NAMES = {
    float: "a number",
    int: "a whole number",
    str: "a string",
    bool: "true or false",
    list: "an array",
    dict: "a table",
}


class Section:
    """A view of one TOML table that records problems instead of raising on the first one."""

    def __init__(self, data: Any, path: str, problems: list[Problem]):
        self.path = path
        self.problems = problems
        if not isinstance(data, dict):
            self.problem("", f"is {type(data).__name__}, expected a table", f"write [{path}] as a table")
            data = {}
        self.data = data
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def problem(self, name: str, what: str, fix: str) -> None:
        self.problems.append(Problem(self.key(name) if name else self.path, what, fix))

    def has(self, name: str) -> bool:
        return name in self.data

    def ok(self, *names: str) -> bool:
        """Whether none of `names` (relative to this table, or dotted beyond it) has a problem yet: a rule
        between keys judges only values the file gave and this reader took, so a key refused or missing is
        one problem, not also a second one about the stand-in value read in its place."""
        keys = {self.key(n) for n in names}
        return not any(p.key in keys for p in self.problems)

    def get(
        self,
        name: str,
        type_: type,
        default: Any = _MISSING,
        *,
        check: Callable[[Any], bool] | None = None,
        hint: str = "",
        choices: tuple[Any, ...] | None = None,
        magnitude: bool = True,
    ) -> Any:
        """The value of `name` as `type_`, else a problem recorded and a stand-in returned. Numbers beyond
        MAX_MAGNITUDE are typos, unless `magnitude` is False: a key whose `check` is its whole domain (a
        seed takes any signed 64-bit integer)."""
        self.seen.add(name)
        if name not in self.data:
            if default is _MISSING:
                self.problem(name, "is missing", f"add `{name} = ...` ({hint or _TYPE_NAMES[type_]})")
                return _fallback(type_)
            return default
        value = self.data[name]
        ok = isinstance(value, type_) and not (type_ in (int, float) and isinstance(value, bool))
        if type_ is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            self.problem(
                name,
                f"is {value!r} ({type(value).__name__})",
                f"write {_TYPE_NAMES[type_]}" + (f": {hint}" if hint else ""),
            )
            return default if default is not _MISSING else _fallback(type_)
        if type_ in (int, float) and (wrong := number_problem(value, type_, hint, magnitude)):
            self.problem(name, *wrong)
            return default if default is not _MISSING and math.isfinite(value) else _fallback(type_)
        if choices is not None and value not in choices:
            self.problem(name, f"is {value!r}", f"write one of {', '.join(map(repr, choices))}")
            return choices[0]
        if check is not None and not check(value):
            self.problem(name, f"is {value!r}, which is impossible", f"write {hint}")
            return default if default is not _MISSING else _fallback(type_)
        return value

    def sub(self, name: str, optional: bool = False) -> Section:
        self.seen.add(name)
        if name not in self.data:
            if not optional:
                self.problem(name, "is missing", f"add a [{self.key(name)}] table")
            return Section({}, self.key(name), self.problems)
        return Section(self.data[name], self.key(name), self.problems)

    def tables(self, name: str) -> dict[str, Section]:
        """The sub-tables of `name` (e.g. [instruments.CU]), each as a Section."""
        sec = self.sub(name)
        out = {}
        for k, v in sec.data.items():
            sec.seen.add(k)
            out[k] = Section(v, sec.key(k), self.problems)
        return out

    def finish(self) -> None:
        for name in self.data:
            if name not in self.seen:
                known = ", ".join(sorted(self.seen)) or "none"
                self.problem(name, "is not a known key", f"remove it or use one of: {known}")


def number_problem(value: object, type_: type, hint: str = "", magnitude: bool = True) -> tuple[str, str] | None:
    """(what, fix) when `value` is outside the domain every number of a config shares, wherever it stands
    (a key, an entry of a per-instrument table, an element of an array): of `type_` (true and false are
    no numbers; a whole number is a number), finite, and no larger than MAX_MAGNITUDE unless `magnitude`
    is False (a key whose own check is its whole domain); None when it is inside."""
    if isinstance(value, bool) or not isinstance(value, int if type_ is int else (int, float)):
        return f"is {value!r} ({type(value).__name__})", f"write {_TYPE_NAMES[type_]}" + (f": {hint}" if hint else "")
    if not math.isfinite(value):
        return f"is {value!r}", "write a finite number" + (f": {hint}" if hint else "")
    if magnitude and abs(value) > MAX_MAGNITUDE:
        return (
            f"is {value!r}, beyond any real magnitude (|x| > {MAX_MAGNITUDE:g})",
            "write the real value" + (f": {hint}" if hint else ""),
        )
    return None


def _fallback(type_: type) -> Any:
    return {float: 1.0, int: 1, str: "", bool: False, list: [], dict: {}}[type_]


def positive(x: float) -> bool:
    return x > 0


def non_negative(x: float) -> bool:
    return x >= 0


@dataclass(frozen=True, slots=True)
class Instrument:
    """A tradable or pricing-only instrument and how its price and lot convert to tonnes and CNY."""

    name: str
    venue: str
    symbol: str
    currency: str
    price_unit: str  # mass unit the price is quoted per: "t", "kg", "lb"; "" for an FX rate
    lot: float  # contract size in lot_unit
    lot_unit: str
    tick: float
    account: str = ""

    @property
    def lot_tonnes(self) -> float:
        return self.lot / MASS_PER_TONNE[self.lot_unit] if self.lot_unit else 0.0

    @property
    def units_per_tonne(self) -> float:
        return MASS_PER_TONNE[self.price_unit] if self.price_unit else 1.0

    def round_to_tick(self, price: float, side_sign: int = 0) -> float:
        """Round a price to the tick grid: up for buys (+1), down for sells (-1), nearest for 0. A price
        already on the grid stays where it is, however fine the tick: its count of ticks is a whole
        number to within a billionth or the float noise of a count that size, whichever is larger."""
        steps = price / self.tick
        slack = max(1e-9, GRID_NOISE_ULPS * math.ulp(steps))
        if side_sign > 0:
            n = math.ceil(steps - slack)
        elif side_sign < 0:
            n = math.floor(steps + slack)
        else:
            n = round(steps)
        return round(n * self.tick, 10)

    def on_grid(self, price: float) -> bool:
        """Is `price` on the tick grid: a whole number of ticks to within a millionth of a tick, or the
        float noise of a price that size where that is larger (a fine tick on a large price: 1e-9 on a
        price of 70,000 is below its float resolution)?"""
        return abs(round(price / self.tick) * self.tick - price) <= grid_slack(self.tick, price)


@dataclass(frozen=True, slots=True)
class Trigger:
    kind: str
    sell_above: float  # sell leg A / buy leg B when the signal is at or above this
    buy_below: float  # buy leg A / sell leg B when the signal is at or below this
    hysteresis: float  # the signal must retreat this far past the threshold before it re-arms
    max_quote_age: dict[str, float]  # seconds, per instrument name


@dataclass(frozen=True, slots=True)
class Execution:
    mode: str
    payup_ticks: dict[str, int]
    order_timeout: float  # seconds a leg may work before the engine cancels what is left
    cooldown: float  # seconds between the end of one episode and the next signal
    max_concurrent_episodes: int
    # limit mode: when one leg is complete and the other still rests, amend the resting order's price
    # toward the market (OrderCancelReplaceRequest) every `amend_after` seconds, `amend_step_ticks`
    # more each time, at most `max_amends` times; 0 turns it off
    amend_after: float = 0.0
    amend_step_ticks: int = 1
    max_amends: int = 0
    # a cancel or replace not answered within this many seconds may be lost (or its answer): the
    # engine asks the venue for the order's status (its question also shows the venue any gap)
    answer_timeout: float = 0.3
    # a new order not answered within this many times its venue's median recent round trip (never
    # sooner than the slowest plus answer_timeout nor later than this many slowest: AckWatch) may be
    # lost inside the venue: its status is asked; 0 turns it off
    ack_timeout_rtts: float = 4.0


@dataclass(frozen=True, slots=True)
class Recovery:
    """How a legged episode is repaired: chase the missing quantity, then unwind, then escalate."""

    policy: str
    max_chase_attempts: int
    chase_payup_ticks: int  # payup of the first chase order
    chase_step_ticks: int  # added per further attempt
    liquidity_step_ticks: int  # added when the touch shows less than the missing quantity
    max_payup_ticks: int
    legged_budget: float  # seconds a legged episode may stay legged (the desk's limit; checked and reported)
    chase_budget: float  # seconds of chasing before the unwind starts (inside the legged budget)
    unwind_payup_ticks: int
    unwind_step_ticks: int  # added per further unwind attempt
    max_unwind_attempts: int
    reject_policy: dict[str, str]  # OrdRejReason (or "session"/"business") -> retry/fix_and_retry/fatal
    overfill: str
    status_timeout: float = 5.0  # seconds a venue may take to answer the status queries before the desk is alerted

    def reject_class(self, reason: int | None, session_level: bool = False, business: bool = False) -> str:
        if session_level:
            return self.reject_policy.get("session", "fatal")
        if business:
            return self.reject_policy.get("business", "fatal")
        return self.reject_policy.get(str(reason), self.reject_policy.get("default", "fix_and_retry"))


@dataclass(frozen=True, slots=True)
class Strategy:
    leg_a: str
    leg_b: str
    fx: str  # pricing-only instrument converting leg B's currency to leg A's ("" when the same)
    lot_ratio: tuple[int, int]  # lots of A : lots of B
    clip_lots_a: int
    rounding: str
    price_multiplier_a: float
    price_multiplier_b: float
    offset: float  # added to the spread (CNY/t), e.g. import VAT, premium or freight terms
    trigger: Trigger
    execution: Execution
    recovery: Recovery


@dataclass(frozen=True, slots=True)
class RiskLimits:
    max_order_lots: dict[str, int]
    max_position_lots: dict[str, int]
    max_notional_cny: float  # per order
    price_band_pct: float  # order price within this % of the reference mid
    max_naked_tonnes: float = math.inf  # hard limit: worst case if only one leg fills
    max_slippage_ticks: int = 1_000_000  # recovery price versus the trigger price
    max_orders_per_day: dict[str, int] = field(default_factory=dict)
    max_cancels_per_day: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    instruments: dict[str, Instrument]
    strategy: Strategy
    risk: RiskLimits
    node: str = "N1"
    epoch: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def read_instruments(root: Section, venues: set[str] | None) -> dict[str, Instrument]:
    out: dict[str, Instrument] = {}
    for name, sec in root.tables("instruments").items():
        venue = sec.get("venue", str, hint="the name of a venue table")
        if venues is not None and venue and venue not in venues:
            sec.problem(
                "venue",
                f"names unknown venue {venue!r}",
                f"write one of {', '.join(sorted(venues)) or '(no venues defined)'}",
            )
        price_unit = sec.get("price_unit", str, "", choices=("", *MASS_PER_TONNE))
        lot_unit = sec.get("lot_unit", str, "", choices=("", *MASS_PER_TONNE))
        out[name] = Instrument(
            name=name,
            venue=venue,
            symbol=sec.get("symbol", str, name),
            currency=sec.get("currency", str),
            price_unit=price_unit,
            lot=sec.get("lot", float, 0.0, check=non_negative, hint="a lot size >= 0"),
            lot_unit=lot_unit,
            tick=sec.get("tick", float, check=lambda t: t >= 1e-9, hint="a tick size >= 1e-9, e.g. 10 or 0.0005"),
            account=sec.get("account", str, ""),
        )
        inst = out[name]
        for key in ("symbol", "account"):  # they become FIX fields: printable ASCII, no SOH
            value = getattr(inst, key)
            if value and not FIX_TEXT.fullmatch(value):
                bad = next(c for c in value if not FIX_TEXT.fullmatch(c))
                sec.problem(
                    key,
                    f"is {value!r}, with {bad!r}, which a FIX field cannot carry",
                    "write printable ASCII only (letters, digits, punctuation; no control characters)",
                )
        for key, value in (("lot", inst.lot), ("tick", inst.tick)):
            if value > 1e9:
                sec.problem(
                    key, f"is {value!r}, beyond 1e9: no contract is that large", f"write the contract's real {key}"
                )
        sec.finish()
    return out


def _per_instrument(
    sec: Section,
    name: str,
    type_: type,
    instruments: dict[str, Instrument],
    hint: str,
    check: Callable[[Any], bool],
    default: Any = _MISSING,
) -> dict[str, Any]:
    table = sec.get(name, dict, {} if default is not _MISSING else _MISSING, hint=hint)
    out = {}
    for k, v in table.items():
        if k not in instruments:
            sec.problem(f"{name}.{k}", "names an unknown instrument", f"use one of {', '.join(instruments)}")
            continue
        wrong = number_problem(v, type_, hint)
        if wrong is None and not check(v):
            wrong = f"is {v!r}", f"write {hint}"
        if wrong:
            sec.problem(f"{name}.{k}", *wrong)
            continue
        out[k] = type_(v)
    return out


def _absent(sec: Section, table: str, name: str) -> bool:
    """Whether `sec` has a per-instrument `table` that leaves out `name` (a value it refused is not absent:
    that problem is already reported, and "is missing" beside it would contradict it)."""
    given = sec.data.get(table)
    return isinstance(given, dict) and name not in given


def read_engine(root: Section, venues: set[str] | None = None) -> EngineConfig:
    """Read [instruments], [strategy] and [risk] from a config root; problems accumulate on root."""
    instruments = read_instruments(root, venues)
    st = root.sub("strategy")
    names = tuple(instruments)
    leg_a = st.get("leg_a", str, choices=names or ("",))
    leg_b = st.get("leg_b", str, choices=names or ("",))
    fx = st.get("fx", str, "", choices=("", *names))
    legs_ok = st.ok("leg_a", "leg_b")
    if legs_ok and leg_a and leg_a == leg_b:
        st.problem("leg_b", "is the same instrument as leg_a", "name two different instruments")
    for leg_key, leg in (("leg_a", leg_a), ("leg_b", leg_b)):
        inst = instruments.get(leg)
        if st.ok(leg_key) and inst is not None and (inst.lot <= 0 or not inst.lot_unit):
            root.problem(
                f"instruments.{leg}.lot",
                f"is {inst.lot:g} {inst.lot_unit or '(no lot_unit)'} but {leg} "
                f"is traded ({leg_key}): its quantities could not be aligned",
                'write lot > 0 and lot_unit (t, kg or lb), e.g. lot = 5, lot_unit = "t"',
            )
    ratio = st.get("lot_ratio", list, hint="[lots of A, lots of B], e.g. [5, 2]")
    if not (len(ratio) == 2 and all(number_problem(x, int) is None and x > 0 for x in ratio)):
        if st.ok("lot_ratio"):
            st.problem("lot_ratio", f"is {ratio!r}", "write two whole numbers > 0, e.g. [5, 2]")
        ratio = [1, 1]
    tr = st.sub("trigger")
    kind = tr.get("kind", str, choices=TRIGGER_KINDS)
    sell_above = tr.get("sell_above", float)
    buy_below = tr.get("buy_below", float)
    if tr.ok("sell_above", "buy_below") and sell_above <= buy_below:
        tr.problem(
            "sell_above",
            f"({sell_above}) is not above buy_below ({buy_below})",
            "set sell_above > buy_below so the two sides cannot fire together",
        )
    ages = _per_instrument(tr, "max_quote_age_ms", float, instruments, "milliseconds > 0", positive)
    for leg_key, leg in (("leg_a", leg_a), ("leg_b", leg_b), ("fx", fx)):
        if st.ok(leg_key) and leg and leg in instruments and _absent(tr, "max_quote_age_ms", leg):
            tr.problem(
                f"max_quote_age_ms.{leg}", "is missing", f"add `{leg} = <ms>`: every input needs a staleness limit"
            )
    trigger = Trigger(
        kind,
        sell_above,
        buy_below,
        tr.get("hysteresis", float, 0.0, check=non_negative, hint="a number >= 0"),
        {k: v / 1000.0 for k, v in ages.items()},
    )
    tr.finish()
    ex = st.sub("execution")
    execution = Execution(
        mode=ex.get("mode", str, "ioc", choices=EXECUTION_MODES),
        payup_ticks=_per_instrument(
            ex, "payup_ticks", int, instruments, "a whole number of ticks >= 0", non_negative, default={}
        ),
        order_timeout=ex.get("order_timeout_ms", float, 2000.0, check=positive, hint="milliseconds > 0") / 1000.0,
        cooldown=ex.get("cooldown_ms", float, 0.0, check=non_negative, hint="milliseconds >= 0") / 1000.0,
        max_concurrent_episodes=ex.get("max_concurrent_episodes", int, 1, check=positive, hint="a whole number >= 1"),
        amend_after=ex.get("amend_after_ms", float, 0.0, check=non_negative, hint="milliseconds >= 0 (0: off)") / 1e3,
        amend_step_ticks=ex.get("amend_step_ticks", int, 1, check=positive, hint="a whole number of ticks >= 1"),
        max_amends=ex.get("max_amends", int, 0, check=non_negative, hint="a whole number >= 0"),
        answer_timeout=ex.get("answer_timeout_ms", float, 300.0, check=positive, hint="milliseconds > 0") / 1e3,
        ack_timeout_rtts=ex.get(
            "ack_timeout_rtts", float, 4.0, check=non_negative, hint="a multiple of round trips >= 0 (0: off)"
        ),
    )
    amending_ok = ex.ok("amend_after_ms", "max_amends", "mode")
    if amending_ok and (execution.amend_after > 0) != (execution.max_amends > 0):
        ex.problem(
            "amend_after_ms",
            "and max_amends must both be set (or both 0)",
            "write amend_after_ms > 0 with max_amends >= 1 to amend resting legs, or neither",
        )
    elif amending_ok and execution.amend_after > 0 and execution.mode != "limit":
        ex.problem(
            "amend_after_ms",
            f"amends resting orders, but mode is {execution.mode!r} (nothing rests)",
            'use mode = "limit" or drop amend_after_ms and max_amends',
        )
    ex.finish()
    rc = st.sub("recovery", optional=True)
    policy = dict(DEFAULT_REJECT_POLICY)
    for reason, cls in rc.get("reject_policy", dict, {}, hint='a table such as { "99" = "fix_and_retry" }').items():
        if cls not in REJECT_CLASSES:
            rc.problem(f"reject_policy.{reason}", f"is {cls!r}", f"write one of {', '.join(REJECT_CLASSES)}")
        elif not ((reason.isascii() and reason.isdigit()) or reason in ("session", "business", "default")):
            rc.problem(
                f"reject_policy.{reason}",
                "is not an OrdRejReason",
                'use an OrdRejReason number (e.g. "99"), "session", "business" or "default"',
            )
        else:
            policy[reason] = cls
    recovery = Recovery(
        policy=rc.get(
            "policy", str, "escalate" if not st.has("recovery") else "chase_unwind", choices=RECOVERY_POLICIES
        ),
        max_chase_attempts=rc.get("max_chase_attempts", int, 3, check=non_negative, hint="a whole number >= 0"),
        chase_payup_ticks=rc.get("chase_payup_ticks", int, 2, check=non_negative, hint="ticks >= 0"),
        chase_step_ticks=rc.get("chase_step_ticks", int, 2, check=non_negative, hint="ticks >= 0"),
        liquidity_step_ticks=rc.get("liquidity_step_ticks", int, 1, check=non_negative, hint="ticks >= 0"),
        max_payup_ticks=rc.get("max_payup_ticks", int, 10, check=non_negative, hint="ticks >= 0"),
        legged_budget=rc.get("legged_budget_ms", float, 800.0, check=positive, hint="milliseconds > 0") / 1e3,
        chase_budget=rc.get(
            "chase_budget_ms",
            float,
            0.0,
            check=non_negative,
            hint="milliseconds >= 0 (default: half the legged budget)",
        )
        / 1e3,
        unwind_payup_ticks=rc.get("unwind_payup_ticks", int, 5, check=non_negative, hint="ticks >= 0"),
        unwind_step_ticks=rc.get("unwind_step_ticks", int, 5, check=non_negative, hint="ticks >= 0"),
        max_unwind_attempts=rc.get("max_unwind_attempts", int, 3, check=positive, hint="a whole number >= 1"),
        reject_policy=policy,
        overfill=rc.get("overfill", str, "hedge", choices=OVERFILL_POLICIES),
        status_timeout=rc.get("status_timeout_ms", float, 5000.0, check=positive, hint="milliseconds > 0") / 1e3,
    )
    if recovery.chase_budget == 0.0:
        recovery = dataclasses.replace(recovery, chase_budget=recovery.legged_budget / 2)
    elif rc.ok("chase_budget_ms", "legged_budget_ms") and recovery.chase_budget > recovery.legged_budget:
        rc.problem(
            "chase_budget_ms",
            "is longer than legged_budget_ms: the unwind could never finish in budget",
            "set chase_budget_ms < legged_budget_ms",
        )
    rc.finish()
    strategy = Strategy(
        leg_a=leg_a,
        leg_b=leg_b,
        fx=fx,
        lot_ratio=(ratio[0], ratio[1]),
        clip_lots_a=st.get("clip_lots_a", int, check=positive, hint="lots of leg A per episode, >= 1"),
        rounding=st.get("rounding", str, "nearest", choices=ROUNDING_RULES),
        price_multiplier_a=st.get("price_multiplier_a", float, 1.0, check=positive, hint="a multiplier > 0"),
        price_multiplier_b=st.get("price_multiplier_b", float, 1.0, check=positive, hint="a multiplier > 0"),
        offset=st.get("offset", float, 0.0),
        trigger=trigger,
        execution=execution,
        recovery=recovery,
    )
    if (
        legs_ok
        and st.ok("fx")
        and leg_a in instruments
        and leg_b in instruments
        and root.ok(f"instruments.{leg_a}.currency", f"instruments.{leg_b}.currency")
        and not fx
        and instruments[leg_a].currency != instruments[leg_b].currency
    ):
        st.problem(
            "fx",
            "is missing but the legs trade in different currencies",
            "add `fx = \"<FX instrument>\"` quoting leg B's currency in leg A's",
        )
    st.finish()
    rk = root.sub("risk")
    risk = RiskLimits(
        max_order_lots=_per_instrument(rk, "max_order_lots", int, instruments, "a whole number of lots >= 1", positive),
        max_position_lots=_per_instrument(
            rk, "max_position_lots", int, instruments, "a whole number of lots >= 1", positive
        ),
        max_notional_cny=rk.get("max_notional_cny", float, check=positive, hint="CNY per order, > 0"),
        price_band_pct=rk.get("price_band_pct", float, check=positive, hint="a percentage > 0, e.g. 3"),
        max_naked_tonnes=rk.get("max_naked_tonnes", float, math.inf, check=positive, hint="tonnes > 0"),
        max_slippage_ticks=rk.get("max_slippage_ticks", int, 1_000_000, check=non_negative, hint="ticks >= 0"),
        max_orders_per_day=_per_instrument(
            rk, "max_orders_per_day", int, instruments, "a whole number >= 1", positive, default={}
        ),
        max_cancels_per_day=_per_instrument(
            rk, "max_cancels_per_day", int, instruments, "a whole number >= 0", non_negative, default={}
        ),
    )
    for leg_key, leg in (("leg_a", leg_a), ("leg_b", leg_b)):
        for limit in ("max_order_lots", "max_position_lots"):
            if st.ok(leg_key) and leg in instruments and _absent(rk, limit, leg):
                rk.problem(f"{limit}.{leg}", "is missing", f"add `{leg} = <lots>`: every traded leg needs a limit")
    rk.finish()
    return EngineConfig(instruments=instruments, strategy=strategy, risk=risk)
