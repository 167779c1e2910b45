"""The live shell's garbage-collection policy: automatic collection off while installed, cycles
collected when the engine thread is idle (or past a hard bound when it never is), state restored."""

from __future__ import annotations

import gc
import weakref

from engine.shell.quiet_gc import QuietGc


class Node:
    def __init__(self):
        self.other = self


def _cycle() -> weakref.ref:
    return weakref.ref(Node())  # only the cycle keeps it alive: reference counting cannot free it


def test_cycles_wait_for_an_idle_collection_and_the_collector_is_restored():
    was = gc.isenabled()
    quiet = QuietGc(idle_threshold=50, hard_threshold=10**9)
    quiet.install()
    try:
        assert not gc.isenabled()
        gc.collect(0)  # count from zero: below the threshold an idle engine does not collect
        assert not quiet.idle()
        junk = [[] for _ in range(100)]  # enough young objects to make a collection worth it
        ref = _cycle()
        assert ref() is not None  # no automatic collection freed it
        assert quiet.idle() and ref() is None and quiet.collections >= 1
        del junk
    finally:
        quiet.uninstall()
    assert gc.isenabled() == was


def test_a_busy_engine_still_collects_past_the_hard_bound():
    quiet = QuietGc(idle_threshold=10**9, hard_threshold=100)
    quiet.install()
    try:
        ref = _cycle()
        keep = [[] for _ in range(200)]
        quiet.busy()
        assert ref() is None and quiet.collections == 1
        assert not quiet.idle()  # the idle threshold is far away
        del keep
    finally:
        quiet.uninstall()


def test_uninstall_restores_either_state_and_a_second_install_takes_over_again():
    """Found by mutation (the saved state could be lost, or kept after uninstall so that a second
    install did nothing): whatever the collector's state before, uninstall puts it back, and the next
    install turns it off again; every collection is counted."""
    was = gc.isenabled()
    try:
        for before in (True, False):
            gc.enable() if before else gc.disable()
            quiet = QuietGc(idle_threshold=0, hard_threshold=0)
            for _ in range(2):
                quiet.install()
                assert not gc.isenabled()
                quiet.idle()
                quiet.busy()
                quiet.uninstall()
                assert gc.isenabled() == before
            assert quiet.collections == 4
    finally:
        gc.enable() if was else gc.disable()
