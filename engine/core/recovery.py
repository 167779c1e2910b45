"""The recovery of a legged episode: re-order (chase) the missing quantity, roll back (unwind) the
filled leg, or escalate. Called by the core whenever a LEGGED episode has nothing working.

Rules:
- Chase first: each attempt re-sends the missing lots of each short leg as IOC at the touch plus a
  payup that starts at `chase_payup_ticks`, grows by `chase_step_ticks` per attempt, gains
  `liquidity_step_ticks` when the touch shows fewer lots than are missing, and never passes
  `max_payup_ticks` nor the risk limit on slippage from the trigger price.
- The last reject decides the class (retry, fix_and_retry, fatal) from the configured table: a
  fatal reject skips the chase. Running out of attempts or of chase time (`chase_budget`, inside the
  legged-time budget so that the unwind can still finish in it) also unwinds.
- Unwind: flatten what each leg holds with IOC orders on the opposite side, never more than the leg
  holds (an unwind never flips the position), paying up `unwind_step_ticks` more per attempt, up to
  `max_unwind_attempts`. Once the legged budget is spent, an unwind the venue did not handle in time
  (nothing filled, and no report of its own before the engine gave up on it: lost, or unacknowledged
  until the engine cancelled it) is not sent again: the episode escalates to the desk (unwinds a venue
  lost in turn, each found lost only at its own deadline, held one legged 1.95 s against an 800 ms
  budget: explore seed 3502 on f06; unwinds a venue acknowledged only 1.5 s late, each cancelled
  unacknowledged and sent again, held one 2.08 s: explore seed 3801 on f27); one the venue answered in
  time (refused, part-filled, cancelled by the venue, or acknowledged and then cancelled) is sent again.
- Overfill: "hedge" unwinds the excess; "record" keeps it, audited as an anomaly.
- A chase order that cannot be sent (a risk limit refuses it, e.g. the far book is limit-locked or
  one-sided so its price breaks the slippage limit, or that side of the book is empty) ends the
  chase: the filled leg is unwound (never flipping). Only an unwind that cannot be sent, or that
  fails, escalates to the desk with an alert.
- Recovery orders go only to venues logged on and reconciled, and it waits only for the venues its
  next orders go to: a chase's short legs, an unwind's filled legs (a chase of the missing lots goes
  while the filled leg's venue is down); after a takeover, every recovery order also waits
  for each venue of the episode that is logged on to list all its orders (the old node may have
  repaired the episode there already), up to the status timeout. A venue becoming ready resumes every
  waiting episode.
- Recovery orders are priced only from a fresh quote (the trigger's max_quote_age; a session that
  dropped or lost messages leaves its books stale until its next live quote): a stale book is waited
  for, the next live quote of it resumes the episode, and if none comes before the legged budget is
  spent the episode escalates to the desk (a price from a quote the market has left may be far
  outside the band of the real market).
- After the kill switch nothing is sent, recovery included: legged episodes escalate to the desk.
"""

from __future__ import annotations

from typing import Protocol

from engine.config import Instrument, Strategy
from engine.core.episode import Episode, EpisodeEvent, Leg, RecoveryMode
from engine.core.events import Action, Alert, Anomaly, Audit, SetTimer, TimerKind, timer_key
from engine.core.trigger import TopOfBook


class RecoveryContext(Protocol):
    """What a recovery policy may see and do: the narrow face of the core it is given (never the
    whole EngineCore, which it does not import)."""

    strategy: Strategy
    instruments: dict[str, Instrument]
    books: dict[str, TopOfBook]
    killed: bool

    def venue_ready(self, venue: str) -> bool: ...

    def order_list_due(self, venue: str) -> bool: ...

    def quote_fresh(self, instrument: str, now: float) -> bool: ...

    def quote_age_limit(self, instrument: str) -> float: ...

    def price_from_touch(self, inst: Instrument, side: str, payup_ticks: int) -> float | None: ...

    def recovery_order(
        self,
        ep: Episode,
        leg: Leg,
        side: str,
        qty: int,
        price: float,
        now: float,
        purpose: str,
        check_slippage: bool = True,
    ) -> tuple[list[Action], bool]: ...

    def move_episode(self, ep: Episode, event: EpisodeEvent, now: float) -> list[Action]: ...

    def set_timer(self, at: float, key: str) -> SetTimer: ...

    def anomaly(self, now: float, kind: str, cl_ord_id: str, detail: str, **data: object) -> Anomaly: ...


