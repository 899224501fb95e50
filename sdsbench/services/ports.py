"""TCP port helpers (loopback only)."""

from __future__ import annotations

import socket
import time

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports(count: int, taken: tuple[int, ...] = (), host: str = LOOPBACK) -> list[int]:
    """``count`` distinct free ports on ``host``, none of them in ``taken`` (the OS may hand
    out a port again once its probe socket is closed)."""
    seen, out = set(taken), []
    while len(out) < count:
        port = free_port(host)
        if port not in seen:
            seen.add(port)
            out.append(port)
    return out


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    """True if something accepts connections on ``host:port`` or the port cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        if s.connect_ex((host, port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def wait_for_port(port: int, host: str = LOOPBACK, timeout: float = 30.0) -> bool:
    """Wait until ``host:port`` accepts a TCP connection; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.05)
    return False
