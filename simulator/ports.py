"""Ports for servers that cannot be given port 0, which is every server the wire tests start: quickfix
1.16's acceptor files its sessions under the configured port (on port 0 it finds none for a
connection), etcd's gRPC gateway dials the configured client port, ZooKeeper reads clientPort=0 as
"no client port". Each is given a port picked free here; a bind that fails because another process
took it meanwhile is retried on a new one, and a server in another process must prove that it is the
one started (etcd by its member name, ZooKeeper by its dataDir)."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (bound and released), for a server that cannot be given port 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