class RecoveryPolicy(Protocol):
    def on_legged(self, core: RecoveryContext, episode: Episode, now: float) -> list[Action]: ...

    def quotes_overdue(self, core: RecoveryContext, episode: Episode, now: float) -> list[Action]: ...


def _last_unwind_unhandled(ep: Episode) -> bool:
    """Whether a venue failed to handle the episode's last unwind attempt in time: one of its orders, on a
    leg the next attempt would trade (still holding lots), ended with nothing filled and no report of its
    own before the engine gave up on it: lost (only a cancel refused as unknown, or a status answer) or
    unacknowledged until the engine cancelled it (the venue's confirmation of that cancel comes too late
    to count). A refusal is an answer: the venue got that order, and a venue that acknowledged it in time
    may fill the next one. A leg its own unwind flattened says nothing of the venue of another (explore
    seed 3803 on f84: COMEX's unwind filled, SHFE's were acknowledged late); one venue that did not
    handle its leg's unwind is enough, past the budget, for the desk: sending both legs again would send
    again to the venue that did not answer."""
    last = [
        leg.orders[-1]
        for leg in ep.legs.values()
        if leg.filled > 1e-9 and leg.orders and leg.orders[-1].purpose == "unwind"
    ]
    return any((not o.answered or o.cancelled_unanswered) and o.cum_qty <= 1e-9 for o in last)


def escalate(core: RecoveryContext, ep: Episode, now: float, why: str) -> list[Action]:
    text = f"episode {ep.decision_id} escalated: {why}; missing {ep.missing()} lots, naked {ep.naked_tonnes():.3f} t"
    ep.reason = why
    return [
        Alert(now, "critical", text, ep.decision_id),
        Audit(now, "escalate", ep.decision_id, detail=text),
        *core.move_episode(ep, EpisodeEvent.ESCALATE, now),
    ]


def _wait_for(core: RecoveryContext, ep: Episode, legs: list[str], now: float) -> list[Action]:
    """Nothing, when every venue the next recovery orders go to (those of `legs`) is logged on and
    reconciled; else the audit that the episode waits for them. Only those venues: a chase of the
    missing lots goes while the filled leg's venue is down (its fills are known, and a late one there
    reopens the repair), and an unwind waits only for the venues of what it flattens. The episode
    resumes when a venue becomes ready (`Reconciliation.resume_waiting`)."""
    down = sorted(v for v in {core.instruments[ep.legs[n].instrument].venue for n in legs} if not core.venue_ready(v))
    if down:
        ep.quotes_awaited = frozenset()  # a session outage is waited out whole (invariant 1 excuses it)
        return [Audit(now, "waiting_for_session", ep.decision_id, detail=", ".join(down))]
    stale = frozenset(ep.legs[n].instrument for n in legs if not core.quote_fresh(ep.legs[n].instrument, now))
    if not stale:
        ep.quotes_awaited = frozenset()
        return []
    out: list[Action] = [Audit(now, "waiting_for_market_data", ep.decision_id, detail=", ".join(sorted(stale)))]
    if not ep.quotes_awaited:
        # the wait begins: it may last the rest of the legged budget, or, when a session outage has used
        # that up already, as long as a quote may be old (the logon's snapshot comes well inside it)
        end = ep.stages["legged"] + core.strategy.recovery.legged_budget
        if end <= now:
            end = now + min(core.quote_age_limit(name) for name in stale)
        out.append(core.set_timer(end, timer_key(TimerKind.QUOTES, ep.decision_id)))
    ep.quotes_awaited = stale
    return out


def _wait_for_order_lists(core: RecoveryContext, ep: Episode, now: float) -> list[Action]:
    """Nothing, unless a venue of the episode is to list all its orders after a takeover
    (`order_list_due`: logged on, the answer one round trip away): then the audit that recovery waits
    for that list. The old node may have repaired the episode there already (unwound the filled leg,
    or chased the missing lots): a chase sent before the list balanced the episode on paper while the
    venues held one leg naked (explore seed 4005 on f75: W10), and an unwind would flatten a leg the
    old node's chase had already matched. The list adopts such orders into the episode, and its last
    answer resumes it (`Reconciliation.answered`). A venue not logged on is not waited for (its list
    comes at its logon and reopens an episode that ended meanwhile), nor one past the status timeout."""
    due = sorted(
        v for v in {core.instruments[leg.instrument].venue for leg in ep.legs.values()} if core.order_list_due(v)
    )
    if not due:
        return []
    return [Audit(now, "waiting_for_order_list", ep.decision_id, detail=", ".join(due))]


