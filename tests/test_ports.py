"""Held ports (simulator.ports): a server binds and listens beside the socket that holds its port, and
nothing else can take the port while it is held, so no test ever races another for one."""

from __future__ import annotations

import socket

import pytest

from simulator.ports import PortReservation, reserve
from tests.helpers.sockets import no_other_listener_can_take


def _server(port: int, host: str = "127.0.0.1") -> socket.socket:
    """A listening socket as quickfix, etcd and ZooKeeper make theirs (SO_REUSEADDR)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen()
    return s


def test_a_server_listens_beside_the_reservation_and_nothing_else_can_take_the_port():
    with PortReservation() as held:
        for reuse in (False, True):  # before the server starts: only a SO_REUSEADDR bind shares it
            with socket.socket() as other:
                if reuse:
                    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    other.bind(("127.0.0.1", held.port))  # the server's own bind, which must work
                else:
                    with pytest.raises(OSError):
                        other.bind(("127.0.0.1", held.port))
        server = _server(held.port)
        with server, socket.create_connection(("127.0.0.1", held.port)) as client:
            conn, _ = server.accept()
            with conn:
                client.sendall(b"x")
                assert conn.recv(1) == b"x"  # connections reach the server, not the reservation
            assert no_other_listener_can_take(held.port)  # a second listener, with or without SO_REUSEADDR


def test_a_venue_restarted_on_its_held_port_gets_it_back():
    """The server goes (a venue process killed) and comes back: the port is still free for it, and in
    the gap no other socket could take it."""
    with PortReservation() as held:
        _server(held.port).close()
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", held.port))
        _server(held.port).close()


def test_the_os_never_assigns_a_held_port():
    held = reserve(range(20))
    try:
        ports = {h.port for h in held.values()}
        assert len(ports) == 20
        for _ in range(500):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", 0))
                assert s.getsockname()[1] not in ports
    finally:
        for h in held.values():
            h.close()
