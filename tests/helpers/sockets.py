"""Socket probes for the tests of held ports (simulator.ports)."""

from __future__ import annotations

import socket


def no_other_listener_can_take(port: int) -> bool:
    """Neither a plain socket nor one with SO_REUSEADDR can bind 127.0.0.1:`port` and listen on it."""
    for reuse in (False, True):
        with socket.socket() as other:
            if reuse:
                other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                other.bind(("127.0.0.1", port))
                other.listen()
            except OSError:
                continue
            return False
    return True
