"""The recovery seam: what the engine does with an episode that ends its entry LEGGED.

A policy is called by the core with the legged episode and returns actions; it may move the
episode (ESCALATE) or send recovery orders through the core's own order path. The default policy
escalates at once: a desk without automatic recovery must see every legged episode immediately.
Re-order (chase) and rollback (unwind) policies plug in here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from engine.episode import EpisodeEvent
from engine.events import Action, Alert, Audit

if TYPE_CHECKING:
    from engine.core import EngineCore
    from engine.episode import Episode


class RecoveryPolicy(Protocol):
    def on_legged(self, core: EngineCore, episode: Episode, now: float) -> list[Action]: ...


class EscalateOnLegged:
    """No automatic repair: escalate the legged episode to the desk with its exposure."""

    def on_legged(self, core: EngineCore, episode: Episode, now: float) -> list[Action]:
        exposure_t = episode.naked_tonnes()
        text = (f"episode {episode.decision_id} legged: missing {episode.missing()} lots, "
                f"naked {exposure_t:.3f} t; no automatic recovery configured")
        episode.reason = "legged, no recovery policy"
        return [Alert(now, "critical", text, episode.decision_id),
                Audit(now, "escalate", episode.decision_id, detail=text),
                *core.move_episode(episode, EpisodeEvent.ESCALATE, now)]
