"""A free TCP port on loopback, for the servers the tests start (the API server, etcd, metrics
endpoints, sshd): the kernel picks one and the socket is closed again, so the port is free
unless another process takes it in between."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
