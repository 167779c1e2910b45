"""Network links: one per venue and direction, delivering FIX strings after a drawn latency, in order
(TCP never reorders: a message is never delivered before the one sent ahead of it)."""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import simpy

from simulator.faults import order_ids
from simulator.rng import normal
from simulator.stepping import call_later, stepped_here


@dataclass(frozen=True, slots=True)
class Latency:
    """constant: `floor` seconds. lognormal: floor + a lognormal jitter with median `median`, shape `sigma`.
    Either way, `vol_coupling` seconds more per basis point of the venue's last fair-value move: queues
    and gateways slow down when the market moves."""

    dist: str
    floor: float
    median: float = 0.0
    sigma: float = 0.0
    vol_coupling: float = 0.0

    def draw(self, rng: random.Random) -> float:
        if self.dist == "constant":
            return self.floor
        return self.floor + self.median * math.exp(self.sigma * normal(rng))


class Link:
    def __init__(
        self,
        env: simpy.Environment,
        name: str,
        latency: Latency,
        rng: random.Random,
        deliver: Callable[[str], None],
        venue: str = "",
        direction: str = "",
        faults=None,
    ):
        self.env = env
        self.venue = venue
        self.direction = direction  # "up" engine -> venue, "down" venue -> engine
        self.faults = faults
        self.down = False  # a cut connection: what is in flight is lost
        self.dropped = 0
        self.volatility: Callable[[], float] = lambda: 0.0  # the venue's last move in bp (set by the runner)
        self.name = name
        self.latency = latency
        self.rng = rng
        self.deliver = deliver
        self.last_arrival = 0.0
        self.sent = 0
        # in flight, in the order sent: each arrival's timeout takes the head, so messages due at the
        # same time (queued behind a slow one) arrive in order whatever way floating point rounds
        # now + (arrival - now)
        self.in_flight: deque[str] = deque()
        self._arrive_once = self._arrive  # the callback each delivery's timeout calls (bound once)
        self._direct = stepped_here(env)  # deliveries scheduled without simpy's Timeout (simulator.stepping)

    def send(self, raw: str) -> None:
        delay = self.latency.draw(self.rng)
        if self.latency.vol_coupling:
            delay += self.latency.vol_coupling * self.volatility()
        env = self.env
        now = env.now
        faults = self.faults
        if faults is not None:
            kinds = faults.of_kind
            if "drop" in kinds:
                msg_type = raw.split("\x0135=", 1)[1].split("\x01", 1)[0]
                if faults.drops(msg_type, "\x0143=Y\x01" in raw, self.venue, self.direction, now, order_ids(raw)):
                    self.dropped += 1
                    return
            if "latency_spike" in kinds:
                spike = faults.for_message("latency_spike", self.venue, self.direction, now)
                if spike is not None:
                    delay += spike.delay
        arrival = max(now + delay, self.last_arrival)
        self.last_arrival = arrival
        self.sent += 1
        self.in_flight.append(raw)
        call_later(env, arrival - now, self._arrive_once, self._direct)

    def _arrive(self, _event: object) -> None:
        """The next message reaches the far end, unless the connection was cut while it was in flight."""
        raw = self.in_flight.popleft()
        if not self.down:
            self.deliver(raw)
