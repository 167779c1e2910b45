"""Loopback ports for servers that cannot be given port 0 (every server the wire tests start), held by a
socket kept open here for as long as the server may need the port, so that no other process can take it.

quickfix 1.16's acceptor files its sessions under the configured port (on port 0 it finds none for a
connection), etcd's gRPC gateway dials the configured client port, ZooKeeper reads clientPort=0 as "no
client port". So the OS assigns a port to a socket of ours (a bind to port 0), which we keep; the server
binds and listens on the same port beside it. Linux allows that because both sockets set SO_REUSEADDR
and ours never listens: a socket with SO_REUSEADDR may bind an address held by other SO_REUSEADDR sockets
none of which listens. Everyone else is refused (EADDRINUSE): a socket without SO_REUSEADDR, a second
listener, and the OS's own choice for a bind to port 0, which never falls on a port a socket holds.
quickfix, etcd (Go) and ZooKeeper (Java NIO) all set SO_REUSEADDR on their listening sockets. Ports are held
on 127.0.0.1, which also keeps quickfix's own listener on every interface (its 1.16 binds no address) apart from
any other socket: a wildcard and a loopback bind of one port conflict as any two binds do. Nothing is
bound, released and handed on, so two tests (or a test and any outgoing connection) never race for a port.
These are Linux's rules (BSD's differ); the wire tests run on Linux."""

from __future__ import annotations

import socket


class PortReservation:
    """A port on `host` the OS assigned to a socket kept here; a server given `port` binds it beside that
    socket (with SO_REUSEADDR), and nothing else can until `close()`. Keep it while the server may
    (re)start on the port: a venue killed and started again on the same port finds it still free."""

    def __init__(self, host: str = "127.0.0.1"):
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # bound without SO_REUSEADDR, so that the OS picks a port no socket holds at all; set after the
        # bind, so that the server's SO_REUSEADDR bind (and only such a bind) may share it
        self._socket.bind((host, 0))
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.host = host
        self.port: int = self._socket.getsockname()[1]

    def close(self) -> None:
        """Let the port go (the server's own socket, if it still listens, keeps it until it closes)."""
        self._socket.close()

    def __enter__(self) -> PortReservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PortReservation({self.host}:{self.port})"


def reserve(names, host: str = "127.0.0.1") -> dict[str, PortReservation]:
    """One reservation per name (e.g. per venue)."""
    return {name: PortReservation(host) for name in names}