def _quotes_overdue(core: RecoveryContext, ep: Episode, now: float) -> list[Action]:
    """The legged budget is spent: an episode still waiting for a fresh quote escalates to the desk."""
    if not ep.quotes_awaited or ep.working or ep.terminal:
        return []
    stale = sorted(ep.quotes_awaited)
    ep.quotes_awaited = frozenset()
    return escalate(core, ep, now, f"no fresh quote of {', '.join(stale)} within the legged budget")


class EscalateOnLegged:
    """No automatic repair: escalate the legged episode to the desk with its exposure."""

    def on_legged(self, core: RecoveryContext, episode: Episode, now: float) -> list[Action]:
        return escalate(core, episode, now, "legged, no recovery policy")

    def quotes_overdue(self, core: RecoveryContext, episode: Episode, now: float) -> list[Action]:
        return _quotes_overdue(core, episode, now)


class ChaseThenUnwind:
    """Chase the missing quantity, unwind when the chase cannot succeed, escalate when neither can."""

    def quotes_overdue(self, core: RecoveryContext, ep: Episode, now: float) -> list[Action]:
        return _quotes_overdue(core, ep, now)

    def on_legged(self, core: RecoveryContext, ep: Episode, now: float) -> list[Action]:
        rc = core.strategy.recovery
        out: list[Action] = []
        if core.killed:  # the desk pressed the kill switch: no order of any kind, the desk takes over
            return escalate(core, ep, now, "kill switch: recovery stopped, exposure left to the desk")
        if ep.mode is RecoveryMode.NONE:
            ep.set_mode(RecoveryMode.CHASE)
            out.append(
                core.set_timer(ep.stages["legged"] + rc.chase_budget, timer_key(TimerKind.LEGGED, ep.decision_id))
            )
        missing = ep.missing()
        if ep.mode is RecoveryMode.CHASE and all(m <= 1e-9 for m in missing.values()):
            if rc.overfill == "record":  # every leg at or beyond target: keep the excess, on record
                out.append(core.anomaly(now, "overfill", "", f"episode {ep.decision_id} overfilled: {missing}"))
                return out + core.move_episode(ep, EpisodeEvent.DONE_BALANCED, now)
            ep.set_mode(RecoveryMode.HEDGE_OVERFILL)
        if ep.mode is RecoveryMode.CHASE:
            why = self._stop_chasing(core, ep, now)
            if why is None:
                waiting = _wait_for(core, ep, [n for n, m in missing.items() if m > 1e-9], now)
                waiting = waiting or _wait_for_order_lists(core, ep, now)
                if waiting:
                    return out + waiting
                actions, why = self._chase(core, ep, missing, now)
                out += actions
                if why is None:
                    return out
                if ep.working:  # part of this attempt went out: unwind once it is done
                    ep.set_mode(RecoveryMode.UNWIND)
                    return out + [Audit(now, "unwind_decision", ep.decision_id, detail=why)]
            ep.set_mode(RecoveryMode.UNWIND)
            out.append(Audit(now, "unwind_decision", ep.decision_id, detail=why))
        if ep.mode is RecoveryMode.HEDGE_OVERFILL:
            excess = {n: -m for n, m in missing.items() if m < 0}
            waiting = _wait_for(core, ep, [n for n, lots in excess.items() if lots > 1e-9], now)
            waiting = waiting or _wait_for_order_lists(core, ep, now)
            return out + (waiting or self._flatten(core, ep, now, excess, "overfill_hedge"))
        if ep.unwind_attempts >= rc.max_unwind_attempts:
            return out + escalate(core, ep, now, f"unwind failed after {ep.unwind_attempts} attempts")
        if ep.unwind_attempts and now - ep.stages["legged"] >= rc.legged_budget and _last_unwind_unhandled(ep):
            spent = f"{rc.legged_budget * 1e3:.0f} ms"
            return out + escalate(
                core,
                ep,
                now,
                f"legged budget ({spent}) spent, and the venue did not handle unwind attempt {ep.unwind_attempts} "
                f"in time (lost, or unacknowledged until cancelled)",
            )
        waiting = _wait_for(core, ep, [n for n, leg in ep.legs.items() if leg.filled > 1e-9], now)
        waiting = waiting or _wait_for_order_lists(core, ep, now)
        if waiting:
            return out + waiting
        ep.unwind_attempts += 1
        return out + self._flatten(core, ep, now, {n: leg.filled for n, leg in ep.legs.items()}, "unwind")

    @staticmethod
    def _stop_chasing(core: RecoveryContext, ep: Episode, now: float) -> str | None:
        rc = core.strategy.recovery
        last = ep.last_reject
        if last is not None and rc.reject_class(*last) == "fatal":
            return f"fatal reject (reason {last[0]}{', session' if last[1] else ''})"
        if ep.chase_attempts >= rc.max_chase_attempts:
            return f"chase budget spent ({ep.chase_attempts} attempts)"
        if now - ep.stages["legged"] >= rc.chase_budget:
            return (
                f"chase time spent ({rc.chase_budget * 1e3:.0f} ms of a {rc.legged_budget * 1e3:.0f} ms legged budget)"
            )
        return None

    def _chase(
        self, core: RecoveryContext, ep: Episode, missing: dict[str, float], now: float
    ) -> tuple[list[Action], str | None]:
        """One chase attempt: (actions, None), or (actions, why) when an order could not be sent."""
        rc = core.strategy.recovery
        out: list[Action] = []
        retry_same_price = ep.last_reject is not None and rc.reject_class(*ep.last_reject) == "retry"
        ep.chase_attempts += 1
        for name, lots in missing.items():
            if lots <= 1e-9:
                continue
            leg = ep.legs[name]
            inst = core.instruments[leg.instrument]
            payup = rc.chase_payup_ticks + rc.chase_step_ticks * (ep.chase_attempts - 1)
            book = core.books.get(inst.name)
            touch_size = (book.ask_size if leg.side == "1" else book.bid_size) if book else 0.0
            if touch_size < lots:
                payup += rc.liquidity_step_ticks
            payup = min(payup, rc.max_payup_ticks)
            last_price = leg.orders[-1].price if leg.orders else None
            price = (
                last_price
                if retry_same_price and last_price is not None
                else core.price_from_touch(inst, leg.side, payup)
            )
            if price is None:
                why = f"chase impossible: {inst.name} has no {'offers' if leg.side == '1' else 'bids'}"
                out.append(
                    Audit(
                        now,
                        "risk_breach",
                        ep.decision_id,
                        instrument=inst.name,
                        account=inst.account,
                        side=leg.side,
                        qty=int(round(lots)),
                        detail=f"chase: {why}",
                    )
                )
                return out, why
            actions, sent = core.recovery_order(ep, leg, leg.side, int(round(lots)), price, now, "chase")
            out += actions
            if not sent:
                return out, f"chase order on {inst.name} refused by risk"
        return out, None

    def _flatten(
        self, core: RecoveryContext, ep: Episode, now: float, lots_by_leg: dict[str, float], purpose: str
    ) -> list[Action]:
        out: list[Action] = []
        rc = core.strategy.recovery
        for name, lots in lots_by_leg.items():
            if abs(lots) <= 1e-9:
                continue
            leg = ep.legs[name]
            inst = core.instruments[leg.instrument]
            # the leg holds `lots` (> 0: its fills, or their excess over the target) in its own
            # direction: trade the opposite way, never more than the leg holds (never a flip)
            side = "2" if leg.side == "1" else "1"
            qty = int(round(min(lots, leg.filled)))
            payup = rc.unwind_payup_ticks + rc.unwind_step_ticks * max(ep.unwind_attempts - 1, 0)
            price = core.price_from_touch(inst, side, payup)
            if price is None:
                return out + escalate(
                    core, ep, now, f"{purpose} impossible: {inst.name} has no {'offers' if side == '1' else 'bids'}"
                )
            actions, sent = core.recovery_order(ep, leg, side, qty, price, now, purpose, check_slippage=False)
            out += actions
            if not sent:
                return out + escalate(core, ep, now, f"{purpose} order on {inst.name} refused by risk")
        if not out:
            return escalate(core, ep, now, f"{purpose}: nothing to trade yet still legged")
        return out
